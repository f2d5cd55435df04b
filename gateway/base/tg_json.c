/* JSON helpers over json-c: strict parsing with limits, pool ties, the upstream's error
 * shapes (see tg_json.h). */
#include "tg_json.h"
#include "tg_json_strict.h"
#include "tg_sha256.h"

#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A key as it stands in the text, between its quotes. */
struct raw_key {
    const char *s;
    size_t len;
};

static int cmp_key(const void *a, const void *b)
{
    const struct raw_key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Sorts the keys of the object just closed and looks for a repeat. */
static const struct raw_key *repeated(struct raw_key *keys, size_t n)
{
    qsort(keys, n, sizeof(*keys), cmp_key);
    for (size_t i = 1; i < n; i++)
        if (cmp_key(&keys[i - 1], &keys[i]) == 0)
            return &keys[i];
    return NULL;
}

/* json-c keeps the last of two equal keys without a word; a client that sends both
 * should hear about it. The same walk refuses \u0000 escapes. text is valid JSON of depth at most TG_JSON_MAX_DEPTH + 1. Keys
 * are compared as written, so "a" and "\u0061" pass as different. */
static int find_duplicate_key(const char *text, size_t len, char *err, size_t errlen)
{
    size_t cap = 64, n = 0, depth = 0;
    size_t start[TG_JSON_MAX_DEPTH + 2];
    int is_obj[TG_JSON_MAX_DEPTH + 2];
    struct raw_key *keys = malloc(cap * sizeof(*keys));
    int rc = keys != NULL ? TG_OK : TG_ENOMEM;
    for (size_t i = 0; i < len && rc == TG_OK; i++) {
        char c = text[i];
        if ((c == '{' || c == '[') && depth < TG_JSON_MAX_DEPTH + 2) {
            start[depth] = n;
            is_obj[depth++] = c == '{';
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
            const struct raw_key *dup = is_obj[depth] ? repeated(keys + start[depth], n - start[depth])
                                                      : NULL;
            if (dup != NULL) {
                snprintf(err, errlen, "body has the key \"%.*s\" twice in one object",
                         (int)(dup->len < 64 ? dup->len : 64), dup->s);
                rc = TG_EINVAL;
            }
            n = start[depth];
        } else if (c == '"') {
            size_t j = i + 1;
            while (j < len && text[j] != '"') {
                /* A \u0000 would cut the string short wherever C reads it. */
                if (text[j] == '\\' && j + 5 < len && memcmp(text + j + 1, "u0000", 5) == 0) {
                    snprintf(err, errlen, "body contains \\u0000 (a NUL character) in a string");
                    rc = TG_EINVAL;
                    break;
                }
                j += text[j] == '\\' ? 2 : 1;
            }
            if (rc != TG_OK)
                break;
            size_t k = j + 1;
            while (k < len && strchr(" \t\r\n", text[k]) != NULL)
                k++;
            if (depth > 0 && is_obj[depth - 1] && k < len && text[k] == ':') {
                if (n == cap) {
                    struct raw_key *more = realloc(keys, 2 * cap * sizeof(*keys));
                    if (more == NULL) {
                        rc = TG_ENOMEM;
                        break;
                    }
                    keys = more;
                    cap *= 2;
                }
                keys[n].s = text + i + 1;
                keys[n++].len = j - i - 1;
            }
            i = j;
        }
    }
    if (rc == TG_ENOMEM)
        snprintf(err, errlen, "out of memory");
    free(keys);
    return rc;
}

/* What is checked of the bytes before any grammar: a size json-c takes, no NUL, UTF-8. */
static int bytes_ok(const char *text, size_t len, char *err, size_t errlen)
{
    if (len > (size_t)0x7fffffff) {
        snprintf(err, errlen, "body is too large to parse");
        return 0;
    }
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "body contains a NUL byte");
        return 0;
    }
    if (!tg_utf8_valid(text, len)) {
        snprintf(err, errlen, "body is not valid UTF-8");
        return 0;
    }
    return 1;
}

