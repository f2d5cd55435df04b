/* The run tracker (see tg_track.h). One thread, one libcurl multi handle, one transfer per
 * group followed. A stream's events are read as they arrive (tg_sse.c) and kept until they
 * are recorded: at most FLUSH_US after the first of them, or sooner when BATCH_MAX have
 * come, or when the stream ends, each batch with the stream's place after it in one store
 * transaction (tg_store_track_record). A stream that ends with its group inactive settles
 * the group; one that ends otherwise (the upstream's hour is up, the connection broke, an
 * error answer) is opened again from the place recorded, after a pause that grows with
 * each failure. What was read and not recorded when anything fails is read again. */
#include "tg_track.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_bg.h"
#include "tg_core.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_metrics.h"
#include "tg_sse.h"
#include "tg_upstream.h"
#include "tg_upstream_curl.h"

#define EVENT_MAX (4u * 1024 * 1024)   /* one event; a run with its metadata is < 20 KB */
#define BATCH_MAX 500                  /* changes recorded in one transaction at most */
#define FLUSH_US 200000LL              /* the longest a change read waits to be recorded */
#define TAKE_US 1000000LL              /* how often groups no daemon follows are looked for */
#define RENEW_US ((int64_t)TG_STORE_LEASE_RENEW_MS * 1000)
#define PRUNE_US (3600LL * 1000000)    /* how often old webhook-ids are removed */
#define HOOK_KEEP_MS (7LL * 86400 * 1000) /* Parallel retries a webhook for 48 hours */
#define STREAM_TIMEOUT_MS 3700000L     /* the upstream keeps a stream up to an hour */
#define BACKOFF_MIN_US 1000000LL
#define BACKOFF_MAX_US 60000000LL
#define KEY_BACKOFF_MAX_US 600000000LL /* a refused key: ten minutes at most between tries */
#define ANSWER_KEPT 512                /* bytes of an error answer kept for the log */

struct tracker;

/* One group followed, with its transfer (easy is NULL between two). */
struct follow {
    struct tracker *t;
    struct tg_track_group g;       /* g.last_event_id: the place recorded */
    char key[TG_UPSTREAM_KEY_MAX]; /* the team's upstream key; "" until read */
    CURL *easy;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    struct tg_sse sse;
    long status;                   /* the transfer's HTTP status once its body began */
    char answer[ANSWER_KEPT + 1];  /* the start of an error answer */
    int active;                    /* the group's last task_group_status: 1, 0, -1 none */
    int broken;                    /* the transfer was stopped: what it read went wrong */
    long events;                   /* events the transfer read */
    /* read and not yet recorded */
    struct tg_pool *pool;          /* their strings; NULL when there are none */
    struct tg_run_change *changes;
    size_t n, cap;
    char place[TG_TRACK_ID_MAX + 1]; /* the id of the last event read; "" none */
    int64_t first_us;              /* when the oldest of them was read; 0 none */
    /* between transfers */
    int64_t due_us;                /* when to open the stream again */
    int failures;                  /* in a row, for the pause */
    int gone;                      /* to be dropped: settled, or taken by another daemon */
};

struct tracker {
    const struct tg_conf *conf;
    struct tg_store *st;
    CURLM *multi;
    struct follow **f;
    size_t n, max;
    struct tg_track_group *taken; /* take's buffer, max entries */
    long waiting;
};

static struct tg_bg bg = TG_BG_INIT;
static atomic_int stopping;
static CURLM *_Atomic bg_multi; /* for tg_track_stop's wake-up */
static int started;             /* the thread runs: set and read by the daemon's main thread */

/* ---- reading a run -------------------------------------------------------------------- */

int tg_track_run_change(json_object *run, struct tg_run_change *c)
{
    memset(c, 0, sizeof(*c));
    c->run_id = tg_json_get_str(run, "run_id");
    c->status = tg_json_get_str(run, "status");
    if (c->run_id == NULL || c->run_id[0] == '\0' || strlen(c->run_id) > TG_TRACK_ID_MAX ||
        !tg_domain_run_status_known(c->status))
        return TG_EINVAL;
    if (strcmp(c->status, "failed") == 0)
        c->error = tg_json_get_str(tg_json_get(run, "error"), "message");
    const char *at = tg_json_get_str(run, "modified_at");
    if (at == NULL || tg_time_parse(at, &c->changed_ms) != TG_OK)
        c->changed_ms = 0;
    return TG_OK;
}

