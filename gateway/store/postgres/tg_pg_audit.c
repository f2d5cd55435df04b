/* The audit trail's read side in PostgreSQL (tg_pg_int.h; contract in tg_store.h, "audit
 * reads"), row for row what tg_sqlite_audit.c answers: fixed prepared statements over the
 * views audit_submissions, audit_calls, audit_runs and audit_admin, whose optional filters
 * are parameters ("$2::text IS NULL OR team = $2"), keyset pagination with the same keys
 * and cursors, the reads of one answer in one REPEATABLE READ snapshot, the INSERT that
 * logs every read in audit_reads, and the summary (the prune is tg_pg_prune.c).
 *
 * Texts are compared and sorted COLLATE "C" (bytewise, as SQLite's BINARY): the database's
 * own collation may order ids and the open bounds "" and "~" otherwise, which would change
 * the pages and break the cursors SQLite's order gives. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_pg_int.h"

/* ---- the columns ------------------------------------------------------------------------ */

/* The column lists are the views' (the same on both backends' schemas), so the SQLite
 * backend's lists are the build's (tg_store.c asks the first backend); the statements
 * below select the same columns in the same order, and pass_one checks every result's
 * column names against the lists, so the two cannot drift apart silently. */
const char *const *tg_pg_audit_columns(enum tg_audit_kind kind, int *n)
{
    return tg_sqlite_backend.audit_columns(kind, n);
}

#define MAX_COLS 17
/* The submission's own detail adds its stored request after the view's columns. */
static const char *sub_full_names[MAX_COLS + 1];
static int sub_full_ncols;
static pthread_once_t sub_full_once = PTHREAD_ONCE_INIT;

static void sub_full_init(void)
{
    int n;
    const char *const *names = tg_pg_audit_columns(TG_AUDIT_KIND_SUBMISSION, &n);
    if (n > MAX_COLS)
        return; /* left empty: every read of it fails the column check */
    for (int i = 0; i < n; i++)
        sub_full_names[i] = names[i];
    sub_full_names[n] = "request";
    sub_full_ncols = n + 1;
}

/* ---- the statements ------------------------------------------------------------------ */

/* The columns of each view, in the views' own order (the names the lists give). */
#define SUB_COLS                                                                          \
    "submission_id, team, token_label, received_at, completed_at, remote_addr, interface," \
    " taskgroup_id, num_inputs, state, http_status, upstream_status, error, token_id,"     \
    " request_id"
#define RUN_COLS                                                                           \
    "run_id, submission_id, team, token_label, submitted_at, taskgroup_id, input_index,"   \
    " processor, run_cursor, event_cursor, call_seq, status, error, completed_at"
#define CALL_COLS                                                                          \
    "submission_id, team, seq, operation, method, path, first_input, num_inputs,"          \
    " started_at, finished_at, duration_ms, outcome, http_status, run_cursor,"             \
    " event_cursor, error, taskgroup_id"
#define ADMIN_COLS \
    "id, at, actor, actor_team, interface, action, object_type, object_id, team, before," \
    " after, remote_addr"

#define C_ " COLLATE \"C\""

/* What a list statement's parameters are: each $n is one of these (SQLite's numbers, so
 * that the two files read alike). PostgreSQL must know every parameter's type, so each
 * statement takes only those it uses, numbered in the order its slot list gives. */
enum slot {
    P_SCOPE = 1, /* the reader's scope team */
    P_TEAM,
    P_STATE,
    P_IFACE,
    P_GROUP,
    P_SINCE,    /* "" without a bound */
    P_UNTIL,    /* "~" without a bound */
    P_FROM,     /* the key to continue after: time, submission id, input index (or id) */
    P_AFTER_ID,
    P_LIMIT,    /* the most rows to return: the page's limit plus one */
    P_INDEX,
    P_OBJECT,   /* the admin log's object_id, object_type, action */
    P_OBJTYPE,
    P_ACTION,
    P_ONE_TEAM, /* the one team the read may show: the scope's, else the asked one */
    P_STATUS,   /* a run's status */
    P_NSLOTS
};

struct list_stmt {
    struct tg_pg_stmt s;
    int n;
    unsigned char slot[P_NSLOTS]; /* slot[i]: what $(i+1) is */
};

