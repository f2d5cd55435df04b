/* The SQLite backend of the store (contract in tg_store.h, interface in
 * tg_store_backend.h): one connection per handle, statements prepared once and reused,
 * every write in a BEGIN IMMEDIATE transaction. This file holds the connection, its
 * statements and migrations, the row walks, the admin log's row and the backend table;
 * tg_sqlite_int.h says where the rest is. */
#include "tg_store.h"
#include "tg_sqlite_int.h"
#include "tg_metrics.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

/* Every statement this module runs, prepared on first use and kept for the handle's life.
 * All SQL of the gateway's SQLite backend lives in gateway/store/sqlite/ and sql/sqlite/. */

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_VERSION] = "PRAGMA user_version",
    /* With the generation of the same read: the rows the handle keeps that were read at it
     * answer for the request (tg_sqlite_kept.c). */
    [S_AUTH] =
        "SELECT k.team_id, t.name, k.id, k.label, k.role, k.hash,"
        " (SELECT n FROM generation WHERE id = 1), k.expires_at FROM tokens k"
        " JOIN teams t ON t.id = k.team_id"
        " WHERE k.hash = ?1 AND k.revoked_at IS NULL"
        " AND (k.expires_at IS NULL OR k.expires_at > ?2)",
    /* What a write checks first for a caller whose token check was not read (tg_store.h). */
    [S_GENERATION] = "SELECT n FROM generation WHERE id = 1",
    /* The reads a handle keeps: one row always, the generation first, NULLs when there is
     * no such team or preset. */
    [S_TEAM_KEY] =
        "SELECT g.n, t.name, t.upstream_key, t.key_id FROM generation g"
        " LEFT JOIN teams t ON t.id = ?1 WHERE g.id = 1",
    [S_TEAM_ID] = "SELECT id FROM teams WHERE name = ?1",
    [S_TEAM_ADD] =
        "INSERT INTO teams (name, upstream_key, key_fingerprint, created_at, updated_at, key_id)"
        " VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    [S_TEAM_SET_KEY] =
        "UPDATE teams SET upstream_key = ?2, key_fingerprint = ?3, updated_at = ?4,"
        " key_id = ?5 WHERE name = ?1",
    [S_TEAM_LIST] =
        "SELECT t.id, t.name, t.key_fingerprint, t.created_at,"
        " (SELECT count(*) FROM tokens k WHERE k.team_id = t.id AND k.revoked_at IS NULL"
        "   AND (k.expires_at IS NULL OR k.expires_at > ?1)),"
        " (SELECT count(*) FROM presets p WHERE p.team_id = t.id)"
        " FROM teams t ORDER BY t.name",
    [S_TOKEN_ADD] =
        "INSERT INTO tokens (id, team_id, role, label, hash, created_at, expires_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_TOKEN_REVOKE] =
        "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
    [S_TOKEN_LIST] =
        "SELECT k.id, t.name, k.role, k.label, k.created_at, k.expires_at, k.revoked_at"
        " FROM tokens k JOIN teams t ON t.id = k.team_id"
        " WHERE ?1 IS NULL OR t.name = ?1 ORDER BY k.created_at, k.rowid",
    [S_PRESET_SET] =
        "INSERT INTO presets (team_id, name, body, updated_at) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT (team_id, name)"
        " DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
    [S_PRESET_GET] = "SELECT body FROM presets WHERE team_id = ?1 AND name = ?2",
    [S_PRESET_KEPT] =
        "SELECT g.n, p.body FROM generation g"
        " LEFT JOIN presets p ON p.team_id = ?1 AND p.name = ?2 WHERE g.id = 1",
    [S_ADMIN_LOG] =
        "INSERT INTO admin_log (at, actor, actor_team, interface, action, object_type,"
        " object_id, team, before, after, remote_addr)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [S_TEAM_FP] = "SELECT key_fingerprint FROM teams WHERE name = ?1",
    [S_RECOVER] =
        "UPDATE submissions SET state = 'unknown', completed_at = ?1,"
        " error = 'the daemon stopped before the outcome was recorded'"
        " WHERE state = 'pending' AND (daemon_id IS NULL OR daemon_id IS NOT ?2)",
    [S_TEAM_NAME] = "SELECT name FROM teams WHERE id = ?1",
    [S_TOKEN_INFO] =
        "SELECT t.name, k.role, k.label, k.expires_at FROM tokens k"
        " JOIN teams t ON t.id = k.team_id WHERE k.id = ?1",
    [S_PRESET_LIST] =
        "SELECT name, updated_at FROM presets WHERE team_id = ?1 ORDER BY name",
    [S_SUB_INSERT] =
        "INSERT INTO submissions (id, team_id, token_id, request_id, received_at,"
        " completed_at, remote_addr, interface, taskgroup_id, num_inputs, state,"
        " http_status, error, request, resumes, daemon_id)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    [S_SUB_GROUP] =
        "UPDATE submissions SET taskgroup_id = ?2 WHERE id = ?1 AND state = 'pending'",
    /* A final state is never rewritten; only reconciliation may settle 'unknown'. */
    [S_SUB_FINISH] =
        "UPDATE submissions SET state = ?2, http_status = ?3,"
        " upstream_status = coalesce(?4, upstream_status), error = ?5, completed_at = ?6"
        " WHERE id = ?1 AND (state = 'pending'"
        "   OR (state = 'unknown' AND ?2 IN ('accepted', 'failed')))",
    /* The same with the status of the call recorded in the same write, NULL included. */
    [S_SUB_FINISH_CALL] =
        "UPDATE submissions SET state = ?2, http_status = ?3,"
        " upstream_status = ?4, error = ?5, completed_at = ?6"
        " WHERE id = ?1 AND (state = 'pending'"
        "   OR (state = 'unknown' AND ?2 IN ('accepted', 'failed')))",
    [S_SUB_STATE] = "SELECT state FROM submissions WHERE id = ?1",
    [S_SUB_FACTS] =
        "SELECT team_id, substr(received_at, 1, 10), substr(received_at, 1, 7), state,"
        " EXISTS (SELECT 1 FROM runs WHERE submission_id = ?1) FROM submissions WHERE id = ?1",
    [S_SUB_UPSTREAM] =
        /* The last call's status: NULL when it got no answer. */
        "UPDATE submissions SET upstream_status = ?2"
        " WHERE id = ?1 AND state IN ('pending', 'unknown')",
    /* The group a call went to, when the record does not hold it yet: an UPDATE that
     * changes nothing would still rewrite the submission's entry in submissions_group_time. */
    [S_SUB_CALL_GROUP] =
        "UPDATE submissions SET taskgroup_id = ?2"
        " WHERE id = ?1 AND state IN ('pending', 'unknown') AND taskgroup_id IS NOT ?2",
    [S_CALL_INSERT] =
        "INSERT INTO upstream_calls (submission_id, seq, operation, method, path,"
        " first_input, num_inputs, started_at, finished_at, duration_ms, outcome,"
        " http_status, run_cursor, event_cursor, error)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
};



