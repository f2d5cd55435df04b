/* Merging request defaults (global ← preset ← submission) and building add-runs bodies;
 * see tg_merge.h for the rules. */
#include "tg_merge.h"

#include <stdio.h>
#include <string.h>

#include "tg_conf.h"
#include "tg_json.h"
#include "tg_validate.h"

static json_object *copy(json_object *obj)
{
    json_object *dst = NULL;
    if (obj == NULL)
        return NULL;
    if (json_object_deep_copy(obj, &dst, NULL) != 0)
        return NULL;
    return dst;
}

/* Merges over into dst (which we own) in place. */
static int merge_into(json_object *dst, json_object *over)
{
    json_object_object_foreach(over, key, val) {
        if (val == NULL) {
            json_object_object_del(dst, key);
            continue;
        }
        json_object *cur = tg_json_get(dst, key);
        if (json_object_is_type(val, json_type_object) &&
            json_object_is_type(cur, json_type_object)) {
            if (merge_into(cur, val) != TG_OK)
                return TG_ENOMEM;
            continue;
        }
        json_object *v = copy(val);
        if (v == NULL || json_object_object_add(dst, key, v) != 0) {
            json_object_put(v);
            return TG_ENOMEM;
        }
    }
    return TG_OK;
}

/* Removes the nulls a merge left where there was nothing underneath to remove, in the
 * template's fields and their direct members only: deeper down (a JSON schema, an object
 * input) a null is the client's data. */
static void drop_nulls(json_object *obj, int depth)
{
    if (depth == 0 || !json_object_is_type(obj, json_type_object))
        return;
    const char *dead[64];
    size_t n = 0;
    do {
        n = 0;
        json_object_object_foreach(obj, key, val) {
            if (val == NULL && n < 64)
                dead[n++] = key;
            else
                drop_nulls(val, depth - 1);
        }
        for (size_t i = 0; i < n; i++)
            json_object_object_del(obj, dead[i]);
    } while (n == 64);
}

json_object *tg_merge(json_object *base, json_object *over)
{
    json_object *dst = json_object_is_type(base, json_type_object) ? copy(base)
                                                                   : json_object_new_object();
    if (dst == NULL)
        return NULL;
    if (json_object_is_type(over, json_type_object) && merge_into(dst, over) != TG_OK) {
        json_object_put(dst);
        return NULL;
    }
    drop_nulls(dst, 2);
    return dst;
}

static const char *const control_fields[] = {
    "inputs", "taskgroup_id", "preset", "token", "idempotency_key", NULL};

int tg_merge_field_is_control(const char *key)
{
    for (const char *const *f = control_fields; *f != NULL; f++)
        if (strcmp(*f, key) == 0)
            return 1;
    return 0;
}

/* Returns obj[key] as an object, creating it (empty) when absent. */
static json_object *child(json_object *obj, const char *key)
{
    json_object *c = tg_json_get(obj, key);
    if (json_object_is_type(c, json_type_object))
        return c;
    c = json_object_new_object();
    json_object_object_add(obj, key, c);
    return c;
}

/* A schema as the client gave it: a bare string or a typed schema object ("type" json,
 * text or auto) stays as it is; an object that reads as a JSON schema (no "type", or a
 * JSON Schema type such as "object") is wrapped as {"type":"json","json_schema":…}.
 * Anything else is left for validation to refuse. */
static json_object *schema_value(json_object *v)
{
    static const char *const schema_types[] = {"object", "array", "string", "number",
                                               "integer", "boolean", "null", NULL};
    const char *type = tg_json_get_str(v, "type");
    int raw = !tg_json_has(v, "type");
    for (const char *const *t = schema_types; type != NULL && *t != NULL; t++)
        raw |= strcmp(type, *t) == 0;
    if (json_object_is_type(v, json_type_object) && raw && !tg_json_has(v, "json_schema")) {
        json_object *wrapped = json_object_new_object();
        json_object_object_add(wrapped, "type", json_object_new_string("json"));
        json_object_object_add(wrapped, "json_schema", copy(v));
        return wrapped;
    }
    return copy(v);
}

