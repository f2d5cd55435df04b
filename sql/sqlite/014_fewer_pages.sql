-- taskgate schema, version 14: two B-trees fewer written by each submission.
--
-- What a commit costs is mostly the pages it appends to the WAL, about one per B-tree it
-- touches, and a submission's two transactions touched about 23. Two of them were not needed:
--
-- * The partial index submissions_open (state, received_at), version 6, holds the same
--   entries as the start of version 12's submissions_state_time (state, received_at, id):
--   every read of the open submissions (the in-flight count, reconciliation's unknown ones,
--   the audit's open list, the reconcile lag) is answered by that one as well, and each
--   submission was entered and taken out of both.
-- * track_groups_on_add_runs rewrote the row's since and state on every add-runs call, so
--   the entry of the partial index track_groups_follow was rewritten too, although a group
--   already followed keeps both. Such a group now has only its count and time moved; the
--   row of a new or idle group is written as before.

DROP INDEX submissions_open;

DROP TRIGGER track_groups_on_add_runs;
CREATE TRIGGER track_groups_on_add_runs AFTER INSERT ON upstream_calls
WHEN NEW.operation = 'add_runs' AND NEW.outcome IN ('ok', 'unknown')
BEGIN
    UPDATE track_groups SET adds = adds + 1, updated_at = NEW.started_at
     WHERE state = 'follow'
       AND taskgroup_id = (SELECT s.taskgroup_id FROM submissions s
                            WHERE s.id = NEW.submission_id);
    INSERT INTO track_groups (taskgroup_id, team_id, state, adds, since, updated_at)
    SELECT s.taskgroup_id, s.team_id, 'follow', 1, NEW.started_at, NEW.started_at
      FROM submissions s
     WHERE s.id = NEW.submission_id AND s.taskgroup_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM track_groups g
                        WHERE g.taskgroup_id = s.taskgroup_id AND g.state = 'follow')
    ON CONFLICT (taskgroup_id) DO UPDATE
       SET adds = adds + 1,
           since = excluded.since,
           state = 'follow',
           updated_at = excluded.updated_at;
END;
