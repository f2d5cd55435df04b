/* The audit summary's counts (summary_counts and duration_counts, sql/sqlite/012_scale.sql),
 * kept inside the transaction of every change they count, so that GET /v1/audit/summary
 * and the view audit_summary read a few rows instead of the runs. The contract is the
 * view's: each submission once under each processor its runs carry ('' while it has
 * none), each run under its processor, both at the submission's state now, on its
 * received day; and each completed run of the gateway's once in its duration bucket.
 *
 * Every function here runs inside the caller's write transaction and before the change it
 * counts (it reads what the submission had), except tg_sqlite_counts_submission, whose row
 * is new, the durations, counted right after the completion or the runs they need, and
 * tg_sqlite_summary_compact, the housekeeping's transaction of its own. SQLite has one
 * writer: it counts in shard 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_sqlite_int.h"

/* One upsert of a (team, day, state, processor) row by the deltas ?5 and ?6. */
#define UPSERT                                                                       \
    " ON CONFLICT (team_id, day, state, processor, shard) DO UPDATE SET"             \
    " submissions = submissions + excluded.submissions, runs = runs + excluded.runs"
#define INSERT_COUNTS \
    "INSERT INTO summary_counts (team_id, day, state, processor, shard, submissions, runs) "
/* A set of submissions moved from the state ?from (sign -1) to ?to (+1) with their runs:
 * their counts gathered once (g), then taken from one state and added to the other. */
#define MOVE(from, to, where)                                                            \
    INSERT_COUNTS                                                                        \
    "SELECT g.team_id, g.day, m.state, g.p, 0, m.sign * g.subs, m.sign * g.runs"          \
    " FROM (SELECT s.team_id, substr(s.received_at, 1, 10) AS day,"                      \
    "  coalesce(r.processor, '') AS p, count(DISTINCT s.id) AS subs, count(r.run_id) AS runs" \
    "  FROM submissions s LEFT JOIN runs r ON r.submission_id = s.id"                    \
    "  WHERE " where " GROUP BY 1, 2, 3) g"                                              \
    " CROSS JOIN (SELECT " from " AS state, -1 AS sign UNION ALL SELECT " to ", 1) m"    \
    " WHERE true" UPSERT

/* ---- durations (duration_counts) ---- */

/* A completed run's duration in ms: from its call's start to its completion, never less
 * than 0 (clocks apart). julianday's double holds a time to well under a millisecond. */
#define DURATION                                                                          \
    "max(0, CAST(round((julianday(st.completed_at) - julianday(c.started_at))"            \
    " * 86400000.0) AS INTEGER))"
/* Its bucket: rounded down to two significant digits (012_scale.sql). */
#define BUCKET(d)                                                                         \
    "CASE WHEN " d " < 100 THEN " d " ELSE CAST(substr(CAST(" d " AS TEXT), 1, 2)"         \
    " || substr('000000000000000000', 1, length(CAST(" d " AS TEXT)) - 2) AS INTEGER) END"
#define INSERT_DURATIONS                                                                  \
    "INSERT INTO duration_counts (team_id, day, processor, bucket_ms, shard, runs,"       \
    " total_ms, max_ms) "
#define UPSERT_DURATIONS                                                                  \
    " ON CONFLICT (team_id, day, processor, bucket_ms, shard) DO UPDATE SET"              \
    " runs = runs + excluded.runs, total_ms = total_ms + excluded.total_ms,"              \
    " max_ms = max(max_ms, excluded.max_ms)"
/* The completed runs under where not counted yet, counted; then their duration_ms set
 * (the next count skips them). */
