/* Unit tests of the budget rule (tg_budget.c), the one both stores refuse by: periods that
 * move on but never back, hard budgets refusing what would pass them (and only that), soft
 * ones crossed once, and a clock behind counting in the current period. */
#include <stdint.h>
#include <string.h>

#include "tg_budget.h"
#include "tg_core.h"
#include "tg_test.h"

static struct tg_budget budget(int64_t monthly, int64_t daily, int soft)
{
    struct tg_budget b;
    memset(&b, 0, sizeof(b));
    b.monthly_micro = monthly;
    b.daily_micro = daily;
    b.soft = soft;
    memcpy(b.month, "2031-01", 8);
    memcpy(b.day, "2031-01-31", 11);
    return b;
}

static void test_hard(void)
{
    struct tg_budget b = budget(100000, 0, 0);
    struct tg_budget_note n;
    for (int i = 0; i < 3; i++) {
        memset(&n, 0, sizeof(n));
        CHECK(tg_budget_take(&b, "2031-01", "2031-01-31", 30000, &n) == TG_OK);
        CHECK(!n.refused && n.crossed == NULL);
    }
    CHECK(b.month_micro == 90000);
    memset(&n, 0, sizeof(n));
    CHECK(tg_budget_take(&b, "2031-01", "2031-01-31", 20000, &n) == TG_ETOOBIG);
    CHECK(n.refused && strcmp(n.which, "monthly") == 0);
    CHECK_STR(n.period, "2031-01");
    CHECK(n.budget_micro == 100000 && n.spent_micro == 90000 && n.cost_micro == 20000);
    CHECK(b.month_micro == 90000); /* unchanged */
    CHECK(tg_budget_take(&b, "2031-01", "2031-01-31", 10000, NULL) == TG_OK);
    CHECK(b.month_micro == 100000); /* exactly at the budget is within it */
    CHECK(tg_budget_take(&b, "2031-01", "2031-01-31", 1, NULL) == TG_ETOOBIG);
    /* A new month starts from nothing; a host whose clock is behind counts in it. */
    CHECK(tg_budget_take(&b, "2031-02", "2031-02-01", 30000, NULL) == TG_OK);
    CHECK_STR(b.month, "2031-02");
    CHECK(b.month_micro == 30000 && b.day_micro == 30000);
    CHECK(tg_budget_take(&b, "2031-01", "2031-01-31", 10000, NULL) == TG_OK);
    CHECK_STR(b.month, "2031-02");
    CHECK_STR(b.day, "2031-02-01");
    CHECK(b.month_micro == 40000);
    CHECK(tg_budget_month_spent(&b, "2031-03") == 0);
    CHECK(tg_budget_month_spent(&b, "2031-02") == 40000);
}

static void test_daily(void)
{
    struct tg_budget b = budget(0, 50000, 0);
    struct tg_budget_note n;
    memset(&n, 0, sizeof(n));
    CHECK(tg_budget_take(&b, "2031-01", "2031-01-31", 50000, &n) == TG_OK);
    CHECK(tg_budget_take(&b, "2031-01", "2031-01-31", 1, &n) == TG_ETOOBIG);
    CHECK(strcmp(n.which, "daily") == 0);
    CHECK_STR(n.period, "2031-01-31");
    CHECK(tg_budget_take(&b, "2031-02", "2031-02-01", 50000, NULL) == TG_OK);
}

static void test_soft(void)
{
    struct tg_budget b = budget(50000, 0, 1);
    struct tg_budget_note n;
    memset(&n, 0, sizeof(n));
    CHECK(tg_budget_take(&b, "2031-01", "2031-01-31", 30000, &n) == TG_OK && n.crossed == NULL);
    memset(&n, 0, sizeof(n));
    CHECK(tg_budget_take(&b, "2031-01", "2031-01-31", 30000, &n) == TG_OK);
    CHECK(n.crossed != NULL && strcmp(n.crossed, "monthly") == 0);
    CHECK(n.spent_micro == 30000 && n.budget_micro == 50000);
    memset(&n, 0, sizeof(n));
    CHECK(tg_budget_take(&b, "2031-01", "2031-01-31", 30000, &n) == TG_OK && n.crossed == NULL);
    CHECK(b.month_micro == 90000);
}

static void test_period(void)
{
    char month[TG_MONTH_LEN], day[TG_DAY_LEN];
    tg_budget_period(1927670399999LL, month, day); /* 2031-01-31T23:59:59.999Z */
    CHECK_STR(month, "2031-01");
    CHECK_STR(day, "2031-01-31");
    tg_budget_period(1927670400000LL, month, day);
    CHECK_STR(month, "2031-02");
    CHECK_STR(day, "2031-02-01");
    char json[160];
    tg_budget_json(json, sizeof(json), 100000, 0, 1);
    CHECK_STR(json, "{\"monthly_usd\":\"0.10\",\"daily_usd\":\"0.00\",\"soft\":true}");
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"hard", test_hard},
        {"daily", test_daily},
        {"soft", test_soft},
        {"period", test_period},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
