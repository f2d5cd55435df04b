/* Form posts of the simplified submission (application/x-www-form-urlencoded and
 * multipart/form-data) decoded into the JSON object a JSON client would have sent. */
#ifndef TG_FORM_H
#define TG_FORM_H

#include <stddef.h>

#include <json-c/json.h>

#include "tg_core.h"
#include "tg_form_limits.h" /* what one form body may hold */

/* Whether content_type (a Content-Type header value; NULL is accepted and gives 0) names
 * a form type this module decodes: application/x-www-form-urlencoded or
 * multipart/form-data, with any parameters. */
int tg_form_is_form(const char *content_type);

/* Decodes the form body[0..len) (any bytes, NULs included; body may be NULL when len is 0)
 * sent with content_type into a new JSON object shaped like the JSON submission:
 *  - inputs: lines of the textarea "inputs", repeated "input" fields and the file part
 *    "inputs_file" (lines, or a CSV with a header row when its name ends in .csv or its
 *    type is text/csv), in body order; a text that is a JSON object becomes an object;
 *  - taskgroup_id, preset, processor, webhook_url, token, idempotency_key: trimmed
 *    strings; output and input_schema likewise, or an object when the text is a JSON one;
 *  - include_domains / exclude_domains: lists split at commas and newlines;
 *  - metadata.KEY fields: the metadata object, as are a browser form's rows of
 *    metadata_key and metadata_value fields (each value pairs with the key before it);
 *    enable_events: a boolean (the last wins);
 *  - empty values leave a field out, unknown fields are ignored; keys come in the order
 *    their first value appeared.
 * On TG_OK *out is a new reference the caller owns, and problems with field values (given
 * twice, not a boolean, a bad CSV row, …) have been appended to detail (which must not be
 * NULL) in the upstream's 422 shape with loc ["body", "<field name as sent>"(, row)].
 * A body that cannot be decoded at all (bad percent escape, invalid UTF-8 or a NUL byte in
 * a field, malformed multipart, no or too long a boundary, too many parts) gives TG_EINVAL
 * with a one-line reason in err, and detail is unchanged; TG_ENOMEM when out of memory.
 * On any error *out is NULL. err may be NULL when errlen is 0. */
int tg_form_decode(const char *content_type, const char *body, size_t len,
                   json_object **out, json_object *detail, char *err, size_t errlen);

#endif
