/* Validation against the upstream's documented limits (see tg_validate.h). */
#include "tg_validate.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tg_json.h"

#define META_KEY_MAX 16
#define META_VALUE_MAX 512
#define DOMAINS_MAX 200
#define SPEC_INPUT_MAX 25000

/* ---- locators ------------------------------------------------------------------------ */

static json_object *prefix_copy(json_object *at)
{
    json_object *loc = json_object_new_array();
    size_t n = at != NULL ? json_object_array_length(at) : 0;
    for (size_t i = 0; i < n; i++)
        json_object_array_add(loc, json_object_get(json_object_array_get_idx(at, i)));
    return loc;
}

static void add_path(json_object *loc, const char *path)
{
    for (const char *p = path; *p != '\0';) {
        size_t n = strcspn(p, ".");
        json_object_array_add(loc, json_object_new_string_len(p, (int)n));
        p += n;
        if (*p == '.')
            p++;
    }
}

json_object *tg_validate_loc_plain(const struct tg_locator *self, const char *path)
{
    json_object *loc = prefix_copy(self->at);
    add_path(loc, path);
    return loc;
}

json_object *tg_validate_loc_simplified(const struct tg_locator *self, const char *path)
{
    static const char *const map[][2] = {
        {"source_policy.include_domains", "include_domains"},
        {"source_policy.exclude_domains", "exclude_domains"},
        {"task_spec.output_schema", "output"},
        {"task_spec.input_schema", "input_schema"},
        {"webhook.url", "webhook_url"},
        {"webhook", "webhook_url"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        size_t n = strlen(map[i][0]);
        int under = strncmp(path, map[i][0], n) == 0 && (path[n] == '\0' || path[n] == '.');
        if (under && tg_json_has(self->body, map[i][1])) {
            json_object *loc = prefix_copy(self->at);
            json_object_array_add(loc, json_object_new_string(map[i][1]));
            if (path[n] == '.')
                add_path(loc, path + n + 1);
            return loc;
        }
    }
    return tg_validate_loc_plain(self, path);
}

static void problem(const struct tg_locator *where, json_object *detail, const char *path,
                    const char *msg, const char *type)
{
    tg_json_problem(detail, where->loc(where, path), msg, type);
}

/* ---- helpers ------------------------------------------------------------------------- */

/* Length in characters (code points) of valid UTF-8. */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    return n;
}

static size_t json_chars(json_object *v)
{
    size_t len;
    const char *s;
    if (json_object_is_type(v, json_type_string)) {
        s = json_object_get_string(v);
        len = (size_t)json_object_get_string_len(v);
    } else {
        s = tg_json_str(v, &len);
    }
    return utf8_chars(s, len);
}

int tg_validate_domain(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 253)
        return 0;
    const char *p = s;
    if (*p == '.')
        p++;
    if (*p == '\0')
        return 0;
    for (; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.') {
            if (label == 0 || p[-1] == '-')
                return 0;
            label = 0;
            continue;
        }
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 (c == '-' && label > 0) || c >= 0x80;
        if (!ok || ++label > 63)
            return 0;
    }
    /* A whole domain needs a dot; a suffix (".gov") already has its own. */
    return label > 0 && (s[0] == '.' || strchr(s, '.') != NULL);
}

/* A character of an HTTP token (RFC 9110 section 5.6.2). */
static int tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

void tg_validate_beta(const char *value, json_object *detail)
{
    if (value == NULL)
        return;
    const char *why = NULL;
    if (strlen(value) > TG_BETA_MAX) {
        why = "a parallel-beta header is at most 512 bytes";
    } else {
        /* Each comma-separated item: blanks, a token, blanks (an empty item is skipped). */
        for (const char *p = value; *p != '\0' && why == NULL;) {
            size_t n = strcspn(p, ",");
            size_t i = 0;
            while (i < n && (p[i] == ' ' || p[i] == '\t'))
                i++;
            while (i < n && tchar((unsigned char)p[i]))
                i++;
            while (i < n && (p[i] == ' ' || p[i] == '\t'))
                i++;
            if (i < n)
                why = "a parallel-beta header is a comma-separated list of beta names "
                      "(letters, digits and !#$%&'*+-.^_`|~), without control characters";
            p += n;
            if (*p == ',')
                p++;
        }
    }
    if (why != NULL)
        tg_json_problem(detail, tg_json_loc("header", "parallel-beta", NULL), why,
                        "value_error");
}

