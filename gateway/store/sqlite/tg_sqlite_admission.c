/* The records behind "never a duplicate, never a lost run" (contract in tg_store.h):
 * idempotency records, admission with per-team limits, and reconciliation. */
#include <stdio.h>
#include <string.h>

#include "tg_domain.h"
#include "tg_sqlite_int.h"

static const char *const admission_sql[S_COUNT] = {
    [R_IDEM_GET] =
        "SELECT i.submission_id, i.request_hash, s.state, i.answer_status, i.answer_type,"
        " i.answer_body FROM idempotency i LEFT JOIN submissions s ON s.id = i.submission_id"
        " WHERE i.team_id = ?1 AND i.kind = ?2 AND i.key = ?3 AND i.expires_ms > ?4",
    [R_LIMITS_GET] =
        "SELECT runs_per_minute, in_flight FROM team_limits WHERE team_id = ?1",
    /* From submissions_state_time: the pending submissions of every team, a few, and not
     * every submission the team ever made, which is what submissions_team_time would give
     * (the + keeps SQLite from taking that one). */
    [R_INFLIGHT] =
        "SELECT count(*) FROM submissions WHERE state = 'pending' AND +team_id = ?1",
    [R_USAGE_GET] =
        "SELECT runs FROM team_usage WHERE team_id = ?1 AND minute = ?2",
    [R_USAGE_ADD] =
        "INSERT INTO team_usage (team_id, minute, runs) VALUES (?1, ?2, ?3)"
        " ON CONFLICT (team_id, minute) DO UPDATE SET runs = runs + excluded.runs",
    [R_USAGE_OLD] =
        "DELETE FROM team_usage WHERE team_id = ?1 AND minute < ?2",
    [R_IDEM_CHECK] =
        "SELECT submission_id FROM idempotency"
        " WHERE team_id = ?1 AND kind = ?2 AND key = ?3 AND expires_ms > ?4",
    [R_IDEM_PUT] =
        "INSERT INTO idempotency (team_id, kind, key, request_hash, submission_id, created_at,"
        " expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        " ON CONFLICT (team_id, kind, key) DO UPDATE SET request_hash = excluded.request_hash,"
        " submission_id = excluded.submission_id, created_at = excluded.created_at,"
        " expires_ms = excluded.expires_ms, answer_status = NULL, answer_type = NULL,"
        " answer_body = NULL",
    [R_IDEM_ANSWER] =
        "UPDATE idempotency SET answer_status = ?5, answer_type = ?6, answer_body = ?7"
        " WHERE team_id = ?1 AND kind = ?2 AND key = ?3 AND submission_id = ?4",
    [R_IDEM_PRUNE] = "DELETE FROM idempotency WHERE expires_ms <= ?1",
    [R_LIMITS_SET] =
        "INSERT INTO team_limits (team_id, runs_per_minute, in_flight, updated_at)"
        " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (team_id) DO UPDATE SET"
        " runs_per_minute = excluded.runs_per_minute, in_flight = excluded.in_flight,"
        " updated_at = excluded.updated_at",
    [R_TEAM] =
        "SELECT t.id, coalesce(l.runs_per_minute, 0), coalesce(l.in_flight, 0)"
        " FROM teams t LEFT JOIN team_limits l ON l.team_id = t.id WHERE t.name = ?1",
    [R_RECON_SUB] =
        "SELECT team_id, state, interface, taskgroup_id, num_inputs, received_at,"
        " (SELECT r.resume_cursor FROM reconciliations r WHERE r.submission_id = s.id"
        "  ORDER BY r.at DESC, r.id DESC LIMIT 1)"
        " FROM submissions s WHERE id = ?1",
    [R_RECON_CALLS] =
        "SELECT c.seq, c.operation, c.first_input, c.num_inputs, c.outcome,"
        " (SELECT count(*) FROM runs r WHERE r.submission_id = c.submission_id"
        "  AND r.call_seq = c.seq)"
        " FROM upstream_calls c WHERE c.submission_id = ?1 ORDER BY c.seq",
    /* The group's latest submission received before ?2 with a call whose runs existed
     * before ?2 (answered before it, or found by a reconciliation that recorded it, with its
     * started_at and a run_cursor, before it), found walking submissions_group_time
     * backwards from ?2; then its last such call. */
    [R_RECON_CURSOR] =
        "SELECT c.submission_id, c.seq, c.run_cursor"
        " FROM upstream_calls c"
        " WHERE c.submission_id = (SELECT t.id FROM submissions t"
        "   WHERE t.taskgroup_id = ?1 AND t.received_at < ?2 AND EXISTS (SELECT 1"
        "    FROM upstream_calls k WHERE k.submission_id = t.id AND k.operation = 'add_runs'"
        "    AND ((k.outcome = 'ok' AND k.finished_at < ?2) OR (k.outcome = 'unknown'"
        "     AND k.run_cursor IS NOT NULL AND k.started_at < ?2)))"
        "   ORDER BY t.received_at DESC LIMIT 1)"
        " AND c.operation = 'add_runs' AND ((c.outcome = 'ok' AND c.finished_at < ?2)"
        "  OR (c.outcome = 'unknown' AND c.run_cursor IS NOT NULL AND c.started_at < ?2))"
        " ORDER BY c.seq DESC LIMIT 1",
    [R_RECON_OPEN] =
        "SELECT 1 FROM submissions WHERE id = ?1 AND state = 'unknown'",
    /* A call found meanwhile by another reconciliation is left as it is. */
    [R_CALL_ADD] =
        "INSERT INTO upstream_calls (submission_id, seq, operation, method, path, first_input,"
        " num_inputs, started_at, outcome, error, run_cursor)"
        " VALUES (?1, ?2, 'add_runs', 'POST', ?3, ?4, ?5, ?6, 'unknown', ?7, ?8)"
        " ON CONFLICT (submission_id, seq) DO NOTHING",
    [R_CALL_HAS_RUNS] =
        "SELECT 1 FROM runs WHERE submission_id = ?1 AND call_seq = ?2 LIMIT 1",
    [R_RECON_FINISH] =
        "UPDATE submissions SET state = ?2, error = ?3, completed_at = ?4"
        " WHERE id = ?1 AND state = 'unknown'",
    [R_RECON_LOG] =
        "INSERT INTO reconciliations (submission_id, at, actor, taskgroup_id, outcome,"
        " runs_found, detail, resume_cursor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    /* Due: unknown since before ?2 and not tried since, or last tried by a read cut short
     * (it reads on at once). Oldest first from submissions_state_time. */
    [R_UNKNOWN] =
        "SELECT id FROM submissions s WHERE state = 'unknown'"
        " AND (?2 IS NULL OR (coalesce(completed_at, received_at) < ?2"
        " AND NOT EXISTS (SELECT 1 FROM reconciliations r"
        "  WHERE r.submission_id = s.id AND r.at >= ?2))"
        " OR (SELECT r.resume_cursor FROM reconciliations r WHERE r.submission_id = s.id"
        "  ORDER BY r.at DESC, r.id DESC LIMIT 1) IS NOT NULL)"
        " ORDER BY received_at LIMIT ?1",
    [R_PRIOR_RUNS] =
        "SELECT input_index, run_id FROM runs WHERE submission_id = ?1",
    [R_PRIOR_SUB] =
        "SELECT taskgroup_id, resumes FROM submissions WHERE id = ?1",
    [R_OPEN_COUNT] =
        "SELECT state, count(*), min(received_at) FROM submissions"
        " WHERE state IN ('pending', 'unknown') GROUP BY state",
};