/* The lists have no statement name: each is planned at each run with its parameters'
 * values (tg_pg_int.h's struct tg_pg_stmt), so that its filters pick the index.
 *
 * The window and the key, then the scope: $1..$4 (or $5 with the index) of every list. */
#define WINDOW(t) " " t C_ " >= $1 AND " t C_ " < $2"
#define SCOPE(a, b) " AND ($" a "::text IS NULL OR team = $" a ")" \
                    " AND ($" b "::text IS NULL OR team = $" b ")"
#define SUBS_WHERE                                                                     \
    WINDOW("received_at")                                                             \
    " AND received_at" C_ " <= $3 AND (received_at" C_ " < $3 OR submission_id" C_    \
    " < $4)" SCOPE("5", "6")                                                          \
    " AND ($7::text IS NULL OR state = $7) AND ($8::text IS NULL OR interface = $8)"
#define SUBS_ORDER " ORDER BY received_at" C_ " DESC, submission_id" C_ " DESC LIMIT $10"
#define SUBS_SLOTS                                                                      \
    10, {P_SINCE, P_UNTIL, P_FROM, P_AFTER_ID, P_SCOPE, P_TEAM, P_STATE, P_IFACE, P_GROUP, \
         P_LIMIT}

static const struct list_stmt subs_stmt = {
    {NULL,
     "SELECT " SUB_COLS " FROM audit_submissions WHERE" SUBS_WHERE
     " AND ($9::text IS NULL OR taskgroup_id = $9)" SUBS_ORDER},
    SUBS_SLOTS};
/* With a group, a state or a team, an index finds the rows (submissions_group_time,
 * submissions_state_time, teams' name then submissions_team_time): one statement per
 * filter, as in SQLite, whose plan need not see through the NULL tests above. The first
 * of these the read has picks the statement. */
static const struct list_stmt subs_group_stmt = {
    {NULL,
     "SELECT " SUB_COLS " FROM audit_submissions WHERE taskgroup_id = $9 AND" SUBS_WHERE
     SUBS_ORDER},
    SUBS_SLOTS};
static const struct list_stmt subs_state_stmt = {
    {NULL,
     "SELECT " SUB_COLS " FROM audit_submissions WHERE state = $7 AND" SUBS_WHERE
     " AND ($9::text IS NULL OR taskgroup_id = $9)" SUBS_ORDER},
    SUBS_SLOTS};
static const struct list_stmt subs_team_stmt = {
    {NULL,
     "SELECT " SUB_COLS " FROM audit_submissions WHERE team = $11 AND" SUBS_WHERE
     " AND ($9::text IS NULL OR taskgroup_id = $9)" SUBS_ORDER},
    11, {P_SINCE, P_UNTIL, P_FROM, P_AFTER_ID, P_SCOPE, P_TEAM, P_STATE, P_IFACE, P_GROUP,
         P_LIMIT, P_ONE_TEAM}};
static const struct list_stmt open_stmt = {
    {NULL,
     "SELECT " SUB_COLS " FROM audit_submissions WHERE state IN ('pending', 'unknown') AND"
     WINDOW("received_at") " AND received_at" C_ " >= $3 AND (received_at" C_
     " > $3 OR submission_id" C_ " > $4)" SCOPE("5", "6")
     " AND ($7::text IS NULL OR taskgroup_id = $7)"
     " ORDER BY received_at" C_ ", submission_id" C_ " LIMIT $8"},
    8, {P_SINCE, P_UNTIL, P_FROM, P_AFTER_ID, P_SCOPE, P_TEAM, P_GROUP, P_LIMIT}};
#define RUNS_WHERE                                                                       \
    WINDOW("submitted_at")                                                              \
    " AND submitted_at" C_ " <= $3 AND (submitted_at" C_ " < $3 OR submission_id" C_    \
    " < $4 OR (submission_id = $4 AND input_index > $5))" SCOPE("6", "7")
#define RUNS_ORDER \
    " ORDER BY submitted_at" C_ " DESC, submission_id" C_ " DESC, input_index LIMIT $9"
#define RUNS_STATUS_F " AND ($10::text IS NULL OR status = $10)"
#define RUNS_SLOTS \
    10, {P_SINCE, P_UNTIL, P_FROM, P_AFTER_ID, P_INDEX, P_SCOPE, P_TEAM, P_GROUP, P_LIMIT, \
         P_STATUS}
