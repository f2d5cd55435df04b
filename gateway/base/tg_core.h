/* Shared foundations: status codes, the per-request memory pool, bounded buffers,
 * clocks and random ids. Everything else in the gateway builds on these. */
#ifndef TG_CORE_H
#define TG_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Status codes returned by gateway functions. Zero is success; the human message, when
 * there is one, goes to an err buffer the caller passed in. */
enum tg_rc {
    TG_OK = 0,
    TG_ERR = -1,       /* generic failure; see the err buffer */
    TG_ENOMEM = -2,    /* allocation failed */
    TG_ETOOBIG = -3,   /* a bounded buffer or limit would be exceeded */
    TG_ENOTFOUND = -4, /* the named object does not exist (or is not visible) */
    TG_EEXIST = -5,    /* the object already exists */
    TG_EBUSY = -6,     /* the database stayed locked past the busy timeout */
    TG_EINVAL = -7,    /* the input is malformed */
    TG_EDB = -8,       /* the database failed (I/O, full, read-only, corrupt) */
    TG_EDOWN = -9,     /* the database server cannot be reached (tg_store_ping only) */
    TG_ESTALE = -10    /* what an earlier check answered has changed since: check again */
};

/* A short English name for a status code; static storage. */
const char *tg_rc_str(int rc);

/* ---- per-request pool ------------------------------------------------------------- */

/* A pool hands out memory that lives until tg_pool_reset() or tg_pool_destroy(); nothing
 * taken from it is freed on its own. Cleanups registered with tg_pool_cleanup() run, last
 * registered first, when the pool is reset or destroyed: that is how json-c objects, curl
 * lists and the like are tied to a request. A pool belongs to one thread. */
struct tg_pool;

