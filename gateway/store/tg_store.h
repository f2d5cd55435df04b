/* The audit store's face: the one header of store operations that handlers, the core and
 * the CLI see, in domain terms (the roles, states and outcomes of tg_domain.h). Which
 * database holds the records is the backend's business (tg_store_backend.h): tg_store.c
 * picks one from the config's database value and passes every call to it. This build
 * has one, SQLite (store/sqlite/, its SQL in sql/sqlite/). A handle belongs to one thread
 * at a time. */
#ifndef TG_STORE_H
#define TG_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "tg_core.h"
#include "tg_domain.h" /* the roles, states and outcomes it records */

struct tg_store;

/* Whether this build has a backend for the config's database value: TG_OK, or TG_EINVAL
 * with a message naming the value's scheme (a postgresql:// URI: not supported by this
 * build). Checked at start-up so that every command refuses it before doing anything. */
int tg_store_supported(const char *database, char *err, size_t errlen);

/* Opens the database the config's database value names, with the backend that serves it
 * (TG_EINVAL as tg_store_supported when none does). For SQLite, a file path: the file is
 * created only when TG_STORE_CREATE is given; WAL mode, foreign keys and a busy timeout of
 * busy_ms are set. Checks that the schema version is the one this binary knows (unless
 * TG_STORE_NO_VERSION_CHECK). On failure returns an error code, *out is NULL and err says
 * why. */
#define TG_STORE_CREATE 1
#define TG_STORE_NO_VERSION_CHECK 2
#define TG_STORE_READONLY 4
int tg_store_open(struct tg_store **out, const char *database, int flags, int busy_ms,
                  char *err, size_t errlen);
/* Caps the database file of every handle opened after the call at max_pages pages
 * (PRAGMA max_page_count; the config's db_max_pages): past it a write fails as a full disk
 * would (TG_EDB). 0: no cap. Call once at start-up, before any handle is opened. */
void tg_store_set_max_pages(long max_pages);

/* Finalizes every statement and closes the connection. NULL is accepted. */
void tg_store_close(struct tg_store *st);

/* The daemon's shared writer (SQLite's: sqlite/tg_sqlite_writer.c), started once before
 * the workers open their handles and stopped after they have closed them. While it runs, the writes of the
 * request path (admission, calls, final states, stored answers) of every handle are
 * committed in groups on one connection, and WAL checkpoints run on a thread of their own.
 * Without it (the CLI) each handle writes for itself. */
int tg_store_writer_start(const char *database, int busy_ms, char *err, size_t errlen);
void tg_store_writer_stop(void);

/* The last error message of this handle (static until the next call on it). */
const char *tg_store_errmsg(const struct tg_store *st);

/* Applies every migration newer than the database's PRAGMA user_version, each in its own
 * transaction. *from and *to (either may be NULL) receive the versions before and after.
 * Running it on an up-to-date database changes nothing. */
int tg_store_migrate(struct tg_store *st, int *from, int *to);
/* The schema version this build migrates to (SQLite's: the highest of sql/sqlite/). */
int tg_store_schema_version(void);

/* Cheap liveness check for /healthz: the database answers a read. TG_OK; TG_EDOWN when
 * a database server cannot be reached (its connection cannot be made again: the server is
 * down, or the database is gone); TG_EDB when the database answers but cannot be read.
 * st's message says why, for the log and loopback clients: it may name a path or a host,
 * never a password. */
int tg_store_ping(struct tg_store *st);

/* Whether the daemon's database takes writes, as far as the daemon knows: the outcome of
 * the shared writer's last transaction that failed for the database's sake (full, I/O
 * error, read-only, locked past the busy timeout), until a later transaction or
 * tg_store_write_probe succeeds. TG_OK, or TG_EDB with SQLite's reason (which names no
 * path) in why. Thread-safe; TG_OK in a process without the shared writer. */
int tg_store_write_health(char *why, size_t whylen);

/* Tries whether writes work again: a write transaction that changes nothing (through the
 * shared writer: a read-only or locked database fails it), then room for a write of some
 * pages under db_max_pages and on the disk. Updates what tg_store_write_health reports.
 * TG_OK or TG_EDB (st's message says why). */
int tg_store_write_probe(struct tg_store *st);

/* Creates the database file with mode 0600 when it does not exist (SQLite then gives its
 * -wal and -shm files the same mode), and takes group and other permissions off the
 * database, -wal and -shm files that exist: they hold every team's inputs. *tightened (may
 * be NULL) counts the files whose mode changed. TG_OK, or TG_ERR with a message in err. */
int tg_store_secure_files(const char *database, int create, int *tightened, char *err,
                          size_t errlen);

