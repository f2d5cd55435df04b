/* The audit trail's read side in SQLite (contract in tg_store.h, "audit reads"): fixed
 * prepared statements over the views audit_submissions, audit_calls and audit_runs, whose
 * optional filters are bound parameters ("?2 IS NULL OR team = ?2"), keyset pagination,
 * the summary (summary_counts), and the INSERT that logs every read in audit_reads. The
 * prune is tg_sqlite_prune.c. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "tg_store.h"
#include "tg_sqlite_int.h"

/* ---- the statements ------------------------------------------------------------------ */

/* The columns of each view, in the order the statements select them and the names below
 * list them: the views' own order, so that a list is the view as documented. */
#define SUB_COLS                                                                          \
    "submission_id, team, token_label, received_at, completed_at, remote_addr, interface," \
    " taskgroup_id, num_inputs, state, http_status, upstream_status, error, token_id,"     \
    " request_id"
#define RUN_COLS                                                                           \
    "run_id, submission_id, team, token_label, submitted_at, taskgroup_id, input_index,"   \
    " processor, run_cursor, event_cursor, call_seq, status, error, completed_at"
#define RUN_COLS_OF(v)                                                                     \
    v ".run_id, " v ".submission_id, " v ".team, " v ".token_label, " v ".submitted_at, "   \
    v ".taskgroup_id, " v ".input_index, " v ".processor, " v ".run_cursor, "              \
    v ".event_cursor, " v ".call_seq, " v ".status, " v ".error, " v ".completed_at"
#define CALL_COLS                                                                          \
    "submission_id, team, seq, operation, method, path, first_input, num_inputs,"          \
    " started_at, finished_at, duration_ms, outcome, http_status, run_cursor,"             \
    " event_cursor, error, taskgroup_id"

/* The submission's own detail adds its stored request after the view's columns. */
static const char *const sub_names[] = {
    "submission_id", "team", "token_label", "received_at", "completed_at", "remote_addr",
    "interface", "taskgroup_id", "num_inputs", "state", "http_status", "upstream_status",
    "error", "token_id", "request_id", "request"};
#define SUB_NCOLS 15
static const char *const run_names[] = {
    "run_id", "submission_id", "team", "token_label", "submitted_at", "taskgroup_id",
    "input_index", "processor", "run_cursor", "event_cursor", "call_seq", "status", "error",
    "completed_at"};
#define RUN_NCOLS 14
static const char *const call_names[] = {
    "submission_id", "team", "seq", "operation", "method", "path", "first_input",
    "num_inputs", "started_at", "finished_at", "duration_ms", "outcome", "http_status",
    "run_cursor", "event_cursor", "error", "taskgroup_id"};
#define CALL_NCOLS 17
#define ADMIN_COLS \
    "id, at, actor, actor_team, interface, action, object_type, object_id, team, before," \
    " after, remote_addr"
static const char *const admin_names[] = {
    "id", "at", "actor", "actor_team", "interface", "action", "object_type", "object_id",
    "team", "before", "after", "remote_addr"};
#define ADMIN_NCOLS 12
static const char *const summary_names[] = {"team", "day", "processor", "state", "submissions",
                                            "runs"};
#define SUMMARY_NCOLS 6
#define MAX_COLS 17

/* Parameters of the list statements, the same numbers in each:
 *   ?1 the reader's scope team   ?2 team        ?3 state       ?4 interface
 *   ?5 taskgroup_id              ?6 since       ?7 until
 *   ?8 ?9 ?11 the key to continue after: time, submission id, input index
 *   ?10 the most rows to return (the page's limit plus one, to see whether more follow)
 *   ?15 the one team a read may show (team_of): the scope's, else the asked one
 *   ?16 a run's status
 * Times are bound always (open bounds as "" and "~", which sort before and after every
 * stored time), so that SQLite walks the time index as a range. */