int tg_validate_id(const char *s)
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

/* ---- the template's parts ---------------------------------------------------------------- */

static void check_metadata(json_object *meta, const struct tg_locator *where,
                           json_object *detail)
{
    if (!json_object_is_type(meta, json_type_object)) {
        problem(where, detail, "metadata", "Input should be a valid dictionary", "dict_type");
        return;
    }
    json_object_object_foreach(meta, key, val) {
        const char *msg = NULL, *type = "string_too_long";
        json_type t = json_object_get_type(val);
        if (utf8_chars(key, strlen(key)) > META_KEY_MAX)
            msg = "metadata keys may have at most 16 characters";
        else if (t == json_type_string && json_chars(val) > META_VALUE_MAX)
            msg = "metadata values may have at most 512 characters";
        else if (t != json_type_string && t != json_type_int && t != json_type_double &&
                 t != json_type_boolean) {
            msg = "metadata values must be strings, numbers or booleans";
            type = "value_error";
        }
        if (msg == NULL)
            continue;
        /* The key is one element of the loc, dots and all. */
        json_object *loc = where->loc(where, "metadata");
        json_object_array_add(loc, json_object_new_string(key));
        tg_json_problem(detail, loc, msg, type);
    }
}

static size_t check_domain_list(json_object *list, const char *path,
                                const struct tg_locator *where, json_object *detail)
{
    if (list == NULL)
        return 0;
    if (!json_object_is_type(list, json_type_array)) {
        problem(where, detail, path, "Input should be a valid list", "list_type");
        return 0;
    }
    size_t n = json_object_array_length(list);
    for (size_t i = 0; i < n; i++) {
        json_object *d = json_object_array_get_idx(list, i);
        if (!json_object_is_type(d, json_type_string) ||
            !tg_validate_domain(json_object_get_string(d))) {
            json_object *loc = where->loc(where, path);
            json_object_array_add(loc, json_object_new_int64((int64_t)i));
            tg_json_problem(detail, loc,
                            "expected a domain such as example.com or a suffix such as .gov",
                            "value_error");
        }
    }
    return n;
}

static void check_source_policy(json_object *sp, const struct tg_locator *where,
                                json_object *detail)
{
    if (!json_object_is_type(sp, json_type_object)) {
        problem(where, detail, "source_policy", "Input should be a valid dictionary",
                "dict_type");
        return;
    }
    size_t n = check_domain_list(tg_json_get(sp, "include_domains"),
                                 "source_policy.include_domains", where, detail);
    n += check_domain_list(tg_json_get(sp, "exclude_domains"), "source_policy.exclude_domains",
                           where, detail);
    if (n > DOMAINS_MAX)
        problem(where, detail,
                tg_json_has(sp, "include_domains") ? "source_policy.include_domains"
                                                   : "source_policy.exclude_domains",
                "include_domains and exclude_domains may have at most 200 entries together",
                "too_long");
    json_object *after = tg_json_get(sp, "after_date");
    int y, m, d;
    char tail;
    if (after != NULL && (!json_object_is_type(after, json_type_string) ||
                          sscanf(json_object_get_string(after), "%4d-%2d-%2d%c", &y, &m, &d,
                                 &tail) != 3))
        problem(where, detail, "source_policy.after_date",
                "expected an RFC 3339 date (YYYY-MM-DD)", "date_from_datetime_parsing");
}

/* A schema is a bare string, {"type":"text"[,"description"]}, {"type":"auto"} or
 * {"type":"json","json_schema":{…}}. */