int tg_sqlite_schema_version(void)
{
    int v = 0;
    for (const struct tg_migration *m = tg_migrations; m->sql != NULL; m++)
        if (m->version > v)
            v = m->version;
    return v;
}

/* ---- errors and statements --------------------------------------------------------------- */

void tg_sqlite_set_err(struct tg_store *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof(st->err), fmt, ap);
    va_end(ap);
}

/* An extended SQLite result code as a gateway status. */
static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return TG_EBUSY;
    case SQLITE_NOMEM:
        return TG_ENOMEM;
    case SQLITE_TOOBIG:
        return TG_ETOOBIG;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            return TG_EEXIST;
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            return TG_ENOTFOUND;
        return TG_EINVAL;
    default:
        return TG_EDB;
    }
}

/* Records "what: sqlite's message" and returns rc mapped. Call before resetting. */
int tg_sqlite_db_err(struct tg_store *st, int rc, const char *what)
{
    tg_sqlite_set_err(st, "%s: %s", what, sqlite3_errmsg(st->db));
    return map_rc(rc);
}

int tg_sqlite_invalid(struct tg_store *st, const char *what)
{
    tg_sqlite_set_err(st, "%s", what);
    return TG_EINVAL;
}

int tg_sqlite_stmt(struct tg_store *st, enum stmt_id id, const char *sql, sqlite3_stmt **out)
{
    if (st->stmt[id] == NULL) {
        int rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                    &st->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            st->stmt[id] = NULL;
            *out = NULL;
            return tg_sqlite_db_err(st, rc, "prepare");
        }
    }
    /* An id is one statement: two texts for one would run the wrong SQL. */
    assert(strcmp(sqlite3_sql(st->stmt[id]), sql) == 0);
    *out = st->stmt[id];
    return TG_OK;
}

