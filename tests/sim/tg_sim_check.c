/* tg_sim_check.c: the simulator's checks of request bodies, answering as FastAPI and
 * pydantic would: every problem with its loc, msg and type. */
#include "tg_sim.h"

#include <stdio.h>
#include <string.h>

#define MAX_INPUTS 1000
#define METADATA_KEY_MAX 16
#define METADATA_VALUE_MAX 512
#define DOMAINS_MAX 200
#define LOC_DEPTH 8

static const char *const processors[] = {"lite", "base", "core", "core2x", "pro", "ultra",
                                         "ultra2x", "ultra4x", "ultra8x"};

/* Collects validation errors in FastAPI's shape; loc is the path being checked. */
struct vctx {
    struct json_object *errors;
    const char *loc_key[LOC_DEPTH]; /* NULL: the element is loc_idx */
    long loc_idx[LOC_DEPTH];
    size_t depth;
};

static void v_push(struct vctx *v, const char *key, long idx)
{
    if (v->depth < LOC_DEPTH) {
        v->loc_key[v->depth] = key;
        v->loc_idx[v->depth] = idx;
    }
    v->depth++;
}

static void v_pop(struct vctx *v)
{
    v->depth--;
}

static void v_err(struct vctx *v, const char *msg, const char *type)
{
    struct json_object *item = json_object_new_object();
    struct json_object *loc = json_object_new_array();
    size_t i;

    for (i = 0; i < v->depth && i < LOC_DEPTH; i++) {
        if (v->loc_key[i] != NULL)
            json_object_array_add(loc, json_object_new_string(v->loc_key[i]));
        else
            json_object_array_add(loc, json_object_new_int64(v->loc_idx[i]));
    }
    json_object_object_add(item, "loc", loc);
    json_object_object_add(item, "msg", json_object_new_string(msg));
    json_object_object_add(item, "type", json_object_new_string(type));
    json_object_array_add(v->errors, item);
}

/* Records an error at the current loc plus key. */
static void v_err_at(struct vctx *v, const char *key, const char *msg, const char *type)
{
    v_push(v, key, 0);
    v_err(v, msg, type);
    v_pop(v);
}

static int is_type(struct json_object *o, enum json_type t)
{
    return json_object_get_type(o) == t;
}

static int is_null(struct json_object *o)
{
    return o == NULL;
}

static void v_missing(struct vctx *v, const char *key)
{
    v_err_at(v, key, "Field required", "missing");
}

/* Checks that obj[key], when present, is a string (or null when nullable). */
static void v_opt_string(struct vctx *v, struct json_object *obj, const char *key, int nullable)
{
    struct json_object *val;

    if (!json_object_object_get_ex(obj, key, &val) || (nullable && is_null(val)))
        return;
    if (!is_type(val, json_type_string))
        v_err_at(v, key, "Input should be a valid string", "string_type");
}

/* Checks that obj[key] exists and is a string. */
static void v_req_string(struct vctx *v, struct json_object *obj, const char *key)
{
    struct json_object *val;

    if (!json_object_object_get_ex(obj, key, &val))
        v_missing(v, key);
    else
        v_opt_string(v, obj, key, 0);
}

/* Checks an optional list of strings at obj[key]; returns its length (0 when absent). */
static size_t v_string_list(struct vctx *v, struct json_object *obj, const char *key)
{
    struct json_object *val;
    size_t i, n;

    if (!json_object_object_get_ex(obj, key, &val) || is_null(val))
        return 0;
    if (!is_type(val, json_type_array)) {
        v_err_at(v, key, "Input should be a valid list", "list_type");
        return 0;
    }
    n = json_object_array_length(val);
    v_push(v, key, 0);
    for (i = 0; i < n; i++) {
        if (!is_type(json_object_array_get_idx(val, i), json_type_string)) {
            v_push(v, NULL, (long)i);
            v_err(v, "Input should be a valid string", "string_type");
            v_pop(v);
        }
    }
    v_pop(v);
    return n;
}

