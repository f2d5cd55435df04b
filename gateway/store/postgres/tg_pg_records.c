/* The PostgreSQL backend: the audit records' writes (contract in tg_store.h, reference
 * behaviour in sqlite/tg_sqlite_records.c): a submission from admission to its final state,
 * each upstream call with the runs it created (one statement for all of a call's runs),
 * and the settling of what a daemon gone (its lease run out) left pending. Every write is
 * a transaction of its own on the caller's handle, and those of the request path are one
 * statement each (tg_pg_write_one: no BEGIN and COMMIT round trips); what must hold across
 * daemons (a final state never rewritten) is decided by the UPDATEs' WHERE clauses, which
 * the server evaluates again on the newest row after waiting for its lock. */
#include "tg_pg_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The submission and, in the same statement, its count in the audit summary (under no
 * processor: it has no run yet); the answer's row count is the submission's. */
static const struct tg_pg_stmt sub_insert_stmt = {
    "records_sub_insert",
    "WITH ins AS (INSERT INTO submissions (id, team_id, token_id, request_id, received_at,"
    " completed_at, remote_addr, interface, taskgroup_id, num_inputs, state,"
    " http_status, error, request, resumes, daemon_id)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    " RETURNING team_id, received_at, state) " TG_PG_COUNT_NEW("ins")};

/* The same row for a team without limits or budgets only ($2 the team): admission's one statement
 * when no idempotency record is involved. No row written: the team has limits. */
static const struct tg_pg_stmt sub_admit_stmt = {
    "records_sub_admit",
    "WITH ins AS (INSERT INTO submissions (id, team_id, token_id, request_id, received_at,"
    " completed_at, remote_addr, interface, taskgroup_id, num_inputs, state,"
    " http_status, error, request, resumes, daemon_id)"
    " SELECT $1, $2::bigint, $3, $4, $5, $6, $7, $8, $9, $10::bigint, $11, $12::bigint,"
    " $13, $14, $15, $16"
    " WHERE NOT EXISTS (SELECT 1 FROM team_limits WHERE team_id = $2::bigint"
    "  AND (runs_per_minute > 0 OR in_flight > 0))"
    " AND NOT EXISTS (SELECT 1 FROM team_budgets WHERE team_id = $2::bigint)"
    " RETURNING team_id, received_at, state) " TG_PG_COUNT_NEW("ins")};

static const struct tg_pg_stmt sub_group_stmt = {
    "records_sub_group",
    "UPDATE submissions SET taskgroup_id = $2 WHERE id = $1 AND state = 'pending'"};

/* A final state is never rewritten; only reconciliation may settle 'unknown'. The counts
 * move with it (TG_PG_COUNT_CHANGE, no runs); the answer is how many rows u touched. */
static const struct tg_pg_stmt sub_finish_stmt = {
    "records_sub_finish",
    "WITH u AS (UPDATE submissions x SET state = $2, http_status = $3::bigint,"
    " upstream_status = coalesce($4::bigint, x.upstream_status), error = $5,"
    " completed_at = $6 FROM (" TG_PG_WAS ") o"
    " WHERE x.id = $1 AND (x.state = 'pending'"
    "   OR (x.state = 'unknown' AND $2 IN ('accepted', 'failed')))"
    " RETURNING x.team_id, x.received_at, o.state AS old_state, x.state AS new_state),"
    " r AS (SELECT NULL::text AS processor WHERE false)" TG_PG_COUNT_CHANGE
    " SELECT count(*) FROM u"};

static const struct tg_pg_stmt sub_state_stmt = {
    "records_sub_state", "SELECT state FROM submissions WHERE id = $1"};

/* A call in one statement: the submission's UPDATE (u), the call's row when u touched one
 * (c), its runs (r: $17 the ids and $18 the processors as text arrays, input i at $6 + i;
 * one recorded already fails the whole statement, which is its own transaction) and their
 * counts in the audit summary (TG_PG_COUNT_CHANGE). $1..$15 are the call's columns as in
 * call_insert_stmt, $16 the group it made; the answer is how many rows u touched. */
