/* A team's budgets and their current periods, and the one rule that decides whether a
 * submission's estimate fits: shared by the store's backends (SQLite decides with it,
 * PostgreSQL explains with it what its conditional UPDATE refused) so that both refuse
 * alike. Periods are UTC calendar months ("2026-12") and days ("2026-12-03"); amounts are
 * micro-dollars (tg_price.h). */
#ifndef TG_BUDGET_H
#define TG_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#define TG_MONTH_LEN 8 /* "YYYY-MM" and its NUL */
#define TG_DAY_LEN 11  /* "YYYY-MM-DD" and its NUL */

/* A team's budget row: the amounts (0: none) and what its current month and day have
 * spent (the estimates of the runs created plus what open submissions hold). */
struct tg_budget {
    int64_t monthly_micro;
    int64_t daily_micro;
    int soft;                   /* the budgets only report, they never refuse */
    char month[TG_MONTH_LEN];   /* the month month_micro counts */
    int64_t month_micro;
    char day[TG_DAY_LEN];       /* the day day_micro counts */
    int64_t day_micro;
};

/* What a budget said of one admission. */
struct tg_budget_note {
    int has_budget;             /* the team has a budget (the fields below mean something) */
    int refused;                /* a hard budget refused it: which, period and amounts say */
    const char *which;          /* "monthly" or "daily" (static) */
    char period[TG_DAY_LEN];    /* the refusing budget's period */
    int64_t budget_micro;       /* its amount */
    int64_t spent_micro;        /* what the period has spent and holds */
    int64_t cost_micro;         /* the submission's estimate */
    const char *crossed;        /* admitted: the soft budget it took past its amount
                                   ("monthly" or "daily"), else NULL */
};

/* The UTC month and day of ms since the epoch. */
void tg_budget_period(int64_t ms, char month[TG_MONTH_LEN], char day[TG_DAY_LEN]);

/* What b's month and day have spent as of month and day: a later period has spent nothing
 * yet; an earlier one (a host whose clock is behind) counts in b's. */
int64_t tg_budget_month_spent(const struct tg_budget *b, const char *month);
int64_t tg_budget_day_spent(const struct tg_budget *b, const char *day);

/* Takes cost from b as of month and day. TG_OK: b's periods moved on to month and day
 * (never back) with cost added, and note->crossed set when a soft budget passed its
 * amount; TG_ETOOBIG: a hard budget would be passed, b is unchanged and note says which
 * (the monthly one first). note may be NULL. */
int tg_budget_take(struct tg_budget *b, const char *month, const char *day, int64_t cost,
                   struct tg_budget_note *note);

/* A budget as the admin log and the answers write it, into out: {"monthly_usd":"0.10",
 * "daily_usd":"0.00","soft":false}. */
void tg_budget_json(char *out, size_t outlen, int64_t monthly_micro, int64_t daily_micro,
                    int soft);

#endif