#define SCOPE " AND (?1 IS NULL OR team = ?1) AND (?2 IS NULL OR team = ?2)"
#define WINDOW(t) " " t " >= ?6 AND " t " < ?7"

#define SUBS_SELECT "SELECT " SUB_COLS " FROM audit_submissions WHERE"
#define SUBS_WHERE                                                                     \
    WINDOW("received_at")                                                              \
    " AND received_at <= ?8 AND (received_at < ?8 OR submission_id < ?9)" SCOPE        \
    " AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR interface = ?4)"
#define SUBS_GROUP_F " AND (?5 IS NULL OR taskgroup_id = ?5)"
#define SUBS_ORDER " ORDER BY received_at DESC, submission_id DESC LIMIT ?10"
#define RUNS_SELECT "SELECT " RUN_COLS " FROM audit_runs WHERE"
#define RUNS_WHERE                                                                     \
    WINDOW("submitted_at")                                                             \
    " AND submitted_at <= ?8 AND (submitted_at < ?8 OR submission_id < ?9"             \
    "   OR (submission_id = ?9 AND input_index > ?11))" SCOPE
#define RUNS_STATUS_F " AND (?16 IS NULL OR status = ?16)"
#define RUNS_ORDER " ORDER BY submitted_at DESC, submission_id DESC, input_index LIMIT ?10"

/* The summary's rows (the view audit_summary's columns), by day, team, processor, state. */
#define SUMMARY_SELECT                                                                 \
    "SELECT t.name, c.day, nullif(c.processor, ''), c.state, sum(c.submissions),"       \
    " sum(c.runs) FROM summary_counts c JOIN teams t ON t.id = c.team_id"
#define SUMMARY_GROUP                                                                  \
    " GROUP BY c.day, t.name, c.processor, c.state"                                    \
    " HAVING sum(c.submissions) <> 0 OR sum(c.runs) <> 0"                              \
    " ORDER BY c.day, t.name, c.processor, c.state"

/* The durations' buckets by team, processor ('' for none, sorted first) and bucket. */
#define DURATIONS_SELECT                                                               \
    "SELECT t.name, nullif(c.processor, ''), c.bucket_ms, sum(c.runs), sum(c.total_ms),"  \
    " max(c.max_ms) FROM duration_counts c JOIN teams t ON t.id = c.team_id"
#define DURATIONS_GROUP                                                                \
    " GROUP BY t.name, c.processor, c.bucket_ms HAVING sum(c.runs) > 0"                 \
    " ORDER BY t.name, c.processor, c.bucket_ms"