static const struct list_stmt runs_stmt = {
    {NULL,
     "SELECT " RUN_COLS " FROM audit_runs WHERE" RUNS_WHERE
     " AND ($8::text IS NULL OR taskgroup_id = $8)" RUNS_STATUS_F RUNS_ORDER},
    RUNS_SLOTS};
static const struct list_stmt runs_group_stmt = {
    {NULL,
     "SELECT " RUN_COLS " FROM audit_runs WHERE taskgroup_id = $8 AND" RUNS_WHERE
     RUNS_STATUS_F RUNS_ORDER},
    RUNS_SLOTS};
static const struct list_stmt runs_team_stmt = {
    {NULL,
     "SELECT " RUN_COLS " FROM audit_runs WHERE team = $11 AND" RUNS_WHERE
     " AND ($8::text IS NULL OR taskgroup_id = $8)" RUNS_STATUS_F RUNS_ORDER},
    11, {P_SINCE, P_UNTIL, P_FROM, P_AFTER_ID, P_INDEX, P_SCOPE, P_TEAM, P_GROUP, P_LIMIT,
         P_STATUS, P_ONE_TEAM}};
/* An admin row's key is (at, id); q's team is the object's team. */
static const struct list_stmt admin_stmt = {
    {NULL,
     "SELECT " ADMIN_COLS " FROM audit_admin WHERE" WINDOW("at") " AND at" C_
     " <= $3 AND (at" C_ " < $3 OR id < $4)"
     " AND ($5::text IS NULL OR team = $5) AND ($6::text IS NULL OR object_id = $6)"
     " AND ($7::text IS NULL OR object_type = $7) AND ($8::text IS NULL OR action = $8)"
     " ORDER BY at" C_ " DESC, id DESC LIMIT $9"},
    9, {P_SINCE, P_UNTIL, P_FROM, P_INDEX, P_TEAM, P_OBJECT, P_OBJTYPE, P_ACTION, P_LIMIT}};

static const struct tg_pg_stmt sub_one_stmt = {
    "audit_sub_one",
    "SELECT " SUB_COLS ", (SELECT request FROM submissions WHERE id = v.submission_id)"
    " AS request FROM audit_submissions v WHERE submission_id = $1"
    " AND ($2::text IS NULL OR team = $2)"};
static const struct tg_pg_stmt calls_of_stmt = {
    "audit_calls_of", "SELECT " CALL_COLS " FROM audit_calls WHERE submission_id = $1 ORDER BY seq"};
static const struct tg_pg_stmt runs_of_stmt = {
    "audit_runs_of",
    "SELECT " RUN_COLS " FROM audit_runs WHERE submission_id = $1 ORDER BY input_index"};
static const struct tg_pg_stmt run_one_stmt = {
    "audit_run_one",
    "SELECT " RUN_COLS " FROM audit_runs WHERE run_id = $1 AND ($2::text IS NULL OR team = $2)"};
static const struct tg_pg_stmt group_exists_stmt = {
    "audit_group_exists",
    "SELECT 1 FROM audit_submissions WHERE taskgroup_id = $1"
    " AND ($2::text IS NULL OR team = $2) LIMIT 1"};
static const struct tg_pg_stmt read_log_stmt = {
    "audit_read_log",
    "INSERT INTO audit_reads (at, actor, actor_team, interface, query, remote_addr, rows)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"};
/* The reads of one answer see one snapshot (SQLite: one deferred transaction). */
static const struct tg_pg_stmt snap_begin_stmt = {
    "audit_snap_begin", "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"};

/* ---- rows ---------------------------------------------------------------------------- */

/* What a statement's rows are and which columns make their key. */
struct spec {
    enum tg_audit_kind kind;
    int full;       /* the submission's detail: the view's columns and "request" */
    int json_cols;  /* a bit per column holding JSON text */
    int time_col, id_col, index_col; /* the key; index_col -1 when it has none */
};

