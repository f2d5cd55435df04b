-- taskgate schema, version 1: teams, tokens, presets, and the audit records of every
-- submission, upstream call and run. Times are RFC 3339 UTC strings with milliseconds
-- ("2026-11-28T12:00:00.000Z"), so they sort and compare as text.

CREATE TABLE teams (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    upstream_key    TEXT NOT NULL,           -- the team's Parallel API key; never returned
    key_fingerprint TEXT NOT NULL,           -- "sha256:" + first 12 hex digits, safe to show
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,            -- "tok_...", public, used to revoke
    team_id     INTEGER NOT NULL REFERENCES teams(id),
    role        TEXT NOT NULL CHECK (role IN ('submit', 'audit', 'admin')),
    label       TEXT,
    hash        TEXT NOT NULL UNIQUE,        -- SHA-256 (hex) of the token; the token is never stored
    created_at  TEXT NOT NULL,
    expires_at  TEXT,                        -- NULL: never
    revoked_at  TEXT                         -- NULL: valid
);

CREATE TABLE presets (
    team_id     INTEGER NOT NULL REFERENCES teams(id),
    name        TEXT NOT NULL,
    body        TEXT NOT NULL,               -- JSON: a run input without "input", plus default_task_spec
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (team_id, name)
);

-- One row per request that asked for runs or a group. Written as 'pending' before anything
-- goes upstream; its final state is written before the client gets an answer.
CREATE TABLE submissions (
    id              TEXT PRIMARY KEY,        -- "sub_..."
    team_id         INTEGER NOT NULL REFERENCES teams(id),
    token_id        TEXT REFERENCES tokens(id),
    request_id      TEXT,                    -- nginx's $request_id, also sent upstream
    received_at     TEXT NOT NULL,
    completed_at    TEXT,
    remote_addr     TEXT,
    interface       TEXT NOT NULL,           -- 'simplified' or 'upstream-compatible'
    taskgroup_id    TEXT,
    num_inputs      INTEGER NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('pending', 'accepted', 'rejected', 'failed', 'unknown')),
    http_status     INTEGER,                 -- what the client was answered
    upstream_status INTEGER,                 -- the last upstream call's HTTP status
    error           TEXT,
    request         TEXT                     -- the submission as received (JSON, secrets redacted)
);
CREATE INDEX submissions_team_time ON submissions(team_id, received_at);
CREATE INDEX submissions_time ON submissions(received_at);
CREATE INDEX submissions_state ON submissions(state) WHERE state IN ('pending', 'unknown');
CREATE INDEX submissions_group ON submissions(taskgroup_id);

-- One row per upstream call a submission made (a group creation, or one chunk of runs).
CREATE TABLE upstream_calls (
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    seq           INTEGER NOT NULL,          -- 0, 1, ... in the order sent
    operation     TEXT NOT NULL CHECK (operation IN ('create_group', 'add_runs')),
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    first_input   INTEGER,                   -- index of the chunk's first input in the submission
    num_inputs    INTEGER,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    duration_ms   INTEGER,
    outcome       TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'unknown', 'not_sent')),
    http_status   INTEGER,
    run_cursor    TEXT,
    event_cursor  TEXT,
    error         TEXT,
    PRIMARY KEY (submission_id, seq)
) WITHOUT ROWID;

-- One row per run the upstream created.
CREATE TABLE runs (
    run_id        TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL,
    call_seq      INTEGER NOT NULL,
    input_index   INTEGER NOT NULL,          -- position in the submission's inputs
    processor     TEXT,
    FOREIGN KEY (submission_id, call_seq) REFERENCES upstream_calls(submission_id, seq)
) WITHOUT ROWID;
CREATE INDEX runs_submission ON runs(submission_id, input_index);

-- The stable way to query by hand: base tables may change, these columns will not.
CREATE VIEW audit_submissions AS
SELECT s.id            AS submission_id,
       t.name          AS team,
       k.label         AS token_label,
       s.received_at   AS received_at,
       s.completed_at  AS completed_at,
       s.remote_addr   AS remote_addr,
       s.interface     AS interface,
       s.taskgroup_id  AS taskgroup_id,
       s.num_inputs    AS num_inputs,
       s.state         AS state,
       s.http_status   AS http_status,
       s.upstream_status AS upstream_status,
       s.error         AS error,
       s.token_id      AS token_id,
       s.request_id    AS request_id
  FROM submissions s
  JOIN teams t ON t.id = s.team_id
  LEFT JOIN tokens k ON k.id = s.token_id;

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
       r.call_seq      AS call_seq
  FROM runs r
  JOIN submissions s ON s.id = r.submission_id
  JOIN upstream_calls c ON c.submission_id = r.submission_id AND c.seq = r.call_seq
  JOIN teams t ON t.id = s.team_id
  LEFT JOIN tokens k ON k.id = s.token_id;
