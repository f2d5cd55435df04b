/* Unit tests of the SQLite store at scale (sql/sqlite/012_scale.sql): runs placed in
 * buckets with each run id still recorded once at most, across buckets and handles; and
 * the audit summary's counts, exactly what the records say after every kind of change
 * (runs of several processors, final states, a settle of what a daemon left pending, a
 * reconciliation, a prune). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tg_core.h"
#include "tg_crypto.h"
#include "tg_store.h"
#include "tg_test.h"

static const struct tg_actor cli = {"os:test", NULL, "cli", NULL};

static void db_path(char *out, size_t len, const char *name)
{
    tg_test_db_path(out, len, "test_store_scale", name);
}

static struct tg_store *open_store(const char *path, int flags)
{
    char err[256];
    struct tg_store *st = NULL;
    if (tg_store_open(&st, path, flags, 5000, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "open %s: %s\n", path, err);
        CHECK(!"open");
        return NULL;
    }
    return st;
}

static struct tg_store *fresh_store(char *path, size_t len, const char *name)
{
    db_path(path, len, name);
    tg_test_remove_db(path);
    struct tg_store *st = open_store(path, TG_STORE_CREATE | TG_STORE_NO_VERSION_CHECK);
    if (st != NULL)
        CHECK(tg_store_migrate(st, NULL, NULL) == TG_OK);
    return st;
}

/* Every row of a query, "|" between columns and "\n" after each row, as sqlite3 -list
 * prints them. */
static const char *rows(const char *path, const char *sql)
{
    static char out[16384];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    size_t n = 0;
    out[0] = '\0';
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "query %s: %s\n", sql, db ? sqlite3_errmsg(db) : "no memory");
        snprintf(out, sizeof(out), "(error)");
    }
    while (s != NULL && sqlite3_step(s) == SQLITE_ROW && n < sizeof(out) - 1) {
        for (int i = 0; i < sqlite3_column_count(s); i++) {
            const unsigned char *t = sqlite3_column_text(s, i);
            n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", i > 0 ? "|" : "",
                                  t != NULL ? (const char *)t : "");
        }
        n += (size_t)snprintf(out + n, sizeof(out) - n, "\n");
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

static struct tg_submission submission(const char *id, int64_t team_id, int num_inputs,
                                       int64_t received_ms)
{
    struct tg_submission sub = {
        .id = id, .team_id = team_id, .request_id = "req", .remote_addr = "192.0.2.7",
        .interface = "simplified", .num_inputs = num_inputs, .request = "{}",
        .received_ms = received_ms,
    };
    return sub;
}

/* An add-runs call of n runs from input first, ids "<prefix><number>". */
struct call_buf {
    char names[1000][32];
    const char *ids[1000];
    const char *procs[1000];
    struct tg_call call;
};

static void make_call(struct call_buf *b, const char *sub_id, int seq, int first, int n,
                      const char *prefix, int number, const char *proc, const char *proc2)
{
    for (int i = 0; i < n; i++) {
        snprintf(b->names[i], sizeof(b->names[i]), "%s%07d", prefix, number + i);
        b->ids[i] = b->names[i];
        b->procs[i] = i % 3 == 2 && proc2 != NULL ? proc2 : proc;
    }
    b->call = (struct tg_call){
        .submission_id = sub_id, .seq = seq, .operation = "add_runs", .method = "POST",
        .path = "/v1/tasks/groups/tgrp_x/runs", .first_input = first, .num_inputs = n,
        .started_ms = tg_now_ms(), .duration_ms = 5, .outcome = TG_OUTCOME_OK,
        .http_status = 200, .num_runs = (size_t)n, .run_ids = b->ids, .processors = b->procs,
    };
}

/* ---- run ids across buckets ------------------------------------------------------- */

