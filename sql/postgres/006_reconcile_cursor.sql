-- taskgate schema, version 6 (PostgreSQL): what reconciliation needs to read a group's runs
-- from the last known cursor instead of from the group's beginning, and to read on where a
-- read cut short stopped.
--
-- The twin of sql/sqlite/006_reconcile_cursor.sql (see 001_init.sql for how the dialects
-- are matched). Reconciliation reads a group's runs stream from the run_cursor of the last
-- add-runs call of the group whose runs existed before the earliest unknown submission was
-- received: it walks the group's submissions from that time backwards
-- (submissions_group_time), which also serves every lookup by group alone, so it replaces
-- submissions_group.
CREATE INDEX submissions_group_time ON submissions(taskgroup_id, received_at);
DROP INDEX submissions_group;

-- Submissions still open by state and age: the in-flight count of a team, the unknown ones
-- to reconcile, and the age of the oldest unknown one (the reconciliation lag on /metrics)
-- in one step. Replaces submissions_state, which it extends.
CREATE INDEX submissions_open ON submissions(state, received_at)
    WHERE state IN ('pending', 'unknown');
DROP INDEX submissions_state;

-- A read cut short (the pass's time budget, the read's timeout, the daemon stopping) leaves
-- the submissions it did not find whole 'unknown' with an 'error' row whose resume_cursor
-- is where the next read of the group starts for them: before the first call it saw only
-- in part, else after the last event it read. NULL for every other row. A row with one is
-- not an attempt that makes the next wait reconcile_after_s: the next pass reads on.
ALTER TABLE reconciliations ADD COLUMN resume_cursor TEXT COLLATE "C";
