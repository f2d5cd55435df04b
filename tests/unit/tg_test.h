/* A minimal unit-test harness: CHECK records a failure with file and line and goes on;
 * TG_TEST_MAIN runs the listed test functions and exits non-zero if any check failed. */
#ifndef TG_TEST_H
#define TG_TEST_H

#include <stdio.h>
#include <string.h>

static int tg_test_failures;
static int tg_test_checks;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        tg_test_checks++;                                                                \
        if (!(cond)) {                                                                   \
            tg_test_failures++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
        }                                                                                \
    } while (0)

#define CHECK_STR(a, b)                                                                  \
    do {                                                                                 \
        const char *tg_a_ = (a), *tg_b_ = (b);                                           \
        tg_test_checks++;                                                                \
        if (tg_a_ == NULL || tg_b_ == NULL || strcmp(tg_a_, tg_b_) != 0) {               \
            tg_test_failures++;                                                          \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s\n  got:      %s\n"        \
                    "  expected: %s\n", __FILE__, __LINE__, #a, #b,                      \
                    tg_a_ ? tg_a_ : "(null)", tg_b_ ? tg_b_ : "(null)");                 \
        }                                                                                \
    } while (0)

struct tg_test_case {
    const char *name;
    void (*fn)(void);
};

static inline int tg_test_run(const struct tg_test_case *cases)
{
    int failed_cases = 0, n = 0;
    for (; cases->name != NULL; cases++, n++) {
        int before = tg_test_failures;
        cases->fn();
        if (tg_test_failures != before) {
            failed_cases++;
            fprintf(stderr, "FAIL %s\n", cases->name);
        } else {
            fprintf(stderr, "ok   %s\n", cases->name);
        }
    }
    printf("%d passed, %d failed\n", n - failed_cases, failed_cases);
    return failed_cases == 0 ? 0 : 1;
}

#endif
