/* A reader of server-sent events (the WHATWG EventSource stream format) fed as the bytes
 * arrive, in pieces cut anywhere: lines end with LF, CRLF or CR; "data:" lines make up an
 * event's data (joined with LF), "event:" names it, "id:" sets its id; a blank line ends
 * it; comments (":") and other fields are ignored. */
#ifndef TG_SSE_H
#define TG_SSE_H

#include <stddef.h>

#include "tg_core.h"

/* Called once per event that has data: its name ("message" when none was given), its data
 * (NUL-terminated, len bytes) and its id ("" when none). Every pointer is valid only
 * during the call. A return other than TG_OK stops the reader, which returns it. */
typedef int (*tg_sse_fn)(void *ctx, const char *event, const char *data, size_t len,
                         const char *id);

struct tg_sse {
    tg_sse_fn fn;
    void *ctx;
    struct tg_buf line; /* the line being read */
    struct tg_buf data; /* the event's data lines so far */
    char event[64];
    char id[256];
    int cr;             /* the last byte was a CR: an LF right after it ends nothing */
    int has_data;       /* a data field was seen (data may still be empty) */
};

/* A reader calling fn(ctx, ...) for each event; an event (or a line) longer than max bytes
 * stops it with TG_ETOOBIG. */
void tg_sse_init(struct tg_sse *r, size_t max, tg_sse_fn fn, void *ctx);
/* Reads len more bytes of the stream. TG_OK, TG_ETOOBIG, TG_ENOMEM or fn's status; after
 * an error the reader is spent. */
int tg_sse_feed(struct tg_sse *r, const char *bytes, size_t len);
/* The stream ended: an event whose blank line never came is not one (the format drops
 * it), so this only forgets it. */
void tg_sse_reset(struct tg_sse *r);
/* NULL is accepted. */
void tg_sse_free(struct tg_sse *r);

#endif
