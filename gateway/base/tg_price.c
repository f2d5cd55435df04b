/* Prices (see tg_price.h). */
#include "tg_price.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tg_core.h"

/* Parallel's price list: dollars per 1,000 runs, so micro-dollars per run = USD x 1,000. */
static const struct {
    const char *processor;
    int64_t micro;
} published[] = {
    {"lite", 5 * 1000},        {"base", 10 * 1000},      {"core", 25 * 1000},
    {"core2x", 50 * 1000},     {"pro", 100 * 1000},      {"ultra", 300 * 1000},
    {"ultra2x", 600 * 1000},   {"ultra4x", 1200 * 1000}, {"ultra8x", 2400 * 1000},
};

#define FAST_SUFFIX "-fast"

int tg_price_listed_name(const char *processor, char *out, size_t outlen)
{
    size_t n = processor != NULL ? strlen(processor) : 0;
    size_t sl = sizeof(FAST_SUFFIX) - 1;
    if (n > sl && strcmp(processor + n - sl, FAST_SUFFIX) == 0)
        n -= sl;
    if (n == 0 || n >= outlen)
        return TG_EINVAL;
    memcpy(out, processor, n);
    out[n] = '\0';
    return TG_OK;
}

int tg_price_published(const char *processor, int64_t *micro)
{
    char name[64];
    if (tg_price_listed_name(processor, name, sizeof(name)) != TG_OK)
        return TG_ENOTFOUND;
    for (size_t i = 0; i < sizeof(published) / sizeof(published[0]); i++) {
        if (strcmp(published[i].processor, name) == 0) {
            *micro = published[i].micro;
            return TG_OK;
        }
    }
    return TG_ENOTFOUND;
}

const char *tg_price_published_at(size_t i, int64_t *micro)
{
    if (i >= sizeof(published) / sizeof(published[0]))
        return NULL;
    if (micro != NULL)
        *micro = published[i].micro;
    return published[i].processor;
}

void tg_money_format(int64_t micro, char *out, size_t outlen)
{
    const char *sign = micro < 0 ? "-" : "";
    /* Negated as unsigned: INT64_MIN has no positive twin. */
    uint64_t v = micro < 0 ? (uint64_t)0 - (uint64_t)micro : (uint64_t)micro;
    uint64_t unit = (uint64_t)TG_MICRO_USD, frac = v % unit;
    int digits = 6;
    while (digits > 2 && frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    snprintf(out, outlen, "%s%" PRIu64 ".%0*" PRIu64, sign, v / unit, digits, frac);
}

int tg_money_parse(const char *s, int64_t *micro)
{
    if (s == NULL || *s == '\0')
        return TG_EINVAL;
    int64_t whole = 0, frac = 0;
    int ndigits = 0, nfrac = -1;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '.' && nfrac < 0 && ndigits > 0) {
            nfrac = 0;
        } else if (*p >= '0' && *p <= '9') {
            if (nfrac < 0) {
                if (++ndigits > 12)
                    return TG_EINVAL; /* a trillion dollars is no budget */
                whole = whole * 10 + (*p - '0');
            } else {
                if (++nfrac > 6)
                    return TG_EINVAL;
                frac = frac * 10 + (*p - '0');
            }
        } else {
            return TG_EINVAL;
        }
    }
    if (nfrac == 0)
        return TG_EINVAL; /* "12." */
    for (int i = nfrac < 0 ? 0 : nfrac; i < 6; i++)
        frac *= 10;
    *micro = whole * TG_MICRO_USD + frac;
    return TG_OK;
}
