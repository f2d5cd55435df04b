/* The PostgreSQL backend: the keys at rest: counting, clearing and sealing again (tg_pg_int.h). Being written: each operation
 * says so until it is. */
#include "tg_pg_int.h"

int tg_pg_keys_summary(struct tg_store *st, long *sealed, long *clear)
{
    (void)sealed;
    (void)clear;
    return tg_pg_todo(st, "keys summary");
}

int tg_pg_presets_clear(struct tg_store *st, long *n)
{
    (void)n;
    return tg_pg_todo(st, "presets clear");
}

int tg_pg_keys_reseal(struct tg_store *st, const struct tg_actor *who, int every,
                      const char *action, long *n)
{
    (void)who;
    (void)every;
    (void)action;
    (void)n;
    return tg_pg_todo(st, "keys reseal");
}
