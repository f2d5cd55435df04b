-- taskgate schema, version 12: runs laid out so that recording them costs the same in a store
-- of a million runs as in a new one, and the audit summary (audit_summary), counted in the
-- same transactions as the records it counts.
--
-- Applied by `taskgate init` (and the daemon's start-up) inside one transaction, after which
-- PRAGMA user_version = 12. On a store of a million runs it rewrites the runs table, its index
-- and the summary: some seconds, once. Versions 6 to 11 are kept as they were: the runs
-- table is rebuilt with the triggers and views that version 2 and version 8 made on it, and
-- audit_runs keeps version 8's columns (status, error, completed_at).

-- ---- runs, by submission; their ids by bucket -------------------------------------------
--
-- Before, runs was keyed by run_id. The upstream's ids are random, so each run recorded went
-- to a random leaf of a B-tree that grows with the store: a 1,000-run call dirtied about a
-- thousand pages once the table no longer fitted in the cache, and recording slowed with
-- every run stored. Now the table is keyed by (submission_id, input_index), which grows at its
-- end (submission ids begin with the time), and the ids are indexed by (bucket, run_id):
-- runs are numbered into buckets of about 16,384 as they are recorded (all of one upstream
-- call in the same bucket), so a call's ids go to the leaves of the newest bucket only.
--
--   bucket   the run's bucket (run_buckets); 0 for rows written by hand
--
-- A run id is still recorded once at most: the unique index refuses a second one in the same
-- bucket, and before runs go into the newest bucket the store looks for their ids in the
-- older ones, through each closed bucket's filter (run_buckets.filter) and, where a filter
-- says "maybe", the index. To find a run by id alone, ask each bucket (the store walks the
-- buckets of runs_id with a recursive CTE, so that rows written by hand are found too), or
-- let SQLite do it: with the statistics row below, a plain WHERE run_id = ... (on runs or
-- audit_runs, as in audit-queries.sql) is a skip-scan, one look per bucket, instead of a
-- read of every run. SQLite takes one when the statistics say that the index's first
-- column repeats: the row only needs runs per bucket in proportion, and ANALYZE rewrites it
-- with the true figures.

DROP VIEW audit_run_status_changes;
DROP VIEW audit_runs;

CREATE TABLE runs_v12 (
    run_id        TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    call_seq      INTEGER NOT NULL,
    input_index   INTEGER NOT NULL,          -- position in the submission's inputs
    processor     TEXT,
    bucket        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (submission_id, input_index),
    FOREIGN KEY (submission_id, call_seq) REFERENCES upstream_calls(submission_id, seq)
) WITHOUT ROWID;

INSERT INTO runs_v12 (run_id, submission_id, call_seq, input_index, processor, bucket)
SELECT run_id, submission_id, call_seq, input_index, processor,
       (row_number() OVER (ORDER BY submission_id, input_index) - 1) / 16384
  FROM runs;

DROP TABLE runs;  -- and with it runs_submission (the primary key now) and its triggers
-- Version 11's runs_cost went with them: a trigger for each run, about 20 us a run (a
-- 10,000-input submission 244 ms against 70 without it). The store now prices each call's
-- runs in one step per processor as it records them (gateway/store/sqlite/tg_sqlite_runs.c):
-- the same sums in call_costs, usage_days, team_budgets and budget_holds.
ALTER TABLE runs_v12 RENAME TO runs;
CREATE UNIQUE INDEX runs_id ON runs(bucket, run_id);
ANALYZE sqlite_schema;  -- creates sqlite_stat1 when it does not exist yet
DELETE FROM sqlite_stat1 WHERE tbl = 'runs';
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('runs', 'runs_id', '1000000 16384 1');

