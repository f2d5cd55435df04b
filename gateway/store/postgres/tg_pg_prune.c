/* Retention in PostgreSQL (tg_store_audit_prune in tg_store.h; sqlite/tg_sqlite_prune.c is
 * the reference): the settled submissions received before a cutoff, with their upstream
 * calls, runs and reconciliation attempts, and the old rows of audit_reads, deleted batch
 * by batch, each batch a transaction of its own.
 *
 * Each batch sees one snapshot (REPEATABLE READ), so that its deletes take the same
 * submissions (under READ COMMITTED one settled meanwhile would join the later deletes
 * only, and its runs would block its calls' delete); a concurrent change of those rows
 * aborts the batch with a serialization failure, which tg_pg_write runs again. One prune
 * at a time on a server, under an advisory lock held for the whole prune: a second waits,
 * then finds what the first left. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_pg_int.h"

#define BATCH_RUNS 4000       /* runs (as inputs) deleted per transaction at most */
#define BATCH_SUBS 2000       /* submissions per transaction at most */
#define BATCH_READS 5000      /* audit_reads rows per transaction */
/* pg_advisory_lock's key for prunes ("tprune"; migrations take another, tg_pg.c's). */
#define PRUNE_LOCK "7470617275"

#define C_ " COLLATE \"C\""

/* The submissions a prune removes: settled ones received before the cutoff $1. */
#define PRUNED_SUBS \
    "SELECT id FROM submissions WHERE received_at" C_ " < $1" \
    " AND state NOT IN ('pending', 'unknown')"

static const struct tg_pg_stmt count_stmt = {
    "prune_count",
    "SELECT (SELECT count(*) FROM (" PRUNED_SUBS ") p),"
    " (SELECT count(*) FROM upstream_calls WHERE submission_id IN (" PRUNED_SUBS ")),"
    " (SELECT count(*) FROM runs WHERE submission_id IN (" PRUNED_SUBS ")),"
    " (SELECT count(*) FROM audit_reads WHERE at" C_ " < $1),"
    " (SELECT count(*) FROM submissions WHERE received_at" C_ " < $1"
    "   AND state IN ('pending', 'unknown'))"};
static const struct tg_pg_stmt lock_stmt = {
    "prune_lock", "SELECT pg_advisory_lock(" PRUNE_LOCK ")"};
static const struct tg_pg_stmt unlock_stmt = {
    "prune_unlock", "SELECT pg_advisory_unlock(" PRUNE_LOCK ")"};