#define CALL_ROWS_SQL \
    ", c AS (INSERT INTO upstream_calls (submission_id, seq, operation, method, path," \
    " first_input, num_inputs, started_at, finished_at, duration_ms, outcome," \
    " http_status, run_cursor, event_cursor, error)" \
    " SELECT $1, $2::bigint, $3, $4, $5, $6::bigint, $7::bigint, $8, $9, $10::bigint, $11," \
    " $12::bigint, $13, $14, $15 FROM u RETURNING seq)" \
    ", r AS (INSERT INTO runs (run_id, submission_id, call_seq, input_index, processor)" \
    " SELECT x.id, $1, c.seq, $6::bigint + x.ord - 1, x.proc" \
    " FROM c, unnest($17::text[], $18::text[]) WITH ORDINALITY AS x(id, proc, ord)" \
    " RETURNING processor)" TG_PG_COUNT_CHANGE \
    " SELECT count(*) FROM u"

/* call_record: u sets the last call's status (NULL when it got no answer) and the group it
 * made on an open submission. */
static const struct tg_pg_stmt call_record_stmt = {
    "records_call_record",
    "WITH u AS (UPDATE submissions SET upstream_status = $12::bigint,"
    " taskgroup_id = coalesce($16, taskgroup_id)"
    " WHERE id = $1 AND state IN ('pending', 'unknown')"
    " RETURNING team_id, received_at, state AS old_state, state AS new_state)" CALL_ROWS_SQL};

/* call_finish: u is SQLite's two UPDATEs of the submission (the call's status, then the
 * final state $19 with $20 the client's status, $21 the error, $22 now) as one, under the
 * stricter WHERE of the two (the final state's). */
static const struct tg_pg_stmt call_finish_stmt = {
    "records_call_finish",
    "WITH u AS (UPDATE submissions x SET upstream_status = $12::bigint,"
    " taskgroup_id = coalesce($16, x.taskgroup_id), state = $19, http_status = $20::bigint,"
    " error = $21, completed_at = $22 FROM (" TG_PG_WAS ") o"
    " WHERE x.id = $1 AND (x.state = 'pending'"
    "   OR (x.state = 'unknown' AND $19 IN ('accepted', 'failed')))"
    " RETURNING x.team_id, x.received_at, o.state AS old_state, x.state AS new_state)"
    CALL_ROWS_SQL};

static const struct tg_pg_stmt call_insert_stmt = {
    "records_call_insert",
    "INSERT INTO upstream_calls (submission_id, seq, operation, method, path,"
    " first_input, num_inputs, started_at, finished_at, duration_ms, outcome,"
    " http_status, run_cursor, event_cursor, error)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"};

/* All of a call's runs in one statement: $1 the ids and $5 the processors (NULL: none) as
 * text arrays, input i at $4 + i. A run id already recorded is skipped rather than
 * aborting the transaction, so that the caller can say which one (runs_dup_stmt) and then
 * roll everything back; the answer is how many were inserted. */
static const struct tg_pg_stmt runs_insert_stmt = {
    "records_runs_insert",
    "WITH ins AS (INSERT INTO runs (run_id, submission_id, call_seq, input_index, processor)"
    " SELECT u.id, $2, $3, $4::bigint + u.ord - 1, u.proc"
    " FROM unnest($1::text[], $5::text[]) WITH ORDINALITY AS u(id, proc, ord)"
    " ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT count(*) FROM ins"};

/* The first of those ids whose row is not the one just written for it. */
static const struct tg_pg_stmt runs_dup_stmt = {
    "records_runs_dup",
    "SELECT u.id FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)"
    " WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = u.id"
    "  AND r.submission_id = $2 AND r.call_seq = $3 AND r.input_index = $4::bigint + u.ord - 1)"
    " ORDER BY u.ord LIMIT 1"};

/* The first of the ids $1 that a run recorded already has, or that comes twice: the one
 * a call's statement failed on. */
static const struct tg_pg_stmt runs_clash_stmt = {
    "records_runs_clash",
    "SELECT u.id FROM unnest($1::text[]) WITH ORDINALITY AS u(id, ord)"
    " WHERE EXISTS (SELECT 1 FROM runs r WHERE r.run_id = u.id)"
    "  OR EXISTS (SELECT 1 FROM unnest($1::text[]) WITH ORDINALITY AS v(id, ord)"
    "   WHERE v.id = u.id AND v.ord < u.ord)"
    " ORDER BY u.ord LIMIT 1"};

static const struct tg_pg_stmt any_pending_stmt = {
    "records_any_pending",
    "SELECT EXISTS (SELECT 1 FROM submissions WHERE state = 'pending')"};

/* The pending submissions of no daemon, or of another ($2: this one's id, NULL for the
 * command line) whose lease has run out by $1 (a daemon that stopped cleanly ended its
 * lease then; one whose row is gone has none). The row lock makes two daemons settling at
 * once settle each submission once: the second finds it no longer pending. */
