/* The stacked bar chart of the usage page (see tg_chart.h). */
#include "tg_chart.h"

#include <inttypes.h>
#include <stdio.h>

#include "tg_html.h"
#include "tg_price.h"

/* The drawing's own units; the browser scales them to the container. */
#define W 480
#define H 300
#define LEFT 64   /* room for the axis' dollar labels */
#define RIGHT 8
#define TOP 16
#define BOTTOM 40 /* room for the day labels */
#define LEGEND_ROW 20

/* Colours told apart by people with the common colour-vision deficiencies (Okabe-Ito). */
static const char *const palette[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
                                      "#56B4E9", "#D55E00", "#F0E442", "#000000"};
#define NCOLOURS (sizeof(palette) / sizeof(palette[0]))

static int64_t value(const struct tg_chart *c, size_t bar, size_t s)
{
    int64_t v = c->values[bar * c->nseries + s];
    return v > 0 ? v : 0;
}

/* A round top for the axis at or above max: 1, 2 or 5 times a power of ten (in
 * micro-dollars, at least a cent), and into how many round steps it divides. */
static int64_t axis_top(int64_t max, int *steps)
{
    int64_t p = 10000;
    *steps = 5;
    for (;;) {
        if (max <= p)
            return p;
        if (max <= 2 * p) {
            *steps = 4;
            return 2 * p;
        }
        if (max <= 5 * p)
            return 5 * p;
        if (p > INT64_MAX / 100)
            return max;
        p *= 10;
    }
}

/* y of a value on a plot of height ph whose top is top. */
static double y_of(int64_t v, int64_t top, double ph)
{
    return TOP + ph - (double)v / (double)top * ph;
}

int tg_chart_bars(struct tg_buf *b, const struct tg_chart *c)
{
    int64_t max = c->limit > 0 ? c->limit : 0;
    int64_t total = 0;
    for (size_t i = 0; i < c->nbars; i++) {
        int64_t day = 0;
        for (size_t s = 0; s < c->nseries; s++)
            day += value(c, i, s);
        total += day;
        if (day > max)
            max = day;
    }
    int steps;
    int64_t top = axis_top(max, &steps);
    size_t legend_rows = (c->nseries + 2) / 3;
    int height = H + (int)legend_rows * LEGEND_ROW;
    double ph = H - TOP - BOTTOM, pw = W - LEFT - RIGHT;
    char money[40];

    tg_buf_printf(b, "<svg class=\"chart\" viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\" "
                     "xmlns=\"http://www.w3.org/2000/svg\" aria-labelledby=\"chart-title "
                     "chart-desc\">\n<title id=\"chart-title\">", W, height);
    tg_html_escape(b, c->title);
    tg_money_format(total, money, sizeof(money));
    tg_buf_printf(b, "</title>\n<desc id=\"chart-desc\">%zu days, $%s in all, stacked by "
                     "processor</desc>\n", c->nbars, money);

    /* The axis: a line per round step, with its dollar value. */
    for (int k = 0; k <= steps; k++) {
        int64_t v = top / steps * k;
        double y = y_of(v, top, ph);
        tg_money_format(v, money, sizeof(money));
        tg_buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ccc\"/>"
                         "<text x=\"%d\" y=\"%.1f\" font-size=\"13\" text-anchor=\"end\">$%s"
                         "</text>\n", LEFT, y, W - RIGHT, y, LEFT - 4, y + 4, money);
    }

    /* The bars, one segment per processor with its amount as a tooltip. */
    double slot = c->nbars > 0 ? pw / (double)c->nbars : pw;
    double bw = slot * 0.7;
    for (size_t i = 0; i < c->nbars; i++) {
        double x = LEFT + slot * (double)i + (slot - bw) / 2;
        int64_t below = 0;
        for (size_t s = 0; s < c->nseries; s++) {
            int64_t v = value(c, i, s);
            if (v == 0)
                continue;
            double y1 = y_of(below + v, top, ph), y0 = y_of(below, top, ph);
            tg_money_format(v, money, sizeof(money));
            tg_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                             "fill=\"%s\"><title>", x, y1, bw, y0 - y1,
                          palette[s % NCOLOURS]);
            tg_html_escape(b, c->labels[i]);
            tg_buf_adds(b, ": ");
            tg_html_escape(b, c->series[s]);
            tg_buf_printf(b, " $%s</title></rect>\n", money);
            below += v;
        }
        /* Every label when they fit, else every fifth and the last. */
        if (c->nbars <= 16 || i % 5 == 0 || i + 1 == c->nbars) {
            tg_buf_printf(b, "<text x=\"%.1f\" y=\"%d\" font-size=\"13\" "
                             "text-anchor=\"middle\">", x + bw / 2, H - BOTTOM + 16);
            tg_html_escape(b, c->labels[i]);
            tg_buf_adds(b, "</text>\n");
        }
    }
    if (c->limit > 0) {
        double y = y_of(c->limit, top, ph);
        tg_money_format(c->limit, money, sizeof(money));
        tg_buf_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#D55E00\" "
                         "stroke-dasharray=\"6 4\"><title>daily budget $%s</title></line>\n",
                      LEFT, y, W - RIGHT, y, money);
    }

    /* The legend: three processors a row. */
    for (size_t s = 0; s < c->nseries; s++) {
        double x = LEFT + (double)(s % 3) * (pw / 3);
        int y = H - 8 + (int)(s / 3) * LEGEND_ROW;
        tg_buf_printf(b, "<rect x=\"%.1f\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                         "<text x=\"%.1f\" y=\"%d\" font-size=\"13\">", x, y - 10,
                      palette[s % NCOLOURS], x + 16, y);
        tg_html_escape(b, c->series[s]);
        tg_buf_adds(b, "</text>\n");
    }
    int rc = tg_buf_adds(b, "</svg>\n");
    return rc == TG_OK && b->refused ? TG_ETOOBIG : rc;
}
