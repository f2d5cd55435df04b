/* The PostgreSQL backend: what came of each run (contract in tg_store.h, reference behaviour
 * in sqlite/tg_sqlite_track.c). Many daemons share the groups to follow: a daemon takes one
 * whose owner is none, or a daemon whose lease (its own on the group, or its row in
 * `daemons`) has run out, under FOR UPDATE SKIP LOCKED, so two daemons taking at once take
 * different groups. Every status write of a group begins by locking the group's row (the
 * stream's batch updates it, a webhook selects it FOR UPDATE), so the two sources deciding
 * what is news about one run never decide at once. A batch is three statements whatever
 * its size: the group's row, the runs' current status, the news (as one JSON array). */
#include "tg_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_json.h"

/* The groups another daemon may take: none holds them, or the one that does is gone. $1
 * this daemon, $2 now. */
#define TAKEABLE                                                                           \
    " g.state = 'follow' AND g.owner IS DISTINCT FROM $1 AND (g.owner IS NULL"             \
    " OR g.lease_until IS NULL OR g.lease_until <= $2 OR NOT EXISTS (SELECT 1 FROM daemons d" \
    "  WHERE d.id = g.owner AND d.stopped_at IS NULL AND d.lease_until > $2))"

/* The group's add-runs calls so far: what `adds` counts on SQLite (see 008_run_status.sql for
 * why PostgreSQL counts them instead of keeping a counter every add would lock). A count
 * taken without the group's lock may miss an add committing meanwhile; settling then sees
 * the count move and keeps following, which is the safe side. */
#define ADDS(g)                                                                            \
    "(SELECT count(*) FROM submissions s JOIN upstream_calls c ON c.submission_id = s.id"  \
    " WHERE s.taskgroup_id = " g ".taskgroup_id AND c.operation = 'add_runs'"              \
    " AND c.outcome IN ('ok', 'unknown'))"

/* The advisory lock of a group's adds (the trigger of 008_run_status.sql takes it shared). */
static const struct tg_pg_stmt adds_lock_stmt = {
    "track_adds_lock", "SELECT pg_advisory_xact_lock(1953655552, hashtext($1))"};

static const struct tg_pg_stmt take_stmt = {
    "track_take",
    "WITH c AS (SELECT g.taskgroup_id FROM track_groups g WHERE" TAKEABLE
    "  ORDER BY g.since LIMIT $4 FOR UPDATE OF g SKIP LOCKED),"
    " u AS (UPDATE track_groups g SET owner = $1, lease_until = $3 FROM c"
    "  WHERE g.taskgroup_id = c.taskgroup_id"
    "  RETURNING g.taskgroup_id, g.team_id, g.last_event_id, g.adds, g.since)"
    " SELECT u.taskgroup_id, u.team_id, t.name, coalesce(u.last_event_id, ''), " ADDS("u")
    " FROM u JOIN teams t ON t.id = u.team_id ORDER BY u.since"};
static const struct tg_pg_stmt waiting_stmt = {
    "track_waiting", "SELECT count(*) FROM track_groups g WHERE" TAKEABLE};
static const struct tg_pg_stmt renew_stmt = {
    "track_renew", "UPDATE track_groups SET lease_until = $2 WHERE owner = $1"};
static const struct tg_pg_stmt place_stmt = {
    "track_place",
    "UPDATE track_groups SET last_event_id = coalesce($2, last_event_id), updated_at = $3"
    " WHERE taskgroup_id = $1 AND owner = $4 RETURNING 1"};
static const struct tg_pg_stmt status_get_stmt = {
    "track_status_get",
    "SELECT run_id, status, changed_at FROM run_status"
    " WHERE run_id IN (SELECT json_array_elements_text($1::json))"};
/* The news of a batch, $1 a JSON array of {ord, run_id, status, error, changed_at,
 * completed_at, event_id} in the order told: every change, and each run's last one as its
 * status; a run of the gateway's that completed gets its duration (from its call's start)
 * counted in the audit summary (d). */
