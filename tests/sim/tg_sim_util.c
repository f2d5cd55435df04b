/* tg_sim_util.c: small helpers the parts of the simulator share: allocation, bounded
 * buffers, UTF-8, time, randomness, and the JSON shapes of responses. Randomness and
 * percent-decoding come from the gateway's base library (tg_core.c, tg_query.c). */
#include "tg_sim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tg_core.h"
#include "tg_query.h"

/* The default limit of a sim_buf: a /_sim/requests dump may be large. */
#define RESPONSE_MAX (SIZE_MAX > 0xFFFFFFFFu ? (size_t)0x100000000ULL : (size_t)0x40000000u)
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* ---- allocation, buffers, text ------------------------------------------------------- */

void *sim_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL) {
        fprintf(stderr, "tg_sim: out of memory\n");
        abort();
    }
    return p;
}

void *sim_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (q == NULL) {
        fprintf(stderr, "tg_sim: out of memory\n");
        abort();
    }
    return q;
}

char *sim_xstrndup(const char *s, size_t n)
{
    char *p = sim_xmalloc(n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sim_xstrdup(const char *s)
{
    return sim_xstrndup(s, strlen(s));
}

int sim_buf_add(struct sim_buf *b, const void *data, size_t n)
{
    size_t max = b->max ? b->max : RESPONSE_MAX;

    if (b->len + 1 > max || n > max - b->len - 1)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;

        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = sim_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int sim_buf_adds(struct sim_buf *b, const char *s)
{
    return sim_buf_add(b, s, strlen(s));
}

int sim_buf_addf(struct sim_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof small)
        return sim_buf_add(b, small, (size_t)n);
    {
        char *big = sim_xmalloc((size_t)n + 1);
        int rc;

        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        rc = sim_buf_add(b, big, (size_t)n);
        free(big);
        return rc;
    }
}

int sim_buf_add_json_string(struct sim_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;
    int rc = sim_buf_add(b, "\"", 1);

    for (i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], '\0'};

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc = sim_buf_add(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            esc[2] = '\0';
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            esc[2] = '\0';
        }
        if (rc == 0)
            rc = sim_buf_adds(b, esc);
    }
    if (rc == 0)
        rc = sim_buf_add(b, s + run, n - run);
    return rc == 0 ? sim_buf_add(b, "\"", 1) : rc;
}

void sim_buf_free(struct sim_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Length of the valid UTF-8 sequence at s (of n bytes left), or 0 when it is invalid
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned long cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4;
    else
        return 0;
    cp = s[0] & (0x7Fu >> len); /* the payload bits of the lead byte */
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

char *sim_utf8_clean(const char *s, size_t n, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    char *out = sim_xmalloc(n * 3 + 1); /* each bad byte becomes 3 bytes at most */
    size_t i = 0, o = 0;

    while (i < n) {
        size_t len = utf8_seq(u + i, n - i);

        if (len == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, s + i, len);
        o += len;
        i += len;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

size_t sim_utf8_length(const char *s, size_t n)
{
    size_t i, count = 0;

    for (i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            count++;
    }
    return count;
}

const char *sim_header(const struct sim_request *req, const char *lname)
{
    size_t i;

    for (i = 0; i < req->nheaders; i++) {
        if (strcmp(req->headers[i].name, lname) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

void sim_now_rfc3339(char *buf, size_t size)
{
    sim_rfc3339_ago(buf, size, 0);
}

void sim_rfc3339_ago(char *buf, size_t size, long long ago_ms)
{
    struct timespec ts;
    struct tm tm;
    char secs[32];
    long long ns;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (ago_ms > 0) {
        ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec - ago_ms * 1000000LL;
        ts.tv_sec = (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
    }
    gmtime_r(&ts.tv_sec, &tm);
    strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%06ldZ", secs, ts.tv_nsec / 1000);
}

void sim_random(void *buf, size_t n)
{
    if (tg_random(buf, n) != TG_OK) {
        perror("tg_sim: getrandom");
        abort();
    }
}

long long sim_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sim_random_id(char *out, size_t size, const char *prefix)
{
    unsigned char r[16];
    char hex[33];

    sim_random(r, sizeof r);
    tg_hex(r, sizeof r, hex);
    snprintf(out, size, "%s%s", prefix, hex);
}

int sim_query_get(const char *query, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    const char *p = query;

    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len >= nlen && strncmp(p, name, nlen) == 0 && (len == nlen || p[nlen] == '='))
            return tg_query_decode_form(p + nlen + (len > nlen), len - nlen - (len > nlen),
                                        out, size) == TG_OK ? 1 : -1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

void sim_sleep_ms(long ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        continue;
}

/* ---- responses ----------------------------------------------------------------------- */

void sim_response_json(struct sim_response *resp, int status, struct json_object *obj)
{
    size_t len = 0;
    const char *text = json_object_to_json_string_length(obj, JSON_FLAGS, &len);

    free(resp->body);
    resp->status = status;
    resp->body = sim_xstrndup(text, len);
    resp->body_len = len;
    json_object_put(obj);
}

static void random_ref_id(char *out, size_t size)
{
    unsigned char r[16];

    sim_random(r, sizeof r);
    r[6] = (unsigned char)((r[6] & 0x0F) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3F) | 0x80);
    snprintf(out, size,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11],
             r[12], r[13], r[14], r[15]);
}

void sim_response_error(struct sim_response *resp, int status, const char *message)
{
    struct json_object *root = json_object_new_object();
    struct json_object *err = json_object_new_object();
    char ref[40];

    random_ref_id(ref, sizeof ref);
    json_object_object_add(err, "ref_id", json_object_new_string(ref));
    json_object_object_add(err, "message", json_object_new_string(message));
    json_object_object_add(root, "type", json_object_new_string("error"));
    json_object_object_add(root, "error", err);
    sim_response_json(resp, status, root);
}

void sim_response_detail(struct sim_response *resp, const char *msg, const char *type, long at)
{
    struct json_object *root = json_object_new_object();
    struct json_object *list = json_object_new_array();
    struct json_object *item = json_object_new_object();
    struct json_object *loc = json_object_new_array();

    json_object_array_add(loc, json_object_new_string("body"));
    if (at >= 0)
        json_object_array_add(loc, json_object_new_int64(at));
    json_object_object_add(item, "loc", loc);
    json_object_object_add(item, "msg", json_object_new_string(msg));
    json_object_object_add(item, "type", json_object_new_string(type));
    json_object_array_add(list, item);
    json_object_object_add(root, "detail", list);
    sim_response_json(resp, 422, root);
}

void sim_response_free(struct sim_response *resp)
{
    free(resp->body);
    free(resp->retry_after);
    resp->body = NULL;
    resp->retry_after = NULL;
}
