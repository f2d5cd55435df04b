/* Logging to stderr: one line per event, logfmt or JSON, never a secret. The request line
 * is written by the server after each answer. */
#ifndef TG_LOG_H
#define TG_LOG_H

#include "tg_conf.h"

struct tg_request;
struct tg_response;

/* Sets the level and format; call once at start-up, before threads. */
void tg_log_setup(enum tg_log_level level, enum tg_log_format format);
/* Whether a message at level would be written. */
int tg_log_enabled(enum tg_log_level level);

/* A free-form message: "ts=… level=… msg=…". */
void tg_log(enum tg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The one line for an answered request: id, method, path, status, team, interface,
 * submission, inputs, runs, upstream and total time. */
void tg_log_request(const struct tg_request *req, const struct tg_response *resp);

#endif
