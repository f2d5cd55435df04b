/* tg_sim_store.c: the simulator's Task Group store: groups and runs in memory, found by id;
 * runs that go queued -> running -> completed (or failed, when they ask to) on a clock or
 * on demand, and each group's event log: task_run.state at each change of a run's status
 * (queued when added, running, and its end, which carries the run whole), and
 * task_group_status after each add and each step of the clock that changed a status.
 * Transitions happen lazily, when someone looks (sim_store_advance), at the times they
 * were due. A run that ends with a webhook asking for task_run.status has its delivery
 * queued (tg_sim_webhook.c). All of it runs under sim_lock (see tg_sim_store.h). */
#include "tg_sim_store.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define QUEUED_MANUAL_MS 100 /* how long a run that ends on demand stays queued */
#define TEXT_ECHO_MAX 200    /* bytes of the input a text output quotes */
#define DEFAULT_ERROR "Simulated failure"
#define ERROR_MAX 512        /* bytes of an error message a run asks for */

long sim_run_ms = 200;
long sim_stream_interval_ms = 0;

static const char *const status_names[] = {"queued", "running", "completed", "failed",
                                           "cancelled"};

/* A run id's place: the hash index from run ids to their group and index. */
struct run_ref {
    struct sim_group *g;
    size_t idx;
    struct run_ref *next;
};

static struct sim_group **buckets;
static size_t nbuckets, ngroups;
static struct run_ref **run_buckets;
static size_t run_nbuckets;
static long runs_total;

void sim_store_init(void)
{
    nbuckets = 1024;
    buckets = sim_xmalloc(nbuckets * sizeof *buckets);
    memset(buckets, 0, nbuckets * sizeof *buckets);
    run_nbuckets = 4096;
    run_buckets = sim_xmalloc(run_nbuckets * sizeof *run_buckets);
    memset(run_buckets, 0, run_nbuckets * sizeof *run_buckets);
}

void sim_store_counts(long *runs_created, long *groups)
{
    *runs_created = runs_total;
    *groups = (long)ngroups;
}

const char *sim_store_status_name(enum run_status s)
{
    return status_names[s];
}

int sim_store_is_active(enum run_status s)
{
    return s == RS_QUEUED || s == RS_RUNNING;
}

/* ---- finding groups and runs --------------------------------------------------------- */

static size_t hash_id(const char *id, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ULL;
    return (size_t)h;
}

struct sim_group *sim_store_group_find(const char *id, size_t len)
{
    struct sim_group *g = buckets[hash_id(id, len) % nbuckets];

    while (g != NULL && (strlen(g->id) != len || memcmp(g->id, id, len) != 0))
        g = g->next;
    return g;
}

static void group_rehash(void)
{
    size_t n = nbuckets * 2, i, b;
    struct sim_group **nb = sim_xmalloc(n * sizeof *nb);

    memset(nb, 0, n * sizeof *nb);
    for (i = 0; i < nbuckets; i++) {
        while (buckets[i] != NULL) {
            struct sim_group *x = buckets[i];

            buckets[i] = x->next;
            b = hash_id(x->id, strlen(x->id)) % n;
            x->next = nb[b];
            nb[b] = x;
        }
    }
    free(buckets);
    buckets = nb;
    nbuckets = n;
}

struct sim_group *sim_store_group_new(const char *account, char *metadata)
{
    struct sim_group *g = sim_xmalloc(sizeof *g);
    size_t b;

    memset(g, 0, sizeof *g);
    sim_random_id(g->id, sizeof g->id, "tgrp_");
    g->account = sim_xstrdup(account);
    g->metadata = metadata;
    g->next_due = -1;
    sim_rfc3339_ago(g->created_at, sizeof g->created_at, 0);
    memcpy(g->modified_at, g->created_at, sizeof g->modified_at);
    if (ngroups >= nbuckets)
        group_rehash();
    b = hash_id(g->id, strlen(g->id)) % nbuckets;
    g->next = buckets[b];
    buckets[b] = g;
    ngroups++;
    return g;
}

struct sim_group *sim_store_run_find(const char *id, size_t len, size_t *idx)
{
    struct run_ref *r = run_buckets[hash_id(id, len) % run_nbuckets];

