/* JSON helpers over json-c: strict parsing with limits, pool ties, the upstream's error
 * shapes (see tg_json.h). */
#include "tg_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

json_object *tg_json_parse(const char *text, size_t len, int max_depth, char *err,
                           size_t errlen)
{
    if (len > (size_t)0x7fffffff) {
        snprintf(err, errlen, "body is too large to parse");
        return NULL;
    }
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "body contains a NUL byte");
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(max_depth);
    if (tok == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    if (obj == NULL || jerr != json_tokener_success) {
        if (jerr == json_tokener_continue)
            snprintf(err, errlen, "body is not valid JSON: unexpected end of input");
        else
            snprintf(err, errlen, "body is not valid JSON: %s at offset %zu",
                     json_tokener_error_desc(jerr), used);
        json_object_put(obj);
        obj = NULL;
    } else {
        while (used < len && strchr(" \t\r\n", text[used]) != NULL)
            used++;
        if (used < len) {
            snprintf(err, errlen, "body is not valid JSON: trailing data at offset %zu",
                     used);
            json_object_put(obj);
            obj = NULL;
        }
    }
    json_tokener_free(tok);
    return obj;
}

static void put_json(void *obj)
{
    json_object_put(obj);
}

json_object *tg_json_pool(struct tg_pool *pool, json_object *obj)
{
    if (obj == NULL)
        return NULL;
    if (tg_pool_cleanup(pool, put_json, obj) != TG_OK)
        return NULL;
    return obj;
}

const char *tg_json_str(json_object *obj, size_t *len)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (len != NULL)
        *len = n;
    return s;
}

json_object *tg_json_get(json_object *obj, const char *key)
{
    json_object *v = NULL;
    if (obj == NULL || !json_object_is_type(obj, json_type_object))
        return NULL;
    if (!json_object_object_get_ex(obj, key, &v))
        return NULL;
    return v;
}

int tg_json_has(json_object *obj, const char *key)
{
    return obj != NULL && json_object_is_type(obj, json_type_object) &&
           json_object_object_get_ex(obj, key, NULL);
}

const char *tg_json_get_str(json_object *obj, const char *key)
{
    json_object *v = tg_json_get(obj, key);
    return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

json_object *tg_json_loc(const char *first, ...)
{
    json_object *loc = json_object_new_array();
    if (loc == NULL)
        return NULL;
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s != NULL; s = va_arg(ap, const char *))
        json_object_array_add(loc, json_object_new_string(s));
    va_end(ap);
    return loc;
}

void tg_json_problem(json_object *detail, json_object *loc, const char *msg,
                     const char *type)
{
    json_object *p = json_object_new_object();
    if (p == NULL) {
        json_object_put(loc);
        return;
    }
    if (loc == NULL)
        loc = tg_json_loc("body", NULL);
    json_object_object_add(p, "loc", loc);
    json_object_object_add(p, "msg", json_object_new_string(msg));
    json_object_object_add(p, "type", json_object_new_string(type));
    json_object_array_add(detail, p);
}

int tg_json_buf_string(struct tg_buf *b, const char *s)
{
    json_object *str = json_object_new_string(s);
    if (str == NULL)
        return TG_ENOMEM;
    size_t len;
    const char *text = tg_json_str(str, &len);
    int rc = tg_buf_add(b, text, len);
    json_object_put(str);
    return rc;
}

int tg_json_error_body(struct tg_buf *b, const char *ref_id, const char *message,
                       json_object *detail)
{
    int rc = tg_buf_adds(b, "{\"type\":\"error\",\"error\":{\"ref_id\":");
    if (rc == TG_OK)
        rc = tg_json_buf_string(b, ref_id != NULL ? ref_id : "");
    if (rc == TG_OK)
        rc = tg_buf_adds(b, ",\"message\":");
    if (rc == TG_OK)
        rc = tg_json_buf_string(b, message);
    if (rc == TG_OK && detail != NULL) {
        size_t len;
        const char *text = tg_json_str(detail, &len);
        rc = tg_buf_adds(b, ",\"detail\":");
        if (rc == TG_OK)
            rc = tg_buf_add(b, text, len);
    }
    if (rc == TG_OK)
        rc = tg_buf_adds(b, "}}");
    return rc;
}
