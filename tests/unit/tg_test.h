/* A minimal unit-test harness: CHECK records a failure with file and line and goes on;
 * TG_TEST_MAIN runs the listed test functions and exits non-zero if any check failed. */
#ifndef TG_TEST_H
#define TG_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tg_store.h"

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

/* A database file of this test process in $TG_TEST_TMP (else /tmp): prefix_PID_name.db. */
static inline void tg_test_db_path(char *out, size_t len, const char *prefix, const char *name)
{
    const char *dir = getenv("TG_TEST_TMP");
    snprintf(out, len, "%s/%s_%ld_%s.db", dir != NULL && dir[0] != '\0' ? dir : "/tmp",
             prefix, (long)getpid(), name);
}

/* Removes a SQLite database and its WAL and shared-memory files. */
static inline void tg_test_remove_db(const char *path)
{
    char side[4096 + 8];
    unlink(path);
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
}

/* Makes path a new database of the current schema (what was there removed), closed again:
 * TG_OK, or the store's code with its message in err. */
static inline int tg_test_new_db(const char *path, char *err, size_t errlen)
{
    tg_test_remove_db(path);
    struct tg_store *st = NULL;
    int rc = tg_store_open(&st, path, TG_STORE_CREATE | TG_STORE_NO_VERSION_CHECK, 5000, err,
                           errlen);
    if (rc == TG_OK) {
        rc = tg_store_migrate(st, NULL, NULL);
        if (rc != TG_OK)
            snprintf(err, errlen, "%s", tg_store_errmsg(st));
    }
    tg_store_close(st);
    return rc;
}

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
