/* The PostgreSQL backend: the records behind "never a duplicate, never a lost run"
 * (contract in tg_store.h, reference behaviour in sqlite/tg_sqlite_admission.c):
 * idempotency records, admission with per-team limits, and reconciliation.
 *
 * Across daemons sharing the server, each guarantee is decided in the admitting
 * transaction: a team with limits has its team_limits row locked (FOR UPDATE) before
 * anything is counted, so that its admissions run one after another and each counts what
 * the ones before committed (READ COMMITTED gives every statement a fresh snapshot), while
 * a submission of a team without limits is admitted by one statement that finds no limits,
 * takes its record when it has one and writes its row at once; an idempotency key is taken
 * by an INSERT ... ON CONFLICT that overwrites only an expired record, or an UPDATE of the
 * record still naming the submission being replaced, so of two daemons taking the same key
 * at once the second waits for the first's commit and then fails with TG_EEXIST (read the
 * record again: the first's submission); a
 * reconciliation settles a submission only while it is still unknown, which the server
 * checks again on the row it waited for. */
#include "tg_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct tg_pg_stmt idem_get_stmt = {
    "adm_idem_get",
    "SELECT i.submission_id, i.request_hash, s.state, i.answer_status, i.answer_type,"
    " i.answer_body FROM idempotency i LEFT JOIN submissions s ON s.id = i.submission_id"
    " WHERE i.team_id = $1 AND i.kind = $2 AND i.key = $3 AND i.expires_ms > $4"};

static const struct tg_pg_stmt limits_get_stmt = {
    "adm_limits_get", "SELECT runs_per_minute, in_flight FROM team_limits WHERE team_id = $1"};

/* The same, locking the row of a team that has a limit: the team's admissions are decided
 * one at a time, on every daemon. A team without one takes no lock. The third column says
 * whether the team also has a budget (tg_pg_usage.c). */
static const struct tg_pg_stmt limits_lock_stmt = {
    "adm_limits_lock",
    "SELECT runs_per_minute, in_flight,"
    " EXISTS (SELECT 1 FROM team_budgets WHERE team_id = $1)::int FROM team_limits"
    " WHERE team_id = $1 AND (runs_per_minute > 0 OR in_flight > 0) FOR UPDATE"};

static const struct tg_pg_stmt inflight_stmt = {
    "adm_inflight",
    "SELECT count(*) FROM submissions WHERE state IN ('pending') AND team_id = $1"};

static const struct tg_pg_stmt usage_get_stmt = {
    "adm_usage_get", "SELECT runs FROM team_usage WHERE team_id = $1 AND minute = $2"};

static const struct tg_pg_stmt usage_add_stmt = {
    "adm_usage_add",
    "INSERT INTO team_usage (team_id, minute, runs) VALUES ($1, $2, $3)"
    " ON CONFLICT (team_id, minute) DO UPDATE SET runs = team_usage.runs + excluded.runs"};

static const struct tg_pg_stmt usage_old_stmt = {
    "adm_usage_old", "DELETE FROM team_usage WHERE team_id = $1 AND minute < $2"};

static const struct tg_pg_stmt idem_check_stmt = {
    "adm_idem_check",
    "SELECT submission_id FROM idempotency"
    " WHERE team_id = $1 AND kind = $2 AND key = $3 AND expires_ms > $4"};

/* Takes the key: inserts the record, or overwrites one that expired ($8: now) or that
 * still names the submission being replaced ($9). No row back: another submission holds
 * it (one that committed while this waited for its row). */
static const struct tg_pg_stmt idem_put_stmt = {
    "adm_idem_put",
    "INSERT INTO idempotency (team_id, kind, key, request_hash, submission_id, created_at,"
    " expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (team_id, kind, key) DO UPDATE SET request_hash = excluded.request_hash,"
    " submission_id = excluded.submission_id, created_at = excluded.created_at,"
    " expires_ms = excluded.expires_ms, answer_status = NULL, answer_type = NULL,"
    " answer_body = NULL"
    " WHERE idempotency.expires_ms <= $8 OR idempotency.submission_id = $9::text"
    " RETURNING 1"};

/* Admission with a record for a team without limits, in one statement: ok has a row when
 * the team has no limits, put takes the key for the submission (a new record, or one that
 * expired by $22; no row: another submission holds it, one that committed while this
 * waited for its row), and the submission's row ($1..$16, as records_sub_insert) is
 * written only when put took the key, and counted in the audit summary (k). $17 the kind,
 * $18 the key, $19 the request's hash, $20 now as text, $21 the record's expiry. The
 * answer: whether ok and ins have a row. */
#define ADMIT_KEYED_HEAD \
    "WITH ok AS (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM team_limits" \
    "  WHERE team_id = $2::bigint AND (runs_per_minute > 0 OR in_flight > 0))" \
    "  AND NOT EXISTS (SELECT 1 FROM team_budgets WHERE team_id = $2::bigint))"
#define ADMIT_KEYED_TAIL \
    ", ins AS (INSERT INTO submissions (id, team_id, token_id, request_id, received_at," \
    " completed_at, remote_addr, interface, taskgroup_id, num_inputs, state," \
    " http_status, error, request, resumes, daemon_id)" \
    " SELECT $1, $2::bigint, $3, $4, $5, $6, $7, $8, $9, $10::bigint, $11, $12::bigint," \
    " $13, $14, $15, $16 FROM put RETURNING team_id, received_at, state)" \
    ", k AS (" TG_PG_COUNT_NEW("ins") ")" \
    " SELECT (SELECT count(*) FROM ok), (SELECT count(*) FROM ins)"

