/* Validation against the upstream's documented limits (see tg_validate.h). */
#include "tg_validate.h"

#include <stdio.h>
#include <string.h>

#include "tg_json.h"

#define META_KEY_MAX 16
#define META_VALUE_MAX 512

/* A new loc: a copy of at followed by the string parts (ending with NULL). */
static json_object *loc_at(json_object *at, const char *a, const char *b)
{
    json_object *loc = json_object_new_array();
    size_t n = at != NULL ? json_object_array_length(at) : 0;
    for (size_t i = 0; i < n; i++)
        json_object_array_add(loc, json_object_get(json_object_array_get_idx(at, i)));
    if (a != NULL)
        json_object_array_add(loc, json_object_new_string(a));
    if (b != NULL)
        json_object_array_add(loc, json_object_new_string(b));
    return loc;
}

/* Length in characters (code points) of valid UTF-8. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

static void check_metadata(json_object *meta, json_object *at, json_object *detail)
{
    if (meta == NULL)
        return;
    if (!json_object_is_type(meta, json_type_object)) {
        tg_json_problem(detail, loc_at(at, "metadata", NULL), "Input should be a valid dictionary",
                        "dict_type");
        return;
    }
    json_object_object_foreach(meta, key, val) {
        if (utf8_chars(key) > META_KEY_MAX)
            tg_json_problem(detail, loc_at(at, "metadata", key),
                            "metadata keys may have at most 16 characters", "string_too_long");
        json_type t = json_object_get_type(val);
        if (t == json_type_string) {
            if (utf8_chars(json_object_get_string(val)) > META_VALUE_MAX)
                tg_json_problem(detail, loc_at(at, "metadata", key),
                                "metadata values may have at most 512 characters",
                                "string_too_long");
        } else if (t != json_type_int && t != json_type_double && t != json_type_boolean) {
            tg_json_problem(detail, loc_at(at, "metadata", key),
                            "metadata values must be strings, numbers or booleans",
                            "value_error");
        }
    }
}

void tg_validate_template(json_object *tmpl, json_object *at, json_object *detail)
{
    json_object *proc = tg_json_get(tmpl, "processor");
    if (proc == NULL)
        tg_json_problem(detail, loc_at(at, "processor", NULL),
                        "Field required: no processor in the submission, the preset or the "
                        "gateway's defaults",
                        "missing");
    else if (!json_object_is_type(proc, json_type_string) ||
             json_object_get_string_len(proc) == 0)
        tg_json_problem(detail, loc_at(at, "processor", NULL), "Input should be a valid string",
                        "string_type");
    check_metadata(tg_json_get(tmpl, "metadata"), at, detail);
}

void tg_validate_preset(json_object *preset, json_object *detail)
{
    static const char *const refused[] = {"input", "inputs", "taskgroup_id", NULL};
    if (!json_object_is_type(preset, json_type_object)) {
        tg_json_problem(detail, NULL, "a preset is a JSON object", "dict_type");
        return;
    }
    for (const char *const *k = refused; *k != NULL; k++)
        if (tg_json_has(preset, *k))
            tg_json_problem(detail, tg_json_loc("body", *k, NULL),
                            "a preset holds defaults, not inputs or groups", "extra_forbidden");
    json_object *proc = tg_json_get(preset, "processor");
    if (tg_json_has(preset, "processor") &&
        (!json_object_is_type(proc, json_type_string) || json_object_get_string_len(proc) == 0))
        tg_json_problem(detail, tg_json_loc("body", "processor", NULL),
                        "Input should be a valid string", "string_type");
    static const char *const lists[] = {"enforced", "allowed_processors", NULL};
    for (const char *const *k = lists; *k != NULL; k++) {
        json_object *l = tg_json_get(preset, *k);
        int ok = !tg_json_has(preset, *k) || json_object_is_type(l, json_type_array);
        for (size_t i = 0; ok && l != NULL && i < json_object_array_length(l); i++) {
            json_object *e = json_object_array_get_idx(l, i);
            ok = json_object_is_type(e, json_type_string) && json_object_get_string_len(e) > 0;
        }
        if (!ok)
            tg_json_problem(detail, tg_json_loc("body", *k, NULL),
                            "must be a list of non-empty strings", "list_type");
    }
    json_object *at = tg_json_loc("body", NULL);
    check_metadata(tg_json_get(preset, "metadata"), at, detail);
    json_object_put(at);
}

void tg_validate_inputs(json_object *inputs, long max, json_object *detail)
{
    if (inputs == NULL) {
        tg_json_problem(detail, tg_json_loc("body", "inputs", NULL), "Field required", "missing");
        return;
    }
    if (!json_object_is_type(inputs, json_type_array)) {
        tg_json_problem(detail, tg_json_loc("body", "inputs", NULL),
                        "Input should be a valid list", "list_type");
        return;
    }
    size_t n = json_object_array_length(inputs);
    if (n == 0) {
        tg_json_problem(detail, tg_json_loc("body", "inputs", NULL),
                        "List should have at least 1 item", "too_short");
        return;
    }
    if (n > (size_t)max) {
        char msg[128];
        snprintf(msg, sizeof(msg), "a submission may have at most %ld inputs, not %zu", max, n);
        tg_json_problem(detail, tg_json_loc("body", "inputs", NULL), msg, "too_long");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *in = json_object_array_get_idx(inputs, i);
        if (json_object_is_type(in, json_type_string) || json_object_is_type(in, json_type_object))
            continue;
        json_object *loc = tg_json_loc("body", "inputs", NULL);
        json_object_array_add(loc, json_object_new_int64((int64_t)i));
        tg_json_problem(detail, loc, "each input must be a string or a JSON object",
                        "value_error");
    }
}

int tg_valid_id(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
        if (!ok || n >= 128)
            return 0;
    }
    return n > 0;
}