-- One row per bucket of runs: how many runs were placed in it (a prune does not count them
-- down) and, once a newer bucket was opened, a filter of its run ids: a Bloom filter (the
-- store's own format, see gateway/store/sqlite/tg_sqlite_runs.c) that says "no" for every id
-- the bucket does not hold and "maybe" for about one in a thousand others. NULL until the
-- store first needs it. A prune removes the rows of buckets it emptied.
CREATE TABLE run_buckets (
    bucket  INTEGER PRIMARY KEY,
    runs    INTEGER NOT NULL,
    filter  BLOB
);
INSERT INTO run_buckets (bucket, runs)
SELECT bucket, count(*) FROM runs GROUP BY bucket;

CREATE TRIGGER runs_no_update BEFORE UPDATE ON runs
BEGIN
    SELECT RAISE(ABORT, 'runs are audit records: they are never updated');
END;

CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs
WHEN NOT EXISTS (SELECT 1 FROM audit_prune_guard)
BEGIN
    SELECT RAISE(ABORT, 'runs are audit records: they are deleted only by an audit prune');
END;

-- As in version 8: a run's status and its changes go with it.
CREATE TRIGGER runs_prune_status AFTER DELETE ON runs
BEGIN
    DELETE FROM run_status_changes WHERE run_id = OLD.run_id;
    DELETE FROM run_status WHERE run_id = OLD.run_id;
END;

-- As in version 8, with the same columns.
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

-- ---- indexes for the audit lists at any size ----------------------------------------------
--
-- Every audit list is a keyset page in (received_at, id) order under one filter that an
-- index answers: a group's submissions and runs, a state (any of the five, not only the
-- open ones), a team (submissions_team_time, version 1). submissions_group_time (version 6)
-- gains the id, the page's last key column, under the same name: one index serves the
-- group's pages and reconciliation's walk back from a time. submissions_state_time is the
-- audit's; version 6's partial submissions_open stays what the request path and
-- reconciliation read (the open submissions only: a few rows, whatever the store's size).
DROP INDEX submissions_group_time;
CREATE INDEX submissions_group_time ON submissions(taskgroup_id, received_at, id);
CREATE INDEX submissions_state_time ON submissions(state, received_at, id);

-- ---- the audit summary ---------------------------------------------------------------------
--
-- Submissions and runs counted by team, day (UTC, the submission's received day), state and
-- processor, kept by the store in the same transaction as every change it counts: a
-- submission recorded, its runs recorded (by the gateway or a reconciliation), its state
-- changed (pending -> accepted, rejected, failed or unknown; unknown -> accepted or failed)
-- and a prune. So that it answers from a few rows, never from a scan of the runs.
--
--   state        the submission's state now (runs count under their submission's state)
--   processor    '' for none: a submission is counted once under each processor its runs
--                carry, and under '' while it has no run (rejected, failed before any run,
--                pending); runs without a processor count under '' too
--   shard        spreads one (team, day, state, processor) over rows that concurrent
--                transactions write without waiting for each other: always 0 on SQLite
--                (one writer), a session's own on PostgreSQL until the daemon folds a
--                past day into 0; read the sums (audit_summary)
--   submissions, runs   the counts (a row may hold 0 once everything moved elsewhere; the
--                daemon's housekeeping removes those of past days)
CREATE TABLE summary_counts (
    team_id      INTEGER NOT NULL REFERENCES teams(id),
    day          TEXT NOT NULL,
    state        TEXT NOT NULL,
    processor    TEXT NOT NULL,
    shard        INTEGER NOT NULL,
    submissions  INTEGER NOT NULL,
    runs         INTEGER NOT NULL,
    PRIMARY KEY (team_id, day, state, processor, shard)
) WITHOUT ROWID;
CREATE INDEX summary_counts_day ON summary_counts(day);

INSERT INTO summary_counts (team_id, day, state, processor, shard, submissions, runs)
SELECT s.team_id, substr(s.received_at, 1, 10), s.state, coalesce(r.processor, ''), 0,
       count(DISTINCT s.id), count(r.run_id)
  FROM submissions s LEFT JOIN runs r ON r.submission_id = s.id
 GROUP BY s.team_id, substr(s.received_at, 1, 10), s.state, coalesce(r.processor, '');

-- The summary as auditors read it: processor NULL for none. It equals, at every commit,
--
--   SELECT s.team, substr(s.received_at, 1, 10) AS day, r.processor, s.state,
--          count(DISTINCT s.submission_id) AS submissions, count(r.run_id) AS runs
--     FROM audit_submissions s LEFT JOIN audit_runs r ON r.submission_id = s.submission_id
--    GROUP BY 1, 2, 3, 4
--
-- (with runs whose processor is NULL counted with the submissions that have none).
CREATE VIEW audit_summary AS
SELECT t.name                   AS team,
       c.day                    AS day,
       nullif(c.processor, '')  AS processor,
       c.state                  AS state,
       sum(c.submissions)       AS submissions,
       sum(c.runs)              AS runs
  FROM summary_counts c
  JOIN teams t ON t.id = c.team_id
 GROUP BY t.name, c.day, c.processor, c.state
HAVING sum(c.submissions) <> 0 OR sum(c.runs) <> 0;

-- ---- how long completed runs took ---------------------------------------------------------
--
-- A completed run's duration: from the start of the add-runs call that created it (the
-- call's started_at) to its completion as the upstream told it (run_status.completed_at),
-- in milliseconds. The store writes it in the transaction that records the completion, when
-- the run is the gateway's (its row in runs exists; a run settled later by reconciliation
-- gets it when its row is written), and counts it in duration_counts. NULL: not counted
-- (not completed, or not known as the gateway's when it completed).
ALTER TABLE run_status ADD COLUMN duration_ms INTEGER;

-- Completed runs by team, day (the submission's received day, as summary_counts), processor
-- ('' for none) and duration bucket, so that the summary's durations by processor (runs,
-- mean, p50, p90, max) read a few rows, never the runs:
--
--   bucket_ms    the duration rounded down to two significant digits (0..99 ms exactly,
--                then 100, 110, ... 990, 1000, 1100, ...): a bucket is at most a tenth of
--                its durations wide, and a percentile is told as the longest duration of
--                its bucket (never less than the true one, and less than 10% more)
--   shard        as summary_counts.shard
--   runs, total_ms, max_ms   how many, their sum, the longest (a prune takes runs and
--                total_ms away but cannot know the next longest: max_ms stays until its row
--                empties, on the day a prune cut through)
CREATE TABLE duration_counts (
    team_id    INTEGER NOT NULL REFERENCES teams(id),
    day        TEXT NOT NULL,
    processor  TEXT NOT NULL,
    bucket_ms  INTEGER NOT NULL,
    shard      INTEGER NOT NULL,
    runs       INTEGER NOT NULL,
    total_ms   INTEGER NOT NULL,
    max_ms     INTEGER NOT NULL,
    PRIMARY KEY (team_id, day, processor, bucket_ms, shard)
) WITHOUT ROWID;
CREATE INDEX duration_counts_day ON duration_counts(day);

UPDATE run_status SET duration_ms = (
    SELECT max(0, CAST(round((julianday(run_status.completed_at) - julianday(c.started_at))
                             * 86400000.0) AS INTEGER))
      FROM runs r JOIN upstream_calls c ON c.submission_id = r.submission_id AND c.seq = r.call_seq
     WHERE r.run_id = run_status.run_id)
 WHERE status = 'completed';

INSERT INTO duration_counts (team_id, day, processor, bucket_ms, shard, runs, total_ms, max_ms)
SELECT s.team_id, substr(s.received_at, 1, 10), coalesce(r.processor, ''),
       CASE WHEN st.duration_ms < 100 THEN st.duration_ms
            ELSE CAST(substr(CAST(st.duration_ms AS TEXT), 1, 2)
                      || substr('000000000000000000', 1, length(CAST(st.duration_ms AS TEXT)) - 2)
                      AS INTEGER) END,
       0, count(*), sum(st.duration_ms), max(st.duration_ms)
  FROM run_status st
  JOIN runs r ON r.run_id = st.run_id
  JOIN submissions s ON s.id = r.submission_id
 WHERE st.duration_ms IS NOT NULL
 GROUP BY 1, 2, 3, 4;
