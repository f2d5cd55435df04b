/* The PostgreSQL backend: which team a group or a run belongs to (tg_pg_int.h). Being written: each operation
 * says so until it is. */
#include "tg_pg_int.h"

int tg_pg_group_owned(struct tg_store *st, int64_t team_id, const char *taskgroup_id)
{
    (void)team_id;
    (void)taskgroup_id;
    return tg_pg_todo(st, "group owned");
}

int tg_pg_run_owned(struct tg_store *st, int64_t team_id, const char *run_id, char *group,
                    size_t grouplen)
{
    (void)team_id;
    (void)run_id;
    (void)group;
    (void)grouplen;
    return tg_pg_todo(st, "run owned");
}