static const struct tg_pg_stmt iso_stmt = {
    "prune_iso", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"};
/* The guard of sql/postgres/002_audit.sql: a transaction-local setting (SQLite's guard row
 * in audit_prune_guard), set and cleared inside each transaction of the prune. */
static const struct tg_pg_stmt guard_on_stmt = {
    "prune_guard_on", "SELECT set_config('taskgate.audit_prune', 'on', true)"};
static const struct tg_pg_stmt guard_off_stmt = {
    "prune_guard_off", "SELECT set_config('taskgate.audit_prune', 'off', true)"};
/* The next settled submissions before the cutoff $1 after the key ($2, $3), at most $4. */
static const struct tg_pg_stmt next_stmt = {
    "prune_next",
    "SELECT received_at, id, num_inputs FROM submissions WHERE received_at" C_ " < $1"
    " AND state NOT IN ('pending', 'unknown') AND (received_at" C_ ", id" C_ ") > ($2, $3)"
    " ORDER BY received_at" C_ ", id" C_ " LIMIT $4::bigint"};
/* Children first: runs reference upstream_calls, which reference submissions, as do
 * reconciliations. */
static const struct tg_pg_stmt del_runs_stmt = {
    "prune_del_runs", "DELETE FROM runs WHERE submission_id IN (" TG_PG_PRUNE_BATCH ")"};
static const struct tg_pg_stmt del_calls_stmt = {
    "prune_del_calls",
    "DELETE FROM upstream_calls WHERE submission_id IN (" TG_PG_PRUNE_BATCH ")"};
static const struct tg_pg_stmt del_recons_stmt = {
    "prune_del_recons",
    "DELETE FROM reconciliations WHERE submission_id IN (" TG_PG_PRUNE_BATCH ")"};
static const struct tg_pg_stmt del_subs_stmt = {
    "prune_del_subs", "DELETE FROM submissions WHERE id IN (" TG_PG_PRUNE_BATCH ")"};
static const struct tg_pg_stmt del_reads_stmt = {
    "prune_del_reads",
    "DELETE FROM audit_reads WHERE id IN"
    " (SELECT id FROM audit_reads WHERE at" C_ " < $1 ORDER BY at" C_ " LIMIT $2::bigint)"};
static const struct tg_pg_stmt open_stmt = {
    "prune_open",
    "SELECT count(*) FROM submissions WHERE received_at" C_ " < $1"
    " AND state IN ('pending', 'unknown')"};

static int count_all(struct tg_store *st, const char *before, struct tg_audit_pruned *out)
{
    const char *params[] = {before};
    PGresult *res = NULL;
    int rc = tg_pg_one(st, &count_stmt, 1, params, &res, "count what a prune removes");
    if (rc == TG_OK) {
        out->submissions = (long)tg_pg_int(res, 0, 0);
        out->calls = (long)tg_pg_int(res, 0, 1);
        out->runs = (long)tg_pg_int(res, 0, 2);
        out->reads = (long)tg_pg_int(res, 0, 3);
        out->kept_open = (long)tg_pg_int(res, 0, 4);
    } else if (rc == TG_ENOTFOUND) {
        tg_pg_set_err(st, "count what a prune removes: no answer");
        rc = TG_EDB;
    }
    PQclear(res);
    return rc;
}

/* A batch: the cutoff, the key it continues after and (once chosen) its last key, and
 * what it deleted. */
struct batch {
    const char *before;
    char after_time[TG_TIME_LEN], after_id[TG_AUDIT_KEY_ID_MAX + 1];
    char last_time[TG_TIME_LEN], last_id[TG_AUDIT_KEY_ID_MAX + 1];
    struct tg_audit_pruned n;
    int found;
};

/* Chooses the batch's last key (b->found 0: nothing left). */
static int next_batch(struct tg_store *st, struct batch *b)
{
    char max[TG_PG_I64_LEN];
    const char *p[] = {b->before, b->after_time, b->after_id, tg_pg_i64(max, BATCH_SUBS)};
    PGresult *res = NULL;
    int rc = tg_pg_exec(st, &next_stmt, 4, p, &res, "choose what to prune");
    if (rc != TG_OK)
        return rc;
    int64_t runs = 0;
    for (int i = 0; i < PQntuples(res) && runs < BATCH_RUNS; i++) {
        int64_t inputs = tg_pg_int(res, i, 2);
        if (b->found && runs + inputs > BATCH_RUNS)
            break; /* the next batch's: a submission is never split */
        tg_pg_copy(b->last_time, sizeof(b->last_time), res, i, 0);
        tg_pg_copy(b->last_id, sizeof(b->last_id), res, i, 1);
        runs += inputs;
        b->found = 1;
    }
    PQclear(res);
    return TG_OK;
}

static int step(struct tg_store *st, const struct tg_pg_stmt *s, const struct batch *b,
                long *n)
{
    const char *p[] = {b->before, b->after_time, b->after_id, b->last_time, b->last_id};
    PGresult *res = NULL;
    int rc = tg_pg_exec(st, s, 5, p, &res, "prune the audit trail");
    if (rc == TG_OK && n != NULL)
        *n = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return rc;
}

/* One batch's transaction (tg_pg_write may run it again: it starts from nothing). */
static int batch_w(struct tg_store *st, void *arg)
{
    struct batch *b = arg;
    memset(&b->n, 0, sizeof(b->n));
    b->found = 0;
    int rc = tg_pg_run(st, &iso_stmt, 0, NULL, "prune the audit trail");
    if (rc == TG_OK)
        rc = next_batch(st, b);
    if (rc != TG_OK || !b->found)
        return rc;
    const char *p[] = {b->before, b->after_time, b->after_id, b->last_time, b->last_id};
    rc = tg_pg_run(st, &guard_on_stmt, 0, NULL, "prune the audit trail");
    if (rc == TG_OK)
        rc = tg_pg_counts_prune(st, p);
    if (rc == TG_OK)
        rc = step(st, &del_runs_stmt, b, &b->n.runs);
    if (rc == TG_OK)
        rc = step(st, &del_calls_stmt, b, &b->n.calls);
    if (rc == TG_OK)
        rc = step(st, &del_recons_stmt, b, NULL);
    if (rc == TG_OK)
        rc = step(st, &del_subs_stmt, b, &b->n.submissions);
    if (rc == TG_OK)
        rc = tg_pg_run(st, &guard_off_stmt, 0, NULL, "prune the audit trail");
    return rc;
}

static int reads_w(struct tg_store *st, void *arg)
{
    struct batch *b = arg;
    char max[TG_PG_I64_LEN];
    const char *p[] = {b->before, tg_pg_i64(max, BATCH_READS)};
    PGresult *res = NULL;
    b->n.reads = 0;
    int rc = tg_pg_run(st, &guard_on_stmt, 0, NULL, "prune the audit trail");
    if (rc == TG_OK)
        rc = tg_pg_exec(st, &del_reads_stmt, 2, p, &res, "prune the audit trail");
    if (rc == TG_OK)
        b->n.reads = strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    if (rc == TG_OK)
        rc = tg_pg_run(st, &guard_off_stmt, 0, NULL, "prune the audit trail");
    return rc;
}

struct log {
    const struct tg_actor *who;
    const char *before;
    struct tg_audit_pruned *out;
};

/* The end of a prune: what was kept open, and the admin log's row with the counts. */
static int log_w(struct tg_store *st, void *arg)
{
    const struct log *l = arg;
    struct tg_audit_pruned *out = l->out;
    const char *p[] = {l->before};
    PGresult *res = NULL;
    int rc = tg_pg_one(st, &open_stmt, 1, p, &res, "count what a prune keeps");
    out->kept_open = rc == TG_OK ? (long)tg_pg_int(res, 0, 0) : 0;
    PQclear(res);
    if (rc != TG_OK)
        return rc;
    char object[64], after[400];
    snprintf(object, sizeof(object), "before %s", l->before);
    snprintf(after, sizeof(after),
             "{\"before\":\"%s\",\"submissions\":%ld,\"upstream_calls\":%ld,\"runs\":%ld,"
             "\"audit_reads\":%ld,\"kept_open\":%ld}",
             l->before, out->submissions, out->calls, out->runs, out->reads, out->kept_open);
    return tg_pg_admin_log(st, l->who, "audit.prune", "audit", object, NULL, NULL, after);
}

/* Every batch of submissions, then of audit_reads, until none is left. */
static int prune_all(struct tg_store *st, const char *before, struct tg_audit_pruned *out)
{
    struct batch b;
    memset(&b, 0, sizeof(b));
    b.before = before;
    int rc;
    do {
        rc = tg_pg_write(st, batch_w, &b);
        if (rc == TG_OK && b.found) {
            out->runs += b.n.runs;
            out->calls += b.n.calls;
            out->submissions += b.n.submissions;
            memcpy(b.after_time, b.last_time, sizeof(b.after_time));
            memcpy(b.after_id, b.last_id, sizeof(b.after_id));
        }
    } while (rc == TG_OK && b.found);
    do {
        if (rc == TG_OK)
            rc = tg_pg_write(st, reads_w, &b);
        if (rc == TG_OK)
            out->reads += b.n.reads;
    } while (rc == TG_OK && b.n.reads > 0);
    return rc;
}

int tg_pg_audit_prune(struct tg_store *st, const struct tg_actor *who, const char *before,
                      int dry_run, struct tg_audit_pruned *out)
{
    memset(out, 0, sizeof(*out));
    if (before == NULL || strlen(before) != TG_TIME_LEN - 1 ||
        strspn(before, "0123456789-T:.Z") != TG_TIME_LEN - 1)
        return tg_pg_invalid(st, "a prune needs a cutoff time as stored");
    if (who == NULL || who->id == NULL)
        return tg_pg_invalid(st, "a prune needs an actor");
    if (dry_run) {
        int rc = tg_pg_snapshot_begin(st);
        if (rc == TG_OK)
            rc = tg_pg_snapshot_end(st, count_all(st, before, out));
        return rc;
    }
    int rc = tg_pg_run(st, &lock_stmt, 0, NULL, "wait for another prune");
    if (rc != TG_OK)
        return rc;
    st->session_locks++;
    rc = prune_all(st, before, out);
    /* What was deleted stays deleted and is logged, also when a later batch failed. */
    char why[sizeof(st->err)];
    snprintf(why, sizeof(why), "%s", st->err);
    struct log l = {who, before, out};
    int logged = tg_pg_write(st, log_w, &l);
    tg_pg_run(st, &unlock_stmt, 0, NULL, "let the next prune in");
    st->session_locks--;
    if (rc != TG_OK) {
        snprintf(st->err, sizeof(st->err), "%s", why);
        return rc;
    }
    return logged;
}
