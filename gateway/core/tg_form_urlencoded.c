/* application/x-www-form-urlencoded bodies of form posts (see tg_form_urlencoded.h): the
 * '&'-separated pairs, percent-decoded; every pair becomes a field of the submission. */
#include "tg_form_urlencoded.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tg_core.h"

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes s[0..n) into dst (n bytes suffice): '+' is a space, %XX a byte. Returns the
 * decoded length, or SIZE_MAX with *bad at the offending '%'. */
static size_t unescape(const char *s, size_t n, char *dst, size_t *bad)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = n - i >= 3 ? hex(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex(s[i + 2]) : -1;
            if (lo < 0) {
                *bad = i;
                return SIZE_MAX;
            }
            dst[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dst[k++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    return k;
}

/* One name[=value] pair at body[at..at+n); scratch holds n + 1 bytes. */
static int url_pair(struct form *f, const char *body, size_t at, size_t n, char *scratch)
{
    const char *s = body + at;
    const char *eq = memchr(s, '=', n);
    size_t raw = eq != NULL ? (size_t)(eq - s) : n;
    size_t bad = 0;
    size_t nlen = unescape(s, raw, scratch, &bad);
    if (nlen == SIZE_MAX)
        return tg_form_field_fail(f, "bad percent escape at byte %zu of the body", at + bad);
    char *v = scratch + nlen + 1;
    size_t vlen = eq != NULL ? unescape(eq + 1, n - raw - 1, v, &bad) : 0;
    if (vlen == SIZE_MAX)
        return tg_form_field_fail(f, "bad percent escape at byte %zu of the body",
                                  at + raw + 1 + bad);
    int rc = tg_form_field_check_text(f, scratch, nlen, v, vlen);
    if (rc != TG_OK)
        return rc;
    scratch[nlen] = '\0';
    return tg_form_field_add(f, scratch, v, vlen, NULL);
}

int tg_form_urlencoded_decode(struct form *f, const char *body, size_t len)
{
    char *scratch = malloc(len + 1);
    if (scratch == NULL)
        return TG_ENOMEM;
    int rc = TG_OK;
    for (size_t i = 0; i < len && rc == TG_OK;) {
        const char *amp = memchr(body + i, '&', len - i);
        size_t end = amp != NULL ? (size_t)(amp - body) : len;
        if (end > i)
            rc = url_pair(f, body, i, end - i, scratch);
        i = end + 1;
    }
    free(scratch);
    return rc;
}
