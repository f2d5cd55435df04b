/* tg_sim_ctl.c: the simulator's test-facing side: the log of API requests, the fault
 * queue, run and stream settings, and the /_sim control endpoints that read and steer
 * them. */
#include "tg_sim_store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define FAULT_COUNT_MAX 1000000000L
#define FAULT_DELAY_MAX 86400000L /* a day */

/* ---- request log --------------------------------------------------------------------- */

/* One logged request, stored as ready-made JSON fragments so that dumping the log needs
 * no json-c objects and the stored text is never shared between threads. */
struct log_entry {
    long seq;
    int status;
    char *head;     /* "method":…,"path":…,"query":…,"headers":{…} */
    char *body;     /* the body as canonical JSON text, or NULL */
    char *body_raw; /* a JSON string literal of the raw body when it is not JSON, or NULL */
};

static struct log_entry *log_entries;
static size_t log_len, log_cap;
static long log_next_seq = 1;
static long requests_total;

static char *json_literal(const char *s, size_t n)
{
    struct sim_buf b = {0};
    size_t clean_len;
    char *clean = sim_utf8_clean(s, n, &clean_len);

    sim_buf_add_json_string(&b, clean, clean_len);
    free(clean);
    return b.p;
}

static char *log_head(const struct sim_request *req)
{
    struct sim_buf b = {0};
    char *s;
    size_t i;

    sim_buf_adds(&b, "\"method\":");
    sim_buf_add_json_string(&b, req->method, strlen(req->method));
    sim_buf_adds(&b, ",\"path\":");
    s = json_literal(req->path, strlen(req->path));
    sim_buf_adds(&b, s);
    free(s);
    sim_buf_adds(&b, ",\"query\":");
    s = json_literal(req->query, strlen(req->query));
    sim_buf_adds(&b, s);
    free(s);
    sim_buf_adds(&b, ",\"headers\":{");
    for (i = 0; i < req->nheaders; i++) {
        if (i > 0)
            sim_buf_adds(&b, ",");
        sim_buf_add_json_string(&b, req->headers[i].name, strlen(req->headers[i].name));
        sim_buf_adds(&b, ":");
        s = json_literal(req->headers[i].value, strlen(req->headers[i].value));
        sim_buf_adds(&b, s);
        free(s);
    }
    sim_buf_addf(&b, "},\"connection\":%ld,\"on_connection\":%ld", req->conn_id,
                 req->conn_nth);
    return b.p;
}

long sim_log_request(const struct sim_request *req)
{
    struct log_entry e = {0};

    e.head = log_head(req);
    if (req->json_valid && req->json != NULL)
        e.body = sim_xstrdup(json_object_to_json_string_ext(req->json, JSON_FLAGS));
    else if (req->body_len > 0 && !req->json_valid)
        e.body_raw = json_literal(req->body, req->body_len);
    pthread_mutex_lock(&sim_lock);
    e.seq = log_next_seq++;
    requests_total++;
    if (log_len == log_cap) {
        log_cap = log_cap ? log_cap * 2 : 64;
        log_entries = sim_xrealloc(log_entries, log_cap * sizeof *log_entries);
    }
    log_entries[log_len++] = e;
    pthread_mutex_unlock(&sim_lock);
    return e.seq;
}