json_object *tg_json_parse_input(const char *text, size_t len, int max_depth, char *err,
                                 size_t errlen, json_object **loc)
{
    if (loc != NULL)
        *loc = NULL;
    if (!bytes_ok(text, len, err, errlen) ||
        tg_json_strict_check(text, len, max_depth, err, errlen, loc) != TG_OK)
        return NULL;
    return tg_json_parse(text, len, max_depth, err, errlen);
}

/* ---- a tokener per thread --------------------------------------------------------------- */

/* A tokener is a stack of max_depth frames that json_tokener_new_ex allocates and zeroes:
 * about 1 % of a worker's time went to making them, twice a submission (its body, the
 * upstream's answer). Each thread keeps those it used, one per depth, and resets them. */
#define KEPT_TOKENERS 2

struct kept_tokeners {
    json_tokener *tok[KEPT_TOKENERS]; /* NULL: none kept in this slot, or lent out */
    int depth[KEPT_TOKENERS];
};

static pthread_key_t kept_key;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;
static int kept_ok;

static void free_kept(void *arg)
{
    struct kept_tokeners *k = arg;
    for (int i = 0; i < KEPT_TOKENERS; i++)
        if (k->tok[i] != NULL) /* json_tokener_free(NULL) is not a no-op: it crashes */
            json_tokener_free(k->tok[i]);
    free(k);
}

static void make_kept_key(void)
{
    kept_ok = pthread_key_create(&kept_key, free_kept) == 0;
}

/* This thread's kept tokeners, made on first use; NULL if they cannot be. */
static struct kept_tokeners *kept_tokeners(void)
{
    pthread_once(&kept_once, make_kept_key);
    if (!kept_ok)
        return NULL;
    struct kept_tokeners *k = pthread_getspecific(kept_key);
    if (k == NULL && (k = calloc(1, sizeof(*k))) != NULL &&
        pthread_setspecific(kept_key, k) != 0) {
        free(k);
        k = NULL;
    }
    return k;
}

/* A tokener for max_depth, lent out of this thread's (a parse within a parse gets a new
 * one), or NULL when out of memory. */
static json_tokener *take_tokener(int max_depth)
{
    struct kept_tokeners *k = kept_tokeners();
    for (int i = 0; k != NULL && i < KEPT_TOKENERS; i++) {
        if (k->tok[i] != NULL && k->depth[i] == max_depth) {
            json_tokener *tok = k->tok[i];
            k->tok[i] = NULL;
            json_tokener_reset(tok);
            return tok;
        }
    }
    return json_tokener_new_ex(max_depth);
}

/* Gives tok back to this thread, or frees it when the thread keeps enough. */
static void give_tokener(json_tokener *tok, int max_depth)
{
    struct kept_tokeners *k = kept_tokeners();
    for (int i = 0; k != NULL && i < KEPT_TOKENERS; i++) {
        if (k->tok[i] == NULL) {
            k->tok[i] = tok;
            k->depth[i] = max_depth;
            return;
        }
    }
    json_tokener_free(tok);
}

/* ---- the locale of a parse ----------------------------------------------------------- */

/* Each json_tokener_parse_ex call makes its own locale, so that numbers read with a '.'
 * whatever the thread's: it duplicates the thread's locale, sets its LC_NUMERIC to "C",
 * uses it, and frees it at the end. For a thread on the process's global locale, as every
 * thread of the daemon is, glibc copies that one under its process-wide locale lock, taken
 * for writing, and mallocs the copy: 3 % of a worker's time at full load, and the workers
 * queued on that lock. A thread already on the "C" locale object costs it nothing (glibc
 * hands that object back instead of a copy, and never frees it), and the daemon's global
 * locale is "C" too (it never calls setlocale), so a parse runs on that object, and the
 * thread's own locale is put back after it. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* Puts the thread on the "C" locale object; returns the locale to put back with
 * leave_c_locale, or 0 when none could be made (the thread's stays, and parses cost what
 * json-c makes them cost). */
static locale_t enter_c_locale(void)
{
    pthread_once(&c_locale_once, make_c_locale);
    return c_locale != (locale_t)0 ? uselocale(c_locale) : (locale_t)0;
}

static void leave_c_locale(locale_t was)
{
    if (was != (locale_t)0)
        uselocale(was);
}

