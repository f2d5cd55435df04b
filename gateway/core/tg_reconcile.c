/* Reconciliation (see tg_reconcile.h): an 'unknown' submission's group is read from the
 * upstream (GET .../groups/{id}/runs, a server-sent event stream of the group's runs in
 * the order they were created), the runs whose metadata carries the submission's tag are
 * recorded under the call the tag names, and the submission is settled. */
#include "tg_reconcile.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tg_admin.h"
#include "tg_bg.h"
#include "tg_conf.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_merge.h"
#include "tg_metrics.h"
#include "tg_run_tag.h"
#include "tg_store.h"
#include "tg_upstream.h"

#define EVENT_MAX (4u * 1024 * 1024) /* one event's data; a run with its metadata is < 20 KB */
#define READ_TIMEOUT_MS 600000L      /* a whole group's runs stream */
#define BATCH 1000

/* ---- reading the runs stream ------------------------------------------------------------- */

/* The runs of one call, as found. */
struct found_call {
    int seq;
    long first, count;
    size_t n, cap;
    const char **ids;
    const char **procs;
};

struct reader {
    struct tg_pool *pool;
    const char *prefix;      /* "<sub_id>." */
    size_t prefix_len;
    int status;
    struct tg_buf line;      /* the line being read */
    struct tg_buf data;      /* the event's data lines */
    struct found_call *calls;
    size_t ncalls, cap;
    long tagged;             /* runs carrying the submission's tag */
    int bad;                 /* an event could not be understood, or an error event came */
    char problem[200];
};

static struct found_call *call_for(struct reader *r, int seq, long first, long count)
{
    for (size_t i = 0; i < r->ncalls; i++)
        if (r->calls[i].seq == seq)
            return &r->calls[i];
    if (r->ncalls == r->cap) {
        size_t ncap = r->cap == 0 ? 8 : r->cap * 2;
        struct found_call *c = tg_pool_calloc(r->pool, ncap, sizeof(*c));
        if (c == NULL)
            return NULL;
        if (r->ncalls > 0)
            memcpy(c, r->calls, r->ncalls * sizeof(*c));
        r->calls = c;
        r->cap = ncap;
    }
    struct found_call *c = &r->calls[r->ncalls++];
    memset(c, 0, sizeof(*c));
    c->seq = seq;
    c->first = first;
    c->count = count;
    return c;
}

static int add_run(struct reader *r, struct found_call *c, const char *id, const char *proc)
{
    if (c->n == c->cap) {
        size_t ncap = c->cap == 0 ? 16 : c->cap * 2;
        const char **ids = tg_pool_calloc(r->pool, ncap, sizeof(char *));
        const char **procs = tg_pool_calloc(r->pool, ncap, sizeof(char *));
        if (ids == NULL || procs == NULL)
            return TG_ENOMEM;
        if (c->n > 0) {
            memcpy(ids, c->ids, c->n * sizeof(char *));
            memcpy(procs, c->procs, c->n * sizeof(char *));
        }
        c->ids = ids;
        c->procs = procs;
        c->cap = ncap;
    }
    c->ids[c->n] = tg_pool_strdup(r->pool, id);
    c->procs[c->n] = tg_pool_strdup(r->pool, proc);
    if (c->ids[c->n] == NULL)
        return TG_ENOMEM;
    c->n++;
    return TG_OK;
}