void sim_log_status(long seq, int status)
{
    size_t lo = 0, hi;

    pthread_mutex_lock(&sim_lock);
    hi = log_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (log_entries[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < log_len && log_entries[lo].seq == seq)
        log_entries[lo].status = status;
    pthread_mutex_unlock(&sim_lock);
}

/* Appends entry e of the log as a JSON object. */
static int log_entry_json(struct sim_buf *b, const struct log_entry *e)
{
    int rc = sim_buf_addf(b, "{\"seq\":%ld,", e->seq);

    if (rc == 0)
        rc = sim_buf_adds(b, e->head);
    if (rc == 0)
        rc = sim_buf_adds(b, ",\"body\":");
    if (rc == 0)
        rc = sim_buf_adds(b, e->body ? e->body : "null");
    if (rc == 0 && e->body_raw != NULL)
        rc = sim_buf_adds(b, ",\"body_raw\":");
    if (rc == 0 && e->body_raw != NULL)
        rc = sim_buf_adds(b, e->body_raw);
    if (rc == 0)
        rc = sim_buf_addf(b, ",\"status\":%d}", e->status);
    return rc;
}

static void log_dump(struct sim_response *resp)
{
    struct sim_buf b = {0};
    int rc = sim_buf_adds(&b, "[");
    size_t i;

    pthread_mutex_lock(&sim_lock);
    for (i = 0; i < log_len && rc == 0; i++) {
        if (i > 0)
            rc = sim_buf_adds(&b, ",");
        if (rc == 0)
            rc = log_entry_json(&b, &log_entries[i]);
    }
    pthread_mutex_unlock(&sim_lock);
    if (rc == 0)
        rc = sim_buf_adds(&b, "]");
    if (rc != 0) {
        sim_buf_free(&b);
        sim_response_error(resp, 500, "Request log too large to dump");
        return;
    }
    resp->status = 200;
    resp->body = b.p;
    resp->body_len = b.len;
}

static void log_clear(void)
{
    size_t i;

    pthread_mutex_lock(&sim_lock);
    for (i = 0; i < log_len; i++) {
        free(log_entries[i].head);
        free(log_entries[i].body);
        free(log_entries[i].body_raw);
    }
    log_len = 0;
    pthread_mutex_unlock(&sim_lock);
}

/* ---- faults -------------------------------------------------------------------------- */

/* A fault, as POST /_sim/faults takes it (one object, or {"faults": [...]}), queued in
 * order; the first queued fault that matches a request applies to it:
 *   kind     status | delay | malformed | reset | hang (required)
 *   match    the operation it applies to (match_names below; "any" by default)
 *   path     only requests whose path contains this
 *   reused   true: only a request that is not the first on its connection (keep-alive
 *            reuse), as a client with a connection cache sends it; false by default
 *   skip     let this many matching requests pass first (0)
 *   times    apply this many times, -1 for ever (1)
 *   apply    carry out the request before the fault acts (see default_apply): "reset"
 *            with apply true creates what the request asks for (the runs exist in the
 *            store and the streams) and then resets the connection (SO_LINGER 0 and
 *            close) without a byte of answer; with apply false nothing is created
 *   status, body, retry_after   the answer of a "status" fault
 *   delay_ms the pause of "delay", how long "hang" keeps the connection (600000)
 * Every API request is logged with "connection" (1, 2, ... in accept order) and
 * "on_connection" (1 for its first request), so a test can tell reuse from a fresh
 * connection, and a client's silent re-send of a request from the request itself. */
struct queued_fault {
    enum sim_op match; /* SIM_OP_OTHER stands for "any" */
    char *path;        /* applies only when the request path contains this, or NULL */
    int reused;        /* applies only to a request that is not its connection's first */
    long skip;
    long times; /* -1: for ever */
    struct sim_fault f;
};

static struct queued_fault *faults;
static size_t faults_len, faults_cap;

static const char *const kind_names[] = {"status", "delay", "malformed", "reset", "hang"};
#define NMATCH 9
static const char *const match_names[NMATCH] = {
    "any", "create_group", "add_runs", "get_group", "get_group_run", "stream_runs",
    "stream_events", "get_run", "get_result"};

const char *sim_fault_name(enum sim_fault_kind kind)
{
    return kind_names[kind];
}

void sim_fault_free(struct sim_fault *f)
{
    free(f->body);
    free(f->retry_after);
    f->body = NULL;
    f->retry_after = NULL;
}

static void fault_copy(struct sim_fault *dst, const struct sim_fault *src)
{
    *dst = *src;
    dst->body = src->body ? sim_xstrdup(src->body) : NULL;
    dst->retry_after = src->retry_after ? sim_xstrdup(src->retry_after) : NULL;
}

int sim_fault_take(const struct sim_request *req, struct sim_fault *f)
{
    enum sim_op op = sim_api_classify(req);
    int found = 0;
    size_t i;

    pthread_mutex_lock(&sim_lock);
    for (i = 0; i < faults_len && !found; i++) {
        struct queued_fault *q = &faults[i];

        if (q->match != SIM_OP_OTHER && q->match != op)
            continue;
        if (q->path != NULL && strstr(req->path, q->path) == NULL)
            continue;
        if (q->reused && req->conn_nth < 2)
            continue;
        if (q->skip > 0) {
            q->skip--;
            continue;
        }
        found = 1;
        fault_copy(f, &q->f);
        if (q->times > 0 && --q->times == 0) {
            sim_fault_free(&q->f);
            free(q->path);
            memmove(q, q + 1, (faults_len - i - 1) * sizeof *q);
            faults_len--;
        }
    }
    pthread_mutex_unlock(&sim_lock);
    return found;
}

static const enum sim_op match_ops[NMATCH] = {
    SIM_OP_OTHER, SIM_OP_CREATE_GROUP, SIM_OP_ADD_RUNS, SIM_OP_GET_GROUP,
    SIM_OP_GET_GROUP_RUN, SIM_OP_STREAM_RUNS, SIM_OP_STREAM_EVENTS, SIM_OP_GET_RUN,
    SIM_OP_GET_RESULT};

/* The index of val's string in names, or -1. */
static int string_index(struct json_object *val, const char *const *names, int n)
{
    int i;

    if (!json_object_is_type(val, json_type_string))
        return -1;
    for (i = 0; i < n; i++) {
        if (strcmp(names[i], json_object_get_string(val)) == 0)
            return i;
    }
    return -1;
}

/* Reads an integer within [min, max] into *out; -1 when val is anything else. */
static int get_int(struct json_object *val, long min, long max, long *out)
{
    int64_t v;

    if (!json_object_is_type(val, json_type_int))
        return -1;
    v = json_object_get_int64(val);
    if (v < min || v > max)
        return -1;
    *out = (long)v;
    return 0;
}

/* Replaces *dst by a copy of val, a string (or, when allow_int, an integer). */
static int set_string(struct json_object *val, char **dst, int allow_int)
{
    if (!json_object_is_type(val, json_type_string) &&
        !(allow_int && json_object_is_type(val, json_type_int)))
        return -1;
    free(*dst);
    *dst = sim_xstrdup(json_object_get_string(val));
    return 0;
}

/* Reads one field of a fault object into q; -1 for an unknown field or a bad value. */
static int fault_parse_field(struct queued_fault *q, const char *key, struct json_object *val)
{
    long v = 0;
    int idx;

    if (strcmp(key, "match") == 0) {
        idx = string_index(val, match_names, NMATCH);
        if (idx >= 0)
            q->match = match_ops[idx];
        return idx >= 0 ? 0 : -1;
    }
    if (strcmp(key, "kind") == 0) {
        idx = string_index(val, kind_names, 5);
        if (idx >= 0)
            q->f.kind = (enum sim_fault_kind)idx;
        return idx >= 0 ? 0 : -1;
    }
    if (strcmp(key, "skip") == 0)
        return get_int(val, 0, FAULT_COUNT_MAX, &q->skip);
    if (strcmp(key, "times") == 0)
        return get_int(val, -1, FAULT_COUNT_MAX, &q->times) == 0 && q->times != 0 ? 0 : -1;
    if (strcmp(key, "delay_ms") == 0)
        return get_int(val, 0, FAULT_DELAY_MAX, &q->f.delay_ms);
    if (strcmp(key, "status") == 0) {
        if (get_int(val, 200, 599, &v) != 0)
            return -1;
        q->f.status = (int)v;
        return 0;
    }
    if (strcmp(key, "apply") == 0) {
        if (!json_object_is_type(val, json_type_boolean))
            return -1;
        q->f.apply = json_object_get_boolean(val) ? 1 : 0;
        return 0;
    }
    if (strcmp(key, "reused") == 0) {
        if (!json_object_is_type(val, json_type_boolean))
            return -1;
        q->reused = json_object_get_boolean(val) ? 1 : 0;
        return 0;
    }
    if (strcmp(key, "body") == 0)
        return set_string(val, &q->f.body, 0);
    if (strcmp(key, "path") == 0)
        return set_string(val, &q->path, 0);
    if (strcmp(key, "retry_after") == 0)
        return set_string(val, &q->f.retry_after, 1);
    return -1;
}

/* Parses one fault object into q (zeroed first); on error writes err and returns -1,
 * leaving in q only what sim_fault_free releases. */
static int fault_parse(struct json_object *obj, struct queued_fault *q, char *err, size_t errsz)
{
    static const int default_apply[] = {0, 1, 1, 0, 1};
    struct json_object *unused;

    memset(q, 0, sizeof *q);
    q->times = 1;
    q->f.delay_ms = -1;
    if (!json_object_is_type(obj, json_type_object)) {
        snprintf(err, errsz, "a fault must be a JSON object");
        return -1;
    }
    if (!json_object_object_get_ex(obj, "kind", &unused)) {
        snprintf(err, errsz, "fault field 'kind' is required");
        return -1;
    }
    json_object_object_foreach(obj, key, val) {
        if (fault_parse_field(q, key, val) != 0) {
            snprintf(err, errsz, "fault field '%s': unknown field or bad value", key);
            return -1;
        }
    }
    if (q->f.kind == SIM_FAULT_STATUS && q->f.status == 0) {
        snprintf(err, errsz, "a fault of kind 'status' needs 'status' (200..599)");
        return -1;
    }
    if (!json_object_object_get_ex(obj, "apply", &unused))
        q->f.apply = default_apply[q->f.kind];
    if (q->f.delay_ms < 0)
        q->f.delay_ms = q->f.kind == SIM_FAULT_HANG ? 600000 : 0;
    return 0;
}

/* The faults a POST /_sim/faults body lists: a fault object or {"faults": [...]}. Returns
 * how many were parsed into *out (malloc'ed), or -1 with err filled. */
static long faults_parse_body(struct json_object *body, struct queued_fault **out, char *err,
                              size_t errsz)
{
    struct json_object *arr = NULL;
    struct queued_fault *parsed;
    size_t n, i, j;

    if (body == NULL || !json_object_is_type(body, json_type_object) ||
        (json_object_object_get_ex(body, "faults", &arr) &&
         !json_object_is_type(arr, json_type_array))) {
        snprintf(err, errsz, "the body must be a fault object or {\"faults\": [...]}");
        return -1;
    }
    n = arr ? json_object_array_length(arr) : 1;
    parsed = sim_xmalloc(n * sizeof *parsed);
    for (i = 0; i < n; i++) {
        struct json_object *one = arr ? json_object_array_get_idx(arr, i) : body;

        if (fault_parse(one, &parsed[i], err, errsz) != 0) {
            for (j = 0; j <= i; j++) {
                sim_fault_free(&parsed[j].f);
                free(parsed[j].path);
            }
            free(parsed);
            return -1;
        }
    }
    *out = parsed;
    return (long)n;
}

static void faults_add(const struct sim_request *req, struct sim_response *resp)
{
    struct queued_fault *parsed = NULL;
    struct json_object *answer;
    char err[160];
    long n = faults_parse_body(req->json, &parsed, err, sizeof err);
    size_t queued;

    if (n < 0) {
        sim_response_error(resp, 400, err);
        return;
    }
    pthread_mutex_lock(&sim_lock);
    if (faults_len + (size_t)n > faults_cap) {
        faults_cap = faults_len + (size_t)n + 16;
        faults = sim_xrealloc(faults, faults_cap * sizeof *faults);
    }
    memcpy(faults + faults_len, parsed, (size_t)n * sizeof *parsed);
    faults_len += (size_t)n;
    queued = faults_len;
    pthread_mutex_unlock(&sim_lock);
    free(parsed);
    answer = json_object_new_object();
    json_object_object_add(answer, "queued", json_object_new_int64((int64_t)queued));
    sim_response_json(resp, 200, answer);
}

static void faults_clear(void)
{
    size_t i;

    pthread_mutex_lock(&sim_lock);
    for (i = 0; i < faults_len; i++) {
        sim_fault_free(&faults[i].f);
        free(faults[i].path);
    }
    faults_len = 0;
    pthread_mutex_unlock(&sim_lock);
}

static struct json_object *fault_to_json(const struct queued_fault *q)
{
    struct json_object *o = json_object_new_object();
    size_t m = 0;

    while (match_ops[m] != q->match)
        m++;
    json_object_object_add(o, "match", json_object_new_string(match_names[m]));
    json_object_object_add(o, "kind", json_object_new_string(kind_names[q->f.kind]));
    if (q->path != NULL)
        json_object_object_add(o, "path", json_object_new_string(q->path));
    json_object_object_add(o, "reused", json_object_new_boolean(q->reused));
    json_object_object_add(o, "skip", json_object_new_int64(q->skip));
    json_object_object_add(o, "times", json_object_new_int64(q->times));
    if (q->f.kind == SIM_FAULT_STATUS)
        json_object_object_add(o, "status", json_object_new_int(q->f.status));
    if (q->f.body != NULL)
        json_object_object_add(o, "body", json_object_new_string(q->f.body));
    if (q->f.retry_after != NULL)
        json_object_object_add(o, "retry_after", json_object_new_string(q->f.retry_after));
    json_object_object_add(o, "delay_ms", json_object_new_int64(q->f.delay_ms));
    json_object_object_add(o, "apply", json_object_new_boolean(q->f.apply));
    return o;
}

static void faults_list(struct sim_response *resp)
{
    struct json_object *root = json_object_new_object();
    struct json_object *list = json_object_new_array();
    size_t i;

    pthread_mutex_lock(&sim_lock);
    for (i = 0; i < faults_len; i++)
        json_object_array_add(list, fault_to_json(&faults[i]));
    pthread_mutex_unlock(&sim_lock);
    json_object_object_add(root, "faults", list);
    sim_response_json(resp, 200, root);
}

/* ---- /_sim endpoints ----------------------------------------------------------------- */

static void stats(struct sim_response *resp)
{
    struct json_object *o = json_object_new_object();
    long runs = 0, groups = 0, requests, logged;

    pthread_mutex_lock(&sim_lock);
    sim_api_counts(&runs, &groups);
    requests = requests_total;
    logged = (long)log_len;
    pthread_mutex_unlock(&sim_lock);
    json_object_object_add(o, "requests", json_object_new_int64(requests));
    json_object_object_add(o, "requests_logged", json_object_new_int64(logged));
    json_object_object_add(o, "runs_created", json_object_new_int64(runs));
    json_object_object_add(o, "groups", json_object_new_int64(groups));
    sim_response_json(resp, 200, o);
}

/* ---- runs and streams ---------------------------------------------------------------- */

/* GET or POST /_sim/runs and /_sim/stream: {"run_ms", "interval_ms"}, the duration of runs
 * added from now on (-1: they end only through /_sim/runs/complete) and the pause between
 * two stream events; a POST sets what its body names. */
static void settings(const struct sim_request *req, int post, struct sim_response *resp)
{
    struct json_object *o;
    long run_ms = 0, interval_ms = 0;
    int set_run = 0, set_interval = 0;

    if (post && (req->json == NULL || !json_object_is_type(req->json, json_type_object))) {
        sim_response_error(resp, 400, "the body must be {\"run_ms\": N, \"interval_ms\": N}");
        return;
    }
    if (post) {
        json_object_object_foreach(req->json, key, val) {
            if (strcmp(key, "run_ms") == 0 && get_int(val, -1, FAULT_DELAY_MAX, &run_ms) == 0) {
                set_run = 1;
            } else if (strcmp(key, "interval_ms") == 0 &&
                       get_int(val, 0, FAULT_DELAY_MAX, &interval_ms) == 0) {
                set_interval = 1;
            } else {
                sim_response_error(resp, 400, "run_ms (-1 or more) and interval_ms (0 or "
                                              "more) are the settings");
                return;
            }
        }
    }
    pthread_mutex_lock(&sim_lock);
    if (set_run)
        sim_run_ms = run_ms;
    if (set_interval)
        sim_stream_interval_ms = interval_ms;
    run_ms = sim_run_ms;
    interval_ms = sim_stream_interval_ms;
    pthread_mutex_unlock(&sim_lock);
    o = json_object_new_object();
    json_object_object_add(o, "run_ms", json_object_new_int64(run_ms));
    json_object_object_add(o, "interval_ms", json_object_new_int64(interval_ms));
    sim_response_json(resp, 200, o);
}

/* Reads the optional "status" of a complete request into *st (-1 when absent: each run
 * ends as it asked to, sim_store_outcome); -1 for a bad one. */
static int end_status(struct json_object *body, int *st)
{
    struct json_object *val = NULL;
    const char *s;

    *st = -1;
    if (!json_object_object_get_ex(body, "status", &val))
        return 0;
    s = json_object_is_type(val, json_type_string) ? json_object_get_string(val) : "";
    if (strcmp(s, "completed") == 0)
        *st = RS_COMPLETED;
    else if (strcmp(s, "failed") == 0)
        *st = RS_FAILED;
    else if (strcmp(s, "cancelled") == 0)
        *st = RS_CANCELLED;
    else
        return -1;
    return 0;
}

/* Ends the listed runs; call under sim_lock. Returns how many ended, or -1 with *bad set
 * to the first id that is not a run (then nothing ended). */
static long end_listed(struct json_object *ids, struct sim_group *only, int st,
                       const char **bad)
{
    struct sim_group *g, *prev = NULL;
    size_t i, n = json_object_array_length(ids), idx;
    long ended = 0, ended_prev = 0;

    for (i = 0; i < n; i++) {
        const char *id = json_object_get_string(json_object_array_get_idx(ids, i));

        g = id ? sim_store_run_find(id, strlen(id), &idx) : NULL;
        if (g == NULL || (only != NULL && g != only)) {
            *bad = id ? id : "(not a string)";
            return -1;
        }
    }
    for (i = 0; i < n; i++) {
        const char *id = json_object_get_string(json_object_array_get_idx(ids, i));

        g = sim_store_run_find(id, strlen(id), &idx);
        if (prev != NULL && g != prev && ended > ended_prev) {
            sim_store_log_status(prev);
            ended_prev = ended;
        }
        prev = g;
        ended += sim_store_end_run(g, idx, st);
    }
    if (prev != NULL && ended > ended_prev)
        sim_store_log_status(prev);
    return ended;
}

/* POST /_sim/runs/complete {"taskgroup_id"?, "run_ids"?, "status"?}: ends the active runs
 * named (all of them when neither is given) now, as "completed", "failed" or "cancelled"
 * (by default as each run asked to: completed unless its input or metadata asked to fail,
 * sim_store_outcome); answers {"ended": N}. */
static void complete(const struct sim_request *req, struct sim_response *resp)
{
    struct json_object *body = req->json, *gid = NULL, *ids = NULL, *o;
    struct sim_group *g = NULL;
    int st;
    const char *bad = NULL;
    char msg[160];
    long ended = 0;
    size_t i;

    if (body == NULL && req->body_len == 0)
        body = json_object_new_object();
    else
        body = json_object_get(body);
    if (!json_object_is_type(body, json_type_object) || end_status(body, &st) != 0 ||
        (json_object_object_get_ex(body, "taskgroup_id", &gid) &&
         !json_object_is_type(gid, json_type_string)) ||
        (json_object_object_get_ex(body, "run_ids", &ids) &&
         !json_object_is_type(ids, json_type_array))) {
        json_object_put(body);
        sim_response_error(resp, 400, "the body must be {\"taskgroup_id\"?: ID, \"run_ids\"?: "
                                      "[ID...], \"status\"?: completed|failed|cancelled}");
        return;
    }
    pthread_mutex_lock(&sim_lock);
    if (gid != NULL) {
        g = sim_store_group_find(json_object_get_string(gid),
                                 strlen(json_object_get_string(gid)));
        bad = g == NULL ? json_object_get_string(gid) : NULL;
    }
    if (bad == NULL && ids != NULL) {
        ended = end_listed(ids, g, st, &bad);
    } else if (bad == NULL && g != NULL) {
        sim_store_advance(g);
        for (i = g->first_active; i < g->nruns; i++)
            ended += sim_store_end_run(g, i, st);
        if (ended > 0)
            sim_store_log_status(g);
    } else if (bad == NULL) {
        ended = sim_store_end_all(st);
    }
    pthread_mutex_unlock(&sim_lock);
    if (bad != NULL) {
        snprintf(msg, sizeof msg, "no such group or run: %.100s", bad);
        json_object_put(body);
        sim_response_error(resp, 404, msg);
        return;
    }
    json_object_put(body);
    o = json_object_new_object();
    json_object_object_add(o, "ended", json_object_new_int64(ended));
    sim_response_json(resp, 200, o);
}

static void answer_ok(struct sim_response *resp)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "ok", json_object_new_boolean(1));
    sim_response_json(resp, 200, o);
}

