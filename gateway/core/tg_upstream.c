/* The upstream client over libcurl (see tg_upstream.h): an easy handle per worker, kept
 * for its connection cache; outcomes classified by whether the request left this host.
 * A request body is never sent twice by libcurl itself: see struct upload. */
#include "tg_upstream.h"
#include "tg_upstream_curl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tg_core.h"

/* Answers larger than this are not read: 1,000 run ids take about 40 KB. */
#define MAX_ANSWER (16u * 1024 * 1024)

/* The body of the request under way. libcurl may send a request again by itself: when a
 * kept-alive connection dies before the first byte of the answer, it retries on a new
 * connection, although the upstream may have acted on the first (created the runs). So
 * every attempt is counted by on_prereq, which libcurl calls once a connection is ready
 * and before each request goes out on it, and refuses the second: the transfer then fails
 * with CURLE_ABORTED_BY_CALLBACK instead of sending again, and the call is UNKNOWN. The
 * body goes through CURLOPT_POSTFIELDS, so that a small request leaves in one send with
 * its headers (a read callback has libcurl send the headers and the body apart: two
 * segments, and two wake-ups of the upstream, per call). */
struct upload {
    int attempts;       /* requests libcurl was about to send */
    int rewind_refused; /* libcurl wanted to send the body again, and did not */
};

struct tg_upstream {
    CURL *curl;
    const struct tg_conf *conf;
    struct tg_buf body;
    struct upload up;
    char retry_after[64];
    char error[CURL_ERROR_SIZE + 128];
    char curl_error[CURL_ERROR_SIZE];
};

int tg_upstream_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? TG_OK : TG_ERR;
}

void tg_upstream_global_cleanup(void)
{
    curl_global_cleanup();
}

struct tg_upstream *tg_upstream_new(const struct tg_conf *conf)
{
    struct tg_upstream *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return NULL;
    u->curl = curl_easy_init();
    if (u->curl == NULL) {
        free(u);
        return NULL;
    }
    u->conf = conf;
    tg_buf_init(&u->body, MAX_ANSWER);
    return u;
}

void tg_upstream_free(struct tg_upstream *u)
{
    if (u == NULL)
        return;
    curl_easy_cleanup(u->curl);
    tg_buf_free(&u->body);
    free(u);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct tg_upstream *u = arg;
    if (tg_buf_add(&u->body, data, size * n) != TG_OK)
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct tg_upstream *u = arg;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
        const char *v = data + sizeof(name) - 1;
        size_t vlen = len - (sizeof(name) - 1);
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
            vlen--;
        if (vlen < sizeof(u->retry_after)) {
            memcpy(u->retry_after, v, vlen);
            u->retry_after[vlen] = '\0';
        }
    }
    return len;
}

/* Called before every request libcurl sends on a connection: the first goes, a second (a
 * retry of the same body) is refused (see struct upload). */
static int on_prereq(void *arg, char *ip, char *local_ip, int port, int local_port)
{
    struct upload *up = arg;
    (void)ip;
    (void)local_ip;
    (void)port;
    (void)local_port;
    if (++up->attempts == 1)
        return CURL_PREREQFUNC_OK;
    up->rewind_refused = 1;
    return CURL_PREREQFUNC_ABORT;
}

/* A header value we are about to send must not smuggle in another header. */
static int plain_header_value(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static struct curl_slist *add_header(struct curl_slist *list, const char *name,
                                     const char *value, int *ok)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "%s: %s", name, value);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        *ok = 0;
        return list;
    }
    struct curl_slist *next = curl_slist_append(list, line);
    if (next == NULL) {
        *ok = 0;
        return list;
    }
    return next;
}

struct curl_slist *tg_upstream_read_headers(const char *key, const char *accept,
                                            const char *beta, const char *request_id)
{
    if (!plain_header_value(key) || (beta != NULL && !plain_header_value(beta)) ||
        (request_id != NULL && !plain_header_value(request_id)) || !plain_header_value(accept))
        return NULL;
    int ok = 1;
    struct curl_slist *headers = add_header(NULL, "x-api-key", key, &ok);
    headers = add_header(headers, "Accept", accept, &ok);
    if (beta != NULL && *beta != '\0')
        headers = add_header(headers, "parallel-beta", beta, &ok);
    if (request_id != NULL && *request_id != '\0')
        headers = add_header(headers, "X-Request-Id", request_id, &ok);
    if (!ok) {
        curl_slist_free_all(headers);
        return NULL;
    }
    return headers;
}

