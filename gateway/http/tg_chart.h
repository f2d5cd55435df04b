/* A stacked bar chart drawn as inline SVG, server-side: spend per day by processor on the
 * usage page. No script and no fonts or styles from elsewhere; the SVG scales to the width
 * of its container (viewBox), so it reads on a phone, and its <title> and <desc> say what it
 * shows for a screen reader (the page also shows the numbers as a table). */
#ifndef TG_CHART_H
#define TG_CHART_H

#include <stddef.h>
#include <stdint.h>

#include "tg_core.h"

struct tg_chart {
    const char *title;          /* e.g. "Spend per day, December 2026" */
    size_t nbars;               /* days */
    const char *const *labels;  /* a label per bar ("1" .. "31") */
    size_t nseries;             /* processors */
    const char *const *series;  /* a name per series, for the legend */
    const int64_t *values;      /* nbars x nseries micro-dollars, row by bar; negative = 0 */
    int64_t limit;              /* a line at this value (a daily budget), or <= 0 for none */
};

/* Appends the chart's <svg> element to b. TG_OK, or TG_ENOMEM / TG_ETOOBIG from b. */
int tg_chart_bars(struct tg_buf *b, const struct tg_chart *c);

#endif
