/* Merging request defaults (global ← preset ← submission) and building add-runs bodies;
 * see tg_merge.h for the rules. */
#include "tg_merge.h"

#include <string.h>

#include "tg_json.h"

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

int tg_submission_field_is_control(const char *key)
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

/* A schema as the client gave it: a bare string or a typed schema object stays as it is;
 * an untyped object is taken to be a JSON schema and wrapped. */
static json_object *schema_value(json_object *v)
{
    if (json_object_is_type(v, json_type_object) && !tg_json_has(v, "type") &&
        !tg_json_has(v, "json_schema")) {
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

json_object *tg_template_from_submission(json_object *sub)
{
    json_object *tmpl = json_object_new_object();
    if (tmpl == NULL || !json_object_is_type(sub, json_type_object))
        return tmpl;
    json_object_object_foreach(sub, key, val) {
        if (!tg_submission_field_is_control(key))
            map_field(tmpl, key, val);
    }
    return tmpl;
}

json_object *tg_template_from_preset(json_object *preset)
{
    json_object *tmpl = json_object_new_object();
    if (tmpl == NULL || !json_object_is_type(preset, json_type_object))
        return tmpl;
    json_object_object_foreach(preset, key, val) {
        if (strcmp(key, "enforced") == 0 || strcmp(key, "input") == 0)
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

void tg_template_finish(json_object *tmpl)
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

/* Appends ,"key":value for every template field but task_spec. */
static int add_fields(struct tg_buf *b, json_object *tmpl)
{
    int rc = TG_OK;
    json_object_object_foreach(tmpl, key, val) {
        if (strcmp(key, "task_spec") == 0 || strcmp(key, "input") == 0)
            continue;
        size_t len;
        const char *text = val != NULL ? tg_json_str(val, &len) : "null";
        if (val == NULL)
            len = 4;
        rc = tg_buf_adds(b, ",");
        if (rc == TG_OK)
            rc = tg_json_buf_string(b, key);
        if (rc == TG_OK)
            rc = tg_buf_adds(b, ":");
        if (rc == TG_OK)
            rc = tg_buf_add(b, text, len);
        if (rc != TG_OK)
            return rc;
    }
    return rc;
}

int tg_build_add_runs(struct tg_buf *b, json_object *tmpl, json_object *inputs, size_t first,
                      size_t count)
{
    /* The template's fields are serialised once and repeated for every input. */
    struct tg_buf fields;
    tg_buf_init(&fields, b->max);
    int rc = add_fields(&fields, tmpl);
    json_object *spec = tg_json_get(tmpl, "task_spec");

    if (rc == TG_OK)
        rc = tg_buf_adds(b, "{");
    if (rc == TG_OK && spec != NULL) {
        size_t len;
        const char *text = tg_json_str(spec, &len);
        rc = tg_buf_adds(b, "\"default_task_spec\":");
        if (rc == TG_OK)
            rc = tg_buf_add(b, text, len);
        if (rc == TG_OK)
            rc = tg_buf_adds(b, ",");
    }
    if (rc == TG_OK)
        rc = tg_buf_adds(b, "\"inputs\":[");
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
