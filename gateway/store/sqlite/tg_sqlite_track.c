/* What came of each run (contract in tg_store.h): the groups the daemon follows, each run's
 * status changes as the event stream or a webhook tells them, and the webhook-ids already
 * received. SQLite has one daemon per file (tg_sqlite_claim.c), so a group is this daemon's
 * to take whenever another daemon id holds it: that daemon is gone. Every write goes through
 * tg_sqlite_write, in the shared writer's group commit. */
#include <stdio.h>
#include <string.h>

#include "tg_sqlite_int.h"

static const char *const track_sql[S_COUNT] = {
    [T_TAKE] =
        "SELECT g.taskgroup_id, g.team_id, t.name, coalesce(g.last_event_id, ''), g.adds"
        " FROM track_groups g JOIN teams t ON t.id = g.team_id"
        " WHERE g.state = 'follow' AND g.owner IS NOT ?1 ORDER BY g.since LIMIT ?2",
    [T_WAITING] =
        "SELECT count(*) FROM track_groups WHERE state = 'follow' AND owner IS NOT ?1",
    [T_RENEW] =
        "UPDATE track_groups SET owner = ?1, lease_until = ?3"
        " WHERE (?2 IS NULL AND owner = ?1) OR taskgroup_id = ?2",
    [T_PLACE] =
        "UPDATE track_groups SET last_event_id = coalesce(?2, last_event_id), updated_at = ?3"
        " WHERE taskgroup_id = ?1 AND owner = ?4",
    [T_STATUS_GET] = "SELECT status, changed_at FROM run_status WHERE run_id = ?1",
    [T_STATUS_PUT] =
        "INSERT INTO run_status (run_id, taskgroup_id, status, error, changed_at, completed_at,"
        " source, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        " ON CONFLICT (run_id) DO UPDATE SET taskgroup_id = excluded.taskgroup_id,"
        " status = excluded.status, error = excluded.error, changed_at = excluded.changed_at,"
        " completed_at = excluded.completed_at, source = excluded.source,"
        " recorded_at = excluded.recorded_at",
    [T_CHANGE_ADD] =
        "INSERT INTO run_status_changes (run_id, taskgroup_id, status, error, changed_at,"
        " source, event_id, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    /* Runs added since it was taken (adds moved on): still to follow, by whoever takes it. */
    [T_SETTLE] =
        "UPDATE track_groups SET state = CASE WHEN adds <> ?2 THEN 'follow'"
        " WHEN ?3 THEN 'gone' ELSE 'idle' END, owner = NULL, lease_until = NULL,"
        " updated_at = ?4, detail = ?5 WHERE taskgroup_id = ?1 AND owner = ?6"
        " RETURNING state",
    [T_RELEASE] =
        "UPDATE track_groups SET owner = NULL, lease_until = NULL"
        " WHERE owner = ?1 AND (?2 IS NULL OR taskgroup_id = ?2)",
    [T_HOOK_ADD] =
        "INSERT INTO webhook_deliveries (webhook_id, received_at, run_id, status, outcome)"
        " VALUES (?1, ?2, ?3, ?4, 'ignored') ON CONFLICT (webhook_id) DO NOTHING",
    [T_HOOK_GROUP] =
        "SELECT t.name FROM track_groups g JOIN teams t ON t.id = g.team_id"
        " WHERE g.taskgroup_id = ?1",
    /* The run in its bucket (tg_sqlite_runs_bucket): one index lookup. */
    [T_RUN_GROUP] =
        "SELECT s.taskgroup_id FROM runs r JOIN submissions s ON s.id = r.submission_id"
        " WHERE r.bucket = ?2 AND r.run_id = ?1",
    [T_HOOK_OUTCOME] = "UPDATE webhook_deliveries SET outcome = ?2 WHERE webhook_id = ?1",
    [T_HOOK_PRUNE] = "DELETE FROM webhook_deliveries WHERE received_at < ?1",
};

static int stmt(struct tg_store *st, enum stmt_id id, sqlite3_stmt **out)
{
    return tg_sqlite_stmt(st, id, track_sql[id], out);
}

/* A daemon without an id (the command line) follows nothing. */
static const char *me(void)
{
    const char *id = tg_store_daemon_id();
    return id != NULL ? id : "";
}

static void lease_until(char out[TG_TIME_LEN])
{
    tg_time_format(tg_now_ms() + TG_STORE_LEASE_MS, out);
}

