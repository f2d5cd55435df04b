/* The PostgreSQL backend: what a handle keeps of its reads of team keys, presets and group
 * ownership (tg_pg_int.h). Every submission reads all three for its team after its token,
 * and they change rarely: kept, they save a round trip to the server each, and the
 * ownership check, whose cost grows with the group, is paid once per connection and group.
 *
 * Kept exactly: each row is kept with the generation its read saw (the one row of
 * `generation`, which every change of teams and presets and every deletion of upstream
 * calls moves in its own transaction, sql/postgres/009_generation.sql), and answers only
 * while the handle's last tg_pg_auth saw that same generation. So a request sees what the
 * server held when its token was checked, whichever host changed what before. */
#include "tg_pg_int.h"

#include <stdlib.h>
#include <string.h>

static void row_free(struct tg_pg_cached *r)
{
    free(r->name);
    for (int i = 0; i < TG_PG_CACHED_COLS; i++)
        free(r->col[i]);
    memset(r, 0, sizeof(*r));
}

void tg_pg_cache_free(struct tg_store *st)
{
    for (int i = 0; i < TG_PG_CACHE_ROWS; i++)
        row_free(&st->cache[i]);
}

static int same(const struct tg_pg_cached *r, enum tg_pg_cache_kind kind, int64_t team_id,
                const char *name)
{
    return r->used && r->kind == kind && r->team_id == team_id &&
           ((r->name == NULL && name == NULL) ||
            (r->name != NULL && name != NULL && strcmp(r->name, name) == 0));
}

const struct tg_pg_cached *tg_pg_cache_find(const struct tg_store *st,
                                            enum tg_pg_cache_kind kind, int64_t team_id,
                                            const char *name)
{
    if (st->generation < 0)
        return NULL;
    for (int i = 0; i < TG_PG_CACHE_ROWS; i++) {
        const struct tg_pg_cached *r = &st->cache[i];
        if (same(r, kind, team_id, name))
            return r->generation == st->generation ? r : NULL;
    }
    return NULL;
}

/* Where a new row goes: the one it replaces, else one kept at another generation than the
 * handle's (it can no longer answer), else the next in turn. */
static struct tg_pg_cached *slot(struct tg_store *st, enum tg_pg_cache_kind kind,
                                 int64_t team_id, const char *name)
{
    struct tg_pg_cached *stale = NULL;
    for (int i = 0; i < TG_PG_CACHE_ROWS; i++) {
        struct tg_pg_cached *r = &st->cache[i];
        if (same(r, kind, team_id, name))
            return r;
        if (stale == NULL && (!r->used || r->generation != st->generation))
            stale = r;
    }
    if (stale != NULL)
        return stale;
    st->cache_next = (st->cache_next + 1) % TG_PG_CACHE_ROWS;
    return &st->cache[st->cache_next];
}

void tg_pg_cache_keep(struct tg_store *st, enum tg_pg_cache_kind kind, int64_t team_id,
                      const char *name, int64_t generation, const PGresult *res, int first,
                      int ncols)
{
    struct tg_pg_cached *r = slot(st, kind, team_id, name);
    row_free(r);
    r->kind = kind;
    r->team_id = team_id;
    r->generation = generation;
    r->name = name != NULL ? strdup(name) : NULL;
    int ok = name == NULL || r->name != NULL;
    for (int i = 0; ok && res != NULL && i < ncols && i < TG_PG_CACHED_COLS; i++) {
        const char *v = tg_pg_text(res, 0, first + i);
        if (v != NULL) {
            r->col[i] = strdup(v);
            ok = r->col[i] != NULL;
        }
    }
    if (ok)
        r->used = 1;
    else
        row_free(r); /* out of memory: read again next time */
}
