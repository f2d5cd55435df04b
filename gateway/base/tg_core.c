/* Shared foundations: the per-request pool, bounded buffers, clocks, random ids and
 * number parsing (see tg_core.h for the contracts). */
#include "tg_core.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "tg_clock.h"

const char *tg_rc_str(int rc)
{
    switch (rc) {
    case TG_OK: return "ok";
    case TG_ERR: return "error";
    case TG_ENOMEM: return "out of memory";
    case TG_ETOOBIG: return "too big";
    case TG_ENOTFOUND: return "not found";
    case TG_EEXIST: return "already exists";
    case TG_EBUSY: return "database busy";
    case TG_EINVAL: return "invalid";
    case TG_EDB: return "database error";
    case TG_EDOWN: return "database unreachable";
    case TG_ESTALE: return "changed since checked";
    default: return "unknown error";
    }
}

/* ---- pool ---------------------------------------------------------------------------- */

/* Blocks are chained; the first one is kept across resets so that a worker thread that
 * serves request after request does not go back to malloc for the common small case. */
#define POOL_BLOCK 16384
#define POOL_ALIGN 16

struct pool_block {
    struct pool_block *next;
    size_t size;
    size_t used;
    _Alignas(POOL_ALIGN) unsigned char data[];
};

struct pool_cleanup {
    struct pool_cleanup *next;
    void (*fn)(void *);
    void *data;
};

struct tg_pool {
    struct pool_block *head;   /* the block being carved; chain ends at the first block */
    struct pool_block *first;
    struct pool_cleanup *cleanups;
};