static const struct spec sub_spec = {TG_AUDIT_KIND_SUBMISSION, 0, 0, 3, 0, -1};
/* "request" is the column after the view's 15. */
static const struct spec sub_full_spec = {TG_AUDIT_KIND_SUBMISSION, 1, 1 << 15, 3, 0, -1};
static const struct spec run_spec = {TG_AUDIT_KIND_RUN, 0, 0, 4, 1, 6};
static const struct spec call_spec = {TG_AUDIT_KIND_CALL, 0, 0, 8, 0, -1};
/* An admin row's key is (at, id), with the id as the index. */
static const struct spec admin_spec = {TG_AUDIT_KIND_ADMIN, 0, (1 << 9) | (1 << 10), 1, 0, 0};

static const char *const *spec_names(const struct spec *sp, int *n)
{
    if (!sp->full)
        return tg_pg_audit_columns(sp->kind, n);
    pthread_once(&sub_full_once, sub_full_init);
    *n = sub_full_ncols;
    return sub_full_names;
}

/* The integer types' OIDs (pg_type.h's INT8OID, INT2OID, INT4OID: fixed in every server):
 * SQLite's INTEGER values, passed as TG_AUDIT_VAL_INT. */
static int is_int_type(Oid t)
{
    return t == 20 || t == 21 || t == 23;
}

/* A walk passing rows to the caller's function: at most limit (< 0: all); *n counts the
 * rows passed, and the key of the last one is kept when last is not NULL. A row past the
 * limit sets more and stops the walk (with 1: what the caller's function returns may be
 * any value, so more, not the value, says why the walk stopped). */
struct pass {
    struct tg_store *st;
    const struct spec *sp;
    tg_audit_fn fn;
    void *arg;
    long limit;
    long *n;
    struct tg_audit_key *last;
    int more;
    const char *const *names;
    int ncols;
};

/* A result's columns are the lists' (checked once per result, at its first row). */
static int check_columns(struct pass *p, const PGresult *res)
{
    int ok = PQnfields(res) == p->ncols && p->ncols <= MAX_COLS + 1;
    for (int i = 0; ok && i < p->ncols; i++)
        ok = strcmp(PQfname(res, i), p->names[i]) == 0;
    if (!ok) {
        tg_pg_set_err(p->st, "read the audit trail: the view's columns are not the audit "
                      "lists' (schema and build differ)");
        return TG_ERR;
    }
    return TG_OK;
}

static void copy_key(const PGresult *res, int i, const struct spec *sp,
                     struct tg_audit_key *key)
{
    tg_pg_copy(key->time, sizeof(key->time), res, i, sp->time_col);
    tg_pg_copy(key->id, sizeof(key->id), res, i, sp->id_col);
    key->index = sp->index_col >= 0 ? (long)tg_pg_int(res, i, sp->index_col) : 0;
}

/* Hands row i of res to the caller's function as plain text. */
static int pass_one(void *arg, PGresult *res, int i)
{
    struct pass *p = arg;
    if (i == 0) {
        int rc = check_columns(p, res);
        if (rc != TG_OK)
            return rc;
    }
    if (p->limit >= 0 && *p->n == p->limit) {
        p->more = 1;
        return 1;
    }
    const char *values[MAX_COLS + 1];
    enum tg_audit_type types[MAX_COLS + 1];
    for (int c = 0; c < p->ncols; c++) {
        values[c] = tg_pg_text(res, i, c);
        if (values[c] == NULL)
            types[c] = TG_AUDIT_VAL_NULL;
        else if (is_int_type(PQftype(res, c)))
            types[c] = TG_AUDIT_VAL_INT;
        else
            types[c] = (p->sp->json_cols >> c) & 1 ? TG_AUDIT_VAL_JSON : TG_AUDIT_VAL_TEXT;
    }
    struct tg_audit_row row = {p->sp->kind, p->ncols, p->names, values, types};
    int rc = p->fn(p->arg, &row);
    /* A page counts the rows the caller took; a whole read, every row it was passed. */
    if (rc == TG_OK || p->last == NULL)
        (*p->n)++;
    if (rc == TG_OK && p->last != NULL)
        copy_key(res, i, p->sp, p->last);
    return rc;
}

static void pass_init(struct pass *p, struct tg_store *st, const struct spec *sp,
                      tg_audit_fn fn, void *arg, long limit, long *n,
                      struct tg_audit_key *last)
{
    memset(p, 0, sizeof(*p));
    p->st = st;
    p->sp = sp;
    p->fn = fn;
    p->arg = arg;
    p->limit = limit;
    p->n = n;
    p->last = last;
    p->names = spec_names(sp, &p->ncols);
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2
                 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3 : s[0] >= 0xf0 && s[0] < 0xf5 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* overlong forms, surrogates and code points past U+10FFFF */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return len;
}

