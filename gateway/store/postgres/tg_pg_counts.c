/* The audit summary's counts in PostgreSQL (summary_counts, sql/postgres/012_scale.sql),
 * written in the transaction of every change they count, as the SQLite backend does
 * (sqlite/tg_sqlite_counts.c has the contract): each submission once under each processor
 * its runs carry ('' while it has none), each run under its processor, both at the
 * submission's state now, on its received day.
 *
 * The request path's writes count in their own statements (tg_pg_int.h's TG_PG_COUNT_NEW
 * and TG_PG_COUNT_CHANGE), so that counting costs it no round trip. What is here is for
 * the writes off that path (reconciliation, a prune, the housekeeping's tidy-up): each
 * statement is one round trip that runs before the change it counts, computes the deltas
 * from what the submission has then, and locks its row (FOR UPDATE) so that nothing changes
 * it before the change that follows in the same transaction (whose WHERE may still refuse:
 * then the transaction, counts included, is rolled back). Rows are added to in key order,
 * so that two transactions never wait for each other's rows in opposite orders, and in the
 * session's own shard (pg_backend_pid()), so that concurrent transactions of one team and
 * day seldom wait for one row at all. */
#include <stdio.h>
#include <string.h>

#include "tg_pg_int.h"

#define UPSERT                                                                              \
    " ON CONFLICT (team_id, day, state, processor, shard) DO UPDATE SET"                    \
    " submissions = summary_counts.submissions + excluded.submissions,"                     \
    " runs = summary_counts.runs + excluded.runs"
#define INSERT_COUNTS \
    "INSERT INTO summary_counts (team_id, day, state, processor, shard, submissions, runs) "
#define SHARD "pg_backend_pid()"

/* Runs about to be recorded for submission $1, $3 of them under each processor of $2
 * ('' for none), at its state: runs under their processors; the submission once more under
 * each processor new to it, and no longer under '' when these are its first runs. */
static const struct tg_pg_stmt runs_stmt = {
    "counts_runs",
    "WITH s AS (SELECT team_id, substr(received_at, 1, 10) AS day, state,"
    "  EXISTS (SELECT 1 FROM runs WHERE submission_id = $1) AS had"
    "  FROM submissions WHERE id = $1 FOR UPDATE),"
    " a AS (SELECT p, n FROM unnest($2::text[], $3::bigint[]) AS u(p, n)),"
    " d AS (SELECT a.p, CASE WHEN (s.had AND EXISTS (SELECT 1 FROM runs r"
    "    WHERE r.submission_id = $1 AND coalesce(r.processor, '') = a.p))"
    "    OR (NOT s.had AND a.p = '') THEN 0 ELSE 1 END AS subs, a.n AS runs FROM s, a"
    "  UNION ALL SELECT '', -1, 0 FROM s"
    "   WHERE NOT s.had AND NOT EXISTS (SELECT 1 FROM a WHERE a.p = ''))"
    INSERT_COUNTS
    "SELECT s.team_id, s.day, s.state, d.p, " SHARD ", sum(d.subs), sum(d.runs) FROM s, d"
    " GROUP BY s.team_id, s.day, s.state, d.p ORDER BY 1, 2, 3, 4" UPSERT};

/* Submission $1 about to move to state $2, with runs about to be recorded ($4 of them
 * under each processor of $3; both may be empty): what it counts now taken away, what it
 * will count added, netted per row. */
static const struct tg_pg_stmt change_stmt = {
    "counts_change",
    "WITH s AS (SELECT team_id, substr(received_at, 1, 10) AS day, state"
    "  FROM submissions WHERE id = $1 FOR UPDATE),"
    " had AS (SELECT coalesce(processor, '') AS p, count(*) AS n FROM runs"
    "  WHERE submission_id = $1 GROUP BY 1),"
    " a AS (SELECT p, n FROM unnest($3::text[], $4::bigint[]) AS u(p, n)),"
    " was AS (SELECT p, n FROM had UNION ALL SELECT '', 0"
    "  WHERE NOT EXISTS (SELECT 1 FROM had)),"
    " will AS (SELECT p, sum(n) AS n FROM (SELECT p, n FROM had UNION ALL SELECT p, n FROM a"
    "  UNION ALL SELECT '', 0 WHERE NOT EXISTS (SELECT 1 FROM had)"
    "   AND NOT EXISTS (SELECT 1 FROM a)) x GROUP BY p),"
    " d AS (SELECT s.state, w.p, -1 AS subs, -w.n AS runs FROM s, was w"
    "  UNION ALL SELECT $2, w.p, 1, w.n FROM s, will w)"
    INSERT_COUNTS
    "SELECT s.team_id, s.day, d.state, d.p, " SHARD ", sum(d.subs), sum(d.runs) FROM s, d"
    " GROUP BY s.team_id, s.day, d.state, d.p ORDER BY 1, 2, 3, 4" UPSERT};