/* ---- recording ------------------------------------------------------------------------ */

static void forget_pending(struct follow *f)
{
    tg_pool_destroy(f->pool);
    f->pool = NULL;
    f->changes = NULL;
    f->n = f->cap = 0;
    f->place[0] = '\0';
    f->first_us = 0;
}

/* Records what was read of f's stream. TG_OK; otherwise it is forgotten (the stream reads
 * it again from the place recorded) and the transfer must stop. */
static int flush(struct tracker *t, struct follow *f)
{
    if (f->n == 0 && f->place[0] == '\0')
        return TG_OK;
    size_t recorded = 0;
    int rc = tg_store_track_record(t->st, f->g.taskgroup_id,
                                   f->place[0] != '\0' ? f->place : NULL, f->changes, f->n,
                                   &recorded);
    if (rc == TG_OK) {
        int64_t now = tg_now_ms();
        for (size_t i = 0; i < f->n; i++) {
            if (!f->changes[i].news)
                continue;
            tg_metrics_run_status(f->g.team, f->changes[i].status);
            if (f->changes[i].changed_ms > 0)
                tg_metrics_track_lag(now - f->changes[i].changed_ms);
        }
        if (f->place[0] != '\0')
            memcpy(f->g.last_event_id, f->place, sizeof(f->place));
    } else if (rc == TG_ENOTFOUND) {
        tg_log(TG_LOG_INFO, "task group %s is followed by another daemon now",
               f->g.taskgroup_id);
        f->gone = 1;
    } else {
        tg_log(TG_LOG_ERROR, "task group %s: %s: its events are read again",
               f->g.taskgroup_id, tg_store_errmsg(t->st));
    }
    forget_pending(f);
    return rc;
}

/* Keeps change c (its strings copied) for the next flush. */
static int keep(struct follow *f, const struct tg_run_change *c)
{
    if (f->pool == NULL && (f->pool = tg_pool_create()) == NULL)
        return TG_ENOMEM;
    if (f->n == f->cap) {
        size_t cap = f->cap == 0 ? 16 : f->cap * 2;
        struct tg_run_change *nc = tg_pool_calloc(f->pool, cap, sizeof(*nc));
        if (nc == NULL)
            return TG_ENOMEM;
        if (f->n > 0)
            memcpy(nc, f->changes, f->n * sizeof(*nc));
        f->changes = nc;
        f->cap = cap;
    }
    struct tg_run_change *k = &f->changes[f->n];
    *k = *c;
    k->run_id = tg_pool_strdup(f->pool, c->run_id);
    k->status = tg_pool_strdup(f->pool, c->status);
    k->error = tg_pool_strdup(f->pool, c->error);
    k->event_id = tg_pool_strdup(f->pool, c->event_id);
    if (k->run_id == NULL || k->status == NULL || (c->error != NULL && k->error == NULL) ||
        (c->event_id != NULL && k->event_id == NULL))
        return TG_ENOMEM;
    f->n++;
    return TG_OK;
}

/* ---- reading a stream ----------------------------------------------------------------- */