    while (r != NULL && (strlen(r->g->runs[r->idx].id) != len ||
                         memcmp(r->g->runs[r->idx].id, id, len) != 0))
        r = r->next;
    if (r == NULL)
        return NULL;
    *idx = r->idx;
    return r->g;
}

static void run_rehash(void)
{
    size_t n = run_nbuckets * 2, i, b;
    struct run_ref **nb = sim_xmalloc(n * sizeof *nb);

    memset(nb, 0, n * sizeof *nb);
    for (i = 0; i < run_nbuckets; i++) {
        while (run_buckets[i] != NULL) {
            struct run_ref *x = run_buckets[i];
            const char *id = x->g->runs[x->idx].id;

            run_buckets[i] = x->next;
            b = hash_id(id, strlen(id)) % n;
            x->next = nb[b];
            nb[b] = x;
        }
    }
    free(run_buckets);
    run_buckets = nb;
    run_nbuckets = n;
}

static void run_index(struct sim_group *g, size_t idx)
{
    struct run_ref *r = sim_xmalloc(sizeof *r);
    const char *id = g->runs[idx].id;
    size_t b;

    if ((size_t)runs_total >= run_nbuckets)
        run_rehash();
    b = hash_id(id, strlen(id)) % run_nbuckets;
    r->g = g;
    r->idx = idx;
    r->next = run_buckets[b];
    run_buckets[b] = r;
}

/* ---- JSON ---------------------------------------------------------------------------- */

struct json_object *sim_store_status(const struct sim_group *g)
{
    struct json_object *st = json_object_new_object();
    struct json_object *counts = json_object_new_object();
    size_t i;

    for (i = 0; i < sizeof g->counts / sizeof g->counts[0]; i++) {
        if (g->counts[i] > 0)
            json_object_object_add(counts, status_names[i],
                                   json_object_new_int64((int64_t)g->counts[i]));
    }
    json_object_object_add(st, "num_task_runs", json_object_new_int64((int64_t)g->nruns));
    json_object_object_add(st, "task_run_status_counts", counts);
    json_object_object_add(st, "is_active", json_object_new_boolean(sim_store_active(g)));
    json_object_object_add(st, "status_message", NULL);
    json_object_object_add(st, "modified_at", json_object_new_string(g->modified_at));
    return st;
}

int sim_store_active(const struct sim_group *g)
{
    return g->counts[RS_QUEUED] + g->counts[RS_RUNNING] > 0;
}

int sim_store_run_json(struct sim_buf *b, const struct sim_group *g, size_t idx)
{
    const struct sim_run *r = &g->runs[idx];
    int rc = sim_buf_addf(b, "{\"run_id\":\"%s\",\"interaction_id\":\"%s\",\"status\":\"%s\","
                          "\"is_active\":%s,\"warnings\":null,\"error\":", r->id, r->id,
                          status_names[r->status],
                          sim_store_is_active(r->status) ? "true" : "false");

    if (rc == 0 && r->status == RS_FAILED) {
        rc = sim_buf_addf(b, "{\"ref_id\":\"%s\",\"message\":", r->id + 5);
        if (rc == 0)
            rc = sim_buf_add_json_string(b, r->error ? r->error : DEFAULT_ERROR,
                                         strlen(r->error ? r->error : DEFAULT_ERROR));
        if (rc == 0)
            rc = sim_buf_adds(b, ",\"detail\":null}");
    } else if (rc == 0)
        rc = sim_buf_adds(b, "null");
    if (rc == 0)
        rc = sim_buf_adds(b, ",\"processor\":");
    if (rc == 0)
        rc = sim_buf_add_json_string(b, r->processor, strlen(r->processor));
    if (rc == 0)
        rc = sim_buf_addf(b, ",\"metadata\":%s,\"taskgroup_id\":\"%s\",\"created_at\":\"%s\","
                          "\"modified_at\":\"%s\"}", r->metadata ? r->metadata : "null", g->id,
                          r->created_at, r->modified_at);
    return rc;
}

void sim_store_cursor(char *out, size_t size, const struct sim_group *g, char kind, size_t b,
                      size_t m)
{
    if (m == 0)
        snprintf(out, size, "%ccur_%s_%zu", kind, g->id + 5, b);
    else
        snprintf(out, size, "%ccur_%s_%zu_%zu", kind, g->id + 5, b, m);
}