static struct curl_slist *build_headers(const char *key, const char *beta,
                                        const char *request_id, int has_body, int *ok)
{
    struct curl_slist *h = NULL;
    *ok = 1;
    h = add_header(h, "x-api-key", key, ok);
    if (has_body)
        h = add_header(h, "Content-Type", "application/json", ok);
    h = add_header(h, "Accept", "application/json", ok);
    if (beta != NULL && *beta != '\0')
        h = add_header(h, "parallel-beta", beta, ok);
    if (request_id != NULL && *request_id != '\0')
        h = add_header(h, "X-Request-Id", request_id, ok);
    /* No "Expect: 100-continue" round trip for large bodies, and so no 417 answer after
     * which libcurl would send the request again without it. */
    struct curl_slist *next = curl_slist_append(h, "Expect:");
    if (next == NULL)
        *ok = 0;
    else
        h = next;
    return h;
}

int tg_upstream_url(const struct tg_conf *conf, const char *path, char *out, size_t len)
{
    int n = snprintf(out, len, "%s%s", conf->upstream_url, path);
    return n < 0 || (size_t)n >= len ? TG_EINVAL : TG_OK;
}

void tg_upstream_setup(CURL *c, const struct tg_conf *conf, const char *url,
                       struct curl_slist *headers, long timeout_ms, char *errbuf)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, conf->upstream_connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "taskgate/0.1");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
}

/* What every transfer of this client sets (tg_upstream_setup), with the header callback
 * for Retry-After; the caller sets where the body goes. */
static void setup_transfer(struct tg_upstream *u, const char *url, struct curl_slist *headers,
                           long timeout_ms)
{
    CURL *c = u->curl;
    curl_easy_reset(c);
    tg_upstream_setup(c, u->conf, url, headers, timeout_ms, u->curl_error);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, u);
}

/* Decides what is known after a transfer that did not complete with an answer. A refused
 * second attempt comes first: libcurl makes one only after the request went out on a
 * connection that then died without an answer, whatever the byte counts of the (refused)
 * retry say, so the upstream may have acted. */
static void classify_failure(struct tg_upstream *u, CURLcode cc, struct tg_up_result *res)
{
    long sent = 0;
    int refused = u->up.rewind_refused || cc == CURLE_SEND_FAIL_REWIND;
    curl_easy_getinfo(u->curl, CURLINFO_REQUEST_SIZE, &sent);
    res->timed_out = cc == CURLE_OPERATION_TIMEDOUT;
    if (refused)
        res->outcome = TG_OUTCOME_UNKNOWN;
    else if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
             cc == CURLE_COULDNT_RESOLVE_PROXY || sent == 0)
        res->outcome = TG_OUTCOME_NOT_SENT;
    else
        res->outcome = TG_OUTCOME_UNKNOWN;
    if (u->up.rewind_refused) /* libcurl's own words would be about our callback */
        snprintf(u->error, sizeof(u->error),
                 "connection lost after sending, not sent again: no answer came on it");
    else
        snprintf(u->error, sizeof(u->error), "%s%s%s%s",
                 refused ? "connection lost after sending, not sent again: " : "",
                 curl_easy_strerror(cc), u->curl_error[0] != '\0' ? ": " : "", u->curl_error);
    res->error = u->error;
}