static const struct tg_pg_stmt admit_keyed_stmt = {
    "adm_admit_keyed",
    ADMIT_KEYED_HEAD
    ", put AS (INSERT INTO idempotency (team_id, kind, key, request_hash, submission_id,"
    " created_at, expires_ms) SELECT $2::bigint, $17, $18, $19, $1, $20, $21::bigint FROM ok"
    " ON CONFLICT (team_id, kind, key) DO UPDATE SET request_hash = excluded.request_hash,"
    " submission_id = excluded.submission_id, created_at = excluded.created_at,"
    " expires_ms = excluded.expires_ms, answer_status = NULL, answer_type = NULL,"
    " answer_body = NULL WHERE idempotency.expires_ms <= $22::bigint RETURNING 1)"
    ADMIT_KEYED_TAIL};

/* The same when the submission replaces the one the live record names ($23): put takes
 * the record only while it still names it. */
static const struct tg_pg_stmt admit_replacing_stmt = {
    "adm_admit_replacing",
    ADMIT_KEYED_HEAD
    ", put AS (UPDATE idempotency SET request_hash = $19, submission_id = $1,"
    " created_at = $20, expires_ms = $21::bigint, answer_status = NULL, answer_type = NULL,"
    " answer_body = NULL WHERE team_id = $2::bigint AND kind = $17 AND key = $18"
    " AND submission_id = $23 AND expires_ms > $22::bigint AND EXISTS (SELECT 1 FROM ok)"
    " RETURNING 1)"
    ADMIT_KEYED_TAIL};

/* The body is bytea, sent as hex text ($7::bytea reads "\x..."). */
static const struct tg_pg_stmt idem_answer_stmt = {
    "adm_idem_answer",
    "UPDATE idempotency SET answer_status = $5, answer_type = $6, answer_body = $7::bytea"
    " WHERE team_id = $1 AND kind = $2 AND key = $3 AND submission_id = $4"};

static const struct tg_pg_stmt idem_prune_stmt = {
    "adm_idem_prune", "DELETE FROM idempotency WHERE expires_ms <= $1"};

static const struct tg_pg_stmt limits_set_stmt = {
    "adm_limits_set",
    "INSERT INTO team_limits (team_id, runs_per_minute, in_flight, updated_at)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (team_id) DO UPDATE SET"
    " runs_per_minute = excluded.runs_per_minute, in_flight = excluded.in_flight,"
    " updated_at = excluded.updated_at"};

static const struct tg_pg_stmt team_stmt = {
    "adm_team",
    "SELECT t.id, coalesce(l.runs_per_minute, 0), coalesce(l.in_flight, 0)"
    " FROM teams t LEFT JOIN team_limits l ON l.team_id = t.id WHERE t.name = $1"};

static const struct tg_pg_stmt recon_sub_stmt = {
    "adm_recon_sub",
    "SELECT team_id, state, interface, taskgroup_id, num_inputs, received_at,"
    " (SELECT r.resume_cursor FROM reconciliations r WHERE r.submission_id = s.id"
    "  ORDER BY r.at DESC, r.id DESC LIMIT 1)"
    " FROM submissions s WHERE id = $1"};

static const struct tg_pg_stmt recon_calls_stmt = {
    "adm_recon_calls",
    "SELECT c.seq, c.operation, c.first_input, c.num_inputs, c.outcome,"
    " (SELECT count(*) FROM runs r WHERE r.submission_id = c.submission_id"
    "  AND r.call_seq = c.seq)"
    " FROM upstream_calls c WHERE c.submission_id = $1 ORDER BY c.seq"};

/* The group's latest submission received before $2 with a call whose runs existed before
 * $2 (answered before it, or found by a reconciliation that recorded it, with its started_at
 * and a run_cursor, before it), found walking submissions_group_time backwards from $2; then
 * its last such call. */
static const struct tg_pg_stmt recon_cursor_stmt = {
    "adm_recon_cursor",
    "SELECT c.submission_id, c.seq, c.run_cursor"
    " FROM upstream_calls c"
    " WHERE c.submission_id = (SELECT t.id FROM submissions t"
    "   WHERE t.taskgroup_id = $1 AND t.received_at < $2 AND EXISTS (SELECT 1"
    "    FROM upstream_calls k WHERE k.submission_id = t.id AND k.operation = 'add_runs'"
    "    AND ((k.outcome = 'ok' AND k.finished_at < $2) OR (k.outcome = 'unknown'"
    "     AND k.run_cursor IS NOT NULL AND k.started_at < $2)))"
    "   ORDER BY t.received_at DESC LIMIT 1)"
    " AND c.operation = 'add_runs' AND ((c.outcome = 'ok' AND c.finished_at < $2)"
    "  OR (c.outcome = 'unknown' AND c.run_cursor IS NOT NULL AND c.started_at < $2))"
    " ORDER BY c.seq DESC LIMIT 1"};

/* Locks the row of a submission still unknown, as settling it would: a read cut short and
 * a settling reconciliation of it (on any daemon) then record one after the other. */
static const struct tg_pg_stmt recon_open_stmt = {
    "adm_recon_open",
    "SELECT 1 FROM submissions WHERE id = $1 AND state = 'unknown' FOR UPDATE"};

