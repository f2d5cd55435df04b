-- taskgate schema, version 8: what came of each run. The daemon follows every task group it
-- created runs in (the group's event stream) and receives Parallel's signed webhooks, and
-- records here each run's status changes: queued, action_required, running, completed,
-- failed, cancelling, cancelled, with the error of a failed run and when each change
-- happened (docs/run-outcomes.md). The records of versions 1 to 5 are not changed: a run's
-- row in `runs` says who started it, these tables what became of it.
--
-- Applied by `taskgate init` inside one transaction, after which PRAGMA user_version = 8.
-- Times are RFC 3339 UTC strings with milliseconds, as in version 1.

-- ---- the groups to follow -------------------------------------------------------------------
--
-- One row per task group the gateway created runs in, written by the trigger below in the
-- same transaction as the add-runs call that created them, so that no group with runs is
-- ever left unfollowed (a crash between the two cannot happen).
--   state          'follow': it has runs that may still change; 'idle': none of its runs is
--                  active (it is followed again when runs are added); 'gone': the upstream
--                  no longer knows it (404), or refuses its team's key, see detail
--   adds           how many add-runs calls were recorded for it: the follower compares it
--                  before and after a stream, so that runs added while it decided the group
--                  was idle are followed too (PostgreSQL counts the group's add-runs calls
--                  instead, under an advisory lock, and leaves this 0: see its twin)
--   last_event_id  the place in the group's event stream after the last event recorded: a
--                  follower resumes there (last_event_id), so that a restart misses nothing
--                  and reads nothing twice. NULL: from the start
--   owner          the daemon following it (daemons.id), NULL when none; with several
--                  daemons on one database each group is followed by one of them, which
--                  holds it until lease_until and renews that while it follows
--   since          when it last became 'follow' (the wait of a group no daemon follows yet)
CREATE TABLE track_groups (
    taskgroup_id  TEXT PRIMARY KEY,
    team_id       INTEGER NOT NULL REFERENCES teams(id),
    state         TEXT NOT NULL CHECK (state IN ('follow', 'idle', 'gone')),
    adds          INTEGER NOT NULL DEFAULT 0,
    last_event_id TEXT,
    owner         TEXT,
    lease_until   TEXT,
    since         TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    detail        TEXT
);
CREATE INDEX track_groups_follow ON track_groups(since) WHERE state = 'follow';

-- The call's own start time, not the clock: both backends write the same row.
CREATE TRIGGER track_groups_on_add_runs AFTER INSERT ON upstream_calls
WHEN NEW.operation = 'add_runs' AND NEW.outcome IN ('ok', 'unknown')
BEGIN
    INSERT INTO track_groups (taskgroup_id, team_id, state, adds, since, updated_at)
    SELECT s.taskgroup_id, s.team_id, 'follow', 1, NEW.started_at, NEW.started_at
      FROM submissions s
     WHERE s.id = NEW.submission_id AND s.taskgroup_id IS NOT NULL
    ON CONFLICT (taskgroup_id) DO UPDATE
       SET adds = adds + 1,
           since = CASE WHEN state = 'follow' THEN since ELSE excluded.since END,
           state = 'follow',
           updated_at = excluded.updated_at;
END;

-- ---- what came of each run -------------------------------------------------------------------
--
-- run_status: each run's status as last recorded, one row per run (no row: nothing known
-- yet). run_status_changes: every change, in the order recorded; append-only. A change is
-- recorded once whichever source told it first (the group's event stream or a webhook):
-- a report of the status the run already has, of an older change, or of any change after
-- a final status (completed, failed, cancelled) changes nothing.
--   changed_at     when the change happened, as the upstream says (the run's modified_at)
--   completed_at   when it reached its final status (NULL while it has none)
--   error          the upstream's error message of a failed run
--   source         'events' (the group's event stream) or 'webhook'
--   event_id       the stream's event id, or the webhook-id of the delivery
-- A run's rows carry no foreign key to `runs`: a change may be told before the run's row is
-- written (a call whose answer was lost, settled later by reconciliation). They are deleted
-- with the run by an audit prune (the trigger at the end).
CREATE TABLE run_status (
    run_id       TEXT PRIMARY KEY,
    taskgroup_id TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'action_required', 'running',
                     'completed', 'failed', 'cancelling', 'cancelled')),
    error        TEXT,
    changed_at   TEXT NOT NULL,
    completed_at TEXT,
    source       TEXT NOT NULL CHECK (source IN ('events', 'webhook')),
    recorded_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX run_status_status ON run_status(status, changed_at);

CREATE TABLE run_status_changes (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT NOT NULL,
    taskgroup_id TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'action_required', 'running',
                     'completed', 'failed', 'cancelling', 'cancelled')),
    error        TEXT,
    changed_at   TEXT NOT NULL,
    source       TEXT NOT NULL CHECK (source IN ('events', 'webhook')),
    event_id     TEXT,
    recorded_at  TEXT NOT NULL
);
CREATE INDEX run_status_changes_run ON run_status_changes(run_id, id);