int tg_upstream_call(struct tg_upstream *u, const char *method, const char *path,
                     const char *key, const char *beta, const char *request_id,
                     const char *body, size_t len, struct tg_up_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!plain_header_value(key) || (beta != NULL && !plain_header_value(beta)) ||
        (request_id != NULL && !plain_header_value(request_id)))
        return TG_EINVAL;

    char url[2048];
    if (tg_upstream_url(u->conf, path, url, sizeof(url)) != TG_OK)
        return TG_EINVAL;

    int ok;
    struct curl_slist *headers = build_headers(key, beta, request_id, body != NULL, &ok);
    if (!ok) {
        curl_slist_free_all(headers);
        return TG_EINVAL;
    }
    tg_buf_clear(&u->body);
    u->retry_after[0] = '\0';
    u->curl_error[0] = '\0';

    CURL *c = u->curl;
    setup_transfer(u, url, headers, u->conf->upstream_timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, u);
    u->up = (struct upload){0, 0};
    if (body != NULL) {
        /* A POST with a known Content-Length, never sent twice (see struct upload). */
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, len > 0 ? body : "");
        curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(c, CURLOPT_PREREQDATA, &u->up);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);

    int64_t t0 = tg_mono_us();
    CURLcode cc = curl_easy_perform(c);
    res->duration_us = tg_mono_us() - t0;
    curl_slist_free_all(headers);

    if (cc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        res->http_status = (int)status;
        res->outcome = status >= 200 && status < 300 ? TG_OUTCOME_OK : TG_OUTCOME_ERROR;
    } else {
        classify_failure(u, cc, res);
    }
    res->body = tg_buf_str(&u->body);
    res->body_len = u->body.len;
    res->retry_after = u->retry_after[0] != '\0' ? u->retry_after : NULL;
    return TG_OK;
}

/* ---- relayed answers ----------------------------------------------------------------- */

struct relay {
    struct tg_upstream *u;
    const struct tg_up_sink *sink;
    int started;   /* sink->head was called */
    int gone;      /* the sink refused data: the client left */
};

static int relay_head(struct relay *r)
{
    if (r->started)
        return TG_OK;
    r->started = 1;
    long status = 0;
    char *ctype = NULL;
    curl_easy_getinfo(r->u->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->u->curl, CURLINFO_CONTENT_TYPE, &ctype);
    return r->sink->head(r->sink->ctx, (int)status, ctype,
                         r->u->retry_after[0] != '\0' ? r->u->retry_after : NULL);
}

static size_t on_relay_body(char *data, size_t size, size_t n, void *arg)
{
    struct relay *r = arg;
    size_t len = size * n;
    if (relay_head(r) != TG_OK || r->sink->data(r->sink->ctx, data, len) != TG_OK) {
        r->gone = 1;
        return 0;
    }
    return len;
}

int tg_upstream_relay(struct tg_upstream *u, const char *path, const char *key,
                      const char *beta, const char *accept, const char *request_id,
                      long timeout_ms, const struct tg_up_sink *sink, struct tg_up_result *res)
{
    memset(res, 0, sizeof(*res));
    char url[2048];
    if (tg_upstream_url(u->conf, path, url, sizeof(url)) != TG_OK)
        return TG_EINVAL;
    struct curl_slist *headers = tg_upstream_read_headers(key, accept, beta, request_id);
    if (headers == NULL)
        return TG_EINVAL;
    u->retry_after[0] = '\0';
    u->curl_error[0] = '\0';
    u->up = (struct upload){0, 0};

    struct relay r = {u, sink, 0, 0};
    CURL *c = u->curl;
    setup_transfer(u, url, headers, timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_relay_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);

    int64_t t0 = tg_mono_us();
    CURLcode cc = curl_easy_perform(c);
    res->duration_us = tg_mono_us() - t0;
    curl_slist_free_all(headers);

    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    res->http_status = (int)status;
    if (cc == CURLE_OK) {
        res->outcome = status >= 200 && status < 300 ? TG_OUTCOME_OK : TG_OUTCOME_ERROR;
        if (!r.started && relay_head(&r) != TG_OK) /* an answer with no body */
            r.gone = 1;
    } else if (r.started) {
        /* Cut off mid-answer: by the client leaving, the upstream closing or the time
         * limit. What was relayed stands; there is nothing to add. */
        res->outcome = TG_OUTCOME_ERROR;
        res->timed_out = cc == CURLE_OPERATION_TIMEDOUT;
        snprintf(u->error, sizeof(u->error), "%s", r.gone ? "the client went away"
                                                        : curl_easy_strerror(cc));
        res->error = u->error;
    } else {
        classify_failure(u, cc, res);
    }
    res->relayed = r.started;
    res->body = "";
    res->retry_after = u->retry_after[0] != '\0' ? u->retry_after : NULL;
    return TG_OK;
}