static int stmt(struct tg_store *st, enum stmt_id id, sqlite3_stmt **out)
{
    return tg_sqlite_stmt(st, id, admission_sql[id], out);
}

static const char *const kind_names[] = {"key", "retry"};

static const char *state_text(enum tg_state s)
{
    return tg_domain_state_name(s);
}

static enum tg_state parse_state(const char *s)
{
    for (int i = TG_STATE_PENDING; s != NULL && i <= TG_STATE_UNKNOWN; i++)
        if (strcmp(s, tg_domain_state_name((enum tg_state)i)) == 0)
            return (enum tg_state)i;
    return TG_STATE_PENDING;
}

/* ---- idempotency ------------------------------------------------------------------------ */

int tg_sqlite_idem_get(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
                       enum tg_idem_kind kind, const char *key, int64_t now_ms,
                       struct tg_idem_rec *out)
{
    sqlite3_stmt *s;
    memset(out, 0, sizeof(*out));
    int rc = stmt(st, R_IDEM_GET, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, team_id);
    tg_sqlite_bind_text(s, 2, kind_names[kind]);
    tg_sqlite_bind_text(s, 3, key);
    sqlite3_bind_int64(s, 4, now_ms);
    rc = tg_sqlite_one(st, s, "idempotency record");
    if (rc == TG_OK) {
        out->submission_id = tg_pool_strdup(pool, tg_sqlite_col_text(s, 0));
        out->request_hash = tg_pool_strdup(pool, tg_sqlite_col_text(s, 1));
        out->state = parse_state(tg_sqlite_col_text(s, 2));
        out->answer_status = sqlite3_column_int(s, 3);
        out->answer_type = tg_pool_strdup(pool, tg_sqlite_col_text(s, 4));
        const void *blob = sqlite3_column_blob(s, 5);
        int n = sqlite3_column_bytes(s, 5);
        char *body = tg_pool_alloc(pool, (size_t)n + 1);
        if (out->submission_id == NULL || out->request_hash == NULL || body == NULL) {
            rc = TG_ENOMEM;
        } else {
            if (n > 0)
                memcpy(body, blob, (size_t)n);
            body[n] = '\0';
            out->answer_body = body;
            out->answer_len = (size_t)n;
        }
    }
    tg_sqlite_done(s);
    return rc;
}