int tg_sqlite_prep(struct tg_store *st, enum stmt_id id, sqlite3_stmt **out)
{
    assert(stmt_sql[id] != NULL);
    return tg_sqlite_stmt(st, id, stmt_sql[id], out);
}

/* Readies a statement for its next use; its bound strings may then go away. */
void tg_sqlite_done(sqlite3_stmt *s)
{
    if (s != NULL) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

/* Bound strings are SQLITE_STATIC: they live until tg_sqlite_done() runs after the step. */
int tg_sqlite_bind_text(sqlite3_stmt *s, int i, const char *v)
{
    return v != NULL ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

/* Binds v, or NULL when v is 0 (the header's "0: none"). */
int tg_sqlite_bind_int_or_null(sqlite3_stmt *s, int i, int64_t v)
{
    return v != 0 ? sqlite3_bind_int64(s, i, v) : sqlite3_bind_null(s, i);
}

/* Steps a statement that returns no rows, then resets it. */
int tg_sqlite_run(struct tg_store *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    int out = rc == SQLITE_DONE ? TG_OK : tg_sqlite_db_err(st, rc, what);
    tg_sqlite_done(s);
    return out;
}

int tg_sqlite_one(struct tg_store *st, sqlite3_stmt *s, const char *what)
{
    int src = sqlite3_step(s);
    return src == SQLITE_ROW ? TG_OK : src == SQLITE_DONE ? TG_ENOTFOUND
                                                          : tg_sqlite_db_err(st, src, what);
}

int tg_sqlite_each(struct tg_store *st, sqlite3_stmt *s, const char *what,
                   int (*row)(void *arg, sqlite3_stmt *s), void *arg)
{
    int rc = TG_OK;
    while (rc == TG_OK) {
        int src = sqlite3_step(s);
        if (src == SQLITE_DONE)
            break;
        rc = src == SQLITE_ROW ? row(arg, s) : tg_sqlite_db_err(st, src, what);
    }
    tg_sqlite_done(s);
    return rc;
}

const char *tg_sqlite_col_text(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

/* Copies a text column into dst, truncated to fit; NULL becomes "". */
void tg_sqlite_col_copy(char *dst, size_t dstlen, sqlite3_stmt *s, int i)
{
    const char *v = tg_sqlite_col_text(s, i);
    snprintf(dst, dstlen, "%s", v != NULL ? v : "");
}

void tg_sqlite_now_text(char out[TG_TIME_LEN])
{
    tg_time_format(tg_now_ms(), out);
}

/* ---- transactions -------------------------------------------------------------------- */

/* BEGIN IMMEDIATE takes the write lock at once, so a busy database is waited on by the
 * busy timeout instead of failing later when a read lock would have to be upgraded. The
 * process's writer mutex (above) is held until tg_sqlite_tx_end. */
int tg_sqlite_tx_begin(struct tg_store *st)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_BEGIN, &s);
    if (rc != TG_OK)
        return rc;
    int64_t t0 = tg_mono_us();
    tg_sqlite_writer_lock();
    tg_metrics_db_wait(tg_mono_us() - t0);
    tg_metrics_db_tx(1, 0);
    rc = tg_sqlite_run(st, s, "begin");
    if (rc != TG_OK)
        tg_sqlite_writer_unlock();
    st->generation = -1; /* a change of its own: what it kept is read again */
    return rc;
}

/* Commits when rc is TG_OK, otherwise (or when the commit fails) rolls back; returns the
 * final status. The handle's message describes the first failure. Releases the writer
 * mutex tx_begin took. */
int tg_sqlite_tx_end(struct tg_store *st, int rc)
{
    sqlite3_stmt *s;
    if (rc == TG_OK) {
        rc = tg_sqlite_prep(st, S_COMMIT, &s);
        if (rc == TG_OK)
            rc = tg_sqlite_run(st, s, "commit");
    }
    if (rc != TG_OK && !sqlite3_get_autocommit(st->db)) {
        /* Prepared at open, so rolling back never fails for want of a statement. */
        s = st->stmt[S_ROLLBACK];
        sqlite3_step(s);
        sqlite3_reset(s);
    }
    tg_sqlite_writer_unlock();
    return rc;
}

/* One SQLite write transaction at a time in this process: writers queue here, woken the
 * moment the lock is free; left to SQLite's busy handler they would poll with sleeps of
 * up to 100 ms each. The busy timeout still covers writers in other processes. */
static pthread_mutex_t writer = PTHREAD_MUTEX_INITIALIZER;
static int64_t writer_since;   /* when the holder took it (under the mutex) */
static int writer_checkpoints; /* the holder is the checkpointer */

void tg_sqlite_writer_lock(void)
{
    pthread_mutex_lock(&writer);
    writer_since = tg_mono_us();
    writer_checkpoints = 0;
}

void tg_sqlite_writer_lock_checkpoint(void)
{
    tg_sqlite_writer_lock();
    writer_checkpoints = 1;
}

void tg_sqlite_writer_unlock(void)
{
    int64_t held = tg_mono_us() - writer_since;
    int checkpoint = writer_checkpoints;
    pthread_mutex_unlock(&writer);
    tg_metrics_db_held(held, checkpoint);
}

/* Set by tg_sqlite_writer.c while the daemon's checkpoint thread runs; read when a handle
 * is opened, after the thread started or before it stopped (never concurrently with
 * either). */
static int checkpoints_elsewhere;

void tg_sqlite_set_checkpoints_elsewhere(int on)
{
    checkpoints_elsewhere = on;
}

int tg_sqlite_checkpoints_elsewhere(void)
{
    return checkpoints_elsewhere;
}

/* ---- opening and migrating -------------------------------------------------------------- */

static int read_version(struct tg_store *st, int *version)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_VERSION, &s);
    if (rc != TG_OK)
        return rc;
    int src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        *version = sqlite3_column_int(s, 0);
        rc = TG_OK;
    } else {
        rc = tg_sqlite_db_err(st, src, "read schema version");
    }
    tg_sqlite_done(s);
    return rc;
}

