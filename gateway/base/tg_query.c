/* Query strings (contract in tg_query.h). */
#include "tg_query.h"

#include <string.h>

#include "tg_core.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int decode(const char *s, size_t n, int plus_is_space, char *out, size_t outlen)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+' && plus_is_space) {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || hi * 16 + lo == 0)
                return TG_EINVAL;
            c = hi * 16 + lo;
            i += 2;
        }
        if (j + 1 >= outlen)
            return TG_EINVAL;
        out[j++] = (char)c;
    }
    if (outlen == 0)
        return TG_EINVAL;
    out[j] = '\0';
    return tg_utf8_valid(out, j) ? TG_OK : TG_EINVAL;
}

int tg_query_decode(const char *s, size_t n, char *out, size_t outlen)
{
    return decode(s, n, 0, out, outlen);
}

int tg_query_decode_form(const char *s, size_t n, char *out, size_t outlen)
{
    return decode(s, n, 1, out, outlen);
}

int tg_query_get(const char *query, const char *name, char *out, size_t outlen)
{
    int found = 0;
    size_t nlen = strlen(name);
    for (const char *p = query != NULL ? query : ""; *p != '\0';) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        if (eq != NULL && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0 &&
            eq + 1 < p + len) {
            if (found++ > 0)
                return TG_EINVAL;
            if (tg_query_decode(eq + 1, (size_t)(p + len - eq - 1), out, outlen) != TG_OK)
                return TG_EINVAL;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return found ? TG_OK : TG_ENOTFOUND;
}
