/* The upstream client: one libcurl handle per worker thread, so connections to Parallel
 * are kept alive and reused across requests. It says precisely what is known about each
 * call: answered, refused before sending, or sent with no usable answer. */
#ifndef TG_UPSTREAM_H
#define TG_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "tg_conf.h"
#include "tg_store.h"

struct tg_upstream;

/* Process-wide set-up and tear-down of libcurl; call once, before and after threads. */
int tg_upstream_global_init(void);
void tg_upstream_global_cleanup(void);

/* A client for conf's upstream_url and timeouts. NULL when out of memory. */
struct tg_upstream *tg_upstream_new(const struct tg_conf *conf);
/* NULL is accepted. */
void tg_upstream_free(struct tg_upstream *u);

/* The result of one call. body and the strings are owned by the client and stay valid
 * until its next call. */
struct tg_up_result {
    enum tg_outcome outcome;  /* OK: 2xx; ERROR: other status; UNKNOWN; NOT_SENT */
    int http_status;          /* 0 when nothing was answered */
    const char *body;         /* the answer's body ("" when none) */
    size_t body_len;
    const char *retry_after;  /* the Retry-After header, or NULL */
    const char *error;        /* what went wrong for UNKNOWN/NOT_SENT, or NULL */
    int timed_out;            /* the upstream did not answer within the timeout */
    int64_t duration_us;
};

/* One upstream request. key is the team's Parallel key (sent as x-api-key); beta (may be
 * NULL) the parallel-beta header; request_id (may be NULL) goes out as X-Request-Id.
 * body may be NULL for a GET. Returns TG_OK whenever *res is filled (whatever the
 * outcome), TG_EINVAL for a key or id that is not a plain header value. */
int tg_upstream_call(struct tg_upstream *u, const char *method, const char *path,
                     const char *key, const char *beta, const char *request_id,
                     const char *body, size_t len, struct tg_up_result *res);

#endif