#define DURATIONS_ADD(where, run)                                                         \
    INSERT_DURATIONS                                                                      \
    "SELECT team_id, day, p, " BUCKET("d") ", 0, count(*), sum(d), max(d)"                \
    " FROM (SELECT s.team_id AS team_id, substr(s.received_at, 1, 10) AS day,"            \
    "  coalesce(r.processor, '') AS p, " DURATION " AS d"                                 \
    "  FROM run_status st JOIN runs r ON r.run_id = st.run_id"                            \
    "  JOIN submissions s ON s.id = r.submission_id"                                      \
    "  JOIN upstream_calls c ON c.submission_id = r.submission_id AND c.seq = r.call_seq" \
    "  WHERE " where " AND " run " AND st.status = 'completed' AND st.duration_ms IS NULL)" \
    " WHERE true GROUP BY 1, 2, 3, 4" UPSERT_DURATIONS
#define DURATIONS_SET(where, run)                                                         \
    "UPDATE run_status AS st SET duration_ms = (SELECT " DURATION                          \
    " FROM runs r JOIN upstream_calls c ON c.submission_id = r.submission_id"             \
    " AND c.seq = r.call_seq WHERE r.run_id = st.run_id AND " run ")"                     \
    " WHERE " where " AND st.status = 'completed' AND st.duration_ms IS NULL"
#define OF_CALL "st.run_id IN (SELECT run_id FROM runs WHERE submission_id = ?1 AND call_seq = ?2)"
#define OF_CALL_RUN "r.submission_id = ?1 AND r.call_seq = ?2"

static const char *const counts_sql[S_COUNT] = {
    [K_ADD] = INSERT_COUNTS "VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)" UPSERT,
    [K_HAS] =
        "SELECT EXISTS (SELECT 1 FROM runs WHERE submission_id = ?1"
        " AND coalesce(processor, '') = ?2)",
    /* One submission's counts by processor, to move with two plain upserts each: the
     * general MOVE's set arithmetic costs several times that on every final state. */
    [K_MOVE] =
        "SELECT s.team_id, substr(s.received_at, 1, 10), coalesce(r.processor, ''),"
        " count(r.run_id) FROM submissions s LEFT JOIN runs r ON r.submission_id = s.id"
        " WHERE s.id = ?1 GROUP BY 3",
    /* The WHERE of S_RECOVER (tg_sqlite.c), which runs right after it. */
    [K_RECOVER] = MOVE("'pending'", "'unknown'",
                       "s.state = 'pending' AND (s.daemon_id IS NULL OR s.daemon_id IS NOT ?1)"),
    /* The housekeeping's, as PostgreSQL's: past days' rows in other shards (SQLite writes
     * shard 0 only; rows written by hand are folded alike) summed into shard 0, then those
     * that hold nothing removed. */
    [K_FOLD] =
        INSERT_COUNTS
        "SELECT team_id, day, state, processor, 0, sum(submissions), sum(runs)"
        " FROM summary_counts WHERE day < ?1 AND shard <> 0 GROUP BY 1, 2, 3, 4" UPSERT,
    [K_UNSHARD] = "DELETE FROM summary_counts WHERE day < ?1 AND shard <> 0",
    [K_EMPTY] = "DELETE FROM summary_counts WHERE day < ?1 AND submissions = 0 AND runs = 0",
    /* A prune's batch, about to be deleted whole: every count it holds taken away. */
    [K_PRUNE] =
        INSERT_COUNTS
        "SELECT s.team_id, substr(s.received_at, 1, 10), s.state, coalesce(r.processor, ''),"
        " 0, -count(DISTINCT s.id), -count(r.run_id)"
        " FROM submissions s LEFT JOIN runs r ON r.submission_id = s.id"
        " WHERE s.id IN (" TG_SQLITE_PRUNE_BATCH ")"
        " GROUP BY s.team_id, substr(s.received_at, 1, 10), s.state,"
        " coalesce(r.processor, '')" UPSERT,
    /* The run's row found in its bucket (?2), and a call's by its key: an index lookup
     * each, never one look per bucket of runs_id. */
    [K_DUR_RUN_ADD] = DURATIONS_ADD("st.run_id = ?1", "r.bucket = ?2"),
    [K_DUR_RUN_SET] = DURATIONS_SET("st.run_id = ?1", "r.bucket = ?2"),
    [K_DUR_CALL_ADD] = DURATIONS_ADD(OF_CALL, OF_CALL_RUN),
    [K_DUR_CALL_SET] = DURATIONS_SET(OF_CALL, OF_CALL_RUN),
    /* A prune's batch: the durations its runs counted taken away (the longest stays). */
    [K_DUR_PRUNE] =
        INSERT_DURATIONS
        "SELECT s.team_id, substr(s.received_at, 1, 10), coalesce(r.processor, ''), "
        BUCKET("st.duration_ms") ", 0, -count(*), -sum(st.duration_ms), 0"
        " FROM submissions s JOIN runs r ON r.submission_id = s.id"
        " JOIN run_status st ON st.run_id = r.run_id"
        " WHERE s.id IN (" TG_SQLITE_PRUNE_BATCH ") AND st.duration_ms IS NOT NULL"
        " GROUP BY 1, 2, 3, 4" UPSERT_DURATIONS,
    [K_DUR_FOLD] =
        INSERT_DURATIONS
        "SELECT team_id, day, processor, bucket_ms, 0, sum(runs), sum(total_ms), max(max_ms)"
        " FROM duration_counts WHERE day < ?1 AND shard <> 0 GROUP BY 1, 2, 3, 4"
        UPSERT_DURATIONS,
    [K_DUR_UNSHARD] = "DELETE FROM duration_counts WHERE day < ?1 AND shard <> 0",
    [K_DUR_EMPTY] = "DELETE FROM duration_counts WHERE day < ?1 AND runs = 0",
};