static const char *const audit_sql[S_COUNT] = {
    /* Each list has one statement per filter an index answers, written as a plain
     * equality (a NULL test around it would keep SQLite from using the index): a group
     * (submissions_group_time), a state (submissions_state_time), a team (teams' name,
     * then submissions_team_time; ?15 is the scope's team or the asked one); the first of
     * these a read has picks the statement, the others are filters. */
    [A_SUBS] = SUBS_SELECT SUBS_WHERE SUBS_GROUP_F SUBS_ORDER,
    [A_SUBS_GROUP] = SUBS_SELECT " taskgroup_id = ?5 AND" SUBS_WHERE SUBS_ORDER,
    [A_SUBS_STATE] = SUBS_SELECT " state = ?3 AND" SUBS_WHERE SUBS_GROUP_F SUBS_ORDER,
    [A_SUBS_TEAM] = SUBS_SELECT " team = ?15 AND" SUBS_WHERE SUBS_GROUP_F SUBS_ORDER,
    /* Two ranges of submissions_state_time. */
    [A_OPEN] =
        "SELECT " SUB_COLS " FROM audit_submissions WHERE state IN ('pending', 'unknown')"
        " AND" WINDOW("received_at")
        " AND received_at >= ?8 AND (received_at > ?8 OR submission_id > ?9)" SCOPE
        " AND (?5 IS NULL OR taskgroup_id = ?5)"
        " ORDER BY received_at, submission_id LIMIT ?10",
    [A_RUNS] = RUNS_SELECT RUNS_WHERE " AND (?5 IS NULL OR taskgroup_id = ?5)" RUNS_STATUS_F
               RUNS_ORDER,
    [A_RUNS_GROUP] = RUNS_SELECT " taskgroup_id = ?5 AND" RUNS_WHERE RUNS_STATUS_F RUNS_ORDER,
    [A_RUNS_TEAM] = RUNS_SELECT " team = ?15 AND" RUNS_WHERE
                    " AND (?5 IS NULL OR taskgroup_id = ?5)" RUNS_STATUS_F RUNS_ORDER,
    [A_SUB_ONE] =
        "SELECT " SUB_COLS ", (SELECT request FROM submissions WHERE id = v.submission_id)"
        " FROM audit_submissions v WHERE submission_id = ?1 AND (?2 IS NULL OR team = ?2)",
    [A_CALLS_OF] = "SELECT " CALL_COLS " FROM audit_calls WHERE submission_id = ?1 ORDER BY seq",
    [A_RUNS_OF] =
        "SELECT " RUN_COLS " FROM audit_runs WHERE submission_id = ?1 ORDER BY input_index",
    /* The run's key from one look in each bucket's part of runs_id (012_scale.sql). */
    [A_RUN_ONE] =
        TG_SQLITE_RUN_KEY "SELECT " RUN_COLS_OF("v") " FROM k CROSS JOIN audit_runs v"
        " WHERE v.submission_id = k.sid AND v.input_index = k.idx"
        " AND (?2 IS NULL OR v.team = ?2)",
    [A_GROUP_EXISTS] =
        "SELECT 1 FROM audit_submissions WHERE taskgroup_id = ?1"
        " AND (?2 IS NULL OR team = ?2) LIMIT 1",
    [A_READ_LOG] =
        "INSERT INTO audit_reads (at, actor, actor_team, interface, query, remote_addr, rows)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* A deferred transaction: the reads of one answer see one snapshot. */
    [A_SNAP_BEGIN] = "BEGIN",
    [A_SNAP_END] = "COMMIT",
    /* ?12 object_id, ?13 object_type, ?14 action; ?2 team is the object's team. */
    [A_ADMIN] =
        "SELECT " ADMIN_COLS " FROM audit_admin WHERE" WINDOW("at")
        " AND at <= ?8 AND (at < ?8 OR id < ?11)"
        " AND (?2 IS NULL OR team = ?2) AND (?12 IS NULL OR object_id = ?12)"
        " AND (?13 IS NULL OR object_type = ?13) AND (?14 IS NULL OR action = ?14)"
        " ORDER BY at DESC, id DESC LIMIT ?10",
    /* The summary: a team's days (its part of the primary key), or every team's (the day
     * index). ?1 the team, ?2 the first day, ?3 the window's end: a day is in when it
     * begins before it. */
    [A_SUMMARY] = SUMMARY_SELECT " WHERE c.day >= ?2 AND c.day || 'T00:00:00.000Z' < ?3"
                  SUMMARY_GROUP,
    [A_SUMMARY_TEAM] =
        SUMMARY_SELECT " WHERE c.team_id = (SELECT id FROM teams WHERE name = ?1)"
        " AND c.day >= ?2 AND c.day || 'T00:00:00.000Z' < ?3" SUMMARY_GROUP,
    /* The durations' buckets, with the same window and the same two plans. */
    [A_DURATIONS] = DURATIONS_SELECT " WHERE c.day >= ?2 AND c.day || 'T00:00:00.000Z' < ?3"
                    DURATIONS_GROUP,
    [A_DURATIONS_TEAM] =
        DURATIONS_SELECT " WHERE c.team_id = (SELECT id FROM teams WHERE name = ?1)"
        " AND c.day >= ?2 AND c.day || 'T00:00:00.000Z' < ?3" DURATIONS_GROUP,
};