/* The submissions of a prune's batch ($1..$5: tg_pg_int.h's TG_PG_PRUNE_BATCH), about to
 * be deleted whole: everything they count taken away. */
static const struct tg_pg_stmt prune_stmt = {
    "counts_prune",
    "WITH d AS (" TG_PG_DURATIONS_INSERT
    "SELECT s.team_id, substr(s.received_at, 1, 10), coalesce(r.processor, ''), "
    TG_PG_BUCKET("st.duration_ms") ", " SHARD ", -count(*), -sum(st.duration_ms), 0"
    " FROM submissions s JOIN runs r ON r.submission_id = s.id"
    " JOIN run_status st ON st.run_id = r.run_id"
    " WHERE s.id IN (" TG_PG_PRUNE_BATCH ") AND st.duration_ms IS NOT NULL"
    " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4" TG_PG_DURATIONS_UPSERT ") "
    INSERT_COUNTS
    "SELECT s.team_id, substr(s.received_at, 1, 10), s.state, coalesce(r.processor, ''), "
    SHARD ", -count(DISTINCT s.id), -count(r.run_id)"
    " FROM submissions s LEFT JOIN runs r ON r.submission_id = s.id"
    " WHERE s.id IN (" TG_PG_PRUNE_BATCH ")"
    " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4" UPSERT};

/* The completed runs of call $2 of submission $1 not counted yet (their completion was
 * recorded before they were): their durations set and counted. */
static const struct tg_pg_stmt duration_call_stmt = {
    "counts_duration_call",
    "WITH u AS (UPDATE run_status st SET duration_ms = " TG_PG_DURATION("st.completed_at")
    " FROM runs r JOIN upstream_calls c ON c.submission_id = r.submission_id"
    " AND c.seq = r.call_seq WHERE r.submission_id = $1 AND r.call_seq = $2::bigint"
    " AND st.run_id = r.run_id AND st.status = 'completed' AND st.duration_ms IS NULL"
    " RETURNING st.run_id, st.duration_ms) "
    TG_PG_DURATIONS_INSERT "SELECT b.team_id, substr(b.received_at, 1, 10),"
    " coalesce(r.processor, ''), " TG_PG_BUCKET("u.duration_ms") ", " SHARD ", count(*),"
    " sum(u.duration_ms), max(u.duration_ms)"
    " FROM u JOIN runs r ON r.run_id = u.run_id JOIN submissions b ON b.id = r.submission_id"
    " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4" TG_PG_DURATIONS_UPSERT};

/* The distinct processors of n runs ('' for none) and how many runs each has, as two
 * array literals. A call names one processor or a few: a short list searched in order.
 * out is to be freed with procs_free whatever the outcome. */
#define PROCS_MAX 64
struct procs {
    struct tg_buf names, counts;
};

static int group_procs(struct tg_store *st, size_t n, const char *const *procs,
                       struct procs *out)
{
    const char *name[PROCS_MAX];
    long long runs[PROCS_MAX];
    size_t k = 0;
    tg_buf_init(&out->names, (size_t)1 << 20);
    tg_buf_init(&out->counts, (size_t)1 << 20);
    for (size_t i = 0; i < n; i++) {
        const char *p = procs != NULL && procs[i] != NULL ? procs[i] : "";
        size_t j = 0;
        while (j < k && strcmp(name[j], p) != 0)
            j++;
        if (j == k) {
            if (k == PROCS_MAX) {
                tg_pg_set_err(st, "a call's runs name more than %d processors", PROCS_MAX);
                return TG_EINVAL;
            }
            name[k] = p;
            runs[k++] = 0;
        }
        runs[j]++;
    }
    int rc = tg_pg_text_array(&out->names, name, k);
    if (rc == TG_OK)
        rc = tg_buf_add(&out->counts, "{", 1);
    for (size_t j = 0; rc == TG_OK && j < k; j++)
        rc = tg_buf_printf(&out->counts, "%s%lld", j > 0 ? "," : "", runs[j]);
    if (rc == TG_OK)
        rc = tg_buf_add(&out->counts, "}", 1);
    if (rc != TG_OK)
        tg_pg_set_err(st, "count runs: out of memory");
    return rc;
}

