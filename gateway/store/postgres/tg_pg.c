/* The PostgreSQL backend's connection (tg_pg_int.h): opening a libpq connection from the
 * config's postgresql:// URI, its statements prepared by name on first use, transactions
 * with a retry for serialization failures, migrations from sql/postgres/, the health
 * probes, the admin log's row, and the backend table the store's face dispatches to. */
#include "tg_pg_int.h"

#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tg_core.h"
#include "tg_log.h"
#include "tg_metrics.h"

/* How many times a transaction the server aborted (serialization, deadlock) is run again. */
#define WRITE_TRIES 5
/* Serialises migrations of every process on one server (pg_advisory_xact_lock's key). */
#define MIGRATION_LOCK 7470617367617465LL /* "tpsgate" */

/* ---- errors -------------------------------------------------------------------------- */

void tg_pg_set_err(struct tg_store *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof(st->err), fmt, ap);
    va_end(ap);
}

int tg_pg_invalid(struct tg_store *st, const char *what)
{
    tg_pg_set_err(st, "%s", what);
    return TG_EINVAL;
}

int tg_pg_todo(struct tg_store *st, const char *what)
{
    tg_pg_set_err(st, "the PostgreSQL backend cannot yet %s", what);
    return TG_ERR;
}

/* A SQLSTATE as a gateway status (tg_pg_int.h). */
static int map_state(const char *state)
{
    if (state == NULL)
        return TG_EDB; /* no answer: the connection */
    if (strcmp(state, "23505") == 0)
        return TG_EEXIST;
    if (strcmp(state, "23503") == 0)
        return TG_ENOTFOUND;
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0 ||
        strcmp(state, "P0001") == 0)
        return TG_EINVAL;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
        strcmp(state, "55P03") == 0)
        return TG_EBUSY;
    return TG_EDB;
}

/* The server's words without the trailing newline libpq keeps. */
static void server_message(struct tg_store *st, const PGresult *res, const char *what)
{
    const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (msg == NULL)
        msg = PQerrorMessage(st->conn);
    size_t len = strcspn(msg, "\n");
    tg_pg_set_err(st, "%s: %.*s", what, (int)(len > 400 ? 400 : len), msg);
}

