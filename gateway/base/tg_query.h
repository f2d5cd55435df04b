/* Query strings of GET requests: percent-decoding and looking up one parameter. */
#ifndef TG_QUERY_H
#define TG_QUERY_H

#include <stddef.h>

/* Percent-decodes s[0..n) into out (outlen bytes with the NUL). '+' stays '+', so that a
 * time's offset survives; a space is %20. TG_EINVAL for a bad escape, a NUL, invalid
 * UTF-8 or a value too long for out. */
int tg_query_decode(const char *s, size_t n, char *out, size_t outlen);
/* The same for a urlencoded form's names and values, where '+' is a space. */
int tg_query_decode_form(const char *s, size_t n, char *out, size_t outlen);

/* The decoded value of parameter name in query (raw, without '?') into out. TG_OK;
 * TG_ENOTFOUND when it is absent or empty; TG_EINVAL when it is given twice or cannot
 * be decoded into out. */
int tg_query_get(const char *query, const char *name, char *out, size_t outlen);

#endif