static const struct tg_pg_stmt recover_stmt = {
    "records_recover",
    "WITH u AS (UPDATE submissions s SET state = 'unknown', completed_at = $1,"
    " error = 'the daemon stopped before the outcome was recorded'"
    " WHERE s.state = 'pending' AND (s.daemon_id IS NULL"
    "  OR (s.daemon_id IS DISTINCT FROM $2::text AND NOT EXISTS (SELECT 1 FROM daemons d"
    "   WHERE d.id = s.daemon_id AND d.lease_until > $1)))"
    " RETURNING s.id, s.team_id, s.received_at)"
    /* The audit summary: each moves from pending to unknown with its runs (tg_pg_counts.c). */
    ", k AS (INSERT INTO summary_counts (team_id, day, state, processor, shard, submissions,"
    " runs) SELECT u.team_id, substr(u.received_at, 1, 10), m.state,"
    " coalesce(r.processor, ''), pg_backend_pid(), m.sign * count(DISTINCT u.id),"
    " m.sign * count(r.run_id)"
    " FROM u CROSS JOIN (VALUES ('pending', -1), ('unknown', 1)) AS m(state, sign)"
    " LEFT JOIN runs r ON r.submission_id = u.id"
    " GROUP BY 1, 2, 3, 4, m.sign ORDER BY 1, 2, 3, 4"
    " ON CONFLICT (team_id, day, state, processor, shard) DO UPDATE SET"
    " submissions = summary_counts.submissions + excluded.submissions,"
    " runs = summary_counts.runs + excluded.runs)"
    " SELECT count(*) FROM u"};

/* ---- helpers ----------------------------------------------------------------------------- */

/* How many rows an UPDATE or DELETE touched. */
static long changed(PGresult *res)
{
    const char *n = PQcmdTuples(res);
    return n != NULL && *n != '\0' ? strtol(n, NULL, 10) : 0;
}

/* Runs a statement that writes rows; *n receives how many it touched. */
static int run_count(struct tg_store *st, const struct tg_pg_stmt *s, int n,
                     const char *const *params, const char *what, long *count)
{
    PGresult *res;
    *count = 0;
    int rc = tg_pg_exec(st, s, n, params, &res, what);
    if (rc == TG_OK) {
        *count = changed(res);
        PQclear(res);
    }
    return rc;
}

/* The submission's state into state ("" when none): TG_OK or TG_ENOTFOUND. */
static int sub_state(struct tg_store *st, const char *sub_id, char *state, size_t len,
                     const char *what)
{
    PGresult *res;
    const char *p[] = {sub_id};
    *state = '\0';
    int rc = tg_pg_one(st, &sub_state_stmt, 1, p, &res, what);
    if (rc == TG_OK) {
        tg_pg_copy(state, len, res, 0, 0);
        PQclear(res);
    }
    return rc;
}

/* Why an update guarded by the submission's state touched no row: TG_ENOTFOUND when the
 * submission does not exist, TG_EINVAL when its state forbids the change. */
static int refusal(struct tg_store *st, const char *sub_id, const char *what)
{
    char state[16];
    int rc = sub_state(st, sub_id, state, sizeof(state), what);
    if (rc == TG_OK) {
        tg_pg_set_err(st, "%s: submission %.64s is already %s; its record is not rewritten",
                      what, sub_id, state);
        rc = TG_EINVAL;
    } else if (rc == TG_ENOTFOUND) {
        tg_pg_set_err(st, "%s: no submission %.64s", what, sub_id);
    }
    return rc;
}

int tg_pg_text_array(struct tg_buf *b, const char *const *v, size_t n)
{
    int rc = tg_buf_add(b, "{", 1);
    for (size_t i = 0; rc == TG_OK && i < n; i++) {
        if (i > 0)
            rc = tg_buf_add(b, ",", 1);
        if (rc == TG_OK && (v == NULL || v[i] == NULL)) {
            rc = tg_buf_add(b, "NULL", 4);
            continue;
        }
        if (rc == TG_OK)
            rc = tg_buf_add(b, "\"", 1);
        for (const char *c = v[i]; rc == TG_OK && *c != '\0'; c++) {
            size_t span = strcspn(c, "\"\\");
            rc = tg_buf_add(b, c, span);
            c += span;
            if (rc != TG_OK || *c == '\0')
                break;
            char esc[2] = {'\\', *c};
            rc = tg_buf_add(b, esc, 2);
        }
        if (rc == TG_OK)
            rc = tg_buf_add(b, "\"", 1);
    }
    if (rc == TG_OK)
        rc = tg_buf_add(b, "}", 1);
    return rc;
}