static void map_field(json_object *tmpl, const char *key, json_object *val)
{
    if (strcmp(key, "output") == 0) {
        json_object_object_add(child(tmpl, "task_spec"), "output_schema", schema_value(val));
    } else if (strcmp(key, "input_schema") == 0) {
        json_object_object_add(child(tmpl, "task_spec"), "input_schema", schema_value(val));
    } else if (strcmp(key, "include_domains") == 0 || strcmp(key, "exclude_domains") == 0) {
        json_object_object_add(child(tmpl, "source_policy"), key, copy(val));
    } else if (strcmp(key, "webhook_url") == 0) {
        if (val == NULL) {
            json_object_object_add(tmpl, "webhook", NULL);
        } else {
            json_object *hook = child(tmpl, "webhook");
            json_object_object_add(hook, "url", copy(val));
            json_object *types = json_object_new_array();
            json_object_array_add(types, json_object_new_string("task_run.status"));
            json_object_object_add(hook, "event_types", types);
        }
    } else {
        json_object_object_add(tmpl, key, copy(val));
    }
}

json_object *tg_merge_template_from_submission(json_object *sub)
{
    json_object *tmpl = json_object_new_object();
    if (tmpl == NULL || !json_object_is_type(sub, json_type_object))
        return tmpl;
    json_object_object_foreach(sub, key, val) {
        if (!tg_merge_field_is_control(key))
            map_field(tmpl, key, val);
    }
    return tmpl;
}

json_object *tg_merge_template_from_preset(json_object *preset)
{
    json_object *tmpl = json_object_new_object();
    if (tmpl == NULL || !json_object_is_type(preset, json_type_object))
        return tmpl;
    json_object_object_foreach(preset, key, val) {
        if (strcmp(key, "enforced") == 0 || strcmp(key, "allowed_processors") == 0 ||
            strcmp(key, "input") == 0 || strcmp(key, "gateway_webhook") == 0)
            continue;
        if (strcmp(key, "default_task_spec") == 0) {
            if (!tg_json_has(preset, "task_spec"))
                json_object_object_add(tmpl, "task_spec", copy(val));
            continue;
        }
        json_object_object_add(tmpl, key, copy(val));
    }
    return tmpl;
}

int tg_merge_gateway_webhook(json_object *tmpl, json_object *preset, const char *public_url)
{
    json_object *ask = tg_json_get(preset, "gateway_webhook");
    if (tmpl == NULL || public_url == NULL || public_url[0] == '\0' ||
        !json_object_is_type(ask, json_type_boolean) || !json_object_get_boolean(ask))
        return TG_OK;
    char url[TG_CONF_STR + sizeof(TG_WEBHOOK_PATH)];
    snprintf(url, sizeof(url), "%s%s", public_url, TG_WEBHOOK_PATH);
    json_object *hook = json_object_new_object();
    json_object *types = json_object_new_array();
    if (hook == NULL || types == NULL) {
        json_object_put(hook);
        json_object_put(types);
        return TG_ENOMEM;
    }
    json_object_object_add(hook, "url", json_object_new_string(url));
    json_object_array_add(types, json_object_new_string("task_run.status"));
    json_object_object_add(hook, "event_types", types);
    json_object_object_add(tmpl, "webhook", hook);
    return TG_OK;
}

void tg_merge_template_finish(json_object *tmpl)
{
    static const char *const objects[] = {"task_spec", "source_policy", "metadata",
                                          "webhook", NULL};
    json_object *spec = tg_json_get(tmpl, "task_spec");
    if (json_object_is_type(spec, json_type_object) && json_object_object_length(spec) > 0 &&
        !tg_json_has(spec, "output_schema")) {
        json_object *aut = json_object_new_object();
        json_object_object_add(aut, "type", json_object_new_string("auto"));
        json_object_object_add(spec, "output_schema", aut);
    }
    for (const char *const *k = objects; *k != NULL; k++) {
        json_object *o = tg_json_get(tmpl, *k);
        if (json_object_is_type(o, json_type_object) && json_object_object_length(o) == 0)
            json_object_object_del(tmpl, *k);
    }
}

/* Appends "key":value (a NULL value is JSON null). */
static int add_member(struct tg_buf *b, const char *key, json_object *val)
{
    size_t len = 4;
    const char *text = val != NULL ? tg_json_str(val, &len) : "null";
    int rc = tg_json_buf_string(b, key);
    if (rc == TG_OK)
        rc = tg_buf_adds(b, ":");
    return rc == TG_OK ? tg_buf_add(b, text, len) : rc;
}

/* Appends "key":value for each member of obj (which must be an object), comma-separated;
 * *first says whether nothing was written yet. */
