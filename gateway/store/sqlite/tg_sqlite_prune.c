/* Retention in SQLite (tg_store_audit_prune in tg_store.h): the settled submissions received
 * before a cutoff, with their upstream calls, runs and reconciliation attempts, and the old
 * rows of audit_reads, deleted batch by batch.
 *
 * SQLite has one writer at a time, so a prune in one transaction of a million runs would
 * keep every submission waiting for its whole length (and secure_delete, on, overwrites
 * each freed page). Each batch is instead its own short write transaction under the prune
 * guard of sql/sqlite/002_audit.sql, of at most BATCH_RUNS runs (a submission is never
 * split), followed by a pause as long as the batch took, so that writers waiting on the
 * busy timeout get their turn in between. The summary's counts go in the same transaction
 * as the rows they count; the admin log's row, with what was deleted, in the last one. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tg_sqlite_int.h"

#define BATCH_RUNS 4000       /* runs (as inputs) deleted per transaction at most */
#define BATCH_SUBS 2000       /* submissions per transaction at most */
#define BATCH_READS 5000      /* audit_reads rows per transaction */
#define PAUSE_MIN_US 5000     /* the least pause between two transactions */

/* The submissions a prune removes: settled ones received before the cutoff ?1. */
#define PRUNED_SUBS \
    "SELECT id FROM submissions WHERE received_at < ?1" \
    " AND state NOT IN ('pending', 'unknown')"

static const char *const prune_sql[S_COUNT] = {
    [P_COUNT] =
        "SELECT (SELECT count(*) FROM (" PRUNED_SUBS ")),"
        " (SELECT count(*) FROM upstream_calls WHERE submission_id IN (" PRUNED_SUBS ")),"
        " (SELECT count(*) FROM runs WHERE submission_id IN (" PRUNED_SUBS ")),"
        " (SELECT count(*) FROM audit_reads WHERE at < ?1),"
        " (SELECT count(*) FROM submissions WHERE received_at < ?1"
        "   AND state IN ('pending', 'unknown'))",
    /* The guard of sql/sqlite/002_audit.sql: set and cleared inside each transaction. */
    [P_GUARD_ON] = "INSERT INTO audit_prune_guard (active) VALUES (1)",
    [P_GUARD_OFF] = "DELETE FROM audit_prune_guard",
    /* The next settled submissions before the cutoff ?1 after the key (?2, ?3), at most ?4:
     * (received_at, id) order, the index submissions_time. */
    [P_NEXT] =
        "SELECT received_at, id, num_inputs FROM submissions WHERE received_at < ?1"
        " AND state NOT IN ('pending', 'unknown') AND (received_at, id) > (?2, ?3)"
        " ORDER BY received_at, id LIMIT ?4",
    /* Children first: runs reference upstream_calls, which reference submissions, as do
     * reconciliations. */
    [P_DEL_RUNS] = "DELETE FROM runs WHERE submission_id IN (" TG_SQLITE_PRUNE_BATCH ")",
    [P_DEL_CALLS] =
        "DELETE FROM upstream_calls WHERE submission_id IN (" TG_SQLITE_PRUNE_BATCH ")",
    [P_DEL_RECONS] =
        "DELETE FROM reconciliations WHERE submission_id IN (" TG_SQLITE_PRUNE_BATCH ")",
    [P_DEL_SUBS] = "DELETE FROM submissions WHERE id IN (" TG_SQLITE_PRUNE_BATCH ")",
    [P_DEL_READS] =
        "DELETE FROM audit_reads WHERE id IN"
        " (SELECT id FROM audit_reads WHERE at < ?1 ORDER BY at LIMIT ?2)",
    /* The buckets of runs a prune emptied, never the newest (the next runs go there). */
    [P_DEL_BUCKETS] =
        "DELETE FROM run_buckets WHERE bucket < (SELECT max(bucket) FROM run_buckets)"
        " AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.bucket = run_buckets.bucket)",
    [P_OPEN] =
        "SELECT count(*) FROM submissions WHERE received_at < ?1"
        " AND state IN ('pending', 'unknown')",
};

static int stmt(struct tg_store *st, enum stmt_id id, sqlite3_stmt **out)
{
    return tg_sqlite_stmt(st, id, prune_sql[id], out);
}

