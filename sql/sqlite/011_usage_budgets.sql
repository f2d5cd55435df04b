-- taskgate schema, version 11: estimated spend. A price table, the estimated cost of every
-- upstream call's runs, usage per team, day and processor, and budgets per team.
--
-- Parallel reports no cost per run: the gateway estimates it as processor x runs x the
-- price in force on the submission's UTC day, in integer micro-dollars (never floats, so that
-- sums are exact). The audit records stay append-only: a call's runs are priced when they are
-- recorded (a trigger on runs, also for the runs a reconciliation finds later) into tables
-- of their own, never by rewriting a call or a submission.
--
-- Budgets: team_budgets holds each team's budget and, on the same row, what its current
-- month and day have spent so far (the estimates of the runs created, plus what admitted
-- submissions still hold for runs not yet created). Admission adds a submission's estimate
-- to the row only when it stays within the budget, in one conditional UPDATE (on
-- PostgreSQL, on the row's newest version after waiting for its lock: exact across hosts),
-- and keeps the amount in budget_holds. As the runs are recorded their cost moves from the
-- hold to spent; when the submission settles (accepted, failed, rejected) what it still
-- holds (runs never created) is given back. An 'unknown' submission keeps its hold until
-- reconciliation settles it. So that, for the period on the row:
--     month_micro = estimates of the runs created + what open holds still hold.

-- Prices in micro-dollars per run, by processor (listed without "-fast": a -fast variant
-- costs what its base does), each in force from effective_from (a UTC day) until the next
-- one of the same processor. The published list is in force from the start; the operator
-- adds prices from a later day (`taskgate price set`), so that a change never reprices
-- what was already recorded.
CREATE TABLE prices (
    processor      TEXT NOT NULL,
    effective_from TEXT NOT NULL,            -- 'YYYY-MM-DD'
    micro_per_run  INTEGER NOT NULL CHECK (micro_per_run >= 0),
    source         TEXT NOT NULL CHECK (source IN ('published', 'operator')),
    set_at         TEXT NOT NULL,
    PRIMARY KEY (processor, effective_from)
) WITHOUT ROWID;

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
    submission_id  TEXT NOT NULL,
    call_seq       INTEGER NOT NULL,
    processor      TEXT NOT NULL,             -- as sent ('' when none was recorded)
    runs           INTEGER NOT NULL,
    est_cost_micro INTEGER NOT NULL,
    PRIMARY KEY (submission_id, call_seq, processor),
    FOREIGN KEY (submission_id, call_seq) REFERENCES upstream_calls(submission_id, seq)
        ON DELETE CASCADE
) WITHOUT ROWID;

-- Runs created and their estimated cost per team, UTC day of the submission and processor:
-- what usage reports are answered from (never a scan of runs). History: an audit prune
-- leaves it as it is.
CREATE TABLE usage_days (
    team_id        INTEGER NOT NULL REFERENCES teams(id),
    day            TEXT NOT NULL,             -- 'YYYY-MM-DD'
    processor      TEXT NOT NULL,
    runs           INTEGER NOT NULL,
    est_cost_micro INTEGER NOT NULL,
    PRIMARY KEY (team_id, day, processor)
) WITHOUT ROWID;
CREATE INDEX usage_days_day ON usage_days(day);

-- A team's budgets (0: none) and its current periods' spend (see above). soft: the budget
-- only reports (a metric and a log line when crossed), it never refuses.
CREATE TABLE team_budgets (
    team_id       INTEGER PRIMARY KEY REFERENCES teams(id),
    monthly_micro INTEGER NOT NULL DEFAULT 0 CHECK (monthly_micro >= 0),
    daily_micro   INTEGER NOT NULL DEFAULT 0 CHECK (daily_micro >= 0),
    soft          INTEGER NOT NULL DEFAULT 0 CHECK (soft IN (0, 1)),
    month         TEXT NOT NULL,              -- 'YYYY-MM': the month month_micro counts
    month_micro   INTEGER NOT NULL DEFAULT 0,
    day           TEXT NOT NULL,              -- 'YYYY-MM-DD': the day day_micro counts
    day_micro     INTEGER NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL
);

-- What an admitted submission of a team with a budget still holds of its estimate, in the
-- periods it was counted in; open until the submission settles.
CREATE TABLE budget_holds (
    submission_id TEXT PRIMARY KEY REFERENCES submissions(id) ON DELETE CASCADE
                  DEFERRABLE INITIALLY DEFERRED,
    team_id       INTEGER NOT NULL,
    month         TEXT NOT NULL,
    day           TEXT NOT NULL,
    held_micro    INTEGER NOT NULL,
    open          INTEGER NOT NULL CHECK (open IN (0, 1))
) WITHOUT ROWID;