static int exec_sql(struct tg_store *st, const char *sql, const char *what)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? TG_OK : tg_sqlite_db_err(st, rc, what);
}

/* The config's db_max_pages, set once at start-up before any handle exists. */
static long max_pages;

void tg_sqlite_set_max_pages(long n)
{
    max_pages = n > 0 ? n : 0;
}

/* Connection settings and the statements every transaction needs. */
static int setup(struct tg_store *st, int flags, int busy_ms)
{
    int rc;
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, busy_ms > 0 ? busy_ms : 0);
    if (!(flags & TG_STORE_READONLY)) {
        /* A write-protected file cannot change its journal mode; it stays readable and
         * every write to it fails with TG_EDB. */
        rc = sqlite3_exec(st->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_READONLY)
            return tg_sqlite_db_err(st, rc, "set WAL mode");
    }
    /* WAL with synchronous=NORMAL survives a crash of the process (kill -9) without losing
     * a commit; only a power loss can cost the last transactions. (A memory map for reads
     * was tried and dropped: each connection maps the whole file, which multiplied the
     * daemon's resident memory by the number of workers for no measured gain.) */
    /* secure_delete: a replaced upstream key (sealed, or clear text from an older version
     * being encrypted) is overwritten with zeros on its page, not left in free space. */
    rc = exec_sql(st, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
                      " PRAGMA secure_delete = ON", "configure");
    if (rc != TG_OK)
        return rc;
    /* The daemon's checkpointer thread takes the WAL's checkpoints (tg_sqlite_writer.c tells). */
    if (tg_sqlite_checkpoints_elsewhere()) {
        rc = exec_sql(st, "PRAGMA wal_autocheckpoint = 0", "configure");
        if (rc != TG_OK)
            return rc;
    }
    if (max_pages > 0) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA max_page_count = %ld", max_pages);
        rc = exec_sql(st, pragma, "configure");
        if (rc != TG_OK)
            return rc;
    }
    sqlite3_stmt *s;
    const enum stmt_id fixed[] = {S_BEGIN, S_COMMIT, S_ROLLBACK};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        rc = tg_sqlite_prep(st, fixed[i], &s);
        if (rc != TG_OK)
            return rc;
    }
    return TG_OK;
}