static void test_run_ids_unique_across_buckets(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "buckets");
    struct call_buf *b = malloc(sizeof(*b));
    if (st == NULL || b == NULL) {
        CHECK(!"setup");
        goto out;
    }
    int64_t team = 0;
    CHECK(tg_store_team_add(st, &cli, "research", "pk-1", &team) == TG_OK);
    /* 40 calls of 1,000 runs: 17 fill the first bucket, the rest go to the next ones. */
    for (int k = 0; k < 40; k++) {
        char id[32];
        snprintf(id, sizeof(id), "sub_%02d", k);
        struct tg_submission sub = submission(id, team, 1000, tg_now_ms());
        sub.taskgroup_id = "tgrp_x";
        CHECK(tg_store_submission_begin(st, &sub) == TG_OK);
        make_call(b, id, 0, 0, 1000, "trun_", k * 1000, "base", NULL);
        CHECK(tg_store_call_finish(st, &b->call, TG_STATE_ACCEPTED, 200, NULL) == TG_OK);
    }
    CHECK_STR(rows(path, "SELECT bucket, runs FROM run_buckets ORDER BY bucket"),
              "0|17000\n1|17000\n2|6000\n");
    CHECK_STR(rows(path, "SELECT count(*) FROM run_buckets WHERE filter IS NOT NULL"), "2\n");
    CHECK_STR(rows(path, "SELECT count(*), count(DISTINCT run_id) FROM runs"), "40000|40000\n");

    /* An id of the first bucket, recorded again by another submission: refused, named,
     * and nothing of the call is kept; from a new handle too (the filters come from the
     * database, not from the handle that built them). */
    for (int pass = 0; pass < 2; pass++) {
        struct tg_submission sub = submission(pass ? "sub_dup2" : "sub_dup", team, 2,
                                              tg_now_ms());
        CHECK(tg_store_submission_begin(st, &sub) == TG_OK);
        make_call(b, sub.id, 0, 0, 2, "trun_new", pass * 10, "base", NULL);
        b->ids[1] = "trun_0000123";
        CHECK(tg_store_call_record(st, &b->call) == TG_EEXIST);
        CHECK(strstr(tg_store_errmsg(st), "trun_0000123") != NULL);
        if (pass == 0) {
            tg_store_close(st);
            st = open_store(path, 0);
            if (st == NULL)
                goto out;
        }
    }
    CHECK_STR(rows(path, "SELECT count(*) FROM runs WHERE run_id LIKE 'trun_new%'"), "0\n");
    /* Ids of the second and the newest bucket are refused alike; new ones go in. */
    const char *again[] = {"trun_0020000", "trun_0039999"};
    for (int i = 0; i < 2; i++) {
        make_call(b, "sub_dup", 0, 0, 1, "trun_new", 100 + i, "base", NULL);
        b->ids[0] = again[i];
        CHECK(tg_store_call_record(st, &b->call) == TG_EEXIST);
    }
    make_call(b, "sub_dup", 0, 0, 2, "trun_fresh", 0, "base", NULL);
    CHECK(tg_store_call_record(st, &b->call) == TG_OK);

    /* Found by id in any bucket, as the SDK paths ask. */
    char group[64];
    CHECK(tg_store_run_owned(st, team, "trun_0000001", group, sizeof(group)) == TG_OK);
    CHECK(tg_store_run_owned(st, team, "trun_0039000", group, sizeof(group)) == TG_OK);
    CHECK(tg_store_run_owned(st, team, "trun_fresh0000001", group, sizeof(group)) == TG_OK);
    CHECK(tg_store_run_owned(st, team, "trun_nothere", group, sizeof(group)) == TG_ENOTFOUND);

    /* A run's completion is counted in the summary's durations whichever bucket holds it:
     * the first, a middle one, the newest (found through the buckets' filters, not one
     * look per bucket: 453 -> 14 us a lookup at a million runs). */
    const char *done[] = {"trun_0000001", "trun_0020000", "trun_0039000"};
    for (int i = 0; i < 3; i++) {
        char hook[32];
        snprintf(hook, sizeof(hook), "msg_%d", i);
        struct tg_run_change c = {.run_id = done[i], .status = "completed",
                                  .changed_ms = tg_now_ms() + 1000};
        enum tg_webhook_outcome out;
        char who[65];
        /* The second without its group: the store finds it from the run. */
        CHECK(tg_store_webhook_record(st, hook, i == 1 ? NULL : "tgrp_x", &c, &out, who,
                                      sizeof(who)) == TG_OK);
        CHECK(out == TG_WEBHOOK_RECORDED);
    }
    CHECK_STR(rows(path, "SELECT coalesce(sum(runs), 0) FROM duration_counts"), "3\n");
    CHECK_STR(rows(path, "SELECT count(*) FROM run_status WHERE duration_ms >= 1000"), "3\n");
    /* An id no bucket holds: its status is recorded, nothing is counted. */
    struct tg_run_change ghost = {.run_id = "trun_nothere", .status = "completed"};
    enum tg_webhook_outcome gout;
    char gwho[65];
    CHECK(tg_store_webhook_record(st, "msg_ghost", "tgrp_x", &ghost, &gout, gwho,
                                  sizeof(gwho)) == TG_OK);
    CHECK_STR(rows(path, "SELECT coalesce(sum(runs), 0) FROM duration_counts"), "3\n");

    /* A prune of them all leaves the newest bucket only; an id it took is no longer
     * recorded, so it may be again. */
    char before[TG_TIME_LEN];
    tg_time_format(tg_now_ms() + 1, before);
    usleep(5000);
    struct tg_audit_pruned pruned;
    CHECK(tg_store_audit_prune(st, &cli, before, 0, &pruned) == TG_OK);
    CHECK(pruned.runs == 40000); /* sub_dup and sub_dup2 are pending: kept */
    CHECK_STR(rows(path, "SELECT bucket FROM run_buckets"), "2\n");
    struct tg_submission late = submission("sub_late", team, 1, tg_now_ms());
    CHECK(tg_store_submission_begin(st, &late) == TG_OK);
    make_call(b, "sub_late", 0, 0, 1, "trun_", 123, "base", NULL);
    CHECK(tg_store_call_record(st, &b->call) == TG_OK);
