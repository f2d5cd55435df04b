/* The upstream client: one libcurl handle per worker thread, so connections to Parallel
 * are kept alive and reused across requests. It says precisely what is known about each
 * call: answered, refused before sending, or sent with no usable answer. */
#ifndef TG_UPSTREAM_H
#define TG_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "tg_conf.h"
#include "tg_domain.h"

/* The longest team upstream key the gateway sends (a buffer size). */
#define TG_UPSTREAM_KEY_MAX 512

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
    int relayed;              /* tg_upstream_relay: the answer went to the sink */
};

/* One upstream request. key is the team's Parallel key (sent as x-api-key); beta (may be
 * NULL) the parallel-beta header; request_id (may be NULL) goes out as X-Request-Id.
 * body may be NULL for a GET. A body goes out at most once: libcurl is not allowed to send
 * it again by itself (on a kept-alive connection that dies before the answer, as it would
 * otherwise), and that case is UNKNOWN, never NOT_SENT. Returns TG_OK whenever *res is
 * filled (whatever the outcome), TG_EINVAL for a key or id that is not a plain header
 * value. */
int tg_upstream_call(struct tg_upstream *u, const char *method, const char *path,
                     const char *key, const char *beta, const char *request_id,
                     const char *body, size_t len, struct tg_up_result *res);

/* Where tg_upstream_relay sends an answer as it arrives. head is called once, before the
 * first byte of the body (or for an answer without one), with the status, the content
 * type (may be NULL) and the Retry-After header (may be NULL); data for each piece of the
 * body. Either returns TG_ERR to stop the transfer (the client went away). */
struct tg_up_sink {
    void *ctx;
    int (*head)(void *ctx, int status, const char *content_type, const char *retry_after);
    int (*data)(void *ctx, const char *data, size_t len);
};

/* A GET whose answer is relayed to sink as it arrives (event streams, long polls), with
 * Accept: accept and at most timeout_ms in all (0: no limit). Returns as
 * tg_upstream_call; res->relayed says whether sink got the answer, and when it did not,
 * res says why as for tg_upstream_call (nothing reached the client yet). */
int tg_upstream_relay(struct tg_upstream *u, const char *path, const char *key,
                      const char *beta, const char *accept, const char *request_id,
                      long timeout_ms, const struct tg_up_sink *sink, struct tg_up_result *res);

#endif