/* The database must hold exactly the schema this binary was built with. */
static int check_version(struct tg_store *st)
{
    int have = 0;
    int rc = read_version(st, &have);
    if (rc != TG_OK)
        return rc;
    int need = tg_sqlite_schema_version();
    if (have < need) {
        tg_sqlite_set_err(st, "database schema is version %d, this taskgate needs %d: run `taskgate init`",
                have, need);
        return TG_ERR;
    }
    if (have > need) {
        tg_sqlite_set_err(st, "database schema is version %d, newer than this taskgate knows (%d): "
                "use a newer taskgate", have, need);
        return TG_ERR;
    }
    return TG_OK;
}

/* SQLite's allocation statistics take one process-wide mutex on every malloc and free,
 * which every worker's reads and the writer's statements contend on; nothing here reads
 * them (no soft heap limit, no sqlite3_memory_used). Set once, before the library starts. */
static pthread_once_t library_once = PTHREAD_ONCE_INIT;

static void library_init(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite3_initialize();
}

int tg_sqlite_open(struct tg_store **out, const char *path, int flags, int busy_ms,
                   char *err, size_t errlen)
{
    *out = NULL;
    pthread_once(&library_once, library_init);
    struct tg_store *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        if (errlen > 0)
            snprintf(err, errlen, "out of memory");
        return TG_ENOMEM;
    }
    st->flags = flags;
    st->generation = -1;
    st->seen = -1;
    st->unconfirmed = -1;
    int oflags = SQLITE_OPEN_NOMUTEX;
    if (flags & TG_STORE_READONLY)
        oflags |= SQLITE_OPEN_READONLY;
    else
        oflags |= SQLITE_OPEN_READWRITE | ((flags & TG_STORE_CREATE) ? SQLITE_OPEN_CREATE : 0);

    int rc;
    if ((flags & TG_STORE_CREATE) && !(flags & TG_STORE_READONLY) &&
        tg_sqlite_secure_files(path, 1, NULL, st->err, sizeof(st->err)) != TG_OK) {
        if (errlen > 0)
            snprintf(err, errlen, "%s", st->err);
        free(st);
        return TG_ERR;
    }
    const char *vfs = (flags & TG_SQLITE_GATHER_WAL) ? tg_sqlite_wal_vfs() : NULL;
    int src = sqlite3_open_v2(path != NULL ? path : "", &st->db, oflags, vfs);
    if (src != SQLITE_OK) {
        tg_sqlite_set_err(st, "cannot open %s: %s", path != NULL ? path : "(null)",
                st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(src));
        rc = map_rc(src);
    } else {
        rc = setup(st, flags, busy_ms);
        if (rc != TG_OK) {
            char why[sizeof(st->err)];
            memcpy(why, st->err, sizeof(why));
            tg_sqlite_set_err(st, "cannot open %s: %.400s", path, why);
        } else if (!(flags & TG_STORE_NO_VERSION_CHECK)) {
            rc = check_version(st);
        }
    }
    if (rc != TG_OK) {
        if (errlen > 0)
            snprintf(err, errlen, "%s", st->err);
        tg_sqlite_close(st);
        return rc;
    }
    *out = st;
    return TG_OK;
}