static void procs_free(struct procs *g)
{
    tg_buf_free(&g->names);
    tg_buf_free(&g->counts);
}

int tg_pg_counts_runs(struct tg_store *st, const char *sub_id, size_t n,
                      const char *const *procs)
{
    struct procs g;
    int rc = group_procs(st, n, procs, &g);
    const char *p[] = {sub_id, tg_buf_str(&g.names), tg_buf_str(&g.counts)};
    if (rc == TG_OK)
        rc = tg_pg_run(st, &runs_stmt, 3, p, "count in the audit summary");
    procs_free(&g);
    return rc;
}

int tg_pg_counts_change(struct tg_store *st, const char *sub_id, enum tg_state state,
                        size_t n, const char *const *procs)
{
    struct procs g;
    int rc = group_procs(st, n, procs, &g);
    const char *p[] = {sub_id, tg_domain_state_name(state), tg_buf_str(&g.names),
                       tg_buf_str(&g.counts)};
    if (rc == TG_OK)
        rc = tg_pg_run(st, &change_stmt, 4, p, "count in the audit summary");
    procs_free(&g);
    return rc;
}

int tg_pg_counts_prune(struct tg_store *st, const char *const batch[5])
{
    return tg_pg_run(st, &prune_stmt, 5, batch, "count a prune in the audit summary");
}

int tg_pg_counts_duration_call(struct tg_store *st, const char *sub_id, int seq)
{
    char seqs[TG_PG_I64_LEN];
    const char *p[] = {sub_id, tg_pg_i64(seqs, seq)};
    return tg_pg_run(st, &duration_call_stmt, 2, p, "count a run's duration");
}

/* Past days' rows, folded into shard 0 (the view's sums are unchanged), and those that
 * hold nothing removed: $1 is today. Two statements: one may not both delete a row and
 * update it on conflict. */
static const struct tg_pg_stmt fold_stmt = {
    "counts_fold",
    "WITH d AS (DELETE FROM summary_counts WHERE day COLLATE \"C\" < $1 AND shard <> 0"
    " RETURNING team_id, day, state, processor, submissions, runs)"
    INSERT_COUNTS
    "SELECT team_id, day, state, processor, 0, sum(submissions), sum(runs) FROM d"
    " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4" UPSERT};
static const struct tg_pg_stmt empty_stmt = {
    "counts_empty",
    "DELETE FROM summary_counts WHERE day COLLATE \"C\" < $1 AND submissions = 0"
    " AND runs = 0"};
/* The same for the durations. */
static const struct tg_pg_stmt dur_fold_stmt = {
    "counts_dur_fold",
    "WITH d AS (DELETE FROM duration_counts WHERE day COLLATE \"C\" < $1 AND shard <> 0"
    " RETURNING team_id, day, processor, bucket_ms, runs, total_ms, max_ms) "
    TG_PG_DURATIONS_INSERT
    "SELECT team_id, day, processor, bucket_ms, 0, sum(runs), sum(total_ms), max(max_ms)"
    " FROM d GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4" TG_PG_DURATIONS_UPSERT};
static const struct tg_pg_stmt dur_empty_stmt = {
    "counts_dur_empty",
    "DELETE FROM duration_counts WHERE day COLLATE \"C\" < $1 AND runs = 0"};

static int compact_w(struct tg_store *st, void *arg)
{
    const char *const *today = arg;
    const struct tg_pg_stmt *steps[] = {&fold_stmt, &empty_stmt, &dur_fold_stmt,
                                        &dur_empty_stmt};
    int rc = TG_OK;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && rc == TG_OK; i++)
        rc = tg_pg_run(st, steps[i], 1, today, "fold the audit summary");
    return rc;
}

int tg_pg_summary_compact(struct tg_store *st)
{
    char now[TG_TIME_LEN], today[11];
    tg_pg_now_text(now);
    snprintf(today, sizeof(today), "%.10s", now);
    const char *p[] = {today};
    return tg_pg_write(st, compact_w, (void *)p);
}
