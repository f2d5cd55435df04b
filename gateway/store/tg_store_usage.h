/* The store's face, continued: prices, budgets and usage (estimated spend), in the terms of
 * tg_budget.h and tg_price.h. Part of the face like tg_store.h (whose handle and actors it
 * uses): handlers, the core and the CLI include it; backends implement it through their
 * struct tg_store_usage_ops (tg_store_backend.h). Amounts are micro-dollars; days are UTC
 * 'YYYY-MM-DD', months 'YYYY-MM'. */
#ifndef TG_STORE_USAGE_H
#define TG_STORE_USAGE_H

#include <stddef.h>
#include <stdint.h>

#include "tg_budget.h"
#include "tg_store.h"

/* ---- prices -------------------------------------------------------------------------- */

/* One price: processor (listed without "-fast") at micro_per_run from effective_from on;
 * source "published" (shipped) or "operator" (taskgate price set). Strings valid during the
 * callback only. */
struct tg_price_row {
    const char *processor;
    const char *effective_from;
    int64_t micro_per_run;
    const char *source;
    const char *set_at;
};
/* Calls fn for every price, by processor and date; a non-zero return stops the walk and is
 * returned. */
int tg_store_price_list(struct tg_store *st,
                        int (*fn)(void *arg, const struct tg_price_row *row), void *arg);
/* Sets processor's price from day from on (inserted, or replacing one set for that very
 * day), logged in admin_log as 'price.set'. The caller checks that from is after today, so
 * that nothing recorded is repriced. */
int tg_store_price_set(struct tg_store *st, const struct tg_actor *who, const char *processor,
                       const char *from, int64_t micro_per_run);

/* ---- budgets ------------------------------------------------------------------------- */

/* The team's budget, its periods as they stand (tg_budget_month_spent reads them). TG_OK,
 * or TG_ENOTFOUND when it has none. */
int tg_store_budget_get(struct tg_store *st, int64_t team_id, struct tg_budget *out);
/* Sets a team's budgets (both amounts 0: removes them), logged in admin_log as
 * 'team.budget' with before and after. A team that had none starts its periods (those of
 * now_ms) at what they have spent already: the estimates of the runs created for it so far
 * in them. TG_ENOTFOUND: no such team. */
int tg_store_budget_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                        int64_t monthly_micro, int64_t daily_micro, int soft, int64_t now_ms);

/* One team's standing for /metrics: its name, its spend this month (the runs created),
 * and its budget (has_budget 0: none). */
struct tg_spend_row {
    const char *team;
    int64_t month_micro;
    int has_budget;
    struct tg_budget budget;
};
/* Calls fn for every team with a budget or with runs created in month, by name. */
int tg_store_spend_list(struct tg_store *st, const char *month,
                        int (*fn)(void *arg, const struct tg_spend_row *row), void *arg);

/* ---- usage --------------------------------------------------------------------------- */

/* A usage read: runs created and their estimate per team, period and processor, from the
 * usage rows (never a scan of runs). Strings borrowed; NULL: no filter. */
struct tg_usage_query {
    const char *team;          /* the only team it reads (a submit token's own) */
    const char *since;         /* a day, included */
    const char *until;         /* a day, excluded */
    const char *processor;     /* as sent */
    int by_month;              /* periods are months, else days */
};
struct tg_usage_row {
    const char *team;
    const char *period;        /* a day or a month */
    const char *processor;
    int64_t runs;
    int64_t est_cost_micro;
};
/* Calls fn for each row, by team, period and processor; *rows (may be NULL) receives how
 * many. A non-zero return from fn stops the read and is returned. */
int tg_store_usage(struct tg_store *st, const struct tg_usage_query *q,
                   int (*fn)(void *arg, const struct tg_usage_row *row), void *arg,
                   long *rows);

#endif
