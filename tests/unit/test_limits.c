/* Unit tests of the one comparison every team limit goes through (tg_domain.c): one table,
 * read for each limit in turn, so that the limits cannot drift apart. */
#include <limits.h>

#include "tg_domain.h"
#include "tg_test.h"

struct row {
    long limit, used, want;
    int allowed;
};

/* limit 0 (or less) is no limit; otherwise used + want must stay within it. */
static const struct row table[] = {
    {0, 0, 1, 1},          {0, 1000000, 1000000, 1}, {-1, 5, 5, 1},
    {1, 0, 1, 1},          {1, 1, 1, 0},             {1, 0, 2, 0},
    {5, 3, 2, 1},          {5, 3, 3, 0},             {5, 5, 0, 1},
    {5, 6, 0, 0},          {10, 0, 10, 1},           {10, 0, 11, 0},
    {LONG_MAX, LONG_MAX - 1, 1, 1}, {LONG_MAX, LONG_MAX, 1, 0}, {LONG_MAX - 1, 1, LONG_MAX, 0},
    {3, -4, 3, 1},         {3, 0, -2, 1},
};

/* The limits and what each counts as used and wanted (tg_sqlite_admission.c's check_limits). */
static const char *const limits[] = {"in_flight", "runs_per_minute"};

static void test_table_for_every_limit(void)
{
    for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
            const struct row *r = &table[i];
            int got = tg_domain_limit_allows(r->limit, r->used, r->want);
            if (got != r->allowed)
                fprintf(stderr, "%s row %zu: limit %ld used %ld want %ld: got %d\n", limits[l], i,
                        r->limit, r->used, r->want, got);
            CHECK(got == r->allowed);
        }
    }
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"table_for_every_limit", test_table_for_every_limit},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
