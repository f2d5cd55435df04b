/* Inside core: what the upstream client (tg_upstream.c) shares with the run tracker
 * (tg_track.c), which drives many transfers at once on one thread with libcurl's multi
 * interface: how every transfer to the upstream is set up, so that both send the same
 * headers and keep the same time limits, TLS and proxy settings. libcurl is core's alone:
 * only files of gateway/core/ include this. */
#ifndef TG_UPSTREAM_CURL_H
#define TG_UPSTREAM_CURL_H

#include <stddef.h>

#include <curl/curl.h>

#include "tg_conf.h"

/* conf's upstream_url followed by path into out. TG_OK, or TG_EINVAL when it does not
 * fit. */
int tg_upstream_url(const struct tg_conf *conf, const char *path, char *out, size_t len);

/* The headers of a read: x-api-key (key), Accept (accept), parallel-beta (beta; NULL or
 * "": none) and X-Request-Id (request_id; NULL or "": none). NULL when a value is not a
 * plain header value (a control character would start another header) or out of memory.
 * The caller frees the list with curl_slist_free_all after the transfer. */
struct curl_slist *tg_upstream_read_headers(const char *key, const char *accept,
                                            const char *beta, const char *request_id);

/* What every transfer to the upstream sets on its easy handle c: the URL, the headers, the
 * connect timeout from conf and timeout_ms in all (0: none), TCP keep-alive, no signals,
 * http and https only, no redirects followed (a 3xx is an answer like any other, so
 * nothing is sent twice that way), the user agent, and errbuf (CURL_ERROR_SIZE bytes) for
 * libcurl's message. TLS is verified against the system's CAs and proxies come from the
 * environment, as libcurl does by default. headers and errbuf must outlive the transfer. */
void tg_upstream_setup(CURL *c, const struct tg_conf *conf, const char *url,
                       struct curl_slist *headers, long timeout_ms, char *errbuf);

#endif