/* The most bytes a call's run ids (or processors) take as one array literal. */
#define RUNS_ARRAY_MAX ((size_t)64 << 20)

int tg_pg_runs_insert(struct tg_store *st, const char *sub_id, int seq, int first_input,
                      size_t n, const char *const *run_ids, const char *const *processors)
{
    if (n == 0)
        return TG_OK;
    struct tg_buf ids, procs;
    tg_buf_init(&ids, RUNS_ARRAY_MAX);
    tg_buf_init(&procs, RUNS_ARRAY_MAX);
    char seqs[TG_PG_I64_LEN], firsts[TG_PG_I64_LEN];
    PGresult *res = NULL;
    int rc = tg_pg_text_array(&ids, run_ids, n);
    if (rc == TG_OK && processors != NULL)
        rc = tg_pg_text_array(&procs, processors, n);
    if (rc != TG_OK) {
        tg_pg_set_err(st, "record runs: %zu runs are too many for one statement", n);
        goto out;
    }
    const char *p[] = {tg_buf_str(&ids), sub_id, tg_pg_i64(seqs, seq),
                       tg_pg_i64(firsts, first_input),
                       processors != NULL ? tg_buf_str(&procs) : NULL};
    rc = tg_pg_counts_runs(st, sub_id, n, processors);
    if (rc == TG_OK)
        rc = tg_pg_one(st, &runs_insert_stmt, 5, p, &res, "record runs");
    if (rc != TG_OK)
        goto out;
    if ((size_t)tg_pg_int(res, 0, 0) == n)
        goto out;
    PQclear(res);
    res = NULL;
    /* One of them is recorded already (by another submission, or twice in this call). */
    rc = tg_pg_one(st, &runs_dup_stmt, 4, p, &res, "record runs");
    if (rc == TG_OK)
        tg_pg_set_err(st, "run %.100s is already recorded", tg_pg_text(res, 0, 0));
    else if (rc == TG_ENOTFOUND)
        tg_pg_set_err(st, "a run of call %d of submission %.64s is already recorded", seq,
                      sub_id);
    rc = rc == TG_OK || rc == TG_ENOTFOUND ? TG_EEXIST : rc;
out:
    PQclear(res);
    tg_buf_free(&ids);
    tg_buf_free(&procs);
    return rc;
}

/* ---- submissions ------------------------------------------------------------------------- */

#define SUB_PARAMS 16
#define EXTRA_MAX 8

int tg_pg_sub_stmt(struct tg_store *st, const struct tg_pg_stmt *s,
                   const struct tg_submission *sub, const char *resumes, enum tg_state state,
                   int http_status, const char *error, const char *const *extra, int nextra,
                   PGresult **res)
{
    *res = NULL;
    if (sub == NULL || sub->id == NULL || sub->interface == NULL || sub->num_inputs < 0)
        return tg_pg_invalid(st, "a submission needs an id, an interface and num_inputs >= 0");
    if (nextra < 0 || nextra > EXTRA_MAX)
        return tg_pg_invalid(st, "record submission: too many parameters");
    char received[TG_TIME_LEN], now[TG_TIME_LEN];
    char team[TG_PG_I64_LEN], inputs[TG_PG_I64_LEN], status[TG_PG_I64_LEN];
    tg_pg_now_text(now);
    if (sub->received_ms > 0)
        tg_time_format(sub->received_ms, received);
    else
        memcpy(received, now, sizeof(received));
    const char *p[SUB_PARAMS + EXTRA_MAX] = {sub->id,
                                             tg_pg_i64(team, sub->team_id),
                                             sub->token_id,
                                             sub->request_id,
                                             received,
                                             state == TG_STATE_PENDING ? NULL : now,
                                             sub->remote_addr,
                                             sub->interface,
                                             sub->taskgroup_id,
                                             tg_pg_i64(inputs, sub->num_inputs),
                                             tg_domain_state_name(state),
                                             tg_pg_i64_or_null(status, http_status),
                                             error,
                                             sub->request,
                                             resumes,
                                             tg_store_daemon_id()};
    for (int i = 0; i < nextra; i++)
        p[SUB_PARAMS + i] = extra[i];
    int rc = tg_pg_exec(st, s, SUB_PARAMS + nextra, p, res, "record submission");
    if (rc == TG_EEXIST)
        tg_pg_set_err(st, "submission %.64s is already recorded", sub->id);
    else if (rc == TG_ENOTFOUND)
        tg_pg_set_err(st, "record submission: no team %lld or no token %.40s",
                      (long long)sub->team_id, sub->token_id != NULL ? sub->token_id : "");
    return rc;
}