/* One integer of a one-row query with up to two integer parameters (0 when no row). */
static int one_int(struct tg_store *st, enum stmt_id id, int64_t a, int64_t b, long *out)
{
    sqlite3_stmt *s;
    *out = 0;
    int rc = stmt(st, id, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, a);
    if (sqlite3_bind_parameter_count(s) >= 2)
        sqlite3_bind_int64(s, 2, b);
    rc = tg_sqlite_one(st, s, "read a count");
    if (rc == TG_OK)
        *out = (long)sqlite3_column_int64(s, 0);
    tg_sqlite_done(s);
    if (rc == TG_ENOTFOUND)
        rc = TG_OK;
    return rc;
}

static int limits_in_tx(struct tg_store *st, int64_t team_id, struct tg_limits *l)
{
    sqlite3_stmt *s;
    memset(l, 0, sizeof(*l));
    int rc = stmt(st, R_LIMITS_GET, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, team_id);
    rc = tg_sqlite_one(st, s, "team limits");
    if (rc == TG_OK) {
        l->runs_per_minute = (long)sqlite3_column_int64(s, 0);
        l->in_flight = (long)sqlite3_column_int64(s, 1);
    }
    tg_sqlite_done(s);
    if (rc == TG_ENOTFOUND)
        rc = TG_OK;
    return rc;
}

int tg_sqlite_limits_get(struct tg_store *st, int64_t team_id, struct tg_limits *out)
{
    return limits_in_tx(st, team_id, out);
}

/* TG_OK, or TG_ETOOBIG with *why filled when a limit refuses want more runs. */
static int check_limits(struct tg_store *st, int64_t team_id, long runs, int64_t now_ms,
                        struct tg_admit_refusal *why)
{
    struct tg_limits l;
    int rc = limits_in_tx(st, team_id, &l);
    if (rc != TG_OK)
        return rc;
    long minute = (long)(now_ms / 60000);
    if (l.in_flight > 0) {
        long used;
        rc = one_int(st, R_INFLIGHT, team_id, 0, &used);
        if (rc != TG_OK)
            return rc;
        if (!tg_domain_limit_allows(l.in_flight, used, 1)) {
            *why = (struct tg_admit_refusal){"in_flight", l.in_flight, used, 1};
            return TG_ETOOBIG;
        }
    }
    if (l.runs_per_minute > 0) {
        long used;
        rc = one_int(st, R_USAGE_GET, team_id, minute, &used);
        if (rc != TG_OK)
            return rc;
        if (!tg_domain_limit_allows(l.runs_per_minute, used, runs)) {
            long left = 60 - (long)((now_ms / 1000) % 60);
            *why = (struct tg_admit_refusal){"runs_per_minute", l.runs_per_minute, used,
                                             left > 0 ? left : 1};
            return TG_ETOOBIG;
        }
        sqlite3_stmt *s;
        rc = stmt(st, R_USAGE_ADD, &s);
        if (rc != TG_OK)
            return rc;
        sqlite3_bind_int64(s, 1, team_id);
        sqlite3_bind_int64(s, 2, minute);
        sqlite3_bind_int64(s, 3, runs);
        rc = tg_sqlite_run(st, s, "count runs");
        if (rc == TG_OK)
            rc = stmt(st, R_USAGE_OLD, &s);
        if (rc != TG_OK)
            return rc;
        sqlite3_bind_int64(s, 1, team_id);
        sqlite3_bind_int64(s, 2, minute);
        rc = tg_sqlite_run(st, s, "forget old usage");
    }
    return rc;
}