out:
    free(b);
    tg_store_close(st);
    tg_test_remove_db(path);
}

/* ---- the audit summary -------------------------------------------------------------- */

/* The summary as kept, and as the records say it should be (the view's contract). */
#define KEPT "SELECT team, day, coalesce(processor, '-'), state, submissions, runs" \
             " FROM audit_summary ORDER BY 1, 2, 3, 4"
#define TRUTH                                                                            \
    "SELECT s.team, substr(s.received_at, 1, 10), coalesce(r.processor, '-'), s.state,"  \
    " count(DISTINCT s.submission_id), count(r.run_id)"                                  \
    " FROM audit_submissions s LEFT JOIN audit_runs r ON r.submission_id = s.submission_id" \
    " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"

static void check_exact(const char *path, const char *when)
{
    char kept[16384];
    snprintf(kept, sizeof(kept), "%s", rows(path, KEPT));
    const char *truth = rows(path, TRUTH);
    CHECK(kept[0] != '\0');
    if (strcmp(kept, truth) != 0)
        fprintf(stderr, "after %s:\n  kept:\n%s  truth:\n%s", when, kept, truth);
    CHECK_STR(kept, truth);
}

static void test_summary_is_exact(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "summary");
    struct call_buf *b = malloc(sizeof(*b));
    if (st == NULL || b == NULL) {
        CHECK(!"setup");
        goto out;
    }
    int64_t a = 0, z = 0;
    CHECK(tg_store_team_add(st, &cli, "alpha", "pk-1", &a) == TG_OK);
    CHECK(tg_store_team_add(st, &cli, "zeta", "pk-2", &z) == TG_OK);
    int64_t day1 = 1795000000000LL, day2 = day1 + 86400000LL; /* two days in 2026 */

    /* Pending, then runs of two processors in two calls, then accepted. */
    struct tg_submission s1 = submission("sub_a1", a, 6, day1);
    CHECK(tg_store_submission_begin(st, &s1) == TG_OK);
    check_exact(path, "a pending submission");
    make_call(b, "sub_a1", 0, 0, 3, "trun_a1_", 0, "base", "core");
    CHECK(tg_store_call_record(st, &b->call) == TG_OK);
    check_exact(path, "its first runs");
    make_call(b, "sub_a1", 1, 3, 3, "trun_a1_", 3, "core", NULL);
    CHECK(tg_store_call_finish(st, &b->call, TG_STATE_ACCEPTED, 200, NULL) == TG_OK);
    check_exact(path, "accepted");

    /* Rejected, failed with no run, runs without a processor. */
    struct tg_submission s2 = submission("sub_z1", z, 1, day1);
    CHECK(tg_store_submission_reject(st, &s2, 422, "bad") == TG_OK);
    struct tg_submission s3 = submission("sub_z2", z, 2, day2);
    CHECK(tg_store_submission_begin(st, &s3) == TG_OK);
    CHECK(tg_store_submission_finish(st, "sub_z2", TG_STATE_FAILED, 502, 502, "no") == TG_OK);
    struct tg_submission s4 = submission("sub_z3", z, 2, day2);
    CHECK(tg_store_submission_begin(st, &s4) == TG_OK);
    make_call(b, "sub_z3", 0, 0, 2, "trun_z3_", 0, NULL, NULL);
    b->call.processors = NULL;
    CHECK(tg_store_call_finish(st, &b->call, TG_STATE_ACCEPTED, 200, NULL) == TG_OK);
    check_exact(path, "rejected, failed, runs without a processor");

    /* Left pending with a run by a daemon that stopped: settled as unknown, then
     * reconciled as accepted with the runs found upstream for its second call. */
    struct tg_submission s5 = submission("sub_a2", a, 4, day2);
    CHECK(tg_store_submission_begin(st, &s5) == TG_OK);
    make_call(b, "sub_a2", 0, 0, 2, "trun_a2_", 0, "base", NULL);
    CHECK(tg_store_call_record(st, &b->call) == TG_OK);
    long settled = 0;
    CHECK(tg_store_recover_pending(st, &settled) == TG_OK);
    CHECK(settled == 1);
    check_exact(path, "settled as unknown");
    const char *found_ids[] = {"trun_a2_found1", "trun_a2_found2"};
    const char *found_procs[] = {"ultra", "base"};
    struct tg_recon_found found = {1, 2, 2, 0, 2, found_ids, found_procs, "ecur_a2"};
    struct tg_recon_write w = {"sub_a2", "os:test", "tgrp_x", "/v1", TG_STATE_ACCEPTED,
                               "accepted", 2, "found", NULL, 1, &found};
    CHECK(tg_store_recon_write(st, &w) == TG_OK);
    check_exact(path, "reconciled");

    /* A prune of the first day: its rows go, the second day's stay exact. */
    char before[TG_TIME_LEN];
    tg_time_format(day2 - 3600000LL, before);
    struct tg_audit_pruned pruned;
    CHECK(tg_store_audit_prune(st, &cli, before, 0, &pruned) == TG_OK);
    CHECK(pruned.submissions == 2 && pruned.runs == 6);
    check_exact(path, "a prune");
    CHECK_STR(rows(path, "SELECT count(*) FROM audit_summary WHERE day < '2026-11-19'"), "0\n");
    /* The housekeeping's tidy-up: past days' rows that hold nothing go, the rest stays. */
    CHECK_STR(rows(path, "SELECT count(*) > 0 FROM summary_counts WHERE submissions = 0"
                         " AND runs = 0"), "1\n");
    CHECK(tg_store_summary_compact(st) == TG_OK);
    CHECK_STR(rows(path, "SELECT count(*) FROM summary_counts WHERE submissions = 0"
                         " AND runs = 0"), "0\n");
    check_exact(path, "the tidy-up");
out:
    free(b);
    tg_store_close(st);
    tg_test_remove_db(path);
}

int main(void)
{
    char key_file[512], err[256];
    db_path(key_file, sizeof(key_file), "ring.key");
    unlink(key_file);
    tg_crypto_configure(key_file);
    if (tg_crypto_load(1, NULL, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "key file: %s\n", err);
        return 1;
    }
    static const struct tg_test_case cases[] = {
        {"run_ids_unique_across_buckets", test_run_ids_unique_across_buckets},
        {"summary_is_exact", test_summary_is_exact},
        {NULL, NULL},
    };
    int rc = tg_test_run(cases);
    unlink(key_file);
    return rc;
}