void sim_ctl_handle(const struct sim_request *req, struct sim_response *resp)
{
    const char *p = req->path;
    int get = strcmp(req->method, "GET") == 0;
    int del = strcmp(req->method, "DELETE") == 0;
    int post = strcmp(req->method, "POST") == 0;
    int requests = strcmp(p, "/_sim/requests") == 0;
    int faults_path = strcmp(p, "/_sim/faults") == 0;

    if (requests && get) {
        log_dump(resp);
    } else if (requests && del) {
        log_clear();
        answer_ok(resp);
    } else if (faults_path && post) {
        faults_add(req, resp);
    } else if (faults_path && get) {
        faults_list(resp);
    } else if (faults_path && del) {
        faults_clear();
        answer_ok(resp);
    } else if ((strcmp(p, "/_sim/runs") == 0 || strcmp(p, "/_sim/stream") == 0) &&
               (get || post)) {
        settings(req, post, resp);
    } else if (strcmp(p, "/_sim/runs/complete") == 0 && post) {
        complete(req, resp);
    } else if (strncmp(p, "/_sim/webhooks", 14) == 0) {
        sim_webhook_ctl(req, resp);
    } else if (strcmp(p, "/_sim/stats") == 0 && get) {
        stats(resp);
    } else if (strncmp(p, "/_sim/groups/", 13) == 0 && strchr(p + 13, '/') == NULL && get) {
        sim_api_dump_group(p + 13, resp);
    } else {
        sim_response_error(resp, 404, "Not Found");
    }
}