static int add_members(struct tg_buf *b, json_object *obj, int *first)
{
    int rc = TG_OK;
    json_object_object_foreach(obj, key, val) {
        if (rc == TG_OK && !*first)
            rc = tg_buf_adds(b, ",");
        if (rc == TG_OK)
            rc = add_member(b, key, val);
        *first = 0;
    }
    return rc;
}

/* Appends ,"metadata":{…} with the template's metadata (may be NULL) and the run tag after
 * it. */
static int add_tagged_metadata(struct tg_buf *b, json_object *meta, const char *tag)
{
    int first = 1;
    int rc = tg_buf_adds(b, ",\"metadata\":{");
    if (rc == TG_OK && meta != NULL)
        rc = add_members(b, meta, &first);
    if (rc == TG_OK && !first)
        rc = tg_buf_adds(b, ",");
    if (rc == TG_OK)
        rc = tg_json_buf_string(b, TG_RUN_TAG_KEY);
    if (rc == TG_OK)
        rc = tg_buf_adds(b, ":");
    if (rc == TG_OK)
        rc = tg_json_buf_string(b, tag);
    if (rc == TG_OK)
        rc = tg_buf_adds(b, "}");
    return rc;
}

/* Appends ,"key":value for every template field but task_spec; with a tag, the metadata
 * carries it. */
static int add_fields(struct tg_buf *b, json_object *tmpl, const char *tag)
{
    int rc = TG_OK;
    json_object *meta = tg_json_get(tmpl, "metadata");
    if (tag != NULL) {
        if (tg_json_has(meta, TG_RUN_TAG_KEY))
            return TG_EEXIST; /* the team's own key: refused by validation before this */
        rc = add_tagged_metadata(b, json_object_is_type(meta, json_type_object) ? meta : NULL,
                                 tag);
    }
    json_object_object_foreach(tmpl, key, val) {
        if (rc != TG_OK)
            return rc;
        if (strcmp(key, "task_spec") == 0 || strcmp(key, "input") == 0 ||
            (tag != NULL && strcmp(key, "metadata") == 0))
            continue;
        rc = tg_buf_adds(b, ",");
        if (rc == TG_OK)
            rc = add_member(b, key, val);
    }
    return rc;
}

int tg_merge_add_runs_open(struct tg_buf *b, json_object *spec)
{
    int rc = tg_buf_adds(b, "{");
    if (rc == TG_OK && spec != NULL) {
        rc = tg_json_buf_value(b, "\"default_task_spec\":", spec);
        if (rc == TG_OK)
            rc = tg_buf_adds(b, ",");
    }
    return rc == TG_OK ? tg_buf_adds(b, "\"inputs\":[") : rc;
}

int tg_merge_add_runs(struct tg_buf *b, json_object *tmpl, json_object *inputs, size_t first,
                      size_t count)
{
    return tg_merge_add_runs_tagged(b, tmpl, inputs, first, count, NULL);
}

int tg_merge_add_runs_tagged(struct tg_buf *b, json_object *tmpl, json_object *inputs,
                             size_t first, size_t count, const char *tag)
{
    /* The template's fields are serialised once and repeated for every input. */
    struct tg_buf fields;
    tg_buf_init(&fields, b->max);
    int rc = add_fields(&fields, tmpl, tag);
    json_object *spec = tg_json_get(tmpl, "task_spec");

    if (rc == TG_OK)
        rc = tg_merge_add_runs_open(b, spec);
    for (size_t i = 0; rc == TG_OK && i < count; i++) {
        size_t len;
        const char *text = tg_json_str(json_object_array_get_idx(inputs, first + i), &len);
        rc = tg_buf_adds(b, i == 0 ? "{\"input\":" : ",{\"input\":");
        if (rc == TG_OK)
            rc = tg_buf_add(b, text, len);
        if (rc == TG_OK)
            rc = tg_buf_add(b, fields.data != NULL ? fields.data : "", fields.len);
        if (rc == TG_OK)
            rc = tg_buf_adds(b, "}");
    }
    if (rc == TG_OK)
        rc = tg_buf_adds(b, "]}");
    tg_buf_free(&fields);
    return rc;
}

