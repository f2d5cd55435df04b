/* The PostgreSQL backend: teams, tokens and presets (tg_pg_int.h). Being written: each operation
 * says so until it is. */
#include "tg_pg_int.h"

int tg_pg_auth(struct tg_store *st, const char *token_hash, int64_t now_ms,
               struct tg_auth *out)
{
    (void)token_hash;
    (void)now_ms;
    (void)out;
    return tg_pg_todo(st, "auth");
}

int tg_pg_team_key(struct tg_store *st, int64_t team_id, char *buf, size_t buflen)
{
    (void)team_id;
    (void)buf;
    (void)buflen;
    return tg_pg_todo(st, "team key");
}

int tg_pg_team_id(struct tg_store *st, const char *name, int64_t *team_id)
{
    (void)name;
    (void)team_id;
    return tg_pg_todo(st, "team id");
}

int tg_pg_team_add(struct tg_store *st, const struct tg_actor *who, const char *name,
                   const char *key, int64_t *team_id)
{
    (void)who;
    (void)name;
    (void)key;
    (void)team_id;
    return tg_pg_todo(st, "team add");
}

int tg_pg_team_set_key(struct tg_store *st, const struct tg_actor *who, const char *name,
                       const char *key)
{
    (void)who;
    (void)name;
    (void)key;
    return tg_pg_todo(st, "team set key");
}

int tg_pg_team_list(struct tg_store *st, int (*fn)(void *arg, const struct tg_team_row *row),
                    void *arg)
{
    (void)fn;
    (void)arg;
    return tg_pg_todo(st, "team list");
}

int tg_pg_token_add(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
                    const char *token_id, const char *hash, enum tg_role role,
                    const char *label, int64_t expires_ms)
{
    (void)who;
    (void)team_id;
    (void)token_id;
    (void)hash;
    (void)role;
    (void)label;
    (void)expires_ms;
    return tg_pg_todo(st, "token add");
}

int tg_pg_token_revoke(struct tg_store *st, const struct tg_actor *who, const char *token_id)
{
    (void)who;
    (void)token_id;
    return tg_pg_todo(st, "token revoke");
}

int tg_pg_token_list(struct tg_store *st, const char *team,
                     int (*fn)(void *arg, const struct tg_token_row *row), void *arg)
{
    (void)team;
    (void)fn;
    (void)arg;
    return tg_pg_todo(st, "token list");
}

int tg_pg_preset_set(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
                     const char *name, const char *json)
{
    (void)who;
    (void)team_id;
    (void)name;
    (void)json;
    return tg_pg_todo(st, "preset set");
}

int tg_pg_preset_get(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
                     const char *name, char **json)
{
    (void)pool;
    (void)team_id;
    (void)name;
    (void)json;
    return tg_pg_todo(st, "preset get");
}

int tg_pg_preset_list(struct tg_store *st, int64_t team_id,
                      int (*fn)(void *arg, const char *name, const char *updated_at),
                      void *arg)
{
    (void)team_id;
    (void)fn;
    (void)arg;
    return tg_pg_todo(st, "preset list");
}
