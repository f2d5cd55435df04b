/* The PostgreSQL backend: what the upstream-compatible paths ask of the records (tg_pg_int.h):
 * whether a team's submissions created a task group, and whose a run is. The twin of
 * store/sqlite/tg_sqlite_owner.c. Reads of committed rows: whichever daemon wrote them. */
#include "tg_pg_int.h"

#include <string.h>

/* A group is the team's when one of its submissions created it: that submission made a
 * create_group call that succeeded (the first one, or one sent again after attempts the
 * upstream cannot have acted on: a submission makes one group at most). */
static const struct tg_pg_stmt owner_group = {
    "owner_group",
    "SELECT g.n, EXISTS (SELECT 1 FROM submissions s"
    "  JOIN upstream_calls c ON c.submission_id = s.id"
    "  WHERE s.taskgroup_id = $1 AND s.team_id = $2"
    "  AND c.operation = 'create_group' AND c.outcome = 'ok')"
    " FROM generation g WHERE g.id = 1"};
static const struct tg_pg_stmt owner_run = {
    "owner_run",
    "SELECT s.taskgroup_id FROM runs r JOIN submissions s ON s.id = r.submission_id"
    " WHERE r.run_id = $1 AND s.team_id = $2"};

/* An owned group stays owned until its creating call is deleted (an audit prune, which
 * moves the generation): only that answer is kept (tg_pg_cache.c), and the check, which
 * walks the group's submissions, runs once per handle and group. */
int tg_pg_group_owned(struct tg_store *st, int64_t team_id, const char *taskgroup_id)
{
    if (taskgroup_id == NULL)
        return tg_pg_invalid(st, "group owner: no group");
    if (tg_pg_cache_find(st, TG_PG_CACHE_GROUP, team_id, taskgroup_id) != NULL)
        return TG_OK;
    char id[TG_PG_I64_LEN];
    const char *p[] = {taskgroup_id, tg_pg_i64(id, team_id)};
    PGresult *res;
    int rc = tg_pg_one(st, &owner_group, 2, p, &res, "group owner");
    if (rc == TG_OK && strcmp(PQgetvalue(res, 0, 1), "t") != 0)
        rc = TG_ENOTFOUND;
    if (rc == TG_OK)
        tg_pg_cache_keep(st, TG_PG_CACHE_GROUP, team_id, taskgroup_id, tg_pg_int(res, 0, 0),
                         NULL, 0, 0);
    PQclear(res);
    return rc;
}

int tg_pg_run_owned(struct tg_store *st, int64_t team_id, const char *run_id, char *group,
                    size_t grouplen)
{
    char id[TG_PG_I64_LEN];
    const char *p[] = {run_id, tg_pg_i64(id, team_id)};
    PGresult *res;
    int rc = tg_pg_one(st, &owner_run, 2, p, &res, "run owner");
    if (rc == TG_OK)
        tg_pg_copy(group, grouplen, res, 0, 0);
    PQclear(res);
    return rc;
}
