-- taskgate schema, version 11 (PostgreSQL): estimated spend. A price table, the estimated
-- cost of every upstream call's runs, usage per team, day and processor, and budgets per
-- team.
--
-- The twin of sql/sqlite/011_usage_budgets.sql (see 001_init.sql for how the dialects are
-- matched; its text says what each table is for). SQLite's triggers price each run as it is
-- recorded; here one statement-level trigger prices all the runs a statement recorded (a
-- call's, in the call's own statement) at once. Admission's conditional UPDATE of a team's
-- budget row is evaluated again on the row's newest version after waiting for its lock
-- (READ COMMITTED), so two hosts admitting for one team at once never both take its last
-- dollars.

-- Prices in micro-dollars per run, by processor (listed without "-fast": a -fast variant
-- costs what its base does), each in force from effective_from (a UTC day) until the next
-- one of the same processor. The published list is in force from the start; the operator
-- adds prices from a later day (`taskgate price set`), so that a change never reprices
-- what was already recorded.
CREATE TABLE prices (
    processor      TEXT COLLATE "C" NOT NULL,
    effective_from TEXT COLLATE "C" NOT NULL,            -- 'YYYY-MM-DD'
    micro_per_run  BIGINT NOT NULL CHECK (micro_per_run >= 0),
    source         TEXT COLLATE "C" NOT NULL CHECK (source IN ('published', 'operator')),
    set_at         TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (processor, effective_from)
);

-- Parallel's published prices: US dollars per 1,000 runs x 1,000 = micro-dollars per run
-- (the same list as gateway/base/tg_price.c).
INSERT INTO prices (processor, effective_from, micro_per_run, source, set_at) VALUES
    ('lite', '1970-01-01', 5000, 'published', '1970-01-01T00:00:00.000Z'),
    ('base', '1970-01-01', 10000, 'published', '1970-01-01T00:00:00.000Z'),
    ('core', '1970-01-01', 25000, 'published', '1970-01-01T00:00:00.000Z'),
    ('core2x', '1970-01-01', 50000, 'published', '1970-01-01T00:00:00.000Z'),
    ('pro', '1970-01-01', 100000, 'published', '1970-01-01T00:00:00.000Z'),
    ('ultra', '1970-01-01', 300000, 'published', '1970-01-01T00:00:00.000Z'),
    ('ultra2x', '1970-01-01', 600000, 'published', '1970-01-01T00:00:00.000Z'),
    ('ultra4x', '1970-01-01', 1200000, 'published', '1970-01-01T00:00:00.000Z'),
    ('ultra8x', '1970-01-01', 2400000, 'published', '1970-01-01T00:00:00.000Z');

-- The estimated cost of the runs each upstream call created, by processor.
CREATE TABLE call_costs (
    submission_id  TEXT COLLATE "C" NOT NULL,
    call_seq       BIGINT NOT NULL,
    processor      TEXT COLLATE "C" NOT NULL,             -- as sent ('' when none was recorded)
    runs           BIGINT NOT NULL,
    est_cost_micro BIGINT NOT NULL,
    PRIMARY KEY (submission_id, call_seq, processor),
    FOREIGN KEY (submission_id, call_seq) REFERENCES upstream_calls(submission_id, seq)
        ON DELETE CASCADE
);

-- Runs created and their estimated cost per team, UTC day of the submission and processor:
-- what usage reports are answered from (never a scan of runs). History: an audit prune
-- leaves it as it is.
CREATE TABLE usage_days (
    team_id        BIGINT NOT NULL REFERENCES teams(id),
    day            TEXT COLLATE "C" NOT NULL,             -- 'YYYY-MM-DD'
    processor      TEXT COLLATE "C" NOT NULL,
    runs           BIGINT NOT NULL,
    est_cost_micro BIGINT NOT NULL,
    PRIMARY KEY (team_id, day, processor)
);
CREATE INDEX usage_days_day ON usage_days(day);

-- A team's budgets (0: none) and its current periods' spend (see above). soft: the budget
-- only reports (a metric and a log line when crossed), it never refuses.
CREATE TABLE team_budgets (
    team_id       BIGINT PRIMARY KEY REFERENCES teams(id),
    monthly_micro BIGINT NOT NULL DEFAULT 0 CHECK (monthly_micro >= 0),
    daily_micro   BIGINT NOT NULL DEFAULT 0 CHECK (daily_micro >= 0),
    soft          BIGINT NOT NULL DEFAULT 0 CHECK (soft IN (0, 1)),
    month         TEXT COLLATE "C" NOT NULL,              -- 'YYYY-MM': the month month_micro counts
    month_micro   BIGINT NOT NULL DEFAULT 0,
    day           TEXT COLLATE "C" NOT NULL,              -- 'YYYY-MM-DD': the day day_micro counts
    day_micro     BIGINT NOT NULL DEFAULT 0,
    updated_at    TEXT COLLATE "C" NOT NULL
);

-- What an admitted submission of a team with a budget still holds of its estimate, in the
-- periods it was counted in; open until the submission settles.
CREATE TABLE budget_holds (
    submission_id TEXT COLLATE "C" PRIMARY KEY REFERENCES submissions(id) ON DELETE CASCADE
                  DEFERRABLE INITIALLY DEFERRED,
    team_id       BIGINT NOT NULL,
    month         TEXT COLLATE "C" NOT NULL,
    day           TEXT COLLATE "C" NOT NULL,
    held_micro    BIGINT NOT NULL,
    open          BIGINT NOT NULL CHECK (open IN (0, 1))
);