/* Whether s is valid UTF-8 throughout (PostgreSQL takes no other text). */
static int valid_utf8(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0, len; i < n; i += len)
        if ((len = utf8_len(u + i, n - i)) == 0)
            return 0;
    return 1;
}

/* One page of a list statement: at most limit rows after the key `after` (time ""
 * meaning from the start), in the statement's order. */
static int list_page(struct tg_store *st, const struct list_stmt *ls, const struct spec *sp,
                     const struct tg_audit_query *q, long limit,
                     const struct tg_audit_key *after, int ascending, tg_audit_fn fn,
                     void *arg, struct tg_audit_page *page)
{
    if (limit < 1 || limit > 100000)
        return tg_pg_invalid(st, "a page holds 1 to 100,000 rows");
    char max[TG_PG_I64_LEN], index[TG_PG_I64_LEN];
    const char *from = after->time[0] != '\0' ? after->time : ascending ? "" : "~";
    const char *by_slot[P_NSLOTS] = {
        [P_SCOPE] = q->scope_team,
        [P_TEAM] = q->team,
        [P_STATE] = q->state,
        [P_IFACE] = q->interface,
        [P_GROUP] = q->taskgroup_id,
        [P_SINCE] = q->since != NULL ? q->since : "",
        [P_UNTIL] = q->until != NULL ? q->until : "~",
        [P_FROM] = from,
        [P_AFTER_ID] = after->id,
        [P_LIMIT] = tg_pg_i64(max, (int64_t)limit + 1),
        [P_INDEX] = tg_pg_i64(index, after->index),
        [P_OBJECT] = q->object,
        [P_OBJTYPE] = q->object_type,
        [P_ACTION] = q->action,
        [P_ONE_TEAM] = q->scope_team != NULL ? q->scope_team : q->team,
        [P_STATUS] = q->run_status,
    };
    const char *params[P_NSLOTS];
    for (int i = 0; i < ls->n; i++) {
        params[i] = by_slot[ls->slot[i]];
        /* A filter no stored value can equal (the server would refuse the bytes): no rows,
         * SQLite's answer. */
        if (params[i] != NULL && ls->slot[i] != P_AFTER_ID && !valid_utf8(params[i]))
            return TG_OK;
    }
    long n = 0;
    struct pass p;
    pass_init(&p, st, sp, fn, arg, limit, &n, &page->last);
    int rc = tg_pg_each(st, &ls->s, ls->n, params, "read the audit trail", pass_one, &p);
    page->rows += n;
    if (p.more) {
        page->more = 1;
        rc = TG_OK;
    }
    return rc;
}

static int check_query(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                       struct tg_audit_page *page)
{
    if (page != NULL)
        memset(page, 0, sizeof(*page));
    if (q == NULL || fn == NULL || page == NULL)
        return tg_pg_invalid(st, "an audit read needs a query, a callback and a page");
    return TG_OK;
}

int tg_pg_audit_submissions(struct tg_store *st, const struct tg_audit_query *q,
                            tg_audit_fn fn, void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc != TG_OK)
        return rc;
    const struct list_stmt *ls = q->taskgroup_id != NULL                   ? &subs_group_stmt
                                 : q->state != NULL                        ? &subs_state_stmt
                                 : q->scope_team != NULL || q->team != NULL ? &subs_team_stmt
                                                                           : &subs_stmt;
    return list_page(st, ls, &sub_spec, q, q->limit, &q->after, 0, fn, arg, page);
}

int tg_pg_audit_open(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                     void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc != TG_OK)
        return rc;
    return list_page(st, &open_stmt, &sub_spec, q, q->limit, &q->after, 1, fn, arg, page);
}

int tg_pg_audit_runs(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                     void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc != TG_OK)
        return rc;
    const struct list_stmt *ls = q->taskgroup_id != NULL                   ? &runs_group_stmt
                                 : q->scope_team != NULL || q->team != NULL ? &runs_team_stmt
                                                                           : &runs_stmt;
    return list_page(st, ls, &run_spec, q, q->limit, &q->after, 0, fn, arg, page);
}