static int stmt(struct tg_store *st, enum stmt_id id, sqlite3_stmt **out)
{
    return tg_sqlite_stmt(st, id, audit_sql[id], out);
}

/* ---- rows ---------------------------------------------------------------------------- */

/* What a statement's rows are and which columns make their key. */
struct spec {
    enum tg_audit_kind kind;
    const char *const *names;
    int ncols;
    int json_cols;  /* a bit per column holding JSON text */
    int time_col, id_col, index_col; /* the key; index_col -1 when it has none */
};

static const struct spec sub_spec = {TG_AUDIT_KIND_SUBMISSION, sub_names, SUB_NCOLS, 0, 3, 0, -1};
static const struct spec sub_full_spec = {TG_AUDIT_KIND_SUBMISSION, sub_names, SUB_NCOLS + 1,
                                          1 << SUB_NCOLS, 3, 0, -1};
static const struct spec run_spec = {TG_AUDIT_KIND_RUN, run_names, RUN_NCOLS, 0, 4, 1, 6};
static const struct spec call_spec = {TG_AUDIT_KIND_CALL, call_names, CALL_NCOLS, 0, 8, 0, -1};
/* An admin row's key is (at, id), with the id as the index. */
static const struct spec admin_spec = {TG_AUDIT_KIND_ADMIN, admin_names, ADMIN_NCOLS,
                                       (1 << 9) | (1 << 10), 1, 0, 0};
/* The summary has no pages: its key columns are never read. */
static const struct spec summary_spec = {TG_AUDIT_KIND_SUMMARY, summary_names, SUMMARY_NCOLS,
                                         0, 1, 0, -1};

const char *const *tg_sqlite_audit_columns(enum tg_audit_kind kind, int *n)
{
    switch (kind) {
    case TG_AUDIT_KIND_CALL:
        *n = CALL_NCOLS;
        return call_names;
    case TG_AUDIT_KIND_RUN:
        *n = RUN_NCOLS;
        return run_names;
    case TG_AUDIT_KIND_ADMIN:
        *n = ADMIN_NCOLS;
        return admin_names;
    case TG_AUDIT_KIND_SUMMARY:
        *n = SUMMARY_NCOLS;
        return summary_names;
    default:
        *n = SUB_NCOLS;
        return sub_names;
    }
}

/* Hands the current row of s to fn as plain text. */
static int pass_row(sqlite3_stmt *s, const struct spec *sp, tg_audit_fn fn, void *arg)
{
    const char *values[MAX_COLS + 1];
    enum tg_audit_type types[MAX_COLS + 1];
    char nums[MAX_COLS + 1][24];
    assert(sp->ncols <= MAX_COLS + 1 && sqlite3_column_count(s) == sp->ncols);
    for (int i = 0; i < sp->ncols; i++) {
        int t = sqlite3_column_type(s, i);
        if (t == SQLITE_NULL) {
            values[i] = NULL;
            types[i] = TG_AUDIT_VAL_NULL;
        } else if (t == SQLITE_INTEGER) {
            snprintf(nums[i], sizeof(nums[i]), "%lld", (long long)sqlite3_column_int64(s, i));
            values[i] = nums[i];
            types[i] = TG_AUDIT_VAL_INT;
        } else {
            values[i] = tg_sqlite_col_text(s, i);
            if (values[i] == NULL)
                return TG_ENOMEM;
            types[i] = (sp->json_cols >> i) & 1 ? TG_AUDIT_VAL_JSON : TG_AUDIT_VAL_TEXT;
        }
    }
    struct tg_audit_row row = {sp->kind, sp->ncols, sp->names, values, types};
    return fn(arg, &row);
}

/* A walk passing rows to the caller's function: at most limit (< 0: all); *n counts the
 * rows passed, and the key of the last one is kept when last is not NULL. A row past the
 * limit sets more and stops the walk (with 1: what the caller's function returns may be
 * any value, so more, not the value, says why the walk stopped). */