/* The submission's row by s (sub_insert_stmt, or sub_admit_stmt); *n receives how many
 * rows it wrote. */
static int sub_row(struct tg_store *st, const struct tg_pg_stmt *s,
                   const struct tg_submission *sub, const char *resumes, enum tg_state state,
                   int http_status, const char *error, long *n)
{
    PGresult *res;
    int rc = tg_pg_sub_stmt(st, s, sub, resumes, state, http_status, error, NULL, 0, &res);
    *n = rc == TG_OK ? changed(res) : 0;
    PQclear(res);
    return rc;
}

int tg_pg_sub_insert(struct tg_store *st, const struct tg_submission *sub, const char *resumes,
                     enum tg_state state, int http_status, const char *error)
{
    long n;
    return sub_row(st, &sub_insert_stmt, sub, resumes, state, http_status, error, &n);
}

struct sub_admit_write {
    const struct tg_submission *sub;
    const char *resumes;
    int *admitted;
};

static int sub_admit_w(struct tg_store *st, void *arg)
{
    const struct sub_admit_write *a = arg;
    long n;
    int rc = sub_row(st, &sub_admit_stmt, a->sub, a->resumes, TG_STATE_PENDING, 0, NULL, &n);
    *a->admitted = rc == TG_OK && n > 0;
    return rc;
}

int tg_pg_sub_admit(struct tg_store *st, const struct tg_submission *sub, const char *resumes,
                    int *admitted)
{
    *admitted = 0;
    struct sub_admit_write a = {sub, resumes, admitted};
    return tg_pg_write_one(st, sub_admit_w, &a);
}

struct sub_write {
    const struct tg_submission *sub;
    enum tg_state state;
    int http_status;
    const char *error;
};

static int sub_insert_w(struct tg_store *st, void *arg)
{
    const struct sub_write *a = arg;
    return tg_pg_sub_insert(st, a->sub, NULL, a->state, a->http_status, a->error);
}

static int sub_insert(struct tg_store *st, const struct tg_submission *sub,
                      enum tg_state state, int http_status, const char *error)
{
    struct sub_write a = {sub, state, http_status, error};
    return tg_pg_write_one(st, sub_insert_w, &a);
}

int tg_pg_submission_begin(struct tg_store *st, const struct tg_submission *sub)
{
    return sub_insert(st, sub, TG_STATE_PENDING, 0, NULL);
}

int tg_pg_submission_reject(struct tg_store *st, const struct tg_submission *sub,
                            int http_status, const char *error)
{
    return sub_insert(st, sub, TG_STATE_REJECTED, http_status, error);
}

static int sub_group_w(struct tg_store *st, void *arg)
{
    const char *const *a = arg;
    long n;
    int rc = run_count(st, &sub_group_stmt, 2, a, "record group", &n);
    if (rc == TG_OK && n == 0)
        rc = refusal(st, a[0], "record group");
    return rc;
}

int tg_pg_submission_group(struct tg_store *st, const char *sub_id, const char *taskgroup_id)
{
    if (sub_id == NULL || taskgroup_id == NULL)
        return tg_pg_invalid(st, "submission group: missing argument");
    const char *a[2] = {sub_id, taskgroup_id};
    return tg_pg_write_one(st, sub_group_w, a);
}

/* The final-state UPDATE, inside the caller's transaction. */
static int finish_in_tx(struct tg_store *st, const char *sub_id, enum tg_state state,
                        int http_status, int upstream_status, const char *error)
{
    char now[TG_TIME_LEN], http[TG_PG_I64_LEN], up[TG_PG_I64_LEN];
    tg_pg_now_text(now);
    const char *p[] = {sub_id,
                       tg_domain_state_name(state),
                       tg_pg_i64_or_null(http, http_status),
                       tg_pg_i64_or_null(up, upstream_status),
                       error,
                       now};
    PGresult *res;
    long n = 0;
    int rc = tg_pg_one(st, &sub_finish_stmt, 6, p, &res, "finish submission");
    if (rc == TG_OK) {
        n = (long)tg_pg_int(res, 0, 0);
        PQclear(res);
    }
    if (rc == TG_OK && n == 0)
        rc = refusal(st, sub_id, "finish submission");
    return rc;
}