static struct pool_block *block_new(size_t size)
{
    struct pool_block *b = malloc(sizeof(*b) + size);
    if (b == NULL)
        return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

struct tg_pool *tg_pool_create(void)
{
    struct tg_pool *p = malloc(sizeof(*p));
    if (p == NULL)
        return NULL;
    p->first = block_new(POOL_BLOCK);
    if (p->first == NULL) {
        free(p);
        return NULL;
    }
    p->head = p->first;
    p->cleanups = NULL;
    return p;
}

static void run_cleanups(struct tg_pool *p)
{
    while (p->cleanups != NULL) {
        struct pool_cleanup *c = p->cleanups;
        p->cleanups = c->next;
        c->fn(c->data);
    }
}

void tg_pool_reset(struct tg_pool *p)
{
    run_cleanups(p);
    struct pool_block *b = p->head;
    while (b != p->first) {
        struct pool_block *next = b->next;
        free(b);
        b = next;
    }
    p->first->used = 0;
    p->head = p->first;
}

void tg_pool_destroy(struct tg_pool *p)
{
    if (p == NULL)
        return;
    tg_pool_reset(p);
    free(p->first);
    free(p);
}

void *tg_pool_alloc(struct tg_pool *p, size_t n)
{
    size_t need = (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
    if (need < n)
        return NULL;
    struct pool_block *b = p->head;
    if (b->size - b->used < need) {
        size_t size = need > POOL_BLOCK / 4 ? need : POOL_BLOCK;
        b = block_new(size);
        if (b == NULL)
            return NULL;
        /* Large allocations get a block of their own behind the current one, so the
         * space left in the current block is not wasted. */
        if (size == need && p->head != p->first) {
            b->next = p->head->next;
            p->head->next = b;
        } else {
            b->next = p->head;
            p->head = b;
        }
    }
    void *ptr = b->data + b->used;
    b->used += need;
    return ptr;
}

void *tg_pool_calloc(struct tg_pool *p, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    void *ptr = tg_pool_alloc(p, n * size);
    if (ptr != NULL)
        memset(ptr, 0, n * size);
    return ptr;
}

char *tg_pool_strndup(struct tg_pool *p, const char *s, size_t n)
{
    if (s == NULL)
        return NULL;
    char *d = tg_pool_alloc(p, n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *tg_pool_strdup(struct tg_pool *p, const char *s)
{
    return s == NULL ? NULL : tg_pool_strndup(p, s, strlen(s));
}

static int formatted_len(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* The length fmt formats to with ap (which stays unread), or -1 on a formatting error. */
static int formatted_len(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    return n;
}

char *tg_pool_printf(struct tg_pool *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = formatted_len(fmt, ap);
    char *d = n < 0 ? NULL : tg_pool_alloc(p, (size_t)n + 1);
    if (d != NULL)
        vsnprintf(d, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return d;
}

int tg_pool_cleanup(struct tg_pool *p, void (*fn)(void *), void *data)
{
    struct pool_cleanup *c = tg_pool_alloc(p, sizeof(*c));
    if (c == NULL) {
        fn(data);
        return TG_ENOMEM;
    }
    c->fn = fn;
    c->data = data;
    c->next = p->cleanups;
    p->cleanups = c;
    return TG_OK;
}

/* ---- bounded buffer ------------------------------------------------------------------ */

void tg_buf_init(struct tg_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->refused = 0;
}

void tg_buf_bound(struct tg_buf *b, size_t max)
{
    b->max = max;
    b->refused = 0;
}

void tg_buf_free(struct tg_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void tg_buf_clear(struct tg_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

static int buf_reserve(struct tg_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra) {
        b->refused = 1;
        return TG_ETOOBIG;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return TG_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    /* Doubling past the bound would allocate memory no append may use. */
    if (b->max < SIZE_MAX && cap > b->max + 1)
        cap = b->max + 1;
    char *d = realloc(b->data, cap);
    if (d == NULL)
        return TG_ENOMEM;
    b->data = d;
    b->cap = cap;
    return TG_OK;
}

int tg_buf_add(struct tg_buf *b, const void *data, size_t len)
{
    int rc = buf_reserve(b, len);
    if (rc != TG_OK)
        return rc;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return TG_OK;
}

int tg_buf_adds(struct tg_buf *b, const char *s)
{
    return tg_buf_add(b, s, strlen(s));
}

int tg_buf_vprintf(struct tg_buf *b, const char *fmt, va_list ap)
{
    int n = formatted_len(fmt, ap);
    if (n < 0)
        return TG_EINVAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc != TG_OK)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return TG_OK;
}

int tg_buf_printf(struct tg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tg_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

const char *tg_buf_str(const struct tg_buf *b)
{
    return b->data != NULL ? b->data : "";
}

/* ---- time ---------------------------------------------------------------------------- */

int64_t tg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + tg_clock_shift_ms();
}

int64_t tg_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A submission formats the time half a dozen times (its records, the log line), nearly
 * always within one second: each thread keeps the last second it formatted. */
static __thread struct {
    time_t secs;
    int valid;
    char text[20];
} last_second;

void tg_time_format(int64_t ms, char out[TG_TIME_LEN])
{
    time_t secs = (time_t)(ms / 1000);
    int millis = (int)(ms % 1000);
    if (millis < 0) {
        millis += 1000;
        secs -= 1;
    }
    if (!last_second.valid || last_second.secs != secs) {
        struct tm tm;
        gmtime_r(&secs, &tm);
        if (tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999 ||
            strftime(last_second.text, sizeof(last_second.text), "%Y-%m-%dT%H:%M:%S",
                     &tm) != 19) {
            memcpy(out, "0000-00-00T00:00:00.000Z", TG_TIME_LEN);
            return;
        }
        last_second.secs = secs;
        last_second.valid = 1;
    }
    memcpy(out, last_second.text, 19);
    out[19] = '.';
    out[20] = (char)('0' + millis / 100);
    out[21] = (char)('0' + millis / 10 % 10);
    out[22] = (char)('0' + millis % 10);
    out[23] = 'Z';
    out[24] = '\0';
}

/* Reads exactly n digits from *s into *out and advances *s. */
static int digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9')
            return TG_EINVAL;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return TG_OK;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int tg_days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap);
}

int tg_time_parse(const char *s, int64_t *ms)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
    if (digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) || *s++ != '-' ||
        digits(&s, 2, &d))
        return TG_EINVAL;
    /* A day the month does not have (2026-02-31) is refused, not rolled into the next. */
    if (mo < 1 || mo > 12 || d < 1 || d > tg_days_in_month(y, mo))
        return TG_EINVAL;
    if (*s != '\0') {
        if (*s != 'T' && *s != 't' && *s != ' ')
            return TG_EINVAL;
        s++;
        if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi) || *s++ != ':' ||
            digits(&s, 2, &sec))
            return TG_EINVAL;
        if (h > 23 || mi > 59 || sec > 60)
            return TG_EINVAL;
        if (*s == '.') {
            s++;
            int scale = 100, n = 0;
            while (*s >= '0' && *s <= '9') {
                frac += scale * (*s - '0');
                scale /= 10;
                s++;
                n++;
            }
            if (n == 0)
                return TG_EINVAL;
        }
        if (*s == 'Z' || *s == 'z') {
            s++;
        } else if (*s == '+' || *s == '-') {
            int sign = *s == '-' ? -1 : 1, oh, om;
            s++;
            if (digits(&s, 2, &oh) || *s++ != ':' || digits(&s, 2, &om) || oh > 23 || om > 59)
                return TG_EINVAL;
            off = sign * (oh * 60 + om);
        } else {
            return TG_EINVAL;
        }
        if (*s != '\0')
            return TG_EINVAL;
    }
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off * 60;
    *ms = secs * 1000 + frac;
    return TG_OK;
}

/* ---- random ids ---------------------------------------------------------------------- */

int tg_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return TG_ERR;
        }
        p += got;
        n -= (size_t)got;
    }
    return TG_OK;
}