/* ---- taking, holding and settling groups ------------------------------------------------ */

struct take {
    size_t max, n;
    struct tg_track_group *out;
    long *waiting;
};

static int taken_row(void *arg, sqlite3_stmt *s)
{
    struct take *t = arg;
    struct tg_track_group *g = &t->out[t->n++];
    memset(g, 0, sizeof(*g));
    tg_sqlite_col_copy(g->taskgroup_id, sizeof(g->taskgroup_id), s, 0);
    g->team_id = sqlite3_column_int64(s, 1);
    tg_sqlite_col_copy(g->team, sizeof(g->team), s, 2);
    tg_sqlite_col_copy(g->last_event_id, sizeof(g->last_event_id), s, 3);
    g->adds = sqlite3_column_int64(s, 4);
    return TG_OK;
}

/* Holds group id (NULL: every group this daemon holds) until the lease's end. */
static int hold(struct tg_store *st, const char *id)
{
    sqlite3_stmt *s;
    char until[TG_TIME_LEN];
    lease_until(until);
    int rc = stmt(st, T_RENEW, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, me());
    tg_sqlite_bind_text(s, 2, id);
    tg_sqlite_bind_text(s, 3, until);
    return tg_sqlite_run(st, s, "hold a group to follow");
}

static int take_w(struct tg_store *st, void *arg)
{
    struct take *t = arg;
    sqlite3_stmt *s;
    t->n = 0;
    int rc = stmt(st, T_TAKE, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, me());
    sqlite3_bind_int64(s, 2, (sqlite3_int64)t->max);
    rc = tg_sqlite_each(st, s, "take groups to follow", taken_row, t);
    for (size_t i = 0; rc == TG_OK && i < t->n; i++)
        rc = hold(st, t->out[i].taskgroup_id);
    if (rc == TG_OK && t->waiting != NULL) {
        rc = stmt(st, T_WAITING, &s);
        if (rc == TG_OK) {
            tg_sqlite_bind_text(s, 1, me());
            rc = tg_sqlite_one(st, s, "count groups to follow");
            if (rc == TG_OK)
                *t->waiting = (long)sqlite3_column_int64(s, 0);
            tg_sqlite_done(s);
        }
    }
    return rc;
}

int tg_sqlite_track_take(struct tg_store *st, size_t max, struct tg_track_group *out,
                         size_t *n, long *waiting)
{
    struct take t = {max, 0, out, waiting};
    *n = 0;
    if (waiting != NULL)
        *waiting = 0;
    if (max == 0 && waiting == NULL)
        return TG_OK;
    int rc = tg_sqlite_write(st, take_w, &t);
    if (rc == TG_OK)
        *n = t.n;
    return rc;
}

static int renew_w(struct tg_store *st, void *arg)
{
    (void)arg;
    return hold(st, NULL);
}

int tg_sqlite_track_renew(struct tg_store *st)
{
    return tg_sqlite_write(st, renew_w, NULL);
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
    sqlite3_stmt *s;
    char now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    int rc = stmt(st, T_SETTLE, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, a->id);
    sqlite3_bind_int64(s, 2, a->adds);
    sqlite3_bind_int(s, 3, a->gone != 0);
    tg_sqlite_bind_text(s, 4, now);
    tg_sqlite_bind_text(s, 5, a->detail);
    tg_sqlite_bind_text(s, 6, me());
    rc = tg_sqlite_one(st, s, "settle a followed group");
    if (rc == TG_OK) {
        const char *state = tg_sqlite_col_text(s, 0);
        a->again = state != NULL && strcmp(state, "follow") == 0;
        /* RETURNING: the update is whole once the statement has run to its end. */
        while (sqlite3_step(s) == SQLITE_ROW)
            continue;
    } else if (rc == TG_ENOTFOUND) {
        tg_sqlite_set_err(st, "group %.100s is not followed by this daemon", a->id);
    }
    tg_sqlite_done(s);
    return rc;
}

int tg_sqlite_track_settle(struct tg_store *st, const char *taskgroup_id, int64_t adds,
                           int gone, const char *detail, int *again)
{
    struct settle a = {taskgroup_id, adds, gone, detail, 0};
    int rc = tg_sqlite_write(st, settle_w, &a);
    if (again != NULL)
        *again = rc == TG_OK && a.again;
    return rc;
}