static const struct tg_pg_stmt news_stmt = {
    "track_news",
    "WITH x AS (SELECT * FROM json_to_recordset($1::json) AS x(ord bigint, run_id text,"
    "  status text, error text, changed_at text, completed_at text, event_id text)),"
    " s AS (INSERT INTO run_status (run_id, taskgroup_id, status, error, changed_at,"
    "  completed_at, source, recorded_at, duration_ms)"
    "  SELECT DISTINCT ON (x.run_id) x.run_id, $2, x.status, x.error, x.changed_at,"
    "  x.completed_at, $3, $4, CASE WHEN x.status = 'completed' THEN (SELECT "
    TG_PG_DURATION("x.completed_at") " FROM runs r JOIN upstream_calls c"
    "   ON c.submission_id = r.submission_id AND c.seq = r.call_seq WHERE r.run_id = x.run_id)"
    "  END FROM x ORDER BY x.run_id, x.ord DESC"
    "  ON CONFLICT (run_id) DO UPDATE SET taskgroup_id = excluded.taskgroup_id,"
    "  status = excluded.status, error = excluded.error, changed_at = excluded.changed_at,"
    "  completed_at = excluded.completed_at, source = excluded.source,"
    "  recorded_at = excluded.recorded_at, duration_ms = excluded.duration_ms"
    "  RETURNING run_id, duration_ms),"
    " d AS (" TG_PG_DURATIONS_INSERT "SELECT b.team_id, substr(b.received_at, 1, 10),"
    "  coalesce(r.processor, ''), " TG_PG_BUCKET("s.duration_ms") ", pg_backend_pid(),"
    "  count(*), sum(s.duration_ms), max(s.duration_ms)"
    "  FROM s JOIN runs r ON r.run_id = s.run_id JOIN submissions b ON b.id = r.submission_id"
    "  WHERE s.duration_ms IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    TG_PG_DURATIONS_UPSERT ")"
    " INSERT INTO run_status_changes (run_id, taskgroup_id, status, error, changed_at, source,"
    "  event_id, recorded_at)"
    " SELECT run_id, $2, status, error, changed_at, $3, event_id, $4 FROM x ORDER BY ord"};
/* Runs added since it was taken (adds moved on): still to follow, by whoever takes it. */
static const struct tg_pg_stmt settle_stmt = {
    "track_settle",
    "UPDATE track_groups g SET state = CASE WHEN " ADDS("g") " <> $2::bigint THEN 'follow'"
    " WHEN $3::int = 1 THEN 'gone' ELSE 'idle' END, owner = NULL, lease_until = NULL,"
    " updated_at = $4, detail = $5 WHERE taskgroup_id = $1 AND owner = $6 RETURNING state"};
static const struct tg_pg_stmt release_stmt = {
    "track_release",
    "UPDATE track_groups SET owner = NULL, lease_until = NULL"
    " WHERE owner = $1 AND ($2::text IS NULL OR taskgroup_id = $2)"};
static const struct tg_pg_stmt hook_add_stmt = {
    "track_hook_add",
    "INSERT INTO webhook_deliveries (webhook_id, received_at, run_id, status, outcome)"
    " VALUES ($1, $2, $3, $4, 'ignored') ON CONFLICT (webhook_id) DO NOTHING RETURNING 1"};
static const struct tg_pg_stmt run_group_stmt = {
    "track_run_group",
    "SELECT s.taskgroup_id FROM runs r JOIN submissions s ON s.id = r.submission_id"
    " WHERE r.run_id = $1"};
static const struct tg_pg_stmt hook_group_stmt = {
    "track_hook_group",
    "SELECT t.name FROM track_groups g JOIN teams t ON t.id = g.team_id"
    " WHERE g.taskgroup_id = $1 FOR UPDATE OF g"};
static const struct tg_pg_stmt hook_outcome_stmt = {
    "track_hook_outcome", "UPDATE webhook_deliveries SET outcome = $2 WHERE webhook_id = $1"};
static const struct tg_pg_stmt hook_prune_stmt = {
    "track_hook_prune", "DELETE FROM webhook_deliveries WHERE received_at < $1"};