static void v_metadata(struct vctx *v, struct json_object *md)
{
    if (is_null(md))
        return;
    if (!is_type(md, json_type_object)) {
        v_err(v, "Input should be a valid dictionary", "dict_type");
        return;
    }
    json_object_object_foreach(md, key, val) {
        enum json_type t = json_object_get_type(val);

        v_push(v, key, 0);
        if (sim_utf8_length(key, strlen(key)) > METADATA_KEY_MAX)
            v_err(v, "Metadata keys should have at most 16 characters", "string_too_long");
        if (t == json_type_string &&
            sim_utf8_length(json_object_get_string(val), (size_t)json_object_get_string_len(val)) >
                METADATA_VALUE_MAX)
            v_err(v, "String should have at most 512 characters", "string_too_long");
        else if (t != json_type_string && t != json_type_int && t != json_type_double &&
                 t != json_type_boolean)
            v_err(v, "Metadata values should be a string, integer, number or boolean",
                  "value_error");
        v_pop(v);
    }
}

static void v_schema(struct vctx *v, struct json_object *spec, const char *key, int required)
{
    struct json_object *val;

    if (!json_object_object_get_ex(spec, key, &val)) {
        if (required)
            v_missing(v, key);
        return;
    }
    if (!required && is_null(val))
        return;
    if (!is_type(val, json_type_string) && !is_type(val, json_type_object))
        v_err_at(v, key, "Input should be a valid string or schema object", "model_type");
}

static void v_task_spec(struct vctx *v, struct json_object *spec)
{
    if (is_null(spec))
        return;
    if (!is_type(spec, json_type_object)) {
        v_err(v, "Input should be a valid dictionary or instance of TaskSpec", "model_type");
        return;
    }
    v_schema(v, spec, "output_schema", 1);
    v_schema(v, spec, "input_schema", 0);
}

static void v_source_policy(struct vctx *v, struct json_object *sp)
{
    size_t n;

    if (is_null(sp))
        return;
    if (!is_type(sp, json_type_object)) {
        v_err(v, "Input should be a valid dictionary or instance of SourcePolicy",
              "model_type");
        return;
    }
    n = v_string_list(v, sp, "include_domains") + v_string_list(v, sp, "exclude_domains");
    if (n > DOMAINS_MAX)
        v_err(v, "Value error, include_domains and exclude_domains together may list at most "
                 "200 domains", "value_error");
    v_opt_string(v, sp, "after_date", 1);
}

static void v_webhook(struct vctx *v, struct json_object *wh)
{
    struct json_object *types;
    size_t i, n;

    if (is_null(wh))
        return;
    if (!is_type(wh, json_type_object)) {
        v_err(v, "Input should be a valid dictionary or instance of Webhook", "model_type");
        return;
    }
    v_req_string(v, wh, "url");
    if (!json_object_object_get_ex(wh, "event_types", &types))
        return;
    if (!is_type(types, json_type_array)) {
        v_err_at(v, "event_types", "Input should be a valid list", "list_type");
        return;
    }
    n = json_object_array_length(types);
    v_push(v, "event_types", 0);
    for (i = 0; i < n; i++) {
        struct json_object *t = json_object_array_get_idx(types, i);

        if (!is_type(t, json_type_string) || strcmp(json_object_get_string(t), "task_run.status")) {
            v_push(v, NULL, (long)i);
            v_err(v, "Input should be 'task_run.status'", "literal_error");
            v_pop(v);
        }
    }
    v_pop(v);
}

static void v_mcp_server(struct vctx *v, struct json_object *s)
{
    struct json_object *val;

    if (!is_type(s, json_type_object)) {
        v_err(v, "Input should be a valid dictionary or instance of McpServer", "model_type");
        return;
    }
    v_req_string(v, s, "name");
    v_req_string(v, s, "url");
    if (json_object_object_get_ex(s, "type", &val) &&
        (!is_type(val, json_type_string) || strcmp(json_object_get_string(val), "url") != 0))
        v_err_at(v, "type", "Input should be 'url'", "literal_error");
    if (json_object_object_get_ex(s, "headers", &val) && !is_null(val) &&
        !is_type(val, json_type_object))
        v_err_at(v, "headers", "Input should be a valid dictionary", "dict_type");
    v_string_list(v, s, "allowed_tools");
}