/* A call found meanwhile by another reconciliation is left as it is. */
static const struct tg_pg_stmt call_add_stmt = {
    "adm_call_add",
    "INSERT INTO upstream_calls (submission_id, seq, operation, method, path, first_input,"
    " num_inputs, started_at, outcome, error, run_cursor)"
    " VALUES ($1, $2, 'add_runs', 'POST', $3, $4, $5, $6, 'unknown', $7, $8)"
    " ON CONFLICT (submission_id, seq) DO NOTHING"};

static const struct tg_pg_stmt call_has_runs_stmt = {
    "adm_call_has_runs",
    "SELECT 1 FROM runs WHERE submission_id = $1 AND call_seq = $2 LIMIT 1"};

static const struct tg_pg_stmt recon_finish_stmt = {
    "adm_recon_finish",
    "UPDATE submissions SET state = $2, error = $3, completed_at = $4"
    " WHERE id = $1 AND state = 'unknown'"};

static const struct tg_pg_stmt recon_log_stmt = {
    "adm_recon_log",
    "INSERT INTO reconciliations (submission_id, at, actor, taskgroup_id, outcome,"
    " runs_found, detail, resume_cursor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"};

/* Due: unknown since before $2 and not tried since, or last tried by a read cut short (it
 * reads on at once). */
static const struct tg_pg_stmt unknown_stmt = {
    "adm_unknown",
    "SELECT id FROM submissions s WHERE state IN ('unknown')"
    " AND ($2::text IS NULL OR (coalesce(completed_at, received_at) < $2::text"
    " AND NOT EXISTS (SELECT 1 FROM reconciliations r"
    "  WHERE r.submission_id = s.id AND r.at >= $2::text))"
    " OR (SELECT r.resume_cursor FROM reconciliations r WHERE r.submission_id = s.id"
    "  ORDER BY r.at DESC, r.id DESC LIMIT 1) IS NOT NULL)"
    " ORDER BY received_at LIMIT $1"};

static const struct tg_pg_stmt prior_runs_stmt = {
    "adm_prior_runs", "SELECT input_index, run_id FROM runs WHERE submission_id = $1"};

static const struct tg_pg_stmt prior_sub_stmt = {
    "adm_prior_sub", "SELECT taskgroup_id, resumes FROM submissions WHERE id = $1"};

static const struct tg_pg_stmt open_count_stmt = {
    "adm_open_count",
    "SELECT state, count(*), min(received_at) FROM submissions"
    " WHERE state IN ('pending', 'unknown') GROUP BY state"};

static const char *const kind_names[] = {"key", "retry"};

static enum tg_state parse_state(const char *s)
{
    for (int i = TG_STATE_PENDING; s != NULL && i <= TG_STATE_UNKNOWN; i++)
        if (strcmp(s, tg_domain_state_name((enum tg_state)i)) == 0)
            return (enum tg_state)i;
    return TG_STATE_PENDING;
}

/* How many rows an UPDATE or DELETE touched. */
static long changed(PGresult *res)
{
    const char *n = PQcmdTuples(res);
    return n != NULL && *n != '\0' ? strtol(n, NULL, 10) : 0;
}

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

/* ---- idempotency ------------------------------------------------------------------------ */

/* A bytea column's bytes (the server's hex text) into the pool, NUL-terminated. */
static int bytea_copy(struct tg_pool *pool, const PGresult *res, int row, int col,
                      const char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    size_t n = 0;
    unsigned char *raw = NULL;
    const char *text = tg_pg_text(res, row, col);
    if (text != NULL) {
        raw = PQunescapeBytea((const unsigned char *)text, &n);
        if (raw == NULL)
            return TG_ENOMEM;
    }
    char *body = tg_pool_alloc(pool, n + 1);
    if (body != NULL) {
        if (n > 0)
            memcpy(body, raw, n);
        body[n] = '\0';
    }
    PQfreemem(raw);
    if (body == NULL)
        return TG_ENOMEM;
    *out = body;
    *len = n;
    return TG_OK;
}

int tg_pg_idem_get(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
                   enum tg_idem_kind kind, const char *key, int64_t now_ms,
                   struct tg_idem_rec *out)
{
    memset(out, 0, sizeof(*out));
    char team[TG_PG_I64_LEN], now[TG_PG_I64_LEN];
    const char *p[] = {tg_pg_i64(team, team_id), kind_names[kind], key, tg_pg_i64(now, now_ms)};
    PGresult *res;
    int rc = tg_pg_one(st, &idem_get_stmt, 4, p, &res, "idempotency record");
    if (rc != TG_OK)
        return rc;
    out->submission_id = tg_pool_strdup(pool, tg_pg_text(res, 0, 0));
    out->request_hash = tg_pool_strdup(pool, tg_pg_text(res, 0, 1));
    out->state = parse_state(tg_pg_text(res, 0, 2));
    out->answer_status = (int)tg_pg_int(res, 0, 3);
    out->answer_type = tg_pool_strdup(pool, tg_pg_text(res, 0, 4));
    rc = bytea_copy(pool, res, 0, 5, &out->answer_body, &out->answer_len);
    if (out->submission_id == NULL || out->request_hash == NULL)
        rc = TG_ENOMEM;
    PQclear(res);
    return rc;
}