static void check_schema(json_object *schema, const char *path, int auto_ok,
                         const struct tg_locator *where, json_object *detail)
{
    if (schema == NULL || json_object_is_type(schema, json_type_string))
        return;
    const char *type = tg_json_get_str(schema, "type");
    int ok = json_object_is_type(schema, json_type_object) && type != NULL;
    if (ok && strcmp(type, "json") == 0)
        ok = json_object_is_type(tg_json_get(schema, "json_schema"), json_type_object);
    else if (ok && strcmp(type, "text") == 0)
        ok = tg_json_get(schema, "description") == NULL ||
             json_object_is_type(tg_json_get(schema, "description"), json_type_string);
    else if (ok)
        ok = auto_ok && strcmp(type, "auto") == 0;
    if (!ok)
        problem(where, detail, path,
                auto_ok ? "expected a text description, {\"type\":\"text\"}, {\"type\":\"auto\"} "
                          "or {\"type\":\"json\",\"json_schema\":{…}}"
                        : "expected a text description, {\"type\":\"text\"} or "
                          "{\"type\":\"json\",\"json_schema\":{…}}",
                "union_tag_invalid");
}

static void check_task_spec(json_object *spec, const struct tg_locator *where,
                            json_object *detail)
{
    if (!json_object_is_type(spec, json_type_object)) {
        problem(where, detail, "task_spec", "Input should be a valid dictionary", "dict_type");
        return;
    }
    if (!tg_json_has(spec, "output_schema"))
        problem(where, detail, "task_spec.output_schema", "Field required", "missing");
    check_schema(tg_json_get(spec, "output_schema"), "task_spec.output_schema", 1, where, detail);
    check_schema(tg_json_get(spec, "input_schema"), "task_spec.input_schema", 0, where, detail);
}

static int http_url(const char *s)
{
    size_t n = strncasecmp(s, "https://", 8) == 0 ? 8 : strncasecmp(s, "http://", 7) == 0 ? 7 : 0;
    return n > 0 && s[n] != '\0' && s[n] != '/' && strpbrk(s, " \t\r\n") == NULL;
}

static void check_webhook(json_object *hook, const struct tg_locator *where,
                          json_object *detail)
{
    const char *url = tg_json_get_str(hook, "url");
    if (url == NULL || !http_url(url))
        problem(where, detail, "webhook.url", "expected an http:// or https:// URL", "url_parsing");
    json_object *types = tg_json_get(hook, "event_types");
    if (types == NULL)
        return;
    int ok = json_object_is_type(types, json_type_array);
    for (size_t i = 0; ok && i < json_object_array_length(types); i++) {
        const char *t = json_object_get_string(json_object_array_get_idx(types, i));
        ok = json_object_is_type(json_object_array_get_idx(types, i), json_type_string) &&
             strcmp(t, "task_run.status") == 0;
    }
    if (!ok)
        problem(where, detail, "webhook.event_types",
                "the only event type is \"task_run.status\"", "literal_error");
}

static void check_mcp_servers(json_object *servers, const struct tg_locator *where,
                              json_object *detail)
{
    if (!json_object_is_type(servers, json_type_array)) {
        problem(where, detail, "mcp_servers", "Input should be a valid list", "list_type");
        return;
    }
    for (size_t i = 0; i < json_object_array_length(servers); i++) {
        json_object *s = json_object_array_get_idx(servers, i);
        char path[64];
        static const char *const required[] = {"name", "url"};
        for (size_t k = 0; k < 2; k++) {
            if (tg_json_get_str(s, required[k]) != NULL)
                continue;
            snprintf(path, sizeof(path), "mcp_servers.%zu.%s", i, required[k]);
            json_object *loc = where->loc(where, "mcp_servers");
            json_object_array_add(loc, json_object_new_int64((int64_t)i));
            json_object_array_add(loc, json_object_new_string(required[k]));
            tg_json_problem(detail, loc, "Field required", "missing");
        }
    }
}

void tg_validate_template(json_object *tmpl, const struct tg_locator *where,
                          json_object *detail)
{
    json_object *proc = tg_json_get(tmpl, "processor");
    if (proc == NULL)
        problem(where, detail, "processor",
                "Field required: no processor in the submission, the preset or the gateway's "
                "defaults",
                "missing");
    else if (!json_object_is_type(proc, json_type_string) ||
             json_object_get_string_len(proc) == 0)
        problem(where, detail, "processor", "Input should be a valid string", "string_type");
    if (tg_json_has(tmpl, "metadata") && tg_json_get(tmpl, "metadata") != NULL)
        check_metadata(tg_json_get(tmpl, "metadata"), where, detail);
    if (tg_json_get(tmpl, "source_policy") != NULL)
        check_source_policy(tg_json_get(tmpl, "source_policy"), where, detail);
    if (tg_json_get(tmpl, "task_spec") != NULL)
        check_task_spec(tg_json_get(tmpl, "task_spec"), where, detail);
    if (tg_json_get(tmpl, "webhook") != NULL)
        check_webhook(tg_json_get(tmpl, "webhook"), where, detail);
    if (tg_json_get(tmpl, "mcp_servers") != NULL)
        check_mcp_servers(tg_json_get(tmpl, "mcp_servers"), where, detail);
    json_object *events = tg_json_get(tmpl, "enable_events");
    if (events != NULL && !json_object_is_type(events, json_type_boolean))
        problem(where, detail, "enable_events", "Input should be a valid boolean", "bool_type");
}