void sim_store_run_cursor(char *out, size_t size, const struct sim_group *g, size_t idx)
{
    size_t b = g->runs[idx].batch;

    sim_store_cursor(out, size, g, 'r', b, idx + 1 - g->batch_runs[b]);
}

/* Reads decimal digits at *p into *v, moving *p past them; -1 when there are none. */
static int read_number(const char **p, size_t *v)
{
    const char *s = *p;

    *v = 0;
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (*v > SIZE_MAX / 10 - 10)
            return -1;
        *v = *v * 10 + (size_t)(*s - '0');
    }
    *p = s;
    return 0;
}

int sim_store_parse_cursor(const char *s, const struct sim_group *g, char kind, size_t *pos)
{
    size_t hex = strlen(g->id + 5), b = 0, m = 0;
    const char *p;

    if (s[0] != kind || strncmp(s + 1, "cur_", 4) != 0 || strncmp(s + 5, g->id + 5, hex) != 0 ||
        s[5 + hex] != '_')
        return -1;
    p = s + 6 + hex;
    if (read_number(&p, &b) != 0 || b >= g->nbatches)
        return -1;
    if (*p == '_') {
        p++;
        if (read_number(&p, &m) != 0 || m == 0)
            return -1;
    }
    if (*p != '\0')
        return -1;
    *pos = (kind == 'r' ? g->batch_runs[b] : g->batch_events[b]) + m;
    return 0;
}

/* ---- the event log and the lifecycle -------------------------------------------------- */

/* The id of the next event of g's log; there is one only after a first batch. */
static void event_id(char *out, size_t size, const struct sim_group *g)
{
    size_t b = g->nbatches - 1;

    assert(g->nbatches > 0);
    sim_store_cursor(out, size, g, 'e', b, g->nevents + 1 - g->batch_events[b]);
}

static void log_event(struct sim_group *g, struct sim_buf *b)
{
    if (g->nevents == g->events_cap) {
        g->events_cap = g->events_cap ? g->events_cap * 2 : 16;
        g->events = sim_xrealloc(g->events, g->events_cap * sizeof *g->events);
    }
    g->events[g->nevents++] = b->p;
    b->p = NULL;
}

void sim_store_log_status(struct sim_group *g)
{
    struct sim_buf b = {0};
    struct json_object *st = sim_store_status(g);
    char id[80];

    event_id(id, sizeof id, g);
    if (sim_buf_addf(&b, "{\"type\":\"task_group_status\",\"event_id\":\"%s\",\"status\":",
                     id) == 0 &&
        sim_buf_adds(&b, json_object_to_json_string_ext(st, JSON_FLAGS)) == 0 &&
        sim_buf_adds(&b, "}") == 0)
        log_event(g, &b);
    sim_buf_free(&b);
    json_object_put(st);
}

static void set_status(struct sim_group *g, struct sim_run *r, enum run_status s, long long ago)
{
    g->counts[r->status]--;
    g->counts[s]++;
    r->status = s;
    sim_rfc3339_ago(r->modified_at, sizeof r->modified_at, ago);
    if (strcmp(r->modified_at, g->modified_at) > 0)
        memcpy(g->modified_at, r->modified_at, sizeof g->modified_at);
}

/* Logs the task_run.state event of run idx as it is now. */
static void log_run(struct sim_group *g, size_t idx)
{
    struct sim_buf b = {0};
    char id[80];

    event_id(id, sizeof id, g);
    if (sim_buf_addf(&b, "{\"type\":\"task_run.state\",\"event_id\":\"%s\",\"input\":null,"
                     "\"run\":", id) == 0 &&
        sim_store_run_json(&b, g, idx) == 0 && sim_buf_adds(&b, ",\"output\":null}") == 0)
        log_event(g, &b);
    sim_buf_free(&b);
}

/* Queues run idx's task_run.status webhook, {"timestamp", "type", "data": the TaskRun}, when
 * the run asked for one and it completed or failed (what Parallel sends them for). */
