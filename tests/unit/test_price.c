/* Unit tests of prices (tg_price.c): the published list, -fast variants, unknown
 * processors, and dollars written and read in exact micro-dollars. */
#include <stdint.h>
#include <string.h>

#include "tg_core.h"
#include "tg_price.h"
#include "tg_test.h"

static void test_published(void)
{
    int64_t m = -1;
    CHECK(tg_price_published("lite", &m) == TG_OK && m == 5000);
    CHECK(tg_price_published("base", &m) == TG_OK && m == 10000);
    CHECK(tg_price_published("core", &m) == TG_OK && m == 25000);
    CHECK(tg_price_published("pro-fast", &m) == TG_OK && m == 100000);
    CHECK(tg_price_published("ultra8x", &m) == TG_OK && m == 2400000);
    CHECK(tg_price_published("ultra8x-fast", &m) == TG_OK && m == 2400000);
    CHECK(tg_price_published("turbo", &m) == TG_ENOTFOUND);
    CHECK(tg_price_published("-fast", &m) == TG_ENOTFOUND);
    CHECK(tg_price_published("", &m) == TG_ENOTFOUND);
    CHECK(tg_price_published(NULL, &m) == TG_ENOTFOUND);
    CHECK(tg_price_published("Core", &m) == TG_ENOTFOUND);
    size_t n = 0;
    int64_t sum = 0;
    const char *name;
    while ((name = tg_price_published_at(n, &m)) != NULL) {
        sum += m;
        n++;
    }
    CHECK(n == 9);
    CHECK(sum == (5 + 10 + 25 + 50 + 100 + 300 + 600 + 1200 + 2400) * 1000);
    char listed[16];
    CHECK(tg_price_listed_name("core2x-fast", listed, sizeof(listed)) == TG_OK);
    CHECK_STR(listed, "core2x");
    CHECK(tg_price_listed_name("a-very-long-processor-name", listed, sizeof(listed)) ==
          TG_EINVAL);
}

static void test_money(void)
{
    char out[40];
    tg_money_format(0, out, sizeof(out));
    CHECK_STR(out, "0.00");
    tg_money_format(100000, out, sizeof(out));
    CHECK_STR(out, "0.10");
    tg_money_format(5000, out, sizeof(out));
    CHECK_STR(out, "0.005");
    tg_money_format(1, out, sizeof(out));
    CHECK_STR(out, "0.000001");
    tg_money_format(12500000, out, sizeof(out));
    CHECK_STR(out, "12.50");
    tg_money_format(-1250000, out, sizeof(out));
    CHECK_STR(out, "-1.25");
    tg_money_format(INT64_MIN, out, sizeof(out));
    CHECK_STR(out, "-9223372036854.775808");

    int64_t m = -1;
    CHECK(tg_money_parse("0.10", &m) == TG_OK && m == 100000);
    CHECK(tg_money_parse("12", &m) == TG_OK && m == 12000000);
    CHECK(tg_money_parse("0.000001", &m) == TG_OK && m == 1);
    CHECK(tg_money_parse("1000000000000", &m) == TG_EINVAL);
    CHECK(tg_money_parse("999999999999.999999", &m) == TG_OK && m == 999999999999999999LL);
    const char *bad[] = {"", "-1", "1.", ".5", "1.0000001", "1e3", "1,5", " 1", "1.2.3", NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        CHECK(tg_money_parse(bad[i], &m) == TG_EINVAL);
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"published", test_published},
        {"money", test_money},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