void tg_validate_task_spec(json_object *spec, const struct tg_locator *where,
                           json_object *detail)
{
    check_task_spec(spec, where, detail);
}

void tg_validate_metadata(json_object *meta, const struct tg_locator *where,
                          json_object *detail)
{
    check_metadata(meta, where, detail);
}

size_t tg_validate_task_spec_chars(json_object *tmpl)
{
    json_object *spec = tg_json_get(tmpl, "task_spec");
    return spec != NULL ? json_chars(spec) : 0;
}

void tg_validate_inputs(json_object *inputs, long max, size_t spec_chars, json_object *detail)
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
    if (n == 0 || n > (size_t)max) {
        char msg[128];
        snprintf(msg, sizeof(msg), "a submission has 1 to %ld inputs, not %zu", max, n);
        tg_json_problem(detail, tg_json_loc("body", "inputs", NULL), msg,
                        n == 0 ? "too_short" : "too_long");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *in = json_object_array_get_idx(inputs, i);
        const char *msg = NULL, *type = NULL;
        if (!json_object_is_type(in, json_type_string) && !json_object_is_type(in, json_type_object)) {
            msg = "each input must be a string or a JSON object";
            type = "value_error";
        } else if (json_object_is_type(in, json_type_string) && json_object_get_string_len(in) == 0) {
            msg = "an input may not be empty";
            type = "string_too_short";
        } else if (json_chars(in) + spec_chars > SPEC_INPUT_MAX) {
            msg = "the input and the task spec together may have at most 25,000 characters";
            type = "too_long";
        }
        if (msg == NULL)
            continue;
        json_object *loc = tg_json_loc("body", "inputs", NULL);
        json_object_array_add(loc, json_object_new_int64((int64_t)i));
        tg_json_problem(detail, loc, msg, type);
    }
}

void tg_validate_preset(json_object *preset, json_object *detail)
{
    static const char *const refused[] = {"input", "inputs", "taskgroup_id", NULL};
    static const char *const lists[] = {"enforced", "allowed_processors", NULL};
    if (!json_object_is_type(preset, json_type_object)) {
        tg_json_problem(detail, NULL, "a preset is a JSON object", "dict_type");
        return;
    }
    for (const char *const *k = refused; *k != NULL; k++)
        if (tg_json_has(preset, *k))
            tg_json_problem(detail, tg_json_loc("body", *k, NULL),
                            "a preset holds defaults, not inputs or groups", "extra_forbidden");
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
    if (tg_json_has(preset, "gateway_webhook") &&
        !json_object_is_type(tg_json_get(preset, "gateway_webhook"), json_type_boolean))
        tg_json_problem(detail, tg_json_loc("body", "gateway_webhook", NULL),
                        "Input should be a valid boolean", "bool_type");
    /* A preset is a template that may leave the processor to the submission. */
    json_object *tmpl = NULL;
    if (json_object_deep_copy(preset, &tmpl, NULL) != 0)
        return;
    json_object_object_del(tmpl, "gateway_webhook");
    if (!tg_json_has(tmpl, "processor"))
        json_object_object_add(tmpl, "processor", json_object_new_string("-"));
    json_object *spec = tg_json_get(tmpl, "default_task_spec");
    if (spec != NULL && !tg_json_has(tmpl, "task_spec"))
        json_object_object_add(tmpl, "task_spec", json_object_get(spec));
    json_object *at = tg_json_loc("body", NULL);
    struct tg_locator where = {tg_validate_loc_plain, preset, at};
    tg_validate_template(tmpl, &where, detail);
    json_object_put(at);
    json_object_put(tmpl);
}