/* ---- identities ------------------------------------------------------------------- */
/* Every change below (team add and key change, token issue and revoke, preset set) writes
 * an admin_log row naming who, in the same transaction: the change and its record commit
 * together or not at all. Keys appear in the log only as fingerprints. */

struct tg_auth {
    int64_t team_id;
    char team[65];
    char token_id[40];
    char label[129];
    enum tg_role role;
};

/* Looks up a token by the hex SHA-256 of its text. TG_OK fills *out; TG_ENOTFOUND when no
 * such token exists, or it is revoked or expired at now_ms. It also fixes what the
 * handle's reads of team keys, presets and group ownership answer until its next
 * tg_store_auth: copies it kept of them answer while they are what the database held at
 * this check (the generation row of each backend's 009_generation.sql, read with the
 * token); a handle that checks no token reads them afresh. */
int tg_store_auth(struct tg_store *st, const char *token_hash, int64_t now_ms,
                  struct tg_auth *out);
/* As tg_store_auth, but the answer may come without a read, from what the handle kept of
 * an earlier check of the same token, and then holds only provisionally: until the
 * handle's next write, which makes sure in its own transaction, before it changes
 * anything, that no token, team, preset or group ownership changed since that check
 * (the generation); if one did, the write changes nothing and returns TG_ESTALE. A
 * backend may always read (then nothing is provisional). A request that checks a token
 * so calls tg_store_auth_confirm before it answers. */
int tg_store_auth_kept(struct tg_store *st, const char *token_hash, int64_t now_ms,
                       struct tg_auth *out);
/* Settles the handle's last token check: TG_OK when it stands (it was read, or a write
 * has confirmed it, or a read now finds nothing changed since); TG_ESTALE when the token
 * or anything read with it has changed, and what was answered from it must be taken
 * again from a fresh tg_store_auth; or the read's error. */
int tg_store_auth_confirm(struct tg_store *st, int64_t now_ms);

/* The team's upstream key into buf (NUL-terminated). TG_ENOTFOUND, TG_ETOOBIG, TG_OK. */
int tg_store_team_key(struct tg_store *st, int64_t team_id, char *buf, size_t buflen);

/* Who makes an administrative change, for the admin change log written in the same
 * transaction as the change. Strings are borrowed for the call. */
struct tg_actor {
    const char *id;          /* "os:<user>" for the CLI, "token:<tok_id>" over HTTP */
    const char *team;        /* the acting token's team; NULL for an OS user */
    const char *interface;   /* "cli" or "http" */
    const char *remote_addr; /* the client's address over HTTP; NULL for the CLI */
};

/* Team id by name. TG_OK or TG_ENOTFOUND. */
int tg_store_team_id(struct tg_store *st, const char *name, int64_t *team_id);
/* Adds a team with its upstream key. TG_EEXIST when the name is taken. */
int tg_store_team_add(struct tg_store *st, const struct tg_actor *who, const char *name,
                      const char *key, int64_t *team_id);
/* Replaces a team's upstream key. TG_ENOTFOUND when there is no such team. */
int tg_store_team_set_key(struct tg_store *st, const struct tg_actor *who, const char *name,
                          const char *key);

/* A team as listed: never the key itself, only its fingerprint. */
struct tg_team_row {
    int64_t id;
    const char *name;
    const char *key_fingerprint;
    const char *created_at;
    int tokens;   /* tokens neither revoked nor expired */
    int presets;
};
/* Calls fn once per team, ordered by name; the row is valid only during the call. A
 * non-zero return from fn stops the walk and is returned. */
int tg_store_team_list(struct tg_store *st,
                       int (*fn)(void *arg, const struct tg_team_row *row), void *arg);

/* ---- upstream keys at rest (sealing in tg_crypto.h) --------------------------------- */
/* A team's key is stored sealed under the key file; the functions above seal and open it.
 * These treat all keys at once. */

/* How many teams' keys are sealed, and how many are still in clear (stored by a taskgate
 * older than schema version 4). */
int tg_store_keys_summary(struct tg_store *st, long *sealed, long *clear);

/* How many presets hold MCP server header values in clear (stored by an older taskgate). */
int tg_store_presets_clear(struct tg_store *st, long *n);

/* Re-seals, in ONE transaction, every team's key and every preset's MCP server header
 * values under the key ring's current sealing key (every != 0: `keys rotate`), or only
 * those still in clear (every == 0: the migration of an older database), and logs it as
 * action in admin_log (object "keys"; before: the key ids replaced, after: the new key id,
 * the number of teams, and of presets when there were any). *n receives how many keys were
 * sealed. A value that does not open fails the whole transaction: nothing changes. */
int tg_store_keys_reseal(struct tg_store *st, const struct tg_actor *who, int every,
                         const char *action, long *n);

