/* The reason phrase of an HTTP status. */
#ifndef TG_HTTP_REASON_H
#define TG_HTTP_REASON_H

/* RFC 9110's phrase for status, or "Unknown"; a static string. */
const char *tg_http_reason(int status);

#endif
