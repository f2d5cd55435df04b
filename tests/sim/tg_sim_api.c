/* tg_sim_api.c: the simulator's imitation of Parallel's Task Group API: accounts by API
 * key, groups and their runs in memory, and the answers of create-group, add-runs and
 * get-group as parallel-openapi.json describes them (body checks in tg_sim_check.c). */
#include "tg_sim.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

struct run {
    char id[40];     /* trun_<32 hex> */
    char *processor;
    char *input;     /* canonical JSON text */
    char *metadata;  /* canonical JSON text, or NULL */
};

struct group {
    char id[40]; /* tgrp_<32 hex> */
    char *account;
    char created_at[32];
    char modified_at[32];
    char *metadata; /* canonical JSON text, or NULL */
    struct run *runs;
    size_t nruns, cap;
    long add_calls; /* successful add-runs calls so far */
    struct group *next; /* hash chain */
};

static char **api_keys;
static size_t api_nkeys;
static struct group **buckets;
static size_t nbuckets, ngroups;
static long runs_total;

void sim_api_init(char **keys, size_t nkeys)
{
    api_keys = keys;
    api_nkeys = nkeys;
    nbuckets = 1024;
    buckets = sim_xmalloc(nbuckets * sizeof *buckets);
    memset(buckets, 0, nbuckets * sizeof *buckets);
}

void sim_api_counts(long *runs_created, long *groups)
{
    *runs_created = runs_total;
    *groups = (long)ngroups;
}

/* ---- the group store (all under sim_lock) -------------------------------------------- */

static size_t hash_id(const char *id, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ULL;
    return (size_t)h;
}

static struct group *group_find(const char *id, size_t len)
{
    struct group *g = buckets[hash_id(id, len) % nbuckets];

    while (g != NULL && (strlen(g->id) != len || memcmp(g->id, id, len) != 0))
        g = g->next;
    return g;
}