json_object *tg_json_parse_text(const char *text)
{
    locale_t was = enter_c_locale();
    json_object *obj = json_tokener_parse(text);
    leave_c_locale(was);
    return obj;
}

json_object *tg_json_parse(const char *text, size_t len, int max_depth, char *err,
                           size_t errlen)
{
    if (!bytes_ok(text, len, err, errlen))
        return NULL;
    json_tokener *tok = take_tokener(max_depth);
    if (tok == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    locale_t was = enter_c_locale();
    json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    /* A bare number ("5") is not known to have ended until the input does: the end is told
     * by a NUL, which json-c reads as the end of the text. */
    if (obj == NULL && jerr == json_tokener_continue && used == len) {
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
    }
    leave_c_locale(was);
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
    give_tokener(tok, max_depth);
    if (obj != NULL && find_duplicate_key(text, len, err, errlen) != TG_OK) {
        json_object_put(obj);
        obj = NULL;
    }
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

int tg_json_buf_value(struct tg_buf *b, const char *lead, json_object *obj)
{
    size_t len;
    const char *text = tg_json_str(obj, &len);
    int rc = tg_buf_adds(b, lead);
    if (rc == TG_OK)
        rc = tg_buf_add(b, text, len);
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
    if (rc == TG_OK && detail != NULL)
        rc = tg_json_buf_value(b, ",\"detail\":", detail);
    if (rc == TG_OK)
        rc = tg_buf_adds(b, "}}");
    return rc;
}

/* Visits every member of every mcp_servers[i].headers object under obj, at any depth:
 * the schema puts MCP servers in a run input (the simplified body, a preset, each
 * inputs[i] of an add-runs body), and a server described anywhere else is still someone
 * else's credential. depth bounds the walk as the parser bounds nesting. */
static int walk_mcp(json_object *obj, int depth, tg_json_mcp_fn fn, void *arg)
{
    int rc = TG_OK;
    if (depth > 2 * TG_JSON_MAX_DEPTH + 8)
        return TG_EINVAL;
    if (json_object_is_type(obj, json_type_array)) {
        size_t n = json_object_array_length(obj);
        for (size_t i = 0; i < n && rc == TG_OK; i++)
            rc = walk_mcp(json_object_array_get_idx(obj, i), depth + 1, fn, arg);
        return rc;
    }
    if (!json_object_is_type(obj, json_type_object))
        return TG_OK;
    json_object_object_foreach(obj, key, val) {
        if (rc != TG_OK)
            break;
        if (strcmp(key, "mcp_servers") == 0 && json_object_is_type(val, json_type_array)) {
            size_t n = json_object_array_length(val);
            for (size_t i = 0; i < n && rc == TG_OK; i++) {
                json_object *headers = tg_json_get(json_object_array_get_idx(val, i), "headers");
                if (!json_object_is_type(headers, json_type_object))
                    continue;
                json_object_object_foreach(headers, name, value) {
                    rc = fn(arg, headers, name, value);
                    if (rc != TG_OK)
                        break;
                }
            }
        }
        if (rc == TG_OK)
            rc = walk_mcp(val, depth + 1, fn, arg);
    }
    return rc;
}

int tg_json_mcp_headers(json_object *obj, tg_json_mcp_fn fn, void *arg)
{
    return walk_mcp(obj, 0, fn, arg);
}

static int found(void *arg, json_object *headers, const char *name, json_object *value)
{
    (void)arg;
    (void)headers;
    (void)name;
    (void)value;
    return TG_EEXIST;
}

int tg_json_has_mcp_headers(json_object *obj)
{
    return tg_json_mcp_headers(obj, found, NULL) != TG_OK;
}

static int fingerprint_value(void *arg, json_object *headers, const char *name,
                             json_object *value)
{
    (void)arg;
    char print[TG_FINGERPRINT_LEN];
    const char *text = value != NULL ? json_object_get_string(value) : "";
    tg_sha256_fingerprint(text, strlen(text), print);
    json_object *shown = json_object_new_string(print);
    if (shown == NULL)
        return TG_ENOMEM;
    json_object_object_add(headers, name, shown);
    return TG_OK;
}

int tg_json_redact_mcp(json_object *obj)
{
    return tg_json_mcp_headers(obj, fingerprint_value, NULL);
}
