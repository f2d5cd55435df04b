-- taskgate schema, version 5: the daemons that serve the store, and which one took each
-- submission.
--
-- With several daemons on one database (PostgreSQL), a submission left 'pending' belongs to
-- the daemon that took it: only once that daemon's lease has run out (it died, or lost the
-- database for longer than the lease) may another daemon mark it 'unknown' and reconcile
-- it. SQLite has one daemon per file (the lock on "<database>.lock"), which registers here
-- too so that every store says which daemon served it.

CREATE TABLE daemons (
    id           TEXT PRIMARY KEY,        -- "dmn_" + 16 hex digits, made when it starts
    host         TEXT NOT NULL,           -- the machine's name
    pid          INTEGER NOT NULL,
    listen       TEXT,                    -- its FastCGI socket
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,           -- renewed while it runs
    lease_until  TEXT NOT NULL,           -- past it, the daemon is presumed gone
    stopped_at   TEXT                     -- set when it stopped cleanly
);
CREATE INDEX daemons_lease ON daemons(lease_until) WHERE stopped_at IS NULL;

-- The daemon that took the submission (NULL for those before version 5).
ALTER TABLE submissions ADD COLUMN daemon_id TEXT;