static int on_event(void *ctx, const char *name, const char *data, size_t len, const char *id)
{
    struct follow *f = ctx;
    (void)name;
    int had = f->n > 0 || f->place[0] != '\0';
    f->events++;
    char err[128];
    json_object *ev = tg_json_parse(data, len, 64, err, sizeof(err));
    const char *type = tg_json_get_str(ev, "type");
    const char *event_id = tg_json_get_str(ev, "event_id");
    if (event_id == NULL && id[0] != '\0')
        event_id = id;
    int rc = TG_OK;
    if (ev == NULL || type == NULL || (event_id != NULL && strlen(event_id) > TG_TRACK_ID_MAX)) {
        tg_log(TG_LOG_WARN, "task group %s: an event could not be read (%s)",
               f->g.taskgroup_id, ev == NULL ? err : type == NULL ? "no type" : "id too long");
        rc = TG_EINVAL;
    } else if (strcmp(type, "task_run.state") == 0) {
        struct tg_run_change c;
        if (tg_track_run_change(tg_json_get(ev, "run"), &c) == TG_OK) {
            c.event_id = event_id;
            rc = keep(f, &c);
        }
    } else if (strcmp(type, "task_group_status") == 0) {
        json_object *active = tg_json_get(tg_json_get(ev, "status"), "is_active");
        if (json_object_is_type(active, json_type_boolean))
            f->active = json_object_get_boolean(active) ? 1 : 0;
    } else if (strcmp(type, "error") == 0) {
        tg_log(TG_LOG_WARN, "task group %s: the upstream sent an error event: %s",
               f->g.taskgroup_id,
               tg_json_get_str(tg_json_get(ev, "error"), "message") != NULL
                   ? tg_json_get_str(tg_json_get(ev, "error"), "message")
                   : "(no message)");
    }
    if (rc == TG_OK && event_id != NULL)
        snprintf(f->place, sizeof(f->place), "%s", event_id);
    if (!had && (f->n > 0 || f->place[0] != '\0'))
        f->first_us = tg_mono_us();
    json_object_put(ev);
    tg_metrics_track_events(1);
    if (rc == TG_OK && f->n >= BATCH_MAX)
        rc = flush(f->t, f);
    return rc;
}

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
    struct follow *f = arg;
    size_t len = size * n;
    if (f->status == 0)
        curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &f->status);
    if (f->status != 200) { /* an error's answer: its start, for the log */
        size_t have = strlen(f->answer);
        size_t take = len < ANSWER_KEPT - have ? len : ANSWER_KEPT - have;
        memcpy(f->answer + have, data, take);
        f->answer[have + take] = '\0';
        return len;
    }
    if (f->broken || atomic_load(&stopping) || tg_sse_feed(&f->sse, data, len) != TG_OK) {
        f->broken = 1;
        return 0; /* libcurl ends the transfer (CURLE_WRITE_ERROR) */
    }
    return len;
}

/* ---- one group's transfers ------------------------------------------------------------ */

static void end_transfer(struct tracker *t, struct follow *f)
{
    if (f->easy == NULL)
        return;
    curl_multi_remove_handle(t->multi, f->easy);
    curl_easy_cleanup(f->easy);
    curl_slist_free_all(f->headers);
    f->easy = NULL;
    f->headers = NULL;
    tg_sse_reset(&f->sse);
}

/* Opens f's stream from its place. TG_OK, or an error after which f waits (a key that
 * cannot be read, out of memory). */
static int start_transfer(struct tracker *t, struct follow *f)
{
    if (f->key[0] == '\0') {
        int rc = tg_store_team_key(t->st, f->g.team_id, f->key, sizeof(f->key));
        if (rc != TG_OK) {
            tg_log(TG_LOG_ERROR, "task group %s: the key of team %s cannot be read: %s",
                   f->g.taskgroup_id, f->g.team, tg_store_errmsg(t->st));
            f->key[0] = '\0';
            return rc;
        }
    }
    f->easy = curl_easy_init();
    if (f->easy == NULL)
        return TG_ENOMEM;
    char path[3 * TG_TRACK_ID_MAX + 3 * TG_TRACK_ID_MAX + 64], url[4096];
    char *group = curl_easy_escape(f->easy, f->g.taskgroup_id, 0);
    char *place = f->g.last_event_id[0] != '\0'
                      ? curl_easy_escape(f->easy, f->g.last_event_id, 0) : NULL;
    int rc = group != NULL && (f->g.last_event_id[0] == '\0' || place != NULL) ? TG_OK
                                                                                : TG_ENOMEM;
    if (rc == TG_OK) {
        snprintf(path, sizeof(path), "/v1/tasks/groups/%s/events%s%s", group,
                 place != NULL ? "?last_event_id=" : "", place != NULL ? place : "");
        rc = tg_upstream_url(t->conf, path, url, sizeof(url));
    }
    curl_free(group);
    curl_free(place);
    if (rc == TG_OK) {
        f->headers = tg_upstream_read_headers(f->key, "text/event-stream", NULL, NULL);
        rc = f->headers != NULL ? TG_OK : TG_EINVAL;
    }
    if (rc != TG_OK) {
        curl_easy_cleanup(f->easy);
        f->easy = NULL;
        return rc;
    }
    f->errbuf[0] = '\0';
    tg_upstream_setup(f->easy, t->conf, url, f->headers, STREAM_TIMEOUT_MS, f->errbuf);
    curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f);
    f->status = 0;
    f->answer[0] = '\0';
    f->active = -1;
    f->broken = 0;
    f->events = 0;
    if (curl_multi_add_handle(t->multi, f->easy) != CURLM_OK) {
        end_transfer(t, f);
        return TG_ENOMEM;
    }
    return TG_OK;
}