static int check_final(struct tg_store *st, const char *sub_id, enum tg_state state)
{
    if (sub_id == NULL)
        return tg_pg_invalid(st, "finish: no submission id");
    if (state == TG_STATE_PENDING || (unsigned)state > TG_STATE_UNKNOWN)
        return tg_pg_invalid(st, "finish: the final state must be accepted, rejected, failed "
                                 "or unknown");
    return TG_OK;
}

struct finish_write {
    const char *sub_id;
    enum tg_state state;
    int http_status;
    int upstream_status;
    const char *error;
};

static int finish_w(struct tg_store *st, void *arg)
{
    const struct finish_write *a = arg;
    return finish_in_tx(st, a->sub_id, a->state, a->http_status, a->upstream_status,
                        a->error);
}

int tg_pg_submission_finish(struct tg_store *st, const char *sub_id, enum tg_state state,
                            int http_status, int upstream_status, const char *error)
{
    int rc = check_final(st, sub_id, state);
    if (rc != TG_OK)
        return rc;
    struct finish_write a = {sub_id, state, http_status, upstream_status, error};
    return tg_pg_write_one(st, finish_w, &a);
}

/* ---- calls and runs ---------------------------------------------------------------------- */

static int check_call(struct tg_store *st, const struct tg_call *c)
{
    if (c == NULL || c->submission_id == NULL || c->operation == NULL || c->method == NULL ||
        c->path == NULL)
        return tg_pg_invalid(st, "a call needs a submission, an operation, a method and a path");
    if ((unsigned)c->outcome > TG_OUTCOME_NOT_SENT)
        return tg_pg_invalid(st, "unknown call outcome");
    if (c->num_runs == 0)
        return TG_OK;
    if (c->run_ids == NULL || c->first_input < 0 ||
        c->num_runs > (size_t)(INT_MAX - c->first_input))
        return tg_pg_invalid(st, "a call with runs needs run ids and a first input");
    for (size_t i = 0; i < c->num_runs; i++)
        if (c->run_ids[i] == NULL)
            return tg_pg_invalid(st, "a run id is missing");
    return TG_OK;
}

static int insert_call(struct tg_store *st, const struct tg_call *c)
{
    char started[TG_TIME_LEN], finished[TG_TIME_LEN];
    char seq[TG_PG_I64_LEN], first[TG_PG_I64_LEN], inputs[TG_PG_I64_LEN];
    char dur[TG_PG_I64_LEN], http[TG_PG_I64_LEN];
    tg_time_format(c->started_ms, started);
    tg_time_format(c->started_ms + (c->duration_ms > 0 ? c->duration_ms : 0), finished);
    const char *p[] = {c->submission_id,
                       tg_pg_i64(seq, c->seq),
                       c->operation,
                       c->method,
                       c->path,
                       c->first_input >= 0 ? tg_pg_i64(first, c->first_input) : NULL,
                       tg_pg_i64(inputs, c->num_inputs),
                       started,
                       c->outcome == TG_OUTCOME_NOT_SENT ? NULL : finished,
                       tg_pg_i64(dur, c->duration_ms),
                       tg_domain_outcome_name(c->outcome),
                       tg_pg_i64_or_null(http, c->http_status),
                       c->run_cursor,
                       c->event_cursor,
                       c->error};
    int rc = tg_pg_run(st, &call_insert_stmt, 15, p, "record upstream call");
    if (rc == TG_EEXIST)
        tg_pg_set_err(st, "call %d of submission %.64s is already recorded", c->seq,
                      c->submission_id);
    return rc;
}

/* The call's rows on their own (call_finish_w's rare path). */
static int call_rows(struct tg_store *st, const struct tg_call *c)
{
    int rc = insert_call(st, c);
    if (rc == TG_OK)
        rc = tg_pg_runs_insert(st, c->submission_id, c->seq, c->first_input, c->num_runs,
                               c->run_ids, c->processors);
    return rc;
}