/* TG_OK when the live record names a->replaces (or, with replaces NULL, there is none). */
static int check_record(struct tg_store *st, int64_t team_id, const struct tg_admission *a)
{
    sqlite3_stmt *s;
    int rc = stmt(st, R_IDEM_CHECK, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, team_id);
    tg_sqlite_bind_text(s, 2, kind_names[a->kind]);
    tg_sqlite_bind_text(s, 3, a->key);
    sqlite3_bind_int64(s, 4, a->now_ms);
    rc = tg_sqlite_one(st, s, "idempotency record");
    if (rc == TG_OK) {
        const char *cur = tg_sqlite_col_text(s, 0);
        rc = a->replaces != NULL && cur != NULL && strcmp(cur, a->replaces) == 0 ? TG_OK
                                                                                : TG_EEXIST;
    } else if (rc == TG_ENOTFOUND) {
        rc = a->replaces == NULL ? TG_OK : TG_EEXIST;
    }
    tg_sqlite_done(s);
    if (rc == TG_EEXIST)
        tg_sqlite_set_err(st, "the idempotency key was taken by another submission meanwhile");
    return rc;
}

static int put_record(struct tg_store *st, const struct tg_submission *sub,
                      const struct tg_admission *a)
{
    sqlite3_stmt *s;
    char now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    int rc = stmt(st, R_IDEM_PUT, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, sub->team_id);
    tg_sqlite_bind_text(s, 2, kind_names[a->kind]);
    tg_sqlite_bind_text(s, 3, a->key);
    tg_sqlite_bind_text(s, 4, a->request_hash);
    tg_sqlite_bind_text(s, 5, sub->id);
    tg_sqlite_bind_text(s, 6, now);
    sqlite3_bind_int64(s, 7, a->expires_ms);
    return tg_sqlite_run(st, s, "record the idempotency key");
}

struct admit_write {
    const struct tg_submission *sub;
    const struct tg_admission *a;
    struct tg_admit_refusal *why;
    int refused; /* over a limit: recorded as rejected */
};

static int admit_w(struct tg_store *st, void *arg)
{
    struct admit_write *w = arg;
    const struct tg_submission *sub = w->sub;
    const struct tg_admission *a = w->a;
    struct tg_sqlite_hold hold = {0};
    int rc = TG_OK;
    w->refused = 0; /* the group may run it again (tg_sqlite_writer.c) */
    if (a->key != NULL)
        rc = check_record(st, sub->team_id, a);
    if (rc == TG_OK)
        rc = check_limits(st, sub->team_id, a->runs, a->now_ms, w->why);
    if (rc == TG_ETOOBIG) {
        char msg[256];
        snprintf(msg, sizeof(msg), "team limit %s (%ld) reached", w->why->limit,
                 w->why->value);
        w->refused = 1;
        return tg_sqlite_sub_insert(st, sub, a->resumes, TG_STATE_REJECTED, 429, msg);
    }
    if (rc == TG_OK)
        rc = tg_sqlite_budget_check(st, sub, a, w->why, &hold);
    if (rc == TG_ETOOBIG) {
        w->refused = 1;
        return tg_sqlite_sub_insert(st, sub, a->resumes, TG_STATE_REJECTED, 402,
                                    "the team's budget would be passed");
    }
    if (rc == TG_OK)
        rc = tg_sqlite_sub_insert(st, sub, a->resumes, TG_STATE_PENDING, 0, NULL);
    if (rc == TG_OK)
        rc = tg_sqlite_budget_hold(st, sub, &hold);
    if (rc == TG_OK && a->key != NULL)
        rc = put_record(st, sub, a);
    return rc;
}

