/* The strict JSON check: RFC 8259 as written, over a client's raw bytes, before json-c
 * reads them (tg_json_parse_input in tg_json.h runs it). Below tg_json.c. */
#ifndef TG_JSON_STRICT_H
#define TG_JSON_STRICT_H

#include <stddef.h>

#include <json-c/json.h>

/* Checks text[0..len), whose UTF-8 is already valid, against RFC 8259 (one value;
 * NaN, Infinity, a bare '.', '+', leading zeros, raw control characters in strings and
 * unpaired \u surrogate escapes refused) and against what json-c holds exactly: an
 * integer from -2^63 to 2^64-1, any other number a finite double that does not underflow
 * to 0; also no \u0000 and at most max_depth - 1 open containers (json-c's limit). TG_OK;
 * TG_EINVAL with "body is not valid JSON: … at offset N" in err and, when loc is not NULL,
 * *loc a new array ["body", keys and indices down to the value] (NULL if out of memory);
 * TG_ENOMEM. */
int tg_json_strict_check(const char *text, size_t len, int max_depth, char *err, size_t errlen,
                         json_object **loc);

#endif
