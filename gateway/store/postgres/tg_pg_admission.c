/* The PostgreSQL backend: idempotency, team limits and reconciliation (tg_pg_int.h). Being written: each operation
 * says so until it is. */
#include "tg_pg_int.h"

int tg_pg_idem_get(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
                   enum tg_idem_kind kind, const char *key, int64_t now_ms,
                   struct tg_idem_rec *out)
{
    (void)pool;
    (void)team_id;
    (void)kind;
    (void)key;
    (void)now_ms;
    (void)out;
    return tg_pg_todo(st, "idem get");
}

int tg_pg_admit(struct tg_store *st, const struct tg_submission *sub,
                const struct tg_admission *a, struct tg_admit_refusal *why)
{
    (void)sub;
    (void)a;
    (void)why;
    return tg_pg_todo(st, "admit");
}

int tg_pg_idem_answer(struct tg_store *st, int64_t team_id, enum tg_idem_kind kind,
                      const char *key, const char *sub_id, int status,
                      const char *content_type, const char *body, size_t len)
{
    (void)team_id;
    (void)kind;
    (void)key;
    (void)sub_id;
    (void)status;
    (void)content_type;
    (void)body;
    (void)len;
    return tg_pg_todo(st, "idem answer");
}

int tg_pg_idem_prune(struct tg_store *st, int64_t now_ms, long *n)
{
    (void)now_ms;
    (void)n;
    return tg_pg_todo(st, "idem prune");
}

int tg_pg_limits_get(struct tg_store *st, int64_t team_id, struct tg_limits *out)
{
    (void)team_id;
    (void)out;
    return tg_pg_todo(st, "limits get");
}

int tg_pg_limits_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                     const struct tg_limits *l)
{
    (void)who;
    (void)team;
    (void)l;
    return tg_pg_todo(st, "limits set");
}

int tg_pg_recon_load(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
                     struct tg_recon_sub *out)
{
    (void)pool;
    (void)sub_id;
    (void)out;
    return tg_pg_todo(st, "recon load");
}

int tg_pg_recon_write(struct tg_store *st, const struct tg_recon_write *w)
{
    (void)w;
    return tg_pg_todo(st, "recon write");
}

int tg_pg_open_counts(struct tg_store *st, long *pending, long *unknown)
{
    (void)pending;
    (void)unknown;
    return tg_pg_todo(st, "open counts");
}

int tg_pg_unknown_ids(struct tg_store *st, struct tg_pool *pool, size_t max,
                      int64_t before_ms, const char ***ids, size_t *n)
{
    (void)pool;
    (void)max;
    (void)before_ms;
    (void)ids;
    (void)n;
    return tg_pg_todo(st, "unknown ids");
}

int tg_pg_prior_runs(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
                     size_t num_inputs, const char ***ids, const char **group)
{
    (void)pool;
    (void)sub_id;
    (void)num_inputs;
    (void)ids;
    (void)group;
    return tg_pg_todo(st, "prior runs");
}