static void queue_webhook(const struct sim_group *g, size_t idx)
{
    const struct sim_run *r = &g->runs[idx];
    struct sim_buf b = {0};
    char now[32];

    if (r->webhook_url == NULL || (r->status != RS_COMPLETED && r->status != RS_FAILED))
        return;
    sim_now_rfc3339(now, sizeof now);
    if (sim_buf_addf(&b, "{\"timestamp\":\"%s\",\"type\":\"task_run.status\",\"data\":",
                     now) == 0 &&
        sim_store_run_json(&b, g, idx) == 0 && sim_buf_adds(&b, "}") == 0) {
        sim_webhook_queue(r->webhook_url, r->id, b.p);
        b.p = NULL;
    }
    sim_buf_free(&b);
}

/* Ends run idx as s, ago ms in the past: its task_run.state event and its webhook. */
static void end_run(struct sim_group *g, size_t idx, enum run_status s, long long ago)
{
    set_status(g, &g->runs[idx], s, ago);
    log_run(g, idx);
    queue_webhook(g, idx);
}

void sim_store_advance(struct sim_group *g)
{
    long long now = sim_mono_ms(), next = -1;
    size_t i, changed = 0;

    if (g->next_due < 0 || now < g->next_due)
        return;
    for (i = g->first_active; i < g->nruns; i++) {
        struct sim_run *r = &g->runs[i];
        long long due;

        if (!sim_store_is_active(r->status))
            continue;
        if (r->status == RS_QUEUED && now >= r->start_at) {
            set_status(g, r, RS_RUNNING, now - r->start_at);
            log_run(g, i);
            changed++;
        }
        if (r->done_at >= 0 && now >= r->done_at) {
            end_run(g, i, r->final, now - r->done_at);
            changed++;
            continue;
        }
        due = r->status == RS_QUEUED ? r->start_at : r->done_at;
        if (due >= 0 && (next < 0 || due < next))
            next = due;
    }
    while (g->first_active < g->nruns && !sim_store_is_active(g->runs[g->first_active].status))
        g->first_active++;
    g->next_due = next;
    if (changed > 0)
        sim_store_log_status(g);
}

size_t sim_store_add(struct sim_group *g, struct sim_run *runs, size_t n)
{
    long long now = sim_mono_ms();
    size_t i, batch;

    sim_store_advance(g);
    if (g->nbatches == g->batches_cap) {
        g->batches_cap = g->batches_cap ? g->batches_cap * 2 : 8;
        g->batch_runs = sim_xrealloc(g->batch_runs, g->batches_cap * sizeof *g->batch_runs);
        g->batch_events = sim_xrealloc(g->batch_events,
                                       g->batches_cap * sizeof *g->batch_events);
    }
    batch = g->nbatches++;
    g->batch_runs[batch] = g->nruns;
    g->batch_events[batch] = g->nevents;
    if (g->nruns + n > g->cap) {
        g->cap = g->cap * 2 > g->nruns + n ? g->cap * 2 : g->nruns + n;
        g->runs = sim_xrealloc(g->runs, g->cap * sizeof *g->runs);
    }
    for (i = 0; i < n; i++) {
        struct sim_run *r = &g->runs[g->nruns];

        *r = runs[i];
        r->status = RS_QUEUED;
        if (r->final != RS_FAILED && r->final != RS_CANCELLED)
            r->final = RS_COMPLETED;
        r->batch = batch;
        r->start_at = now + (sim_run_ms >= 0 ? sim_run_ms / 2 : QUEUED_MANUAL_MS);
        r->done_at = sim_run_ms >= 0 ? now + sim_run_ms : -1;
        sim_rfc3339_ago(r->created_at, sizeof r->created_at, 0);
        memcpy(r->modified_at, r->created_at, sizeof r->modified_at);
        g->counts[RS_QUEUED]++;
        if (g->next_due < 0 || r->start_at < g->next_due)
            g->next_due = r->start_at;
        run_index(g, g->nruns++);
        runs_total++;
    }
    if (n > 0)
        memcpy(g->modified_at, g->runs[g->nruns - 1].created_at, sizeof g->modified_at);
    sim_store_log_status(g);
    for (i = g->batch_runs[batch]; i < g->nruns; i++)
        log_run(g, i);
    return batch;
}