/* One event's data: a task_run.state event whose run carries our tag is noted. */
static void on_event(struct reader *r)
{
    if (r->data.len == 0)
        return;
    char err[128];
    json_object *ev = tg_json_parse(r->data.data, r->data.len, 64, err, sizeof(err));
    const char *type = tg_json_get_str(ev, "type");
    if (ev == NULL || type == NULL) {
        r->bad = 1;
        snprintf(r->problem, sizeof(r->problem), "an event could not be read: %s",
                 ev == NULL ? err : "no type");
    } else if (strcmp(type, "error") == 0) {
        r->bad = 1;
        snprintf(r->problem, sizeof(r->problem), "the upstream sent an error event");
    } else if (strcmp(type, "task_run.state") == 0) {
        json_object *run = tg_json_get(ev, "run");
        const char *tag = tg_json_get_str(tg_json_get(run, "metadata"), TG_RUN_TAG_KEY);
        const char *id = tg_json_get_str(run, "run_id");
        int seq;
        long first, count;
        if (id != NULL &&
            tg_run_tag_parse(tag, r->prefix, r->prefix_len, &seq, &first, &count)) {
            struct found_call *c = call_for(r, seq, first, count);
            if (c == NULL || add_run(r, c, id, tg_json_get_str(run, "processor")) != TG_OK) {
                r->bad = 1;
                snprintf(r->problem, sizeof(r->problem), "out of memory");
            }
            r->tagged++;
        }
    }
    json_object_put(ev);
    tg_buf_clear(&r->data);
}

/* One line of the stream (without its end): "data: …" lines make up an event, a blank
 * line ends it; "event:", "id:" and comments need nothing here. */
static void on_line(struct reader *r, const char *line, size_t len)
{
    if (len == 0) {
        on_event(r);
        return;
    }
    if (len >= 5 && memcmp(line, "data:", 5) == 0) {
        size_t skip = len > 5 && line[5] == ' ' ? 6 : 5;
        if ((r->data.len > 0 && tg_buf_adds(&r->data, "\n") != TG_OK) ||
            tg_buf_add(&r->data, line + skip, len - skip) != TG_OK) {
            r->bad = 1;
            snprintf(r->problem, sizeof(r->problem), "an event is larger than %u bytes",
                     EVENT_MAX);
        }
    }
}

static int sink_head(void *ctx, int status, const char *content_type, const char *retry_after)
{
    struct reader *r = ctx;
    (void)content_type;
    (void)retry_after;
    r->status = status;
    return TG_OK;
}

static int sink_data(void *ctx, const char *data, size_t len)
{
    struct reader *r = ctx;
    if (r->status != 200)
        return TG_OK; /* an error answer: its body is not events */
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (ch == '\n') {
            size_t n = r->line.len;
            if (n > 0 && r->line.data[n - 1] == '\r')
                n--;
            on_line(r, r->line.data != NULL ? r->line.data : "", n);
            tg_buf_clear(&r->line);
        } else if (tg_buf_add(&r->line, &ch, 1) != TG_OK) {
            r->bad = 1;
            snprintf(r->problem, sizeof(r->problem), "a line is larger than %u bytes", EVENT_MAX);
            return TG_ERR;
        }
    }
    return TG_OK;
}

/* Reads every run of the group; TG_OK when the whole stream was read, otherwise
 * r->problem says why. */
static int read_group(struct tg_upstream *up, const char *key, const char *group,
                      struct reader *r)
{
    char path[300];
    snprintf(path, sizeof(path), "/v1/tasks/groups/%s/runs", group);
    struct tg_up_sink sink = {r, sink_head, sink_data};
    struct tg_up_result res;
    int rc = tg_upstream_relay(up, path, key, NULL, "text/event-stream", NULL, READ_TIMEOUT_MS,
                               &sink, &res);
    if (rc == TG_OK && !r->bad)
        on_line(r, "", 0); /* a last event without its blank line */
    if (rc != TG_OK) {
        snprintf(r->problem, sizeof(r->problem), "the group's path or key is not usable");
        return TG_ERR;
    }
    if (r->bad)
        return TG_ERR;
    if (res.outcome != TG_OUTCOME_OK || res.http_status != 200) {
        snprintf(r->problem, sizeof(r->problem), "reading the group's runs failed: %s%s%d",
                 res.error != NULL ? res.error : "", res.error != NULL ? ", status " : "status ",
                 res.http_status);
        return TG_ERR;
    }
    return TG_OK;
}

/* ---- settling ------------------------------------------------------------------------------ */

static const struct tg_recon_call *recorded_call(const struct tg_recon_sub *sub, int seq)
{
    for (size_t i = 0; i < sub->ncalls; i++)
        if (sub->calls[i].seq == seq)
            return &sub->calls[i];
    return NULL;
}

