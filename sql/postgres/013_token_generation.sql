-- taskgate schema, version 13 (PostgreSQL): the generation moves with every change of
-- tokens as well.
--
-- The twin of sql/sqlite/013_token_generation.sql. This backend reads every token it checks
-- and keeps no copy of it; the trigger is here all the same, so that the schemas stay one and
-- a generation read with a token stands for the token too.

CREATE TRIGGER tokens_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tokens
FOR EACH STATEMENT EXECUTE FUNCTION tg_generation_next();
