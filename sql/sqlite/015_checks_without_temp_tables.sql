-- taskgate schema, version 15: the request path's checks made without a temporary table.
--
-- SQLite tests `x IN ('a', 'b', 'c')`, a list of three constants or more, by first building a
-- temporary B-tree of the list, every time the statement runs; with one or two it compares.
-- So every submission built four: the CHECKs on submissions.state (its insert, its final
-- update) and upstream_calls.outcome (each call's insert), and the WHEN of
-- submissions_hold_release. Two statements of triggers built one more each: an INSERT whose
-- SELECT reads the table it writes (track_groups_on_add_runs, for every add-runs call) and an
-- UPDATE ... FROM (submissions_hold_release, for every settled submission). Opening and
-- closing those was about 8 % of the writer thread's time at 2,300 submissions/s (perf).
--
-- Each test below accepts and refuses exactly what it replaces.

-- The CHECKs. SQLite cannot alter a CHECK, and rebuilding these tables would rewrite every
-- submission and call; its documented way for a change that leaves every stored row valid
-- (https://www.sqlite.org/lang_altertable.html, "Making Other Kinds Of Table Schema
-- Changes") is to edit the table's text in sqlite_master. The trigger statements below move
-- the schema's version on, so that every connection reads the new text, and RESET makes
-- this one read it now.
PRAGMA writable_schema = ON;
UPDATE sqlite_master
   SET sql = replace(sql, 'CHECK (state IN (''pending'', ''accepted'', ''rejected'', ''failed'', ''unknown''))',
                     'CHECK (state = ''pending'' OR state = ''accepted'' OR state = ''rejected'''
                     || ' OR state = ''failed'' OR state = ''unknown'')')
 WHERE type = 'table' AND name = 'submissions';
UPDATE sqlite_master
   SET sql = replace(sql, 'CHECK (outcome IN (''ok'', ''error'', ''unknown'', ''not_sent''))',
                     'CHECK (outcome = ''ok'' OR outcome = ''error'' OR outcome = ''unknown'''
                     || ' OR outcome = ''not_sent'')')
 WHERE type = 'table' AND name = 'upstream_calls';
UPDATE sqlite_master
   SET sql = replace(sql, 'CHECK (state IN (''follow'', ''idle'', ''gone''))',
                     'CHECK (state = ''follow'' OR state = ''idle'' OR state = ''gone'')')
 WHERE type = 'table' AND name = 'track_groups';

-- A settled submission gives back what its hold still holds. Only a team with a budget
-- has holds, so the trigger now asks for an open hold first, and reads it by its key
-- instead of joining it.
DROP TRIGGER submissions_hold_release;
CREATE TRIGGER submissions_hold_release AFTER UPDATE OF state ON submissions
WHEN OLD.state IN ('pending', 'unknown')
 AND (NEW.state = 'accepted' OR NEW.state = 'failed' OR NEW.state = 'rejected')
 AND EXISTS (SELECT 1 FROM budget_holds h WHERE h.submission_id = NEW.id AND h.open = 1)
BEGIN
    UPDATE team_budgets
    SET month_micro = month_micro
            - (SELECT CASE WHEN team_budgets.month = h.month THEN h.held_micro ELSE 0 END
                 FROM budget_holds h WHERE h.submission_id = NEW.id AND h.open = 1),
        day_micro = day_micro
            - (SELECT CASE WHEN team_budgets.day = h.day THEN h.held_micro ELSE 0 END
                 FROM budget_holds h WHERE h.submission_id = NEW.id AND h.open = 1)
    WHERE team_id = (SELECT h.team_id FROM budget_holds h
                      WHERE h.submission_id = NEW.id AND h.open = 1);

    UPDATE budget_holds SET open = 0, held_micro = 0 WHERE submission_id = NEW.id AND open = 1;
END;

-- An add-runs call follows its group. The INSERT is for a group the UPDATE found no
-- followed row of: changes(), inside a trigger, is what its previous statement changed
-- (https://www.sqlite.org/c3ref/changes.html), so the INSERT no longer reads track_groups.
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
     WHERE changes() = 0 AND s.id = NEW.submission_id AND s.taskgroup_id IS NOT NULL
    ON CONFLICT (taskgroup_id) DO UPDATE
       SET adds = adds + 1,
           since = excluded.since,
           state = 'follow',
           updated_at = excluded.updated_at;
END;

PRAGMA writable_schema = RESET;
