/* Validation of what will be sent upstream, against the limits the upstream documents,
 * before anything is sent. Problems are appended to a 422 detail array in the upstream's
 * shape, so that one answer lists them all, each with a loc that points at the field as
 * the client sent it. */
#ifndef TG_VALIDATE_H
#define TG_VALIDATE_H

#include <stddef.h>

#include <json-c/json.h>

/* Maps a field of the run template, as a dotted path ("source_policy.include_domains",
 * "metadata.k"), to the loc the client should see (a new array). Each interface has its
 * own: the simplified one names its own fields, the upstream-compatible one the body's. */
struct tg_locator {
    json_object *(*loc)(const struct tg_locator *self, const char *path);
    json_object *body; /* the body as the client sent it */
    json_object *at;   /* a loc prefix, e.g. ["body"] or ["body","inputs",3] */
};

/* The locator of the simplified interface: a template path the client wrote with one of
 * its own field names (include_domains, output, webhook_url, …) is named so; any other
 * path is at's parts followed by the path's parts. */
json_object *tg_validate_loc_simplified(const struct tg_locator *self, const char *path);
/* at's parts followed by the path's parts. */
json_object *tg_validate_loc_plain(const struct tg_locator *self, const char *path);

/* Checks a merged template (one run input without "input"): processor, metadata limits,
 * source policy (at most 200 plausible domains), task spec schemas, webhook, MCP
 * servers. */
void tg_validate_template(json_object *tmpl, const struct tg_locator *where,
                          json_object *detail);

/* The parts of tg_validate_template on their own: a task spec (problems at "task_spec…")
 * and a metadata object (at "metadata"). */
void tg_validate_task_spec(json_object *spec, const struct tg_locator *where,
                           json_object *detail);
void tg_validate_metadata(json_object *meta, const struct tg_locator *where,
                          json_object *detail);

/* Checks the inputs list of a simplified submission: present, a non-empty list of at
 * most max items, each a string or an object, each within the upstream's 25,000
 * characters together with spec_chars (the task spec's size). */
void tg_validate_inputs(json_object *inputs, long max, size_t spec_chars, json_object *detail);

/* Characters (code points) the task spec of a template takes, for the size limit. */
size_t tg_validate_task_spec_chars(json_object *tmpl);

/* Checks a preset before it is stored: an object shaped like a run input without "input"
 * (processor optional), plus optional default_task_spec, enforced and allowed_processors. */
void tg_validate_preset(json_object *preset, json_object *detail);

/* The longest parallel-beta header a client may send: the upstream's beta names are about
 * 20 characters each, and the gateway adds its own before the value is put on the wire. */
#define TG_BETA_MAX 512

/* Checks the client's parallel-beta header (NULL: none sent) before it is passed on: at most
 * TG_BETA_MAX bytes, a comma-separated list of beta names, each an HTTP token (RFC 9110
 * tchar) with optional spaces or tabs around it. A problem is appended at
 * ["header","parallel-beta"]. */
void tg_validate_beta(const char *value, json_object *detail);

/* Whether s is a plausible upstream id (letters, digits, '_' and '-', 1..128 characters):
 * safe to put in a URL path. */
int tg_validate_id(const char *s);

/* Whether s is a plausible domain ("example.com", "sub.example.gov") or a bare suffix
 * starting with a period (".gov", ".co.uk"). */
int tg_validate_domain(const char *s);

#endif