/* Stores a token: its public id ("tok_…"), the hex SHA-256 of its text, role, label (may be
 * NULL) and expiry (0: never). TG_ENOTFOUND when the team does not exist. */
int tg_store_token_add(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
                       const char *token_id, const char *hash, enum tg_role role,
                       const char *label, int64_t expires_ms);
/* Revokes a token by id. TG_ENOTFOUND if it does not exist or is already revoked. */
int tg_store_token_revoke(struct tg_store *st, const struct tg_actor *who,
                          const char *token_id);

struct tg_token_row {
    const char *id;
    const char *team;
    const char *role;
    const char *label;
    const char *created_at;
    const char *expires_at; /* NULL: never */
    const char *revoked_at; /* NULL: valid */
};
/* Calls fn for each token of team (NULL: every team), oldest first. */
int tg_store_token_list(struct tg_store *st, const char *team,
                        int (*fn)(void *arg, const struct tg_token_row *row), void *arg);

/* Stores (inserts or replaces) a preset's JSON text. The caller has validated it. Its MCP
 * server header values are stored sealed (like the team's key) and written to the admin
 * log as fingerprints. */
int tg_store_preset_set(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
                        const char *name, const char *json);
/* The preset's JSON text, copied into pool, with its MCP header values opened: it is what
 * goes upstream, and callers that show it fingerprint them. TG_ENOTFOUND when the team has
 * none by that name; TG_ERR when a sealed value does not open. */
int tg_store_preset_get(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
                        const char *name, char **json);
/* Calls fn(arg, name, updated_at) for each of the team's presets, by name. */
int tg_store_preset_list(struct tg_store *st, int64_t team_id,
                         int (*fn)(void *arg, const char *name, const char *updated_at),
                         void *arg);

/* ---- the audit records -------------------------------------------------------------- */

/* A submission as first recorded. Strings are borrowed for the call; NULL means absent. */
struct tg_submission {
    const char *id;            /* "sub_…", made by the caller */
    int64_t team_id;
    const char *token_id;
    const char *request_id;
    const char *remote_addr;
    const char *interface;     /* "simplified", "upstream-compatible" */
    const char *taskgroup_id;  /* when the client named one */
    int num_inputs;
    const char *request;       /* JSON, secrets already redacted */
    int64_t received_ms;
};

/* Commits the submission as 'pending'. TG_OK, TG_EBUSY, TG_EDB. */
int tg_store_submission_begin(struct tg_store *st, const struct tg_submission *sub);

/* Commits a submission that was refused before anything went upstream: it is inserted
 * directly as 'rejected' with the answer's status and message. */
int tg_store_submission_reject(struct tg_store *st, const struct tg_submission *sub,
                               int http_status, const char *error);

/* Records the group a pending submission uses (after the gateway created one). */
int tg_store_submission_group(struct tg_store *st, const char *sub_id,
                              const char *taskgroup_id);

/* Writes the final state, the client's status, the last upstream status (0: none) and an
 * error message (NULL: none), with completed_at = now. */
int tg_store_submission_finish(struct tg_store *st, const char *sub_id, enum tg_state state,
                               int http_status, int upstream_status, const char *error);

/* One upstream call of a submission and, for add-runs, the runs it created. */
struct tg_call {
    const char *submission_id;
    int seq;
    const char *operation;     /* "create_group" or "add_runs" */
    const char *method;
    const char *path;
    int first_input;           /* -1 for a group creation */
    int num_inputs;
    int64_t started_ms;
    int64_t duration_ms;
    enum tg_outcome outcome;
    int http_status;           /* 0: none */
    const char *run_cursor;
    const char *event_cursor;
    const char *error;
    const char *taskgroup_id;  /* the group a create_group call made, stored on the
                                  submission with the call; NULL: none */
    size_t num_runs;
    const char *const *run_ids;     /* num_runs ids, in input order */
    const char *const *processors;  /* num_runs processors, or NULL */
};

/* Settles every submission left 'pending' by a daemon that stopped without finishing it
 * (killed, crashed, power lost) as 'unknown', so that it is reconciled rather than
 * forgotten: one that names no daemon, or a daemon other than this one (tg_store_daemon_id)
 * whose lease has run out. SQLite has one daemon per file, so at start-up every pending
 * submission is such a one. Call at start-up, before serving, and from time to time while
 * serving (a peer on the same server may die). *n (may be NULL) receives how many were
 * settled. */
int tg_store_recover_pending(struct tg_store *st, long *n);

/* ---- the daemon's claim on its store ------------------------------------------------- */

/* What a daemon says of itself when it claims its store. */
struct tg_daemon_info {
    const char *listen; /* its FastCGI socket */
    const char *user;   /* the user it switches to when started as root ("" or NULL: none) */
};