static int result_err(struct tg_store *st, const PGresult *res, const char *what)
{
    server_message(st, res, what);
    const char *c = res != NULL ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
    snprintf(st->constraint, sizeof(st->constraint), "%s", c != NULL ? c : "");
    return map_state(res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
}

/* ---- the connection ------------------------------------------------------------------ */

/* Seconds a connection attempt may take when the URI does not say (connect_timeout): a
 * server that does not answer at all (a host gone from the network) would otherwise hold
 * a request for the system's TCP timeout, minutes, instead of failing it with a 503. */
#define CONNECT_TIMEOUT_S "5"

/* Over TCP, a server host that vanishes without closing its connections (powered off,
 * cut off by a firewall) would leave a statement waiting for the system's defaults, two
 * hours of silence before the first keepalive and about fifteen minutes of unacknowledged
 * retransmissions. Keepalives after 10 s idle, every 5 s, 3 missed, and 30 s of
 * unacknowledged data end such a connection within the 30-second lease of the
 * daemons table, so this daemon answers 503 and reconnects before another one gives its
 * submissions up. Ignored on a unix socket; the URI's own values win. */
#define KEEPALIVES_IDLE_S "10"
#define KEEPALIVES_INTERVAL_S "5"
#define KEEPALIVES_COUNT "3"
#define TCP_USER_TIMEOUT_MS "30000"

/* What the server says beside its answers (a warning; why it ends a session while a
 * statement waits) goes to the log as one line, not to stderr in libpq's own words. */
static void on_notice(void *arg, const char *msg)
{
    (void)arg;
    size_t len = strcspn(msg, "\n");
    tg_log(TG_LOG_WARN, "PostgreSQL: %.*s", (int)(len > 400 ? 400 : len), msg);
}

/* Settings every connection runs with, made again after a reconnect: UTC, a locked row
 * waited on busy_ms at most (SQLite's busy timeout; 0 is "do not wait", which for
 * PostgreSQL's lock_timeout would mean "wait for ever"), and read-only when opened so. */
static int setup(struct tg_store *st)
{
    char sql[200];
    snprintf(sql, sizeof(sql), "SET TIME ZONE 'UTC'; SET lock_timeout = %d; "
             "SET client_min_messages = warning%s", st->busy_ms > 0 ? st->busy_ms : 1,
             (st->flags & TG_STORE_READONLY) ? "; SET default_transaction_read_only = on"
                                             : "");
    int rc = tg_pg_sql(st, sql, "configure the connection");
    st->ready = rc == TG_OK;
    return rc;
}

/* Whether the server has closed this idle connection (a restart, an administrator ending
 * sessions). It says why and closes its end, which libpq notices only when it next reads:
 * without this look the next statement, the first after the server is back, would fail
 * too. Outside a transaction no answer is due, so whatever is readable is that farewell
 * or the end of the connection (a few reads: the farewell first, then the end). */
static int closed_by_server(PGconn *conn)
{
    struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
    for (int i = 0; i < 4 && poll(&pfd, 1, 0) > 0; i++)
        if (!PQconsumeInput(conn))
            break;
    return PQstatus(conn) != CONNECTION_OK;
}

/* A lost connection is made again, outside a transaction only: inside one, what the
 * transaction did is gone with it and the caller must hear so. Prepared statements are
 * the connection's: they are prepared again. */
static int connected(struct tg_store *st)
{
    if (st->in_tx) {
        if (PQstatus(st->conn) == CONNECTION_OK)
            return TG_OK;
        tg_pg_set_err(st, "the connection to PostgreSQL was lost in a transaction");
        return TG_EDB;
    }
    if (st->ready && PQstatus(st->conn) == CONNECTION_OK && !closed_by_server(st->conn))
        return TG_OK;
    st->ready = 0;
    st->nprepared = 0;
    PQreset(st->conn);
    if (PQstatus(st->conn) != CONNECTION_OK) {
        server_message(st, NULL, "connect to PostgreSQL");
        return TG_EDB;
    }
    return setup(st);
}

static int prepared(const struct tg_store *st, const struct tg_pg_stmt *s)
{
    for (int i = 0; i < st->nprepared; i++)
        if (st->prepared[i] == s)
            return 1;
    return 0;
}

/* Runs s once on the handle's connection, made again first when it was lost outside a
 * transaction. *sent says whether s reached the connection: a failure to connect sent
 * nothing. */
static int exec_once(struct tg_store *st, const struct tg_pg_stmt *s, int n,
                     const char *const *params, PGresult **res, const char *what, int *sent)
{
    *sent = 0;
    int rc = connected(st);
    if (rc != TG_OK)
        return rc;
    *sent = 1;
    if (s->name != NULL && !prepared(st, s)) {
        PGresult *p = PQprepare(st->conn, s->name, s->sql, n, NULL);
        int ok = p != NULL && PQresultStatus(p) == PGRES_COMMAND_OK;
        rc = ok ? TG_OK : result_err(st, p, "prepare");
        PQclear(p);
        if (rc != TG_OK)
            return rc;
        /* Past the table's room it is used unprepared: by name still works once prepared,
         * so it is only prepared again next time. */
        if (st->nprepared < TG_PG_PREPARED_MAX)
            st->prepared[st->nprepared++] = s;
    }
    PGresult *r = s->name != NULL ? PQexecPrepared(st->conn, s->name, n, params, NULL, NULL, 0)
                                  : PQexecParams(st->conn, s->sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType t = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
        rc = result_err(st, r, what);
        PQclear(r);
        return rc;
    }
    if (res != NULL)
        *res = r;
    else
        PQclear(r);
    return TG_OK;
}

/* Whether s is a query (SELECT, or WITH ... SELECT): what one may write besides is refused
 * on a second try by the read-only transaction it then runs in. */
static int is_query(const struct tg_pg_stmt *s)
{
    const char *q = s->sql + strspn(s->sql, " \t\n");
    return strncasecmp(q, "SELECT", 6) == 0 || strncasecmp(q, "WITH", 4) == 0;
}

/* A query whose connection was lost while it was on its way or running (the server ended
 * the session: a restart, an administrator's pg_terminate_backend) is made once more on a
 * new connection, so that the client does not get a 503 for a moment the server had
 * already got over. Only outside a transaction, whose work went with its session, and
 * while no session lock is held (tg_pg_int.h), which a new session would not hold. It runs
 * in a read-only transaction: a query that meant to write (WITH ... INSERT, nextval)
 * perhaps did so before the connection went, and the server refuses it the second time
 * instead of letting it write twice. When the second try fails too, the first failure is
 * the answer. */
static int exec_again(struct tg_store *st, const struct tg_pg_stmt *s, int n,
                      const char *const *params, PGresult **res, const char *what, int first)
{
    char lost[sizeof(st->err)];
    snprintf(lost, sizeof(lost), "%s", st->err);
    int rc = connected(st), sent;
    if (rc == TG_OK)
        rc = tg_pg_sql(st, "BEGIN READ ONLY", "begin");
    if (rc == TG_OK) {
        st->in_tx = 1; /* lost again now, it is not made on a third connection */
        rc = exec_once(st, s, n, params, res, what, &sent);
        if (rc == TG_OK)
            rc = tg_pg_sql(st, "COMMIT", "commit");
        if (rc != TG_OK && PQtransactionStatus(st->conn) != PQTRANS_IDLE)
            PQclear(PQexec(st->conn, "ROLLBACK"));
        st->in_tx = 0;
    }
    tg_metrics_db_again(rc == TG_OK);
    if (rc == TG_OK) {
        tg_log(TG_LOG_WARN, "%s; the query was made again on a new connection", lost);
        return TG_OK;
    }
    if (res != NULL && *res != NULL) {
        PQclear(*res);
        *res = NULL;
    }
    snprintf(st->err, sizeof(st->err), "%s", lost);
    return first;
}

int tg_pg_exec(struct tg_store *st, const struct tg_pg_stmt *s, int n,
               const char *const *params, PGresult **res, const char *what)
{
    if (res != NULL)
        *res = NULL;
    int sent;
    int rc = exec_once(st, s, n, params, res, what, &sent);
    if (rc != TG_OK && sent && !st->in_tx && st->session_locks == 0 && is_query(s) &&
        PQstatus(st->conn) != CONNECTION_OK)
        rc = exec_again(st, s, n, params, res, what, rc);
    return rc;
}

int tg_pg_run(struct tg_store *st, const struct tg_pg_stmt *s, int n,
              const char *const *params, const char *what)
{
    return tg_pg_exec(st, s, n, params, NULL, what);
}

int tg_pg_one(struct tg_store *st, const struct tg_pg_stmt *s, int n,
              const char *const *params, PGresult **res, const char *what)
{
    int rc = tg_pg_exec(st, s, n, params, res, what);
    if (rc == TG_OK && PQntuples(*res) == 0) {
        PQclear(*res);
        *res = NULL;
        return TG_ENOTFOUND;
    }
    return rc;
}

int tg_pg_each(struct tg_store *st, const struct tg_pg_stmt *s, int n,
               const char *const *params, const char *what,
               int (*row)(void *arg, PGresult *res, int i), void *arg)
{
    PGresult *res;
    int rc = tg_pg_exec(st, s, n, params, &res, what);
    if (rc != TG_OK)
        return rc;
    int rows = PQntuples(res);
    for (int i = 0; rc == TG_OK && i < rows; i++)
        rc = row(arg, res, i);
    PQclear(res);
    return rc;
}

int tg_pg_sql(struct tg_store *st, const char *sql, const char *what)
{
    PGresult *r = PQexec(st->conn, sql);
    ExecStatusType t = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    int rc = t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK ? TG_OK : result_err(st, r, what);
    PQclear(r);
    return rc;
}

const char *tg_pg_text(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

void tg_pg_copy(char *dst, size_t dstlen, const PGresult *res, int row, int col)
{
    const char *v = tg_pg_text(res, row, col);
    snprintf(dst, dstlen, "%s", v != NULL ? v : "");
}

int64_t tg_pg_int(const PGresult *res, int row, int col)
{
    const char *v = tg_pg_text(res, row, col);
    return v != NULL ? strtoll(v, NULL, 10) : 0;
}

const char *tg_pg_i64(char buf[TG_PG_I64_LEN], int64_t v)
{
    snprintf(buf, TG_PG_I64_LEN, "%lld", (long long)v);
    return buf;
}

const char *tg_pg_i64_or_null(char buf[TG_PG_I64_LEN], int64_t v)
{
    return v != 0 ? tg_pg_i64(buf, v) : NULL;
}

void tg_pg_now_text(char out[TG_TIME_LEN])
{
    tg_time_format(tg_now_ms(), out);
}

/* ---- transactions -------------------------------------------------------------------- */

static const struct tg_pg_stmt begin_stmt = {"tx_begin", "BEGIN"};
static const struct tg_pg_stmt commit_stmt = {"tx_commit", "COMMIT"};

int tg_pg_tx_begin(struct tg_store *st)
{
    int64_t t0 = tg_mono_us();
    int rc = tg_pg_run(st, &begin_stmt, 0, NULL, "begin");
    tg_metrics_db_wait(tg_mono_us() - t0);
    tg_metrics_db_tx(1, 0);
    if (rc == TG_OK)
        st->in_tx = 1;
    return rc;
}

int tg_pg_tx_end(struct tg_store *st, int rc)
{
    if (rc == TG_OK)
        rc = tg_pg_run(st, &commit_stmt, 0, NULL, "commit");
    if (rc != TG_OK && PQtransactionStatus(st->conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(st->conn, "ROLLBACK");
        PQclear(r);
    }
    st->in_tx = 0;
    return rc;
}

/* The health of writes, for /healthz: the last write's failure of the server (not of the
 * request), until a write succeeds. */
static struct {
    pthread_mutex_t lock;
    int failed;
    char why[256];
} health = {PTHREAD_MUTEX_INITIALIZER, 0, ""};

static void note_health(int failed, const char *why)
{
    pthread_mutex_lock(&health.lock);
    health.failed = failed;
    if (failed)
        snprintf(health.why, sizeof(health.why), "%.200s", why);
    pthread_mutex_unlock(&health.lock);
}

/* fn inside BEGIN .. COMMIT (own_tx) or as it is, again while the server aborts it for a
 * serialization failure or a deadlock. */
static int write_tries(struct tg_store *st, tg_pg_write_fn fn, void *arg, int own_tx)
{
    int rc = TG_EBUSY;
    for (int i = 0; i < WRITE_TRIES && rc == TG_EBUSY; i++) {
        if (own_tx) {
            rc = tg_pg_tx_begin(st);
            if (rc == TG_OK)
                rc = tg_pg_tx_end(st, fn(st, arg));
        } else {
            tg_metrics_db_tx(1, 0);
            rc = fn(st, arg);
        }
        /* A lock wait that timed out (55P03) is not retried: it already waited. */
        if (rc == TG_EBUSY && strstr(st->err, "lock timeout") != NULL)
            break;
    }
    if (rc == TG_EDB)
        note_health(1, st->err);
    else if (rc == TG_OK)
        note_health(0, NULL);
    return rc;
}

int tg_pg_write(struct tg_store *st, tg_pg_write_fn fn, void *arg)
{
    return write_tries(st, fn, arg, 1);
}

int tg_pg_write_one(struct tg_store *st, tg_pg_write_fn fn, void *arg)
{
    return write_tries(st, fn, arg, 0);
}

int tg_pg_write_health(char *why, size_t whylen)
{
    pthread_mutex_lock(&health.lock);
    int failed = health.failed;
    if (failed && whylen > 0)
        snprintf(why, whylen, "%s", health.why);
    pthread_mutex_unlock(&health.lock);
    return failed ? TG_EDB : TG_OK;
}

/* A write the server would take: a transaction that updates (no row: WHERE false, but a
 * read-only transaction, as default_transaction_read_only or a standby makes them, refuses
 * the statement itself) and asks for a transaction id (a server out of disk refuses), then
 * rolls back. txid_current() alone is granted in a read-only transaction. */
static const struct tg_pg_stmt probe_stmt = {
    "probe_write",
    "WITH u AS (UPDATE schema_version SET version = version WHERE false RETURNING 1)"
    " SELECT txid_current(), (SELECT count(*) FROM u)"};

static int probe_w(struct tg_store *st, void *arg)
{
    (void)arg;
    int rc = tg_pg_run(st, &probe_stmt, 0, NULL, "write probe");
    return rc == TG_OK ? TG_ENOTFOUND : rc; /* anything but TG_OK: rolled back */
}

int tg_pg_write_probe(struct tg_store *st)
{
    int rc = tg_pg_tx_begin(st);
    if (rc == TG_OK)
        rc = tg_pg_tx_end(st, probe_w(st, NULL));
    rc = rc == TG_ENOTFOUND ? TG_OK : rc;
    if (rc == TG_EDB)
        note_health(1, st->err);
    else if (rc == TG_OK)
        note_health(0, NULL);
    return rc == TG_OK ? TG_OK : TG_EDB;
}

/* ---- opening and migrating ----------------------------------------------------------- */

/* The version of the schema is the one row of schema_version, which the migrations'
 * transactions keep (sql/postgres/ files do not touch it). */
static int read_version(struct tg_store *st, int *version)
{
    /* A statement naming the table would fail to prepare before it exists: ask first. */
    PGresult *r = PQexec(st->conn, "SELECT to_regclass('schema_version') IS NOT NULL");
    int rc = r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK
                 ? TG_OK
                 : result_err(st, r, "read the schema version");
    int exists = rc == TG_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    *version = 0;
    if (rc != TG_OK || !exists)
        return rc;
    r = PQexec(st->conn, "SELECT coalesce(max(version), 0) FROM schema_version");
    rc = r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK
             ? TG_OK
             : result_err(st, r, "read the schema version");
    if (rc == TG_OK)
        *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

int tg_pg_schema_version(void)
{
    int v = 0;
    for (const struct tg_pg_migration *m = tg_pg_migrations; m->sql != NULL; m++)
        if (m->version > v)
            v = m->version;
    return v;
}

static int check_version(struct tg_store *st)
{
    int have = 0;
    int rc = read_version(st, &have);
    if (rc != TG_OK)
        return rc;
    int need = tg_pg_schema_version();
    if (have < need) {
        tg_pg_set_err(st, "database schema is version %d, this taskgate needs %d: run "
                      "`taskgate init`", have, need);
        return TG_ERR;
    }
    if (have > need) {
        tg_pg_set_err(st, "database schema is version %d, newer than this taskgate knows "
                      "(%d): use a newer taskgate", have, need);
        return TG_ERR;
    }
    return TG_OK;
}

/* Says where without the password a URI may hold: the scheme, host and database only. */
static void where_of(const PGconn *conn, char *out, size_t outlen)
{
    const char *host = PQhost(conn), *db = PQdb(conn);
    snprintf(out, outlen, "PostgreSQL database %s on %s", db != NULL ? db : "?",
             host != NULL && *host != '\0' ? host : "the local socket");
}

int tg_pg_open(struct tg_store **out, const char *uri, int flags, int busy_ms, char *err,
               size_t errlen)
{
    *out = NULL;
    struct tg_store *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        if (errlen > 0)
            snprintf(err, errlen, "out of memory");
        return TG_ENOMEM;
    }
    st->flags = flags;
    st->busy_ms = busy_ms;
    st->generation = -1;
    /* The URI comes after the defaults: its own values, if any, win. */
    const char *const keys[] = {"connect_timeout",  "keepalives_idle",  "keepalives_interval",
                                "keepalives_count", "tcp_user_timeout", "dbname", NULL};
    const char *const values[] = {CONNECT_TIMEOUT_S, KEEPALIVES_IDLE_S,   KEEPALIVES_INTERVAL_S,
                                  KEEPALIVES_COUNT,  TCP_USER_TIMEOUT_MS, uri, NULL};
    st->conn = PQconnectdbParams(keys, values, 1);
    if (st->conn != NULL)
        PQsetNoticeProcessor(st->conn, on_notice, NULL);
    int rc;
    char where[300];
    where_of(st->conn, where, sizeof(where));
    if (st->conn == NULL || PQstatus(st->conn) != CONNECTION_OK) {
        const char *msg = st->conn != NULL ? PQerrorMessage(st->conn) : "out of memory";
        size_t len = strcspn(msg, "\n");
        tg_pg_set_err(st, "cannot connect to the %s: %.*s", where, (int)(len > 300 ? 300 : len),
                      msg);
        rc = TG_EDB;
    } else {
        rc = setup(st);
        if (rc == TG_OK && !(flags & TG_STORE_NO_VERSION_CHECK))
            rc = check_version(st);
    }
    if (rc != TG_OK) {
        if (errlen > 0)
            snprintf(err, errlen, "%s", st->err);
        tg_pg_close(st);
        return rc;
    }
    *out = st;
    return TG_OK;
}

void tg_pg_close(struct tg_store *st)
{
    if (st == NULL)
        return;
    if (st->conn != NULL)
        PQfinish(st->conn);
    tg_pg_cache_free(st);
    free(st);
}

const char *tg_pg_errmsg(const struct tg_store *st)
{
    return st != NULL ? st->err : "out of memory";
}

static const struct tg_pg_migration *next_migration(int v)
{
    const struct tg_pg_migration *best = NULL;
    for (const struct tg_pg_migration *m = tg_pg_migrations; m->sql != NULL; m++)
        if (m->version > v && (best == NULL || m->version < best->version))
            best = m;
    return best;
}

/* Each migration in a transaction of its own (PostgreSQL's DDL is transactional), under an
 * advisory lock that every process migrating the same server takes: two `taskgate init`s
 * at once apply each migration once. */
int tg_pg_migrate(struct tg_store *st, int *from, int *to)
{
    int before = -1, v = 0, rc;
    int latest = tg_pg_schema_version();
    char lock[96];
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%lld)", MIGRATION_LOCK);
    for (;;) {
        rc = tg_pg_tx_begin(st);
        if (rc != TG_OK)
            break;
        rc = tg_pg_sql(st, lock, "wait for other migrations");
        if (rc == TG_OK)
            rc = tg_pg_sql(st, "CREATE TABLE IF NOT EXISTS schema_version "
                               "(version integer NOT NULL)", "create schema_version");
        if (rc == TG_OK)
            rc = read_version(st, &v);
        if (before < 0 && rc == TG_OK)
            before = v;
        if (rc == TG_OK && v > latest) {
            tg_pg_set_err(st, "database schema is version %d, newer than this taskgate "
                          "knows (%d)", v, latest);
            rc = TG_ERR;
        }
        const struct tg_pg_migration *m = rc == TG_OK ? next_migration(v) : NULL;
        if (m == NULL) {
            rc = tg_pg_tx_end(st, rc);
            break;
        }
        char what[300];
        snprintf(what, sizeof(what), "migration %s", m->name);
        rc = tg_pg_sql(st, m->sql, what);
        if (rc == TG_OK) {
            char set[96];
            snprintf(set, sizeof(set), "DELETE FROM schema_version; INSERT INTO "
                     "schema_version VALUES (%d)", m->version);
            rc = tg_pg_sql(st, set, what);
        }
        rc = tg_pg_tx_end(st, rc);
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

/* The health check: the server answers a query on this handle's connection (made again if
 * it was lost); TG_EDOWN when there is no connection to be had. */
static const struct tg_pg_stmt ping_stmt = {"ping", "SELECT 1"};

int tg_pg_ping(struct tg_store *st)
{
    int rc = tg_pg_run(st, &ping_stmt, 0, NULL, "database check failed");
    if (rc == TG_OK)
        return TG_OK;
    return PQstatus(st->conn) != CONNECTION_OK ? TG_EDOWN : TG_EDB;
}

/* ---- the admin change log ------------------------------------------------------------ */

static const struct tg_pg_stmt admin_log_stmt = {
    "admin_log",
    "INSERT INTO admin_log (at, actor, actor_team, interface, action, object_type, "
    "object_id, team, before, after, remote_addr) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"};

int tg_pg_admin_log(struct tg_store *st, const struct tg_actor *who, const char *action,
                    const char *object_type, const char *object_id, const char *team,
                    const char *before, const char *after)
{
    if (who == NULL || who->id == NULL || who->interface == NULL)
        return tg_pg_invalid(st, "an administrative change needs an actor");
    char now[TG_TIME_LEN];
    tg_pg_now_text(now);
    const char *p[] = {now,         who->id, who->team, who->interface, action,
                       object_type, object_id, team,    before,         after,
                       who->remote_addr};
    return tg_pg_run(st, &admin_log_stmt, 11, p, "log the change");
}

/* ---- turns ---------------------------------------------------------------------------- */

/* The advisory lock's key for what: a 64-bit FNV-1a of the name, the same in every
 * process. */
static const char *turn_key(const char *what, char buf[TG_PG_I64_LEN])
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)what; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return tg_pg_i64(buf, (int64_t)h);
}

static const struct tg_pg_stmt turn_try = {"turn_try", "SELECT pg_try_advisory_lock($1::bigint)"};
static const struct tg_pg_stmt turn_free = {"turn_free", "SELECT pg_advisory_unlock($1::bigint)"};

static int turn_begin(struct tg_store *st, const char *what)
{
    char key[TG_PG_I64_LEN];
    const char *p[] = {turn_key(what, key)};
    PGresult *r;
    int rc = tg_pg_one(st, &turn_try, 1, p, &r, "take the turn");
    if (rc != TG_OK)
        return rc;
    int got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    st->session_locks += got;
    if (!got)
        tg_pg_set_err(st, "another daemon is doing it (%s)", what);
    return got ? TG_OK : TG_EBUSY;
}

static void turn_end(struct tg_store *st, const char *what)
{
    char key[TG_PG_I64_LEN];
    const char *p[] = {turn_key(what, key)};
    tg_pg_run(st, &turn_free, 1, p, "give the turn up");
    if (st->session_locks > 0)
        st->session_locks--;
}

/* ---- the backend --------------------------------------------------------------------- */

/* Nothing to do for a server: no file of the gateway's holds the records. */
static void set_max_pages(long max_pages)
{
    (void)max_pages;
}

/* Every worker writes on its own connection; the server orders the transactions. */
static int writer_start(const char *uri, int busy_ms, char *err, size_t errlen)
{
    (void)uri;
    (void)busy_ms;
    (void)err;
    (void)errlen;
    return TG_OK;
}

static void writer_stop(void)
{
}

static int secure_files(const char *uri, int create, int *tightened, char *err,
                        size_t errlen)
{
    (void)uri;
    (void)create;
    (void)err;
    (void)errlen;
    if (tightened != NULL)
        *tightened = 0;
    return TG_OK;
}

/* postgresql:// and postgres:// URIs (libpq's two schemes). */
static int accepts(const char *database)
{
    return database != NULL && (strncmp(database, "postgresql://", 13) == 0 ||
                                strncmp(database, "postgres://", 11) == 0);
}

const struct tg_store_backend tg_pg_backend = {
    .name = "postgresql",
    .accepts = accepts,
    .open = tg_pg_open,
    .set_max_pages = set_max_pages,
    .close = tg_pg_close,
    .writer_start = writer_start,
    .writer_stop = writer_stop,
    .errmsg = tg_pg_errmsg,
    .migrate = tg_pg_migrate,
    .schema_version = tg_pg_schema_version,
    .claim = tg_pg_claim,
    .claim_release = tg_pg_claim_release,
    .ping = tg_pg_ping,
    .write_health = tg_pg_write_health,
    .write_probe = tg_pg_write_probe,
    .secure_files = secure_files,
    .auth = tg_pg_auth,
    .team_key = tg_pg_team_key,
    .team_id = tg_pg_team_id,
    .team_add = tg_pg_team_add,
    .team_set_key = tg_pg_team_set_key,
    .team_list = tg_pg_team_list,
    .keys_summary = tg_pg_keys_summary,
    .presets_clear = tg_pg_presets_clear,
    .keys_reseal = tg_pg_keys_reseal,
    .token_add = tg_pg_token_add,
    .token_revoke = tg_pg_token_revoke,
    .token_list = tg_pg_token_list,
    .preset_set = tg_pg_preset_set,
    .preset_get = tg_pg_preset_get,
    .preset_list = tg_pg_preset_list,
    .submission_begin = tg_pg_submission_begin,
    .submission_reject = tg_pg_submission_reject,
    .submission_group = tg_pg_submission_group,
    .submission_finish = tg_pg_submission_finish,
    .recover_pending = tg_pg_recover_pending,
    .turn_begin = turn_begin,
    .turn_end = turn_end,
    .call_record = tg_pg_call_record,
    .call_finish = tg_pg_call_finish,
    .audit_columns = tg_pg_audit_columns,
    .audit_submissions = tg_pg_audit_submissions,
    .audit_open = tg_pg_audit_open,
    .audit_runs = tg_pg_audit_runs,
    .audit_admin = tg_pg_audit_admin,
    .audit_submission = tg_pg_audit_submission,
    .audit_run = tg_pg_audit_run,
    .audit_group = tg_pg_audit_group,
    .audit_summary = tg_pg_audit_summary,
    .audit_durations = tg_pg_audit_durations,
    .summary_compact = tg_pg_summary_compact,
    .audit_prune = tg_pg_audit_prune,
    .audit_read_log = tg_pg_audit_read_log,
    .group_owned = tg_pg_group_owned,
    .run_owned = tg_pg_run_owned,
    .idem_get = tg_pg_idem_get,
    .admit = tg_pg_admit,
    .idem_answer = tg_pg_idem_answer,
    .idem_prune = tg_pg_idem_prune,
    .limits_get = tg_pg_limits_get,
    .limits_set = tg_pg_limits_set,
    .recon_load = tg_pg_recon_load,
    .recon_cursor = tg_pg_recon_cursor,
    .recon_write = tg_pg_recon_write,
    .open_counts = tg_pg_open_counts,
    .unknown_ids = tg_pg_unknown_ids,
    .prior_runs = tg_pg_prior_runs,
    .track_take = tg_pg_track_take,
    .track_renew = tg_pg_track_renew,
    .track_record = tg_pg_track_record,
    .track_settle = tg_pg_track_settle,
    .track_release = tg_pg_track_release,
    .webhook_record = tg_pg_webhook_record,
    .webhook_prune = tg_pg_webhook_prune,
    .usage = &tg_pg_usage_ops,
};