int tg_sqlite_admit(struct tg_store *st, const struct tg_submission *sub,
                    const struct tg_admission *a, struct tg_admit_refusal *why)
{
    if (sub == NULL || sub->id == NULL || sub->interface == NULL || a == NULL)
        return tg_sqlite_invalid(st, "admit: missing submission");
    struct admit_write w = {sub, a, why, 0};
    int rc = tg_sqlite_write(st, admit_w, &w);
    return rc == TG_OK && w.refused ? TG_ETOOBIG : rc;
}

struct answer_write {
    int64_t team_id;
    enum tg_idem_kind kind;
    const char *key, *sub_id;
    int status;
    const char *content_type, *body;
    size_t len;
};

static int answer_w(struct tg_store *st, void *arg)
{
    const struct answer_write *a = arg;
    sqlite3_stmt *s;
    int rc = stmt(st, R_IDEM_ANSWER, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, a->team_id);
    tg_sqlite_bind_text(s, 2, kind_names[a->kind]);
    tg_sqlite_bind_text(s, 3, a->key);
    tg_sqlite_bind_text(s, 4, a->sub_id);
    sqlite3_bind_int(s, 5, a->status);
    tg_sqlite_bind_text(s, 6, a->content_type);
    sqlite3_bind_blob64(s, 7, a->body != NULL ? a->body : "", (sqlite3_uint64)a->len,
                        SQLITE_STATIC);
    return tg_sqlite_run(st, s, "store the answer");
}

int tg_sqlite_idem_answer(struct tg_store *st, int64_t team_id, enum tg_idem_kind kind,
                          const char *key, const char *sub_id, int status,
                          const char *content_type, const char *body, size_t len)
{
    struct answer_write a = {team_id, kind, key, sub_id, status, content_type, body, len};
    return tg_sqlite_write(st, answer_w, &a);
}

int tg_sqlite_idem_prune(struct tg_store *st, int64_t now_ms, long *n)
{
    sqlite3_stmt *s;
    int rc = stmt(st, R_IDEM_PRUNE, &s);
    if (rc == TG_OK)
        rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, now_ms);
    rc = tg_sqlite_run(st, s, "prune idempotency records");
    if (n != NULL)
        *n = rc == TG_OK ? (long)sqlite3_changes(st->db) : 0;
    return tg_sqlite_tx_end(st, rc);
}

/* ---- limits ------------------------------------------------------------------------------ */

int tg_sqlite_limits_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                         const struct tg_limits *l)
{
    if (who == NULL || who->id == NULL || who->interface == NULL || team == NULL)
        return tg_sqlite_invalid(st, "limits: missing actor or team");
    int rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    sqlite3_stmt *s;
    int64_t team_id = 0;
    char before[128] = "", after[128];
    rc = stmt(st, R_TEAM, &s);
    if (rc == TG_OK) {
        tg_sqlite_bind_text(s, 1, team);
        rc = tg_sqlite_one(st, s, "read the team");
        if (rc == TG_OK) {
            team_id = sqlite3_column_int64(s, 0);
            snprintf(before, sizeof(before), "{\"runs_per_minute\":%lld,\"in_flight\":%lld}",
                     (long long)sqlite3_column_int64(s, 1), (long long)sqlite3_column_int64(s, 2));
        } else if (rc == TG_ENOTFOUND) {
            tg_sqlite_set_err(st, "no team %.64s", team);
        }
        tg_sqlite_done(s);
    }
    if (rc == TG_OK)
        rc = stmt(st, R_LIMITS_SET, &s);
    if (rc == TG_OK) {
        char now[TG_TIME_LEN];
        tg_sqlite_now_text(now);
        sqlite3_bind_int64(s, 1, team_id);
        sqlite3_bind_int64(s, 2, l->runs_per_minute);
        sqlite3_bind_int64(s, 3, l->in_flight);
        tg_sqlite_bind_text(s, 4, now);
        rc = tg_sqlite_run(st, s, "set limits");
    }
    if (rc == TG_OK) {
        snprintf(after, sizeof(after), "{\"runs_per_minute\":%ld,\"in_flight\":%ld}",
                 l->runs_per_minute, l->in_flight);
        rc = tg_sqlite_admin_log(st, who, "team.limits", "team", team, team, before, after);
    }
    return tg_sqlite_tx_end(st, rc);
}

/* ---- reconciliation ---------------------------------------------------------------------- */