int tg_sqlite_secure_files(const char *path, int create, int *tightened, char *err,
                           size_t errlen)
{
    if (tightened != NULL)
        *tightened = 0;
    /* An in-memory or URI database has no files of its own to protect. */
    if (path == NULL || *path == '\0' || *path == ':' || strncmp(path, "file:", 5) == 0)
        return TG_OK;
    if (create) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            close(fd);
        } else if (errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            return TG_ERR;
        }
    }
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char p[4200];
        struct stat sb;
        int n = snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        if (n < 0 || (size_t)n >= sizeof(p) || lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode) ||
            (sb.st_mode & 077) == 0)
            continue;
        /* Another user's file (a CLI run by someone else) is theirs to fix. */
        if (sb.st_uid != geteuid() && geteuid() != 0)
            continue;
        if (chmod(p, sb.st_mode & 07700) != 0) {
            snprintf(err, errlen, "cannot take group and other permissions off %s: %s", p,
                     strerror(errno));
            return TG_ERR;
        }
        if (tightened != NULL)
            (*tightened)++;
    }
    return TG_OK;
}

void tg_sqlite_close(struct tg_store *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    tg_sqlite_runs_forget(st);
    sqlite3_close_v2(st->db);
    tg_sqlite_kept_free(st);
    tg_sqlite_counts_fold_free(st);
    free(st);
}

const char *tg_sqlite_errmsg(const struct tg_store *st)
{
    return st != NULL ? st->err : "no store";
}

/* One migration: the lowest version above v, or NULL when the database is up to date. */
static const struct tg_migration *next_migration(int v)
{
    const struct tg_migration *best = NULL;
    for (const struct tg_migration *m = tg_migrations; m->sql != NULL; m++)
        if (m->version > v && (best == NULL || m->version < best->version))
            best = m;
    return best;
}

int tg_sqlite_migrate(struct tg_store *st, int *from, int *to)
{
    int before = -1, v = 0, rc;
    int latest = tg_sqlite_schema_version();
    for (;;) {
        /* The version is read inside the write transaction, so two processes migrating
         * at once apply each migration exactly once. */
        rc = tg_sqlite_tx_begin(st);
        if (rc != TG_OK)
            break;
        rc = read_version(st, &v);
        if (before < 0 && rc == TG_OK)
            before = v;
        if (rc == TG_OK && v > latest) {
            tg_sqlite_set_err(st, "database schema is version %d, newer than this taskgate knows (%d)",
                    v, latest);
            rc = TG_ERR;
        }
        const struct tg_migration *m = rc == TG_OK ? next_migration(v) : NULL;
        if (m == NULL) {
            rc = tg_sqlite_tx_end(st, rc);
            break;
        }
        char what[300];
        snprintf(what, sizeof(what), "migration %s", m->name);
        rc = exec_sql(st, m->sql, what);
        if (rc == TG_OK) {
            char pragma[64];
            snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
            rc = exec_sql(st, pragma, what);
        }
        rc = tg_sqlite_tx_end(st, rc);
        if (rc != TG_OK)
            break;
        v = m->version;
    }
    if (from != NULL)
        *from = before < 0 ? v : before;
    if (to != NULL)
        *to = v;
    return rc;
}

