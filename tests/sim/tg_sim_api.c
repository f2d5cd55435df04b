/* tg_sim_api.c: the simulator's imitation of Parallel's Task Group API: accounts by API
 * key, routing, and the JSON answers of create-group, add-runs, get-group, a run and a
 * run's result as parallel-openapi.json describes them (body checks in tg_sim_check.c,
 * the store in tg_sim_store.c, the event streams in tg_sim_stream.c). */
#include "tg_sim_store.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define RESULT_TIMEOUT_MAX 3600L /* seconds a result request waits at most */
#define RESULT_POLL_MS 20L       /* how often a waiting result request looks again */

static char **api_keys;
static size_t api_nkeys;

void sim_api_init(char **keys, size_t nkeys, long run_ms, long stream_interval_ms)
{
    api_keys = keys;
    api_nkeys = nkeys;
    sim_run_ms = run_ms;
    sim_stream_interval_ms = stream_interval_ms;
    sim_store_init();
}

void sim_api_counts(long *runs_created, long *groups)
{
    sim_store_counts(runs_created, groups);
}

static struct json_object *parse_stored(const char *text)
{
    return text ? json_tokener_parse(text) : NULL;
}

/* The TaskGroupResponse of g; call under sim_lock. */
static struct json_object *group_response(const struct sim_group *g)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "taskgroup_id", json_object_new_string(g->id));
    json_object_object_add(o, "status", sim_store_status(g));
    json_object_object_add(o, "created_at", json_object_new_string(g->created_at));
    json_object_object_add(o, "metadata", parse_stored(g->metadata));
    return o;
}

/* Appends run r as {"run_id","processor","input","metadata"}. */
static int run_json(struct sim_buf *b, const struct sim_run *r)
{
    int rc = sim_buf_addf(b, "{\"run_id\":\"%s\",\"processor\":", r->id);

    if (rc == 0)
        rc = sim_buf_add_json_string(b, r->processor, strlen(r->processor));
    if (rc == 0)
        rc = sim_buf_adds(b, ",\"input\":");
    if (rc == 0)
        rc = sim_buf_adds(b, r->input);
    if (rc == 0)
        rc = sim_buf_adds(b, ",\"metadata\":");
    if (rc == 0)
        rc = sim_buf_adds(b, r->metadata ? r->metadata : "null");
    return rc == 0 ? sim_buf_adds(b, "}") : rc;
}

/* Makes resp a status answer whose body is b's text (taken over). */
static void answer_buf(struct sim_response *resp, int status, struct sim_buf *b)
{
    free(resp->body);
    resp->status = status;
    resp->body = b->p;
    resp->body_len = b->len;
    b->p = NULL;
}

void sim_api_dump_group(const char *id, struct sim_response *resp)
{
    struct sim_buf b = {0};
    const struct sim_group *g;
    size_t i;
    int rc;

    pthread_mutex_lock(&sim_lock);
    g = sim_store_group_find(id, strlen(id));
    if (g == NULL) {
        pthread_mutex_unlock(&sim_lock);
        sim_response_error(resp, 404, "TaskGroup not found");
        return;
    }
    rc = sim_buf_addf(&b, "{\"taskgroup_id\":\"%s\",\"created_at\":\"%s\",\"metadata\":",
                      g->id, g->created_at);
    if (rc == 0)
        rc = sim_buf_adds(&b, g->metadata ? g->metadata : "null");
    if (rc == 0)
        rc = sim_buf_adds(&b, ",\"runs\":[");
    for (i = 0; i < g->nruns && rc == 0; i++) {
        if (i > 0)
            rc = sim_buf_adds(&b, ",");
        if (rc == 0)
            rc = run_json(&b, &g->runs[i]);
    }
    pthread_mutex_unlock(&sim_lock);
    if (rc == 0)
        rc = sim_buf_adds(&b, "]}");
    if (rc != 0) {
        sim_buf_free(&b);
        sim_response_error(resp, 500, "Group too large to dump");
        return;
    }
    answer_buf(resp, 200, &b);
}

