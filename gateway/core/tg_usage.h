/* Estimated spend (tg_usage.c): what admission prices and holds against a team's budget,
 * the operator's prices and budgets, usage reads for GET /v1/audit/usage and `taskgate
 * audit usage` (JSON, CSV, or a table), soft budgets crossed, and the spend metrics. The
 * estimate is processor x runs x the price in force on the submission's UTC day, in
 * micro-dollars; it is not Parallel's invoice. */
#ifndef TG_USAGE_H
#define TG_USAGE_H

#include <stddef.h>
#include <stdint.h>

#include "tg_audit.h"
#include "tg_pipeline.h"
#include "tg_store_usage.h"

/* Fills a's nprocs, procs and proc_runs with the runs p may still create (the inputs not
 * taken over from an earlier submission), per processor as the price table lists it.
 * Arrays in p->pool. TG_OK or TG_ENOMEM. */
int tg_usage_ask(const struct tg_pipe *p, struct tg_admission *a);

/* A soft budget of team was crossed by an admission: one log line and the metric. */
void tg_usage_crossed(const char *team, const char *which, const struct tg_budget_note *n);

/* Appends the spend metrics (read from the store: right on every host) to b. TG_OK, the
 * buffer's error, or the store's (then nothing is appended). */
int tg_usage_metrics(struct tg_store *st, struct tg_buf *b);

/* ---- the operator's changes -------------------------------------------------------- */

/* Sets team's budgets from text in dollars ("10", "0.10"; NULL or "0": none), logged in
 * the admin log. TG_OK; TG_EINVAL (a bad amount: err says which), TG_ENOTFOUND (no such
 * team), or the store's error. */
int tg_usage_budget_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                        const char *monthly, const char *daily, int soft, char *err,
                        size_t errlen);
/* The team's budget as JSON text into b: {"team","monthly_usd","daily_usd","soft",
 * "month","month_spent_usd","month_remaining_usd","day","day_spent_usd",
 * "day_remaining_usd"} (the periods of now; amounts null without a budget). */
int tg_usage_budget_json(struct tg_store *st, const char *team, int64_t team_id,
                         struct tg_buf *b);

/* Sets processor's price to usd_per_1000 dollars per 1,000 runs (at most three decimals:
 * a whole micro-dollar per run) from day from ("YYYY-MM-DD", after today UTC; NULL:
 * tomorrow). TG_OK or TG_EINVAL with the reason in err, or the store's error. */
int tg_usage_price_set(struct tg_store *st, const struct tg_actor *who, const char *processor,
                       const char *usd_per_1000, const char *from, char *err, size_t errlen);

/* ---- usage reads -------------------------------------------------------------------- */

struct tg_usage_read {
    enum tg_audit_format format;
    const char *scope_team;    /* the only team the reader may see (borrowed); NULL: all */
    char team[65];
    char since[11];            /* days; "": none */
    char until[11];
    char processor[65];
    int by_month;
};

/* An empty read: JSON, by day, every team. */
void tg_usage_init(struct tg_usage_read *r);
/* Sets one parameter: team, by (day or month), since and until (YYYY-MM-DD or YYYY-MM; until
 * excluded), processor, format (json, csv). TG_OK, TG_ENOTFOUND (no such parameter) or
 * TG_EINVAL, with a one-line reason in err. */
int tg_usage_set(struct tg_usage_read *r, const char *name, const char *value, char *err,
                 size_t errlen);
/* Writes the answer into b; *rows (may be NULL) receives the rows. TG_OK, TG_ETOOBIG from
 * b, or the store's error. */
int tg_usage_answer(struct tg_store *st, const struct tg_usage_read *r, struct tg_buf *b,
                    long *rows);

#endif