/* The pause before trying again after the failures-th failure in a row. */
static int64_t backoff(int failures, int64_t max)
{
    int64_t us = BACKOFF_MIN_US;
    for (int i = 1; i < failures && us < max; i++)
        us *= 2;
    return us < max ? us : max;
}

/* Stops following f: the store says whether it stays to follow (runs were added since it
 * was taken: the next take finds it). */
static void settle(struct tracker *t, struct follow *f, int gone, const char *detail)
{
    int again = 0;
    if (tg_store_track_settle(t->st, f->g.taskgroup_id, f->g.adds, gone, detail, &again) !=
        TG_OK)
        tg_log(TG_LOG_ERROR, "task group %s: %s (another daemon or the next start takes it "
               "again)", f->g.taskgroup_id, tg_store_errmsg(t->st));
    else if (gone)
        tg_log(TG_LOG_WARN, "task group %s is no longer followed: %s", f->g.taskgroup_id,
               detail);
    else
        tg_log(TG_LOG_DEBUG, "task group %s: no run active%s", f->g.taskgroup_id,
               again ? ", but runs were added: it is followed again" : "");
    f->gone = 1;
}

/* A failed attempt: the next one after a pause (longer for a refused key). */
static void failed(struct follow *f, int64_t max, const char *why)
{
    f->failures++;
    f->due_us = tg_mono_us() + backoff(f->failures, max);
    tg_log(f->failures == 1 ? TG_LOG_WARN : TG_LOG_DEBUG,
           "task group %s: %s; its stream is opened again in %lld s (attempt %d)",
           f->g.taskgroup_id, why, (long long)((f->due_us - tg_mono_us() + 999999) / 1000000),
           f->failures + 1);
    tg_metrics_track_reconnect();
}

/* What to do once f's transfer ended with cc. */
static void transfer_done(struct tracker *t, struct follow *f, CURLcode cc)
{
    long status = f->status;
    if (status == 0)
        curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    char why[CURL_ERROR_SIZE + 64];
    snprintf(why, sizeof(why), "%s", f->errbuf[0] != '\0' ? f->errbuf : curl_easy_strerror(cc));
    int broken = f->broken;
    end_transfer(t, f);
    int rc = flush(t, f);
    if (f->gone)
        return;
    if (status == 200 && cc == CURLE_OK && rc == TG_OK) {
        /* The upstream keeps a stream open while a run is active: one resumed after the
         * last event that ends without a new one says none is. */
        if (f->active == 0 || (f->events == 0 && f->g.last_event_id[0] != '\0')) {
            settle(t, f, 0, NULL);
            return;
        }
        if (f->events == 0) {
            failed(f, BACKOFF_MAX_US, "its stream ended without an event");
            return;
        }
        /* The stream ended with runs still active (the upstream's hour was up): again. */
        if (f->failures > 0)
            tg_log(TG_LOG_INFO, "task group %s: its stream is read again", f->g.taskgroup_id);
        f->failures = 0;
        f->due_us = tg_mono_us();
        tg_metrics_track_reconnect();
        return;
    }
    if (status == 404) {
        settle(t, f, 1, "the upstream answered 404 (TaskGroup not found)");
        return;
    }
    if (status == 422 && f->g.last_event_id[0] != '\0') {
        /* The place was refused: from the start, what is known already is not news. */
        tg_log(TG_LOG_WARN, "task group %s: the upstream refused last_event_id %s: reading "
               "its events from the start", f->g.taskgroup_id, f->g.last_event_id);
        f->g.last_event_id[0] = '\0';
        failed(f, BACKOFF_MAX_US, "its place was refused");
        return;
    }
    if (status == 401 || status == 403) {
        tg_memzero(f->key, sizeof(f->key)); /* read again: it may have been changed */
        char msg[80];
        snprintf(msg, sizeof(msg), "the upstream refused team %.40s's key (%ld)", f->g.team,
                 status);
        failed(f, KEY_BACKOFF_MAX_US, msg);
        return;
    }
    if (status != 0 && status != 200) {
        char msg[ANSWER_KEPT + 64];
        snprintf(msg, sizeof(msg), "the upstream answered %ld %s", status, f->answer);
        failed(f, BACKOFF_MAX_US, msg);
        return;
    }
    failed(f, BACKOFF_MAX_US, rc != TG_OK ? "its events could not be recorded"
                              : broken   ? "an event could not be read"
                                         : why);
}