static void group_insert(struct group *g)
{
    size_t i, b;

    if (ngroups >= nbuckets) {
        size_t n = nbuckets * 2;
        struct group **nb = sim_xmalloc(n * sizeof *nb);

        memset(nb, 0, n * sizeof *nb);
        for (i = 0; i < nbuckets; i++) {
            while (buckets[i] != NULL) {
                struct group *x = buckets[i];

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
    b = hash_id(g->id, strlen(g->id)) % nbuckets;
    g->next = buckets[b];
    buckets[b] = g;
    ngroups++;
}

/* Writes prefix followed by 32 random hex digits into out. */
static void random_id(char *out, size_t size, const char *prefix)
{
    unsigned char r[16];
    char hex[33];
    size_t i;

    sim_random(r, sizeof r);
    for (i = 0; i < sizeof r; i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    snprintf(out, size, "%s%s", prefix, hex);
}

static struct json_object *parse_stored(const char *text)
{
    return text ? json_tokener_parse(text) : NULL;
}

/* The TaskGroupStatus of g; call under sim_lock. */
static struct json_object *group_status(const struct group *g)
{
    struct json_object *st = json_object_new_object();
    struct json_object *counts = json_object_new_object();

    json_object_object_add(counts, "queued", json_object_new_int64((int64_t)g->nruns));
    json_object_object_add(st, "num_task_runs", json_object_new_int64((int64_t)g->nruns));
    json_object_object_add(st, "task_run_status_counts", counts);
    json_object_object_add(st, "is_active", json_object_new_boolean(g->nruns > 0));
    json_object_object_add(st, "status_message", NULL);
    json_object_object_add(st, "modified_at", json_object_new_string(g->modified_at));
    return st;
}

/* The TaskGroupResponse of g; call under sim_lock. */
static struct json_object *group_response(const struct group *g)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "taskgroup_id", json_object_new_string(g->id));
    json_object_object_add(o, "status", group_status(g));
    json_object_object_add(o, "created_at", json_object_new_string(g->created_at));
    json_object_object_add(o, "metadata", parse_stored(g->metadata));
    return o;
}

/* Appends run r as {"run_id","processor","input","metadata"}. */
static int run_json(struct sim_buf *b, const struct run *r)
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

void sim_api_dump_group(const char *id, struct sim_response *resp)
{
    struct sim_buf b = {0};
    const struct group *g;
    size_t i;
    int rc;

    pthread_mutex_lock(&sim_lock);
    g = group_find(id, strlen(id));
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
    resp->status = 200;
    resp->body = b.p;
    resp->body_len = b.len;
}

/* ---- routing ------------------------------------------------------------------------- */

struct route {
    enum sim_op op;
    const char *id; /* the group id in the path, not NUL-terminated */
    size_t id_len;
};

static void route(const struct sim_request *req, struct route *r)
{
    const char *p = req->path, *slash;

    memset(r, 0, sizeof *r);
    if (strncmp(p, "/v1/", 4) == 0)
        p += 4;
    else if (strncmp(p, "/v1beta/", 8) == 0)
        p += 8;
    else
        return;
    if (strncmp(p, "tasks/groups", 12) != 0)
        return;
    p += 12;
    if (*p == '\0') {
        r->op = strcmp(req->method, "POST") == 0 ? SIM_OP_CREATE_GROUP : SIM_OP_OTHER;
        return;
    }
    if (*p != '/' || p[1] == '\0' || p[1] == '/')
        return;
    r->id = p + 1;
    slash = strchr(r->id, '/');
    r->id_len = slash ? (size_t)(slash - r->id) : strlen(r->id);
    if (slash == NULL && strcmp(req->method, "GET") == 0)
        r->op = SIM_OP_GET_GROUP;
    else if (slash != NULL && strcmp(slash, "/runs") == 0 && strcmp(req->method, "POST") == 0)
        r->op = SIM_OP_ADD_RUNS;
}

enum sim_op sim_api_classify(const struct sim_request *req)
{
    struct route r;

    route(req, &r);
    return r.op;
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
static struct group *owned_group(const struct route *r, const char *account)
{
    struct group *g = group_find(r->id, r->id_len);

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
    struct group *g;

    if (body == NULL || refuse_invalid(sim_check_create_group(body), resp))
        return;
    g = sim_xmalloc(sizeof *g);
    memset(g, 0, sizeof *g);
    random_id(g->id, sizeof g->id, "tgrp_");
    g->account = sim_xstrdup(account);
    sim_now_rfc3339(g->created_at, sizeof g->created_at);
    memcpy(g->modified_at, g->created_at, sizeof g->modified_at);
    g->metadata = stored_text(body, "metadata");
    pthread_mutex_lock(&sim_lock);
    group_insert(g);
    answer = group_response(g);
    pthread_mutex_unlock(&sim_lock);
    sim_response_json(resp, 200, answer);
}

static void get_group(const struct route *r, const char *account, struct sim_response *resp)
{
    struct json_object *answer = NULL;
    const struct group *g;

    pthread_mutex_lock(&sim_lock);
    g = owned_group(r, account);
    if (g != NULL)
        answer = group_response(g);
    pthread_mutex_unlock(&sim_lock);
    if (answer == NULL)
        sim_response_error(resp, 404, "TaskGroup not found");
    else
        sim_response_json(resp, 200, answer);
}

/* Makes the runs for inputs (already validated) in a new array. */
static struct run *make_runs(struct json_object *inputs, size_t n)
{
    struct run *runs = sim_xmalloc(n * sizeof *runs);
    size_t i;

    for (i = 0; i < n; i++) {
        struct json_object *in = json_object_array_get_idx(inputs, i), *p = NULL;

        json_object_object_get_ex(in, "processor", &p);
        random_id(runs[i].id, sizeof runs[i].id, "trun_");
        runs[i].processor = sim_xstrdup(json_object_get_string(p));
        runs[i].input = stored_text(in, "input");
        runs[i].metadata = stored_text(in, "metadata");
    }
    return runs;
}

/* Appends runs to g and returns the add-runs answer; call under sim_lock. */
static struct json_object *group_add(struct group *g, const struct run *runs, size_t n)
{
    struct json_object *answer = json_object_new_object();
    struct json_object *ids = json_object_new_array();
    char cursor[80];
    size_t i;

    if (g->nruns + n > g->cap) {
        g->cap = g->cap * 2 > g->nruns + n ? g->cap * 2 : g->nruns + n;
        g->runs = sim_xrealloc(g->runs, g->cap * sizeof *g->runs);
    }
    memcpy(g->runs + g->nruns, runs, n * sizeof *runs);
    g->nruns += n;
    runs_total += (long)n;
    sim_now_rfc3339(g->modified_at, sizeof g->modified_at);
    for (i = 0; i < n; i++)
        json_object_array_add(ids, json_object_new_string(runs[i].id));
    json_object_object_add(answer, "status", group_status(g));
    json_object_object_add(answer, "run_ids", ids);
    if (g->add_calls == 0) {
        json_object_object_add(answer, "run_cursor", NULL);
        json_object_object_add(answer, "event_cursor", NULL);
    } else {
        snprintf(cursor, sizeof cursor, "rcur_%s_%ld", g->id + 5, g->add_calls);
        json_object_object_add(answer, "run_cursor", json_object_new_string(cursor));
        snprintf(cursor, sizeof cursor, "ecur_%s_%ld", g->id + 5, g->add_calls);
        json_object_object_add(answer, "event_cursor", json_object_new_string(cursor));
    }
    g->add_calls++;
    return answer;
}

static void add_runs(const struct sim_request *req, const struct route *r, const char *account,
                     struct sim_response *resp)
{
    struct json_object *body = body_object(req, resp), *inputs = NULL, *answer;
    struct group *g;
    struct run *runs;
    const char *bad;
    char msg[160];
    size_t n;

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
    n = json_object_array_length(inputs);
    runs = make_runs(inputs, n);
    pthread_mutex_lock(&sim_lock); /* groups are never freed, so g is still valid */
    answer = group_add(g, runs, n);
    pthread_mutex_unlock(&sim_lock);
    free(runs);
    sim_response_json(resp, 200, answer);
}

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

void sim_api_handle(const struct sim_request *req, struct sim_response *resp)
{
    const char *key = sim_header(req, "x-api-key");
    struct route r;

    route(req, &r);
    if (key == NULL || key[0] == '\0')
        sim_response_error(resp, 401, "Missing API key");
    else if (!key_valid(key))
        sim_response_error(resp, 401, "Invalid API key");
    else if (r.op == SIM_OP_CREATE_GROUP)
        create_group(req, key, resp);
    else if (r.op == SIM_OP_ADD_RUNS)
        add_runs(req, &r, key, resp);
    else if (r.op == SIM_OP_GET_GROUP)
        get_group(&r, key, resp);
    else
        sim_response_error(resp, 404, "Not Found");
}