/* ---- routing ------------------------------------------------------------------------- */

/* Splits "<id>[/rest]" at p into the id and the rest ("" when there is none). */
static const char *path_id(const char *p, const char **id, size_t *len)
{
    const char *slash = strchr(p, '/');

    *id = p;
    *len = slash ? (size_t)(slash - p) : strlen(p);
    return p + *len;
}

/* Routes what follows "tasks/groups/" (p). */
static void route_group(const char *method, const char *p, struct sim_route *r)
{
    int get = strcmp(method, "GET") == 0;
    const char *rest = path_id(p, &r->id, &r->id_len), *run;

    if (r->id_len == 0)
        return;
    if (rest[0] == '\0' && get) {
        r->op = SIM_OP_GET_GROUP;
    } else if (strcmp(rest, "/runs") == 0) {
        r->op = strcmp(method, "POST") == 0 ? SIM_OP_ADD_RUNS : get ? SIM_OP_STREAM_RUNS
                                                                  : SIM_OP_OTHER;
    } else if (strcmp(rest, "/events") == 0 && get) {
        r->op = SIM_OP_STREAM_EVENTS;
    } else if (strncmp(rest, "/runs/", 6) == 0 && get) {
        run = path_id(rest + 6, &r->run_id, &r->run_id_len);
        if (r->run_id_len > 0 && run[0] == '\0')
            r->op = SIM_OP_GET_GROUP_RUN;
    }
}

void sim_api_route(const struct sim_request *req, struct sim_route *r)
{
    const char *p = req->path, *rest;
    int v1 = 0;

    memset(r, 0, sizeof *r);
    if (strncmp(p, "/v1/", 4) == 0) {
        p += 4;
        v1 = 1;
    } else if (strncmp(p, "/v1beta/", 8) == 0) {
        p += 8;
    } else {
        return;
    }
    if (strcmp(p, "tasks/groups") == 0) {
        r->op = strcmp(req->method, "POST") == 0 ? SIM_OP_CREATE_GROUP : SIM_OP_OTHER;
    } else if (strncmp(p, "tasks/groups/", 13) == 0) {
        route_group(req->method, p + 13, r);
    } else if (v1 && strncmp(p, "tasks/runs/", 11) == 0 && strcmp(req->method, "GET") == 0) {
        /* Parallel offers a run and its result under /v1 only. */
        rest = path_id(p + 11, &r->run_id, &r->run_id_len);
        if (r->run_id_len > 0 && rest[0] == '\0')
            r->op = SIM_OP_GET_RUN;
        else if (r->run_id_len > 0 && strcmp(rest, "/result") == 0)
            r->op = SIM_OP_GET_RESULT;
    }
}

enum sim_op sim_api_classify(const struct sim_request *req)
{
    struct sim_route r;

    sim_api_route(req, &r);
    return r.op;
}

int sim_api_is_stream(enum sim_op op)
{
    return op == SIM_OP_STREAM_RUNS || op == SIM_OP_STREAM_EVENTS;
}

/* ---- handlers ------------------------------------------------------------------------ */

/* The request body when it is one JSON object; otherwise answers 422 and returns NULL. */
static struct json_object *body_object(const struct sim_request *req, struct sim_response *resp)
{
    if (!req->json_valid && req->body_len == 0) {
        sim_response_detail(resp, "Field required", "missing", -1);
        return NULL;
    }
    if (!req->json_valid) {
        sim_response_detail(resp, "JSON decode error", "json_invalid", (long)req->json_error_at);
        return NULL;
    }
    if (req->json == NULL || !json_object_is_type(req->json, json_type_object)) {
        sim_response_detail(resp, "Input should be a valid dictionary or object to extract "
                                   "fields from", "model_attributes_type", -1);
        return NULL;
    }
    return req->json;
}

/* Answers 422 with errors and returns 1 when there are any; takes errors either way. */
static int refuse_invalid(struct json_object *errors, struct sim_response *resp)
{
    struct json_object *root;

    if (json_object_array_length(errors) == 0) {
        json_object_put(errors);
        return 0;
    }
    root = json_object_new_object();
    json_object_object_add(root, "detail", errors);
    sim_response_json(resp, 422, root);
    return 1;
}

