-- taskgate schema, version 14 (PostgreSQL): the twin of sql/sqlite/014_fewer_pages.sql.
--
-- submissions_state_time (state, received_at, id) answers every read of the open
-- submissions that the partial submissions_open answered, so that one goes here too and the
-- schemas stay one. The add-runs trigger needs no change: it touches the row of a group
-- already followed not at all.

DROP INDEX submissions_open;