/* One integer of a one-row query with up to two integer parameters (0 when no row). */
static int one_int(struct tg_store *st, const struct tg_pg_stmt *s, int n, int64_t a,
                   int64_t b, long *out)
{
    char as[TG_PG_I64_LEN], bs[TG_PG_I64_LEN];
    const char *p[] = {tg_pg_i64(as, a), tg_pg_i64(bs, b)};
    PGresult *res;
    *out = 0;
    int rc = tg_pg_one(st, s, n, p, &res, "read a count");
    if (rc == TG_OK) {
        *out = (long)tg_pg_int(res, 0, 0);
        PQclear(res);
    }
    return rc == TG_ENOTFOUND ? TG_OK : rc;
}

/* *budgeted (may be NULL): 1 when the statement's third column says the team has a budget,
 * or when it has no limits (admission comes here only for a team with either). */
static int read_limits(struct tg_store *st, const struct tg_pg_stmt *s, int64_t team_id,
                       struct tg_limits *l, int *budgeted)
{
    char team[TG_PG_I64_LEN];
    const char *p[] = {tg_pg_i64(team, team_id)};
    PGresult *res;
    memset(l, 0, sizeof(*l));
    if (budgeted != NULL)
        *budgeted = 1;
    int rc = tg_pg_one(st, s, 1, p, &res, "team limits");
    if (rc == TG_OK) {
        l->runs_per_minute = (long)tg_pg_int(res, 0, 0);
        l->in_flight = (long)tg_pg_int(res, 0, 1);
        if (budgeted != NULL && PQnfields(res) > 2)
            *budgeted = tg_pg_int(res, 0, 2) != 0;
        PQclear(res);
    }
    return rc == TG_ENOTFOUND ? TG_OK : rc;
}

int tg_pg_limits_get(struct tg_store *st, int64_t team_id, struct tg_limits *out)
{
    return read_limits(st, &limits_get_stmt, team_id, out, NULL);
}

/* TG_OK, or TG_ETOOBIG with *why filled when limit l refuses want more runs; inside the
 * transaction that locked the team's limits. */
static int check_limits(struct tg_store *st, int64_t team_id, const struct tg_limits *l,
                        long runs, int64_t now_ms, struct tg_admit_refusal *why)
{
    int rc = TG_OK;
    long minute = (long)(now_ms / 60000);
    if (l->in_flight > 0) {
        long used;
        rc = one_int(st, &inflight_stmt, 1, team_id, 0, &used);
        if (rc != TG_OK)
            return rc;
        if (!tg_domain_limit_allows(l->in_flight, used, 1)) {
            *why = (struct tg_admit_refusal){"in_flight", l->in_flight, used, 1};
            return TG_ETOOBIG;
        }
    }
    if (l->runs_per_minute > 0) {
        long used;
        rc = one_int(st, &usage_get_stmt, 2, team_id, minute, &used);
        if (rc != TG_OK)
            return rc;
        if (!tg_domain_limit_allows(l->runs_per_minute, used, runs)) {
            long left = 60 - (long)((now_ms / 1000) % 60);
            *why = (struct tg_admit_refusal){"runs_per_minute", l->runs_per_minute, used,
                                             left > 0 ? left : 1};
            return TG_ETOOBIG;
        }
        char team[TG_PG_I64_LEN], min[TG_PG_I64_LEN], n[TG_PG_I64_LEN];
        const char *p[] = {tg_pg_i64(team, team_id), tg_pg_i64(min, minute),
                           tg_pg_i64(n, runs)};
        rc = tg_pg_run(st, &usage_add_stmt, 3, p, "count runs");
        if (rc == TG_OK)
            rc = tg_pg_run(st, &usage_old_stmt, 2, p, "forget old usage");
    }
    return rc;
}

static int key_taken(struct tg_store *st)
{
    tg_pg_set_err(st, "the idempotency key was taken by another submission meanwhile");
    return TG_EEXIST;
}

/* TG_OK when the live record names a->replaces (or, with replaces NULL, there is none). */
static int check_record(struct tg_store *st, int64_t team_id, const struct tg_admission *a)
{
    char team[TG_PG_I64_LEN], now[TG_PG_I64_LEN];
    const char *p[] = {tg_pg_i64(team, team_id), kind_names[a->kind], a->key,
                       tg_pg_i64(now, a->now_ms)};
    PGresult *res;
    int rc = tg_pg_one(st, &idem_check_stmt, 4, p, &res, "idempotency record");
    if (rc == TG_OK) {
        const char *cur = tg_pg_text(res, 0, 0);
        rc = a->replaces != NULL && cur != NULL && strcmp(cur, a->replaces) == 0 ? TG_OK
                                                                                : TG_EEXIST;
        PQclear(res);
    } else if (rc == TG_ENOTFOUND) {
        rc = a->replaces == NULL ? TG_OK : TG_EEXIST;
    }
    return rc == TG_EEXIST ? key_taken(st) : rc;
}

/* Writes the record; TG_EEXIST when another submission took the key after check_record
 * (a daemon whose transaction committed first). */
static int put_record(struct tg_store *st, const struct tg_submission *sub,
                      const struct tg_admission *a)
{
    char now[TG_TIME_LEN], team[TG_PG_I64_LEN], exp[TG_PG_I64_LEN], now_ms[TG_PG_I64_LEN];
    tg_pg_now_text(now);
    const char *p[] = {tg_pg_i64(team, sub->team_id), kind_names[a->kind], a->key,
                       a->request_hash, sub->id, now, tg_pg_i64(exp, a->expires_ms),
                       tg_pg_i64(now_ms, a->now_ms), a->replaces};
    PGresult *res;
    int rc = tg_pg_one(st, &idem_put_stmt, 9, p, &res, "record the idempotency key");
    if (rc == TG_OK)
        PQclear(res);
    return rc == TG_ENOTFOUND ? key_taken(st) : rc;
}

