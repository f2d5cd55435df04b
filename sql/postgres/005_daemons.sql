-- taskgate schema, version 5 (PostgreSQL): the daemons that serve the store, and which one
-- took each submission.
--
-- The twin of sql/sqlite/005_daemons.sql (see 001_init.sql for how the dialects are
-- matched). With several daemons on one database, a submission left 'pending' belongs to
-- the daemon that took it: only once that daemon's lease has run out (it died, or lost the
-- database for longer than the lease) may another daemon mark it 'unknown' and reconcile
-- it. A daemon renews its lease while it runs and sets stopped_at when it stops cleanly.

CREATE TABLE daemons (
    id           TEXT COLLATE "C" PRIMARY KEY, -- "dmn_" + 16 hex digits, made when it starts
    host         TEXT COLLATE "C" NOT NULL,    -- the machine's name
    pid          BIGINT NOT NULL,
    listen       TEXT COLLATE "C",             -- its FastCGI socket
    started_at   TEXT COLLATE "C" NOT NULL,
    heartbeat_at TEXT COLLATE "C" NOT NULL,    -- renewed while it runs
    lease_until  TEXT COLLATE "C" NOT NULL,    -- past it, the daemon is presumed gone
    stopped_at   TEXT COLLATE "C"              -- set when it stopped cleanly
);
CREATE INDEX daemons_lease ON daemons(lease_until) WHERE stopped_at IS NULL;

-- The daemon that took the submission (NULL for those before version 5).
ALTER TABLE submissions ADD COLUMN daemon_id TEXT COLLATE "C";