int tg_pg_audit_admin(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                      void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc == TG_OK && q->scope_team != NULL)
        rc = tg_pg_invalid(st, "the admin log is read by audit and admin readers only");
    if (rc != TG_OK)
        return rc;
    return list_page(st, &admin_stmt, &admin_spec, q, q->limit, &q->after, 0, fn, arg, page);
}

/* ---- one object, from one snapshot ----------------------------------------------------- */

int tg_pg_snapshot_begin(struct tg_store *st)
{
    int rc = tg_pg_run(st, &snap_begin_stmt, 0, NULL, "begin a read");
    if (rc == TG_OK)
        st->in_tx = 1;
    return rc;
}

int tg_pg_snapshot_end(struct tg_store *st, int rc)
{
    return tg_pg_tx_end(st, rc);
}

/* Passes the rows of a one-object statement (key $1, scope $2). TG_ENOTFOUND when it has
 * none. */
static int one(struct tg_store *st, const struct tg_pg_stmt *s, const struct spec *sp,
               const char *key, const char *scope_team, tg_audit_fn fn, void *arg, long *n)
{
    const char *params[] = {key, scope_team};
    long before = *n;
    struct pass p;
    pass_init(&p, st, sp, fn, arg, -1, n, NULL);
    int rc = tg_pg_each(st, s, 2, params, "read the audit trail", pass_one, &p);
    if (rc == TG_OK && *n == before) {
        tg_pg_set_err(st, "no such record");
        rc = TG_ENOTFOUND;
    }
    return rc;
}

/* Lists every row of a by-submission statement (calls, runs). */
static int children(struct tg_store *st, const struct tg_pg_stmt *s, const struct spec *sp,
                    const char *sub_id, tg_audit_fn fn, void *arg, long *n)
{
    const char *params[] = {sub_id};
    struct pass p;
    pass_init(&p, st, sp, fn, arg, -1, n, NULL);
    return tg_pg_each(st, s, 1, params, "read the audit trail", pass_one, &p);
}

int tg_pg_audit_submission(struct tg_store *st, const char *scope_team, const char *id,
                           tg_audit_fn fn, void *arg, long *rows)
{
    long n = 0;
    if (id == NULL || fn == NULL)
        return tg_pg_invalid(st, "audit submission: no id or callback");
    int rc = tg_pg_snapshot_begin(st);
    if (rc != TG_OK)
        return rc;
    rc = one(st, &sub_one_stmt, &sub_full_spec, id, scope_team, fn, arg, &n);
    if (rc == TG_OK)
        rc = children(st, &calls_of_stmt, &call_spec, id, fn, arg, &n);
    if (rc == TG_OK)
        rc = children(st, &runs_of_stmt, &run_spec, id, fn, arg, &n);
    rc = tg_pg_snapshot_end(st, rc);
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
    const char *sub = row->ncols > 1 && strcmp(row->names[1], "submission_id") == 0
                          ? row->values[1]
                          : NULL;
    snprintf(hop->sub_id, sizeof(hop->sub_id), "%s", sub != NULL ? sub : "");
    return hop->fn(hop->arg, row);
}

int tg_pg_audit_run(struct tg_store *st, const char *scope_team, const char *run_id,
                    tg_audit_fn fn, void *arg, long *rows)
{
    long n = 0;
    if (run_id == NULL || fn == NULL)
        return tg_pg_invalid(st, "audit run: no id or callback");
    struct run_hop hop = {fn, arg, ""};
    int rc = tg_pg_snapshot_begin(st);
    if (rc != TG_OK)
        return rc;
    rc = one(st, &run_one_stmt, &run_spec, run_id, scope_team, note_submission, &hop, &n);
    if (rc == TG_OK)
        rc = one(st, &sub_one_stmt, &sub_full_spec, hop.sub_id, scope_team, fn, arg, &n);
    rc = tg_pg_snapshot_end(st, rc);
    if (rows != NULL)
        *rows = n;
    return rc;
}

static int group_exists(struct tg_store *st, const char *group, const char *scope_team)
{
    const char *params[] = {group, scope_team};
    PGresult *res = NULL;
    int rc = tg_pg_one(st, &group_exists_stmt, 2, params, &res, "look up the task group");
    if (rc == TG_ENOTFOUND)
        tg_pg_set_err(st, "no such task group");
    PQclear(res);
    return rc;
}