/* The health check opens the file afresh: the handle's own open descriptor would go on
 * reading a database file that has since been removed, replaced or made unreadable. */
int tg_sqlite_ping(struct tg_store *st)
{
    const char *path = sqlite3_db_filename(st->db, "main");
    sqlite3 *db = NULL;
    int src = sqlite3_open_v2(path != NULL ? path : "", &db,
                              SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    sqlite3_stmt *s = NULL;
    if (src == SQLITE_OK) {
        sqlite3_busy_timeout(db, 1000);
        src = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &s, NULL);
    }
    if (src == SQLITE_OK)
        src = sqlite3_step(s) == SQLITE_ROW ? SQLITE_OK : sqlite3_errcode(db);
    if (src != SQLITE_OK)
        tg_sqlite_set_err(st, "database check failed: %s", db != NULL ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_finalize(s);
    sqlite3_close(db);
    /* A file that was read-only when the handle opened it stays so for the handle. */
    if (src == SQLITE_OK && !(st->flags & TG_STORE_READONLY) &&
        sqlite3_db_readonly(st->db, "main") == 1) {
        tg_sqlite_set_err(st,
                          "database check failed: %s is read-only: nothing can be recorded",
                          path != NULL ? path : "the database");
        src = SQLITE_READONLY;
    }
    return src == SQLITE_OK ? TG_OK : TG_EDB;
}

/* ---- the admin change log ------------------------------------------------------------- */

void tg_sqlite_bind_actor(sqlite3_stmt *s, const char *now, const struct tg_actor *who)
{
    tg_sqlite_bind_text(s, 1, now);
    tg_sqlite_bind_text(s, 2, who->id);
    tg_sqlite_bind_text(s, 3, who->team);
    tg_sqlite_bind_text(s, 4, who->interface);
}

/* One admin_log row, inside the caller's transaction (tg_sqlite_int.h): here, below the
 * files whose changes it logs (identities, keys, limits, prunes). */
int tg_sqlite_admin_log(struct tg_store *st, const struct tg_actor *who, const char *action,
                        const char *object_type, const char *object_id, const char *team,
                        const char *before, const char *after)
{
    if (who == NULL || who->id == NULL || who->interface == NULL)
        return tg_sqlite_invalid(st, "an administrative change needs an actor");
    sqlite3_stmt *s;
    char now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    int rc = tg_sqlite_prep(st, S_ADMIN_LOG, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_actor(s, now, who);
    tg_sqlite_bind_text(s, 5, action);
    tg_sqlite_bind_text(s, 6, object_type);
    tg_sqlite_bind_text(s, 7, object_id);
    tg_sqlite_bind_text(s, 8, team);
    tg_sqlite_bind_text(s, 9, before);
    tg_sqlite_bind_text(s, 10, after);
    tg_sqlite_bind_text(s, 11, who->remote_addr);
    return tg_sqlite_run(st, s, "log the change");
}

/* ---- turns ---------------------------------------------------------------------------- */

/* One daemon per file: every turn is this daemon's. */
static int turn_begin(struct tg_store *st, const char *what)
{
    (void)st;
    (void)what;
    return TG_OK;
}

static void turn_end(struct tg_store *st, const char *what)
{
    (void)st;
    (void)what;
}

/* ---- the backend ------------------------------------------------------------------------ */

/* SQLite takes a file path (or its own file: URI); a URI of another scheme ("postgresql://")
 * names a server, another backend's. */
static int accepts(const char *database)
{
    const char *sep = database != NULL ? strstr(database, "://") : NULL;
    return sep == NULL || memchr(database, '/', (size_t)(sep - database)) != NULL ||
           strncmp(database, "file:", 5) == 0;
}

const struct tg_store_backend tg_sqlite_backend = {
    .name = "sqlite",
    .accepts = accepts,
    .open = tg_sqlite_open,
    .set_max_pages = tg_sqlite_set_max_pages,
    .close = tg_sqlite_close,
    .writer_start = tg_sqlite_writer_start,
    .writer_stop = tg_sqlite_writer_stop,
    .errmsg = tg_sqlite_errmsg,
    .migrate = tg_sqlite_migrate,
    .schema_version = tg_sqlite_schema_version,
    .claim = tg_sqlite_claim,
    .claim_release = tg_sqlite_claim_release,
    .ping = tg_sqlite_ping,
    .write_health = tg_sqlite_write_health,
    .write_probe = tg_sqlite_write_probe,
    .secure_files = tg_sqlite_secure_files,
    .auth = tg_sqlite_auth,
    .auth_kept = tg_sqlite_auth_kept,
    .auth_confirm = tg_sqlite_auth_confirm,
    .team_key = tg_sqlite_team_key,
    .team_id = tg_sqlite_team_id,
    .team_add = tg_sqlite_team_add,
    .team_set_key = tg_sqlite_team_set_key,
    .team_list = tg_sqlite_team_list,
    .keys_summary = tg_sqlite_keys_summary,
    .presets_clear = tg_sqlite_presets_clear,
    .keys_reseal = tg_sqlite_keys_reseal,
    .token_add = tg_sqlite_token_add,
    .token_revoke = tg_sqlite_token_revoke,
    .token_list = tg_sqlite_token_list,
    .preset_set = tg_sqlite_preset_set,
    .preset_get = tg_sqlite_preset_get,
    .preset_list = tg_sqlite_preset_list,
    .submission_begin = tg_sqlite_submission_begin,
    .submission_reject = tg_sqlite_submission_reject,
    .submission_group = tg_sqlite_submission_group,
    .submission_finish = tg_sqlite_submission_finish,
    .recover_pending = tg_sqlite_recover_pending,
    .turn_begin = turn_begin,
    .turn_end = turn_end,
    .call_record = tg_sqlite_call_record,
    .call_finish = tg_sqlite_call_finish,
    .audit_columns = tg_sqlite_audit_columns,
    .audit_submissions = tg_sqlite_audit_submissions,
    .audit_open = tg_sqlite_audit_open,
    .audit_runs = tg_sqlite_audit_runs,
    .audit_admin = tg_sqlite_audit_admin,
    .audit_submission = tg_sqlite_audit_submission,
    .audit_run = tg_sqlite_audit_run,
    .audit_group = tg_sqlite_audit_group,
    .audit_summary = tg_sqlite_audit_summary,
    .audit_durations = tg_sqlite_audit_durations,
    .summary_compact = tg_sqlite_summary_compact,
    .audit_prune = tg_sqlite_audit_prune,
    .audit_read_log = tg_sqlite_audit_read_log,
    .group_owned = tg_sqlite_group_owned,
    .run_owned = tg_sqlite_run_owned,
    .idem_get = tg_sqlite_idem_get,
    .admit = tg_sqlite_admit,
    .idem_answer = tg_sqlite_idem_answer,
    .idem_prune = tg_sqlite_idem_prune,
    .limits_get = tg_sqlite_limits_get,
    .limits_set = tg_sqlite_limits_set,
    .recon_load = tg_sqlite_recon_load,
    .recon_cursor = tg_sqlite_recon_cursor,
    .recon_write = tg_sqlite_recon_write,
    .open_counts = tg_sqlite_open_counts,
    .unknown_ids = tg_sqlite_unknown_ids,
    .prior_runs = tg_sqlite_prior_runs,
    .track_take = tg_sqlite_track_take,
    .track_renew = tg_sqlite_track_renew,
    .track_record = tg_sqlite_track_record,
    .track_settle = tg_sqlite_track_settle,
    .track_release = tg_sqlite_track_release,
    .webhook_record = tg_sqlite_webhook_record,
    .webhook_prune = tg_sqlite_webhook_prune,
    .usage = &tg_sqlite_usage_ops,
};
