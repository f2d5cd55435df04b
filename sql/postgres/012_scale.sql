-- taskgate schema, version 12 (PostgreSQL): runs keyed by submission as in SQLite, the indexes
-- the audit lists need at any size, and the audit summary (audit_summary), counted in the
-- same transactions as the records it counts.
--
-- The twin of sql/sqlite/012_scale.sql (see 001_init.sql for how the dialects are matched):
-- the same tables, columns, primary keys and views. Where the two differ, on purpose:
--
--   * runs_id. SQLite indexes run ids by (bucket, run_id), so that a call's ids go to the
--     newest bucket's pages only, and checks that an id is new against the older buckets
--     through their filters (run_buckets). Here the index is a plain unique one on run_id:
--     it refuses a second recording of an id by itself, and runs.bucket stays 0 and
--     run_buckets empty (the columns are SQLite's, kept so that the tables are the same).
--   * summary_counts.shard. SQLite has one writer, and counts in shard 0. Here
--     transactions of one team on one day would all wait for the one row they add to (a row
--     is held to the commit, its WAL flush included); each session counts in its own shard
--     (its backend's pid) instead, the view sums them, and the daemon's housekeeping folds
--     the shards of past days into shard 0 (tg_store_summary_compact).
--   * runs_cost. Version 11's trigger stays here: it fires once per INSERT statement, and a
--     call's runs are one statement. SQLite's fired once per run (about 20 us each), so
--     there the store prices each call's runs in its code as it records them, the same
--     sums (gateway/store/sqlite/tg_sqlite_usage.c); runs written by hand are not priced.

-- ---- runs, by submission --------------------------------------------------------------------

ALTER TABLE runs ADD COLUMN bucket BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs DROP CONSTRAINT runs_pkey;
ALTER TABLE runs ADD PRIMARY KEY (submission_id, input_index);
CREATE UNIQUE INDEX runs_id ON runs(run_id);
DROP INDEX runs_submission;  -- the primary key's first column now

CREATE TABLE run_buckets (
    bucket  BIGINT PRIMARY KEY,
    runs    BIGINT NOT NULL,
    filter  BYTEA
);

-- ---- indexes for the audit lists at any size ------------------------------------------------
--
-- As in SQLite: a group's submissions and runs, and any state, in (received_at, id) order;
-- version 6's submissions_group_time gains the id under the same name, its partial
-- submissions_open stays.
DROP INDEX submissions_group_time;
CREATE INDEX submissions_group_time ON submissions(taskgroup_id, received_at, id);
CREATE INDEX submissions_state_time ON submissions(state, received_at, id);

-- ---- the audit summary ----------------------------------------------------------------------
--
-- See sql/sqlite/012_scale.sql for what each column counts.
CREATE TABLE summary_counts (
    team_id      BIGINT NOT NULL REFERENCES teams(id),
    day          TEXT COLLATE "C" NOT NULL,
    state        TEXT COLLATE "C" NOT NULL,
    processor    TEXT COLLATE "C" NOT NULL,
    shard        BIGINT NOT NULL,
    submissions  BIGINT NOT NULL,
    runs         BIGINT NOT NULL,
    PRIMARY KEY (team_id, day, state, processor, shard)
);
CREATE INDEX summary_counts_day ON summary_counts(day);

INSERT INTO summary_counts (team_id, day, state, processor, shard, submissions, runs)
SELECT s.team_id, substr(s.received_at, 1, 10), s.state, coalesce(r.processor, ''), 0,
       count(DISTINCT s.id), count(r.run_id)
  FROM submissions s LEFT JOIN runs r ON r.submission_id = s.id
 GROUP BY s.team_id, substr(s.received_at, 1, 10), s.state, coalesce(r.processor, '');

-- sum() of bigint is numeric here: cast back, so that the view's columns are SQLite's
-- integers.
CREATE VIEW audit_summary AS
SELECT t.name                   AS team,
       c.day                    AS day,
       nullif(c.processor, '')  AS processor,
       c.state                  AS state,
       sum(c.submissions)::bigint AS submissions,
       sum(c.runs)::bigint      AS runs
  FROM summary_counts c
  JOIN teams t ON t.id = c.team_id
 GROUP BY t.name, c.day, c.processor, c.state
HAVING sum(c.submissions) <> 0 OR sum(c.runs) <> 0;

-- ---- how long completed runs took -----------------------------------------------------------
--
-- See sql/sqlite/012_scale.sql: run_status.duration_ms and duration_counts, the same columns.
ALTER TABLE run_status ADD COLUMN duration_ms BIGINT;

CREATE TABLE duration_counts (
    team_id    BIGINT NOT NULL REFERENCES teams(id),
    day        TEXT COLLATE "C" NOT NULL,
    processor  TEXT COLLATE "C" NOT NULL,
    bucket_ms  BIGINT NOT NULL,
    shard      BIGINT NOT NULL,
    runs       BIGINT NOT NULL,
    total_ms   BIGINT NOT NULL,
    max_ms     BIGINT NOT NULL,
    PRIMARY KEY (team_id, day, processor, bucket_ms, shard)
);
CREATE INDEX duration_counts_day ON duration_counts(day);

UPDATE run_status st SET duration_ms = greatest(0, round((extract(epoch FROM
       st.completed_at::timestamptz) - extract(epoch FROM c.started_at::timestamptz)) * 1000))
  FROM runs r JOIN upstream_calls c ON c.submission_id = r.submission_id AND c.seq = r.call_seq
 WHERE r.run_id = st.run_id AND st.status = 'completed';

INSERT INTO duration_counts (team_id, day, processor, bucket_ms, shard, runs, total_ms, max_ms)
SELECT s.team_id, substr(s.received_at, 1, 10), coalesce(r.processor, ''),
       CASE WHEN st.duration_ms < 100 THEN st.duration_ms
            ELSE CAST(substr(CAST(st.duration_ms AS TEXT), 1, 2)
                      || substr('000000000000000000', 1, length(CAST(st.duration_ms AS TEXT)) - 2)
                      AS BIGINT) END,
       0, count(*), sum(st.duration_ms), max(st.duration_ms)
  FROM run_status st
  JOIN runs r ON r.run_id = st.run_id
  JOIN submissions s ON s.id = r.submission_id
 WHERE st.duration_ms IS NOT NULL
 GROUP BY 1, 2, 3, 4;