struct admit_write {
    const struct tg_submission *sub;
    const struct tg_admission *a;
    struct tg_admit_refusal *why;
    int refused; /* over a limit: recorded as rejected */
};

/* SQLite's admission, in the order that makes it hold across daemons: the team's limits
 * row locked first, so that the record and the counts read after it see every admission
 * of the team that committed before. */
static int admit_w(struct tg_store *st, void *arg)
{
    struct admit_write *w = arg;
    const struct tg_submission *sub = w->sub;
    const struct tg_admission *a = w->a;
    struct tg_limits l;
    int budgeted;
    w->refused = 0;
    int rc = read_limits(st, &limits_lock_stmt, sub->team_id, &l, &budgeted);
    if (rc == TG_OK && a->key != NULL)
        rc = check_record(st, sub->team_id, a);
    if (rc == TG_OK)
        rc = check_limits(st, sub->team_id, &l, a->runs, a->now_ms, w->why);
    if (rc == TG_ETOOBIG) {
        char msg[256];
        snprintf(msg, sizeof(msg), "team limit %s (%ld) reached", w->why->limit,
                 w->why->value);
        w->refused = 1;
        return tg_pg_sub_insert(st, sub, a->resumes, TG_STATE_REJECTED, 429, msg);
    }
    if (rc == TG_OK && budgeted)
        rc = tg_pg_budget_take(st, sub, a, w->why);
    if (rc == TG_ETOOBIG) {
        w->refused = 1;
        return tg_pg_sub_insert(st, sub, a->resumes, TG_STATE_REJECTED, 402,
                                "the team's budget would be passed");
    }
    if (rc == TG_OK)
        rc = tg_pg_sub_insert(st, sub, a->resumes, TG_STATE_PENDING, 0, NULL);
    if (rc == TG_OK && a->key != NULL)
        rc = put_record(st, sub, a);
    return rc;
}

/* admit_keyed_stmt or admit_replacing_stmt: TG_OK with *admitted 1, or 0 when the team has
 * limits (nothing written); TG_EEXIST when another submission holds the key. */
static int admit_keyed(struct tg_store *st, const struct tg_submission *sub,
                       const struct tg_admission *a, int *admitted)
{
    char now[TG_TIME_LEN], exp[TG_PG_I64_LEN], now_ms[TG_PG_I64_LEN];
    tg_pg_now_text(now);
    const char *extra[] = {kind_names[a->kind], a->key, a->request_hash, now,
                           tg_pg_i64(exp, a->expires_ms), tg_pg_i64(now_ms, a->now_ms),
                           a->replaces};
    PGresult *res;
    *admitted = 0;
    int rc = tg_pg_sub_stmt(st, a->replaces != NULL ? &admit_replacing_stmt : &admit_keyed_stmt,
                            sub, a->resumes, TG_STATE_PENDING, 0, NULL, extra,
                            a->replaces != NULL ? 7 : 6, &res);
    if (rc != TG_OK)
        return rc;
    int unlimited = tg_pg_int(res, 0, 0) > 0;
    *admitted = tg_pg_int(res, 0, 1) > 0;
    PQclear(res);
    return unlimited && !*admitted ? key_taken(st) : TG_OK;
}

struct keyed_write {
    const struct tg_submission *sub;
    const struct tg_admission *a;
    int *admitted;
};

static int keyed_w(struct tg_store *st, void *arg)
{
    const struct keyed_write *w = arg;
    return admit_keyed(st, w->sub, w->a, w->admitted);
}

int tg_pg_admit(struct tg_store *st, const struct tg_submission *sub,
                const struct tg_admission *a, struct tg_admit_refusal *why)
{
    if (sub == NULL || sub->id == NULL || sub->interface == NULL || a == NULL)
        return tg_pg_invalid(st, "admit: missing submission");
    /* Most teams have no limits: one statement decides that, the record (when there is
     * one) and the pending row at once; only a team with limits pays for a second try. */
    int admitted, rc;
    if (a->key == NULL) {
        rc = tg_pg_sub_admit(st, sub, a->resumes, &admitted);
    } else {
        struct keyed_write kw = {sub, a, &admitted};
        rc = tg_pg_write_one(st, keyed_w, &kw);
    }
    if (rc != TG_OK || admitted)
        return rc;
    struct admit_write w = {sub, a, why, 0};
    rc = tg_pg_write(st, admit_w, &w);
    return rc == TG_OK && w.refused ? TG_ETOOBIG : rc;
}

struct answer_write {
    const char *const *params;
};

static int answer_w(struct tg_store *st, void *arg)
{
    const struct answer_write *a = arg;
    return tg_pg_run(st, &idem_answer_stmt, 7, a->params, "store the answer");
}

/* The most bytes of an answer stored as hex text (twice its length). */
#define ANSWER_HEX_MAX ((size_t)256 << 20)

