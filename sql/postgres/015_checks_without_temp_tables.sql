-- taskgate schema, version 15 (PostgreSQL): the twin of
-- sql/sqlite/015_checks_without_temp_tables.sql, with nothing to change.
--
-- That migration rewrites SQLite's CHECKs and triggers whose `IN (...)` lists, INSERT ...
-- SELECT from the table written and UPDATE ... FROM made SQLite build a temporary table
-- every time they ran. PostgreSQL tests a list of constants as an array and plans those
-- statements without one; the version moves on so that the two schemas stay one.
DO $$ BEGIN END $$;
