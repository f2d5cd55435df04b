-- taskgate: ready-to-run audit queries for the PostgreSQL store (schema version 2 or later;
-- those about run outcomes, version 8).
--
-- The twin of sql/sqlite/audit-queries.sql: the same queries under the same "-- name:"
-- markers, giving the same rows in the same order. They differ in one place only: SQLite
-- sorts NULL before every value and PostgreSQL after, so where a sort key can be NULL
-- (summary's processor, failed_calls_by_status's http_status, slowest_calls's
-- duration_ms) the order says NULLS FIRST or NULLS LAST to sort as SQLite does.
--
-- Not a migration: only files named NNN_name.sql are. These queries read the views only
-- (audit_submissions, audit_runs, audit_calls, audit_admin, audit_run_status_changes,
-- audit_summary), never the base tables, so they keep working when the tables change. The
-- query "summary" needs schema version 12 (audit_summary).
--
-- Each query follows a line "-- name: <name>", then a comment saying what it answers and
-- which named parameters it takes, and ends with ";". Parameters:
--
--   :since, :until   a window on the record's time, :since included, :until excluded, as
--                    RFC 3339 UTC text like the stored times: '2026-11-01T00:00:00.000Z'.
--                    A date alone also works ('2026-11-01'); for "everything" use
--                    '0000' and '9999'.
--   :team            a team name          :token_id      a token id ('tok_...')
--   :taskgroup_id    'tgrp_...'           :run_id        'trun_...'
--   :submission_id   'sub_...'            :limit         how many rows at most
--   :object_type, :object_id   an admin-log object: ('team', name), ('token', 'tok_...'),
--                    ('preset', 'team/preset')
--
-- In psql, set the parameters as variables, then paste a query. psql pastes a variable's
-- value as it is, so, as in the sqlite3 shell, the value carries its own quotes (inside
-- \set's quotes, '' is one quote):
--
--   psql 'postgresql:///taskgate?host=/path/to/run'
--   taskgate=> \set since '''2026-11-01'''
--   taskgate=> \set until '''2026-12-01'''
--   taskgate=> \set team '''research'''
--   taskgate=> \set limit 20
--   taskgate=> SELECT state, count(*) ... ;            -- a query from below
--
-- From a program, bind them by name, or replace each :name with a placeholder ($1, ...).
-- Every text column is COLLATE "C" (001_init.sql), so the windows and the sorts compare
-- text byte by byte as SQLite does, whatever the database's locale.

-- name: runs_per_team_per_day
-- How many runs each team started each day (UTC), with the submissions and groups they
-- came in. A run counts on the day its submission was received.
-- Parameters: :since, :until (on the submission's received time).
SELECT team,
       substr(submitted_at, 1, 10)   AS day,
       count(*)                      AS runs,
       count(DISTINCT submission_id) AS submissions,
       count(DISTINCT taskgroup_id)  AS groups
  FROM audit_runs
 WHERE submitted_at >= :since AND submitted_at < :until
 GROUP BY team, day
 ORDER BY day, team;

-- name: summary
-- Submissions and runs by day (UTC), team, processor and state, from the counts the store
-- keeps with the records (audit_summary): a few rows, never a scan of the runs, however many
-- there are. A submission is counted under each processor its runs carry, and under
-- processor NULL while it has none (see docs/auditing.md).
-- Parameters: :since, :until (on the day: '2026-11-01' is in with :since = '2026-11-01'
-- and out with :until = '2026-11-01').
SELECT day, team, processor, state, submissions, runs
  FROM audit_summary
 WHERE day >= :since AND day < :until
 ORDER BY day, team, processor NULLS FIRST, state;

-- name: failures_and_unknowns
-- Every submission that failed (upstream answered with an error) or whose outcome is
-- unknown (timeout, lost connection, crash) in a window, oldest first, with the runs that
-- were recorded for it before things went wrong.
-- Parameters: :since, :until (on received time).
SELECT s.submission_id,
       s.team,
       s.token_label,
       s.token_id,
       s.state,
       s.received_at,
       s.completed_at,
       s.http_status,
       s.upstream_status,
       s.error,
       s.taskgroup_id,
       s.num_inputs,
       (SELECT count(*) FROM audit_runs r WHERE r.submission_id = s.submission_id)
                                     AS runs_recorded,
       s.remote_addr,
       s.request_id
  FROM audit_submissions s
 WHERE s.state IN ('failed', 'unknown')
   AND s.received_at >= :since AND s.received_at < :until
 ORDER BY s.received_at, s.submission_id;

-- name: runs_of_group
-- Every run of a task group, in the order they were added, with the submission that added
-- it and the token (and so the team and the person or script) that sent it.
-- Parameters: :taskgroup_id.
SELECT r.run_id,
       r.input_index,
       r.processor,
       r.submission_id,
       r.submitted_at,
       s.state,
       r.team,
       r.token_label,
       s.token_id,
       s.remote_addr,
       s.interface,
       r.call_seq,
       r.run_cursor,
       r.event_cursor
  FROM audit_runs r
  JOIN audit_submissions s ON s.submission_id = r.submission_id
 WHERE r.taskgroup_id = :taskgroup_id
 ORDER BY r.submitted_at, r.submission_id, r.input_index;

-- name: token_submissions
-- What a token did, part 1: every submission made with it in a window, whatever its
-- outcome, with how many runs each one started.
-- Parameters: :token_id, :since, :until (on received time).
SELECT s.submission_id,
       s.team,
       s.token_label,
       s.received_at,
       s.state,
       s.http_status,
       s.interface,
       s.remote_addr,
       s.taskgroup_id,
       s.num_inputs,
       (SELECT count(*) FROM audit_runs r WHERE r.submission_id = s.submission_id) AS runs,
       s.error
  FROM audit_submissions s
 WHERE s.token_id = :token_id
   AND s.received_at >= :since AND s.received_at < :until
 ORDER BY s.received_at, s.submission_id;

-- name: token_runs
-- What a token did, part 2: every run started with it in a window.
-- Parameters: :token_id, :since, :until (on the submission's received time).
SELECT r.run_id,
       r.taskgroup_id,
       r.submission_id,
       r.submitted_at,
       r.input_index,
       r.processor,
       r.team,
       r.token_label
  FROM audit_submissions s
  JOIN audit_runs r ON r.submission_id = s.submission_id
 WHERE s.token_id = :token_id
   AND s.received_at >= :since AND s.received_at < :until
 ORDER BY s.received_at, r.submission_id, r.input_index;

-- name: team_key_changes
-- Who set or changed a team's upstream key, when, from where and through which interface,
-- with the team before and after: JSON whose "key_fingerprint" is the key's fingerprint
-- (keys themselves are never logged).
-- Parameters: :team.
SELECT id,
       at,
       actor,
       actor_team,
       interface,
       action,
       before,
       after,
       remote_addr
  FROM audit_admin
 WHERE object_type = 'team' AND object_id = :team
   AND action IN ('team.add', 'team.set_key')
 ORDER BY at, id;

-- name: who_started_run
-- Who started a given run: team, token, when, from where, through which interface, and in
-- which submission and group.
-- Parameters: :run_id.
SELECT r.run_id,
       r.team,
       r.token_label,
       s.token_id,
       r.submitted_at,
       s.remote_addr,
       s.interface,
       r.submission_id,
       s.request_id,
       s.state,
       r.taskgroup_id,
       r.input_index,
       r.processor
  FROM audit_runs r
  JOIN audit_submissions s ON s.submission_id = r.submission_id
 WHERE r.run_id = :run_id;

-- name: team_submissions_by_state
-- A team's submissions in a window, counted by state (pending, accepted, rejected, failed,
-- unknown), with the inputs they carried and the first and last of each.
-- Parameters: :team, :since, :until (on received time).
SELECT state,
       count(*)         AS submissions,
       sum(num_inputs)  AS inputs,
       min(received_at) AS first_at,
       max(received_at) AS last_at
  FROM audit_submissions
 WHERE team = :team
   AND received_at >= :since AND received_at < :until
 GROUP BY state
 ORDER BY state;

-- name: failed_calls_by_status
-- Upstream calls that did not succeed in a window (an error answer, no answer, or never
-- sent), grouped by outcome and HTTP status, most frequent first, with one of their errors.
-- Parameters: :since, :until (on the call's start time).
SELECT outcome,
       http_status,
       count(*)                      AS calls,
       count(DISTINCT submission_id) AS submissions,
       count(DISTINCT team)          AS teams,
       min(started_at)               AS first_at,
       max(started_at)               AS last_at,
       max(error)                    AS sample_error
  FROM audit_calls
 WHERE outcome IN ('error', 'unknown', 'not_sent')
   AND started_at >= :since AND started_at < :until
 GROUP BY outcome, http_status
 ORDER BY calls DESC, outcome, http_status NULLS FIRST;

-- name: open_submissions
-- Submissions still 'pending' or 'unknown' that were received before a cut-off: the ones an
-- operator must reconcile (set :until a few minutes in the past so that requests still in
-- flight are left out). runs_recorded is what the gateway knows upstream accepted;
-- calls_unanswered the upstream calls whose outcome is unknown.
-- Parameters: :until (on received time).
SELECT s.submission_id,
       s.team,
       s.token_label,
       s.token_id,
       s.state,
       s.received_at,
       s.completed_at,
       s.taskgroup_id,
       s.num_inputs,
       (SELECT count(*) FROM audit_runs r WHERE r.submission_id = s.submission_id)
                                     AS runs_recorded,
       (SELECT coalesce(sum(CASE WHEN c.outcome = 'unknown' THEN 1 ELSE 0 END), 0)
          FROM audit_calls c WHERE c.submission_id = s.submission_id)
                                     AS calls_unanswered,
       s.http_status,
       s.error,
       s.request_id
  FROM audit_submissions s
 WHERE s.state IN ('pending', 'unknown')
   AND s.received_at < :until
 ORDER BY s.received_at, s.submission_id;

-- name: slowest_calls
-- The slowest upstream calls in a window (calls that were sent), slowest first.
-- Parameters: :since, :until (on the call's start time), :limit.
SELECT submission_id,
       team,
       seq,
       operation,
       method,
       path,
       num_inputs,
       started_at,
       duration_ms,
       outcome,
       http_status,
       taskgroup_id
  FROM audit_calls
 WHERE started_at >= :since AND started_at < :until
   AND outcome <> 'not_sent'
 ORDER BY duration_ms DESC NULLS LAST, started_at, submission_id, seq
 LIMIT :limit;

-- name: submission_calls
-- One submission's upstream calls in the order sent: status, outcome, the inputs each chunk
-- carried, and the cursors it returned.
-- Parameters: :submission_id.
SELECT seq,
       operation,
       method,
       path,
       first_input,
       num_inputs,
       started_at,
       duration_ms,
       outcome,
       http_status,
       run_cursor,
       event_cursor,
       error
  FROM audit_calls
 WHERE submission_id = :submission_id
 ORDER BY seq;

-- name: admin_changes
-- Everything administrators changed in a window (teams, keys, presets, tokens, prunes),
-- newest first, with before and after (secrets only as fingerprints).
-- Parameters: :since, :until (on the change's time).
SELECT id,
       at,
       actor,
       actor_team,
       interface,
       action,
       object_type,
       object_id,
       team,
       before,
       after,
       remote_addr
  FROM audit_admin
 WHERE at >= :since AND at < :until
 ORDER BY at DESC, id DESC;

-- name: object_history
-- The whole change history of one object, oldest first: a team, a token (who issued and
-- who revoked it) or a preset.
-- Parameters: :object_type, :object_id.
SELECT id,
       at,
       actor,
       actor_team,
       interface,
       action,
       before,
       after,
       remote_addr
  FROM audit_admin
 WHERE object_type = :object_type AND object_id = :object_id
 ORDER BY at, id;

-- name: run_outcomes_by_team
-- What came of each team's runs (schema version 8): how many are in each status now, as
-- the gateway last recorded it ('waiting': nothing recorded yet).
-- Parameters: :since, :until (on the submission's received time).
SELECT team,
       coalesce(status, 'waiting') AS status,
       count(*)                    AS runs
  FROM audit_runs
 WHERE submitted_at >= :since AND submitted_at < :until
 GROUP BY team, coalesce(status, 'waiting')
 ORDER BY team, status;

-- name: failed_runs
-- Which runs failed, and why (the upstream's error), newest end first.
-- Parameters: :since, :until (on the submission's received time), :limit.
SELECT run_id,
       team,
       token_label,
       processor,
       submission_id,
       submitted_at,
       completed_at,
       error
  FROM audit_runs
 WHERE status = 'failed' AND submitted_at >= :since AND submitted_at < :until
 ORDER BY completed_at DESC, run_id
 LIMIT :limit;

-- name: run_status_history
-- Every status change of one run, in the order recorded, with its source (the group's
-- event stream, or a webhook) and the event or webhook id that told it.
-- Parameters: :run_id.
SELECT change_id,
       status,
       error,
       changed_at,
       recorded_at,
       source,
       event_id
  FROM audit_run_status_changes
 WHERE run_id = :run_id
 ORDER BY change_id;