/* The most changes one batch's JSON takes (a run's error is at most a few KB). */
#define BATCH_JSON_MAX ((size_t)64 << 20)

static const char *me(void)
{
    const char *id = tg_store_daemon_id();
    return id != NULL ? id : "";
}

/* ---- taking, holding and settling groups ------------------------------------------------ */

struct take {
    size_t max, n;
    struct tg_track_group *out;
    long *waiting;
};

static int take_w(struct tg_store *st, void *arg)
{
    struct take *t = arg;
    char now[TG_TIME_LEN], until[TG_TIME_LEN], max[TG_PG_I64_LEN];
    int64_t ms = tg_now_ms();
    tg_time_format(ms, now);
    tg_time_format(ms + TG_STORE_LEASE_MS, until);
    t->n = 0;
    int rc = TG_OK;
    if (t->max > 0) {
        PGresult *r;
        const char *p[] = {me(), now, until, tg_pg_i64(max, (int64_t)t->max)};
        rc = tg_pg_exec(st, &take_stmt, 4, p, &r, "take groups to follow");
        for (int i = 0; rc == TG_OK && i < PQntuples(r) && t->n < t->max; i++) {
            struct tg_track_group *g = &t->out[t->n++];
            memset(g, 0, sizeof(*g));
            tg_pg_copy(g->taskgroup_id, sizeof(g->taskgroup_id), r, i, 0);
            g->team_id = tg_pg_int(r, i, 1);
            tg_pg_copy(g->team, sizeof(g->team), r, i, 2);
            tg_pg_copy(g->last_event_id, sizeof(g->last_event_id), r, i, 3);
            g->adds = tg_pg_int(r, i, 4);
        }
        if (rc == TG_OK)
            PQclear(r);
    }
    if (rc == TG_OK && t->waiting != NULL) {
        PGresult *r;
        const char *p[] = {me(), now};
        rc = tg_pg_one(st, &waiting_stmt, 2, p, &r, "count groups to follow");
        if (rc == TG_OK) {
            *t->waiting = (long)tg_pg_int(r, 0, 0);
            PQclear(r);
        }
    }
    return rc;
}

int tg_pg_track_take(struct tg_store *st, size_t max, struct tg_track_group *out, size_t *n,
                     long *waiting)
{
    struct take t = {max, 0, out, waiting};
    *n = 0;
    if (waiting != NULL)
        *waiting = 0;
    if (max == 0 && waiting == NULL)
        return TG_OK;
    int rc = tg_pg_write(st, take_w, &t);
    if (rc == TG_OK)
        *n = t.n;
    return rc;
}

static int renew_w(struct tg_store *st, void *arg)
{
    (void)arg;
    char until[TG_TIME_LEN];
    tg_time_format(tg_now_ms() + TG_STORE_LEASE_MS, until);
    const char *p[] = {me(), until};
    return tg_pg_run(st, &renew_stmt, 2, p, "renew the hold on followed groups");
}

int tg_pg_track_renew(struct tg_store *st)
{
    return tg_pg_write(st, renew_w, NULL);
}

struct settle {
    const char *id;
    int64_t adds;
    int gone;
    const char *detail;
    int again;
};

static int settle_w(struct tg_store *st, void *arg)
{
    struct settle *a = arg;
    char now[TG_TIME_LEN], adds[TG_PG_I64_LEN];
    tg_pg_now_text(now);
    const char *p[] = {a->id, tg_pg_i64(adds, a->adds), a->gone ? "1" : "0", now, a->detail,
                       me()};
    PGresult *r;
    a->again = 0;
    /* Every add to the group committed before the lock is seen by the count, a statement
     * of its own so that its snapshot is taken after the wait; later adds wait for this
     * transaction and then see the group idle. */
    int rc = tg_pg_run(st, &adds_lock_stmt, 1, p, "lock a followed group's adds");
    if (rc == TG_OK)
        rc = tg_pg_one(st, &settle_stmt, 6, p, &r, "settle a followed group");
    if (rc == TG_OK) {
        a->again = strcmp(tg_pg_text(r, 0, 0), "follow") == 0;
        PQclear(r);
    } else if (rc == TG_ENOTFOUND) {
        tg_pg_set_err(st, "group %.100s is not followed by this daemon", a->id);
    }
    return rc;
}