static void v_mcp_servers(struct vctx *v, struct json_object *list)
{
    size_t i, n;

    if (is_null(list))
        return;
    if (!is_type(list, json_type_array)) {
        v_err(v, "Input should be a valid list", "list_type");
        return;
    }
    n = json_object_array_length(list);
    for (i = 0; i < n; i++) {
        v_push(v, NULL, (long)i);
        v_mcp_server(v, json_object_array_get_idx(list, i));
        v_pop(v);
    }
}

/* Runs check on obj[key] with key pushed on the loc, when obj has key. */
static void v_field(struct vctx *v, struct json_object *obj, const char *key,
                    void (*check)(struct vctx *, struct json_object *))
{
    struct json_object *val;

    if (!json_object_object_get_ex(obj, key, &val))
        return;
    v_push(v, key, 0);
    check(v, val);
    v_pop(v);
}

static void v_bool_or_null(struct vctx *v, struct json_object *val)
{
    if (!is_null(val) && !is_type(val, json_type_boolean))
        v_err(v, "Input should be a valid boolean", "bool_type");
}

static void v_input(struct vctx *v, struct json_object *in)
{
    struct json_object *val;

    if (!is_type(in, json_type_object)) {
        v_err(v, "Input should be a valid dictionary or instance of TaskRunInput", "model_type");
        return;
    }
    v_req_string(v, in, "processor");
    if (!json_object_object_get_ex(in, "input", &val))
        v_missing(v, "input");
    else if (!is_type(val, json_type_string) && !is_type(val, json_type_object))
        v_err_at(v, "input", "Input should be a valid string or a valid dictionary",
                 "string_type");
    v_field(v, in, "metadata", v_metadata);
    v_field(v, in, "source_policy", v_source_policy);
    v_field(v, in, "task_spec", v_task_spec);
    v_field(v, in, "webhook", v_webhook);
    v_field(v, in, "mcp_servers", v_mcp_servers);
    v_field(v, in, "enable_events", v_bool_or_null);
    v_opt_string(v, in, "previous_interaction_id", 1);
}

struct json_object *sim_check_create_group(struct json_object *body)
{
    struct vctx v = {0};

    v.errors = json_object_new_array();
    v_push(&v, "body", 0);
    v_field(&v, body, "metadata", v_metadata);
    return v.errors;
}

/* Checks an add-runs body (an object); returns the errors array (empty when fine). */
struct json_object *sim_check_add_runs(struct json_object *body)
{
    struct vctx v = {0};
    struct json_object *inputs;
    char msg[96];
    size_t i, n;

    v.errors = json_object_new_array();
    v_push(&v, "body", 0);
    v_field(&v, body, "default_task_spec", v_task_spec);
    if (!json_object_object_get_ex(body, "inputs", &inputs)) {
        v_missing(&v, "inputs");
        return v.errors;
    }
    if (!is_type(inputs, json_type_array)) {
        v_err_at(&v, "inputs", "Input should be a valid list", "list_type");
        return v.errors;
    }
    n = json_object_array_length(inputs);
    if (n == 0)
        v_err_at(&v, "inputs", "List should have at least 1 item after validation, not 0",
                 "too_short");
    if (n > MAX_INPUTS) {
        snprintf(msg, sizeof msg, "List should have at most %d items after validation, not %zu",
                 MAX_INPUTS, n);
        v_err_at(&v, "inputs", msg, "too_long");
    }
    v_push(&v, "inputs", 0);
    for (i = 0; i < n; i++) {
        v_push(&v, NULL, (long)i);
        v_input(&v, json_object_array_get_idx(inputs, i));
        v_pop(&v);
    }
    return v.errors;
}

/* The first processor in inputs that Parallel does not offer, or NULL. */
const char *sim_check_processors(struct json_object *inputs)
{
    size_t i, j, n = json_object_array_length(inputs);

    for (i = 0; i < n; i++) {
        struct json_object *p = NULL;
        const char *name;
        size_t len;

        json_object_object_get_ex(json_object_array_get_idx(inputs, i), "processor", &p);
        name = json_object_get_string(p);
        len = strlen(name);
        if (len > 5 && strcmp(name + len - 5, "-fast") == 0)
            len -= 5;
        for (j = 0; j < sizeof processors / sizeof processors[0]; j++) {
            if (strlen(processors[j]) == len && strncmp(processors[j], name, len) == 0)
                break;
        }
        if (j == sizeof processors / sizeof processors[0])
            return name;
    }
    return NULL;
}