struct pass {
    const struct spec *sp;
    tg_audit_fn fn;
    void *arg;
    long limit;
    long *n;
    struct tg_audit_key *last;
    int more;
};

static void copy_key(sqlite3_stmt *s, const struct spec *sp, struct tg_audit_key *key)
{
    tg_sqlite_col_copy(key->time, sizeof(key->time), s, sp->time_col);
    tg_sqlite_col_copy(key->id, sizeof(key->id), s, sp->id_col);
    key->index = sp->index_col >= 0 ? (long)sqlite3_column_int64(s, sp->index_col) : 0;
}

static int pass_one(void *arg, sqlite3_stmt *s)
{
    struct pass *p = arg;
    if (p->limit >= 0 && *p->n == p->limit) {
        p->more = 1;
        return 1;
    }
    int rc = pass_row(s, p->sp, p->fn, p->arg);
    /* A page counts the rows the caller took; a whole read, every row it was passed. */
    if (rc == TG_OK || p->last == NULL)
        (*p->n)++;
    if (rc == TG_OK && p->last != NULL)
        copy_key(s, p->sp, p->last);
    return rc;
}

/* Steps s to its end, passing every row; *n counts them. */
static int pass_all(struct tg_store *st, sqlite3_stmt *s, const struct spec *sp,
                    tg_audit_fn fn, void *arg, long *n)
{
    struct pass p = {sp, fn, arg, -1, n, NULL, 0};
    return tg_sqlite_each(st, s, "read the audit trail", pass_one, &p);
}

/* The one team a read may show: the reader's scope, else the team asked for; NULL: any. */
static const char *team_of(const struct tg_audit_query *q)
{
    return q->scope_team != NULL ? q->scope_team : q->team;
}

/* One page of a list statement: at most limit rows after the key `after` (time ""
 * meaning from the start), in the statement's order. */
static int list_page(struct tg_store *st, enum stmt_id id, const struct spec *sp,
                     const struct tg_audit_query *q, long limit,
                     const struct tg_audit_key *after, int ascending, tg_audit_fn fn,
                     void *arg, struct tg_audit_page *page)
{
    if (limit < 1 || limit > 100000)
        return tg_sqlite_invalid(st, "a page holds 1 to 100,000 rows");
    sqlite3_stmt *s;
    int rc = stmt(st, id, &s);
    if (rc != TG_OK)
        return rc;
    const char *from = after->time[0] != '\0' ? after->time : ascending ? "" : "~";
    int src = SQLITE_OK;
    /* Text parameters by number; 10 and 11 are integers, bound below. */
    const char *text[17] = {NULL, q->scope_team, q->team, q->state, q->interface,
                            q->taskgroup_id, q->since != NULL ? q->since : "",
                            q->until != NULL ? q->until : "~", from, after->id, NULL, NULL,
                            q->object, q->object_type, q->action, team_of(q),
                            q->run_status};
    int max = sqlite3_bind_parameter_count(s);
    for (int i = 1; i < 17 && src == SQLITE_OK; i++)
        if (i != 10 && i != 11 && i <= max && sqlite3_bind_parameter_name(s, i) != NULL)
            src = tg_sqlite_bind_text(s, i, text[i]);
    if (src == SQLITE_OK)
        src = sqlite3_bind_int64(s, 10, (sqlite3_int64)limit + 1);
    if (src == SQLITE_OK && max >= 11)
        src = sqlite3_bind_int64(s, 11, after->index);
    if (src != SQLITE_OK) {
        rc = tg_sqlite_db_err(st, src, "bind the audit filters");
        goto out;
    }
    long n = 0;
    struct pass p = {sp, fn, arg, limit, &n, &page->last, 0};
    rc = tg_sqlite_each(st, s, "read the audit trail", pass_one, &p);
    page->rows += n;
    if (p.more) {
        page->more = 1;
        rc = TG_OK;
    }
    return rc;
out:
    tg_sqlite_done(s);
    return rc;
}