int tg_pg_track_settle(struct tg_store *st, const char *taskgroup_id, int64_t adds, int gone,
                       const char *detail, int *again)
{
    struct settle a = {taskgroup_id, adds, gone, detail, 0};
    int rc = tg_pg_write(st, settle_w, &a);
    if (again != NULL)
        *again = rc == TG_OK && a.again;
    return rc;
}

static int release_w(struct tg_store *st, void *arg)
{
    const char *const *id = arg;
    const char *p[] = {me(), *id};
    return tg_pg_run(st, &release_stmt, 2, p, "release followed groups");
}

int tg_pg_track_release(struct tg_store *st, const char *taskgroup_id)
{
    return tg_pg_write(st, release_w, &taskgroup_id);
}

/* ---- status changes ------------------------------------------------------------------------ */

/* What is recorded of one run, as a batch goes along. */
struct known {
    const char *run_id; /* the change's */
    char status[24];
    char at[TG_TIME_LEN];
};

/* The runs' recorded status into k[0 .. n) (status "" where there is none). */
static int read_known(struct tg_store *st, const struct tg_run_change *c, size_t n,
                      struct known *k)
{
    struct tg_buf ids;
    tg_buf_init(&ids, BATCH_JSON_MAX);
    int rc = tg_buf_adds(&ids, "[");
    for (size_t i = 0; i < n; i++) {
        k[i].run_id = c[i].run_id;
        k[i].status[0] = '\0';
        k[i].at[0] = '\0';
        if (rc == TG_OK && i > 0)
            rc = tg_buf_adds(&ids, ",");
        if (rc == TG_OK)
            rc = tg_json_buf_string(&ids, c[i].run_id);
    }
    if (rc == TG_OK)
        rc = tg_buf_adds(&ids, "]");
    PGresult *r = NULL;
    const char *p[] = {tg_buf_str(&ids)};
    if (rc == TG_OK)
        rc = tg_pg_exec(st, &status_get_stmt, 1, p, &r, "read the runs' status");
    else
        tg_pg_set_err(st, "a batch of %zu status changes is too large", n);
    for (int row = 0; rc == TG_OK && row < PQntuples(r); row++) {
        const char *id = tg_pg_text(r, row, 0);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(k[i].run_id, id) == 0) {
                tg_pg_copy(k[i].status, sizeof(k[i].status), r, row, 1);
                tg_pg_copy(k[i].at, sizeof(k[i].at), r, row, 2);
            }
        }
    }
    PQclear(r);
    tg_buf_free(&ids);
    return rc;
}

/* Appends c, told at `at`, to the news array b as its ord-th entry. */
static int add_news(struct tg_buf *b, size_t ord, const struct tg_run_change *c,
                    const char *at)
{
    int failed = strcmp(c->status, "failed") == 0;
    int rc = tg_buf_printf(b, "%s{\"ord\":%zu,\"run_id\":", ord > 0 ? "," : "", ord);
    if (rc == TG_OK)
        rc = tg_json_buf_string(b, c->run_id);
    if (rc == TG_OK)
        rc = tg_buf_printf(b, ",\"status\":\"%s\",\"changed_at\":\"%s\",\"completed_at\":",
                           c->status, at);
    if (rc == TG_OK)
        rc = tg_domain_run_status_final(c->status) ? tg_buf_printf(b, "\"%s\"", at)
                                                   : tg_buf_adds(b, "null");
    if (rc == TG_OK)
        rc = tg_buf_adds(b, ",\"error\":");
    if (rc == TG_OK)
        rc = failed && c->error != NULL ? tg_json_buf_string(b, c->error)
                                        : tg_buf_adds(b, "null");
    if (rc == TG_OK)
        rc = tg_buf_adds(b, ",\"event_id\":");
    if (rc == TG_OK)
        rc = c->event_id != NULL ? tg_json_buf_string(b, c->event_id) : tg_buf_adds(b, "null");
    if (rc == TG_OK)
        rc = tg_buf_adds(b, "}");
    return rc;
}