static int stmt(struct tg_store *st, enum stmt_id id, sqlite3_stmt **out)
{
    return tg_sqlite_stmt(st, id, counts_sql[id], out);
}

/* ---- the writer's folded deltas (tg_sqlite_counts_fold_begin in tg_sqlite_int.h) ---- */

/* A processor longer than this is counted at once, not folded: sums mix alike. */
#define FOLD_PROC_MAX 48

struct delta {
    int64_t team_id, subs, runs;
    int summed; /* into an earlier delta of its row */
    char day[11], state[12], processor[FOLD_PROC_MAX + 1];
};

struct tg_sqlite_fold {
    int on;
    size_t n, cap;
    struct delta *d;
};

void tg_sqlite_counts_fold_begin(struct tg_store *st)
{
    if (st->fold == NULL)
        st->fold = calloc(1, sizeof(*st->fold));
    if (st->fold != NULL) { /* else: no memory, every count upserted at once */
        st->fold->on = 1;
        st->fold->n = 0;
    }
}

size_t tg_sqlite_counts_fold_mark(const struct tg_store *st)
{
    return st->fold != NULL ? st->fold->n : 0;
}

void tg_sqlite_counts_fold_undo(struct tg_store *st, size_t mark)
{
    if (st->fold != NULL && mark < st->fold->n)
        st->fold->n = mark;
}

void tg_sqlite_counts_fold_drop(struct tg_store *st)
{
    if (st->fold != NULL) {
        st->fold->on = 0;
        st->fold->n = 0;
    }
}

void tg_sqlite_counts_fold_free(struct tg_store *st)
{
    if (st->fold != NULL)
        free(st->fold->d);
    free(st->fold);
    st->fold = NULL;
}