/* A call's 18 parameters of call_record_stmt (the ids' arrays built in the buffers). */
struct call_params {
    char started[TG_TIME_LEN], finished[TG_TIME_LEN];
    char seq[TG_PG_I64_LEN], first[TG_PG_I64_LEN], inputs[TG_PG_I64_LEN];
    char dur[TG_PG_I64_LEN], http[TG_PG_I64_LEN];
    struct tg_buf ids, procs;
    const char *p[22];
};

static int call_params(struct tg_store *st, const struct tg_call *c, struct call_params *cp)
{
    tg_time_format(c->started_ms, cp->started);
    tg_time_format(c->started_ms + (c->duration_ms > 0 ? c->duration_ms : 0), cp->finished);
    tg_buf_init(&cp->ids, RUNS_ARRAY_MAX);
    tg_buf_init(&cp->procs, RUNS_ARRAY_MAX);
    int rc = TG_OK;
    if (c->num_runs > 0)
        rc = tg_pg_text_array(&cp->ids, c->run_ids, c->num_runs);
    if (rc == TG_OK && c->num_runs > 0 && c->processors != NULL)
        rc = tg_pg_text_array(&cp->procs, c->processors, c->num_runs);
    if (rc != TG_OK) {
        tg_pg_set_err(st, "record runs: %zu runs are too many for one statement", c->num_runs);
        return rc;
    }
    const char *p[18] = {c->submission_id,
                         tg_pg_i64(cp->seq, c->seq),
                         c->operation,
                         c->method,
                         c->path,
                         c->first_input >= 0 ? tg_pg_i64(cp->first, c->first_input) : NULL,
                         tg_pg_i64(cp->inputs, c->num_inputs),
                         cp->started,
                         c->outcome == TG_OUTCOME_NOT_SENT ? NULL : cp->finished,
                         tg_pg_i64(cp->dur, c->duration_ms),
                         tg_domain_outcome_name(c->outcome),
                         tg_pg_i64_or_null(cp->http, c->http_status),
                         c->run_cursor,
                         c->event_cursor,
                         c->error,
                         c->taskgroup_id,
                         c->num_runs > 0 ? tg_buf_str(&cp->ids) : NULL,
                         c->num_runs > 0 && c->processors != NULL ? tg_buf_str(&cp->procs)
                                                                  : NULL};
    memcpy(cp->p, p, sizeof(p));
    return TG_OK;
}

static void call_params_free(struct call_params *cp)
{
    tg_buf_free(&cp->ids);
    tg_buf_free(&cp->procs);
}

/* Runs s (call_record_stmt or call_finish_stmt) with n of cp's parameters, as a
 * transaction of its own: TG_OK with how many rows its UPDATE touched in *updated (none:
 * it wrote nothing), TG_EEXIST when the call or one of its runs is recorded already (it
 * wrote nothing either; which run is read afterwards). */
static int call_stmt(struct tg_store *st, const struct tg_pg_stmt *s, int n,
                     const struct tg_call *c, const struct call_params *cp, long *updated)
{
    PGresult *res;
    *updated = 0;
    int rc = tg_pg_one(st, s, n, cp->p, &res, "record upstream call");
    if (rc == TG_OK) {
        *updated = (long)tg_pg_int(res, 0, 0);
        PQclear(res);
        return TG_OK;
    }
    if (rc != TG_EEXIST)
        return rc;
    if (strcmp(st->constraint, "runs_id") != 0) {
        tg_pg_set_err(st, "call %d of submission %.64s is already recorded", c->seq,
                      c->submission_id);
        return rc;
    }
    /* One of them is recorded already (by another submission, or twice in this call). */
    const char *p[] = {cp->p[16]};
    rc = tg_pg_one(st, &runs_clash_stmt, 1, p, &res, "record runs");
    if (rc == TG_OK) {
        tg_pg_set_err(st, "run %.100s is already recorded", tg_pg_text(res, 0, 0));
        PQclear(res);
    } else if (rc == TG_ENOTFOUND) {
        tg_pg_set_err(st, "a run of call %d of submission %.64s is already recorded", c->seq,
                      c->submission_id);
    }
    return rc == TG_OK || rc == TG_ENOTFOUND ? TG_EEXIST : rc;
}

/* The call, its runs and the submission's upstream status, in one statement. */
static int call_one(struct tg_store *st, const struct tg_call *call)
{
    struct call_params cp;
    long n = 0;
    int rc = call_params(st, call, &cp);
    if (rc == TG_OK)
        rc = call_stmt(st, &call_record_stmt, 18, call, &cp, &n);
    if (rc == TG_OK && n == 0)
        rc = refusal(st, call->submission_id, "record upstream call");
    call_params_free(&cp);
    return rc;
}