/* ---- the groups followed -------------------------------------------------------------- */

static void follow_free(struct follow *f)
{
    if (f == NULL)
        return;
    forget_pending(f);
    tg_sse_free(&f->sse);
    tg_memzero(f->key, sizeof(f->key));
    free(f);
}

/* Takes as many groups as there is room for, and counts those left waiting. */
static void take(struct tracker *t)
{
    size_t room = t->max - t->n, got = 0;
    long waiting = 0;
    if (tg_store_track_take(t->st, room, t->taken, &got, &waiting) != TG_OK) {
        tg_log(TG_LOG_ERROR, "run tracking: %s", tg_store_errmsg(t->st));
        return;
    }
    t->waiting = waiting;
    for (size_t i = 0; i < got; i++) {
        struct follow *f = calloc(1, sizeof(*f));
        if (f == NULL) {
            tg_store_track_release(t->st, t->taken[i].taskgroup_id);
            continue;
        }
        f->t = t;
        f->g = t->taken[i];
        tg_sse_init(&f->sse, EVENT_MAX, on_event, f);
        f->due_us = tg_mono_us();
        t->f[t->n++] = f;
    }
    if (got > 0)
        tg_log(TG_LOG_DEBUG, "run tracking: %zu group(s) taken, %zu followed, %ld waiting",
               got, t->n, waiting);
}

/* Drops the groups settled or taken by another daemon. */
static void compact(struct tracker *t)
{
    size_t kept = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->f[i]->gone && t->f[i]->easy == NULL)
            follow_free(t->f[i]);
        else
            t->f[kept++] = t->f[i];
    }
    t->n = kept;
}

/* One turn of the loop after the transfers moved: starts those due, ends those done,
 * records what waited long enough; returns how long the loop may sleep (ms). */
static long turn(struct tracker *t)
{
    int64_t now = tg_mono_us(), next = now + 1000000;
    for (size_t i = 0; i < t->n; i++) {
        struct follow *f = t->f[i];
        if (f->easy == NULL && !f->gone && f->due_us <= now &&
            start_transfer(t, f) != TG_OK)
            failed(f, KEY_BACKOFF_MAX_US, "its stream could not be opened");
        if (f->easy == NULL && !f->gone && f->due_us < next)
            next = f->due_us;
        if (f->first_us == 0)
            continue;
        if (now - f->first_us < FLUSH_US) {
            if (f->first_us + FLUSH_US < next)
                next = f->first_us + FLUSH_US;
        } else if (flush(t, f) != TG_OK && f->easy != NULL) {
            /* Nothing after what was forgotten may be recorded: read again from the place
             * recorded. */
            end_transfer(t, f);
            if (!f->gone)
                failed(f, BACKOFF_MAX_US, "its events could not be recorded");
        }
    }
    compact(t);
    long ms = (long)((next - tg_mono_us()) / 1000);
    return ms < 0 ? 0 : ms;
}