/* Appends "a-b" ranges of the inputs without a run to b (bounded). */
static void missing_ranges(struct tg_buf *b, const unsigned char *have, size_t n)
{
    int listed = 0;
    for (size_t i = 0; i < n && listed < 20;) {
        if (have[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j + 1 < n && !have[j + 1])
            j++;
        if (i == j)
            tg_buf_printf(b, "%s%zu", listed ? ", " : "", i);
        else
            tg_buf_printf(b, "%s%zu-%zu", listed ? ", " : "", i, j);
        listed++;
        i = j + 1;
    }
}

static int settle(struct tg_store *st, struct tg_pool *pool, const struct tg_recon_sub *sub,
                  struct reader *rd, const char *actor, struct tg_recon_report *r)
{
    size_t n = (size_t)sub->num_inputs;
    unsigned char *have = tg_pool_calloc(pool, n + 1, 1);
    struct tg_recon_found *found = tg_pool_calloc(pool, rd->ncalls + 1, sizeof(*found));
    if (have == NULL || found == NULL)
        return TG_ENOMEM;
    for (size_t i = 0; i < sub->ncalls; i++) {
        const struct tg_recon_call *c = &sub->calls[i];
        for (long k = 0; c->add_runs && k < c->runs && (size_t)(c->first_input + k) < n; k++)
            have[c->first_input + k] = 1;
    }
    size_t nfound = 0;
    int odd = 0;
    for (size_t i = 0; i < rd->ncalls; i++) {
        const struct found_call *fc = &rd->calls[i];
        const struct tg_recon_call *rec = recorded_call(sub, fc->seq);
        if (rec != NULL && rec->runs > 0)
            continue; /* its runs are recorded already */
        if (rec != NULL && (!rec->add_runs || rec->first_input != fc->first)) {
            odd = 1; /* a tag that disagrees with the record: leave it to a person */
            continue;
        }
        size_t take = fc->n;
        if (take > (size_t)fc->count)
            take = (size_t)fc->count;
        if ((size_t)fc->first + take > n)
            take = (size_t)fc->first < n ? n - (size_t)fc->first : 0;
        if (take < fc->n)
            odd = 1; /* more runs than the call sent: the extra ones are not ours to map */
        struct tg_recon_found *f = &found[nfound++];
        f->seq = fc->seq;
        f->first_input = (int)fc->first;
        f->num_inputs = (int)fc->count;
        f->recorded = rec != NULL;
        f->nruns = take;
        f->run_ids = fc->ids;
        f->processors = fc->procs;
        for (size_t k = 0; k < take; k++)
            have[fc->first + k] = 1;
    }
    size_t covered = 0;
    for (size_t i = 0; i < n; i++)
        covered += have[i];

    struct tg_buf d;
    tg_buf_init(&d, 2048);
    struct tg_recon_write w = {
        .sub_id = sub->id, .actor = actor, .taskgroup_id = sub->taskgroup_id, .api = "/v1",
        .runs_found = rd->tagged, .nfound = nfound, .found = found,
    };
    if (covered == n) {
        w.state = TG_STATE_ACCEPTED;
        w.outcome = "accepted";
        tg_buf_printf(&d, "reconciled: every input of the %zu has its run upstream in group %s",
                      n, sub->taskgroup_id);
    } else if (covered == 0) {
        w.state = TG_STATE_FAILED;
        w.outcome = "failed";
        tg_buf_printf(&d, "reconciled: no run of this submission exists upstream in group %s",
                      sub->taskgroup_id);
    } else {
        w.state = TG_STATE_FAILED;
        w.outcome = "partial";
        tg_buf_printf(&d, "reconciled: partly created: %zu of %zu inputs have runs upstream "
                      "(recorded); not created: inputs ", covered, n);
        missing_ranges(&d, have, n);
    }
    if (odd)
        tg_buf_adds(&d, "; some tagged runs did not match the recorded calls and were not "
                        "recorded");
    w.detail = tg_pool_strdup(pool, tg_buf_str(&d));
    tg_buf_free(&d);
    int rc = tg_store_recon_write(st, &w);
    if (rc == TG_EINVAL) {
        r->outcome = "skipped";
        snprintf(r->message, sizeof(r->message), "already settled by someone else");
        return TG_OK;
    }
    r->outcome = w.outcome;
    r->runs_found = rd->tagged;
    snprintf(r->message, sizeof(r->message), "%s", w.detail != NULL ? w.detail : "");
    return rc;
}

static int log_error(struct tg_store *st, const struct tg_recon_sub *sub, const char *actor,
                     const char *problem, struct tg_recon_report *r)
{
    struct tg_recon_write w = {
        .sub_id = sub->id, .actor = actor, .taskgroup_id = sub->taskgroup_id,
        .state = TG_STATE_UNKNOWN, .outcome = "error", .detail = problem,
    };
    r->outcome = "error";
    snprintf(r->message, sizeof(r->message), "%s", problem);
    return tg_store_recon_write(st, &w);
}

int tg_reconcile_one(struct tg_store *st, struct tg_upstream *up, struct tg_pool *pool,
                     const char *sub_id, const char *actor, struct tg_recon_report *r)
{
    memset(r, 0, sizeof(*r));
    struct tg_recon_sub sub;
    int rc = tg_store_recon_load(st, pool, sub_id, &sub);
    if (rc == TG_ENOTFOUND) {
        r->outcome = "skipped";
        snprintf(r->message, sizeof(r->message), "no such submission");
        return TG_OK;
    }
    if (rc != TG_OK)
        return rc;
    if (sub.state != TG_STATE_UNKNOWN) {
        r->outcome = "skipped";
        snprintf(r->message, sizeof(r->message), "it is %s, not unknown",
                 tg_domain_state_name(sub.state));
        return TG_OK;
    }
    struct reader rd;
    memset(&rd, 0, sizeof(rd));
    rd.pool = pool;
    if (sub.taskgroup_id == NULL) {
        /* The group's creation never answered: no add-runs call went out (one is sent only
         * after the group is recorded), so no run exists. */
        return settle(st, pool, &sub, &rd, actor, r);
    }
    char key[TG_UPSTREAM_KEY_MAX];
    rc = tg_store_team_key(st, sub.team_id, key, sizeof(key));
    if (rc != TG_OK)
        return rc;
    rd.prefix = tg_pool_printf(pool, "%s.", sub.id);
    if (rd.prefix == NULL) {
        tg_memzero(key, sizeof(key));
        return TG_ENOMEM;
    }
    rd.prefix_len = strlen(rd.prefix);
    tg_buf_init(&rd.line, EVENT_MAX);
    tg_buf_init(&rd.data, EVENT_MAX);
    rc = read_group(up, key, sub.taskgroup_id, &rd);
    tg_memzero(key, sizeof(key));
    tg_buf_free(&rd.line);
    tg_buf_free(&rd.data);
    if (rc != TG_OK)
        return log_error(st, &sub, actor, rd.problem, r);
    return settle(st, pool, &sub, &rd, actor, r);
}

/* Set when the daemon stops: a pass under way ends after the submission it is on. */
static atomic_int stopping;

int tg_reconcile_all(struct tg_store *st, struct tg_upstream *up, const char *actor, int verbose,
                     int64_t before_ms, long *settled, long *left)
{
    long done = 0, open = 0;
    int rc = TG_OK;
    struct tg_pool *pool = tg_pool_create();
    if (pool == NULL)
        return TG_ENOMEM;
    const char **ids;
    size_t n;
    rc = tg_store_unknown_ids(st, pool, BATCH * 100, before_ms, &ids, &n);
    struct tg_pool *item = rc == TG_OK ? tg_pool_create() : NULL;
    if (rc == TG_OK && item == NULL)
        rc = TG_ENOMEM;
    for (size_t i = 0; rc == TG_OK && i < n && !atomic_load(&stopping); i++) {
        struct tg_recon_report r;
        rc = tg_reconcile_one(st, up, item, ids[i], actor, &r);
        if (rc != TG_OK)
            break;
        int ok = strcmp(r.outcome, "error") != 0 && strcmp(r.outcome, "skipped") != 0;
        done += ok;
        open += strcmp(r.outcome, "error") == 0;
        if (verbose)
            printf("%s %s runs_found=%ld %s\n", ids[i], r.outcome, r.runs_found, r.message);
        tg_log(ok ? TG_LOG_INFO : TG_LOG_WARN, "reconcile %s: %s (%ld runs found): %s", ids[i],
               r.outcome, r.runs_found, r.message);
        tg_pool_reset(item);
    }
    tg_pool_destroy(item);
    tg_pool_destroy(pool);
    if (settled != NULL)
        *settled = done;
    if (left != NULL)
        *left = open;
    return rc;
}

/* ---- the daemon's background thread --------------------------------------------------- */

/* Reconciles the unknown submissions once at start-up (reconcile_on_start); then, every
 * housekeeping_interval_s, those that have been unknown for reconcile_after_s and were not
 * tried in that time (a submission that just timed out may still be being created
 * upstream: reconciled at once it could be called failed too early), and removes expired
 * idempotency records: every SDK request leaves one, with its answer, for
 * retry_dedupe_window_s. */
static struct tg_bg bg = TG_BG_INIT;
static const struct tg_conf *bg_conf; /* the daemon's: it outlives the thread */

static long prune(struct tg_store *st)
{
    long pruned = 0;
    if (tg_store_idem_prune(st, tg_now_ms(), &pruned) != TG_OK)
        tg_log(TG_LOG_WARN, "pruning expired idempotency records failed: %s",
               tg_store_errmsg(st));
    return pruned;
}

/* Submissions owed an 'unknown' (tg_reconcile_owe_unknown), oldest first. In memory only:
 * if the daemon stops before the database takes them, they are still 'pending' in it, and
 * the next start makes every pending submission unknown before serving. */
#define OWED_MAX 4096
#define TROUBLE_RETRY_S 1 /* how often owed writes (or a probe) are tried while writes fail */

struct owed {
    char id[64];
    int http_status, upstream_status;
    char error[256];
    struct owed *next;
};

static struct {
    pthread_mutex_t lock;
    struct owed *head, **tail;
    long n;
} owed = {PTHREAD_MUTEX_INITIALIZER, NULL, &owed.head, 0};

int tg_reconcile_owe_unknown(const char *sub_id, int http_status, int upstream_status,
                             const char *error)
{
    if (sub_id == NULL || strlen(sub_id) >= sizeof(((struct owed *)0)->id))
        return TG_EINVAL;
    struct owed *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return TG_ENOMEM;
    snprintf(o->id, sizeof(o->id), "%s", sub_id);
    snprintf(o->error, sizeof(o->error), "%s", error != NULL ? error : "");
    o->http_status = http_status;
    o->upstream_status = upstream_status;
    pthread_mutex_lock(&owed.lock);
    int full = owed.n >= OWED_MAX;
    if (!full) {
        *owed.tail = o;
        owed.tail = &o->next;
        owed.n++;
    }
    pthread_mutex_unlock(&owed.lock);
    if (full) {
        free(o);
        tg_log(TG_LOG_ERROR, "submission %s stays pending until the daemon restarts: %d "
               "submissions already wait for the database", sub_id, OWED_MAX);
        return TG_ETOOBIG;
    }
    tg_bg_poke(&bg);
    return TG_OK;
}

long tg_reconcile_owed(void)
{
    pthread_mutex_lock(&owed.lock);
    long n = owed.n;
    pthread_mutex_unlock(&owed.lock);
    return n;
}

/* Marks owed submissions unknown, oldest first, until the database refuses one (the rest
 * wait for the next try). With none owed while writes fail, probes whether they work
 * again, so that /healthz recovers without traffic. */
static void settle_owed(struct tg_store *st)
{
    for (;;) {
        pthread_mutex_lock(&owed.lock);
        struct owed *o = owed.head;
        pthread_mutex_unlock(&owed.lock);
        if (o == NULL)
            break;
        /* Only this thread takes entries off, so o stays at the head meanwhile. */
        int rc = tg_store_submission_finish(st, o->id, TG_STATE_UNKNOWN, o->http_status,
                                            o->upstream_status, o->error);
        if (rc == TG_EDB || rc == TG_EBUSY || rc == TG_ENOMEM)
            return;
        if (rc == TG_OK) {
            tg_metrics_submission(TG_STATE_UNKNOWN);
            tg_log(TG_LOG_WARN, "submission %s is now 'unknown' (its outcome could not be "
                   "recorded earlier): it will be reconciled", o->id);
        }
        else
            tg_log(TG_LOG_WARN, "submission %s: not marked unknown: %s", o->id,
                   tg_store_errmsg(st));
        pthread_mutex_lock(&owed.lock);
        owed.head = o->next;
        if (owed.head == NULL)
            owed.tail = &owed.head;
        owed.n--;
        pthread_mutex_unlock(&owed.lock);
        free(o);
    }
    char why[8];
    if (tg_store_write_health(why, sizeof(why)) != TG_OK)
        tg_store_write_probe(st);
}

/* The name of the turn (tg_store_turn_begin) the housekeeping of every daemon on one store
 * takes: one of them at a time settles, reconciles and prunes. */
#define TURN "housekeeping"

static void housekeeping(struct tg_store *st, struct tg_upstream *up, const struct tg_conf *conf)
{
    int rc = tg_store_turn_begin(st, TURN);
    if (rc == TG_EBUSY)
        return; /* another daemon's turn */
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "housekeeping: %s", tg_store_errmsg(st));
        return;
    }
    /* A daemon on the same store may have died since: what it left pending is settled as
     * unknown once its lease has run out, then reconciled below. */
    long orphans = 0;
    if (tg_store_recover_pending(st, &orphans) != TG_OK)
        tg_log(TG_LOG_ERROR, "housekeeping: %s", tg_store_errmsg(st));
    else if (orphans > 0)
        tg_log(TG_LOG_WARN, "%ld submission(s) left pending by a daemon that is gone are "
               "now 'unknown'", orphans);
    long pruned = prune(st);
    if (pruned > 0)
        tg_log(TG_LOG_DEBUG, "%ld expired idempotency records removed", pruned);
    if (tg_store_summary_compact(st) != TG_OK)
        tg_log(TG_LOG_ERROR, "housekeeping: %s", tg_store_errmsg(st));
    if (conf->reconcile_after_s > 0) {
        long settled = 0, left = 0;
        rc = tg_reconcile_all(st, up, "daemon:periodic", 0,
                                  tg_now_ms() - conf->reconcile_after_s * 1000, &settled,
                                  &left);
        if (rc != TG_OK)
            tg_log(TG_LOG_ERROR, "periodic reconcile: %s (%s)", tg_rc_str(rc),
                   tg_store_errmsg(st));
        else if (settled > 0 || left > 0)
            tg_log(TG_LOG_INFO, "periodic reconcile: %ld settled, %ld still unknown",
                   settled, left);
    }
    tg_store_turn_end(st, TURN);
}