/* How long a daemon's lease lasts without being renewed, and how often it is renewed. */
#define TG_STORE_LEASE_MS 30000
#define TG_STORE_LEASE_RENEW_MS 5000

struct tg_store_claim;

/* Claims the store for this daemon, for its life, before it touches the database or its
 * socket, and gives it its id (tg_store_daemon_id). SQLite: one daemon per file, an
 * exclusive lock on "<database>.lock" naming its holder, refused while another daemon
 * holds it. PostgreSQL: a row of `daemons`, beside the other daemons serving the same
 * database, with a lease the backend renews every TG_STORE_LEASE_RENEW_MS on a connection
 * of its own until tg_store_claim_release. NULL with the reason in err. */
struct tg_store_claim *tg_store_claim(const char *database, const struct tg_daemon_info *me,
                                      int busy_ms, char *err, size_t errlen);

/* Gives the claim up: the lock released, or the daemon's row marked stopped. */
void tg_store_claim_release(struct tg_store_claim *c);

/* This daemon's id ("dmn_" and 16 hex digits) once it claimed its store, else NULL (the
 * command line). Written on every submission it takes. */
const char *tg_store_daemon_id(void);

/* Which backend holds st's records: "sqlite" or "postgresql" (for /healthz and /metrics,
 * never for a decision: nothing outside the store acts on it). */
const char *tg_store_kind(const struct tg_store *st);

/* Work one daemon at a time does for the whole store (reconciliation, pruning, settling the
 * submissions of daemons gone): TG_OK when this handle now holds what's turn, TG_EBUSY when
 * another daemon holds it. PostgreSQL: an advisory lock on the handle's connection, held
 * until tg_store_turn_end or until the connection ends (a daemon that dies hands its turn
 * on by dying). SQLite: one daemon per file, so always this one's. */
int tg_store_turn_begin(struct tg_store *st, const char *what);
void tg_store_turn_end(struct tg_store *st, const char *what);

/* Commits the call and all its runs in one transaction. */
int tg_store_call_record(struct tg_store *st, const struct tg_call *call);

/* The last call of a submission and the submission's final state (as
 * tg_store_submission_finish, with the call's status as the upstream status), in one
 * transaction: one commit fewer on every request. */
int tg_store_call_finish(struct tg_store *st, const struct tg_call *call, enum tg_state state,
                         int http_status, const char *error);

/* ---- audit reads -------------------------------------------------------------------- */
/* The read side of the audit trail: the views audit_submissions,
 * audit_calls and audit_runs with optional filters and keyset pagination, and the log of
 * every read (audit_reads). Rows reach the caller through a callback, one at a time, as
 * plain text so that the formatters never see the backend. */

enum tg_audit_kind {
    TG_AUDIT_KIND_SUBMISSION, TG_AUDIT_KIND_CALL, TG_AUDIT_KIND_RUN, TG_AUDIT_KIND_ADMIN,
    TG_AUDIT_KIND_SUMMARY, TG_AUDIT_KIND_DURATION
};
/* A value's type: SQL NULL, an integer (decimal text), text, or JSON text (the stored
 * request of a submission, before/after of an admin change). */
enum tg_audit_type { TG_AUDIT_VAL_NULL, TG_AUDIT_VAL_INT, TG_AUDIT_VAL_TEXT, TG_AUDIT_VAL_JSON };

/* One row: ncols names (static) and values (NULL where types[i] is TG_AUDIT_VAL_NULL). Every
 * pointer is valid only during the callback. */
struct tg_audit_row {
    enum tg_audit_kind kind;
    int ncols;
    const char *const *names;
    const char *const *values;
    const enum tg_audit_type *types;
};
/* Called once per row; a non-zero return stops the read and is returned by it. */
typedef int (*tg_audit_fn)(void *arg, const struct tg_audit_row *row);

/* The column names of a kind's rows as lists return them (the views' columns, in order);
 * static storage. *n receives their number. */
const char *const *tg_store_audit_columns(enum tg_audit_kind kind, int *n);

/* Where a page ends: the last row's (time, submission id[, input index]). The next page
 * continues strictly after it. time "" means "from the start". */
#define TG_AUDIT_KEY_ID_MAX 255
struct tg_audit_key {
    char time[TG_TIME_LEN];
    char id[TG_AUDIT_KEY_ID_MAX + 1];
    long index;
};

/* A list's filters. Strings are borrowed for the call; NULL means no filter. since and
 * until are RFC 3339 UTC millisecond texts as stored (since included, until excluded). */