static int count_all(struct tg_store *st, const char *before, struct tg_audit_pruned *out)
{
    sqlite3_stmt *s;
    int rc = stmt(st, P_COUNT, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, before);
    rc = tg_sqlite_one(st, s, "count what a prune removes");
    if (rc == TG_OK) {
        out->submissions = (long)sqlite3_column_int64(s, 0);
        out->calls = (long)sqlite3_column_int64(s, 1);
        out->runs = (long)sqlite3_column_int64(s, 2);
        out->reads = (long)sqlite3_column_int64(s, 3);
        out->kept_open = (long)sqlite3_column_int64(s, 4);
    } else if (rc == TG_ENOTFOUND) {
        rc = tg_sqlite_db_err(st, SQLITE_DONE, "count what a prune removes");
    }
    tg_sqlite_done(s);
    return rc;
}

/* Where a batch begins (after) and ends (last): (received_at, id) keys. */
struct range {
    char after_time[TG_TIME_LEN], after_id[TG_AUDIT_KEY_ID_MAX + 1];
    char last_time[TG_TIME_LEN], last_id[TG_AUDIT_KEY_ID_MAX + 1];
};

/* The next batch's last key: TG_OK, or TG_ENOTFOUND when nothing is left to prune. */
static int next_batch(struct tg_store *st, const char *before, struct range *r)
{
    sqlite3_stmt *s;
    int rc = stmt(st, P_NEXT, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, before);
    tg_sqlite_bind_text(s, 2, r->after_time);
    tg_sqlite_bind_text(s, 3, r->after_id);
    sqlite3_bind_int(s, 4, BATCH_SUBS);
    int64_t runs = 0;
    int n = 0, src;
    while (runs < BATCH_RUNS && (src = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t inputs = sqlite3_column_int64(s, 2);
        if (n > 0 && runs + inputs > BATCH_RUNS)
            break; /* the next batch's: a submission is never split */
        tg_sqlite_col_copy(r->last_time, sizeof(r->last_time), s, 0);
        tg_sqlite_col_copy(r->last_id, sizeof(r->last_id), s, 1);
        runs += inputs;
        n++;
    }
    rc = n > 0 ? TG_OK : src == SQLITE_DONE ? TG_ENOTFOUND
                                            : tg_sqlite_db_err(st, src, "choose what to prune");
    tg_sqlite_done(s);
    return rc;
}

/* Runs statement id with the batch bound (?1 the cutoff, ?2..?5 the range); *n (may be
 * NULL) receives the rows it deleted. */
static int batch_step(struct tg_store *st, enum stmt_id id, const char *before,
                      const struct range *r, long *n)
{
    sqlite3_stmt *s;
    int rc = stmt(st, id, &s);
    if (rc != TG_OK)
        return rc;
    if (sqlite3_bind_parameter_count(s) >= 5) {
        tg_sqlite_bind_text(s, 1, before);
        tg_sqlite_bind_text(s, 2, r->after_time);
        tg_sqlite_bind_text(s, 3, r->after_id);
        tg_sqlite_bind_text(s, 4, r->last_time);
        tg_sqlite_bind_text(s, 5, r->last_id);
    }
    rc = tg_sqlite_run(st, s, "prune the audit trail");
    if (rc == TG_OK && n != NULL)
        *n += (long)sqlite3_changes(st->db);
    return rc;
}

/* One batch of submissions in one transaction; TG_ENOTFOUND when none was left. */
static int prune_batch(struct tg_store *st, const char *before, struct range *r,
                       struct tg_audit_pruned *out)
{
    int rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    rc = next_batch(st, before, r);
    if (rc == TG_OK)
        rc = batch_step(st, P_GUARD_ON, before, r, NULL);
    if (rc == TG_OK)
        rc = tg_sqlite_counts_prune(st, before, r->after_time, r->after_id, r->last_time,
                                    r->last_id);
    struct tg_audit_pruned n;
    memset(&n, 0, sizeof(n));
    if (rc == TG_OK)
        rc = batch_step(st, P_DEL_RUNS, before, r, &n.runs);
    if (rc == TG_OK)
        rc = batch_step(st, P_DEL_CALLS, before, r, &n.calls);
    if (rc == TG_OK)
        rc = batch_step(st, P_DEL_RECONS, before, r, NULL);
    if (rc == TG_OK)
        rc = batch_step(st, P_DEL_SUBS, before, r, &n.submissions);
    if (rc == TG_OK)
        rc = batch_step(st, P_GUARD_OFF, before, r, NULL);
    rc = tg_sqlite_tx_end(st, rc);
    if (rc == TG_OK) {
        out->runs += n.runs;
        out->calls += n.calls;
        out->submissions += n.submissions;
        memcpy(r->after_time, r->last_time, sizeof(r->after_time));
        memcpy(r->after_id, r->last_id, sizeof(r->after_id));
    }
    return rc;
}

/* One batch of audit_reads; TG_ENOTFOUND when none was left. */
static int prune_reads(struct tg_store *st, const char *before, struct tg_audit_pruned *out)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    long n = 0;
    rc = stmt(st, P_GUARD_ON, &s);
    if (rc == TG_OK)
        rc = tg_sqlite_run(st, s, "prune the audit trail");
    if (rc == TG_OK)
        rc = stmt(st, P_DEL_READS, &s);
    if (rc == TG_OK) {
        tg_sqlite_bind_text(s, 1, before);
        sqlite3_bind_int(s, 2, BATCH_READS);
        rc = tg_sqlite_run(st, s, "prune the audit trail");
        n = rc == TG_OK ? (long)sqlite3_changes(st->db) : 0;
    }
    if (rc == TG_OK)
        rc = stmt(st, P_GUARD_OFF, &s);
    if (rc == TG_OK)
        rc = tg_sqlite_run(st, s, "prune the audit trail");
    rc = tg_sqlite_tx_end(st, rc);
    if (rc == TG_OK)
        out->reads += n;
    return rc == TG_OK && n == 0 ? TG_ENOTFOUND : rc;
}