static int check_query(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                       struct tg_audit_page *page)
{
    if (page != NULL)
        memset(page, 0, sizeof(*page));
    if (q == NULL || fn == NULL || page == NULL)
        return tg_sqlite_invalid(st, "an audit read needs a query, a callback and a page");
    return TG_OK;
}

int tg_sqlite_audit_submissions(struct tg_store *st, const struct tg_audit_query *q,
                                tg_audit_fn fn, void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc != TG_OK)
        return rc;
    enum stmt_id id = q->taskgroup_id != NULL ? A_SUBS_GROUP
                      : q->state != NULL      ? A_SUBS_STATE
                      : team_of(q) != NULL    ? A_SUBS_TEAM
                                              : A_SUBS;
    return list_page(st, id, &sub_spec, q, q->limit, &q->after, 0, fn, arg, page);
}

int tg_sqlite_audit_open(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                         void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc != TG_OK)
        return rc;
    return list_page(st, A_OPEN, &sub_spec, q, q->limit, &q->after, 1, fn, arg, page);
}

int tg_sqlite_audit_runs(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                         void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc != TG_OK)
        return rc;
    enum stmt_id id = q->taskgroup_id != NULL ? A_RUNS_GROUP
                      : team_of(q) != NULL    ? A_RUNS_TEAM
                                              : A_RUNS;
    return list_page(st, id, &run_spec, q, q->limit, &q->after, 0, fn, arg, page);
}

int tg_sqlite_audit_admin(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                          void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc == TG_OK && q->scope_team != NULL)
        rc = tg_sqlite_invalid(st, "the admin log is read by audit and admin readers only");
    if (rc != TG_OK)
        return rc;
    return list_page(st, A_ADMIN, &admin_spec, q, q->limit, &q->after, 0, fn, arg, page);
}

/* ---- one object, from one snapshot ----------------------------------------------------- */

int tg_sqlite_snapshot_begin(struct tg_store *st)
{
    sqlite3_stmt *s;
    int rc = stmt(st, A_SNAP_BEGIN, &s);
    return rc == TG_OK ? tg_sqlite_run(st, s, "begin a read") : rc;
}

int tg_sqlite_snapshot_end(struct tg_store *st, int rc)
{
    sqlite3_stmt *s;
    int end = stmt(st, A_SNAP_END, &s);
    if (end == TG_OK)
        end = tg_sqlite_run(st, s, "end a read");
    return rc != TG_OK ? rc : end;
}

/* Binds id and scope to a one-object statement and passes its rows. TG_ENOTFOUND when
 * it has none. */
static int one(struct tg_store *st, enum stmt_id id, const struct spec *sp, const char *key,
               const char *scope_team, tg_audit_fn fn, void *arg, long *n)
{
    sqlite3_stmt *s;
    int rc = stmt(st, id, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, key);
    if (sqlite3_bind_parameter_count(s) >= 2)
        tg_sqlite_bind_text(s, 2, scope_team);
    long before = *n;
    rc = pass_all(st, s, sp, fn, arg, n);
    if (rc == TG_OK && *n == before) {
        tg_sqlite_set_err(st, "no such record");
        rc = TG_ENOTFOUND;
    }
    return rc;
}