static int release_w(struct tg_store *st, void *arg)
{
    const char *const *id = arg;
    sqlite3_stmt *s;
    int rc = stmt(st, T_RELEASE, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, me());
    tg_sqlite_bind_text(s, 2, *id);
    return tg_sqlite_run(st, s, "release followed groups");
}

int tg_sqlite_track_release(struct tg_store *st, const char *taskgroup_id)
{
    return tg_sqlite_write(st, release_w, &taskgroup_id);
}

/* ---- status changes ------------------------------------------------------------------------ */

/* Records c (told by source) for a run of group when it is news (c->news says whether
 * it was). Inside the caller's transaction. */
static int apply_change(struct tg_store *st, const char *group, struct tg_run_change *c,
                        const char *source)
{
    int *news = &c->news;
    sqlite3_stmt *s;
    char at[TG_TIME_LEN], now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    if (c->changed_ms > 0)
        tg_time_format(c->changed_ms, at);
    else
        memcpy(at, now, sizeof(at));
    *news = 0;
    if (c->run_id == NULL || !tg_domain_run_status_known(c->status))
        return tg_sqlite_invalid(st, "a run's status change needs a run id and a known status");
    int rc = stmt(st, T_STATUS_GET, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, c->run_id);
    rc = tg_sqlite_one(st, s, "read a run's status");
    int known = rc == TG_OK;
    if (rc == TG_OK || rc == TG_ENOTFOUND) {
        *news = tg_domain_run_change_news(known ? tg_sqlite_col_text(s, 0) : NULL,
                                          known ? tg_sqlite_col_text(s, 1) : NULL,
                                          c->status, at);
        rc = TG_OK;
    }
    tg_sqlite_done(s);
    if (rc != TG_OK || !*news)
        return rc;
    const char *error = strcmp(c->status, "failed") == 0 ? c->error : NULL;
    rc = stmt(st, T_STATUS_PUT, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, c->run_id);
    tg_sqlite_bind_text(s, 2, group);
    tg_sqlite_bind_text(s, 3, c->status);
    tg_sqlite_bind_text(s, 4, error);
    tg_sqlite_bind_text(s, 5, at);
    tg_sqlite_bind_text(s, 6, tg_domain_run_status_final(c->status) ? at : NULL);
    tg_sqlite_bind_text(s, 7, source);
    tg_sqlite_bind_text(s, 8, now);
    rc = tg_sqlite_run(st, s, "record a run's status");
    if (rc == TG_OK)
        rc = stmt(st, T_CHANGE_ADD, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, c->run_id);
    tg_sqlite_bind_text(s, 2, group);
    tg_sqlite_bind_text(s, 3, c->status);
    tg_sqlite_bind_text(s, 4, error);
    tg_sqlite_bind_text(s, 5, at);
    tg_sqlite_bind_text(s, 6, source);
    tg_sqlite_bind_text(s, 7, c->event_id);
    tg_sqlite_bind_text(s, 8, now);
    rc = tg_sqlite_run(st, s, "record a run's status change");
    if (rc == TG_OK && strcmp(c->status, "completed") == 0)
        rc = tg_sqlite_counts_duration_run(st, c->run_id);
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
    sqlite3_stmt *s;
    char now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    b->recorded = 0;
    int rc = stmt(st, T_PLACE, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, b->group);
    tg_sqlite_bind_text(s, 2, b->place);
    tg_sqlite_bind_text(s, 3, now);
    tg_sqlite_bind_text(s, 4, me());
    rc = tg_sqlite_run(st, s, "record a followed group's place");
    if (rc == TG_OK && sqlite3_changes(st->db) == 0) {
        tg_sqlite_set_err(st, "group %.100s is not followed by this daemon", b->group);
        return TG_ENOTFOUND;
    }
    for (size_t i = 0; rc == TG_OK && i < b->n; i++) {
        rc = apply_change(st, b->group, &b->changes[i], "events");
        b->recorded += (size_t)b->changes[i].news;
    }
    return rc;
}

