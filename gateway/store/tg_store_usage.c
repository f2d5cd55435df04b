/* The face of tg_store_usage.h: each call goes to its handle's backend. */
#include "tg_store_usage.h"

#include "tg_store_backend.h"

static const struct tg_store_usage_ops *ops(const struct tg_store *st)
{
    return ((const struct tg_store_head *)(const void *)st)->be->usage;
}

int tg_store_price_list(struct tg_store *st,
                        int (*fn)(void *arg, const struct tg_price_row *row), void *arg)
{
    return ops(st)->price_list(st, fn, arg);
}

int tg_store_price_set(struct tg_store *st, const struct tg_actor *who, const char *processor,
                       const char *from, int64_t micro_per_run)
{
    return ops(st)->price_set(st, who, processor, from, micro_per_run);
}

int tg_store_budget_get(struct tg_store *st, int64_t team_id, struct tg_budget *out)
{
    return ops(st)->budget_get(st, team_id, out);
}

int tg_store_budget_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                        int64_t monthly_micro, int64_t daily_micro, int soft, int64_t now_ms)
{
    return ops(st)->budget_set(st, who, team, monthly_micro, daily_micro, soft, now_ms);
}

int tg_store_spend_list(struct tg_store *st, const char *month,
                        int (*fn)(void *arg, const struct tg_spend_row *row), void *arg)
{
    return ops(st)->spend_list(st, month, fn, arg);
}

int tg_store_usage(struct tg_store *st, const struct tg_usage_query *q,
                   int (*fn)(void *arg, const struct tg_usage_row *row), void *arg,
                   long *rows)
{
    return ops(st)->usage(st, q, fn, arg, rows);
}