int tg_pg_idem_answer(struct tg_store *st, int64_t team_id, enum tg_idem_kind kind,
                      const char *key, const char *sub_id, int status,
                      const char *content_type, const char *body, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (body == NULL)
        len = 0;
    if (len > (ANSWER_HEX_MAX - 3) / 2) {
        tg_pg_set_err(st, "store the answer: %zu bytes are too many", len);
        return TG_ETOOBIG;
    }
    char *text = malloc(2 * len + 3);
    if (text == NULL) {
        tg_pg_set_err(st, "store the answer: out of memory");
        return TG_ENOMEM;
    }
    text[0] = '\\';
    text[1] = 'x';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)body[i];
        text[2 + 2 * i] = hex[c >> 4];
        text[3 + 2 * i] = hex[c & 15];
    }
    text[2 + 2 * len] = '\0';
    char team[TG_PG_I64_LEN], st_text[TG_PG_I64_LEN];
    const char *p[] = {tg_pg_i64(team, team_id), kind_names[kind], key, sub_id,
                       tg_pg_i64(st_text, status), content_type, text};
    struct answer_write a = {p};
    int rc = tg_pg_write_one(st, answer_w, &a);
    free(text);
    return rc;
}

struct prune_write {
    int64_t now_ms;
    long *n;
};

static int prune_w(struct tg_store *st, void *arg)
{
    const struct prune_write *a = arg;
    char now[TG_PG_I64_LEN];
    const char *p[] = {tg_pg_i64(now, a->now_ms)};
    long n;
    int rc = run_count(st, &idem_prune_stmt, 1, p, "prune idempotency records", &n);
    if (a->n != NULL)
        *a->n = rc == TG_OK ? n : 0;
    return rc;
}

int tg_pg_idem_prune(struct tg_store *st, int64_t now_ms, long *n)
{
    if (n != NULL)
        *n = 0;
    struct prune_write a = {now_ms, n};
    int rc = tg_pg_write(st, prune_w, &a);
    if (rc != TG_OK && n != NULL)
        *n = 0;
    return rc;
}

/* ---- limits ------------------------------------------------------------------------------ */

struct limits_write {
    const struct tg_actor *who;
    const char *team;
    const struct tg_limits *l;
};

static int limits_set_w(struct tg_store *st, void *arg)
{
    const struct limits_write *w = arg;
    char before[128] = "", after[128];
    char team_id[TG_PG_I64_LEN] = "";
    const char *p1[] = {w->team};
    PGresult *res;
    int rc = tg_pg_one(st, &team_stmt, 1, p1, &res, "read the team");
    if (rc == TG_OK) {
        tg_pg_copy(team_id, sizeof(team_id), res, 0, 0);
        snprintf(before, sizeof(before), "{\"runs_per_minute\":%lld,\"in_flight\":%lld}",
                 (long long)tg_pg_int(res, 0, 1), (long long)tg_pg_int(res, 0, 2));
        PQclear(res);
    } else if (rc == TG_ENOTFOUND) {
        tg_pg_set_err(st, "no team %.64s", w->team);
    }
    if (rc == TG_OK) {
        char now[TG_TIME_LEN], rpm[TG_PG_I64_LEN], infl[TG_PG_I64_LEN];
        tg_pg_now_text(now);
        const char *p2[] = {team_id, tg_pg_i64(rpm, w->l->runs_per_minute),
                            tg_pg_i64(infl, w->l->in_flight), now};
        rc = tg_pg_run(st, &limits_set_stmt, 4, p2, "set limits");
    }
    if (rc == TG_OK) {
        snprintf(after, sizeof(after), "{\"runs_per_minute\":%ld,\"in_flight\":%ld}",
                 w->l->runs_per_minute, w->l->in_flight);
        rc = tg_pg_admin_log(st, w->who, "team.limits", "team", w->team, w->team, before,
                             after);
    }
    return rc;
}

int tg_pg_limits_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                     const struct tg_limits *l)
{
    if (who == NULL || who->id == NULL || who->interface == NULL || team == NULL)
        return tg_pg_invalid(st, "limits: missing actor or team");
    struct limits_write w = {who, team, l};
    return tg_pg_write(st, limits_set_w, &w);
}

/* ---- reconciliation ---------------------------------------------------------------------- */

/* The calls of a submission being loaded, in a pool array that grows by doubling. */
struct recon_calls {
    struct tg_pool *pool;
    struct tg_recon_sub *out;
    size_t cap;
};

static int recon_call_row(void *arg, PGresult *res, int i)
{
    struct recon_calls *l = arg;
    struct tg_recon_sub *out = l->out;
    if (out->ncalls == l->cap) {
        size_t ncap = l->cap == 0 ? 16 : l->cap * 2;
        struct tg_recon_call *c = tg_pool_calloc(l->pool, ncap, sizeof(*c));
        if (c == NULL)
            return TG_ENOMEM;
        if (out->ncalls > 0)
            memcpy(c, out->calls, out->ncalls * sizeof(*c));
        out->calls = c;
        l->cap = ncap;
    }
    struct tg_recon_call *c = &out->calls[out->ncalls++];
    const char *op = tg_pg_text(res, i, 1);
    const char *outcome = tg_pg_text(res, i, 4);
    c->seq = (int)tg_pg_int(res, i, 0);
    c->add_runs = op != NULL && strcmp(op, "add_runs") == 0;
    c->first_input = (int)tg_pg_int(res, i, 2);
    c->num_inputs = (int)tg_pg_int(res, i, 3);
    c->outcome = TG_OUTCOME_UNKNOWN;
    for (int o = TG_OUTCOME_OK; outcome != NULL && o <= TG_OUTCOME_NOT_SENT; o++)
        if (strcmp(outcome, tg_domain_outcome_name((enum tg_outcome)o)) == 0)
            c->outcome = (enum tg_outcome)o;
    c->runs = (long)tg_pg_int(res, i, 5);
    return TG_OK;
}

