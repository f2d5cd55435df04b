/* JSON helpers over json-c: strict parsing with limits, objects tied to a request pool,
 * and the upstream's two error shapes. */
#ifndef TG_JSON_H
#define TG_JSON_H

#include <stddef.h>

#include <json-c/json.h>

#include "tg_core.h"

/* Deepest nesting a client body may use. */
#define TG_JSON_MAX_DEPTH 32

/* Parses exactly one JSON value from text[0..len): strict JSON, valid UTF-8, no NUL
 * bytes, no trailing garbage, at most max_depth levels. Returns a new reference the caller
 * owns (or hands to a pool with tg_json_pool), or NULL with a one-line reason in err. */
json_object *tg_json_parse(const char *text, size_t len, int max_depth, char *err,
                           size_t errlen);

/* json-c's own parse of the NUL-terminated text (its lenient grammar and default depth),
 * for texts this program stored itself and for an upstream error body read for its message
 * only; NULL when it does not parse. Like tg_json_parse it runs on the "C" locale object,
 * which spares json-c a copy of the thread's locale under glibc's process-wide lock. */
json_object *tg_json_parse_text(const char *text);

/* For what a client sends to be forwarded (request bodies on both interfaces, admin
 * bodies, presets, a form field's JSON): tg_json_parse after tg_json_strict_check
 * (tg_json_strict.h), so that only JSON as RFC 8259 defines it gets in and every number
 * reaches the upstream as the client wrote it. On failure, *loc (when loc is not NULL)
 * receives a new loc array naming the place of the problem, or NULL for the whole body. */
json_object *tg_json_parse_input(const char *text, size_t len, int max_depth, char *err,
                                 size_t errlen, json_object **loc);

/* Ties obj to pool: json_object_put(obj) runs when the pool is reset. Returns obj, or
 * NULL (with obj already released) when out of memory. NULL is passed through. */
json_object *tg_json_pool(struct tg_pool *pool, json_object *obj);

/* The compact serialisation of obj (no slash escaping). The string belongs to obj and
 * lives as long as obj is not changed or freed. */
const char *tg_json_str(json_object *obj, size_t *len);

/* Member lookup that returns NULL when obj is not an object or has no such key; note
 * that a present JSON null also gives NULL (use tg_json_has to tell them apart). */
json_object *tg_json_get(json_object *obj, const char *key);
int tg_json_has(json_object *obj, const char *key);
/* The string member key, or NULL when absent or not a string. */
const char *tg_json_get_str(json_object *obj, const char *key);

/* Appends one problem to a 422 detail array in the upstream's shape
 * {"loc":[…],"msg":…,"type":…}. loc is consumed (it may be NULL: ["body"]). */
void tg_json_problem(json_object *detail, json_object *loc, const char *msg,
                     const char *type);
/* A new loc array from string parts, ending with NULL: tg_json_loc("body", "inputs", NULL). */
json_object *tg_json_loc(const char *first, ...);

/* Writes the upstream's error shape {"type":"error","error":{"ref_id","message"[,
 * "detail"]}} into b. detail is borrowed and may be NULL. */
int tg_json_error_body(struct tg_buf *b, const char *ref_id, const char *message,
                       json_object *detail);

/* ---- MCP server headers: credentials for someone else's server ----
 *
 * They are found under every "mcp_servers" member, at any depth of obj: the upstream's
 * schema puts mcp_servers in a run input (TaskRunInput: the simplified body, a preset,
 * each inputs[i] of an add-runs body), and one written anywhere else (default_task_spec,
 * fields the API may add) is the same secret. Only what is forwarded upstream carries
 * them as sent; what is stored, logged or shown carries fingerprints. */

/* Called for one header: headers is the object holding it (a value may be replaced with
 * json_object_object_add(headers, name, …); nothing may be added or removed). A return
 * other than TG_OK stops the walk and is returned by it. */
typedef int (*tg_json_mcp_fn)(void *arg, json_object *headers, const char *name,
                              json_object *value);
/* Calls fn for every MCP server header value under obj (NULL: none). TG_OK, fn's first
 * failure, or TG_EINVAL for nesting deeper than any parsed body may have. */
int tg_json_mcp_headers(json_object *obj, tg_json_mcp_fn fn, void *arg);
/* Whether obj holds at least one MCP server header value. */
int tg_json_has_mcp_headers(json_object *obj);

/* Replaces, in place, every MCP server header value under obj with its fingerprint, for
 * what is stored, logged or shown. obj may be NULL or hold no MCP servers. TG_OK, or
 * TG_ENOMEM/TG_EINVAL with obj partly redacted: the caller must then show nothing of it. */
int tg_json_redact_mcp(json_object *obj);

/* Appends s as a JSON string literal (with quotes) to b. */
int tg_json_buf_string(struct tg_buf *b, const char *s);

/* Appends lead (raw text, e.g. ",\"detail\":") and then obj's compact serialisation
 * (tg_json_str) to b: TG_OK, TG_ETOOBIG or TG_ENOMEM. */
int tg_json_buf_value(struct tg_buf *b, const char *lead, json_object *obj);

#endif