struct tg_audit_query {
    const char *scope_team;    /* the only team the reader may see; NULL: every team */
    const char *team;
    const char *state;
    const char *interface;
    const char *taskgroup_id;
    const char *since;
    const char *until;
    const char *object;        /* the admin log's object_id */
    const char *object_type;   /* the admin log's object_type */
    const char *action;        /* the admin log's action */
    const char *run_status;    /* a run's current status (audit_runs.status) */
    int parts;                 /* the summary's: TG_AUDIT_PART_*, or'ed; 0: every part */
    long limit;                /* rows per page, >= 1 */
    struct tg_audit_key after; /* continue after this row */
};

struct tg_audit_page {
    long rows;                 /* rows passed to the callback */
    int more;                  /* rows follow the last one: there is a next page */
    int truncated;             /* a group's submissions were cut at TG_AUDIT_GROUP_SUBS */
    struct tg_audit_key last;  /* the last row's key, for the next page */
};

/* Submissions (audit_submissions), newest first by (received_at, submission_id); q's
 * team, state, interface, taskgroup_id, since, until and scope apply. */
int tg_store_audit_submissions(struct tg_store *st, const struct tg_audit_query *q,
                               tg_audit_fn fn, void *arg, struct tg_audit_page *page);
/* Submissions still 'pending' or 'unknown', oldest first; q's team, since, until and scope
 * apply. */
int tg_store_audit_open(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                        void *arg, struct tg_audit_page *page);
/* Runs (audit_runs), newest submission first and in input order within one; q's team,
 * taskgroup_id, run_status, since, until (on the submission's time) and scope apply. */
int tg_store_audit_runs(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                        void *arg, struct tg_audit_page *page);

/* Administrative changes (audit_admin), newest first by (at, id); q's team (the object's
 * team), object, object_type, action, since and until apply (scope_team is refused: only
 * audit and admin readers may read the admin log). */
int tg_store_audit_admin(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                         void *arg, struct tg_audit_page *page);

/* One submission, from one snapshot: its row (the view's columns and "request"), then its
 * upstream calls by seq, then its runs by input index. TG_ENOTFOUND when there is none that
 * scope_team (NULL: any) may see. *rows (may be NULL) receives how many rows were passed. */
int tg_store_audit_submission(struct tg_store *st, const char *scope_team, const char *id,
                              tg_audit_fn fn, void *arg, long *rows);
/* One run, then its submission (with "request"), from one snapshot. TG_ENOTFOUND as above. */
int tg_store_audit_run(struct tg_store *st, const char *scope_team, const char *run_id,
                       tg_audit_fn fn, void *arg, long *rows);

/* The most submissions one group answer lists. */
#define TG_AUDIT_GROUP_SUBS 1000
/* A task group (q->taskgroup_id), from one snapshot: when q->after is empty, its
 * submissions (newest first, at most TG_AUDIT_GROUP_SUBS: page->truncated says more
 * exist); then a page of its runs continuing after q->after, in the order of
 * tg_store_audit_runs. page->more and page->last describe the runs. TG_ENOTFOUND when the
 * group has no submission scope_team may see. */
int tg_store_audit_group(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                         void *arg, struct tg_audit_page *page);

/* The audit summary's parts (tg_audit_query.parts). */
#define TG_AUDIT_PART_COUNTS 1    /* TG_AUDIT_KIND_SUMMARY rows */
#define TG_AUDIT_PART_DURATIONS 2 /* TG_AUDIT_KIND_DURATION rows */

/* The audit summary, from counts kept with the records (no scan of the runs): first the
 * counts (the view audit_summary: submissions and runs by day (UTC), team, processor
 * (NULL: none) and state, in that order), then how long completed runs took by team and
 * processor (NULL: none), in that order: columns team, processor, runs, mean_ms, p50_ms,
 * p90_ms, max_ms (tg_store_durations.c says how exact each is). q's parts, scope and team,
 * since (its day is the first) and until (a day is in when it begins before until) apply,
 * on the submission's received day; no pages: page->rows counts the rows, page->more is
 * 0. */
int tg_store_audit_summary(struct tg_store *st, const struct tg_audit_query *q,
                           tg_audit_fn fn, void *arg, struct tg_audit_page *page);

/* Keeps the summary's rows few: those of days before today folded into one per (team,
 * day, state, processor) where the backend spread them (PostgreSQL's sessions each count in
 * rows of their own), and those that hold nothing removed; the summary reads the same
 * before and after. One write transaction; for the daemon's housekeeping. */
int tg_store_summary_compact(struct tg_store *st);

