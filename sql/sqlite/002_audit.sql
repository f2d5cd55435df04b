-- taskgate schema, version 2: the admin change log, the log of audit reads, append-only
-- audit records, the views audit_calls and audit_admin, and the indexes behind the ready
-- queries of sql/audit-queries.sql.
--
-- Applied by `taskgate init` inside one transaction, after which PRAGMA user_version = 2.
-- Times are RFC 3339 UTC strings with milliseconds, as in version 1.

-- ---- the admin change log ------------------------------------------------------------------
--
-- One row per change to teams, keys, presets and tokens (and per audit prune), made through
-- the CLI or over HTTP. before/after are JSON objects describing the object as it was and as
-- it became (NULL: it did not exist / no longer exists). Secrets never appear in them: an
-- upstream key is written only as its fingerprint ("sha256:" + 12 hex digits, the same value
-- as teams.key_fingerprint), a token only as its id (never the token or its hash). A team's
-- before/after carry its key as "key_fingerprint" (e.g. {"name":"a","key_fingerprint":
-- "sha256:0123456789ab"}); sql/audit-queries.sql reads that member.
--
--   actor        who: 'os:<user>' for the CLI, 'token:<tok_id>' over HTTP
--   actor_team   the team of the acting token (NULL for an OS user)
--   action       'team.add', 'team.set_key', 'token.issue', 'token.revoke', 'preset.set',
--                'audit.prune', ...
--   object_type  'team', 'token', 'preset' or 'audit'
--   object_id    team name, token id ('tok_...'), 'team/preset'
--   team         the team the object belongs to (NULL when none)
CREATE TABLE admin_log (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL CHECK (length(at) = 24
                    AND at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*'
                    AND at GLOB '*T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
    actor       TEXT NOT NULL,
    actor_team  TEXT,
    interface   TEXT NOT NULL CHECK (interface IN ('cli', 'http')),
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    team        TEXT,
    before      TEXT CHECK (before IS NULL OR json_valid(before)),  -- JSON, see above
    after       TEXT CHECK (after IS NULL OR json_valid(after)),    -- JSON, see above
    remote_addr TEXT                         -- the client's address over HTTP
);
CREATE INDEX admin_log_object ON admin_log(object_type, object_id, at);
CREATE INDEX admin_log_time ON admin_log(at);

-- One row per read of the audit trail (HTTP or CLI): every audit read is itself logged.
--   query  what was asked: the path and its filters, e.g. "GET /v1/audit/runs?team=a"
--   rows   how many rows the answer carried (NULL when the read failed)
CREATE TABLE audit_reads (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL CHECK (length(at) = 24
                    AND at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*'
                    AND at GLOB '*T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
    actor       TEXT NOT NULL,
    actor_team  TEXT,
    interface   TEXT NOT NULL CHECK (interface IN ('cli', 'http')),
    query       TEXT,
    remote_addr TEXT,
    rows        INTEGER
);
CREATE INDEX audit_reads_time ON audit_reads(at);

-- ---- append-only audit records -----------------------------------------------------------
--
-- The records of submissions, upstream calls, runs, admin changes and audit reads are never
-- rewritten, and never deleted except by a prune:
--
--   * admin_log, audit_reads, upstream_calls, runs: no UPDATE, ever; DELETE only while the
--     prune guard is set.
--   * submissions: UPDATE only while the row's state is 'pending' or 'unknown' (the gateway
--     settles a submission; reconciliation settles an 'unknown' one), and even then never of
--     the columns that say who asked what; DELETE only while the prune guard is set.
--
-- The prune guard. audit_prune_guard holds at most one row. A prune (`taskgate audit prune`
-- or its HTTP twin) does, in ONE write transaction:
--
--     BEGIN IMMEDIATE;
--     INSERT INTO audit_prune_guard (active) VALUES (1);   -- fails if a guard was left set
--     DELETE FROM runs           WHERE submission_id IN (<old submissions>);
--     DELETE FROM upstream_calls WHERE submission_id IN (<old submissions>);
--     DELETE FROM submissions    WHERE id IN (<old submissions>);
--     DELETE FROM admin_log      WHERE at < :cutoff;
--     DELETE FROM audit_reads    WHERE at < :cutoff;
--     DELETE FROM audit_prune_guard;                        -- before COMMIT, always
--     INSERT INTO admin_log (..., action, object_type, object_id, ...)
--            VALUES (..., 'audit.prune', 'audit', <what>, ...);   -- the prune is logged
--     COMMIT;                                               -- or ROLLBACK on any failure
--
-- (children before parents: runs reference upstream_calls, which reference submissions.)
-- Because the guard row is inserted and deleted inside the same transaction, no other
-- connection ever sees it: SQLite lets one writer in at a time and readers see only committed
-- data, so outside a prune every UPDATE or DELETE above fails with
-- SQLITE_CONSTRAINT_TRIGGER. A guard row that is ever committed (a bug) would switch the
-- protection off for everyone, which is why the prune INSERTs it without OR IGNORE: the next
-- prune then fails loudly instead of going on quietly.
--
-- These triggers guard against mistakes (a wrong UPDATE in code, a careless hand-typed
-- DELETE in the sqlite3 shell); whoever can write the database file can also drop triggers,
-- so they are not a defence against the file's owner.

CREATE TABLE audit_prune_guard (
    active INTEGER NOT NULL PRIMARY KEY CHECK (active = 1)
);

CREATE TRIGGER admin_log_no_update BEFORE UPDATE ON admin_log
BEGIN
    SELECT RAISE(ABORT, 'admin_log is append-only: its rows are never updated');
END;

CREATE TRIGGER admin_log_no_delete BEFORE DELETE ON admin_log
WHEN NOT EXISTS (SELECT 1 FROM audit_prune_guard)
BEGIN
    SELECT RAISE(ABORT, 'admin_log is append-only: rows are deleted only by an audit prune');
END;

CREATE TRIGGER audit_reads_no_update BEFORE UPDATE ON audit_reads
BEGIN
    SELECT RAISE(ABORT, 'audit_reads is append-only: its rows are never updated');
END;

CREATE TRIGGER audit_reads_no_delete BEFORE DELETE ON audit_reads
WHEN NOT EXISTS (SELECT 1 FROM audit_prune_guard)
BEGIN
    SELECT RAISE(ABORT, 'audit_reads is append-only: rows are deleted only by an audit prune');
END;

CREATE TRIGGER runs_no_update BEFORE UPDATE ON runs
BEGIN
    SELECT RAISE(ABORT, 'runs are audit records: they are never updated');
END;

CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs
WHEN NOT EXISTS (SELECT 1 FROM audit_prune_guard)
BEGIN
    SELECT RAISE(ABORT, 'runs are audit records: they are deleted only by an audit prune');
END;

CREATE TRIGGER upstream_calls_no_update BEFORE UPDATE ON upstream_calls
BEGIN
    SELECT RAISE(ABORT, 'upstream_calls are audit records: they are never updated');
END;

CREATE TRIGGER upstream_calls_no_delete BEFORE DELETE ON upstream_calls
WHEN NOT EXISTS (SELECT 1 FROM audit_prune_guard)
BEGIN
    SELECT RAISE(ABORT,
                 'upstream_calls are audit records: they are deleted only by an audit prune');
END;

-- A settled submission (accepted, rejected, failed) is final.
CREATE TRIGGER submissions_settled_no_update BEFORE UPDATE ON submissions
WHEN OLD.state NOT IN ('pending', 'unknown')
BEGIN
    SELECT RAISE(ABORT, 'a settled submission (accepted, rejected or failed) is never updated');
END;

-- While it is still open, only its outcome may be written (state, statuses, error,
-- completed_at, taskgroup_id); who asked, when, from where and what never change, and a
-- submission never goes back to 'pending'.
CREATE TRIGGER submissions_identity_no_update BEFORE UPDATE ON submissions
WHEN NEW.id IS NOT OLD.id OR NEW.team_id IS NOT OLD.team_id
  OR NEW.token_id IS NOT OLD.token_id OR NEW.request_id IS NOT OLD.request_id
  OR NEW.received_at IS NOT OLD.received_at OR NEW.remote_addr IS NOT OLD.remote_addr
  OR NEW.interface IS NOT OLD.interface OR NEW.num_inputs IS NOT OLD.num_inputs
  OR NEW.request IS NOT OLD.request
  OR (NEW.state = 'pending' AND OLD.state <> 'pending')
BEGIN
    SELECT RAISE(ABORT, 'only the outcome of an open submission may be updated');
END;

CREATE TRIGGER submissions_no_delete BEFORE DELETE ON submissions
WHEN NOT EXISTS (SELECT 1 FROM audit_prune_guard)
BEGIN
    SELECT RAISE(ABORT, 'submissions are audit records: they are deleted only by an audit prune');
END;

-- ---- indexes for the common questions -----------------------------------------------------
--
-- Already in version 1: submissions by team and time, by time, by group (runs of a group go
-- submissions_group -> runs_submission), open ones by state; runs by submission.

-- What a token did.
CREATE INDEX submissions_token ON submissions(token_id, received_at);
-- Upstream calls by outcome (failures by status), and by time (the slowest in a window).
CREATE INDEX upstream_calls_outcome ON upstream_calls(outcome, started_at);
CREATE INDEX upstream_calls_time ON upstream_calls(started_at);

-- ---- views: the stable interface ------------------------------------------------------------

-- One row per upstream call a submission made (a group creation, or one chunk of runs).
CREATE VIEW audit_calls AS
SELECT c.submission_id AS submission_id,
       t.name          AS team,
       c.seq           AS seq,
       c.operation     AS operation,
       c.method        AS method,
       c.path          AS path,
       c.first_input   AS first_input,
       c.num_inputs    AS num_inputs,
       c.started_at    AS started_at,
       c.finished_at   AS finished_at,
       c.duration_ms   AS duration_ms,
       c.outcome       AS outcome,
       c.http_status   AS http_status,
       c.run_cursor    AS run_cursor,
       c.event_cursor  AS event_cursor,
       c.error         AS error,
       s.taskgroup_id  AS taskgroup_id
  FROM upstream_calls c
  JOIN submissions s ON s.id = c.submission_id
  JOIN teams t ON t.id = s.team_id;

-- One row per administrative change, oldest first by id.
CREATE VIEW audit_admin AS
SELECT a.id          AS id,
       a.at          AS at,
       a.actor       AS actor,
       a.actor_team  AS actor_team,
       a.interface   AS interface,
       a.action      AS action,
       a.object_type AS object_type,
       a.object_id   AS object_id,
       a.team        AS team,
       a.before      AS before,
       a.after       AS after,
       a.remote_addr AS remote_addr
  FROM admin_log a;