static void *track_main(void *arg)
{
    struct tracker *t = arg;
    int64_t next_take = 0, next_renew = tg_mono_us() + RENEW_US, next_prune = 0;
    while (!atomic_load(&stopping)) {
        int64_t now = tg_mono_us();
        if (now >= next_take) {
            take(t);
            next_take = now + TAKE_US;
        }
        if (now >= next_renew) {
            if (t->n > 0 && tg_store_track_renew(t->st) != TG_OK)
                tg_log(TG_LOG_ERROR, "run tracking: %s", tg_store_errmsg(t->st));
            next_renew = now + RENEW_US;
        }
        if (now >= next_prune) {
            long n = 0;
            if (tg_store_webhook_prune(t->st, tg_now_ms() - HOOK_KEEP_MS, &n) != TG_OK)
                tg_log(TG_LOG_ERROR, "webhooks: %s", tg_store_errmsg(t->st));
            else if (n > 0)
                tg_log(TG_LOG_DEBUG, "webhooks: %ld delivery ids older than a week removed", n);
            next_prune = now + PRUNE_US;
        }
        int running = 0;
        curl_multi_perform(t->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(t->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            char *priv = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
            if (priv != NULL)
                transfer_done(t, (struct follow *)(void *)priv, m->data.result);
        }
        long ms = turn(t);
        tg_metrics_track_groups((long)t->n, t->waiting);
        if (now + (int64_t)ms * 1000 > next_take)
            ms = (long)((next_take - now) / 1000);
        curl_multi_poll(t->multi, NULL, 0, ms > 0 ? (int)ms : 0, NULL);
    }
    /* Stopping: what was read is recorded, and every group handed back. */
    for (size_t i = 0; i < t->n; i++) {
        end_transfer(t, t->f[i]);
        flush(t, t->f[i]);
        follow_free(t->f[i]);
    }
    t->n = 0;
    if (tg_store_track_release(t->st, NULL) != TG_OK)
        tg_log(TG_LOG_WARN, "run tracking: %s (the groups are taken again once their lease "
               "runs out)", tg_store_errmsg(t->st));
    tg_metrics_track_groups(0, t->waiting);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------- */

static struct tracker tracker;

static void tracker_free(struct tracker *t)
{
    atomic_store(&bg_multi, NULL);
    if (t->multi != NULL)
        curl_multi_cleanup(t->multi);
    tg_store_close(t->st);
    free(t->f);
    free(t->taken);
    memset(t, 0, sizeof(*t));
}

int tg_track_start(const struct tg_conf *conf)
{
    char err[512];
    struct tracker *t = &tracker;
    memset(t, 0, sizeof(*t));
    t->conf = conf;
    t->max = (size_t)conf->track_groups_max;
    if (tg_store_open(&t->st, conf->database, 0, (int)conf->db_busy_timeout_ms, err,
                      sizeof(err)) != TG_OK) {
        tg_log(TG_LOG_ERROR, "run tracking: cannot open the database: %s", err);
        return TG_ERR;
    }
    t->multi = curl_multi_init();
    t->f = calloc(t->max + 1, sizeof(*t->f));
    t->taken = calloc(t->max + 1, sizeof(*t->taken));
    if (t->multi == NULL || t->f == NULL || t->taken == NULL) {
        tg_log(TG_LOG_ERROR, "run tracking: out of memory");
        tracker_free(t);
        return TG_ERR;
    }
    atomic_store(&bg_multi, t->multi);
    atomic_store(&stopping, 0);
    if (tg_bg_start(&bg, track_main, t) != TG_OK) {
        tracker_free(t);
        return TG_ERR;
    }
    started = 1;
    return TG_OK;
}

void tg_track_stop(void)
{
    if (!started)
        return;
    atomic_store(&stopping, 1);
    curl_multi_wakeup(atomic_load(&bg_multi));
    tg_bg_stop(&bg);
    tracker_free(&tracker);
    started = 0;
}