int tg_pg_recon_load(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
                     struct tg_recon_sub *out)
{
    memset(out, 0, sizeof(*out));
    const char *p[] = {sub_id};
    PGresult *res;
    int rc = tg_pg_one(st, &recon_sub_stmt, 1, p, &res, "read the submission");
    if (rc != TG_OK)
        return rc;
    out->id = tg_pool_strdup(pool, sub_id);
    out->team_id = tg_pg_int(res, 0, 0);
    out->state = parse_state(tg_pg_text(res, 0, 1));
    out->interface = tg_pool_strdup(pool, tg_pg_text(res, 0, 2));
    out->taskgroup_id = tg_pool_strdup(pool, tg_pg_text(res, 0, 3));
    out->num_inputs = (int)tg_pg_int(res, 0, 4);
    const char *received = tg_pg_text(res, 0, 5);
    if (received == NULL || tg_time_parse(received, &out->received_ms) != TG_OK)
        out->received_ms = 0;
    out->resume_cursor = tg_pool_strdup(pool, tg_pg_text(res, 0, 6));
    PQclear(res);
    struct recon_calls c = {pool, out, 0};
    return tg_pg_each(st, &recon_calls_stmt, 1, p, "read the calls", recon_call_row, &c);
}

int tg_pg_recon_cursor(struct tg_store *st, struct tg_pool *pool, const char *taskgroup_id,
                       int64_t before_ms, struct tg_recon_cursor *out)
{
    memset(out, 0, sizeof(*out));
    char before[TG_TIME_LEN];
    tg_time_format(before_ms, before);
    const char *p[] = {taskgroup_id, before};
    PGresult *res;
    int rc = tg_pg_one(st, &recon_cursor_stmt, 2, p, &res, "find the group's last cursor");
    if (rc != TG_OK)
        return rc;
    out->submission_id = tg_pool_strdup(pool, tg_pg_text(res, 0, 0));
    out->seq = (int)tg_pg_int(res, 0, 1);
    out->run_cursor = tg_pool_strdup(pool, tg_pg_text(res, 0, 2));
    PQclear(res);
    return out->submission_id != NULL ? TG_OK : TG_ENOMEM;
}

static int add_found(struct tg_store *st, const struct tg_recon_write *w,
                     const struct tg_recon_found *f, const char *now)
{
    /* Another reconciliation may have recorded this call's runs since this one read. */
    char seq[TG_PG_I64_LEN];
    const char *q[] = {w->sub_id, tg_pg_i64(seq, f->seq)};
    PGresult *res;
    int rc = tg_pg_one(st, &call_has_runs_stmt, 2, q, &res, "look for a call's runs");
    if (rc == TG_OK) {
        PQclear(res);
        return TG_OK;
    }
    if (rc != TG_ENOTFOUND)
        return rc;
    if (!f->recorded) {
        char path[300], first[TG_PG_I64_LEN], n[TG_PG_I64_LEN];
        snprintf(path, sizeof(path), "%s/tasks/groups/%s/runs", w->api != NULL ? w->api : "/v1",
                 w->taskgroup_id != NULL ? w->taskgroup_id : "");
        const char *p[] = {w->sub_id,
                           seq,
                           path,
                           tg_pg_i64(first, f->first_input),
                           tg_pg_i64(n, f->num_inputs),
                           now,
                           "the daemon stopped before this call's outcome was recorded; "
                           "found upstream by reconciliation",
                           f->run_cursor};
        rc = tg_pg_run(st, &call_add_stmt, 8, p, "record a found call");
        if (rc != TG_OK)
            return rc;
    }
    rc = tg_pg_runs_insert(st, w->sub_id, f->seq, f->first_input, f->nruns, f->run_ids,
                           f->processors);
    /* Runs the tracker saw complete before they were known as the gateway's. */
    if (rc == TG_OK)
        rc = tg_pg_counts_duration_call(st, w->sub_id, f->seq);
    return rc;
}

static int recon_write_w(struct tg_store *st, void *arg)
{
    const struct tg_recon_write *w = *(const struct tg_recon_write *const *)arg;
    char now[TG_TIME_LEN];
    tg_pg_now_text(now);
    int rc = TG_OK;
    if (w->state == TG_STATE_ACCEPTED || w->state == TG_STATE_FAILED) {
        /* The state first: it fails when another reconciliation (on any daemon) got there
         * before; one still running holds the row, and this waits for its outcome. */
        const char *p[] = {w->sub_id, tg_domain_state_name(w->state),
                           w->state == TG_STATE_ACCEPTED ? NULL : w->detail, now};
        long n;
        rc = tg_pg_counts_change(st, w->sub_id, w->state, 0, NULL);
        if (rc == TG_OK)
            rc = run_count(st, &recon_finish_stmt, 4, p, "settle the submission", &n);
        if (rc == TG_OK && n == 0) {
            tg_pg_set_err(st, "submission %.64s is no longer unknown", w->sub_id);
            rc = TG_EINVAL;
        }
    } else if (w->nfound > 0) {
        /* A read cut short records what it found whole while the submission stays unknown. */
        const char *p[] = {w->sub_id};
        PGresult *res;
        rc = tg_pg_one(st, &recon_open_stmt, 1, p, &res, "lock the submission");
        if (rc == TG_OK)
            PQclear(res);
        if (rc == TG_ENOTFOUND) {
            tg_pg_set_err(st, "submission %.64s is no longer unknown", w->sub_id);
            rc = TG_EINVAL;
        }
    }
    for (size_t i = 0; rc == TG_OK && i < w->nfound; i++)
        rc = add_found(st, w, &w->found[i], now);
    if (rc == TG_OK) {
        char runs[TG_PG_I64_LEN];
        const char *p[] = {w->sub_id, now, w->actor, w->taskgroup_id, w->outcome,
                           tg_pg_i64(runs, w->runs_found), w->detail, w->resume_cursor};
        rc = tg_pg_run(st, &recon_log_stmt, 8, p, "log the reconciliation");
    }
    return rc;
}