/* Keeps the delta for the flush; 0 when it must be upserted at once instead. */
static int fold(struct tg_store *st, int64_t team_id, const char *day, const char *state,
                const char *processor, int64_t subs, int64_t runs)
{
    struct tg_sqlite_fold *f = st->fold;
    if (f == NULL || !f->on || strlen(day) >= sizeof(f->d->day) ||
        strlen(state) >= sizeof(f->d->state) || strlen(processor) > FOLD_PROC_MAX)
        return 0;
    if (f->n == f->cap) {
        size_t cap = f->cap != 0 ? 2 * f->cap : 64;
        struct delta *d = realloc(f->d, cap * sizeof(*d));
        if (d == NULL)
            return 0;
        f->d = d;
        f->cap = cap;
    }
    struct delta *d = &f->d[f->n++];
    d->team_id = team_id;
    d->summed = 0;
    d->subs = subs;
    d->runs = runs;
    snprintf(d->day, sizeof(d->day), "%s", day);
    snprintf(d->state, sizeof(d->state), "%s", state);
    snprintf(d->processor, sizeof(d->processor), "%s", processor);
    return 1;
}

static int same_row(const struct delta *a, const struct delta *b)
{
    return a->team_id == b->team_id && strcmp(a->day, b->day) == 0 &&
           strcmp(a->state, b->state) == 0 && strcmp(a->processor, b->processor) == 0;
}

static int upsert(struct tg_store *st, int64_t team_id, const char *day, const char *state,
                  const char *processor, int64_t subs, int64_t runs);

int tg_sqlite_counts_fold_flush(struct tg_store *st)
{
    struct tg_sqlite_fold *f = st->fold;
    if (f == NULL)
        return TG_OK;
    f->on = 0;
    /* Each row's deltas summed into its first; a group holds a few dozen at most. */
    int rc = TG_OK;
    for (size_t i = 0; i < f->n && rc == TG_OK; i++) {
        struct delta *a = &f->d[i];
        if (a->summed)
            continue;
        for (size_t j = i + 1; j < f->n; j++) {
            struct delta *b = &f->d[j];
            if (!b->summed && same_row(a, b)) {
                a->subs += b->subs;
                a->runs += b->runs;
                b->summed = 1;
            }
        }
        if (a->subs != 0 || a->runs != 0)
            rc = upsert(st, a->team_id, a->day, a->state, a->processor, a->subs, a->runs);
    }
    f->n = 0;
    return rc;
}

/* Adds (subs, runs) to one row: folded in the writer's group, else at once. */
static int add(struct tg_store *st, int64_t team_id, const char *day, const char *state,
               const char *processor, int64_t subs, int64_t runs)
{
    if (fold(st, team_id, day, state, processor, subs, runs))
        return TG_OK;
    return upsert(st, team_id, day, state, processor, subs, runs);
}

static int upsert(struct tg_store *st, int64_t team_id, const char *day, const char *state,
                  const char *processor, int64_t subs, int64_t runs)
{
    sqlite3_stmt *s;
    int rc = stmt(st, K_ADD, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, team_id);
    tg_sqlite_bind_text(s, 2, day);
    tg_sqlite_bind_text(s, 3, state);
    tg_sqlite_bind_text(s, 4, processor);
    sqlite3_bind_int64(s, 5, subs);
    sqlite3_bind_int64(s, 6, runs);
    return tg_sqlite_run(st, s, "count in the audit summary");
}

int tg_sqlite_counts_submission(struct tg_store *st, int64_t team_id, const char *received,
                                enum tg_state state)
{
    char day[11];
    snprintf(day, sizeof(day), "%.10s", received);
    return add(st, team_id, day, tg_domain_state_name(state), "", 1, 0);
}

/* The distinct processors of a call's runs ('' for none) with their counts. A call names
 * one processor or a few: a short list searched in order is enough. */
#define PROCS_MAX 64
struct procs {
    size_t n;
    const char *name[PROCS_MAX];
    int64_t runs[PROCS_MAX];
};

static int group_procs(size_t n, const char *const *procs, struct procs *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        const char *p = procs != NULL && procs[i] != NULL ? procs[i] : "";
        size_t k = 0;
        while (k < out->n && strcmp(out->name[k], p) != 0)
            k++;
        if (k == out->n) {
            if (out->n == PROCS_MAX)
                return TG_ETOOBIG;
            out->name[out->n++] = p;
        }
        out->runs[k]++;
    }
    return TG_OK;
}

