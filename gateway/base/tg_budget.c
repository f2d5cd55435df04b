/* Budgets (see tg_budget.h). */
#include "tg_budget.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tg_core.h"
#include "tg_price.h"

void tg_budget_period(int64_t ms, char month[TG_MONTH_LEN], char day[TG_DAY_LEN])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(month, TG_MONTH_LEN, "%Y-%m", &tm);
    strftime(day, TG_DAY_LEN, "%Y-%m-%d", &tm);
}

int64_t tg_budget_month_spent(const struct tg_budget *b, const char *month)
{
    return strcmp(month, b->month) > 0 ? 0 : b->month_micro;
}

int64_t tg_budget_day_spent(const struct tg_budget *b, const char *day)
{
    return strcmp(day, b->day) > 0 ? 0 : b->day_micro;
}

static void note_refusal(struct tg_budget_note *note, const char *which, const char *period,
                         int64_t budget, int64_t spent, int64_t cost)
{
    if (note == NULL)
        return;
    note->refused = 1;
    note->which = which;
    snprintf(note->period, sizeof(note->period), "%s", period);
    note->budget_micro = budget;
    note->spent_micro = spent;
    note->cost_micro = cost;
}

int tg_budget_take(struct tg_budget *b, const char *month, const char *day, int64_t cost,
                   struct tg_budget_note *note)
{
    int64_t m = tg_budget_month_spent(b, month), d = tg_budget_day_spent(b, day);
    const char *pm = strcmp(month, b->month) > 0 ? month : b->month;
    const char *pd = strcmp(day, b->day) > 0 ? day : b->day;
    if (note != NULL) {
        note->has_budget = 1;
        note->cost_micro = cost;
    }
    if (!b->soft && b->monthly_micro > 0 && m + cost > b->monthly_micro) {
        note_refusal(note, "monthly", pm, b->monthly_micro, m, cost);
        return TG_ETOOBIG;
    }
    if (!b->soft && b->daily_micro > 0 && d + cost > b->daily_micro) {
        note_refusal(note, "daily", pd, b->daily_micro, d, cost);
        return TG_ETOOBIG;
    }
    if (note != NULL && b->soft) {
        if (b->monthly_micro > 0 && m <= b->monthly_micro && m + cost > b->monthly_micro) {
            note->crossed = "monthly";
            note->budget_micro = b->monthly_micro;
            note->spent_micro = m;
            snprintf(note->period, sizeof(note->period), "%s", pm);
        } else if (b->daily_micro > 0 && d <= b->daily_micro && d + cost > b->daily_micro) {
            note->crossed = "daily";
            note->budget_micro = b->daily_micro;
            note->spent_micro = d;
            snprintf(note->period, sizeof(note->period), "%s", pd);
        }
    }
    /* Periods move on, never back: pm and pd may point into b itself. */
    char nm[TG_MONTH_LEN], nd[TG_DAY_LEN];
    snprintf(nm, sizeof(nm), "%s", pm);
    snprintf(nd, sizeof(nd), "%s", pd);
    memcpy(b->month, nm, sizeof(nm));
    memcpy(b->day, nd, sizeof(nd));
    b->month_micro = m + cost;
    b->day_micro = d + cost;
    return TG_OK;
}

void tg_budget_json(char *out, size_t outlen, int64_t monthly_micro, int64_t daily_micro,
                    int soft)
{
    char m[32], d[32];
    tg_money_format(monthly_micro, m, sizeof(m));
    tg_money_format(daily_micro, d, sizeof(d));
    snprintf(out, outlen, "{\"monthly_usd\":\"%s\",\"daily_usd\":\"%s\",\"soft\":%s}", m, d,
             soft ? "true" : "false");
}