/* Appends name to the comma-separated list in b unless it is there already. */
static int add_beta(struct tg_buf *b, const char *name, size_t len)
{
    const char *list = tg_buf_str(b);
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n == len && memcmp(p, name, len) == 0)
            return TG_OK;
        p += n;
        if (*p == ',')
            p++;
    }
    if (b->len > 0 && tg_buf_adds(b, ",") != TG_OK)
        return TG_ETOOBIG;
    return tg_buf_add(b, name, len);
}

const char *tg_merge_beta_header(struct tg_pool *pool, json_object *run, const char *client)
{
    static const struct {
        const char *field;
        const char *beta;
    } features[] = {
        {"mcp_servers", "mcp-server-2025-07-17"},
        {"enable_events", "events-sse-2025-07-24"},
        {"webhook", "webhook-2025-08-12"},
    };
    struct tg_buf b;
    tg_buf_init(&b, 4096);
    int rc = TG_OK;
    for (size_t i = 0; i < sizeof(features) / sizeof(features[0]) && rc == TG_OK; i++) {
        json_object *v = tg_json_get(run, features[i].field);
        int used = v != NULL && (!json_object_is_type(v, json_type_boolean) ||
                                 json_object_get_boolean(v));
        if (used)
            rc = add_beta(&b, features[i].beta, strlen(features[i].beta));
    }
    for (const char *p = client; p != NULL && *p != '\0' && rc == TG_OK;) {
        size_t n = strcspn(p, ",");
        const char *name = p;
        size_t len = n;
        while (len > 0 && (*name == ' ' || *name == '\t')) {
            name++;
            len--;
        }
        while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t'))
            len--;
        if (len > 0)
            rc = add_beta(&b, name, len);
        p += n;
        if (*p == ',')
            p++;
    }
    const char *out = rc == TG_OK ? tg_pool_strdup(pool, tg_buf_str(&b)) : NULL;
    tg_buf_free(&b);
    return out;
}

/* Walks a dotted path. *touched is set when obj sets the path or nulls one of its
 * parents; the value found (NULL for null or absent) is returned. */
static json_object *walk(json_object *obj, const char *path, int *touched)
{
    char key[128];
    *touched = 0;
    for (const char *p = path; obj != NULL;) {
        size_t n = strcspn(p, ".");
        if (n == 0 || n >= sizeof(key))
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        if (!tg_json_has(obj, key))
            return NULL;
        json_object *v = tg_json_get(obj, key);
        p += n;
        if (*p == '\0' || v == NULL) {
            *touched = 1;
            return *p == '\0' ? v : NULL;
        }
        p++;
        obj = v;
    }
    return NULL;
}

void tg_merge_check_policy(json_object *preset, json_object *own, json_object *body,
                           json_object *merged, json_object *detail)
{
    json_object *enforced = tg_json_get(preset, "enforced");
    size_t n = json_object_is_type(enforced, json_type_array) ? json_object_array_length(enforced)
                                                              : 0;
    /* The preset's values are only needed to compare enforced fields: most presets have
     * none, and then no request pays for the copy. */
    json_object *ptmpl = n > 0 ? tg_merge_template_from_preset(preset) : NULL;
    for (size_t i = 0; i < n; i++) {
        const char *path = json_object_get_string(json_object_array_get_idx(enforced, i));
        int touched, unused;
        json_object *mine = walk(own, path, &touched);
        json_object *theirs = walk(ptmpl, path, &unused);
        if (touched && !json_object_equal(mine, theirs)) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s is enforced by the team's preset and cannot be "
                     "changed", path);
            json_object *at = tg_json_loc("body", NULL);
            struct tg_locator where = {tg_validate_loc_simplified, body, at};
            tg_json_problem(detail, tg_validate_loc_simplified(&where, path), msg, "enforced");
            json_object_put(at);
        }
    }
    json_object_put(ptmpl);

    json_object *allowed = tg_json_get(preset, "allowed_processors");
    const char *proc = tg_json_get_str(merged, "processor");
    if (!json_object_is_type(allowed, json_type_array) || proc == NULL)
        return;
    for (size_t i = 0; i < json_object_array_length(allowed); i++) {
        const char *ok = json_object_get_string(json_object_array_get_idx(allowed, i));
        if (ok != NULL && strcmp(ok, proc) == 0)
            return;
    }
    char msg[320];
    snprintf(msg, sizeof(msg), "processor '%.64s' is not allowed by the team's preset "
             "(allowed: %.160s)", proc, tg_json_str(allowed, NULL));
    tg_json_problem(detail, tg_json_loc("body", "processor", NULL), msg, "enforced");
}