/* Returns a new pool or NULL when out of memory. */
struct tg_pool *tg_pool_create(void);
/* Runs the cleanups and frees everything; keeps the first block for reuse. */
void tg_pool_reset(struct tg_pool *p);
/* Runs the cleanups and frees the pool itself. NULL is accepted. */
void tg_pool_destroy(struct tg_pool *p);
/* Memory aligned for any type, or NULL when out of memory. n may be 0. */
void *tg_pool_alloc(struct tg_pool *p, size_t n);
/* Zeroed memory, or NULL when out of memory or when n * size overflows. */
void *tg_pool_calloc(struct tg_pool *p, size_t n, size_t size);
/* A NUL-terminated copy of s (NULL gives NULL), or of its first n bytes. */
char *tg_pool_strdup(struct tg_pool *p, const char *s);
char *tg_pool_strndup(struct tg_pool *p, const char *s, size_t n);
/* A formatted string in the pool, or NULL when out of memory. */
char *tg_pool_printf(struct tg_pool *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Registers fn(data) to run when the pool is reset or destroyed. Returns TG_OK or
 * TG_ENOMEM; on TG_ENOMEM fn(data) has already been run, so the caller never leaks. */
int tg_pool_cleanup(struct tg_pool *p, void (*fn)(void *), void *data);

/* ---- bounded buffer ---------------------------------------------------------------- */

/* A growing byte buffer with a hard maximum, checked on every append (curl's dynbuf).
 * The bytes are always NUL-terminated, and it never allocates more than max + 1 bytes.
 * Memory comes from malloc; tg_buf_free releases it. */
struct tg_buf {
    char *data;   /* NULL until the first append */
    size_t len;
    size_t cap;
    size_t max;   /* the most bytes it may hold, excluding the NUL */
    /* Set when an append was refused for max, and kept (tg_buf_clear and tg_buf_free leave
     * it; tg_buf_init and tg_buf_bound reset it): a builder that goes on after one refused
     * append leaves a text with a piece missing, and this says so to whoever sends it. */
    int refused;
};

void tg_buf_init(struct tg_buf *b, size_t max);
/* Sets a new maximum for what is appended from now on and resets refused; the bytes it
 * holds stay (callers bound an empty buffer). */
void tg_buf_bound(struct tg_buf *b, size_t max);
void tg_buf_free(struct tg_buf *b);
/* Empties the buffer, keeping its memory. */
void tg_buf_clear(struct tg_buf *b);
/* TG_OK, TG_ETOOBIG (nothing appended) or TG_ENOMEM. */
int tg_buf_add(struct tg_buf *b, const void *data, size_t len);
int tg_buf_adds(struct tg_buf *b, const char *s);
int tg_buf_printf(struct tg_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int tg_buf_vprintf(struct tg_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* The contents as a string; "" when empty. Valid until the next append or free. */
const char *tg_buf_str(const struct tg_buf *b);

/* ---- time and ids ------------------------------------------------------------------ */

/* Wall clock in milliseconds since the epoch. */
int64_t tg_now_ms(void);
/* Monotonic clock in microseconds, for durations. */
int64_t tg_mono_us(void);
/* Writes ms as RFC 3339 UTC with milliseconds ("2026-11-28T12:00:00.000Z"); out must
 * hold TG_TIME_LEN bytes. */
#define TG_TIME_LEN 25
void tg_time_format(int64_t ms, char out[TG_TIME_LEN]);
/* Parses an RFC 3339 timestamp (Z or +hh:mm offset, optional fraction) or a plain date
 * YYYY-MM-DD into ms since the epoch. TG_OK or TG_EINVAL, also for a day the month does
 * not have (2026-02-31, 2025-02-29): nothing rolls over into the next month. */
int tg_time_parse(const char *s, int64_t *ms);
/* The days of month m (1..12) of year y in the proleptic Gregorian calendar. */
int tg_days_in_month(int y, int m);

/* Fills buf with n cryptographically random bytes. TG_OK or TG_ERR. */
int tg_random(void *buf, size_t n);
/* Writes prefix followed by 2*nbytes random lowercase hex digits and a NUL into out
 * (which must hold strlen(prefix) + 2*nbytes + 1 bytes). TG_OK or TG_ERR. */
int tg_random_id(char *out, size_t outlen, const char *prefix, size_t nbytes);
/* prefix and 32 hex digits: the time in milliseconds (48 bits) then 80 random bits, so
 * that ids made later sort later and the indexes that hold them grow at their end
 * instead of taking a write on a random page each. */
int tg_sortable_id(char *out, size_t outlen, const char *prefix);
/* Overwrites n bytes at p with zeros in a way the compiler may not drop (for secrets). */
void tg_memzero(void *p, size_t n);
/* Lowercase hex of n bytes into out (2n + 1 bytes). */
void tg_hex(const unsigned char *in, size_t n, char *out);

/* Whether s[0..len) is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF). NUL bytes are valid UTF-8; callers that refuse them check. */
int tg_utf8_valid(const char *s, size_t len);

/* ---- text for a terminal ----
 * A stored value (a token label, an error, a name) is shown to people with every control
 * character written visibly, so that it cannot move the cursor, colour the screen or forge
 * a line: \n, \r, \t; other C0 controls and DEL as \xHH; C1 controls (U+0080..U+009F) and
 * the bidirectional overrides and isolates as \uHHHH; a byte that is not UTF-8 as \xHH.
 * Everything else is copied. Every table the CLI prints goes through these. */

/* Appends s shown so, at most max code points of it and then "..."; NULL is "-". TG_OK or
 * the buffer's error. */
int tg_buf_add_shown(struct tg_buf *b, const char *s, size_t max);
/* The same into out (outlen bytes, always NUL-terminated when outlen > 0), ending in "..."
 * when s has more than max code points or does not fit. Returns out. */
const char *tg_shown(const char *s, size_t max, char *out, size_t outlen);

/* Parses a whole decimal integer within [min, max]; TG_OK or TG_EINVAL. No atoi. */
int tg_parse_long(const char *s, long min, long max, long *out);

#endif