/* Records the changes of runs of group (told by source) that are news, inside the caller's
 * transaction, which holds the group's row; *recorded counts them. */
static int apply_changes(struct tg_store *st, const char *group, struct tg_run_change *c,
                         size_t n, const char *source, size_t *recorded)
{
    *recorded = 0;
    for (size_t i = 0; i < n; i++)
        c[i].news = 0;
    if (n == 0)
        return TG_OK;
    for (size_t i = 0; i < n; i++)
        if (c[i].run_id == NULL || !tg_domain_run_status_known(c[i].status))
            return tg_pg_invalid(st, "a run's status change needs a run id and a known status");
    struct known *k = calloc(n, sizeof(*k));
    if (k == NULL) {
        tg_pg_set_err(st, "out of memory");
        return TG_ENOMEM;
    }
    struct tg_buf news;
    tg_buf_init(&news, BATCH_JSON_MAX);
    char now[TG_TIME_LEN];
    tg_pg_now_text(now);
    int rc = read_known(st, c, n, k);
    if (rc == TG_OK)
        rc = tg_buf_adds(&news, "[");
    for (size_t i = 0; rc == TG_OK && i < n; i++) {
        char at[TG_TIME_LEN];
        if (c[i].changed_ms > 0)
            tg_time_format(c[i].changed_ms, at);
        else
            memcpy(at, now, sizeof(at));
        /* The run's state as recorded, or as this batch left it: the first entry for it. */
        size_t first = 0;
        while (strcmp(k[first].run_id, c[i].run_id) != 0)
            first++;
        struct known *cur = &k[first];
        if (!tg_domain_run_change_news(cur->status[0] != '\0' ? cur->status : NULL,
                                       cur->at[0] != '\0' ? cur->at : NULL, c[i].status, at))
            continue;
        snprintf(cur->status, sizeof(cur->status), "%s", c[i].status);
        memcpy(cur->at, at, sizeof(cur->at));
        rc = add_news(&news, *recorded, &c[i], at);
        c[i].news = 1;
        (*recorded)++;
    }
    if (rc == TG_OK)
        rc = tg_buf_adds(&news, "]");
    if (rc == TG_ETOOBIG || rc == TG_ENOMEM)
        tg_pg_set_err(st, "a batch of %zu status changes is too large", n);
    if (rc == TG_OK && *recorded > 0) {
        const char *p[] = {tg_buf_str(&news), group, source, now};
        rc = tg_pg_run(st, &news_stmt, 4, p, "record the runs' status changes");
    }
    tg_buf_free(&news);
    free(k);
    return rc;
}

struct batch {
    const char *group;
    const char *place;
    struct tg_run_change *changes;
    size_t n, recorded;
};

static int record_w(struct tg_store *st, void *arg)
{
    struct batch *b = arg;
    char now[TG_TIME_LEN];
    tg_pg_now_text(now);
    const char *p[] = {b->group, b->place, now, me()};
    PGresult *r;
    int rc = tg_pg_one(st, &place_stmt, 4, p, &r, "record a followed group's place");
    if (rc == TG_ENOTFOUND)
        tg_pg_set_err(st, "group %.100s is not followed by this daemon", b->group);
    if (rc != TG_OK)
        return rc;
    PQclear(r);
    return apply_changes(st, b->group, b->changes, b->n, "events", &b->recorded);
}

int tg_pg_track_record(struct tg_store *st, const char *taskgroup_id,
                       const char *last_event_id, struct tg_run_change *changes,
                       size_t n, size_t *recorded)
{
    struct batch b = {taskgroup_id, last_event_id, changes, n, 0};
    int rc = tg_pg_write(st, record_w, &b);
    if (recorded != NULL)
        *recorded = rc == TG_OK ? b.recorded : 0;
    return rc;
}

