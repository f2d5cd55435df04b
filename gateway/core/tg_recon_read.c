/* One read of a group's runs stream for reconciliation (see tg_recon_read.h): a server-sent
 * event stream of the group's runs in the order they were created, each event a
 * task_run.state whose run's metadata carries the gateway's tag, and whose id (the "id:"
 * field, else the event_id the upstream puts in every event) is where the stream stands
 * after it. */
#include "tg_recon_read.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_json.h"
#include "tg_run_tag.h"
#include "tg_sse.h"
#include "tg_upstream.h"

#define EVENT_MAX (4u * 1024 * 1024) /* one event's data; a run with its metadata is < 20 KB */

/* Why a read stopped before the stream's end although the upstream did not fail. */
enum cut { CUT_NONE, CUT_TIME, CUT_STOP };

struct reader {
    struct tg_pool *pool;
    struct tg_recon_member **by_id;  /* the group's submissions, sorted by id */
    size_t n;
    const atomic_int *stop;
    int status;
    struct tg_sse sse;               /* the stream's events */
    char last[TG_RECON_CURSOR_MAX];  /* the id of the last whole event read: a read from it
                                        goes on after that event */
    int has_last;                    /* 0: none yet, and the read began at the beginning */
    long events;                     /* whole events read */
    int64_t deadline_us;             /* the read is cut short at this tg_mono_us() */
    enum cut cut;
    int bad;                         /* an event could not be understood, or an error came */
    char problem[200];
};

static int member_cmp_id(const void *a, const void *b)
{
    const struct tg_recon_member *x = *(struct tg_recon_member *const *)a;
    const struct tg_recon_member *y = *(struct tg_recon_member *const *)b;
    return strcmp(x->sub.id, y->sub.id);
}

void tg_recon_sort_by_id(struct tg_recon_member **m, size_t n)
{
    if (n > 1)
        qsort(m, n, sizeof(*m), member_cmp_id);
}