void tg_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digit[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digit[in[i] >> 4];
        out[2 * i + 1] = digit[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void tg_memzero(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n-- > 0)
        *v++ = 0;
}

int tg_random_id(char *out, size_t outlen, const char *prefix, size_t nbytes)
{
    unsigned char raw[64];
    size_t plen = strlen(prefix);
    if (nbytes > sizeof(raw) || outlen < plen + 2 * nbytes + 1)
        return TG_ETOOBIG;
    if (tg_random(raw, nbytes) != TG_OK)
        return TG_ERR;
    memcpy(out, prefix, plen);
    tg_hex(raw, nbytes, out + plen);
    return TG_OK;
}

int tg_sortable_id(char *out, size_t outlen, const char *prefix)
{
    unsigned char raw[16];
    uint64_t ms = (uint64_t)tg_now_ms();
    for (int i = 5; i >= 0; i--, ms >>= 8)
        raw[i] = (unsigned char)(ms & 0xff);
    size_t plen = strlen(prefix);
    if (outlen < plen + 2 * sizeof(raw) + 1)
        return TG_ETOOBIG;
    if (tg_random(raw + 6, sizeof(raw) - 6) != TG_OK)
        return TG_ERR;
    memcpy(out, prefix, plen);
    tg_hex(raw, sizeof(raw), out + plen);
    return TG_OK;
}

int tg_parse_long(const char *s, long min, long max, long *out)
{
    if (s == NULL || *s == '\0')
        return TG_EINVAL;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return TG_EINVAL;
    *out = v;
    return TG_OK;
}

int tg_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return 0;
        }
        if (len - i < n || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < n; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += n;
    }
    return 1;
}

/* ---- text for a terminal ------------------------------------------------------------ */

/* How the character at p is shown: its bytes into piece (at most 7 and a NUL), their count
 * returned, and the input bytes it takes in *used. */
static size_t shown_char(const unsigned char *p, char piece[8], size_t *used)
{
    unsigned char c = p[0];
    *used = 1;
    if (c == '\n' || c == '\r' || c == '\t') {
        piece[0] = '\\';
        piece[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        piece[2] = '\0';
        return 2;
    }
    if (c < 0x20 || c == 0x7f) {
        snprintf(piece, 8, "\\x%02x", c);
        return 4;
    }
    if (c < 0x80) {
        piece[0] = (char)c;
        piece[1] = '\0';
        return 1;
    }
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (n == 0 || strnlen((const char *)p, n) < n || !tg_utf8_valid((const char *)p, n)) {
        snprintf(piece, 8, "\\x%02x", c); /* not UTF-8: some terminals read 0x9b as CSI */
        return 4;
    }
    *used = n;
    unsigned cp = n == 2 ? (unsigned)(c & 0x1f) << 6 | (p[1] & 0x3f)
                 : n == 3 ? (unsigned)(c & 0x0f) << 12 | (unsigned)(p[1] & 0x3f) << 6 |
                                (p[2] & 0x3f)
                          : 0;
    /* C1 controls, and the bidirectional overrides and isolates that reorder a line. */
    if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
        (cp >= 0x2066 && cp <= 0x2069)) {
        snprintf(piece, 8, "\\u%04x", cp);
        return 6;
    }
    memcpy(piece, p, n);
    piece[n] = '\0';
    return n;
}

int tg_buf_add_shown(struct tg_buf *b, const char *s, size_t max)
{
    if (s == NULL)
        return tg_buf_add(b, "-", 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t cps = 0;
    int rc = TG_OK;
    while (*p != '\0' && rc == TG_OK) {
        if (++cps > max)
            return tg_buf_add(b, "...", 3);
        char piece[8];
        size_t used, n = shown_char(p, piece, &used);
        rc = tg_buf_add(b, piece, n);
        p += used;
    }
    return rc;
}

const char *tg_shown(const char *s, size_t max, char *out, size_t outlen)
{
    if (outlen < 4) {
        if (outlen > 0)
            out[0] = '\0';
        return out;
    }
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "-");
    char piece[8];
    size_t used, len = 0, cps = 0;
    /* Whether all of it fits; if not, room is kept for "..." as it is copied. */
    for (const unsigned char *q = p; *q != '\0'; q += used) {
        len += shown_char(q, piece, &used);
        cps++;
    }
    int whole = cps <= max && len < outlen;
    len = cps = 0;
    while (*p != '\0') {
        size_t n = shown_char(p, piece, &used);
        if (!whole && (++cps > max || len + n + 4 > outlen)) {
            memcpy(out + len, "...", 3);
            len += 3;
            break;
        }
        memcpy(out + len, piece, n);
        len += n;
        p += used;
    }
    out[len] = '\0';
    return out;
}