/* The group the route names if account owns it; call under sim_lock. */
static struct sim_group *owned_group(const struct sim_route *r, const char *account)
{
    struct sim_group *g = sim_store_group_find(r->id, r->id_len);

    return g != NULL && strcmp(g->account, account) == 0 ? g : NULL;
}

/* obj[key] as canonical JSON text, or NULL when absent or null. */
static char *stored_text(struct json_object *obj, const char *key)
{
    struct json_object *val = NULL;

    if (!json_object_object_get_ex(obj, key, &val) || val == NULL)
        return NULL;
    return sim_xstrdup(json_object_to_json_string_ext(val, JSON_FLAGS));
}

static void create_group(const struct sim_request *req, const char *account,
                         struct sim_response *resp)
{
    struct json_object *body = body_object(req, resp), *answer;
    struct sim_group *g;

    if (body == NULL || refuse_invalid(sim_check_create_group(body), resp))
        return;
    pthread_mutex_lock(&sim_lock);
    g = sim_store_group_new(account, stored_text(body, "metadata"));
    answer = group_response(g);
    pthread_mutex_unlock(&sim_lock);
    sim_response_json(resp, 200, answer);
}

static void get_group(const struct sim_route *r, const char *account,
                      struct sim_response *resp)
{
    struct json_object *answer = NULL;
    struct sim_group *g;

    pthread_mutex_lock(&sim_lock);
    g = owned_group(r, account);
    if (g != NULL) {
        sim_store_advance(g);
        answer = group_response(g);
    }
    pthread_mutex_unlock(&sim_lock);
    if (answer == NULL)
        sim_response_error(resp, 404, "TaskGroup not found");
    else
        sim_response_json(resp, 200, answer);
}

/* The URL of in's webhook when it asks for task_run.status deliveries, or NULL. */
static char *webhook_url(struct json_object *in)
{
    struct json_object *hook = NULL, *url = NULL, *types = NULL;
    size_t i;

    if (!json_object_object_get_ex(in, "webhook", &hook) ||
        !json_object_object_get_ex(hook, "url", &url) ||
        !json_object_object_get_ex(hook, "event_types", &types) ||
        !json_object_is_type(types, json_type_array))
        return NULL;
    for (i = 0; i < json_object_array_length(types); i++) {
        const char *t = json_object_get_string(json_object_array_get_idx(types, i));

        if (t != NULL && strcmp(t, "task_run.status") == 0)
            return sim_xstrdup(json_object_get_string(url));
    }
    return NULL;
}

/* Makes the runs for inputs (already validated) in a new array. */
static struct sim_run *make_runs(struct json_object *inputs, size_t n,
                                 struct json_object *default_spec)
{
    struct sim_run *runs = sim_xmalloc(n * sizeof *runs);
    size_t i;

    memset(runs, 0, n * sizeof *runs);
    for (i = 0; i < n; i++) {
        struct json_object *in = json_object_array_get_idx(inputs, i), *p = NULL;
        struct json_object *spec = NULL, *input = NULL;

        json_object_object_get_ex(in, "processor", &p);
        json_object_object_get_ex(in, "input", &input);
        if (!json_object_object_get_ex(in, "task_spec", &spec) || spec == NULL)
            spec = default_spec;
        sim_random_id(runs[i].id, sizeof runs[i].id, "trun_");
        runs[i].processor = sim_xstrdup(json_object_get_string(p));
        runs[i].input = stored_text(in, "input");
        runs[i].metadata = stored_text(in, "metadata");
        runs[i].request = sim_store_make_request(in, default_spec);
        runs[i].output = sim_store_make_output(spec, input);
        runs[i].final = sim_store_outcome(in, &runs[i].error);
        runs[i].webhook_url = webhook_url(in);
    }
    return runs;
}

