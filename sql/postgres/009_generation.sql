-- taskgate schema, version 9 (PostgreSQL): a generation number that moves with every change
-- a daemon may keep a copy of.
--
-- The twin of sql/sqlite/009_generation.sql (see 001_init.sql for how the dialects are
-- matched). A daemon keeps, per connection, what it read of teams (their keys), presets and
-- group ownership (a group is a team's while the create_group call that made it is
-- recorded), and reads this row with every token it checks: a copy read at another
-- generation is read again. The triggers move it in the transaction of the change itself,
-- whoever makes it (taskgate on any host, or psql), so that no snapshot sees the change
-- without the new generation. Ownership only ever ends by deleting upstream calls (an
-- audit prune; a submission cannot be deleted before its calls): that moves it too.

CREATE TABLE generation (
    id BIGINT PRIMARY KEY CHECK (id = 1),  -- one row
    n  BIGINT NOT NULL
);
INSERT INTO generation (id, n) VALUES (1, 0);

CREATE FUNCTION tg_generation_next() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE generation SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER teams_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON teams
FOR EACH STATEMENT EXECUTE FUNCTION tg_generation_next();

CREATE TRIGGER presets_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON presets
FOR EACH STATEMENT EXECUTE FUNCTION tg_generation_next();

CREATE TRIGGER upstream_calls_generation AFTER DELETE ON upstream_calls
FOR EACH STATEMENT EXECUTE FUNCTION tg_generation_next();