int tg_sqlite_track_record(struct tg_store *st, const char *taskgroup_id,
                           const char *last_event_id, struct tg_run_change *changes,
                           size_t n, size_t *recorded)
{
    struct batch b = {taskgroup_id, last_event_id, changes, n, 0};
    int rc = tg_sqlite_write(st, record_w, &b);
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

/* A text lookup by one key into out ("" and TG_ENOTFOUND when there is no row). */
static int lookup(struct tg_store *st, enum stmt_id id, const char *key, char *out, size_t len)
{
    sqlite3_stmt *s;
    out[0] = '\0';
    int rc = stmt(st, id, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, key);
    rc = tg_sqlite_one(st, s, "look up a webhook's run");
    if (rc == TG_OK)
        tg_sqlite_col_copy(out, len, s, 0);
    tg_sqlite_done(s);
    return rc;
}

/* The group of a run the gateway recorded, into out ("" and TG_ENOTFOUND: none). */
static int run_group(struct tg_store *st, const char *run_id, char *out, size_t len)
{
    int64_t bucket;
    sqlite3_stmt *s;
    out[0] = '\0';
    int rc = tg_sqlite_runs_bucket(st, run_id, &bucket);
    if (rc == TG_OK)
        rc = stmt(st, T_RUN_GROUP, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, run_id);
    sqlite3_bind_int64(s, 2, bucket);
    rc = tg_sqlite_one(st, s, "read a run's group");
    if (rc == TG_OK)
        tg_sqlite_col_copy(out, len, s, 0);
    tg_sqlite_done(s);
    return rc;
}

static int hook_w(struct tg_store *st, void *arg)
{
    struct hook *h = arg;
    sqlite3_stmt *s;
    char now[TG_TIME_LEN], group[TG_TRACK_ID_MAX + 1];
    tg_sqlite_now_text(now);
    int rc = stmt(st, T_HOOK_ADD, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, h->id);
    tg_sqlite_bind_text(s, 2, now);
    tg_sqlite_bind_text(s, 3, h->change->run_id);
    tg_sqlite_bind_text(s, 4, h->change->status);
    rc = tg_sqlite_run(st, s, "record a webhook delivery");
    if (rc == TG_OK && sqlite3_changes(st->db) == 0) {
        tg_sqlite_set_err(st, "webhook %.100s was received already", h->id);
        return TG_EEXIST;
    }
    snprintf(group, sizeof(group), "%s", h->group != NULL ? h->group : "");
    if (rc == TG_OK && group[0] == '\0' && h->change->run_id != NULL)
        rc = run_group(st, h->change->run_id, group, sizeof(group));
    if (rc == TG_OK && group[0] != '\0')
        rc = lookup(st, T_HOOK_GROUP, group, h->team, sizeof(h->team));
    h->out = TG_WEBHOOK_IGNORED;
    if (rc == TG_OK) {
        rc = apply_change(st, group, h->change, "webhook");
        h->out = h->change->news ? TG_WEBHOOK_RECORDED : TG_WEBHOOK_KNOWN;
    } else if (rc == TG_ENOTFOUND) {
        rc = TG_OK;
    }
    if (rc == TG_OK)
        rc = stmt(st, T_HOOK_OUTCOME, &s);
    if (rc != TG_OK)
        return rc;
    static const char *const names[] = {"recorded", "known", "ignored"};
    tg_sqlite_bind_text(s, 1, h->id);
    tg_sqlite_bind_text(s, 2, names[h->out]);
    return tg_sqlite_run(st, s, "record a webhook's outcome");
}

int tg_sqlite_webhook_record(struct tg_store *st, const char *webhook_id,
                             const char *taskgroup_id, struct tg_run_change *change,
                             enum tg_webhook_outcome *out, char *team, size_t teamlen)
{
    struct hook h = {webhook_id, taskgroup_id, change, TG_WEBHOOK_IGNORED, ""};
    if (webhook_id == NULL || change == NULL)
        return tg_sqlite_invalid(st, "a webhook needs its id and the change it tells");
    int rc = tg_sqlite_write(st, hook_w, &h);
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
    struct prune *p = arg;
    sqlite3_stmt *s;
    int rc = stmt(st, T_HOOK_PRUNE, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, p->before);
    rc = tg_sqlite_run(st, s, "remove old webhook deliveries");
    p->n = rc == TG_OK ? (long)sqlite3_changes(st->db) : 0;
    return rc;
}

int tg_sqlite_webhook_prune(struct tg_store *st, int64_t before_ms, long *n)
{
    char before[TG_TIME_LEN];
    tg_time_format(before_ms, before);
    struct prune p = {before, 0};
    int rc = tg_sqlite_write(st, prune_w, &p);
    if (n != NULL)
        *n = p.n;
    return rc;
}
