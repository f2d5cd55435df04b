/* What the upstream-compatible paths ask of the records: whether a team's submissions
 * created a task group, and whose a run is. */
#include <string.h>

#include "tg_sqlite_int.h"

static const char *const owner_sql[S_COUNT] = {
    /* A group is the team's when one of its submissions created it: that submission made
     * a create_group call that succeeded (the first one, or one sent again after attempts
     * the upstream cannot have acted on: a submission makes one group at most). */
    [C_GROUP_OWNED] =
        "SELECT g.n, EXISTS (SELECT 1 FROM submissions s"
        "  JOIN upstream_calls c ON c.submission_id = s.id"
        "  WHERE s.taskgroup_id = ?1 AND s.team_id = ?2"
        "  AND c.operation = 'create_group' AND c.outcome = 'ok')"
        " FROM generation g WHERE g.id = 1",
    /* A run by id: one look in each bucket's part of runs_id (sql/sqlite/012_scale.sql). */
    [C_RUN_OWNER] =
        TG_SQLITE_RUN_KEY
        "SELECT s.taskgroup_id FROM k CROSS JOIN submissions s"
        " WHERE s.id = k.sid AND s.team_id = ?2",
};

/* An owned group stays owned until its creating call is deleted (an audit prune, which
 * moves the generation): only that answer is kept (tg_sqlite_kept.c), and the check, which
 * walks the group's submissions, runs once per handle and group. */
int tg_sqlite_group_owned(struct tg_store *st, int64_t team_id, const char *taskgroup_id)
{
    if (taskgroup_id != NULL && tg_sqlite_kept_find(st, KEPT_GROUP, team_id, taskgroup_id) != NULL)
        return TG_OK;
    sqlite3_stmt *s;
    int rc = tg_sqlite_stmt(st, C_GROUP_OWNED, owner_sql[C_GROUP_OWNED], &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, taskgroup_id);
    sqlite3_bind_int64(s, 2, team_id);
    rc = tg_sqlite_one(st, s, "group owner");
    if (rc == TG_OK && sqlite3_column_int(s, 1) == 0)
        rc = TG_ENOTFOUND;
    if (rc == TG_OK && taskgroup_id != NULL)
        tg_sqlite_kept_keep(st, KEPT_GROUP, team_id, taskgroup_id, sqlite3_column_int64(s, 0),
                            1, NULL, 0);
    tg_sqlite_done(s);
    return rc;
}

int tg_sqlite_run_owned(struct tg_store *st, int64_t team_id, const char *run_id,
                        char *group, size_t grouplen)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_stmt(st, C_RUN_OWNER, owner_sql[C_RUN_OWNER], &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, run_id);
    sqlite3_bind_int64(s, 2, team_id);
    rc = tg_sqlite_one(st, s, "run owner");
    if (rc == TG_OK)
        tg_sqlite_col_copy(group, grouplen, s, 0);
    tg_sqlite_done(s);
    return rc;
}