static int call_w(struct tg_store *st, void *arg)
{
    const struct tg_call *const *call = arg;
    return call_one(st, *call);
}

int tg_pg_call_record(struct tg_store *st, const struct tg_call *call)
{
    int rc = check_call(st, call);
    if (rc != TG_OK)
        return rc;
    return tg_pg_write_one(st, call_w, &call);
}

struct call_finish_write {
    const struct tg_call *call;
    enum tg_state state;
    int http_status;
    const char *error;
    int refused; /* the statement wrote nothing: the submission may not take it */
};

static int call_finish_w(struct tg_store *st, void *arg)
{
    struct call_finish_write *a = arg;
    struct call_params cp;
    char now[TG_TIME_LEN], http[TG_PG_I64_LEN];
    long n = 0;
    a->refused = 0;
    int rc = call_params(st, a->call, &cp);
    if (rc == TG_OK) {
        tg_pg_now_text(now);
        cp.p[18] = tg_domain_state_name(a->state);
        cp.p[19] = tg_pg_i64_or_null(http, a->http_status);
        cp.p[20] = a->error;
        cp.p[21] = now;
        rc = call_stmt(st, &call_finish_stmt, 22, a->call, &cp, &n);
        a->refused = rc == TG_OK && n == 0;
    }
    call_params_free(&cp);
    return rc;
}

/* Why call_finish_w wrote nothing, in SQLite's order of checks: the submission must be
 * open (else the call's refusal), the call and its runs must be new, then the final state
 * must be one the submission may take (else the finish's refusal). The call's rows are
 * tried on their own for what SQLite would have said first, in a transaction that every
 * answer here rolls back. */
static int call_refusal_w(struct tg_store *st, void *arg)
{
    const struct call_finish_write *a = arg;
    const struct tg_call *c = a->call;
    char state[16];
    int rc = sub_state(st, c->submission_id, state, sizeof(state), "record upstream call");
    if (rc == TG_ENOTFOUND ||
        (rc == TG_OK && strcmp(state, "pending") != 0 && strcmp(state, "unknown") != 0))
        return refusal(st, c->submission_id, "record upstream call");
    if (rc == TG_OK)
        rc = call_rows(st, c);
    if (rc == TG_OK)
        rc = refusal(st, c->submission_id, "finish submission");
    return rc;
}

int tg_pg_call_finish(struct tg_store *st, const struct tg_call *call, enum tg_state state,
                      int http_status, const char *error)
{
    int rc = check_call(st, call);
    if (rc == TG_OK)
        rc = check_final(st, call->submission_id, state);
    if (rc != TG_OK)
        return rc;
    struct call_finish_write a = {call, state, http_status, error, 0};
    rc = tg_pg_write_one(st, call_finish_w, &a);
    if (rc == TG_OK && a.refused)
        rc = tg_pg_write(st, call_refusal_w, &a);
    return rc;
}

/* ---- what a daemon gone left -------------------------------------------------------------- */

struct recover_write {
    long *n;
};

static int recover_w(struct tg_store *st, void *arg)
{
    const struct recover_write *a = arg;
    char now[TG_TIME_LEN];
    tg_pg_now_text(now);
    const char *p[] = {now, tg_store_daemon_id()};
    PGresult *res = NULL;
    int rc = tg_pg_one(st, &recover_stmt, 2, p, &res, "settle pending submissions");
    if (a->n != NULL)
        *a->n = rc == TG_OK ? (long)tg_pg_int(res, 0, 0) : 0;
    PQclear(res);
    return rc;
}

/* Only what a daemon gone left pending (its lease, renewed by tg_pg_claim.c, ran out by
 * this host's clock: hosts' clocks must agree to well within TG_STORE_LEASE_MS) becomes
 * unknown; live daemons' in-flight submissions, this one's included, are theirs. The look
 * first is a read, so that a server that refuses writes still lets the daemon start when
 * there is nothing to settle. */
int tg_pg_recover_pending(struct tg_store *st, long *n)
{
    if (n != NULL)
        *n = 0;
    PGresult *res;
    int rc = tg_pg_one(st, &any_pending_stmt, 0, NULL, &res, "look for pending submissions");
    if (rc != TG_OK)
        return rc;
    int pending = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!pending)
        return TG_OK;
    struct recover_write a = {n};
    return tg_pg_write(st, recover_w, &a);
}