/* Lists every row of a by-submission statement (calls, runs). */
static int children(struct tg_store *st, enum stmt_id id, const struct spec *sp,
                    const char *sub_id, tg_audit_fn fn, void *arg, long *n)
{
    sqlite3_stmt *s;
    int rc = stmt(st, id, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    return pass_all(st, s, sp, fn, arg, n);
}

int tg_sqlite_audit_submission(struct tg_store *st, const char *scope_team, const char *id,
                               tg_audit_fn fn, void *arg, long *rows)
{
    long n = 0;
    if (id == NULL || fn == NULL)
        return tg_sqlite_invalid(st, "audit submission: no id or callback");
    int rc = tg_sqlite_snapshot_begin(st);
    if (rc != TG_OK)
        return rc;
    rc = one(st, A_SUB_ONE, &sub_full_spec, id, scope_team, fn, arg, &n);
    if (rc == TG_OK)
        rc = children(st, A_CALLS_OF, &call_spec, id, fn, arg, &n);
    if (rc == TG_OK)
        rc = children(st, A_RUNS_OF, &run_spec, id, fn, arg, &n);
    rc = tg_sqlite_snapshot_end(st, rc);
    if (rows != NULL)
        *rows = n;
    return rc;
}

/* Remembers the submission of the run that one() passed on, then hands the row on. */
struct run_hop {
    tg_audit_fn fn;
    void *arg;
    char sub_id[TG_AUDIT_KEY_ID_MAX + 1];
};

static int note_submission(void *arg, const struct tg_audit_row *row)
{
    struct run_hop *hop = arg;
    assert(row->ncols > 1 && strcmp(row->names[1], "submission_id") == 0);
    const char *sub = row->values[1];
    snprintf(hop->sub_id, sizeof(hop->sub_id), "%s", sub != NULL ? sub : "");
    return hop->fn(hop->arg, row);
}

int tg_sqlite_audit_run(struct tg_store *st, const char *scope_team, const char *run_id,
                        tg_audit_fn fn, void *arg, long *rows)
{
    long n = 0;
    if (run_id == NULL || fn == NULL)
        return tg_sqlite_invalid(st, "audit run: no id or callback");
    struct run_hop hop = {fn, arg, ""};
    int rc = tg_sqlite_snapshot_begin(st);
    if (rc != TG_OK)
        return rc;
    rc = one(st, A_RUN_ONE, &run_spec, run_id, scope_team, note_submission, &hop, &n);
    if (rc == TG_OK)
        rc = one(st, A_SUB_ONE, &sub_full_spec, hop.sub_id, scope_team, fn, arg, &n);
    rc = tg_sqlite_snapshot_end(st, rc);
    if (rows != NULL)
        *rows = n;
    return rc;
}

static int group_exists(struct tg_store *st, const char *group, const char *scope_team)
{
    sqlite3_stmt *s;
    int rc = stmt(st, A_GROUP_EXISTS, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, group);
    tg_sqlite_bind_text(s, 2, scope_team);
    rc = tg_sqlite_one(st, s, "look up the task group");
    if (rc == TG_ENOTFOUND)
        tg_sqlite_set_err(st, "no such task group");
    tg_sqlite_done(s);
    return rc;
}

int tg_sqlite_audit_group(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                          void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc == TG_OK && q->taskgroup_id == NULL)
        rc = tg_sqlite_invalid(st, "audit group: no group id");
    if (rc == TG_OK)
        rc = tg_sqlite_snapshot_begin(st);
    if (rc != TG_OK)
        return rc;
    rc = group_exists(st, q->taskgroup_id, q->scope_team);
    if (rc == TG_OK && q->after.time[0] == '\0') {
        struct tg_audit_page subs;
        struct tg_audit_key start;
        memset(&subs, 0, sizeof(subs));
        memset(&start, 0, sizeof(start));
        rc = list_page(st, A_SUBS_GROUP, &sub_spec, q, TG_AUDIT_GROUP_SUBS, &start, 0, fn, arg,
                       &subs);
        page->truncated = subs.more;
        page->rows = subs.rows;
    }
    if (rc == TG_OK)
        rc = list_page(st, A_RUNS_GROUP, &run_spec, q, q->limit, &q->after, 0, fn, arg, page);
    return tg_sqlite_snapshot_end(st, rc);
}

/* ---- the summary ----------------------------------------------------------------------- */