-- A run recorded: its call's cost and the team's day, and the budget: from the hold while
-- the submission holds one, else (its hold given back, or admitted before the team had a
-- budget) straight onto the period it belongs to, when that is still the current one.
CREATE TRIGGER runs_cost AFTER INSERT ON runs
BEGIN
    INSERT INTO call_costs (submission_id, call_seq, processor, runs, est_cost_micro)
    SELECT NEW.submission_id, NEW.call_seq, coalesce(NEW.processor, ''), 1,
           coalesce((SELECT p.micro_per_run FROM prices p
                     WHERE p.processor = CASE WHEN length(NEW.processor) > 5
                                               AND substr(NEW.processor, -5) = '-fast'
                                              THEN substr(NEW.processor, 1,
                                                          length(NEW.processor) - 5)
                                              ELSE NEW.processor END
                       AND p.effective_from <= substr(s.received_at, 1, 10)
                     ORDER BY p.effective_from DESC LIMIT 1), 0)
    FROM submissions s WHERE s.id = NEW.submission_id
    ON CONFLICT (submission_id, call_seq, processor) DO UPDATE
    SET runs = runs + 1, est_cost_micro = est_cost_micro + excluded.est_cost_micro;

    INSERT INTO usage_days (team_id, day, processor, runs, est_cost_micro)
    SELECT s.team_id, substr(s.received_at, 1, 10), c.processor, 1,
           c.est_cost_micro / c.runs
    FROM submissions s, call_costs c
    WHERE s.id = NEW.submission_id AND c.submission_id = NEW.submission_id
      AND c.call_seq = NEW.call_seq AND c.processor = coalesce(NEW.processor, '')
    ON CONFLICT (team_id, day, processor) DO UPDATE
    SET runs = runs + 1, est_cost_micro = est_cost_micro + excluded.est_cost_micro;

    UPDATE team_budgets
    SET month_micro = month_micro + CASE WHEN month = coalesce(
            (SELECT h.month FROM budget_holds h WHERE h.submission_id = NEW.submission_id),
            (SELECT substr(s.received_at, 1, 7) FROM submissions s
             WHERE s.id = NEW.submission_id))
          THEN (SELECT c.est_cost_micro / c.runs FROM call_costs c
                WHERE c.submission_id = NEW.submission_id AND c.call_seq = NEW.call_seq
                  AND c.processor = coalesce(NEW.processor, '')) ELSE 0 END,
        day_micro = day_micro + CASE WHEN day = coalesce(
            (SELECT h.day FROM budget_holds h WHERE h.submission_id = NEW.submission_id),
            (SELECT substr(s.received_at, 1, 10) FROM submissions s
             WHERE s.id = NEW.submission_id))
          THEN (SELECT c.est_cost_micro / c.runs FROM call_costs c
                WHERE c.submission_id = NEW.submission_id AND c.call_seq = NEW.call_seq
                  AND c.processor = coalesce(NEW.processor, '')) ELSE 0 END
    WHERE team_id = (SELECT s.team_id FROM submissions s WHERE s.id = NEW.submission_id)
      AND NOT EXISTS (SELECT 1 FROM budget_holds h
                      WHERE h.submission_id = NEW.submission_id AND h.open = 1);

    UPDATE budget_holds
    SET held_micro = held_micro - (SELECT c.est_cost_micro / c.runs FROM call_costs c
                                   WHERE c.submission_id = NEW.submission_id
                                     AND c.call_seq = NEW.call_seq
                                     AND c.processor = coalesce(NEW.processor, ''))
    WHERE submission_id = NEW.submission_id AND open = 1;
END;

-- A submission settled: what its hold still holds was never spent; it is given back to the
-- periods it was counted in (when they are still the current ones).
CREATE TRIGGER submissions_hold_release AFTER UPDATE OF state ON submissions
WHEN OLD.state IN ('pending', 'unknown') AND NEW.state IN ('accepted', 'failed', 'rejected')
BEGIN
    UPDATE team_budgets
    SET month_micro = month_micro
            - CASE WHEN team_budgets.month = h.month THEN h.held_micro ELSE 0 END,
        day_micro = day_micro - CASE WHEN team_budgets.day = h.day THEN h.held_micro ELSE 0 END
    FROM budget_holds h
    WHERE h.submission_id = NEW.id AND h.open = 1 AND team_budgets.team_id = h.team_id;

    UPDATE budget_holds SET open = 0, held_micro = 0 WHERE submission_id = NEW.id AND open = 1;
END;

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