/* ---- webhooks ------------------------------------------------------------------------------ */

struct hook {
    const char *id;
    const char *group;
    struct tg_run_change *change;
    enum tg_webhook_outcome out;
    char team[65];
};

static int hook_w(struct tg_store *st, void *arg)
{
    static const char *const names[] = {"recorded", "known", "ignored"};
    struct hook *h = arg;
    char now[TG_TIME_LEN], group[TG_TRACK_ID_MAX + 1];
    tg_pg_now_text(now);
    h->out = TG_WEBHOOK_IGNORED;
    h->team[0] = '\0';
    PGresult *r;
    const char *p[] = {h->id, now, h->change->run_id, h->change->status};
    int rc = tg_pg_one(st, &hook_add_stmt, 4, p, &r, "record a webhook delivery");
    if (rc == TG_ENOTFOUND) {
        tg_pg_set_err(st, "webhook %.100s was received already", h->id);
        return TG_EEXIST;
    }
    if (rc != TG_OK)
        return rc;
    PQclear(r);
    snprintf(group, sizeof(group), "%s", h->group != NULL ? h->group : "");
    if (group[0] == '\0' && h->change->run_id != NULL) {
        const char *q[] = {h->change->run_id};
        rc = tg_pg_one(st, &run_group_stmt, 1, q, &r, "look up a webhook's run");
        if (rc == TG_OK) {
            tg_pg_copy(group, sizeof(group), r, 0, 0);
            PQclear(r);
        }
    }
    if (rc == TG_OK && group[0] != '\0') {
        const char *q[] = {group};
        rc = tg_pg_one(st, &hook_group_stmt, 1, q, &r, "look up a webhook's group");
        if (rc == TG_OK) {
            tg_pg_copy(h->team, sizeof(h->team), r, 0, 0);
            PQclear(r);
            size_t news = 0;
            rc = apply_changes(st, group, h->change, 1, "webhook", &news);
            h->out = news > 0 ? TG_WEBHOOK_RECORDED : TG_WEBHOOK_KNOWN;
        }
    }
    if (rc == TG_ENOTFOUND)
        rc = TG_OK;
    if (rc != TG_OK)
        return rc;
    const char *q[] = {h->id, names[h->out]};
    return tg_pg_run(st, &hook_outcome_stmt, 2, q, "record a webhook's outcome");
}

int tg_pg_webhook_record(struct tg_store *st, const char *webhook_id, const char *taskgroup_id,
                         struct tg_run_change *change, enum tg_webhook_outcome *out,
                         char *team, size_t teamlen)
{
    if (webhook_id == NULL || change == NULL)
        return tg_pg_invalid(st, "a webhook needs its id and the change it tells");
    struct hook h = {webhook_id, taskgroup_id, change, TG_WEBHOOK_IGNORED, ""};
    int rc = tg_pg_write(st, hook_w, &h);
    *out = h.out;
    if (team != NULL && teamlen > 0)
        snprintf(team, teamlen, "%s", rc == TG_OK ? h.team : "");
    return rc;
}

struct prune {
    const char *before;
    long n;
};

static int prune_w(struct tg_store *st, void *arg)
{
    struct prune *a = arg;
    PGresult *r;
    const char *p[] = {a->before};
    int rc = tg_pg_exec(st, &hook_prune_stmt, 1, p, &r, "remove old webhook deliveries");
    if (rc == TG_OK) {
        const char *n = PQcmdTuples(r);
        a->n = n != NULL && *n != '\0' ? strtol(n, NULL, 10) : 0;
        PQclear(r);
    }
    return rc;
}

int tg_pg_webhook_prune(struct tg_store *st, int64_t before_ms, long *n)
{
    char before[TG_TIME_LEN];
    tg_time_format(before_ms, before);
    struct prune a = {before, 0};
    int rc = tg_pg_write(st, prune_w, &a);
    if (n != NULL)
        *n = rc == TG_OK ? a.n : 0;
    return rc;
}