/* What a prune removed (or, for a dry run, would remove). */
struct tg_audit_pruned {
    long submissions;
    long calls;
    long runs;
    long reads;       /* rows of audit_reads */
    long kept_open;   /* submissions before the cutoff still 'pending' or 'unknown': kept */
};
/* Deletes the audit records older than before (RFC 3339 UTC with milliseconds, as
 * stored): settled submissions received before it with their upstream calls, runs and
 * reconciliation attempts, and audit_reads rows; never a 'pending' or 'unknown' submission
 * (counted in kept_open), never the admin log. In batches of a few thousand runs, each its
 * own short write transaction under the prune guard of sql/sqlite/002_audit.sql (a
 * submission's records always in one), so that submissions wait a fraction of a second at
 * most; then an admin_log row 'audit.prune' naming who, the cutoff and the counts, written
 * also when a later batch failed (what the earlier ones deleted stays deleted; the error
 * is returned). With dry_run, only counts (nothing is written or logged). */
int tg_store_audit_prune(struct tg_store *st, const struct tg_actor *who, const char *before,
                         int dry_run, struct tg_audit_pruned *out);

/* Logs one read of the audit trail in audit_reads: who (id, team, interface,
 * remote_addr), what was asked (truncated to 2,000 bytes) and the rows answered (< 0:
 * the read failed, stored as NULL). */
int tg_store_audit_read_log(struct tg_store *st, const struct tg_actor *who,
                            const char *query, long rows);

/* ---- ownership ---------------------------------------------------------------------- */

/* TG_OK when one of the team's submissions created the group, TG_ENOTFOUND otherwise. */
int tg_store_group_owned(struct tg_store *st, int64_t team_id, const char *taskgroup_id);

/* TG_OK when the run was created by one of the team's submissions, with its group's id
 * copied into group; TG_ENOTFOUND otherwise. */
int tg_store_run_owned(struct tg_store *st, int64_t team_id, const char *run_id,
                       char *group, size_t grouplen);

/* ---- admission: idempotency, limits; reconciliation ------------------------------ */

/* What an idempotency record is keyed by: the client's Idempotency-Key, or an SDK's retry
 * recognised by its token and request hash (see sql/sqlite/003_reliability.sql). */
enum tg_idem_kind { TG_IDEM_KEY = 0, TG_IDEM_RETRY = 1 };

/* An idempotency record with the state of the submission it names; strings in the pool
 * given to the read. */
struct tg_idem_rec {
    const char *submission_id;
    const char *request_hash;
    enum tg_state state;       /* the submission's; PENDING also when it is missing */
    int answer_status;         /* 0: no answer stored */
    const char *answer_type;
    const char *answer_body;
    size_t answer_len;
};

/* The record for (team, kind, key) that has not expired at now_ms. TG_OK fills *out,
 * TG_ENOTFOUND when there is none. */
int tg_store_idem_get(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
                      enum tg_idem_kind kind, const char *key, int64_t now_ms,
                      struct tg_idem_rec *out);

struct tg_budget_note; /* tg_store_usage.h */

/* How a submission is admitted. Strings are borrowed for the call. */
struct tg_admission {
    enum tg_idem_kind kind;
    const char *key;           /* NULL: no idempotency record */
    const char *request_hash;
    int64_t expires_ms;
    const char *replaces;      /* the submission the live record must still name; NULL: there
                                  must be no live record */
    const char *resumes;       /* stored on the submission (may be NULL) */
    long runs;                 /* runs it may create: counted against runs per minute */
    int64_t now_ms;
    /* The runs it may create per processor as the price table lists them (no "-fast"):
     * priced against the team's budget, if it has one (tg_store_usage.h). */
    size_t nprocs;
    const char *const *procs;
    const long *proc_runs;
    struct tg_budget_note *budget; /* out: what the budget said; NULL: not wanted */
};

/* Which limit refused a submission (tg_store_admit's TG_ETOOBIG). */
struct tg_admit_refusal {
    const char *limit;         /* "in_flight" or "runs_per_minute" (static); a budget's
                                  refusal: a->budget says which */
    long value;                /* the limit */
    long used;                 /* submissions in flight, or runs this minute */
    long retry_after_s;
};

/* Admits sub in one write transaction, so that threads and processes sharing the database
 * see one order: TG_EEXIST when the idempotency record is no longer as a->replaces says
 * (someone else took the key meanwhile: read it again); TG_ETOOBIG when a team limit or a
 * hard budget refuses it (the submission is then recorded as rejected with 429, or 402 for
 * a budget, and *why says which); otherwise sub is recorded as pending, its runs are
 * counted, its estimate is held against the team's budget (its period: sub->received_ms's
 * UTC month and day), and the record (when a->key is set) names it. */
int tg_store_admit(struct tg_store *st, const struct tg_submission *sub,
                   const struct tg_admission *a, struct tg_admit_refusal *why);

/* Stores the answer sent for sub_id on its record (when the record still names it). */
int tg_store_idem_answer(struct tg_store *st, int64_t team_id, enum tg_idem_kind kind,
                         const char *key, const char *sub_id, int status,
                         const char *content_type, const char *body, size_t len);

