/* Inside the store: what the store's own source files (tg_store.c for the connection and
 * the audit records, tg_store_ident.c for teams, tokens, presets and the admin log, and
 * the audit queries) share. Nothing outside gateway/store/sqlite/ includes this. */
#ifndef TG_STORE_INT_H
#define TG_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "tg_store.h"

/* Statement slots a source file other than tg_store.c may claim, each with fixed SQL. */
#define TG_STORE_SLOTS 64

/* The statements of tg_store.c and tg_store_ident.c, prepared once per handle. */
enum stmt_id {
    S_BEGIN, S_COMMIT, S_ROLLBACK, S_SAVEPOINT, S_RELEASE, S_ROLLBACK_TO, S_VERSION,
    S_AUTH, S_TEAM_KEY, S_TEAM_ID, S_TEAM_ADD, S_TEAM_SET_KEY, S_TEAM_LIST,
    S_TOKEN_ADD, S_TOKEN_REVOKE, S_TOKEN_LIST,
    S_PRESET_SET, S_PRESET_GET, S_PRESET_LIST,
    S_SUB_INSERT, S_SUB_GROUP, S_SUB_FINISH, S_SUB_STATE, S_SUB_UPSTREAM,
    S_CALL_INSERT, S_RUN_INSERT,
    S_ADMIN_LOG, S_TEAM_FP, S_TEAM_NAME, S_TOKEN_INFO, S_RECOVER,
    S_COUNT
};

struct tg_store {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT];
    sqlite3_stmt *slot[TG_STORE_SLOTS]; /* claimed by tg_store_audit.c and the like */
    int flags;                          /* the TG_STORE_* flags it was opened with */
    char err[512];
};

/* Longest values the structs of tg_store.h can carry back without truncation. */
#define TEAM_NAME_MAX 64
#define TOKEN_ID_MAX 39
#define LABEL_MAX 128

/* Helpers shared by the store's files: errors, statements, transactions. */
void store_set_err(struct tg_store *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Records "what: sqlite's message" and returns rc as a gateway status. */
int store_db_err(struct tg_store *st, int rc, const char *what);
/* Sets the message and returns TG_EINVAL. */
int store_invalid(struct tg_store *st, const char *what);
/* The statement id, prepared on first use. */
int store_prep(struct tg_store *st, enum stmt_id id, sqlite3_stmt **out);
/* Resets a statement and clears its bindings. */
void store_done(sqlite3_stmt *s);
/* Binds text (NULL: SQL NULL) as SQLITE_STATIC: it must live until store_done. */
int store_bind_text(sqlite3_stmt *s, int i, const char *v);
/* Binds v, or NULL when v is 0. */
int store_bind_int_or_null(sqlite3_stmt *s, int i, int64_t v);
/* Steps a statement that returns no rows, then resets it. */
int store_run(struct tg_store *st, sqlite3_stmt *s, const char *what);
const char *store_col_text(sqlite3_stmt *s, int i);
/* Copies a text column into dst, truncated to fit; NULL becomes "". */
void store_col_copy(char *dst, size_t dstlen, sqlite3_stmt *s, int i);
void store_now_text(char out[TG_TIME_LEN]);
/* BEGIN IMMEDIATE under the process's writer mutex / COMMIT or ROLLBACK and release. */
int store_tx_begin(struct tg_store *st);
int store_tx_end(struct tg_store *st, int rc);

/* The process's writer mutex (tg_store.c; the group commit of tg_store_writer.c takes it
 * too); the wait is counted as database wait. */
void store_writer_lock(void);
void store_writer_unlock(void);

/* A write: runs on the handle it is given (the shared writer's, not necessarily the
 * caller's) inside a transaction. TG_OK keeps what it wrote; anything else undoes it. */
typedef int (*store_write_fn)(struct tg_store *st, void *arg);

/* Runs fn in a write transaction: in the daemon, once tg_store_writer_start has run, on the
 * shared writer connection in a group commit with other threads' writes (fn's own writes
 * undone alone when it fails); otherwise on st in a transaction of its own. Returns fn's
 * status, or the failure of the commit that would have held it; st's message describes a
 * failure. fn's statements must come from the handle it is passed. */
int store_write(struct tg_store *st, store_write_fn fn, void *arg);

/* Nonzero once the daemon's checkpoint thread runs: handles opened then leave WAL
 * checkpoints to it. Set by tg_store_writer.c when it starts and stops that thread. */
int store_checkpoints_elsewhere(void);
void store_set_checkpoints_elsewhere(int on);

/* Inserts a submission record in state (pending, or a final one), inside the caller's
 * transaction; resumes names the submission it resumes (may be NULL). */
int store_sub_insert(struct tg_store *st, const struct tg_submission *sub, const char *resumes,
                     enum tg_state state, int http_status, const char *error);

/* MCP server header values of a preset at rest (tg_store_keys.c): sealed like the team's
 * key (tg_crypto.h, bound to the team's name), since they must be forwarded and so cannot
 * be kept as fingerprints. Each value is sealed as its JSON text, so a number stays a
 * number. Modes: */
enum store_mcp_mode {
    STORE_MCP_SEAL,      /* seal the values still in clear (a preset being stored, or one
                          * an older version stored) */
    STORE_MCP_RESEAL,    /* open every sealed value and seal it again (a rotation) */
    STORE_MCP_OPEN,      /* open every sealed value: the preset as it is used and shown */
    STORE_MCP_COUNT      /* only count the values in clear */
};
/* Applies mode to the header values of the preset JSON body of team. *out (may be NULL
 * for STORE_MCP_COUNT) receives a malloc'd new body when a value changed, else NULL: the
 * body stands as it is. *changed (may be NULL) counts the values concerned. TG_OK, or an
 * error with the store's message set (a value that does not open: TG_ERR). */
int store_preset_mcp(struct tg_store *st, const char *team, const char *body,
                     enum store_mcp_mode mode, char **out, long *changed);

/* Writes one admin_log row inside the caller's transaction (tg_store_ident.c). before and
 * after are JSON text or NULL; who must name an actor and an interface. */
int store_admin_log(struct tg_store *st, const struct tg_actor *who, const char *action,
                    const char *object_type, const char *object_id, const char *team,
                    const char *before, const char *after);

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
