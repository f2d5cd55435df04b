-- taskgate schema, version 3: idempotency records, per-team limits and their usage, the
-- reconciliation log, and the link from a repeated submission to the one it resumes.
--
-- Applied by `taskgate init` inside one transaction, after which PRAGMA user_version = 3.

-- ---- idempotency -----------------------------------------------------------------------------
--
-- One row per (team, kind, key): the submission a key (or an SDK's retry) stands for.
--   kind         'key': the client's Idempotency-Key header or idempotency_key form field;
--                'retry': an official SDK's request (it sends x-stainless-retry-count), keyed
--                by the token id and the request hash, so that the SDK's own retry without a
--                key is recognised.
--   key          the Idempotency-Key as sent, or '<token id>:<request_hash>' for kind 'retry'
--   request_hash hex SHA-256 of the canonical request (interface, path, query, body with
--                object keys sorted; the form token and idempotency_key left out)
--   submission_id the submission now answering for the key (a repeat that resumes an earlier
--                submission takes the row over)
--   expires_ms   milliseconds since the epoch after which the row no longer deduplicates
--   answer_*     the answer sent to the client (status, content type, body bytes) once the
--                submission was accepted; NULL otherwise. A replay sends exactly these.
CREATE TABLE idempotency (
    team_id        INTEGER NOT NULL REFERENCES teams(id),
    kind           TEXT NOT NULL CHECK (kind IN ('key', 'retry')),
    key            TEXT NOT NULL,
    request_hash   TEXT NOT NULL,
    submission_id  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_ms     INTEGER NOT NULL,
    answer_status  INTEGER,
    answer_type    TEXT,
    answer_body    BLOB,
    PRIMARY KEY (team_id, kind, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency(expires_ms);

-- A repeat of a submission that failed or was unknown sends only what is missing: it names
-- the earlier submission whose runs it reuses (NULL for every other submission).
ALTER TABLE submissions ADD COLUMN resumes TEXT;

-- ---- per-team limits -----------------------------------------------------------------------
--
-- 0 means no limit. A team without a row has no limits.
CREATE TABLE team_limits (
    team_id          INTEGER PRIMARY KEY REFERENCES teams(id),
    runs_per_minute  INTEGER NOT NULL DEFAULT 0 CHECK (runs_per_minute >= 0),
    in_flight        INTEGER NOT NULL DEFAULT 0 CHECK (in_flight >= 0),
    updated_at       TEXT NOT NULL
);

-- Runs admitted per team and clock minute (minute = ms since the epoch / 60000); only the
-- current minute matters, older rows are removed as new ones are written.
CREATE TABLE team_usage (
    team_id  INTEGER NOT NULL REFERENCES teams(id),
    minute   INTEGER NOT NULL,
    runs     INTEGER NOT NULL,
    PRIMARY KEY (team_id, minute)
) WITHOUT ROWID;

-- ---- reconciliation ------------------------------------------------------------------------
--
-- One row per reconciliation attempt of an 'unknown' submission.
--   actor      'os:<user>' (taskgate reconcile), 'daemon:start' (the pass at start-up) or
--              'token:<tok_id>' (a client's repeat of the submission)
--   outcome    'accepted', 'failed', 'partial' (some runs exist: recorded as failed with the
--              runs found), or 'error' (the upstream could not be read: still unknown)
--   runs_found runs carrying the submission's tag in its group
CREATE TABLE reconciliations (
    id            INTEGER PRIMARY KEY,
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    taskgroup_id  TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('accepted', 'failed', 'partial', 'error')),
    runs_found    INTEGER NOT NULL DEFAULT 0,
    detail        TEXT
);
CREATE INDEX reconciliations_submission ON reconciliations(submission_id, at);

CREATE TRIGGER reconciliations_no_update BEFORE UPDATE ON reconciliations
BEGIN
    SELECT RAISE(ABORT, 'reconciliations are audit records: they are never updated');
END;