-- ---- webhook deliveries ----------------------------------------------------------------------
--
-- One row per webhook-id received with a genuine signature, so that a delivery Parallel sends
-- again (it retries for up to 48 hours) is answered 2xx and changes nothing. Rows older than
-- a week are removed by the daemon.
--   outcome  'recorded': it told a status change; 'known': the change was recorded already
--            (by the event stream, say); 'ignored': not a run of a group the gateway follows
CREATE TABLE webhook_deliveries (
    webhook_id  TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    run_id      TEXT,
    status      TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('recorded', 'known', 'ignored'))
) WITHOUT ROWID;
CREATE INDEX webhook_deliveries_time ON webhook_deliveries(received_at);

-- ---- append-only, and pruned with their runs --------------------------------------------------

CREATE TRIGGER run_status_changes_no_update BEFORE UPDATE ON run_status_changes
BEGIN
    SELECT RAISE(ABORT, 'run_status_changes is append-only: its rows are never updated');
END;

CREATE TRIGGER run_status_changes_no_delete BEFORE DELETE ON run_status_changes
WHEN NOT EXISTS (SELECT 1 FROM audit_prune_guard)
BEGIN
    SELECT RAISE(ABORT,
                 'run_status_changes is append-only: rows are deleted only by an audit prune');
END;

CREATE TRIGGER runs_prune_status AFTER DELETE ON runs
BEGIN
    DELETE FROM run_status_changes WHERE run_id = OLD.run_id;
    DELETE FROM run_status WHERE run_id = OLD.run_id;
END;

-- ---- the views --------------------------------------------------------------------------------

-- audit_runs as in version 1, and the run's current status, its error and when it ended:
-- each read by the run's key where a query asks for it (one more table joined would take a
-- query that joins audit_runs to audit_submissions past PostgreSQL's join_collapse_limit,
-- and its planner would read submissions whole).
DROP VIEW audit_runs;
CREATE VIEW audit_runs AS
SELECT r.run_id        AS run_id,
       r.submission_id AS submission_id,
       t.name          AS team,
       k.label         AS token_label,
       s.received_at   AS submitted_at,
       s.taskgroup_id  AS taskgroup_id,
       r.input_index   AS input_index,
       r.processor     AS processor,
       c.run_cursor    AS run_cursor,
       c.event_cursor  AS event_cursor,
       r.call_seq      AS call_seq,
       (SELECT st.status FROM run_status st WHERE st.run_id = r.run_id)       AS status,
       (SELECT st.error FROM run_status st WHERE st.run_id = r.run_id)        AS error,
       (SELECT st.completed_at FROM run_status st WHERE st.run_id = r.run_id) AS completed_at
  FROM runs r
  JOIN submissions s ON s.id = r.submission_id
  JOIN upstream_calls c ON c.submission_id = r.submission_id AND c.seq = r.call_seq
  JOIN teams t ON t.id = s.team_id
  LEFT JOIN tokens k ON k.id = s.token_id;

-- Every status change of the gateway's runs, in the order recorded.
CREATE VIEW audit_run_status_changes AS
SELECT x.id            AS change_id,
       x.run_id        AS run_id,
       r.submission_id AS submission_id,
       t.name          AS team,
       x.taskgroup_id  AS taskgroup_id,
       r.processor     AS processor,
       x.status        AS status,
       x.error         AS error,
       x.changed_at    AS changed_at,
       x.recorded_at   AS recorded_at,
       x.source        AS source,
       x.event_id      AS event_id
  FROM run_status_changes x
  JOIN runs r ON r.run_id = x.run_id
  JOIN submissions s ON s.id = r.submission_id
  JOIN teams t ON t.id = s.team_id;
