/* The SQLite backend: what a handle keeps of its reads of team keys, presets and group
 * ownership (tg_sqlite_int.h). Every submission needs all three for its team after its
 * token; they change rarely, and read afresh each costs a read transaction of its own
 * (with its file locks), a walk of the group's submissions and, for the key, AES-GCM
 * under the key ring's lock.
 *
 * Kept exactly, as the PostgreSQL backend does (store/postgres/tg_pg_cache.c): each row
 * with the generation its read saw, answering only while the handle's last token check saw
 * that same generation. What is kept is the answer itself (the key opened, the preset's
 * MCP values opened): each is a function of rows whose every change moves the generation. */
#include "tg_sqlite_int.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

static void row_free(struct tg_sqlite_kept *r)
{
    free(r->name);
    if (r->value != NULL) {
        OPENSSL_cleanse(r->value, r->len);
        free(r->value);
    }
    memset(r, 0, sizeof(*r));
}

void tg_sqlite_kept_free(struct tg_store *st)
{
    for (int i = 0; i < KEPT_ROWS; i++)
        row_free(&st->kept[i]);
}

static int same(const struct tg_sqlite_kept *r, enum tg_sqlite_kept_kind kind, int64_t team_id,
                const char *name)
{
    return r->used && r->kind == kind && r->team_id == team_id &&
           ((r->name == NULL && name == NULL) ||
            (r->name != NULL && name != NULL && strcmp(r->name, name) == 0));
}

const struct tg_sqlite_kept *tg_sqlite_kept_find(const struct tg_store *st,
                                                 enum tg_sqlite_kept_kind kind,
                                                 int64_t team_id, const char *name)
{
    if (st->generation < 0)
        return NULL;
    for (int i = 0; i < KEPT_ROWS; i++) {
        const struct tg_sqlite_kept *r = &st->kept[i];
        if (same(r, kind, team_id, name))
            return r->generation == st->generation ? r : NULL;
    }
    return NULL;
}

/* Where a new row goes: the one it replaces, else one kept at another generation than the
 * handle's (it can no longer answer), else the next in turn. */
static struct tg_sqlite_kept *slot(struct tg_store *st, enum tg_sqlite_kept_kind kind,
                                   int64_t team_id, const char *name)
{
    struct tg_sqlite_kept *stale = NULL;
    for (int i = 0; i < KEPT_ROWS; i++) {
        struct tg_sqlite_kept *r = &st->kept[i];
        if (same(r, kind, team_id, name))
            return r;
        if (stale == NULL && (!r->used || r->generation != st->generation))
            stale = r;
    }
    if (stale != NULL)
        return stale;
    st->kept_next = (st->kept_next + 1) % KEPT_ROWS;
    return &st->kept[st->kept_next];
}

struct tg_sqlite_kept *tg_sqlite_kept_keep(struct tg_store *st, enum tg_sqlite_kept_kind kind,
                                           int64_t team_id, const char *name,
                                           int64_t generation, int found, const char *value,
                                           size_t len)
{
    struct tg_sqlite_kept *r = slot(st, kind, team_id, name);
    row_free(r);
    r->kind = kind;
    r->team_id = team_id;
    r->generation = generation;
    r->found = found;
    r->name = name != NULL ? strdup(name) : NULL;
    int ok = name == NULL || r->name != NULL;
    if (ok && value != NULL) {
        r->value = malloc(len + 1);
        ok = r->value != NULL;
        if (ok) {
            memcpy(r->value, value, len);
            r->value[len] = '\0';
            r->len = len;
        }
    }
    if (!ok) {
        row_free(r); /* out of memory: read again next time */
        return NULL;
    }
    r->used = 1;
    return r;
}