/* The calls of a submission being loaded, in a pool array that grows by doubling. */
struct recon_calls {
    struct tg_pool *pool;
    struct tg_recon_sub *out;
    size_t cap;
};

static int recon_call_row(void *arg, sqlite3_stmt *s)
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
    const char *op = tg_sqlite_col_text(s, 1);
    const char *outcome = tg_sqlite_col_text(s, 4);
    c->seq = sqlite3_column_int(s, 0);
    c->add_runs = op != NULL && strcmp(op, "add_runs") == 0;
    c->first_input = sqlite3_column_int(s, 2);
    c->num_inputs = sqlite3_column_int(s, 3);
    c->outcome = TG_OUTCOME_UNKNOWN;
    for (int o = TG_OUTCOME_OK; outcome != NULL && o <= TG_OUTCOME_NOT_SENT; o++)
        if (strcmp(outcome, tg_domain_outcome_name((enum tg_outcome)o)) == 0)
            c->outcome = (enum tg_outcome)o;
    c->runs = (long)sqlite3_column_int64(s, 5);
    return TG_OK;
}

int tg_sqlite_recon_load(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
                         struct tg_recon_sub *out)
{
    sqlite3_stmt *s;
    memset(out, 0, sizeof(*out));
    int rc = stmt(st, R_RECON_SUB, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    rc = tg_sqlite_one(st, s, "read the submission");
    if (rc == TG_OK) {
        out->id = tg_pool_strdup(pool, sub_id);
        out->team_id = sqlite3_column_int64(s, 0);
        out->state = parse_state(tg_sqlite_col_text(s, 1));
        out->interface = tg_pool_strdup(pool, tg_sqlite_col_text(s, 2));
        out->taskgroup_id = tg_pool_strdup(pool, tg_sqlite_col_text(s, 3));
        out->num_inputs = sqlite3_column_int(s, 4);
        const char *received = tg_sqlite_col_text(s, 5);
        if (received == NULL || tg_time_parse(received, &out->received_ms) != TG_OK)
            out->received_ms = 0;
        out->resume_cursor = tg_pool_strdup(pool, tg_sqlite_col_text(s, 6));
    }
    tg_sqlite_done(s);
    if (rc != TG_OK)
        return rc;
    rc = stmt(st, R_RECON_CALLS, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    struct recon_calls c = {pool, out, 0};
    return tg_sqlite_each(st, s, "read the calls", recon_call_row, &c);
}

int tg_sqlite_recon_cursor(struct tg_store *st, struct tg_pool *pool, const char *taskgroup_id,
                           int64_t before_ms, struct tg_recon_cursor *out)
{
    sqlite3_stmt *s;
    memset(out, 0, sizeof(*out));
    int rc = stmt(st, R_RECON_CURSOR, &s);
    if (rc != TG_OK)
        return rc;
    char before[TG_TIME_LEN];
    tg_time_format(before_ms, before);
    tg_sqlite_bind_text(s, 1, taskgroup_id);
    tg_sqlite_bind_text(s, 2, before);
    rc = tg_sqlite_one(st, s, "find the group's last cursor");
    if (rc == TG_OK) {
        out->submission_id = tg_pool_strdup(pool, tg_sqlite_col_text(s, 0));
        out->seq = sqlite3_column_int(s, 1);
        out->run_cursor = tg_pool_strdup(pool, tg_sqlite_col_text(s, 2));
        if (out->submission_id == NULL)
            rc = TG_ENOMEM;
    }
    tg_sqlite_done(s);
    return rc;
}

/* Whether call seq of sub_id has runs recorded: by this transaction's start another
 * reconciliation may have recorded what this one found. */
static int call_has_runs(struct tg_store *st, const char *sub_id, int seq, int *has)
{
    sqlite3_stmt *s;
    int rc = stmt(st, R_CALL_HAS_RUNS, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    sqlite3_bind_int(s, 2, seq);
    rc = tg_sqlite_one(st, s, "look for a call's runs");
    tg_sqlite_done(s);
    *has = rc == TG_OK;
    return rc == TG_ENOTFOUND ? TG_OK : rc;
}

static int add_found(struct tg_store *st, const struct tg_recon_write *w,
                     const struct tg_recon_found *f, const char *now)
{
    sqlite3_stmt *s;
    int has = 0;
    int rc = call_has_runs(st, w->sub_id, f->seq, &has);
    if (rc != TG_OK || has)
        return rc;
    if (!f->recorded) {
        char path[300];
        snprintf(path, sizeof(path), "%s/tasks/groups/%s/runs", w->api != NULL ? w->api : "/v1",
                 w->taskgroup_id != NULL ? w->taskgroup_id : "");
        rc = stmt(st, R_CALL_ADD, &s);
        if (rc != TG_OK)
            return rc;
        tg_sqlite_bind_text(s, 1, w->sub_id);
        sqlite3_bind_int(s, 2, f->seq);
        tg_sqlite_bind_text(s, 3, path);
        sqlite3_bind_int(s, 4, f->first_input);
        sqlite3_bind_int(s, 5, f->num_inputs);
        tg_sqlite_bind_text(s, 6, now);
        tg_sqlite_bind_text(s, 7,
                            "the daemon stopped before this call's outcome was recorded; "
                            "found upstream by reconciliation");
        tg_sqlite_bind_text(s, 8, f->run_cursor);
        rc = tg_sqlite_run(st, s, "record a found call");
        if (rc != TG_OK)
            return rc;
    }
    rc = tg_sqlite_runs_add(st, w->sub_id, f->seq, f->first_input, f->nruns, f->run_ids,
                            f->processors, NULL);
    /* Runs the tracker saw complete before they were known as the gateway's. */
    if (rc == TG_OK)
        rc = tg_sqlite_counts_duration_call(st, w->sub_id, f->seq);
    return rc;
}

int tg_sqlite_recon_write(struct tg_store *st, const struct tg_recon_write *w)
{
    char now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    int rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    sqlite3_stmt *s;
    if (w->state == TG_STATE_ACCEPTED || w->state == TG_STATE_FAILED) {
        /* The state first: it fails when another reconciliation got there before. */
        rc = stmt(st, R_RECON_FINISH, &s);
        if (rc == TG_OK) {
            tg_sqlite_bind_text(s, 1, w->sub_id);
            tg_sqlite_bind_text(s, 2, state_text(w->state));
            tg_sqlite_bind_text(s, 3, w->state == TG_STATE_ACCEPTED ? NULL : w->detail);
            tg_sqlite_bind_text(s, 4, now);
            rc = tg_sqlite_run(st, s, "settle the submission");
        }
        if (rc == TG_OK && sqlite3_changes(st->db) == 0) {
            tg_sqlite_set_err(st, "submission %.64s is no longer unknown", w->sub_id);
            rc = TG_EINVAL;
        }
        if (rc == TG_OK)
            rc = tg_sqlite_counts_move(st, w->sub_id, "unknown", state_text(w->state));
    } else if (w->nfound > 0) {
        /* A read cut short records what it found whole while the submission stays unknown. */
        rc = stmt(st, R_RECON_OPEN, &s);
        if (rc == TG_OK) {
            tg_sqlite_bind_text(s, 1, w->sub_id);
            rc = tg_sqlite_one(st, s, "read the submission's state");
            tg_sqlite_done(s);
        }
        if (rc == TG_ENOTFOUND) {
            tg_sqlite_set_err(st, "submission %.64s is no longer unknown", w->sub_id);
            rc = TG_EINVAL;
        }
    }
    for (size_t i = 0; rc == TG_OK && i < w->nfound; i++)
        rc = add_found(st, w, &w->found[i], now);
    if (rc == TG_OK)
        rc = stmt(st, R_RECON_LOG, &s);
    if (rc == TG_OK) {
        tg_sqlite_bind_text(s, 1, w->sub_id);
        tg_sqlite_bind_text(s, 2, now);
        tg_sqlite_bind_text(s, 3, w->actor);
        tg_sqlite_bind_text(s, 4, w->taskgroup_id);
        tg_sqlite_bind_text(s, 5, w->outcome);
        sqlite3_bind_int64(s, 6, w->runs_found);
        tg_sqlite_bind_text(s, 7, w->detail);
        tg_sqlite_bind_text(s, 8, w->resume_cursor);
        rc = tg_sqlite_run(st, s, "log the reconciliation");
    }
    return tg_sqlite_tx_end(st, rc);
}

/* Ids into a pool, at most max; a walk that finds more stops with ID_LIST_FULL. */
#define ID_LIST_FULL 1
struct id_list {
    struct tg_pool *pool;
    const char **ids;
    size_t *n, max;
};

static int id_row(void *arg, sqlite3_stmt *s)
{
    struct id_list *l = arg;
    if (*l->n >= l->max)
        return ID_LIST_FULL;
    l->ids[*l->n] = tg_pool_strdup(l->pool, tg_sqlite_col_text(s, 0));
    if (l->ids[*l->n] == NULL)
        return TG_ENOMEM;
    (*l->n)++;
    return TG_OK;
}

int tg_sqlite_unknown_ids(struct tg_store *st, struct tg_pool *pool, size_t max,
                          int64_t before_ms, const char ***ids, size_t *n)
{
    sqlite3_stmt *s;
    *n = 0;
    *ids = tg_pool_calloc(pool, max + 1, sizeof(char *));
    if (*ids == NULL)
        return TG_ENOMEM;
    int rc = stmt(st, R_UNKNOWN, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, (int64_t)max);
    char before[TG_TIME_LEN];
    if (before_ms > 0) {
        tg_time_format(before_ms, before);
        tg_sqlite_bind_text(s, 2, before);
    }
    struct id_list l = {pool, *ids, n, max};
    rc = tg_sqlite_each(st, s, "list unknown submissions", id_row, &l);
    return rc == ID_LIST_FULL ? TG_OK : rc;
}

struct open_counts {
    long *pending, *unknown;
    int64_t *oldest_unknown_ms;
};

static int open_count_row(void *arg, sqlite3_stmt *s)
{
    const struct open_counts *c = arg;
    const char *state = tg_sqlite_col_text(s, 0);
    long n = (long)sqlite3_column_int64(s, 1);
    if (state != NULL && strcmp(state, "pending") == 0) {
        *c->pending = n;
    } else {
        const char *oldest = tg_sqlite_col_text(s, 2);
        *c->unknown = n;
        if (oldest == NULL || tg_time_parse(oldest, c->oldest_unknown_ms) != TG_OK)
            *c->oldest_unknown_ms = 0;
    }
    return TG_OK;
}

int tg_sqlite_open_counts(struct tg_store *st, long *pending, long *unknown,
                          int64_t *oldest_unknown_ms)
{
    sqlite3_stmt *s;
    *pending = *unknown = 0;
    *oldest_unknown_ms = 0;
    int rc = stmt(st, R_OPEN_COUNT, &s);
    if (rc != TG_OK)
        return rc;
    struct open_counts c = {pending, unknown, oldest_unknown_ms};
    return tg_sqlite_each(st, s, "count open submissions", open_count_row, &c);
}

/* The runs of earlier submissions by input index: the first found for an input stays. */
struct prior_runs {
    struct tg_pool *pool;
    const char **ids;
    size_t num_inputs;
};

static int prior_run_row(void *arg, sqlite3_stmt *s)
{
    const struct prior_runs *p = arg;
    int64_t i = sqlite3_column_int64(s, 0);
    if (i >= 0 && (size_t)i < p->num_inputs && p->ids[i] == NULL)
        p->ids[i] = tg_pool_strdup(p->pool, tg_sqlite_col_text(s, 1));
    return TG_OK;
}

int tg_sqlite_prior_runs(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
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
        sqlite3_stmt *s;
        const char *next = NULL;
        rc = stmt(st, R_PRIOR_SUB, &s);
        if (rc != TG_OK)
            break;
        tg_sqlite_bind_text(s, 1, cur);
        rc = tg_sqlite_one(st, s, "read an earlier submission");
        if (rc == TG_OK) {
            if (*group == NULL)
                *group = tg_pool_strdup(pool, tg_sqlite_col_text(s, 0));
            next = tg_pool_strdup(pool, tg_sqlite_col_text(s, 1));
        }
        tg_sqlite_done(s);
        if (rc == TG_ENOTFOUND)
            rc = TG_OK;
        if (rc == TG_OK)
            rc = stmt(st, R_PRIOR_RUNS, &s);
        if (rc != TG_OK)
            break;
        tg_sqlite_bind_text(s, 1, cur);
        struct prior_runs p = {pool, *ids, num_inputs};
        rc = tg_sqlite_each(st, s, "read earlier runs", prior_run_row, &p);
        cur = next;
    }
    return rc;
}
