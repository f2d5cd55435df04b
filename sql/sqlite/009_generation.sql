-- taskgate schema, version 9: a generation number that moves with every change a daemon may
-- keep a copy of.
--
-- A PostgreSQL daemon keeps, per connection, what it read of teams (their keys), presets
-- and group ownership (a group is a team's while the create_group call that made it is
-- recorded), and reads this row with every token it checks: a copy read at another
-- generation is read again. The triggers move it in the transaction of the change itself,
-- whoever makes it. SQLite's daemon reads its file directly and keeps no such copies; the
-- row is kept alike on both backends all the same, so that the schemas stay one. Ownership
-- only ever ends by deleting upstream calls (an audit prune; a submission cannot be deleted
-- before its calls): that moves it too.

CREATE TABLE generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),  -- one row
    n  INTEGER NOT NULL
);
INSERT INTO generation (id, n) VALUES (1, 0);

CREATE TRIGGER teams_generation_insert AFTER INSERT ON teams
BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER teams_generation_update AFTER UPDATE ON teams
BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER teams_generation_delete AFTER DELETE ON teams
BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; END;

CREATE TRIGGER presets_generation_insert AFTER INSERT ON presets
BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER presets_generation_update AFTER UPDATE ON presets
BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER presets_generation_delete AFTER DELETE ON presets
BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; END;

CREATE TRIGGER upstream_calls_generation AFTER DELETE ON upstream_calls
BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; END;