/* Deletes records that expired before now_ms; *n (may be NULL) receives how many. */
int tg_store_idem_prune(struct tg_store *st, int64_t now_ms, long *n);

/* A team's limits; 0 means none. */
struct tg_limits {
    long runs_per_minute;
    long in_flight;
};
/* TG_OK (all zero when the team has none set). */
int tg_store_limits_get(struct tg_store *st, int64_t team_id, struct tg_limits *out);
/* Sets a team's limits, logged in admin_log as 'team.limits'. TG_ENOTFOUND: no team. */
int tg_store_limits_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                        const struct tg_limits *l);

/* One recorded upstream call of a submission, for reconciliation and repeats. */
struct tg_recon_call {
    int seq;
    int add_runs;              /* 0: create_group */
    int first_input;
    int num_inputs;
    enum tg_outcome outcome;
    long runs;                 /* runs recorded for it */
};

/* A submission as reconciliation sees it; strings and calls in the pool. */
struct tg_recon_sub {
    const char *id;
    int64_t team_id;
    enum tg_state state;
    const char *interface;
    const char *taskgroup_id;
    int num_inputs;
    int64_t received_ms;
    const char *resume_cursor; /* its last reconciliation was a read cut short: where the
                                  next read of its group starts for it; NULL: none */
    size_t ncalls;
    struct tg_recon_call *calls;
};
/* TG_OK, or TG_ENOTFOUND. */
int tg_store_recon_load(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
                        struct tg_recon_sub *out);

/* Where a read of a group's runs stream may start (tg_store_recon_cursor): the run_cursor
 * of call seq of submission_id (NULL: that call added the group's first runs, so the
 * stream's beginning). Strings in the pool. */
struct tg_recon_cursor {
    const char *run_cursor;
    const char *submission_id;
    int seq;
};
/* The cursor of an add-runs call recorded in group taskgroup_id whose runs are known to
 * have existed before before_ms: one answered (outcome ok) before it, or one a
 * reconciliation found and recorded (with the run_cursor it found) before it. The one of the
 * group's latest submission received before before_ms that has such a call, its last such
 * call; found from an index walked backwards from before_ms, never by a scan of the group.
 * TG_OK, or TG_ENOTFOUND when the group has none. */
int tg_store_recon_cursor(struct tg_store *st, struct tg_pool *pool, const char *taskgroup_id,
                          int64_t before_ms, struct tg_recon_cursor *out);

/* The runs reconciliation found for one add-runs call (tag <sub>.<seq>.<first>.<count>). */
struct tg_recon_found {
    int seq;
    int first_input;
    int num_inputs;            /* how many the call sent */
    int recorded;              /* a call row exists already */
    size_t nruns;              /* how many carry its tag (in the group's order) */
    const char *const *run_ids;
    const char *const *processors;
    const char *run_cursor;    /* the id of the stream's event just before its first run, as
                                  the upstream's run_cursor would have been (NULL: its runs
                                  were the group's first); stored with a call not recorded
                                  before (a recorded call is never updated) */
};

/* What one reconciliation settles. */
struct tg_recon_write {
    const char *sub_id;
    const char *actor;
    const char *taskgroup_id;
    const char *api;           /* "/v1" or "/v1beta": the path prefix of calls it adds */
    enum tg_state state;       /* ACCEPTED or FAILED; UNKNOWN: it stays unknown */
    const char *outcome;       /* the reconciliations row's outcome */
    long runs_found;
    const char *detail;        /* for the log and the submission's error */
    const char *resume_cursor; /* UNKNOWN after a read cut short: where the next read starts
                                  (the row's resume_cursor); NULL otherwise */
    size_t nfound;
    const struct tg_recon_found *found;
};
/* In one transaction: the calls not recorded before (outcome unknown, error naming the
 * reconciliation, the run_cursor found), the runs found for calls without runs (a call
 * whose runs are recorded by then is left as it is), the final state (none for UNKNOWN: a read cut short records the calls it found whole and leaves the
 * submission unknown), and a reconciliations row. TG_EINVAL when the submission is no
 * longer unknown (someone else reconciled it). */
int tg_store_recon_write(struct tg_store *st, const struct tg_recon_write *w);

/* How many submissions are pending (being sent now) and unknown (to be reconciled), and
 * when the oldest unknown one was received (0: none), from one index. */
int tg_store_open_counts(struct tg_store *st, long *pending, long *unknown,
                         int64_t *oldest_unknown_ms);

/* Ids of 'unknown' submissions, oldest first, at most max, into the pool. With before_ms
 * above 0, only those that became unknown before it and were not tried since, and those
 * whose last reconciliation was a read cut short (the next pass reads on at once). */
int tg_store_unknown_ids(struct tg_store *st, struct tg_pool *pool, size_t max,
                         int64_t before_ms, const char ***ids, size_t *n);

