/* Inside the store: what the store's own source files (tg_store.c and the audit queries of
 * tg_store_audit.c) share. Nothing outside gateway/tg_store*.c includes this. */
#ifndef TG_STORE_INT_H
#define TG_STORE_INT_H

#include <sqlite3.h>

#include "tg_store.h"

/* Statement slots a source file other than tg_store.c may claim, each with fixed SQL. */
#define TG_STORE_SLOTS 32

/* The statement in slot, prepared from sql on first use (sql must be the same text every
 * time for a slot). TG_OK, or an error with the handle's message set. */
int tg_store_slot(struct tg_store *st, int slot, const char *sql, sqlite3_stmt **out);

/* The connection, for stepping and reading columns of slot statements. */
sqlite3 *tg_store_sqlite(struct tg_store *st);

/* Records "what: sqlite's message" as the handle's message and returns rc as a gateway
 * status (TG_EBUSY, TG_EDB, …). */
int tg_store_sqlite_error(struct tg_store *st, int rc, const char *what);

/* Starts a write transaction (BEGIN IMMEDIATE) / commits it when rc is TG_OK and rolls it
 * back otherwise, returning the final status. */
int tg_store_begin(struct tg_store *st);
int tg_store_end(struct tg_store *st, int rc);

#endif
