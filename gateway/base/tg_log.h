/* Logging to stderr: one line per event, logfmt or JSON, never a secret. The request line
 * (tg_http_log_request) is written by the server after each answer. */
#ifndef TG_LOG_H
#define TG_LOG_H

#include "tg_conf.h"

#include <stddef.h>

/* Sets the level and format; call once at start-up, before threads. */
void tg_log_setup(enum tg_log_level level, enum tg_log_format format);
/* Whether a message at level would be written. */
int tg_log_enabled(enum tg_log_level level);

/* A free-form message: "ts=… level=… msg=…". */
void tg_log(enum tg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One field of a line: a string (NULL: the field is left out) or, with is_num, a number. */
struct tg_log_field {
    const char *key;
    const char *str;
    long long num;
    int is_num;
};

/* A line of the given fields after ts and level, in order (the request line of
 * tg_http_log_request, say). */
void tg_log_fields(enum tg_log_level level, const struct tg_log_field *fields, size_t n);

#endif
