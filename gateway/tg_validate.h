/* Validation of what will be sent upstream, against the limits the upstream documents,
 * before anything is sent. Problems are appended to a 422 detail array in the upstream's
 * shape, so that one answer lists them all. */
#ifndef TG_VALIDATE_H
#define TG_VALIDATE_H

#include <json-c/json.h>

/* Checks a merged template (one run input without "input"). at names where its fields
 * came from in the client's body, e.g. ["body"]; it is borrowed. */
void tg_validate_template(json_object *tmpl, json_object *at, json_object *detail);

/* Checks a preset before it is stored: an object shaped like a run input without "input"
 * (processor optional), plus optional default_task_spec and enforced. */
void tg_validate_preset(json_object *preset, json_object *detail);

/* Checks the inputs list of a simplified submission: present, a non-empty list of at
 * most max items, each a string or an object. */
void tg_validate_inputs(json_object *inputs, long max, json_object *detail);

/* Whether s is a plausible upstream id (letters, digits, '_' and '-', 1..128 characters):
 * safe to put in a URL path. */
int tg_valid_id(const char *s);

#endif
