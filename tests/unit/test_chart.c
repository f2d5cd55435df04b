/* Unit tests of the usage page's chart (tg_chart.c): segments for what was spent and
 * nothing for what was not, heights that add up, escaped names, the budget line, and a
 * buffer too small for the drawing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_chart.h"
#include "tg_test.h"

static size_t count(const char *s, const char *what)
{
    size_t n = 0;
    for (const char *p = strstr(s, what); p != NULL; p = strstr(p + 1, what))
        n++;
    return n;
}

static void test_stacked(void)
{
    const char *labels[] = {"1", "2", "3"};
    const char *series[] = {"base", "core", "<pro>"};
    /* Day 1: $0.03 base + $0.05 core; day 2 nothing; day 3: $1.00 "<pro>". */
    const int64_t values[] = {30000, 50000, 0, 0, 0, 0, 0, -5, 1000000};
    struct tg_chart c = {"Spend & more", 3, labels, 3, series, values, 0};
    struct tg_buf b;
    tg_buf_init(&b, 1 << 20);
    CHECK(tg_chart_bars(&b, &c) == TG_OK);
    const char *svg = tg_buf_str(&b);
    CHECK(strncmp(svg, "<svg ", 5) == 0);
    CHECK(strstr(svg, "viewBox=\"0 0 480 ") != NULL);
    CHECK(strstr(svg, "<title id=\"chart-title\">Spend &amp; more</title>") != NULL);
    CHECK(strstr(svg, "$1.08 in all") != NULL);
    /* Three segments (a negative value draws nothing), each with its amount. */
    CHECK(count(svg, "<rect x=") == 3 + 3); /* and three legend squares */
    CHECK(strstr(svg, "<title>1: base $0.03</title>") != NULL);
    CHECK(strstr(svg, "<title>1: core $0.05</title>") != NULL);
    CHECK(strstr(svg, "<title>3: &lt;pro&gt; $1.00</title>") != NULL);
    CHECK(strstr(svg, "<pro>") == NULL);
    /* The axis tops at a round $1.00, in five steps. */
    CHECK(strstr(svg, ">$1.00</text>") != NULL);
    CHECK(strstr(svg, ">$0.20</text>") != NULL);
    CHECK(strstr(svg, "stroke-dasharray") == NULL);
    /* The $1.00 bar fills the plot: height 244 (300 - 16 - 40). */
    CHECK(strstr(svg, "height=\"244.0\" fill=\"#009E73\"") != NULL);
    CHECK(count(svg, "height=\"-") == 0);
    tg_buf_free(&b);
}

static void test_limit_and_many_days(void)
{
    const char *labels[31];
    char names[31][4];
    int64_t values[31];
    for (int i = 0; i < 31; i++) {
        snprintf(names[i], sizeof(names[i]), "%d", i + 1);
        labels[i] = names[i];
        values[i] = 10000 * i;
    }
    const char *series[] = {"core"};
    struct tg_chart c = {"December", 31, labels, 1, series, values, 500000};
    struct tg_buf b;
    tg_buf_init(&b, 1 << 20);
    CHECK(tg_chart_bars(&b, &c) == TG_OK);
    const char *svg = tg_buf_str(&b);
    CHECK(strstr(svg, "<title>daily budget $0.50</title>") != NULL);
    /* 31 days: every fifth labelled, and the last. */
    CHECK(strstr(svg, "text-anchor=\"middle\">1</text>") != NULL);
    CHECK(strstr(svg, "text-anchor=\"middle\">6</text>") != NULL);
    CHECK(strstr(svg, "text-anchor=\"middle\">2</text>") == NULL);
    CHECK(strstr(svg, "text-anchor=\"middle\">31</text>") != NULL);
    tg_buf_free(&b);

    struct tg_buf small;
    tg_buf_init(&small, 200);
    CHECK(tg_chart_bars(&small, &c) == TG_ETOOBIG);
    tg_buf_free(&small);

    /* No days at all still draws an empty, valid chart. */
    struct tg_chart none = {"Nothing yet", 0, NULL, 1, series, NULL, 0};
    tg_buf_init(&b, 1 << 20);
    CHECK(tg_chart_bars(&b, &none) == TG_OK);
    CHECK(strstr(tg_buf_str(&b), "$0.00 in all") != NULL);
    CHECK(strstr(tg_buf_str(&b), "</svg>") != NULL);
    tg_buf_free(&b);
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"stacked", test_stacked},
        {"limit_and_many_days", test_limit_and_many_days},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
