/* Server-sent events read piece by piece (see tg_sse.h). */
#include "tg_sse.h"

#include <stdio.h>
#include <string.h>

void tg_sse_init(struct tg_sse *r, size_t max, tg_sse_fn fn, void *ctx)
{
    memset(r, 0, sizeof(*r));
    r->fn = fn;
    r->ctx = ctx;
    tg_buf_init(&r->line, max);
    tg_buf_init(&r->data, max);
}

void tg_sse_reset(struct tg_sse *r)
{
    tg_buf_clear(&r->line);
    tg_buf_clear(&r->data);
    r->event[0] = '\0';
    r->id[0] = '\0';
    r->cr = 0;
    r->has_data = 0;
}

void tg_sse_free(struct tg_sse *r)
{
    if (r == NULL)
        return;
    tg_buf_free(&r->line);
    tg_buf_free(&r->data);
}

/* The end of an event: handed on when it had data, then forgotten. The id stays: the
 * format keeps the last one for the events that follow. */
static int dispatch(struct tg_sse *r)
{
    int rc = TG_OK;
    if (r->has_data)
        rc = r->fn(r->ctx, r->event[0] != '\0' ? r->event : "message", tg_buf_str(&r->data),
                   r->data.len, r->id);
    tg_buf_clear(&r->data);
    r->event[0] = '\0';
    r->has_data = 0;
    return rc;
}

static int field(struct tg_sse *r, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    size_t nlen = colon != NULL ? (size_t)(colon - line) : len;
    const char *value = colon != NULL ? colon + 1 : line + len;
    size_t vlen = len - (size_t)(value - line);
    if (vlen > 0 && *value == ' ') {
        value++;
        vlen--;
    }
    if (nlen == 0)
        return TG_OK; /* a comment */
    if (nlen == 4 && memcmp(line, "data", 4) == 0) {
        int rc = r->has_data ? tg_buf_add(&r->data, "\n", 1) : TG_OK;
        r->has_data = 1;
        return rc == TG_OK ? tg_buf_add(&r->data, value, vlen) : rc;
    }
    if (nlen == 5 && memcmp(line, "event", 5) == 0)
        snprintf(r->event, sizeof(r->event), "%.*s", (int)vlen, value);
    else if (nlen == 2 && memcmp(line, "id", 2) == 0 && memchr(value, '\0', vlen) == NULL)
        snprintf(r->id, sizeof(r->id), "%.*s", (int)vlen, value);
    return TG_OK;
}

/* Bytes of p[0 .. n) before the first CR or LF. */
static size_t line_span(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] != '\r' && p[i] != '\n')
        i++;
    return i;
}

static int end_line(struct tg_sse *r)
{
    int rc = r->line.len == 0 ? dispatch(r) : field(r, tg_buf_str(&r->line), r->line.len);
    tg_buf_clear(&r->line);
    return rc;
}

int tg_sse_feed(struct tg_sse *r, const char *bytes, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (r->cr && bytes[i] == '\n') {
            r->cr = 0;
            i++;
            continue;
        }
        r->cr = 0;
        size_t span = line_span(bytes + i, len - i);
        if (span > 0) {
            int rc = tg_buf_add(&r->line, bytes + i, span);
            if (rc != TG_OK)
                return rc;
            i += span;
            continue;
        }
        r->cr = bytes[i] == '\r';
        i++;
        int rc = end_line(r);
        if (rc != TG_OK)
            return rc;
    }
    return TG_OK;
}