static void *bg_main(void *arg)
{
    const struct tg_conf *conf = bg_conf;
    (void)arg;
    char err[512];
    struct tg_store *st = NULL;
    struct tg_upstream *up = tg_upstream_new(conf);
    if (up == NULL ||
        tg_store_open(&st, conf->database, 0, (int)conf->db_busy_timeout_ms, err,
                      sizeof(err)) != TG_OK) {
        tg_log(TG_LOG_ERROR, "background pass: cannot start: %s",
               up == NULL ? "out of memory" : err);
        tg_upstream_free(up);
        return NULL;
    }
    long pruned = prune(st);
    if (conf->reconcile_on_start) {
        long settled = 0, left = 0;
        int rc = tg_reconcile_all(st, up, "daemon:start", 0, 0, &settled, &left);
        if (rc != TG_OK)
            tg_log(TG_LOG_ERROR, "reconcile pass: %s (%s)", tg_rc_str(rc), tg_store_errmsg(st));
        tg_log(TG_LOG_INFO, "reconcile pass: %ld settled, %ld still unknown, %ld expired "
               "idempotency records removed", settled, left, pruned);
    }
    /* Housekeeping every housekeeping_interval_s. Every TROUBLE_RETRY_S, the submissions
     * owed an 'unknown' are written, or while writes fail a probe sees whether they work
     * again (a failed write does not wake this thread: it looks). */
    int64_t next = tg_mono_us() + conf->housekeeping_interval_s * 1000000;
    while (!tg_bg_wait(&bg, TROUBLE_RETRY_S)) {
        settle_owed(st);
        if (tg_mono_us() >= next) {
            housekeeping(st, up, conf);
            next = tg_mono_us() + conf->housekeeping_interval_s * 1000000;
        }
    }
    settle_owed(st); /* a last try: what is left stays pending for the next start */
    pthread_mutex_lock(&owed.lock);
    if (owed.n > 0)
        tg_log(TG_LOG_WARN, "%ld submission(s) stay pending: the next start makes them "
               "unknown", owed.n);
    while (owed.head != NULL) {
        struct owed *o = owed.head;
        owed.head = o->next;
        free(o);
    }
    owed.tail = &owed.head;
    owed.n = 0;
    pthread_mutex_unlock(&owed.lock);
    tg_store_close(st);
    tg_upstream_free(up);
    return NULL;
}