/* The runs an earlier submission (and those it resumed in turn) created, by input index:
 * (*ids)[i] is the run of input i or NULL, for num_inputs inputs; *group its group (NULL
 * when none). All in the pool. */
int tg_store_prior_runs(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
                        size_t num_inputs, const char ***ids, const char **group);

/* ---- what came of each run: the groups followed, status changes, webhooks ---------------- */
/* The groups to follow are written by the store itself, in the transaction of each add-runs
 * call that may have created runs (ok or unknown): every group with runs of the gateway's is
 * followed until none of its runs is active, and again when runs are added. A group is
 * followed by one daemon at a time: the one that took it (tg_store_track_take) and holds it
 * while its lease (TG_STORE_LEASE_MS, renewed by tg_store_track_renew) lasts. */

#define TG_TRACK_ID_MAX 255 /* the longest group id, event id, run id the records take */

/* A group as the daemon that took it follows it. */
struct tg_track_group {
    char taskgroup_id[TG_TRACK_ID_MAX + 1];
    int64_t team_id;
    char team[65];
    char last_event_id[TG_TRACK_ID_MAX + 1]; /* where to resume; "" from the start */
    int64_t adds;                            /* add-runs calls recorded when it was taken */
};

/* Takes for this daemon (tg_store_daemon_id) at most max groups to follow that no live
 * daemon follows, oldest first, into out[0 .. *n), in one transaction (two daemons never
 * take the same group). *waiting (may be NULL) receives how many groups to follow are then
 * left that nobody follows. */
int tg_store_track_take(struct tg_store *st, size_t max, struct tg_track_group *out,
                        size_t *n, long *waiting);

/* Renews this daemon's lease on every group it follows. */
int tg_store_track_renew(struct tg_store *st);

/* One run's status change as a source told it. Strings are borrowed for the call. */
struct tg_run_change {
    const char *run_id;
    const char *status;     /* tg_domain_run_status_known */
    const char *error;      /* the error's message of a failed run; NULL: none */
    int64_t changed_ms;     /* when it happened, as the upstream says; 0: not said (now) */
    const char *event_id;   /* the stream's event id (NULL: none) */
    int news;               /* set by the store: it was news, and is now recorded */
};

/* What a group's stream told since the last batch, recorded in ONE transaction: each
 * change that is news (tg_domain_run_change_news) in run_status and run_status_changes, and
 * the group's place after it, last_event_id (NULL: unchanged), so that a follower that
 * stops anywhere resumes after what was recorded and before what was not. TG_ENOTFOUND when
 * this daemon no longer holds the group (its lease ran out and another took it): nothing is
 * written. *recorded (may be NULL) receives how many changes were news. */
int tg_store_track_record(struct tg_store *st, const char *taskgroup_id,
                          const char *last_event_id, struct tg_run_change *changes,
                          size_t n, size_t *recorded);

/* Stops following a group this daemon holds: it becomes 'idle' (none of its runs active),
 * or 'gone' when gone is set (the upstream no longer serves it; detail says why), unless
 * runs were added since it was taken (adds differs): then it stays to follow, for the next
 * take. Either way the daemon's hold ends. *again (may be NULL) says it stays to follow. */
int tg_store_track_settle(struct tg_store *st, const char *taskgroup_id, int64_t adds, int gone,
                          const char *detail, int *again);

/* Gives up this daemon's hold on a group it follows (NULL: on every one: the daemon is
 * stopping), so that another daemon may take it at once; its place is kept. */
int tg_store_track_release(struct tg_store *st, const char *taskgroup_id);

/* What became of a genuine webhook delivery. */
enum tg_webhook_outcome {
    TG_WEBHOOK_RECORDED = 0, /* it told a status change, now recorded */
    TG_WEBHOOK_KNOWN,        /* the change was recorded already (the stream told it) */
    TG_WEBHOOK_IGNORED       /* not a run of a group the gateway follows */
};

/* Records one delivery with a genuine signature in one transaction: the webhook-id (so that
 * the same delivery sent again changes nothing: TG_EEXIST) and, when the run's group is one
 * of the gateway's (taskgroup_id as the delivery names it; NULL: the run's recorded group),
 * the change with source 'webhook'. *out says which; team (teamlen bytes, may be NULL)
 * receives the group's team. */
int tg_store_webhook_record(struct tg_store *st, const char *webhook_id,
                            const char *taskgroup_id, struct tg_run_change *change,
                            enum tg_webhook_outcome *out, char *team, size_t teamlen);

/* Deletes the webhook-ids received before before_ms (Parallel retries for 48 hours at
 * most); *n (may be NULL) receives how many. */
int tg_store_webhook_prune(struct tg_store *st, int64_t before_ms, long *n);

#endif
