/* The audit summary's durations by processor (tg_store.h's tg_store_audit_summary): each
 * backend counts completed runs by duration bucket (duration_counts, sql/sqlite/012_scale.sql)
 * and this turns one team's processor's buckets into its row, the same for every backend.
 *
 * How exact: runs and mean_ms are exact (the mean rounded to the nearest millisecond).
 * A bucket holds the durations that round down to the same two significant digits, so a
 * percentile is told as the longest duration recorded in the bucket where it falls: a
 * duration that some run took, never less than the true percentile and less than a tenth
 * more (exact below 100 ms). max_ms is the longest in the highest bucket: exact, but for a
 * day a prune cut through, which may still show a pruned run's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_store_backend.h"

static const char *const names[] = {"team", "processor", "runs", "mean_ms", "p50_ms",
                                    "p90_ms", "max_ms"};
#define NCOLS 7

const char *const *tg_store_duration_columns(int *n)
{
    *n = NCOLS;
    return names;
}

/* The most buckets one team's processor has in a window: about 90 per power of ten of
 * durations, so that even a day of runs from 1 ms to a day long fits many times over. */
#define BUCKETS_MAX 8192

struct bucket {
    int64_t runs, max_ms;
};

/* The buckets of the (team, processor) being read, kept until the next one begins. */
struct acc {
    tg_audit_fn fn;
    void *arg;
    long *rows;
    char team[65];
    char processor[129];
    int has_processor;
    int open;
    size_t n;
    struct bucket b[BUCKETS_MAX];
    int64_t runs, total_ms;
};

/* The longest duration of the bucket where the k-th shortest run (1-based) falls. */
static int64_t rank(const struct acc *a, int64_t k)
{
    int64_t seen = 0;
    for (size_t i = 0; i < a->n; i++) {
        seen += a->b[i].runs;
        if (seen >= k)
            return a->b[i].max_ms;
    }
    return a->n > 0 ? a->b[a->n - 1].max_ms : 0;
}

/* The smallest k with k >= p% of runs: the p-th percentile's rank. */
static int64_t rank_of(int64_t runs, int p)
{
    int64_t k = (runs * p + 99) / 100;
    return k < 1 ? 1 : k;
}

static int flush(struct acc *a)
{
    if (!a->open || a->runs <= 0) {
        a->open = 0;
        return TG_OK;
    }
    char nums[5][24];
    int64_t v[5] = {a->runs, (a->total_ms + a->runs / 2) / a->runs, rank(a, rank_of(a->runs, 50)),
                    rank(a, rank_of(a->runs, 90)), a->b[a->n - 1].max_ms};
    for (int i = 0; i < 5; i++)
        snprintf(nums[i], sizeof(nums[i]), "%lld", (long long)v[i]);
    const char *values[NCOLS] = {a->team, a->has_processor ? a->processor : NULL, nums[0],
                                 nums[1], nums[2], nums[3], nums[4]};
    enum tg_audit_type types[NCOLS] = {TG_AUDIT_VAL_TEXT,
                                       a->has_processor ? TG_AUDIT_VAL_TEXT : TG_AUDIT_VAL_NULL,
                                       TG_AUDIT_VAL_INT, TG_AUDIT_VAL_INT, TG_AUDIT_VAL_INT,
                                       TG_AUDIT_VAL_INT, TG_AUDIT_VAL_INT};
    struct tg_audit_row row = {TG_AUDIT_KIND_DURATION, NCOLS, names, values, types};
    a->open = 0;
    (*a->rows)++;
    return a->fn(a->arg, &row);
}

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int take(void *arg, const char *team, const char *processor, int64_t bucket_ms,
                int64_t runs, int64_t total_ms, int64_t max_ms)
{
    struct acc *a = arg;
    (void)bucket_ms; /* the rows come in its order: the ranks need no more */
    if (team == NULL || strlen(team) >= sizeof(a->team) ||
        (processor != NULL && strlen(processor) >= sizeof(a->processor)))
        return TG_EINVAL;
    if (a->open && (strcmp(a->team, team) != 0 ||
                    !same(a->has_processor ? a->processor : NULL, processor))) {
        int rc = flush(a);
        if (rc != TG_OK)
            return rc;
    }
    if (!a->open) {
        snprintf(a->team, sizeof(a->team), "%s", team);
        snprintf(a->processor, sizeof(a->processor), "%s", processor != NULL ? processor : "");
        a->has_processor = processor != NULL;
        a->open = 1;
        a->n = 0;
        a->runs = a->total_ms = 0;
    }
    if (runs <= 0)
        return TG_OK; /* emptied by a prune, not yet tidied away */
    if (a->n == BUCKETS_MAX)
        return TG_ETOOBIG;
    a->b[a->n].runs = runs;
    a->b[a->n].max_ms = max_ms;
    a->n++;
    a->runs += runs;
    a->total_ms += total_ms;
    return TG_OK;
}

int tg_store_durations(struct tg_store *st, const struct tg_store_backend *be,
                       const struct tg_audit_query *q, tg_audit_fn fn, void *arg, long *rows)
{
    *rows = 0;
    struct acc *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return TG_ENOMEM;
    a->fn = fn;
    a->arg = arg;
    a->rows = rows;
    int rc = be->audit_durations(st, q, take, a);
    if (rc == TG_OK)
        rc = flush(a);
    free(a);
    return rc;
}