/* The member whose id the run tag begins with, or NULL. */
static struct tg_recon_member *member_of(const struct reader *r, const char *tag)
{
    size_t len = tg_run_tag_sub_len(tag);
    size_t lo = 0, hi = r->n;
    while (len > 0 && lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *id = r->by_id[mid]->sub.id;
        int c = strncmp(id, tag, len);
        if (c == 0 && id[len] != '\0')
            c = 1; /* longer than the tag's id: after it, as strcmp orders */
        if (c == 0)
            return r->by_id[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static struct tg_recon_call_found *call_for(struct reader *r, struct tg_recon_member *m,
                                            int seq, long first, long count)
{
    for (size_t i = 0; i < m->ncalls; i++)
        if (m->calls[i].seq == seq)
            return &m->calls[i];
    if (m->ncalls == m->cap) {
        size_t ncap = m->cap == 0 ? 8 : m->cap * 2;
        struct tg_recon_call_found *c = tg_pool_calloc(r->pool, ncap, sizeof(*c));
        if (c == NULL)
            return NULL;
        if (m->ncalls > 0)
            memcpy(c, m->calls, m->ncalls * sizeof(*c));
        m->calls = c;
        m->cap = ncap;
    }
    struct tg_recon_call_found *c = &m->calls[m->ncalls];
    memset(c, 0, sizeof(*c));
    c->seq = seq;
    c->first = first;
    c->count = count;
    c->order = r->events;
    if (r->has_last) {
        c->cursor = tg_pool_strdup(r->pool, r->last);
        if (c->cursor == NULL)
            return NULL;
    }
    m->ncalls++;
    return c;
}

static int add_run(struct reader *r, struct tg_recon_call_found *c, const char *id,
                   const char *proc)
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

/* A task_run.state event: its run is noted when its tag names one of the group's members. */
static void on_run(struct reader *r, json_object *ev)
{
    json_object *run = tg_json_get(ev, "run");
    const char *tag = tg_json_get_str(tg_json_get(run, "metadata"), TG_RUN_TAG_KEY);
    const char *id = tg_json_get_str(run, "run_id");
    struct tg_recon_member *m = id != NULL ? member_of(r, tag) : NULL;
    int seq;
    long first, count;
    /* member_of matched the tag's id: "<sub_id>." is the tag's own beginning. */
    if (m == NULL || !tg_run_tag_parse(tag, tag, strlen(m->sub.id) + 1, &seq, &first, &count))
        return;
    struct tg_recon_call_found *c = call_for(r, m, seq, first, count);
    if (c == NULL || add_run(r, c, id, tg_json_get_str(run, "processor")) != TG_OK) {
        r->bad = 1;
        snprintf(r->problem, sizeof(r->problem), "out of memory");
    }
    m->tagged++;
}

/* The id of a whole event becomes the place a read would go on from. One too long to keep
 * is passed over: the place stays an earlier one, from which a read sees more, never less. */
static void passed(struct reader *r, const char *id)
{
    if (id == NULL || id[0] == '\0' || strlen(id) >= sizeof(r->last))
        return;
    memcpy(r->last, id, strlen(id) + 1);
    r->has_last = 1;
}

/* Whether the read must stop now: the daemon is stopping or its time is up. */
static int time_to_cut(struct reader *r)
{
    if (r->stop != NULL && atomic_load(r->stop))
        r->cut = CUT_STOP;
    else if (tg_mono_us() >= r->deadline_us)
        r->cut = CUT_TIME;
    return r->cut != CUT_NONE;
}

/* One event: runs of the group's members are noted; its id (the "id:" field, else the
 * event_id the upstream puts in every event) is where the stream stands after it. Between
 * events the read may be cut: what was read stands. */
static int on_event(void *ctx, const char *event, const char *data, size_t len, const char *id)
{
    struct reader *r = ctx;
    (void)event;
    char err[128];
    json_object *ev = tg_json_parse(data, len, 64, err, sizeof(err));
    const char *type = tg_json_get_str(ev, "type");
    if (ev == NULL || type == NULL) {
        r->bad = 1;
        snprintf(r->problem, sizeof(r->problem), "an event could not be read: %s",
                 ev == NULL ? err : "no type");
    } else if (strcmp(type, "error") == 0) {
        r->bad = 1;
        snprintf(r->problem, sizeof(r->problem), "the upstream sent an error event");
    } else {
        if (strcmp(type, "task_run.state") == 0)
            on_run(r, ev);
        r->events++;
        passed(r, id[0] != '\0' ? id : tg_json_get_str(ev, "event_id"));
    }
    json_object_put(ev);
    return r->bad || time_to_cut(r) ? TG_ERR : TG_OK;
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
    int rc = tg_sse_feed(&r->sse, data, len);
    if (rc != TG_OK && !r->bad && r->cut == CUT_NONE) {
        r->bad = 1;
        snprintf(r->problem, sizeof(r->problem), rc == TG_ETOOBIG
                 ? "an event is larger than %u bytes" : "out of memory", EVENT_MAX);
    }
    return rc == TG_OK ? TG_OK : TG_ERR; /* stops the transfer; what was read stands */
}

/* Percent-encodes v for a query string into out; TG_ETOOBIG when it does not fit. */
static int query_value(const char *v, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
                    *p == '~';
        if (o + (plain ? 1 : 3) >= outlen)
            return TG_ETOOBIG;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return TG_OK;
}

/* The read itself (see tg_recon_read); r->problem says why it failed. */
static enum tg_recon_end read_stream(struct tg_upstream *up, const char *key, const char *group,
                                     const char *from, long read_s, struct reader *r)
{
    char path[300 + 3 * TG_RECON_CURSOR_MAX], cursor[3 * TG_RECON_CURSOR_MAX];
    int n = -1;
    if (from == NULL)
        n = snprintf(path, sizeof(path), "/v1/tasks/groups/%s/runs", group);
    else if (strlen(from) < sizeof(r->last) &&
             query_value(from, cursor, sizeof(cursor)) == TG_OK)
        n = snprintf(path, sizeof(path), "/v1/tasks/groups/%s/runs?last_event_id=%s", group,
                     cursor);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        snprintf(r->problem, sizeof(r->problem), "the group's id or cursor is too long");
        return TG_RECON_FAILED;
    }
    if (from != NULL) {
        memcpy(r->last, from, strlen(from) + 1); /* fits: checked above */
        r->has_last = 1;
    }
    r->deadline_us = tg_mono_us() + read_s * 1000000;
    struct tg_up_sink sink = {r, sink_head, sink_data};
    struct tg_up_result res;
    int rc = tg_upstream_relay(up, path, key, NULL, "text/event-stream", NULL, read_s * 1000,
                               &sink, &res);
    if (rc != TG_OK) {
        snprintf(r->problem, sizeof(r->problem), "the group's path or key is not usable");
        return TG_RECON_FAILED;
    }
    if (r->cut != CUT_NONE)
        return TG_RECON_CUT;
    if (r->bad)
        return TG_RECON_FAILED;
    if (res.timed_out && r->status == 200) {
        r->cut = CUT_TIME; /* the stream went quiet until the time was up */
        return TG_RECON_CUT;
    }
    if (res.outcome != TG_OUTCOME_OK || res.http_status != 200) {
        snprintf(r->problem, sizeof(r->problem), "reading the group's runs failed: %s%s%d",
                 res.error != NULL ? res.error : "", res.error != NULL ? ", status " : "status ",
                 res.http_status);
        return TG_RECON_FAILED;
    }
    return TG_RECON_WHOLE; /* a last event without its blank line is not one */
}

/* Where the next read must start for the members not found whole (see tg_recon_outcome). */
static const char *resume_at(const struct reader *r)
{
    const struct tg_recon_call_found *first = NULL;
    for (size_t i = 0; i < r->n; i++) {
        const struct tg_recon_member *m = r->by_id[i];
        for (size_t k = 0; k < m->ncalls; k++) {
            const struct tg_recon_call_found *c = &m->calls[k];
            if (c->n < (size_t)c->count && (first == NULL || c->order < first->order))
                first = c;
        }
    }
    if (first != NULL)
        return first->cursor;
    return r->has_last ? tg_pool_strdup(r->pool, r->last) : NULL;
}

void tg_recon_read(struct tg_upstream *up, const char *key, const char *group,
                   const char *from, long read_s, const atomic_int *stop, struct tg_pool *pool,
                   struct tg_recon_member **m, size_t n, struct tg_recon_outcome *out)
{
    struct reader r;
    memset(&r, 0, sizeof(r));
    r.pool = pool;
    r.by_id = m;
    r.n = n;
    r.stop = stop;
    tg_sse_init(&r.sse, EVENT_MAX, on_event, &r);
    memset(out, 0, sizeof(*out));
    out->end = read_stream(up, key, group, from, read_s, &r);
    tg_sse_free(&r.sse);
    out->stopped = r.cut == CUT_STOP;
    out->status = r.status;
    out->events = r.events;
    out->last = r.has_last ? tg_pool_strdup(pool, r.last) : NULL;
    if (out->end == TG_RECON_CUT)
        out->resume = resume_at(&r);
    snprintf(out->problem, sizeof(out->problem), "%s", r.problem);
}