int tg_reconcile_start(const struct tg_conf *conf)
{
    bg_conf = conf;
    atomic_store(&stopping, 0);
    return tg_bg_start(&bg, bg_main, NULL);
}

void tg_reconcile_stop(void)
{
    atomic_store(&stopping, 1);
    tg_bg_stop(&bg);
}

/* ---- taskgate reconcile ---------------------------------------------------------------------- */

int tg_reconcile_cli(const struct tg_conf *conf, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-') {
            fprintf(stderr, "usage: taskgate reconcile [SUBMISSION_ID...]\n");
            return 2;
        }
    }
    char err[512];
    struct tg_store *st = NULL;
    if (tg_upstream_global_init() != TG_OK) {
        fprintf(stderr, "taskgate: cannot initialise libcurl\n");
        return 1;
    }
    struct tg_upstream *up = tg_upstream_new(conf);
    struct tg_pool *pool = tg_pool_create();
    int rc = up != NULL && pool != NULL ? tg_store_open(&st, conf->database, 0,
                                                        (int)conf->db_busy_timeout_ms, err,
                                                        sizeof(err))
                                        : TG_ENOMEM;
    if (rc != TG_OK) {
        fprintf(stderr, "taskgate: %s\n", rc == TG_ENOMEM ? "out of memory" : err);
    } else {
        char actor[80];
        tg_admin_os_actor(actor, sizeof(actor));
        long settled = 0, left = 0;
        if (argc == 0) {
            rc = tg_reconcile_all(st, up, actor, 1, 0, &settled, &left);
        } else {
            for (int i = 0; i < argc && rc == TG_OK; i++) {
                struct tg_recon_report r;
                rc = tg_reconcile_one(st, up, pool, argv[i], actor, &r);
                if (rc == TG_OK) {
                    printf("%s %s runs_found=%ld %s\n", argv[i], r.outcome, r.runs_found,
                           r.message);
                    left += strcmp(r.outcome, "error") == 0;
                    settled += strcmp(r.outcome, "error") != 0 && strcmp(r.outcome, "skipped") != 0;
                }
                tg_pool_reset(pool);
            }
        }
        if (rc != TG_OK)
            fprintf(stderr, "taskgate: reconcile failed: %s (%s)\n", tg_rc_str(rc),
                    tg_store_errmsg(st));
        else
            fprintf(stderr, "taskgate: %ld settled, %ld could not be reconciled now\n", settled,
                    left);
        if (rc == TG_OK && left > 0)
            rc = TG_ERR;
    }
    tg_store_close(st);
    tg_pool_destroy(pool);
    tg_upstream_free(up);
    tg_upstream_global_cleanup();
    return rc == TG_OK ? 0 : 1;
}