/* Ends run idx now as status (-1: its own outcome) if it is still active; 1 if it was. */
static int end_now(struct sim_group *g, size_t idx, int status)
{
    if (!sim_store_is_active(g->runs[idx].status))
        return 0;
    end_run(g, idx, status < 0 ? g->runs[idx].final : (enum run_status)status, 0);
    return 1;
}

int sim_store_end_run(struct sim_group *g, size_t idx, int status)
{
    sim_store_advance(g);
    return end_now(g, idx, status);
}

long sim_store_end_all(int status)
{
    size_t b, i;
    long ended = 0;

    for (b = 0; b < nbuckets; b++) {
        struct sim_group *g;

        for (g = buckets[b]; g != NULL; g = g->next) {
            long before = ended;

            sim_store_advance(g);
            for (i = g->first_active; i < g->nruns; i++)
                ended += end_now(g, i, status);
            if (ended > before)
                sim_store_log_status(g);
        }
    }
    return ended;
}

/* ---- what runs answer ----------------------------------------------------------------- */

/* A copy of s at most ERROR_MAX bytes long, cut on a character boundary. */
static char *error_text(const char *s)
{
    size_t n = strlen(s);

    while (*s == ' ') {
        s++;
        n--;
    }
    if (n > ERROR_MAX) {
        n = ERROR_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    return n > 0 ? sim_xstrndup(s, n) : NULL;
}

enum run_status sim_store_outcome(struct json_object *in, char **error)
{
    static const char fail_prefix[] = "fail:";
    struct json_object *meta = NULL, *outcome = NULL, *msg = NULL, *input = NULL;
    const char *o = NULL;

    *error = NULL;
    if (json_object_object_get_ex(in, "metadata", &meta) &&
        json_object_is_type(meta, json_type_object)) {
        if (json_object_object_get_ex(meta, "sim_outcome", &outcome) &&
            json_object_is_type(outcome, json_type_string))
            o = json_object_get_string(outcome);
        if (json_object_object_get_ex(meta, "sim_error", &msg) &&
            json_object_is_type(msg, json_type_string))
            *error = error_text(json_object_get_string(msg));
    }
    if (o == NULL && json_object_object_get_ex(in, "input", &input) &&
        json_object_is_type(input, json_type_string) &&
        strncmp(json_object_get_string(input), fail_prefix, sizeof fail_prefix - 1) == 0) {
        o = "failed";
        if (*error == NULL)
            *error = error_text(json_object_get_string(input) + sizeof fail_prefix - 1);
    }
    if (o != NULL && strcmp(o, "failed") == 0)
        return RS_FAILED;
    if (o != NULL && strcmp(o, "cancelled") == 0)
        return RS_CANCELLED;
    free(*error);
    *error = NULL;
    return RS_COMPLETED;
}

/* A schema-valid value for a JSON schema node: the first enum value, or one by type. */
static struct json_object *sample_value(struct json_object *schema, const char *name)
{
    struct json_object *type = NULL, *en = NULL;
    const char *t = NULL;
    char text[96];

    if (json_object_is_type(schema, json_type_object) &&
        json_object_object_get_ex(schema, "enum", &en) &&
        json_object_is_type(en, json_type_array) && json_object_array_length(en) > 0)
        return json_object_get(json_object_array_get_idx(en, 0));
    if (json_object_is_type(schema, json_type_object))
        json_object_object_get_ex(schema, "type", &type);
    if (json_object_is_type(type, json_type_array) && json_object_array_length(type) > 0)
        type = json_object_array_get_idx(type, 0);
    if (json_object_is_type(type, json_type_string))
        t = json_object_get_string(type);
    if (t != NULL && strcmp(t, "integer") == 0)
        return json_object_new_int(1);
    if (t != NULL && strcmp(t, "number") == 0)
        return json_object_new_double(1.5);
    if (t != NULL && strcmp(t, "boolean") == 0)
        return json_object_new_boolean(1);
    if (t != NULL && strcmp(t, "array") == 0)
        return json_object_new_array();
    if (t != NULL && strcmp(t, "object") == 0)
        return json_object_new_object();
    if (t != NULL && strcmp(t, "null") == 0)
        return NULL;
    snprintf(text, sizeof text, "simulated %.64s", name);
    return json_object_new_string(text);
}

/* The content of a json output for json_schema: every property with a sample value. */
static struct json_object *json_content(struct json_object *json_schema)
{
    struct json_object *content = json_object_new_object(), *props = NULL;

    if (json_object_is_type(json_schema, json_type_object) &&
        json_object_object_get_ex(json_schema, "properties", &props) &&
        json_object_is_type(props, json_type_object)) {
        json_object_object_foreach(props, key, val)
            json_object_object_add(content, key, sample_value(val, key));
    }
    return content;
}

/* "Simulated answer to: <input>", quoting at most TEXT_ECHO_MAX bytes of it. */
static struct json_object *text_content(struct json_object *input)
{
    const char *text = json_object_is_type(input, json_type_string)
                           ? json_object_get_string(input)
                           : json_object_to_json_string_ext(input, JSON_FLAGS);
    size_t n = strlen(text);
    struct sim_buf b = {0};
    struct json_object *s;

    if (n > TEXT_ECHO_MAX) {
        n = TEXT_ECHO_MAX;
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--;
    }
    sim_buf_adds(&b, "Simulated answer to: ");
    sim_buf_add(&b, text, n);
    s = json_object_new_string(b.p);
    sim_buf_free(&b);
    return s;
}

char *sim_store_make_output(struct json_object *spec, struct json_object *input)
{
    struct json_object *out = json_object_new_object(), *schema = NULL, *type = NULL;
    struct json_object *js = NULL, *auto_schema, *props, *answer;
    const char *t = "auto";
    char *text;

    if (json_object_is_type(spec, json_type_object))
        json_object_object_get_ex(spec, "output_schema", &schema);
    if (json_object_is_type(schema, json_type_string)) {
        t = "text";
    } else if (json_object_is_type(schema, json_type_object)) {
        json_object_object_get_ex(schema, "json_schema", &js);
        if (json_object_object_get_ex(schema, "type", &type) &&
            json_object_is_type(type, json_type_string))
            t = json_object_get_string(type);
        else
            t = js != NULL ? "json" : "text";
    }
    json_object_object_add(out, "basis", json_object_new_array());
    if (strcmp(t, "text") == 0) {
        json_object_object_add(out, "type", json_object_new_string("text"));
        json_object_object_add(out, "content", text_content(input));
    } else if (strcmp(t, "json") == 0) {
        json_object_object_add(out, "type", json_object_new_string("json"));
        json_object_object_add(out, "content", json_content(js));
    } else { /* auto: a json output that says which schema it chose */
        auto_schema = json_object_new_object();
        props = json_object_new_object();
        answer = json_object_new_object();
        json_object_object_add(answer, "type", json_object_new_string("string"));
        json_object_object_add(props, "answer", answer);
        json_object_object_add(auto_schema, "type", json_object_new_string("object"));
        json_object_object_add(auto_schema, "properties", props);
        json_object_object_add(out, "type", json_object_new_string("json"));
        json_object_object_add(out, "content", json_content(auto_schema));
        json_object_object_add(out, "output_schema", auto_schema);
    }
    text = sim_xstrdup(json_object_to_json_string_ext(out, JSON_FLAGS));
    json_object_put(out);
    return text;
}

char *sim_store_make_request(struct json_object *in, struct json_object *default_spec)
{
    struct json_object *copy = NULL, *spec = NULL, *servers = NULL;
    char *text;
    size_t i;

    if (json_object_deep_copy(in, &copy, NULL) != 0 || copy == NULL)
        return sim_xstrdup("null");
    if ((!json_object_object_get_ex(copy, "task_spec", &spec) || spec == NULL) &&
        default_spec != NULL) {
        json_object_object_add(copy, "task_spec", json_object_get(default_spec));
    }
    if (json_object_object_get_ex(copy, "mcp_servers", &servers) &&
        json_object_is_type(servers, json_type_array)) {
        for (i = 0; i < json_object_array_length(servers); i++) {
            struct json_object *s = json_object_array_get_idx(servers, i);

            if (json_object_is_type(s, json_type_object))
                json_object_object_del(s, "headers");
        }
    }
    text = sim_xstrdup(json_object_to_json_string_ext(copy, JSON_FLAGS));
    json_object_put(copy);
    return text;
}
