-- taskgate schema, version 13: the generation (009_generation.sql) moves with every change
-- of tokens as well.
--
-- A daemon's handle keeps the tokens it has checked, with the generation of the read that
-- found each, and answers the same token's next check from that copy; the handle's next
-- write then makes sure, in its own transaction, that the generation has not moved before it
-- records anything (gateway/store/sqlite/tg_sqlite_ident.c). So a token issued, revoked or
-- edited by hand must move it, in the transaction of the change, whoever makes it.

CREATE TRIGGER tokens_generation_insert AFTER INSERT ON tokens
BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER tokens_generation_update AFTER UPDATE ON tokens
BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER tokens_generation_delete AFTER DELETE ON tokens
BEGIN UPDATE generation SET n = n + 1 WHERE id = 1; END;