-- Runs recorded: their calls' costs and the team's days, and the budget: from the hold while
-- the submission holds one, else (its hold given back, or admitted before the team had a
-- budget) straight onto the period it belongs to, when that is still the current one.
CREATE FUNCTION tg_runs_cost() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH priced AS (
        SELECT n.submission_id, n.call_seq, n.processor, s.team_id,
               substr(s.received_at, 1, 10) AS received_day,
               coalesce(h.month, substr(s.received_at, 1, 7)) AS month,
               coalesce(h.day, substr(s.received_at, 1, 10)) AS day,
               coalesce(h.open, 0) AS held, n.runs,
               n.runs * coalesce((SELECT p.micro_per_run FROM prices p
                                  WHERE p.processor = CASE WHEN length(n.processor) > 5
                                                            AND right(n.processor, 5) = '-fast'
                                                           THEN left(n.processor, -5)
                                                           ELSE n.processor END
                                    AND p.effective_from <= substr(s.received_at, 1, 10)
                                  ORDER BY p.effective_from DESC LIMIT 1), 0) AS cost
        FROM (SELECT r.submission_id, r.call_seq, coalesce(r.processor, '') AS processor,
                     count(*) AS runs
              FROM new_runs r GROUP BY 1, 2, 3) n
        JOIN submissions s ON s.id = n.submission_id
        LEFT JOIN budget_holds h ON h.submission_id = n.submission_id),
    cc AS (
        INSERT INTO call_costs (submission_id, call_seq, processor, runs, est_cost_micro)
        SELECT submission_id, call_seq, processor, runs, cost FROM priced
        ON CONFLICT (submission_id, call_seq, processor) DO UPDATE
        SET runs = call_costs.runs + excluded.runs,
            est_cost_micro = call_costs.est_cost_micro + excluded.est_cost_micro),
    ud AS (
        INSERT INTO usage_days (team_id, day, processor, runs, est_cost_micro)
        SELECT team_id, received_day, processor, sum(runs), sum(cost) FROM priced
        GROUP BY 1, 2, 3
        ON CONFLICT (team_id, day, processor) DO UPDATE
        SET runs = usage_days.runs + excluded.runs,
            est_cost_micro = usage_days.est_cost_micro + excluded.est_cost_micro),
    bh AS (
        UPDATE budget_holds h SET held_micro = h.held_micro - x.cost
        FROM (SELECT submission_id, sum(cost) AS cost FROM priced WHERE held = 1
              GROUP BY 1) x
        WHERE h.submission_id = x.submission_id)
    UPDATE team_budgets b
    SET month_micro = b.month_micro + x.month_cost, day_micro = b.day_micro + x.day_cost
    FROM (SELECT p.team_id,
                 sum(CASE WHEN p.month = b2.month THEN p.cost ELSE 0 END) AS month_cost,
                 sum(CASE WHEN p.day = b2.day THEN p.cost ELSE 0 END) AS day_cost
          FROM priced p JOIN team_budgets b2 ON b2.team_id = p.team_id
          WHERE p.held = 0 GROUP BY 1) x
    WHERE b.team_id = x.team_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_cost AFTER INSERT ON runs
REFERENCING NEW TABLE AS new_runs
FOR EACH STATEMENT EXECUTE FUNCTION tg_runs_cost();

-- A submission settled: what its hold still holds was never spent; it is given back to the
-- periods it was counted in (when they are still the current ones).
CREATE FUNCTION tg_hold_release() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    h budget_holds%ROWTYPE;
BEGIN
    SELECT * INTO h FROM budget_holds WHERE submission_id = NEW.id AND open = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE team_budgets
    SET month_micro = month_micro - CASE WHEN month = h.month THEN h.held_micro ELSE 0 END,
        day_micro = day_micro - CASE WHEN day = h.day THEN h.held_micro ELSE 0 END
    WHERE team_id = h.team_id;
    UPDATE budget_holds SET open = 0, held_micro = 0 WHERE submission_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER submissions_hold_release AFTER UPDATE OF state ON submissions
FOR EACH ROW WHEN (OLD.state IN ('pending', 'unknown')
                   AND NEW.state IN ('accepted', 'failed', 'rejected'))
EXECUTE FUNCTION tg_hold_release();

-- Usage as SQL reads it: runs created and their estimated cost per team, day and processor.
CREATE VIEW audit_usage AS
SELECT t.name           AS team,
       u.day            AS day,
       substr(u.day, 1, 7) AS month,
       u.processor      AS processor,
       u.runs           AS runs,
       u.est_cost_micro AS est_cost_micro
FROM usage_days u JOIN teams t ON t.id = u.team_id;

-- The estimated cost of each upstream call's runs, by processor.
CREATE VIEW audit_costs AS
SELECT c.submission_id  AS submission_id,
       c.call_seq       AS call_seq,
       t.name           AS team,
       substr(s.received_at, 1, 10) AS day,
       c.processor      AS processor,
       c.runs           AS runs,
       c.est_cost_micro AS est_cost_micro
FROM call_costs c
JOIN submissions s ON s.id = c.submission_id
JOIN teams t ON t.id = s.team_id;
