/* What runs cost: Parallel's published price list (US dollars per 1,000 runs by processor;
 * a "-fast" variant costs what its base does), in integer micro-dollars per run so that
 * estimates add up exactly. The operator's overrides, each with the date it takes effect,
 * live in the store; this is the table shipped with the gateway. */
#ifndef TG_PRICE_H
#define TG_PRICE_H

#include <stddef.h>
#include <stdint.h>

/* Micro-dollars in a dollar. */
#define TG_MICRO_USD 1000000LL

/* The processor a price is listed under: processor without a "-fast" suffix, into out.
 * TG_OK, or TG_EINVAL (empty, or longer than out). */
int tg_price_listed_name(const char *processor, char *out, size_t outlen);

/* The published price of one run of processor (its -fast variant included) into *micro.
 * TG_OK, or TG_ENOTFOUND for a processor the list does not have. */
int tg_price_published(const char *processor, int64_t *micro);

/* The published list, in order: the i-th processor's name and price; NULL past its end. */
const char *tg_price_published_at(size_t i, int64_t *micro);

/* micro-dollars as dollars: "12.50", "0.005", "-1.25" (at least two decimals, at most six,
 * no trailing zeros past the second). */
void tg_money_format(int64_t micro, char *out, size_t outlen);

/* Parses dollars ("12", "12.5", "0.000001") into micro-dollars: TG_OK, or TG_EINVAL
 * (not a non-negative amount, more than six decimals, above a trillion dollars). */
int tg_money_parse(const char *s, int64_t *micro);

#endif