/* Whether the submission has a run with processor p already. */
static int has_processor(struct tg_store *st, const char *sub_id, const char *p, int *yes)
{
    sqlite3_stmt *s;
    int rc = stmt(st, K_HAS, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    tg_sqlite_bind_text(s, 2, p);
    rc = tg_sqlite_one(st, s, "count in the audit summary");
    if (rc == TG_OK)
        *yes = sqlite3_column_int(s, 0);
    tg_sqlite_done(s);
    return rc;
}

static int too_many_procs(struct tg_store *st)
{
    tg_sqlite_set_err(st, "a call's runs name more than %d processors", PROCS_MAX);
    return TG_EINVAL;
}

int tg_sqlite_counts_runs(struct tg_store *st, const char *sub_id, size_t n,
                          const char *const *procs, const struct tg_sqlite_sub_facts *known)
{
    struct procs g;
    if (group_procs(n, procs, &g) != TG_OK)
        return too_many_procs(st);
    int rc = TG_OK;
    int64_t team_id = known->team_id;
    const char *day = known->day, *state = known->state;
    int had_runs = known->had_runs;
    /* A submission counts under '' while it has no run, then under each processor its
     * runs carry: a processor it had already adds runs only. */
    int new_none = 0;
    for (size_t k = 0; k < g.n && rc == TG_OK; k++) {
        int had = !had_runs && g.name[k][0] == '\0';
        if (had_runs)
            rc = has_processor(st, sub_id, g.name[k], &had);
        if (rc == TG_OK)
            rc = add(st, team_id, day, state, g.name[k], had ? 0 : 1, g.runs[k]);
        new_none |= g.name[k][0] == '\0';
    }
    if (rc == TG_OK && !had_runs && !new_none)
        rc = add(st, team_id, day, state, "", -1, 0);
    return rc;
}

int tg_sqlite_counts_move(struct tg_store *st, const char *sub_id, const char *from,
                          const char *to)
{
    if (strcmp(from, to) == 0)
        return TG_OK;
    sqlite3_stmt *s;
    int rc = stmt(st, K_MOVE, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    /* The rows are grouped (sorted) before the first comes back, and the upserts touch
     * only summary_counts: writing while the read steps is safe. */
    int src = SQLITE_DONE;
    while (rc == TG_OK && (src = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t team_id = sqlite3_column_int64(s, 0), runs = sqlite3_column_int64(s, 3);
        const char *day = tg_sqlite_col_text(s, 1), *p = tg_sqlite_col_text(s, 2);
        if (day == NULL || p == NULL) {
            tg_sqlite_set_err(st, "out of memory");
            rc = TG_ENOMEM;
            break;
        }
        rc = add(st, team_id, day, from, p, -1, -runs);
        if (rc == TG_OK)
            rc = add(st, team_id, day, to, p, 1, runs);
    }
    if (rc == TG_OK && src != SQLITE_DONE)
        rc = tg_sqlite_db_err(st, src, "count in the audit summary");
    tg_sqlite_done(s);
    return rc;
}

int tg_sqlite_counts_move_known(struct tg_store *st, const char *sub_id, const char *from,
                                const char *to, const struct tg_sqlite_sub_facts *known,
                                size_t n, const char *const *procs)
{
    if (known->had_runs)
        return tg_sqlite_counts_move(st, sub_id, from, to);
    if (strcmp(from, to) == 0)
        return TG_OK;
    /* Its runs are the n just recorded: by processor, as K_MOVE would read them back. */
    struct procs g;
    if (group_procs(n, procs, &g) != TG_OK)
        return too_many_procs(st);
    if (g.n == 0) { /* no run: counted under '' */
        g.n = 1;
        g.name[0] = "";
        g.runs[0] = 0;
    }
    int rc = TG_OK;
    for (size_t k = 0; k < g.n && rc == TG_OK; k++) {
        rc = add(st, known->team_id, known->day, from, g.name[k], -1, -g.runs[k]);
        if (rc == TG_OK)
            rc = add(st, known->team_id, known->day, to, g.name[k], 1, g.runs[k]);
    }
    return rc;
}

int tg_sqlite_counts_recover(struct tg_store *st, const char *daemon_id)
{
    sqlite3_stmt *s;
    int rc = stmt(st, K_RECOVER, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, daemon_id);
    return tg_sqlite_run(st, s, "count in the audit summary");
}

int tg_sqlite_counts_prune(struct tg_store *st, const char *before, const char *from_time,
                           const char *from_id, const char *to_time, const char *to_id)
{
    const enum stmt_id steps[] = {K_PRUNE, K_DUR_PRUNE};
    int rc = TG_OK;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && rc == TG_OK; i++) {
        sqlite3_stmt *s;
        rc = stmt(st, steps[i], &s);
        if (rc != TG_OK)
            return rc;
        tg_sqlite_bind_text(s, 1, before);
        tg_sqlite_bind_text(s, 2, from_time);
        tg_sqlite_bind_text(s, 3, from_id);
        tg_sqlite_bind_text(s, 4, to_time);
        tg_sqlite_bind_text(s, 5, to_id);
        rc = tg_sqlite_run(st, s, "count a prune in the audit summary");
    }
    return rc;
}

/* Counts, then marks counted, the runs that add and set select by ?1 and ?2 (num). */
static int durations(struct tg_store *st, enum stmt_id add, enum stmt_id set, const char *key,
                     int64_t num)
{
    const enum stmt_id steps[] = {add, set};
    int rc = TG_OK;
    for (size_t i = 0; i < 2 && rc == TG_OK; i++) {
        sqlite3_stmt *s;
        rc = stmt(st, steps[i], &s);
        if (rc != TG_OK)
            return rc;
        tg_sqlite_bind_text(s, 1, key);
        sqlite3_bind_int64(s, 2, num);
        rc = tg_sqlite_run(st, s, "count a run's duration");
    }
    return rc;
}

int tg_sqlite_counts_duration_run(struct tg_store *st, const char *run_id)
{
    int64_t bucket;
    int rc = tg_sqlite_runs_bucket(st, run_id, &bucket);
    if (rc == TG_ENOTFOUND) /* not recorded (yet): counted with its call's runs */
        return TG_OK;
    return rc != TG_OK ? rc : durations(st, K_DUR_RUN_ADD, K_DUR_RUN_SET, run_id, bucket);
}

int tg_sqlite_counts_duration_call(struct tg_store *st, const char *sub_id, int seq)
{
    return durations(st, K_DUR_CALL_ADD, K_DUR_CALL_SET, sub_id, seq);
}

/* Past days' shards folded, and their rows that hold nothing any more removed (a day's
 * pending ones, once all settled). */
static int compact_w(struct tg_store *st, void *arg)
{
    const enum stmt_id steps[] = {K_FOLD, K_UNSHARD, K_EMPTY, K_DUR_FOLD, K_DUR_UNSHARD,
                                  K_DUR_EMPTY};
    int rc = TG_OK;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && rc == TG_OK; i++) {
        sqlite3_stmt *s;
        rc = stmt(st, steps[i], &s);
        if (rc == TG_OK) {
            tg_sqlite_bind_text(s, 1, arg);
            rc = tg_sqlite_run(st, s, "tidy the audit summary");
        }
    }
    return rc;
}

int tg_sqlite_summary_compact(struct tg_store *st)
{
    char now[TG_TIME_LEN], today[11];
    tg_sqlite_now_text(now);
    snprintf(today, sizeof(today), "%.10s", now);
    return tg_sqlite_write(st, compact_w, today);
}
