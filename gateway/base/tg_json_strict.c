/* The RFC 8259 grammar checked over a client's raw bytes before json-c reads them, with
 * the place of the first problem (contract in tg_json_strict.h). */
#include "tg_json_strict.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_core.h"

/* Deepest nesting the checker follows (callers ask for at most 64). */
#define FRAMES_MAX 128
/* The most of a number's text quoted in a message. */
#define QUOTE_MAX 40

/* One open array or object on the way to the current value. */
struct frame {
    int is_obj;
    size_t index;    /* the current element of an array */
    size_t key;      /* offset of the current member's key literal (its opening quote) */
    size_t key_len;  /* that literal's length with both quotes; 0 before the first key */
};

struct scan {
    const char *s;
    size_t len;
    size_t at;
    int depth;      /* open containers */
    int max_depth;  /* the most open containers json-c takes for the caller's max_depth */
    struct frame path[FRAMES_MAX];
    char *err;
    size_t errlen;
};

static int fail(struct scan *sc, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Puts "body is not valid JSON: <what> at offset N" in err; the path stays as it is, for
 * the loc. Always TG_EINVAL. */
static int fail(struct scan *sc, size_t offset, const char *fmt, ...)
{
    char what[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(sc->err, sc->errlen, "body is not valid JSON: %s at offset %zu", what, offset);
    return TG_EINVAL;
}

static int at_end(const struct scan *sc)
{
    return sc->at >= sc->len;
}

static void skip_ws(struct scan *sc)
{
    while (!at_end(sc) && strchr(" \t\r\n", sc->s[sc->at]) != NULL)
        sc->at++;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return TG_EINVAL;
        v = v * 16 + d;
    }
    *out = v;
    return TG_OK;
}

/* A string literal from its opening quote; the UTF-8 of its bytes was checked before.
 * Control characters must be escaped, escapes are JSON's, a \u escape of a UTF-16
 * surrogate comes in a high-low pair, and \u0000 is refused (C strings would end there). */
static int string(struct scan *sc)
{
    size_t start = sc->at++;
    for (;;) {
        if (at_end(sc))
            return fail(sc, start, "a string that does not end");
        unsigned char c = (unsigned char)sc->s[sc->at];
        if (c == '"') {
            sc->at++;
            return TG_OK;
        }
        if (c < 0x20)
            return fail(sc, sc->at, "a control character (U+%04X) in a string must be escaped",
                        c);
        if (c != '\\') {
            sc->at++;
            continue;
        }
        if (sc->at + 1 >= sc->len)
            return fail(sc, start, "a string that does not end");
        char e = sc->s[sc->at + 1];
        if (strchr("\"\\/bfnrt", e) != NULL) {
            sc->at += 2;
            continue;
        }
        unsigned cp;
        if (e != 'u' || sc->at + 6 > sc->len || hex4(sc->s + sc->at + 2, &cp) != TG_OK)
            return fail(sc, sc->at, "an escape that is not JSON's (\\\" \\\\ \\/ \\b \\f \\n "
                        "\\r \\t or \\u and four hex digits)");
        if (cp == 0)
            return fail(sc, sc->at, "\\u0000 (a NUL character) in a string");
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return fail(sc, sc->at, "a lone UTF-16 surrogate \\u%04x in a string (a low "
                        "surrogate must follow a high one)", cp);
        if (cp >= 0xd800 && cp <= 0xdbff) {
            unsigned lo;
            const char *p = sc->s + sc->at + 6;
            if (sc->at + 12 > sc->len || p[0] != '\\' || p[1] != 'u' ||
                hex4(p + 2, &lo) != TG_OK || lo < 0xdc00 || lo > 0xdfff)
                return fail(sc, sc->at, "a lone UTF-16 surrogate \\u%04x in a string (a high "
                            "surrogate must be followed by a low one)", cp);
            sc->at += 6;
        }
        sc->at += 6;
    }
}

/* Whether the magnitude digits[0..n) (no sign, no leading zero) is above limit. */
static int above(const char *digits, size_t n, const char *limit)
{
    size_t m = strlen(limit);
    if (n != m)
        return n > m;
    return memcmp(digits, limit, n) > 0;
}

/* A number: JSON's form, and a value json-c holds exactly. An integer (no fraction, no
 * exponent) must fit int64 or, when positive, uint64 (json-c would saturate it); any other
 * number must be a finite double that does not underflow to zero (json-c keeps its text
 * and forwards it as written, so the upstream reads what the client wrote). */
static int number(struct scan *sc)
{
    const char *s = sc->s;
    size_t start = sc->at, i = sc->at;
    int neg = s[i] == '-';
    if (neg)
        i++;
    if (i < sc->len && (s[i] == 'I' || s[i] == 'N'))
        return fail(sc, start, "NaN and Infinity are not JSON numbers");
    size_t int_start = i;
    if (i < sc->len && s[i] == '0') {
        i++;
    } else if (i < sc->len && s[i] >= '1' && s[i] <= '9') {
        while (i < sc->len && is_digit(s[i]))
            i++;
    } else {
        return fail(sc, start, "a number without digits");
    }
    size_t int_len = i - int_start;
    int integer = 1, nonzero = 0;
    for (size_t k = int_start; k < i; k++)
        nonzero |= s[k] != '0';
    if (i < sc->len && is_digit(s[i]))
        return fail(sc, start, "a number with a leading zero");
    if (i < sc->len && s[i] == '.') {
        integer = 0;
        i++;
        if (i >= sc->len || !is_digit(s[i]))
            return fail(sc, start, "a number with no digit after its '.'");
        while (i < sc->len && is_digit(s[i]))
            nonzero |= s[i++] != '0';
    }
    if (i < sc->len && (s[i] == 'e' || s[i] == 'E')) {
        integer = 0;
        i++;
        if (i < sc->len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= sc->len || !is_digit(s[i]))
            return fail(sc, start, "a number with no digit in its exponent");
        while (i < sc->len && is_digit(s[i]))
            i++;
    }
    sc->at = i;
    size_t n = i - start;
    int quoted = n > QUOTE_MAX ? QUOTE_MAX : (int)n;
    const char *more = n > QUOTE_MAX ? "..." : "";
    if (integer) {
        if (above(s + int_start, int_len, neg ? "9223372036854775808" : "18446744073709551615"))
            return fail(sc, start, "the integer %.*s%s is beyond what the gateway forwards "
                        "exactly (-2^63 to 2^64-1)", quoted, s + start, more);
        return TG_OK;
    }
    char small[64], *text = n < sizeof(small) ? small : malloc(n + 1);
    if (text == NULL) {
        snprintf(sc->err, sc->errlen, "out of memory");
        return TG_ENOMEM;
    }
    memcpy(text, s + start, n);
    text[n] = '\0';
    double v = strtod(text, NULL);
    if (text != small)
        free(text);
    if (isinf(v))
        return fail(sc, start, "the number %.*s%s is beyond the range of a double", quoted,
                    s + start, more);
    if (v == 0.0 && nonzero)
        return fail(sc, start, "the number %.*s%s is too small for a double: it would be read "
                    "as 0", quoted, s + start, more);
    return TG_OK;
}

static int literal(struct scan *sc, const char *word)
{
    size_t n = strlen(word);
    if (sc->len - sc->at < n || memcmp(sc->s + sc->at, word, n) != 0)
        return fail(sc, sc->at, "an unexpected character '%c'", sc->s[sc->at]);
    sc->at += n;
    return TG_OK;
}

static int value(struct scan *sc);

/* An array or an object, from its opening bracket. */
static int container(struct scan *sc)
{
    int is_obj = sc->s[sc->at] == '{';
    char close = is_obj ? '}' : ']';
    if (sc->depth >= sc->max_depth)
        return fail(sc, sc->at, "nesting deeper than %d levels", sc->max_depth);
    struct frame *f = &sc->path[sc->depth++];
    memset(f, 0, sizeof(*f));
    f->is_obj = is_obj;
    sc->at++;
    skip_ws(sc);
    if (!at_end(sc) && sc->s[sc->at] == close) {
        sc->at++;
        sc->depth--;
        return TG_OK;
    }
    for (;;) {
        if (is_obj) {
            skip_ws(sc);
            if (at_end(sc))
                return fail(sc, sc->at, "unexpected end of input");
            if (sc->s[sc->at] != '"')
                return fail(sc, sc->at, "a key must be a string in double quotes");
            size_t key = sc->at;
            int rc = string(sc);
            if (rc != TG_OK)
                return rc;
            f->key = key;
            f->key_len = sc->at - key;
            skip_ws(sc);
            if (at_end(sc) || sc->s[sc->at] != ':')
                return fail(sc, sc->at, "expected ':' after a key");
            sc->at++;
        }
        int rc = value(sc);
        if (rc != TG_OK)
            return rc;
        skip_ws(sc);
        if (at_end(sc))
            return fail(sc, sc->at, "unexpected end of input");
        char c = sc->s[sc->at++];
        if (c == close)
            break;
        if (c != ',')
            return fail(sc, sc->at - 1, "expected ',' or '%c'", close);
        f->index++;
        f->key_len = 0;
    }
    sc->depth--;
    return TG_OK;
}

static int value(struct scan *sc)
{
    skip_ws(sc);
    if (at_end(sc))
        return fail(sc, sc->at, "unexpected end of input");
    char c = sc->s[sc->at];
    switch (c) {
    case '{':
    case '[':
        return container(sc);
    case '"':
        return string(sc);
    case 't':
        return literal(sc, "true");
    case 'f':
        return literal(sc, "false");
    case 'n':
        return literal(sc, "null");
    case 'N':
    case 'I':
        return fail(sc, sc->at, "NaN and Infinity are not JSON numbers");
    default:
        if (c == '-' || is_digit(c))
            return number(sc);
        if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
            return fail(sc, sc->at, "an unexpected byte 0x%02x", (unsigned char)c);
        return fail(sc, sc->at, "an unexpected character '%c'", c);
    }
}

/* The loc of the value the scan stopped in: "body", then each open container's key (as
 * decoded from its literal) or index. NULL when out of memory. */
static json_object *loc_of(const struct scan *sc)
{
    json_object *loc = json_object_new_array();
    if (loc != NULL)
        json_object_array_add(loc, json_object_new_string("body"));
    for (int d = 0; loc != NULL && d < sc->depth; d++) {
        const struct frame *f = &sc->path[d];
        json_object *part = NULL;
        if (!f->is_obj) {
            part = json_object_new_int64((int64_t)f->index);
        } else if (f->key_len > 0) {
            /* Only keys that were read whole are on the path, so this parse succeeds. */
            json_tokener *tok = json_tokener_new();
            if (tok != NULL)
                part = json_tokener_parse_ex(tok, sc->s + f->key, (int)f->key_len);
            json_tokener_free(tok);
        } else {
            break;  /* the problem is in the object's keys: the object is the place */
        }
        if (part == NULL || json_object_array_add(loc, part) != 0) {
            json_object_put(part);
            json_object_put(loc);
            loc = NULL;
        }
    }
    return loc;
}

int tg_json_strict_check(const char *text, size_t len, int max_depth, char *err, size_t errlen,
                         json_object **loc)
{
    struct scan sc;
    memset(&sc, 0, sizeof(sc));
    sc.s = text;
    sc.len = len;
    /* json-c refuses its max_depth-th open container: refuse it here first, with a place. */
    sc.max_depth = max_depth - 1 < FRAMES_MAX ? max_depth - 1 : FRAMES_MAX;
    sc.err = err;
    sc.errlen = errlen;
    if (loc != NULL)
        *loc = NULL;
    int rc = value(&sc);
    if (rc == TG_OK) {
        skip_ws(&sc);
        if (!at_end(&sc))
            rc = fail(&sc, sc.at, "trailing data");
    }
    if (rc == TG_EINVAL && loc != NULL)
        *loc = loc_of(&sc);
    return rc;
}