int tg_pg_recon_write(struct tg_store *st, const struct tg_recon_write *w)
{
    return tg_pg_write(st, recon_write_w, &w);
}

/* Ids into a pool, at most max; a walk that finds more stops with ID_LIST_FULL. */
#define ID_LIST_FULL 1
struct id_list {
    struct tg_pool *pool;
    const char **ids;
    size_t *n, max;
};

static int id_row(void *arg, PGresult *res, int i)
{
    struct id_list *l = arg;
    if (*l->n >= l->max)
        return ID_LIST_FULL;
    l->ids[*l->n] = tg_pool_strdup(l->pool, tg_pg_text(res, i, 0));
    if (l->ids[*l->n] == NULL)
        return TG_ENOMEM;
    (*l->n)++;
    return TG_OK;
}

int tg_pg_unknown_ids(struct tg_store *st, struct tg_pool *pool, size_t max,
                      int64_t before_ms, const char ***ids, size_t *n)
{
    *n = 0;
    *ids = tg_pool_calloc(pool, max + 1, sizeof(char *));
    if (*ids == NULL)
        return TG_ENOMEM;
    char lim[TG_PG_I64_LEN], before[TG_TIME_LEN];
    if (before_ms > 0)
        tg_time_format(before_ms, before);
    const char *p[] = {tg_pg_i64(lim, (int64_t)max), before_ms > 0 ? before : NULL};
    struct id_list l = {pool, *ids, n, max};
    int rc = tg_pg_each(st, &unknown_stmt, 2, p, "list unknown submissions", id_row, &l);
    return rc == ID_LIST_FULL ? TG_OK : rc;
}

struct open_counts {
    long *pending, *unknown;
    int64_t *oldest_unknown_ms;
};

static int open_count_row(void *arg, PGresult *res, int i)
{
    const struct open_counts *c = arg;
    const char *state = tg_pg_text(res, i, 0);
    long n = (long)tg_pg_int(res, i, 1);
    if (state != NULL && strcmp(state, "pending") == 0) {
        *c->pending = n;
    } else {
        const char *oldest = tg_pg_text(res, i, 2);
        *c->unknown = n;
        if (oldest == NULL || tg_time_parse(oldest, c->oldest_unknown_ms) != TG_OK)
            *c->oldest_unknown_ms = 0;
    }
    return TG_OK;
}

int tg_pg_open_counts(struct tg_store *st, long *pending, long *unknown,
                      int64_t *oldest_unknown_ms)
{
    *pending = *unknown = 0;
    *oldest_unknown_ms = 0;
    struct open_counts c = {pending, unknown, oldest_unknown_ms};
    return tg_pg_each(st, &open_count_stmt, 0, NULL, "count open submissions", open_count_row,
                      &c);
}

/* The runs of earlier submissions by input index: the first found for an input stays. */
struct prior_runs {
    struct tg_pool *pool;
    const char **ids;
    size_t num_inputs;
};

static int prior_run_row(void *arg, PGresult *res, int row)
{
    const struct prior_runs *p = arg;
    int64_t i = tg_pg_int(res, row, 0);
    if (i >= 0 && (size_t)i < p->num_inputs && p->ids[i] == NULL)
        p->ids[i] = tg_pool_strdup(p->pool, tg_pg_text(res, row, 1));
    return TG_OK;
}

int tg_pg_prior_runs(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
                     size_t num_inputs, const char ***ids, const char **group)
{
    *group = NULL;
    *ids = tg_pool_calloc(pool, num_inputs + 1, sizeof(char *));
    if (*ids == NULL)
        return TG_ENOMEM;
    const char *cur = sub_id;
    int rc = TG_OK;
    /* A repeat may resume a repeat: follow the chain (bounded; it is short in practice). */
    for (int depth = 0; cur != NULL && depth < 32 && rc == TG_OK; depth++) {
        const char *next = NULL;
        const char *p[] = {cur};
        PGresult *res;
        rc = tg_pg_one(st, &prior_sub_stmt, 1, p, &res, "read an earlier submission");
        if (rc == TG_OK) {
            if (*group == NULL)
                *group = tg_pool_strdup(pool, tg_pg_text(res, 0, 0));
            next = tg_pool_strdup(pool, tg_pg_text(res, 0, 1));
            PQclear(res);
        }
        if (rc == TG_ENOTFOUND)
            rc = TG_OK;
        if (rc != TG_OK)
            break;
        struct prior_runs pr = {pool, *ids, num_inputs};
        rc = tg_pg_each(st, &prior_runs_stmt, 1, p, "read earlier runs", prior_run_row, &pr);
        cur = next;
    }
    return rc;
}