int tg_pg_audit_group(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                      void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc == TG_OK && q->taskgroup_id == NULL)
        rc = tg_pg_invalid(st, "audit group: no group id");
    if (rc == TG_OK)
        rc = tg_pg_snapshot_begin(st);
    if (rc != TG_OK)
        return rc;
    rc = group_exists(st, q->taskgroup_id, q->scope_team);
    if (rc == TG_OK && q->after.time[0] == '\0') {
        struct tg_audit_page subs;
        struct tg_audit_key start;
        memset(&subs, 0, sizeof(subs));
        memset(&start, 0, sizeof(start));
        rc = list_page(st, &subs_group_stmt, &sub_spec, q, TG_AUDIT_GROUP_SUBS, &start, 0, fn,
                       arg, &subs);
        page->truncated = subs.more;
        page->rows = subs.rows;
    }
    if (rc == TG_OK)
        rc = list_page(st, &runs_group_stmt, &run_spec, q, q->limit, &q->after, 0, fn, arg,
                       page);
    return tg_pg_snapshot_end(st, rc);
}

/* ---- the summary ----------------------------------------------------------------------- */

/* summary_counts (sql/postgres/012_scale.sql) summed over its shards: a team's days (its
 * part of the primary key) or every team's (the day index). $1 the first day, $2 the
 * window's end (a day is in when it begins before it), $3 the team. */
#define SUMMARY_SELECT                                                                    \
    "SELECT t.name AS team, c.day AS day, nullif(c.processor, '') AS processor,"           \
    " c.state AS state, sum(c.submissions)::bigint AS submissions,"                        \
    " sum(c.runs)::bigint AS runs FROM summary_counts c JOIN teams t ON t.id = c.team_id"  \
    " WHERE c.day" C_ " >= $1 AND (c.day || 'T00:00:00.000Z')" C_ " < $2"
#define SUMMARY_GROUP                                                                     \
    " GROUP BY c.day, t.name, c.processor, c.state"                                       \
    " HAVING sum(c.submissions) <> 0 OR sum(c.runs) <> 0"                                 \
    " ORDER BY c.day" C_ ", t.name" C_ ", c.processor" C_ ", c.state" C_
static const struct tg_pg_stmt summary_stmt = {"audit_summary", SUMMARY_SELECT SUMMARY_GROUP};
static const struct tg_pg_stmt summary_team_stmt = {
    "audit_summary_team",
    SUMMARY_SELECT " AND c.team_id = (SELECT id FROM teams WHERE name = $3)" SUMMARY_GROUP};

static const struct spec summary_spec = {TG_AUDIT_KIND_SUMMARY, 0, 0, 1, 0, -1};

int tg_pg_audit_summary(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                        void *arg, struct tg_audit_page *page)
{
    int rc = check_query(st, q, fn, page);
    if (rc != TG_OK)
        return rc;
    const char *team = q->scope_team != NULL ? q->scope_team : q->team;
    if (q->scope_team != NULL && q->team != NULL && strcmp(q->scope_team, q->team) != 0)
        return TG_OK; /* another team than the reader's own: nothing */
    if (team != NULL && !valid_utf8(team))
        return TG_OK; /* no team has such a name (SQLite's answer) */
    char first[11] = "";
    if (q->since != NULL)
        snprintf(first, sizeof(first), "%.10s", q->since);
    const char *params[] = {first, q->until != NULL ? q->until : "~", team};
    struct pass p;
    pass_init(&p, st, &summary_spec, fn, arg, -1, &page->rows, NULL);
    return tg_pg_each(st, team != NULL ? &summary_team_stmt : &summary_stmt,
                      team != NULL ? 3 : 2, params, "read the audit summary", pass_one, &p);
}

/* duration_counts summed over its shards and days, by team, processor ('' sorts first) and
 * bucket; the same window and plans as the summary's. */
#define DURATIONS_SELECT                                                                  \
    "SELECT t.name, nullif(c.processor, ''), c.bucket_ms, sum(c.runs)::bigint,"            \
    " sum(c.total_ms)::bigint, max(c.max_ms) FROM duration_counts c"                       \
    " JOIN teams t ON t.id = c.team_id"                                                    \
    " WHERE c.day" C_ " >= $1 AND (c.day || 'T00:00:00.000Z')" C_ " < $2"