/* The add-runs answer after batch was added to g; call under sim_lock. */
static struct json_object *add_answer(const struct sim_group *g, size_t batch)
{
    struct json_object *answer = json_object_new_object();
    struct json_object *ids = json_object_new_array();
    char cursor[80];
    size_t i;

    for (i = g->batch_runs[batch]; i < g->nruns; i++)
        json_object_array_add(ids, json_object_new_string(g->runs[i].id));
    json_object_object_add(answer, "status", sim_store_status(g));
    json_object_object_add(answer, "run_ids", ids);
    /* The cursors stand just before this batch's runs and events, so that resuming from
     * them starts with these; "empty for the first runs in the group". */
    if (batch == 0) {
        json_object_object_add(answer, "run_cursor", NULL);
        json_object_object_add(answer, "event_cursor", NULL);
    } else {
        sim_store_cursor(cursor, sizeof cursor, g, 'r', batch, 0);
        json_object_object_add(answer, "run_cursor", json_object_new_string(cursor));
        sim_store_cursor(cursor, sizeof cursor, g, 'e', batch, 0);
        json_object_object_add(answer, "event_cursor", json_object_new_string(cursor));
    }
    return answer;
}

static void add_runs(const struct sim_request *req, const struct sim_route *r,
                     const char *account, struct sim_response *resp)
{
    struct json_object *body = body_object(req, resp), *inputs = NULL, *answer;
    struct json_object *default_spec = NULL;
    struct sim_group *g;
    struct sim_run *runs;
    const char *bad;
    char msg[160];
    size_t n, batch;

    if (body == NULL)
        return;
    pthread_mutex_lock(&sim_lock);
    g = owned_group(r, account);
    pthread_mutex_unlock(&sim_lock);
    if (g == NULL) {
        sim_response_error(resp, 404, "TaskGroup not found");
        return;
    }
    if (refuse_invalid(sim_check_add_runs(body), resp))
        return;
    json_object_object_get_ex(body, "inputs", &inputs);
    bad = sim_check_processors(inputs);
    if (bad != NULL) {
        snprintf(msg, sizeof msg, "Invalid processor: %s", bad);
        sim_response_error(resp, 403, msg);
        return;
    }
    json_object_object_get_ex(body, "default_task_spec", &default_spec);
    n = json_object_array_length(inputs);
    runs = make_runs(inputs, n, default_spec);
    pthread_mutex_lock(&sim_lock); /* groups are never freed, so g is still valid */
    batch = sim_store_add(g, runs, n);
    answer = add_answer(g, batch);
    pthread_mutex_unlock(&sim_lock);
    free(runs);
    sim_response_json(resp, 200, answer);
}

/* ---- runs ---------------------------------------------------------------------------- */

/* The run the route names if account owns it (in the route's group when it names one);
 * its index in *idx; call under sim_lock. */
static struct sim_group *owned_run(const struct sim_route *r, const char *account, size_t *idx)
{
    struct sim_group *g = sim_store_run_find(r->run_id, r->run_id_len, idx);

    if (g == NULL || strcmp(g->account, account) != 0)
        return NULL;
    if (r->id != NULL && (strlen(g->id) != r->id_len || memcmp(g->id, r->id, r->id_len) != 0))
        return NULL;
    return g;
}

static void get_run(const struct sim_route *r, const char *account, struct sim_response *resp)
{
    struct sim_buf b = {0};
    struct sim_group *g;
    size_t idx = 0;
    int rc = -1;

    pthread_mutex_lock(&sim_lock);
    if (r->op == SIM_OP_GET_GROUP_RUN && owned_group(r, account) == NULL) {
        pthread_mutex_unlock(&sim_lock);
        sim_response_error(resp, 404, "TaskGroup not found");
        return;
    }
    g = owned_run(r, account, &idx);
    if (g != NULL) {
        sim_store_advance(g);
        rc = sim_store_run_json(&b, g, idx);
    }
    pthread_mutex_unlock(&sim_lock);
    if (g == NULL || rc != 0) {
        sim_buf_free(&b);
        sim_response_error(resp, 404, "Run id not found");
        return;
    }
    answer_buf(resp, 200, &b);
}