int tg_sqlite_audit_summary(struct tg_store *st, const struct tg_audit_query *q,
                            tg_audit_fn fn, void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc != TG_OK)
        return rc;
    const char *team = q->scope_team != NULL ? q->scope_team : q->team;
    if (q->scope_team != NULL && q->team != NULL && strcmp(q->scope_team, q->team) != 0)
        return TG_OK; /* another team than the reader's own: nothing */
    char first[11] = "";
    if (q->since != NULL)
        snprintf(first, sizeof(first), "%.10s", q->since);
    sqlite3_stmt *s;
    rc = stmt(st, team != NULL ? A_SUMMARY_TEAM : A_SUMMARY, &s);
    if (rc != TG_OK)
        return rc;
    if (team != NULL)
        tg_sqlite_bind_text(s, 1, team);
    tg_sqlite_bind_text(s, 2, first);
    tg_sqlite_bind_text(s, 3, q->until != NULL ? q->until : "~");
    return pass_all(st, s, &summary_spec, fn, arg, &page->rows);
}

struct duration_walk {
    tg_duration_fn fn;
    void *arg;
};

static int duration_row(void *arg, sqlite3_stmt *s)
{
    struct duration_walk *w = arg;
    const char *team = tg_sqlite_col_text(s, 0);
    const char *processor =
        sqlite3_column_type(s, 1) == SQLITE_NULL ? NULL : tg_sqlite_col_text(s, 1);
    return w->fn(w->arg, team, processor, sqlite3_column_int64(s, 2),
                 sqlite3_column_int64(s, 3), sqlite3_column_int64(s, 4),
                 sqlite3_column_int64(s, 5));
}

int tg_sqlite_audit_durations(struct tg_store *st, const struct tg_audit_query *q,
                              tg_duration_fn fn, void *arg)
{
    const char *team = q->scope_team != NULL ? q->scope_team : q->team;
    if (q->scope_team != NULL && q->team != NULL && strcmp(q->scope_team, q->team) != 0)
        return TG_OK; /* another team than the reader's own: nothing */
    char first[11] = "";
    if (q->since != NULL)
        snprintf(first, sizeof(first), "%.10s", q->since);
    sqlite3_stmt *s;
    int rc = stmt(st, team != NULL ? A_DURATIONS_TEAM : A_DURATIONS, &s);
    if (rc != TG_OK)
        return rc;
    if (team != NULL)
        tg_sqlite_bind_text(s, 1, team);
    tg_sqlite_bind_text(s, 2, first);
    tg_sqlite_bind_text(s, 3, q->until != NULL ? q->until : "~");
    struct duration_walk w = {fn, arg};
    return tg_sqlite_each(st, s, "read the audit summary", duration_row, &w);
}

/* ---- the log of reads ------------------------------------------------------------------ */

#define READ_QUERY_MAX 2000

int tg_sqlite_audit_read_log(struct tg_store *st, const struct tg_actor *who,
                             const char *query, long rows)
{
    if (who == NULL || who->id == NULL || who->interface == NULL)
        return tg_sqlite_invalid(st, "an audit read needs an actor");
    char what[READ_QUERY_MAX + 1];
    size_t n = query != NULL ? strlen(query) : 0;
    if (n > READ_QUERY_MAX) {
        n = READ_QUERY_MAX;
        while (n > 0 && ((unsigned char)query[n] & 0xc0) == 0x80)
            n--; /* never cut a UTF-8 sequence in two */
    }
    if (query != NULL)
        memcpy(what, query, n);
    what[n] = '\0';
    char now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    sqlite3_stmt *s;
    int rc = stmt(st, A_READ_LOG, &s);
    if (rc == TG_OK)
        rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_actor(s, now, who);
    tg_sqlite_bind_text(s, 5, query != NULL ? what : NULL);
    tg_sqlite_bind_text(s, 6, who->remote_addr);
    if (rows >= 0)
        sqlite3_bind_int64(s, 7, rows);
    rc = tg_sqlite_run(st, s, "log the audit read");
    return tg_sqlite_tx_end(st, rc);
}