/* Lets waiting writers in: as long as the transaction before took, at least PAUSE_MIN_US. */
static void pause_after(int64_t since_us)
{
    int64_t us = tg_mono_us() - since_us;
    if (us < PAUSE_MIN_US)
        us = PAUSE_MIN_US;
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* The end of a prune, in one transaction: the emptied buckets, what was kept open, and
 * the admin log's row with the counts. */
static int prune_log(struct tg_store *st, const struct tg_actor *who, const char *before,
                     struct tg_audit_pruned *out)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    rc = stmt(st, P_DEL_BUCKETS, &s);
    if (rc == TG_OK)
        rc = tg_sqlite_run(st, s, "forget emptied buckets of runs");
    if (rc == TG_OK)
        rc = stmt(st, P_OPEN, &s);
    if (rc == TG_OK) {
        tg_sqlite_bind_text(s, 1, before);
        rc = tg_sqlite_one(st, s, "count what a prune keeps");
        out->kept_open = rc == TG_OK ? (long)sqlite3_column_int64(s, 0) : 0;
        rc = rc == TG_ENOTFOUND ? TG_OK : rc;
        tg_sqlite_done(s);
    }
    if (rc == TG_OK) {
        char object[64], after[400];
        snprintf(object, sizeof(object), "before %s", before);
        snprintf(after, sizeof(after),
                 "{\"before\":\"%s\",\"submissions\":%ld,\"upstream_calls\":%ld,\"runs\":%ld,"
                 "\"audit_reads\":%ld,\"kept_open\":%ld}",
                 before, out->submissions, out->calls, out->runs, out->reads, out->kept_open);
        rc = tg_sqlite_admin_log(st, who, "audit.prune", "audit", object, NULL, NULL, after);
    }
    return tg_sqlite_tx_end(st, rc);
}

int tg_sqlite_audit_prune(struct tg_store *st, const struct tg_actor *who, const char *before,
                          int dry_run, struct tg_audit_pruned *out)
{
    memset(out, 0, sizeof(*out));
    if (before == NULL || strlen(before) != TG_TIME_LEN - 1 ||
        strspn(before, "0123456789-T:.Z") != TG_TIME_LEN - 1)
        return tg_sqlite_invalid(st, "a prune needs a cutoff time as stored");
    if (who == NULL || who->id == NULL)
        return tg_sqlite_invalid(st, "a prune needs an actor");
    if (dry_run) {
        int rc = tg_sqlite_snapshot_begin(st);
        if (rc == TG_OK)
            rc = tg_sqlite_snapshot_end(st, count_all(st, before, out));
        return rc;
    }
    struct range r;
    memset(&r, 0, sizeof(r));
    int rc;
    do {
        int64_t t0 = tg_mono_us();
        rc = prune_batch(st, before, &r, out);
        if (rc == TG_OK)
            pause_after(t0);
    } while (rc == TG_OK);
    while (rc == TG_ENOTFOUND) {
        int64_t t0 = tg_mono_us();
        rc = prune_reads(st, before, out);
        if (rc != TG_OK)
            break;
        pause_after(t0);
        rc = TG_ENOTFOUND; /* on to the next batch of reads */
    }
    rc = rc == TG_ENOTFOUND ? TG_OK : rc;
    /* What was deleted stays deleted and is logged, also when a later batch failed. */
    char why[sizeof(st->err)];
    snprintf(why, sizeof(why), "%s", st->err);
    int logged = prune_log(st, who, before, out);
    if (rc != TG_OK) {
        snprintf(st->err, sizeof(st->err), "%s", why);
        return rc;
    }
    return logged;
}