/* The result "timeout" query parameter (integer seconds, default 600) in ms, or -1. */
static long long result_timeout_ms(const struct sim_request *req)
{
    char val[32], *end;
    long v = 600;
    int found = sim_query_get(req->query, "timeout", val, sizeof val);

    if (found < 0)
        return -1;
    if (found > 0) {
        errno = 0;
        v = strtol(val, &end, 10);
        if (val[0] == '\0' || *end != '\0' || errno != 0)
            return -1;
    }
    if (v < 0)
        v = 0;
    return (long long)(v > RESULT_TIMEOUT_MAX ? RESULT_TIMEOUT_MAX : v) * 1000;
}

/* GET /v1/tasks/runs/{id}/result: waits (without the lock) until the run ends or the
 * timeout passes. */
static void get_result(const struct sim_request *req, const struct sim_route *r,
                       const char *account, struct sim_response *resp)
{
    long long timeout = result_timeout_ms(req), deadline = sim_mono_ms() + timeout;
    struct sim_buf b = {0};
    struct sim_group *g;
    enum run_status st = RS_QUEUED;
    size_t idx = 0;
    int rc = -1;

    if (timeout < 0) {
        sim_response_error(resp, 422, "Request validation error");
        return;
    }
    for (;;) {
        long long left;

        pthread_mutex_lock(&sim_lock);
        g = owned_run(r, account, &idx);
        if (g != NULL) {
            sim_store_advance(g);
            st = g->runs[idx].status;
        }
        if (g != NULL && st == RS_COMPLETED) {
            rc = sim_buf_adds(&b, "{\"run\":");
            if (rc == 0)
                rc = sim_store_run_json(&b, g, idx);
            if (rc == 0)
                rc = sim_buf_addf(&b, ",\"output\":%s}", g->runs[idx].output);
        }
        pthread_mutex_unlock(&sim_lock);
        if (g == NULL || !sim_store_is_active(st))
            break;
        left = deadline - sim_mono_ms();
        if (left <= 0) {
            sim_response_error(resp, 408, "Request timed out; run still active");
            return;
        }
        sim_sleep_ms(left < RESULT_POLL_MS ? (long)left : RESULT_POLL_MS);
    }
    if (rc != 0) { /* unknown, someone else's, failed or cancelled */
        sim_buf_free(&b);
        sim_response_error(resp, 404, "Run failed or run id not found");
        return;
    }
    answer_buf(resp, 200, &b);
}

/* ---- entry points -------------------------------------------------------------------- */

static int key_valid(const char *key)
{
    size_t i;

    if (api_nkeys == 0)
        return 1;
    for (i = 0; i < api_nkeys; i++) {
        if (strcmp(api_keys[i], key) == 0)
            return 1;
    }
    return 0;
}

const char *sim_api_account(const struct sim_request *req, struct sim_response *resp)
{
    const char *key = sim_header(req, "x-api-key");

    if (key == NULL || key[0] == '\0') {
        sim_response_error(resp, 401, "Missing API key");
        return NULL;
    }
    if (!key_valid(key)) {
        sim_response_error(resp, 401, "Invalid API key");
        return NULL;
    }
    return key;
}

void sim_api_handle(const struct sim_request *req, struct sim_response *resp)
{
    const char *key = sim_api_account(req, resp);
    struct sim_route r;

    sim_api_route(req, &r);
    if (key == NULL)
        return;
    if (r.op == SIM_OP_CREATE_GROUP)
        create_group(req, key, resp);
    else if (r.op == SIM_OP_ADD_RUNS)
        add_runs(req, &r, key, resp);
    else if (r.op == SIM_OP_GET_GROUP)
        get_group(&r, key, resp);
    else if (r.op == SIM_OP_GET_GROUP_RUN || r.op == SIM_OP_GET_RUN)
        get_run(&r, key, resp);
    else if (r.op == SIM_OP_GET_RESULT)
        get_result(req, &r, key, resp);
    else
        sim_response_error(resp, 404, "Not Found");
}