#define DURATIONS_GROUP                                                                   \
    " GROUP BY t.name, c.processor, c.bucket_ms HAVING sum(c.runs) > 0"                    \
    " ORDER BY t.name" C_ ", c.processor" C_ ", c.bucket_ms"
static const struct tg_pg_stmt durations_stmt = {"audit_durations",
                                                 DURATIONS_SELECT DURATIONS_GROUP};
static const struct tg_pg_stmt durations_team_stmt = {
    "audit_durations_team",
    DURATIONS_SELECT " AND c.team_id = (SELECT id FROM teams WHERE name = $3)" DURATIONS_GROUP};

struct duration_walk {
    tg_duration_fn fn;
    void *arg;
};

static int duration_row(void *arg, PGresult *res, int i)
{
    struct duration_walk *w = arg;
    return w->fn(w->arg, tg_pg_text(res, i, 0), tg_pg_text(res, i, 1),
                 strtoll(PQgetvalue(res, i, 2), NULL, 10), strtoll(PQgetvalue(res, i, 3), NULL, 10),
                 strtoll(PQgetvalue(res, i, 4), NULL, 10), strtoll(PQgetvalue(res, i, 5), NULL, 10));
}

int tg_pg_audit_durations(struct tg_store *st, const struct tg_audit_query *q,
                          tg_duration_fn fn, void *arg)
{
    const char *team = q->scope_team != NULL ? q->scope_team : q->team;
    if (q->scope_team != NULL && q->team != NULL && strcmp(q->scope_team, q->team) != 0)
        return TG_OK; /* another team than the reader's own: nothing */
    if (team != NULL && !valid_utf8(team))
        return TG_OK;
    char first[11] = "";
    if (q->since != NULL)
        snprintf(first, sizeof(first), "%.10s", q->since);
    const char *params[] = {first, q->until != NULL ? q->until : "~", team};
    struct duration_walk w = {fn, arg};
    return tg_pg_each(st, team != NULL ? &durations_team_stmt : &durations_stmt,
                      team != NULL ? 3 : 2, params, "read the audit summary", duration_row, &w);
}

/* ---- the log of reads ------------------------------------------------------------------ */

#define READ_QUERY_MAX 2000

/* What was asked, as the log keeps it: the first READ_QUERY_MAX bytes, never cutting a
 * UTF-8 sequence in two (as SQLite's backend). PostgreSQL stores only valid UTF-8 text, so
 * a byte that is not part of a valid sequence (SQLite would keep it as it came) is written
 * as '?': the read is logged rather than refused. */
static void read_query_text(char out[READ_QUERY_MAX + 1], const char *query)
{
    const unsigned char *q = (const unsigned char *)query;
    size_t n = strlen(query), o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_len(q + i, n - i);
        if (len == 0) {
            if (o + 1 > READ_QUERY_MAX)
                break;
            out[o++] = '?';
            i++;
            continue;
        }
        if (o + len > READ_QUERY_MAX)
            break;
        memcpy(out + o, q + i, len);
        o += len;
        i += len;
    }
    out[o] = '\0';
}

struct read_log {
    const struct tg_actor *who;
    const char *query; /* NULL: none */
    const char *rows;  /* NULL: the read failed */
};

static int read_log_w(struct tg_store *st, void *arg)
{
    const struct read_log *r = arg;
    char now[TG_TIME_LEN];
    tg_pg_now_text(now);
    const char *params[] = {now,      r->who->id,          r->who->team, r->who->interface,
                            r->query, r->who->remote_addr, r->rows};
    return tg_pg_run(st, &read_log_stmt, 7, params, "log the audit read");
}

int tg_pg_audit_read_log(struct tg_store *st, const struct tg_actor *who, const char *query,
                         long rows)
{
    if (who == NULL || who->id == NULL || who->interface == NULL)
        return tg_pg_invalid(st, "an audit read needs an actor");
    char what[READ_QUERY_MAX + 1];
    char num[TG_PG_I64_LEN];
    if (query != NULL)
        read_query_text(what, query);
    struct read_log r = {who, query != NULL ? what : NULL,
                         rows >= 0 ? tg_pg_i64(num, rows) : NULL};
    return tg_pg_write(st, read_log_w, &r);
}
