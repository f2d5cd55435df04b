/* Unit tests of the SQLite audit store: schema and migrations, identities, presets, the
 * audit records as seen through the views, speed of large calls, locking and read-only. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tg_admin.h"
#include "tg_core.h"
#include "tg_crypto.h"
#include "tg_metrics.h"
#include "tg_store.h"
#include "tg_test.h"

/* The actor every change in these tests is logged under. */
static const struct tg_actor cli = {"os:test", NULL, "cli", NULL};

/* ---- helpers ------------------------------------------------------------------------ */

static void db_path(char *out, size_t len, const char *name)
{
    tg_test_db_path(out, len, "test_store", name);
}

/* A new, migrated database at the path for name. */
static struct tg_store *fresh_store(char *path, size_t len, const char *name)
{
    char err[256];
    struct tg_store *st = NULL;
    db_path(path, len, name);
    tg_test_remove_db(path);
    int rc = tg_store_open(&st, path, TG_STORE_CREATE | TG_STORE_NO_VERSION_CHECK, 5000,
                           err, sizeof(err));
    CHECK(rc == TG_OK);
    if (rc != TG_OK) {
        fprintf(stderr, "open %s: %s\n", path, err);
        return NULL;
    }
    CHECK(tg_store_migrate(st, NULL, NULL) == TG_OK);
    return st;
}

/* The first column of the first row of a plain query, as a user would run it with
 * sqlite3 on the file; "" when NULL, "(no row)" when there is none. */
static const char *query(const char *path, const char *sql)
{
    static char out[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    snprintf(out, sizeof(out), "(error)");
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(s, 0);
            snprintf(out, sizeof(out), "%s", t != NULL ? (const char *)t : "");
        } else {
            snprintf(out, sizeof(out), "(no row)");
        }
    } else {
        fprintf(stderr, "query %s: %s\n", sql, db ? sqlite3_errmsg(db) : "no memory");
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

static int64_t add_team(struct tg_store *st, const char *name, const char *key)
{
    int64_t id = 0;
    CHECK(tg_store_team_add(st, &cli, name, key, &id) == TG_OK);
    return id;
}

static struct tg_submission submission(const char *id, int64_t team_id, const char *token_id,
                                       int num_inputs)
{
    struct tg_submission sub = {
        .id = id,
        .team_id = team_id,
        .token_id = token_id,
        .request_id = "req-1",
        .remote_addr = "192.0.2.7",
        .interface = "simplified",
        .num_inputs = num_inputs,
        .request = "{\"inputs\":[\"a\",\"b\",\"c\"]}",
        .received_ms = tg_now_ms(),
    };
    return sub;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- schema ------------------------------------------------------------------------- */

static void test_open_migrate_twice(void)
{
    char path[512], err[256], want[16];
    struct tg_store *st = NULL;
    int from = -1, to = -1, need = tg_store_schema_version();
    db_path(path, sizeof(path), "migrate");
    tg_test_remove_db(path);
    CHECK(need >= 1);

    CHECK(tg_store_open(&st, path, TG_STORE_CREATE | TG_STORE_NO_VERSION_CHECK, 5000, err,
                        sizeof(err)) == TG_OK);
    CHECK(tg_store_migrate(st, &from, &to) == TG_OK);
    CHECK(from == 0);
    CHECK(to == need);
    CHECK(tg_store_ping(st) == TG_OK);
    /* No allocation statistics: they would serialise every thread's SQLite allocations. */
    CHECK(sqlite3_memory_used() == 0);
    tg_store_close(st);

    char objects[32];
    snprintf(objects, sizeof(objects), "%s", query(path, "SELECT count(*) FROM sqlite_master"));
    snprintf(want, sizeof(want), "%d", need);
    CHECK_STR(query(path, "PRAGMA user_version"), want);
    CHECK_STR(query(path, "PRAGMA journal_mode"), "wal");

    /* A migrated database opens with the version check and a second migrate is a no-op. */
    st = NULL;
    CHECK(tg_store_open(&st, path, 0, 5000, err, sizeof(err)) == TG_OK);
    CHECK(st != NULL);
    from = to = -1;
    CHECK(tg_store_migrate(st, &from, &to) == TG_OK);
    CHECK(from == need);
    CHECK(to == need);
    tg_store_close(st);
    CHECK_STR(query(path, "PRAGMA user_version"), want);
    CHECK_STR(query(path, "SELECT count(*) FROM sqlite_master"), objects);
    tg_test_remove_db(path);
}

/* How many temporary tables the statement builds each time it runs, its triggers' included
 * (EXPLAIN lists their programs after its own), on a connection of its own. One that may
 * write: a read-only one leaves the CHECKs out of the program. */
static int temp_tables(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char explain[1024];
    int n = -1;
    snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, explain, -1, &s, NULL) == SQLITE_OK) {
        n = 0;
        while (sqlite3_step(s) == SQLITE_ROW)
            n += strcmp((const char *)sqlite3_column_text(s, 1), "OpenEphemeral") == 0;
    } else {
        fprintf(stderr, "explain %s: %s\n", sql, db ? sqlite3_errmsg(db) : "no memory");
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* What every submission writes builds no temporary table (version 15): SQLite builds one
 * for an IN list of three constants or more, an INSERT ... SELECT that reads the table it
 * writes, and an UPDATE ... FROM. The CHECKs rewritten for it still refuse what they did. */
static void test_request_path_without_temp_tables(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "temp_tables");
    if (st == NULL)
        return;
    int64_t team = add_team(st, "research", "pk-1");
    tg_store_close(st);
    CHECK(temp_tables(path, "INSERT INTO submissions (id, team_id, received_at, interface,"
                            " num_inputs, state, request)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)") == 0);
    CHECK(temp_tables(path, "UPDATE submissions SET state = ?2, http_status = ?3, error = ?4,"
                            " completed_at = ?5 WHERE id = ?1 AND state = 'pending'") == 0);
    CHECK(temp_tables(path, "INSERT INTO upstream_calls (submission_id, seq, operation, method,"
                            " path, started_at, outcome, http_status)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)") == 0);
    /* The same test as SQLite shows it before version 15 does build one: so the count can
     * tell. */
    CHECK(temp_tables(path, "SELECT 1 FROM submissions WHERE state IN (?1, ?2, ?3)") == 1);

    char sql[512];
    snprintf(sql, sizeof(sql), "INSERT INTO submissions (id, team_id, received_at, interface,"
             " num_inputs, state) VALUES ('sub_bad', %lld, '2026-01-01T00:00:00.000Z',"
             " 'simplified', 1, 'done')", (long long)team);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_CONSTRAINT);
    CHECK(sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_CHECK);
    CHECK(sqlite3_exec(db, "INSERT INTO upstream_calls (submission_id, seq, operation, method,"
                           " path, started_at, outcome) VALUES ('sub_x', 0, 'add_runs', 'POST',"
                           " '/', '2026-01-01T00:00:00.000Z', 'maybe')", NULL, NULL, NULL) ==
          SQLITE_CONSTRAINT);
    CHECK(sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_CHECK);
    sqlite3_close(db);
    CHECK_STR(query(path, "PRAGMA integrity_check"), "ok");
    tg_test_remove_db(path);
}

/* The face picks the backend from the config's database value: a file path is SQLite's, a
 * postgresql:// URI PostgreSQL's, and any other scheme is refused by name before anything
 * is opened or created. A server that cannot be reached is said without the URI's
 * password. */
static void test_open_unsupported(void)
{
    char err[256];
    struct tg_store *st = (struct tg_store *)1;
    static const char want[] =
        "database: mysql:// is not supported by this build (it stores its records in an "
        "SQLite file, given as a path, or in PostgreSQL, given as a postgresql:// URI)";
    CHECK(tg_store_supported("mysql://tg:secret@db.example/taskgate", err, sizeof(err)) ==
          TG_EINVAL);
    CHECK_STR(err, want);
    CHECK(strstr(err, "secret") == NULL);
    err[0] = '\0';
    CHECK(tg_store_open(&st, "mysql://tg:secret@db.example/taskgate",
                        TG_STORE_CREATE | TG_STORE_NO_VERSION_CHECK, 5000, err,
                        sizeof(err)) == TG_EINVAL);
    CHECK(st == NULL);
    CHECK_STR(err, want);
    CHECK(tg_store_writer_start("mysql://db.example/t", 5000, err, sizeof(err)) == TG_EINVAL);
    CHECK(access("mysql:", F_OK) != 0);
    CHECK(tg_store_supported("postgresql://tg:secret@db.example/taskgate", err, sizeof(err)) ==
          TG_OK);
    CHECK(tg_store_supported("postgres://db.example/taskgate", err, sizeof(err)) == TG_OK);
    st = (struct tg_store *)1;
    CHECK(tg_store_open(&st, "postgresql://tg:secret@127.0.0.1:9/taskgate?connect_timeout=2",
                        TG_STORE_NO_VERSION_CHECK, 5000, err, sizeof(err)) == TG_EDB);
    CHECK(st == NULL);
    CHECK(strstr(err, "cannot connect to the PostgreSQL database taskgate") != NULL);
    CHECK(strstr(err, "secret") == NULL);
    CHECK(access("postgresql:", F_OK) != 0);
    /* Paths, relative ones and SQLite's own file: URIs are SQLite's. */
    CHECK(tg_store_supported("/var/lib/taskgate/taskgate.db", err, sizeof(err)) == TG_OK);
    CHECK(tg_store_supported("data/x://y.db", err, sizeof(err)) == TG_OK);
    CHECK(tg_store_supported("file:///var/lib/taskgate/taskgate.db", err, sizeof(err)) ==
          TG_OK);
    CHECK(tg_store_supported(":memory:", err, sizeof(err)) == TG_OK);
}

static void test_open_unmigrated(void)
{
    char path[512], err[256], want[256];
    struct tg_store *st = NULL;
    db_path(path, sizeof(path), "unmigrated");
    tg_test_remove_db(path);
    CHECK(tg_store_open(&st, path, TG_STORE_CREATE | TG_STORE_NO_VERSION_CHECK, 5000, err,
                        sizeof(err)) == TG_OK);
    tg_store_close(st);

    st = (struct tg_store *)1;
    err[0] = '\0';
    CHECK(tg_store_open(&st, path, 0, 5000, err, sizeof(err)) != TG_OK);
    CHECK(st == NULL);
    snprintf(want, sizeof(want),
             "database schema is version 0, this taskgate needs %d: run `taskgate init`",
             tg_store_schema_version());
    CHECK_STR(err, want);
    tg_test_remove_db(path);

    /* Without TG_STORE_CREATE a missing file is an error and is not created. */
    st = (struct tg_store *)1;
    CHECK(tg_store_open(&st, path, 0, 5000, err, sizeof(err)) == TG_EDB);
    CHECK(st == NULL);
    CHECK(strstr(err, path) != NULL);
    CHECK(access(path, F_OK) != 0);
}

/* ---- identities --------------------------------------------------------------------- */

static void test_team_add_duplicate(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "team");
    if (st == NULL)
        return;
    int64_t id = add_team(st, "research", "pk-research-1"), got = 0;
    CHECK(id > 0);
    int64_t other = 0;
    CHECK(tg_store_team_add(st, &cli, "research", "pk-other", &other) == TG_EEXIST);
    CHECK(strstr(tg_store_errmsg(st), "already exists") != NULL);
    CHECK(tg_store_team_id(st, "research", &got) == TG_OK);
    CHECK(got == id);
    CHECK(tg_store_team_id(st, "nobody", &got) == TG_ENOTFOUND);
    CHECK(tg_store_team_add(st, &cli, "", "pk", &other) == TG_EINVAL);
    CHECK(tg_store_team_add(st, &cli, "x", "", &other) == TG_EINVAL);
    CHECK_STR(query(path, "SELECT count(*) FROM teams"), "1");
    tg_store_close(st);
    tg_test_remove_db(path);
}

static void test_team_key(void)
{
    char path[512], key[128];
    struct tg_store *st = fresh_store(path, sizeof(path), "key");
    if (st == NULL)
        return;
    int64_t id = add_team(st, "research", "pk-live-0123456789");
    CHECK(tg_store_team_key(st, id, key, sizeof(key)) == TG_OK);
    CHECK_STR(key, "pk-live-0123456789");

    CHECK(tg_store_team_set_key(st, &cli, "research", "pk-live-rotated") == TG_OK);
    CHECK(tg_store_team_key(st, id, key, sizeof(key)) == TG_OK);
    CHECK_STR(key, "pk-live-rotated");

    char small[8];
    CHECK(tg_store_team_key(st, id, small, sizeof(small)) == TG_ETOOBIG);
    CHECK(strstr(tg_store_errmsg(st), "pk-live") == NULL);
    CHECK(tg_store_team_key(st, id + 100, key, sizeof(key)) == TG_ENOTFOUND);
    CHECK(tg_store_team_set_key(st, &cli, "nobody", "pk-x") == TG_ENOTFOUND);

    /* The key change is in the admin log with both fingerprints, never the key. */
    CHECK_STR(query(path, "SELECT actor || ' ' || action || ' ' || object_id FROM audit_admin"
                          " WHERE action = 'team.set_key'"),
              "os:test team.set_key research");
    char want[128];
    char fp_old[32], fp_new[32];
    snprintf(fp_old, sizeof(fp_old), "%s",
             query(path, "SELECT json_extract(before, '$.key_fingerprint') FROM audit_admin"
                         " WHERE action = 'team.set_key'"));
    snprintf(fp_new, sizeof(fp_new), "%s",
             query(path, "SELECT json_extract(after, '$.key_fingerprint') FROM audit_admin"
                         " WHERE action = 'team.set_key'"));
    CHECK(strncmp(fp_old, "sha256:", 7) == 0 && strlen(fp_old) == 19);
    CHECK(strcmp(fp_old, fp_new) != 0);
    snprintf(want, sizeof(want), "%s", fp_new);
    CHECK_STR(query(path, "SELECT key_fingerprint FROM teams WHERE name = 'research'"), want);
    CHECK_STR(query(path, "SELECT count(*) FROM admin_log WHERE before LIKE '%pk-live%'"
                          " OR after LIKE '%pk-live%'"), "0");
    /* The key itself is stored only sealed. */
    CHECK_STR(query(path, "SELECT count(*) FROM teams WHERE upstream_key LIKE '%pk-live%'"
                          " OR upstream_key NOT LIKE 'tgk1.%' OR key_id IS NULL"), "0");
    /* A change that failed left no log row. */
    CHECK_STR(query(path, "SELECT count(*) FROM admin_log WHERE object_id = 'nobody'"), "0");
    tg_store_close(st);
    tg_test_remove_db(path);
}

struct team_seen {
    int n;
    char names[4][65];
    char fingerprints[4][32];
    int tokens[4];
    int presets[4];
};

static int collect_team(void *arg, const struct tg_team_row *row)
{
    struct team_seen *seen = arg;
    if (seen->n < 4) {
        snprintf(seen->names[seen->n], sizeof(seen->names[0]), "%s", row->name);
        snprintf(seen->fingerprints[seen->n], sizeof(seen->fingerprints[0]), "%s",
                 row->key_fingerprint);
        seen->tokens[seen->n] = row->tokens;
        seen->presets[seen->n] = row->presets;
    }
    seen->n++;
    return 0;
}

static int is_fingerprint(const char *fp)
{
    if (strlen(fp) != 19 || strncmp(fp, "sha256:", 7) != 0)
        return 0;
    for (int i = 7; i < 19; i++)
        if (strchr("0123456789abcdef", fp[i]) == NULL)
            return 0;
    return 1;
}

static void test_fingerprint(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "fp");
    if (st == NULL)
        return;
    add_team(st, "zeta", "pk-live-secretsecret");
    add_team(st, "alpha", "abc");

    struct team_seen seen = {0};
    CHECK(tg_store_team_list(st, collect_team, &seen) == TG_OK);
    CHECK(seen.n == 2);
    CHECK_STR(seen.names[0], "alpha");
    CHECK_STR(seen.names[1], "zeta");
    /* SHA-256("abc") begins ba7816bf8f01. */
    CHECK_STR(seen.fingerprints[0], "sha256:ba7816bf8f01");
    CHECK(is_fingerprint(seen.fingerprints[1]));
    CHECK(strstr(seen.fingerprints[1], "secret") == NULL);
    CHECK(strstr(seen.fingerprints[1], "pk-live") == NULL);
    CHECK_STR(query(path, "SELECT key_fingerprint FROM teams WHERE name = 'alpha'"),
              "sha256:ba7816bf8f01");

    /* A new key gets a new fingerprint. */
    char before[32];
    snprintf(before, sizeof(before), "%s", seen.fingerprints[1]);
    CHECK(tg_store_team_set_key(st, &cli, "zeta", "pk-live-another") == TG_OK);
    memset(&seen, 0, sizeof(seen));
    CHECK(tg_store_team_list(st, collect_team, &seen) == TG_OK);
    CHECK(is_fingerprint(seen.fingerprints[1]));
    CHECK(strcmp(seen.fingerprints[1], before) != 0);
    tg_store_close(st);
    tg_test_remove_db(path);
}

static int count_token(void *arg, const struct tg_token_row *row)
{
    int *n = arg;
    CHECK(row->id != NULL && row->team != NULL && row->role != NULL && row->created_at != NULL);
    (*n)++;
    return 0;
}

static void test_token_auth(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "token");
    if (st == NULL)
        return;
    int64_t team = add_team(st, "research", "pk-1");
    int64_t now = tg_now_ms();
    const char *h1 = "1111111111111111111111111111111111111111111111111111111111111111";
    const char *h2 = "2222222222222222222222222222222222222222222222222222222222222222";
    const char *h3 = "3333333333333333333333333333333333333333333333333333333333333333";
    const char *h4 = "4444444444444444444444444444444444444444444444444444444444444444";

    CHECK(tg_store_token_add(st, &cli, team, "tok_admin", h1, TG_ROLE_ADMIN, "ops laptop", 0) ==
          TG_OK);
    CHECK(tg_store_token_add(st, &cli, team, "tok_gone", h2, TG_ROLE_SUBMIT, NULL, 0) == TG_OK);
    CHECK(tg_store_token_add(st, &cli, team, "tok_old", h3, TG_ROLE_AUDIT, "old", now - 1000) ==
          TG_OK);
    CHECK(tg_store_token_add(st, &cli, team, "tok_new", h4, TG_ROLE_SUBMIT, "ci",
                             now + 3600 * 1000) == TG_OK);

    struct tg_auth a;
    memset(&a, 0, sizeof(a));
    CHECK(tg_store_auth(st, h1, now, &a) == TG_OK);
    CHECK(a.team_id == team);
    CHECK_STR(a.team, "research");
    CHECK_STR(a.token_id, "tok_admin");
    CHECK_STR(a.label, "ops laptop");
    CHECK(a.role == TG_ROLE_ADMIN);

    CHECK(tg_store_auth(st, "ffff", now, &a) == TG_ENOTFOUND);
    CHECK(tg_store_auth(st, h2, now, &a) == TG_OK);
    CHECK(tg_store_token_revoke(st, &cli, "tok_gone") == TG_OK);
    CHECK(tg_store_auth(st, h2, now, &a) == TG_ENOTFOUND);
    CHECK(tg_store_token_revoke(st, &cli, "tok_gone") == TG_ENOTFOUND);
    CHECK(tg_store_token_revoke(st, &cli, "tok_nope") == TG_ENOTFOUND);

    CHECK(tg_store_auth(st, h3, now, &a) == TG_ENOTFOUND);       /* expired */
    CHECK(tg_store_auth(st, h3, now - 2000, &a) == TG_OK);       /* before its expiry */
    CHECK(tg_store_auth(st, h4, now, &a) == TG_OK);
    CHECK(tg_store_auth(st, h4, now + 7200 * 1000, &a) == TG_ENOTFOUND);

    CHECK(tg_store_token_add(st, &cli, team + 99, "tok_orphan", "55", TG_ROLE_SUBMIT, NULL, 0) ==
          TG_ENOTFOUND);
    CHECK(tg_store_token_add(st, &cli, team, "tok_dup", h1, TG_ROLE_SUBMIT, NULL, 0) == TG_EEXIST);

    int n = 0;
    CHECK(tg_store_token_list(st, "research", count_token, &n) == TG_OK);
    CHECK(n == 4);
    n = 0;
    CHECK(tg_store_token_list(st, NULL, count_token, &n) == TG_OK);
    CHECK(n == 4);
    CHECK(tg_store_token_list(st, "nobody", count_token, &n) == TG_ENOTFOUND);

    struct team_seen seen = {0};
    CHECK(tg_store_team_list(st, collect_team, &seen) == TG_OK);
    CHECK(seen.tokens[0] == 2); /* tok_admin and tok_new: not revoked, not expired */
    CHECK(query(path, "SELECT revoked_at FROM tokens WHERE id = 'tok_gone'")[0] == '2');
    tg_store_close(st);
    tg_test_remove_db(path);
}

/* ---- presets ------------------------------------------------------------------------ */

struct preset_seen {
    int n;
    char names[4][32];
};

static int collect_preset(void *arg, const char *name, const char *updated_at)
{
    struct preset_seen *seen = arg;
    CHECK(updated_at != NULL && strlen(updated_at) == TG_TIME_LEN - 1);
    if (seen->n < 4)
        snprintf(seen->names[seen->n], sizeof(seen->names[0]), "%s", name);
    seen->n++;
    return 0;
}

static void test_presets(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "preset");
    struct tg_pool *pool = tg_pool_create();
    if (st == NULL || pool == NULL)
        goto out;
    int64_t team = add_team(st, "research", "pk-1");
    char *json = NULL;
    CHECK(tg_store_preset_get(st, pool, team, "default", &json) == TG_ENOTFOUND);
    CHECK(tg_store_preset_set(st, &cli, team, "default", "{\"processor\":\"base\"}") == TG_OK);
    CHECK(tg_store_preset_get(st, pool, team, "default", &json) == TG_OK);
    CHECK_STR(json, "{\"processor\":\"base\"}");
    CHECK(tg_store_preset_set(st, &cli, team, "default", "{\"processor\":\"pro\"}") == TG_OK);
    CHECK(tg_store_preset_get(st, pool, team, "default", &json) == TG_OK);
    CHECK_STR(json, "{\"processor\":\"pro\"}");
    CHECK(tg_store_preset_set(st, &cli, team, "cheap", "{\"processor\":\"lite\"}") == TG_OK);
    /* MCP credentials are stored for forwarding, but the admin log shows fingerprints. */
    CHECK(tg_store_preset_set(st, &cli, team, "mcp",
                              "{\"mcp_servers\":[{\"name\":\"a\",\"url\":\"https://m\","
                              "\"headers\":{\"Authorization\":\"Bearer SECRET-MCP\"}}]}") == TG_OK);
    CHECK_STR(query(path, "SELECT count(*) FROM admin_log WHERE after LIKE '%SECRET-MCP%'"), "0");
    CHECK_STR(query(path, "SELECT substr(json_extract(after, '$.mcp_servers[0].headers.Authorization'),"
                          " 1, 7) FROM admin_log WHERE object_id LIKE '%/mcp'"), "sha256:");
    CHECK(tg_store_preset_set(st, &cli, team + 5, "default", "{}") == TG_ENOTFOUND);

    struct preset_seen seen = {0};
    CHECK(tg_store_preset_list(st, team, collect_preset, &seen) == TG_OK);
    CHECK(seen.n == 3);
    CHECK_STR(seen.names[0], "cheap");
    CHECK_STR(seen.names[1], "default");
    CHECK_STR(seen.names[2], "mcp");
    CHECK_STR(query(path, "SELECT count(*) FROM presets"), "3");

    struct team_seen teams = {0};
    CHECK(tg_store_team_list(st, collect_team, &teams) == TG_OK);
    CHECK(teams.presets[0] == 3);
out:
    tg_pool_destroy(pool);
    tg_store_close(st);
    tg_test_remove_db(path);
}

/* As a user would change the file with the sqlite3 shell, behind the daemon's back. */
static void edit(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    CHECK(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK);
    if (msg != NULL)
        fprintf(stderr, "edit %s: %s\n", sql, msg);
    sqlite3_free(msg);
    sqlite3_close(db);
}

/* A worker's handle keeps keys, presets and ownership between requests, and answers from
 * them only while nothing changed: each token check sees every change made before it, by
 * another handle, another process or a hand edit of the file. */
static void test_kept_reads(void)
{
    char path[512], key[128], err[256];
    struct tg_store *st = fresh_store(path, sizeof(path), "kept"), *other = NULL;
    struct tg_pool *pool = tg_pool_create();
    if (st == NULL || pool == NULL)
        goto out;
    CHECK(tg_store_open(&other, path, 0, 5000, err, sizeof(err)) == TG_OK);
    if (other == NULL)
        goto out;
    int64_t team = add_team(st, "research", "pk-1");
    CHECK(tg_store_token_add(st, &cli, team, "tok_k", "abck", TG_ROLE_SUBMIT, "k", 0) == TG_OK);
    CHECK(tg_store_preset_set(st, &cli, team, "default", "{\"processor\":\"base\"}") == TG_OK);
    struct tg_auth a;
    char *json = NULL;
    CHECK(tg_store_auth(st, "abck", tg_now_ms(), &a) == TG_OK);
    CHECK(tg_store_team_key(st, team, key, sizeof(key)) == TG_OK);
    CHECK_STR(key, "pk-1");
    CHECK(tg_store_preset_get(st, pool, team, "default", &json) == TG_OK);
    CHECK_STR(json, "{\"processor\":\"base\"}");
    CHECK(tg_store_preset_get(st, pool, team, "cheap", &json) == TG_ENOTFOUND);

    /* Changed by another handle (the CLI): the next token check sees it. */
    CHECK(tg_store_team_set_key(other, &cli, "research", "pk-2") == TG_OK);
    CHECK(tg_store_preset_set(other, &cli, team, "cheap", "{\"processor\":\"lite\"}") == TG_OK);
    CHECK(tg_store_auth(st, "abck", tg_now_ms(), &a) == TG_OK);
    CHECK(tg_store_team_key(st, team, key, sizeof(key)) == TG_OK);
    CHECK_STR(key, "pk-2");
    CHECK(tg_store_preset_get(st, pool, team, "cheap", &json) == TG_OK);
    CHECK_STR(json, "{\"processor\":\"lite\"}");

    /* Edited by hand: the same. */
    edit(path, "UPDATE presets SET body = '{\"processor\":\"pro\"}' WHERE name = 'default'");
    CHECK(tg_store_auth(st, "abck", tg_now_ms(), &a) == TG_OK);
    CHECK(tg_store_preset_get(st, pool, team, "default", &json) == TG_OK);
    CHECK_STR(json, "{\"processor\":\"pro\"}");
    edit(path, "DELETE FROM presets WHERE name = 'cheap'");
    CHECK(tg_store_auth(st, "abck", tg_now_ms(), &a) == TG_OK);
    CHECK(tg_store_preset_get(st, pool, team, "cheap", &json) == TG_ENOTFOUND);

    /* A group is owned while its creating call is recorded; deleting the call (a prune)
     * ends it at the next token check. */
    struct tg_submission sub = submission("sub_k", team, "tok_k", 1);
    CHECK(tg_store_submission_begin(st, &sub) == TG_OK);
    struct tg_call group = {
        .submission_id = "sub_k", .seq = 0, .operation = "create_group", .method = "POST",
        .path = "/v1/tasks/groups", .first_input = -1, .started_ms = tg_now_ms(),
        .outcome = TG_OUTCOME_OK, .http_status = 200,
    };
    CHECK(tg_store_call_record(st, &group) == TG_OK);
    CHECK(tg_store_submission_group(st, "sub_k", "tgrp_k") == TG_OK);
    CHECK(tg_store_auth(st, "abck", tg_now_ms(), &a) == TG_OK);
    CHECK(tg_store_group_owned(st, team, "tgrp_k") == TG_OK);
    CHECK(tg_store_group_owned(st, team, "tgrp_k") == TG_OK);
    CHECK(tg_store_group_owned(st, team + 1, "tgrp_k") == TG_ENOTFOUND);
    edit(path, "BEGIN; INSERT INTO audit_prune_guard (active) VALUES (1);"
               " DELETE FROM upstream_calls WHERE submission_id = 'sub_k';"
               " DELETE FROM audit_prune_guard; COMMIT");
    CHECK(tg_store_auth(st, "abck", tg_now_ms(), &a) == TG_OK);
    CHECK(tg_store_group_owned(st, team, "tgrp_k") == TG_ENOTFOUND);

    /* A key kept in clear stops being used with the key file, as every opening does. */
    CHECK(tg_store_team_key(st, team, key, sizeof(key)) == TG_OK);
    char key_file[512];
    db_path(key_file, sizeof(key_file), "ring.key");
    CHECK(chmod(key_file, 0644) == 0);
    CHECK(tg_store_team_key(st, team, key, sizeof(key)) == TG_ERR);
    CHECK(strstr(tg_store_errmsg(st), "pk-") == NULL);
    CHECK(chmod(key_file, 0600) == 0);
    CHECK(tg_store_team_key(st, team, key, sizeof(key)) == TG_OK);
    CHECK_STR(key, "pk-2");
out:
    tg_pool_destroy(pool);
    tg_store_close(other);
    tg_store_close(st);
    tg_test_remove_db(path);
}

/* A token answered from what the handle kept holds only until the handle's next write,
 * which records nothing once anything read with the token changed; an answer that wrote
 * nothing is settled by a read. Changes by another handle and by hand alike. */
static void test_kept_tokens(void)
{
    char path[512], err[256];
    struct tg_store *st = fresh_store(path, sizeof(path), "tokens"), *other = NULL;
    if (st == NULL)
        return;
    CHECK(tg_store_open(&other, path, 0, 5000, err, sizeof(err)) == TG_OK);
    if (other == NULL)
        goto out;
    int64_t team = add_team(st, "research", "pk-1");
    int64_t now = tg_now_ms();
    CHECK(tg_store_token_add(st, &cli, team, "tok_a", "hash-a", TG_ROLE_SUBMIT, "a", 0) ==
          TG_OK);
    CHECK(tg_store_token_add(st, &cli, team, "tok_b", "hash-b", TG_ROLE_AUDIT, "b", 0) ==
          TG_OK);
    CHECK(tg_store_token_add(st, &cli, team, "tok_c", "hash-c", TG_ROLE_SUBMIT, "c",
                             now + 60000) == TG_OK);
    struct tg_auth a;

    /* Read, then answered from memory: the same answer, and a write confirms it. */
    CHECK(tg_store_auth_kept(st, "hash-a", now, &a) == TG_OK);
    CHECK(tg_store_auth_confirm(st, now) == TG_OK);
    CHECK(tg_store_auth_kept(st, "hash-b", now, &a) == TG_OK);
    CHECK(tg_store_auth_kept(st, "hash-a", now, &a) == TG_OK);
    CHECK_STR(a.token_id, "tok_a");
    CHECK(a.role == TG_ROLE_SUBMIT && a.team_id == team);
    CHECK(tg_store_auth_kept(st, "hash-b", now, &a) == TG_OK);
    CHECK_STR(a.token_id, "tok_b");
    CHECK(a.role == TG_ROLE_AUDIT);
    CHECK(tg_store_auth_kept(st, "hash-a", now, &a) == TG_OK);
    struct tg_submission s1 = submission("sub_t1", team, "tok_a", 1);
    CHECK(tg_store_submission_begin(st, &s1) == TG_OK);
    CHECK(tg_store_auth_confirm(st, now) == TG_OK);

    /* Revoked by another handle: the kept answer still comes, without a read, but the
     * write it leads to records nothing, and the check does not stand. */
    CHECK(tg_store_auth_kept(st, "hash-a", now, &a) == TG_OK);
    CHECK(tg_store_token_revoke(other, &cli, "tok_a") == TG_OK);
    CHECK(tg_store_auth_kept(st, "hash-a", now, &a) == TG_OK);
    struct tg_submission s2 = submission("sub_t2", team, "tok_a", 1);
    CHECK(tg_store_submission_begin(st, &s2) == TG_ESTALE);
    CHECK(tg_store_submission_reject(st, &s2, 403, "no") == TG_ESTALE);
    CHECK_STR(query(path, "SELECT count(*) FROM submissions WHERE id = 'sub_t2'"), "0");
    CHECK(tg_store_auth_confirm(st, now) == TG_ESTALE);
    CHECK(tg_store_auth_kept(st, "hash-a", now, &a) == TG_ENOTFOUND);
    CHECK(tg_store_auth_kept(st, "hash-a", now, &a) == TG_ENOTFOUND);

    /* A preset set elsewhere: the same, for another token of the team. */
    CHECK(tg_store_auth_kept(st, "hash-c", now, &a) == TG_OK);
    CHECK(tg_store_preset_set(other, &cli, team, "default", "{\"processor\":\"lite\"}") ==
          TG_OK);
    CHECK(tg_store_auth_kept(st, "hash-c", now, &a) == TG_OK);
    struct tg_submission s3 = submission("sub_t3", team, "tok_c", 1);
    CHECK(tg_store_submission_begin(st, &s3) == TG_ESTALE);
    CHECK(tg_store_auth_kept(st, "hash-c", now, &a) == TG_OK); /* still unconfirmed */
    CHECK(tg_store_auth_confirm(st, now) == TG_ESTALE);
    CHECK(tg_store_auth(st, "hash-c", now, &a) == TG_OK);
    CHECK(tg_store_submission_begin(st, &s3) == TG_OK);

    /* An answer that wrote nothing is settled by a read: it stands while nothing changed. */
    CHECK(tg_store_auth_kept(st, "hash-c", now, &a) == TG_OK);
    CHECK(tg_store_auth_confirm(st, now) == TG_OK);
    CHECK(tg_store_auth_confirm(st, now) == TG_OK);

    /* Edited by hand (expired): the trigger moves the generation as a command's change. */
    CHECK(tg_store_auth_kept(st, "hash-c", now, &a) == TG_OK);
    edit(path, "UPDATE tokens SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = 'tok_c'");
    CHECK(tg_store_auth_kept(st, "hash-c", now, &a) == TG_OK);
    CHECK(tg_store_auth_confirm(st, now) == TG_ESTALE);
    CHECK(tg_store_auth_kept(st, "hash-c", now, &a) == TG_ENOTFOUND);

    /* A kept token past its expiry is read again, and refused. */
    CHECK(tg_store_token_add(st, &cli, team, "tok_d", "hash-d", TG_ROLE_SUBMIT, "d",
                             now + 1000) == TG_OK);
    CHECK(tg_store_auth_kept(st, "hash-d", now, &a) == TG_OK);
    CHECK(tg_store_auth_kept(st, "hash-d", now + 999, &a) == TG_OK);
    CHECK(tg_store_auth_confirm(st, now + 999) == TG_OK);
    CHECK(tg_store_auth_kept(st, "hash-d", now + 1000, &a) == TG_ENOTFOUND);
out:
    tg_store_close(other);
    tg_store_close(st);
    tg_test_remove_db(path);
}

/* ---- the audit records ---------------------------------------------------------------- */

static void test_submission_flow(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "flow");
    if (st == NULL)
        return;
    int64_t team = add_team(st, "research", "pk-1");
    CHECK(tg_store_token_add(st, &cli, team, "tok_ci", "abcd", TG_ROLE_SUBMIT, "ci", 0) == TG_OK);

    struct tg_submission sub = submission("sub_1", team, "tok_ci", 3);
    CHECK(tg_store_submission_begin(st, &sub) == TG_OK);
    CHECK_STR(query(path, "SELECT state || '|' || team || '|' || token_label || '|' ||"
                          " interface || '|' || num_inputs || '|' || coalesce(completed_at, '-')"
                          " FROM audit_submissions WHERE submission_id = 'sub_1'"),
              "pending|research|ci|simplified|3|-");
    CHECK(tg_store_submission_begin(st, &sub) == TG_EEXIST);

    struct tg_call group = {
        .submission_id = "sub_1", .seq = 0, .operation = "create_group", .method = "POST",
        .path = "/v1/tasks/groups", .first_input = -1, .num_inputs = 0,
        .started_ms = tg_now_ms(), .duration_ms = 12, .outcome = TG_OUTCOME_OK,
        .http_status = 200,
    };
    CHECK(tg_store_call_record(st, &group) == TG_OK);
    CHECK(tg_store_submission_group(st, "sub_1", "tgrp_abc") == TG_OK);

    const char *ids[] = {"trun_a", "trun_b", "trun_c"};
    const char *procs[] = {"base", "base", NULL};
    struct tg_call runs = {
        .submission_id = "sub_1", .seq = 1, .operation = "add_runs", .method = "POST",
        .path = "/v1/tasks/groups/tgrp_abc/runs", .first_input = 0, .num_inputs = 3,
        .started_ms = tg_now_ms(), .duration_ms = 40, .outcome = TG_OUTCOME_OK,
        .http_status = 200, .run_cursor = "rc-1", .event_cursor = "ec-1",
        .num_runs = 3, .run_ids = ids, .processors = procs,
    };
    CHECK(tg_store_call_record(st, &runs) == TG_OK);
    CHECK(tg_store_call_record(st, &runs) == TG_EEXIST); /* same seq twice */

    CHECK_STR(query(path, "SELECT count(*) FROM audit_runs WHERE submission_id = 'sub_1'"),
              "3");
    CHECK_STR(query(path, "SELECT group_concat(x, ',') FROM (SELECT run_id || ':' ||"
                          " input_index || ':' || run_cursor || ':' || event_cursor || ':' ||"
                          " taskgroup_id || ':' || team || ':' || coalesce(processor, '-') AS x"
                          " FROM audit_runs WHERE submission_id = 'sub_1'"
                          " ORDER BY input_index)"),
              "trun_a:0:rc-1:ec-1:tgrp_abc:research:base,"
              "trun_b:1:rc-1:ec-1:tgrp_abc:research:base,"
              "trun_c:2:rc-1:ec-1:tgrp_abc:research:-");
    CHECK_STR(query(path, "SELECT upstream_status FROM submissions WHERE id = 'sub_1'"), "200");

    CHECK(tg_store_submission_finish(st, "sub_1", TG_STATE_ACCEPTED, 200, 200, NULL) == TG_OK);
    CHECK_STR(query(path, "SELECT state || '|' || http_status || '|' || upstream_status ||"
                          " '|' || taskgroup_id || '|' || (completed_at >= received_at)"
                          " FROM audit_submissions WHERE submission_id = 'sub_1'"),
              "accepted|200|200|tgrp_abc|1");

    /* An accepted record is final. */
    CHECK(tg_store_submission_finish(st, "sub_1", TG_STATE_FAILED, 502, 500, "late") ==
          TG_EINVAL);
    CHECK(strstr(tg_store_errmsg(st), "accepted") != NULL);
    CHECK(tg_store_submission_group(st, "sub_1", "tgrp_other") == TG_EINVAL);
    runs.seq = 2;
    CHECK(tg_store_call_record(st, &runs) == TG_EINVAL);
    CHECK_STR(query(path, "SELECT state || '|' || taskgroup_id || '|' || coalesce(error, '-')"
                          " FROM audit_submissions WHERE submission_id = 'sub_1'"),
              "accepted|tgrp_abc|-");
    CHECK_STR(query(path, "SELECT count(*) FROM upstream_calls"), "2");

    CHECK(tg_store_submission_finish(st, "sub_nope", TG_STATE_FAILED, 502, 0, NULL) ==
          TG_ENOTFOUND);
    CHECK(tg_store_submission_finish(st, "sub_1", TG_STATE_PENDING, 200, 0, NULL) == TG_EINVAL);
    struct tg_submission orphan = submission("sub_orphan", team + 9, NULL, 1);
    CHECK(tg_store_submission_begin(st, &orphan) == TG_ENOTFOUND);
    tg_store_close(st);
    tg_test_remove_db(path);
}

/* Call c again, for submission sub_id: call seq from input first with the n runs given. */
static struct tg_call call_with_runs(struct tg_call c, const char *sub_id, int seq, int first,
                                     size_t n, const char **ids, const char **procs)
{
    c.submission_id = sub_id;
    c.seq = seq;
    c.first_input = first;
    c.num_inputs = (int)n;
    c.num_runs = n;
    c.run_ids = ids;
    c.processors = procs;
    return c;
}

/* The last call and the final state written together (tg_store_call_finish): the record
 * keeps the last call's status even when it got no answer, learns the group the call
 * went to, and a refused final state keeps nothing of the call. */
static void test_call_finish(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "finish");
    if (st == NULL)
        return;
    int64_t team = add_team(st, "research", "pk-1");

    /* Two chunks: the first answered 200, the second never answered. */
    struct tg_submission sub = submission("sub_c", team, NULL, 2);
    CHECK(tg_store_submission_begin(st, &sub) == TG_OK);
    const char *id0[] = {"trun_c0"};
    struct tg_call first = {
        .submission_id = "sub_c", .seq = 0, .operation = "add_runs", .method = "POST",
        .path = "/v1/tasks/groups/tgrp_c/runs", .taskgroup_id = "tgrp_c", .first_input = 0,
        .num_inputs = 1, .started_ms = tg_now_ms(), .duration_ms = 5,
        .outcome = TG_OUTCOME_OK, .http_status = 200, .num_runs = 1, .run_ids = id0,
    };
    CHECK(tg_store_call_record(st, &first) == TG_OK);
    CHECK_STR(query(path, "SELECT upstream_status || '|' || taskgroup_id FROM submissions"
                          " WHERE id = 'sub_c'"), "200|tgrp_c");
    struct tg_call lost = first;
    lost.seq = 1;
    lost.first_input = 1;
    lost.outcome = TG_OUTCOME_UNKNOWN;
    lost.http_status = 0;
    lost.num_runs = 0;
    lost.run_ids = NULL;
    lost.error = "timeout";
    CHECK(tg_store_call_finish(st, &lost, TG_STATE_UNKNOWN, 504, "timeout") == TG_OK);
    CHECK_STR(query(path, "SELECT state || '|' || coalesce(upstream_status, '-') || '|' ||"
                          " taskgroup_id FROM submissions WHERE id = 'sub_c'"),
              "unknown|-|tgrp_c");
    CHECK_STR(query(path, "SELECT count(*) FROM upstream_calls WHERE submission_id = 'sub_c'"),
              "2");

    /* A submission with no group yet, finished by a call that names one: the record and
     * the tracked groups both learn it. */
    struct tg_submission fresh = submission("sub_d", team, NULL, 1);
    CHECK(tg_store_submission_begin(st, &fresh) == TG_OK);
    const char *id1[] = {"trun_d0"};
    struct tg_call only = first;
    only.submission_id = "sub_d";
    only.path = "/v1/tasks/groups/tgrp_d/runs";
    only.taskgroup_id = "tgrp_d";
    only.run_ids = id1;
    CHECK(tg_store_call_finish(st, &only, TG_STATE_ACCEPTED, 200, NULL) == TG_OK);
    CHECK_STR(query(path, "SELECT state || '|' || upstream_status || '|' || taskgroup_id"
                          " FROM submissions WHERE id = 'sub_d'"), "accepted|200|tgrp_d");
    CHECK_STR(query(path, "SELECT state || '|' || adds FROM track_groups"
                          " WHERE taskgroup_id = 'tgrp_d'"), "follow|1");

    /* Settled already: refused, and neither the call, its run nor a new group is kept. */
    const char *id2[] = {"trun_d1"};
    struct tg_call late = only;
    late.seq = 1;
    late.taskgroup_id = "tgrp_late";
    late.run_ids = id2;
    CHECK(tg_store_call_finish(st, &late, TG_STATE_ACCEPTED, 200, NULL) == TG_EINVAL);
    CHECK(strstr(tg_store_errmsg(st), "accepted") != NULL);
    CHECK_STR(query(path, "SELECT count(*) FROM upstream_calls WHERE submission_id = 'sub_d'"),
              "1");
    CHECK_STR(query(path, "SELECT count(*) FROM runs WHERE run_id = 'trun_d1'"), "0");
    CHECK_STR(query(path, "SELECT taskgroup_id FROM submissions WHERE id = 'sub_d'"), "tgrp_d");
    CHECK_STR(query(path, "SELECT count(*) FROM track_groups WHERE taskgroup_id = 'tgrp_late'"),
              "0");

    /* The final write reads its submission once and hands that down: the summary it
     * keeps must still be what the records say. One call whose runs carry two processors;
     * a chunked submission whose last call adds a processor to the runs it had; one
     * settled with no call at all. */
    struct tg_submission two = submission("sub_e", team, NULL, 3);
    CHECK(tg_store_submission_begin(st, &two) == TG_OK);
    const char *ide[] = {"trun_e0", "trun_e1", "trun_e2"};
    const char *pe[] = {"lite", "ultra", "lite"};
    struct tg_call mixed = call_with_runs(only, "sub_e", 0, 0, 3, ide, pe);
    CHECK(tg_store_call_finish(st, &mixed, TG_STATE_ACCEPTED, 200, NULL) == TG_OK);

    struct tg_submission chunked = submission("sub_f", team, NULL, 2);
    CHECK(tg_store_submission_begin(st, &chunked) == TG_OK);
    const char *idf0[] = {"trun_f0"}, *idf1[] = {"trun_f1"};
    const char *pf0[] = {"core"}, *pf1[] = {"base"};
    struct tg_call f0 = call_with_runs(only, "sub_f", 0, 0, 1, idf0, pf0);
    CHECK(tg_store_call_record(st, &f0) == TG_OK);
    struct tg_call f1 = call_with_runs(only, "sub_f", 1, 1, 1, idf1, pf1);
    CHECK(tg_store_call_finish(st, &f1, TG_STATE_ACCEPTED, 200, NULL) == TG_OK);

    struct tg_submission none = submission("sub_g", team, NULL, 1);
    CHECK(tg_store_submission_begin(st, &none) == TG_OK);
    CHECK(tg_store_submission_finish(st, "sub_g", TG_STATE_REJECTED, 429, 0, "limit") ==
          TG_OK);

    char truth[1024];
    snprintf(truth, sizeof(truth), "%s",
             query(path, "SELECT group_concat(x, ';') FROM (SELECT s.state || '|'"
                         " || coalesce(r.processor, '') || '|' || count(DISTINCT s.id) || '|'"
                         " || count(r.run_id) AS x FROM submissions s LEFT JOIN runs r"
                         " ON r.submission_id = s.id GROUP BY s.state,"
                         " coalesce(r.processor, '') ORDER BY x)"));
    CHECK_STR(truth, "accepted|base|1|1;accepted|core|1|1;accepted|lite|1|2;accepted|ultra|1|1;"
                     "accepted||1|1;rejected||1|0;unknown||1|1");
    CHECK_STR(query(path, "SELECT group_concat(x, ';') FROM (SELECT state || '|' || processor"
                          " || '|' || sum(submissions) || '|' || sum(runs) AS x"
                          " FROM summary_counts GROUP BY state, processor"
                          " HAVING sum(submissions) <> 0 OR sum(runs) <> 0 ORDER BY x)"),
              truth);
    tg_store_close(st);
    tg_test_remove_db(path);
}

/* ---- group commit ---------------------------------------------------------------------- */

struct writer_job {
    const char *path;
    int64_t team;
    int thread;
    int ok, dup_refused, msg_ok, calls_ok, clash_refused;
};

#define GROUP_THREADS 8
#define GROUP_SUBS 40

/* An add-runs call of submission id with the two run ids given. */
static struct tg_call runs_call(const char *id, const char **ids)
{
    return (struct tg_call){
        .submission_id = id, .seq = 0, .operation = "add_runs", .method = "POST",
        .path = "/v1/tasks/groups/tgrp_g/runs", .first_input = 0, .num_inputs = 2,
        .started_ms = tg_now_ms(), .duration_ms = 5, .outcome = TG_OUTCOME_OK,
        .http_status = 200, .num_runs = 2, .run_ids = ids,
    };
}

/* Each submission begun, given a call with its two runs, and settled through the shared
 * writer. Every fifth is begun a second time, which must fail alone, with its own message,
 * inside whatever group it landed in; every third first tries a call that names one run id
 * twice, which fails after its call and first run were written, and must take back its
 * own rows only: the group's other writes, run again, are all kept. */
static void *group_writer(void *arg)
{
    struct writer_job *job = arg;
    char err[256];
    struct tg_store *st = NULL;
    if (tg_store_open(&st, job->path, 0, 5000, err, sizeof(err)) != TG_OK)
        return NULL;
    for (int i = 0; i < GROUP_SUBS; i++) {
        char id[64];
        snprintf(id, sizeof(id), "sub_g%d_%d", job->thread, i);
        struct tg_submission sub = submission(id, job->team, "tok_g", 1);
        if (tg_store_submission_begin(st, &sub) != TG_OK)
            continue;
        if (i % 5 == 0 && tg_store_submission_begin(st, &sub) == TG_EEXIST) {
            job->dup_refused++;
            if (strstr(tg_store_errmsg(st), id) != NULL)
                job->msg_ok++;
        }
        char r1[80], r2[80];
        snprintf(r1, sizeof(r1), "trun_%s_1", id);
        snprintf(r2, sizeof(r2), "trun_%s_2", id);
        if (i % 3 == 0) {
            const char *twice[] = {r1, r1};
            struct tg_call clash = runs_call(id, twice);
            if (tg_store_call_record(st, &clash) == TG_EEXIST &&
                strstr(tg_store_errmsg(st), r1) != NULL)
                job->clash_refused++;
        }
        const char *pair[] = {r1, r2};
        struct tg_call call = runs_call(id, pair);
        if (tg_store_call_record(st, &call) == TG_OK)
            job->calls_ok++;
        if (tg_store_submission_finish(st, id, TG_STATE_ACCEPTED, 200, 200, NULL) == TG_OK)
            job->ok++;
    }
    tg_store_close(st);
    return NULL;
}

static void test_group_commit(void)
{
    char path[512], err[256];
    struct tg_store *st = fresh_store(path, sizeof(path), "group");
    if (st == NULL)
        return;
    int64_t team = add_team(st, "research", "pk-1");
    CHECK(tg_store_token_add(st, &cli, team, "tok_g", "abcg", TG_ROLE_SUBMIT, "g", 0) == TG_OK);
    tg_store_close(st);

    CHECK(tg_store_writer_start(path, 5000, err, sizeof(err)) == TG_OK);
    pthread_t threads[GROUP_THREADS];
    struct writer_job jobs[GROUP_THREADS];
    for (int i = 0; i < GROUP_THREADS; i++) {
        jobs[i] = (struct writer_job){.path = path, .team = team, .thread = i};
        CHECK(pthread_create(&threads[i], NULL, group_writer, &jobs[i]) == 0);
    }
    int ok = 0, dup = 0, msg = 0, calls = 0, clashes = 0;
    for (int i = 0; i < GROUP_THREADS; i++) {
        pthread_join(threads[i], NULL);
        ok += jobs[i].ok;
        dup += jobs[i].dup_refused;
        msg += jobs[i].msg_ok;
        calls += jobs[i].calls_ok;
        clashes += jobs[i].clash_refused;
    }
    tg_store_writer_stop();
    CHECK(ok == GROUP_THREADS * GROUP_SUBS);
    CHECK(dup == GROUP_THREADS * (GROUP_SUBS / 5));
    CHECK(msg == dup);
    CHECK(calls == GROUP_THREADS * GROUP_SUBS);
    CHECK(clashes == GROUP_THREADS * ((GROUP_SUBS + 2) / 3));
    char expect[32];
    snprintf(expect, sizeof(expect), "%d", GROUP_THREADS * GROUP_SUBS);
    CHECK_STR(query(path, "SELECT count(*) FROM submissions WHERE state = 'accepted'"), expect);
    CHECK_STR(query(path, "SELECT count(*) FROM submissions WHERE state <> 'accepted'"), "0");
    /* One call and two runs of each submission: nothing of the refused calls is left. */
    CHECK_STR(query(path, "SELECT count(*) FROM upstream_calls"), expect);
    snprintf(expect, sizeof(expect), "%d", 2 * GROUP_THREADS * GROUP_SUBS);
    CHECK_STR(query(path, "SELECT count(*) FROM runs"), expect);
    CHECK_STR(query(path, "SELECT count(*) FROM runs r JOIN upstream_calls c"
                          " ON c.submission_id = r.submission_id AND c.seq = r.call_seq"), expect);
    /* The counts kept beside the rows moved with the calls that were kept, and only with
     * those. */
    CHECK_STR(query(path, "SELECT sum(runs) FROM run_buckets"), expect);
    CHECK_STR(query(path, "SELECT sum(runs) FROM summary_counts"), expect);
    /* The writer folds a group's counts into one upsert per row before its commit: every
     * submission counted once, where it ended, and nothing left under pending. */
    snprintf(expect, sizeof(expect), "%d", GROUP_THREADS * GROUP_SUBS);
    CHECK_STR(query(path, "SELECT sum(submissions) FROM summary_counts"
                          " WHERE state = 'accepted'"), expect);
    CHECK_STR(query(path, "SELECT count(*) FROM summary_counts WHERE state <> 'accepted'"
                          " AND (submissions <> 0 OR runs <> 0)"), "0");

    /* Stopped, the writer is out of the way: a handle writes for itself again. */
    char e2[256];
    CHECK(tg_store_open(&st, path, 0, 5000, e2, sizeof(e2)) == TG_OK);
    if (st != NULL) {
        struct tg_submission sub = submission("sub_after", team, "tok_g", 1);
        CHECK(tg_store_submission_begin(st, &sub) == TG_OK);
        CHECK(tg_store_submission_begin(st, &sub) == TG_EEXIST);
        tg_store_close(st);
    }
    CHECK_STR(query(path, "SELECT state FROM submissions WHERE id = 'sub_after'"), "pending");
    tg_test_remove_db(path);
}

/* The WAL's checkpoint sequence, the third word of its header: it moves each time the WAL
 * starts again from its beginning (-1: no WAL); *bytes, the file's size. */
static long wal_sequence(const char *path, long *bytes)
{
    char wal[600];
    unsigned char h[16];
    struct stat sb;
    snprintf(wal, sizeof(wal), "%s-wal", path);
    *bytes = stat(wal, &sb) == 0 ? (long)sb.st_size : -1;
    FILE *f = fopen(wal, "rb");
    if (f == NULL)
        return -1;
    size_t n = fread(h, 1, sizeof(h), f);
    fclose(f);
    return n < sizeof(h) ? -1 : (long)h[12] << 24 | (long)h[13] << 16 | h[14] << 8 | h[15];
}

/* The pages the shared writer has appended to the WAL so far, from /metrics' counter. */
static unsigned long wal_frames_total(void)
{
    struct tg_buf b;
    unsigned long n = 0;
    tg_buf_init(&b, 1 << 20);
    if (tg_metrics_render(&b) == TG_OK && b.data != NULL) {
        const char *line = strstr(b.data, "\ntaskgate_db_wal_frames_total ");
        if (line != NULL)
            n = strtoul(line + strlen("\ntaskgate_db_wal_frames_total "), NULL, 10);
    }
    tg_buf_free(&b);
    return n;
}

/* The checkpointer copies the WAL back without holding the writer, and takes its locked
 * pass, which lets the WAL start again, only past thousands of pages: the WAL must still
 * start again as writes go on, and its file stay bounded. */
static void test_wal_starts_again(void)
{
    char path[512], err[256];
    struct tg_store *st = fresh_store(path, sizeof(path), "walcycle");
    if (st == NULL)
        return;
    int64_t team = add_team(st, "research", "pk-1");
    tg_store_close(st);
    CHECK(tg_store_writer_start(path, 5000, err, sizeof(err)) == TG_OK);
    st = NULL;
    CHECK(tg_store_open(&st, path, 0, 5000, err, sizeof(err)) == TG_OK);
    if (st == NULL) {
        tg_store_writer_stop();
        return;
    }
    /* One writer: a transaction per write, about a dozen WAL pages per submission, so
     * 12,000 append about 144,000 pages, four times the 32,768 after which the WAL starts
     * again. How far past those it grows depends on how far the checkpointer lags behind:
     * a writer that never pauses, on a machine busy with other tests, outruns it (the WAL
     * then never starts again), so this one pauses a millisecond every 20 submissions, as
     * a daemon's writer waits for requests. The file must be a fraction of what was
     * appended to it, which it would all be if it never started again. */
    long bytes = 0, first = -1;
    unsigned long frames = wal_frames_total();
    int ok = 0;
    for (int i = 0; i < 12000; i++) {
        if (i == 1)
            first = wal_sequence(path, &bytes);
        char id[64];
        snprintf(id, sizeof(id), "sub_w%05d", i);
        struct tg_submission sub = submission(id, team, NULL, 1);
        ok += tg_store_submission_begin(st, &sub) == TG_OK &&
              tg_store_submission_finish(st, id, TG_STATE_ACCEPTED, 200, 200, NULL) == TG_OK;
        if (i % 20 == 19)
            usleep(1000);
    }
    CHECK(ok == 12000);
    long seq = wal_sequence(path, &bytes);
    CHECK(first >= 0 && seq > first); /* started again */
    long appended = (long)(wal_frames_total() - frames) * (24 + 4096);
    CHECK(appended > 100L << 20 && bytes > 0 && bytes < appended / 2);
    if (!(bytes < appended / 2))
        fprintf(stderr, "the WAL is %ld bytes, of %ld appended to it (restarts: %ld)\n", bytes,
                appended, seq - first);
    tg_store_close(st);
    tg_store_writer_stop();
    CHECK_STR(query(path, "SELECT count(*) FROM submissions WHERE state = 'accepted'"), "12000");
    tg_test_remove_db(path);
}

static void test_reject_and_unknown(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "reject");
    if (st == NULL)
        return;
    int64_t team = add_team(st, "research", "pk-1");

    struct tg_submission r = submission("sub_r", team, NULL, 0);
    CHECK(tg_store_submission_reject(st, &r, 422, "inputs: field required") == TG_OK);
    CHECK_STR(query(path, "SELECT state || '|' || http_status || '|' || error || '|' ||"
                          " (completed_at IS NOT NULL) || '|' || coalesce(token_label, '-')"
                          " FROM audit_submissions WHERE submission_id = 'sub_r'"),
              "rejected|422|inputs: field required|1|-");
    CHECK(tg_store_submission_finish(st, "sub_r", TG_STATE_ACCEPTED, 200, 200, NULL) ==
          TG_EINVAL);

    /* A call that never got an answer leaves the submission unknown; reconciliation may
     * settle it later, but not turn it into something that never went upstream. */
    struct tg_submission u = submission("sub_u", team, NULL, 1);
    CHECK(tg_store_submission_begin(st, &u) == TG_OK);
    struct tg_call lost = {
        .submission_id = "sub_u", .seq = 0, .operation = "add_runs", .method = "POST",
        .path = "/v1/tasks/groups/tgrp_x/runs", .first_input = 0, .num_inputs = 1,
        .started_ms = tg_now_ms(), .duration_ms = 30000, .outcome = TG_OUTCOME_UNKNOWN,
        .error = "timeout after 30 s",
    };
    CHECK(tg_store_call_record(st, &lost) == TG_OK);
    CHECK(tg_store_submission_finish(st, "sub_u", TG_STATE_UNKNOWN, 504, 0, "timeout") ==
          TG_OK);
    CHECK_STR(query(path, "SELECT state || '|' || coalesce(upstream_status, '-')"
                          " FROM audit_submissions WHERE submission_id = 'sub_u'"),
              "unknown|-");
    CHECK_STR(query(path, "SELECT outcome || '|' || coalesce(http_status, '-') || '|' || error"
                          " FROM upstream_calls WHERE submission_id = 'sub_u'"),
              "unknown|-|timeout after 30 s");
    CHECK(tg_store_submission_finish(st, "sub_u", TG_STATE_REJECTED, 422, 0, NULL) ==
          TG_EINVAL);
    CHECK(tg_store_submission_finish(st, "sub_u", TG_STATE_ACCEPTED, 200, 200, NULL) == TG_OK);
    CHECK_STR(query(path, "SELECT state FROM audit_submissions WHERE submission_id = 'sub_u'"),
              "accepted");
    tg_store_close(st);
    tg_test_remove_db(path);
}

/* A submission of inputs inputs into group tgrp_c received at received_ms, with one
 * add-runs call per entry of calls[0..n) (its outcome, when it ended, its run_cursor). */
struct call_at {
    enum tg_outcome outcome;
    int64_t finished_ms;
    const char *run_cursor;
};

static void group_submission(struct tg_store *st, int64_t team, const char *id, int inputs,
                             int64_t received_ms, const struct call_at *calls, int n)
{
    struct tg_submission sub = submission(id, team, NULL, inputs);
    sub.taskgroup_id = "tgrp_c";
    sub.received_ms = received_ms;
    CHECK(tg_store_submission_begin(st, &sub) == TG_OK);
    for (int i = 0; i < n; i++) {
        char run[64];
        snprintf(run, sizeof(run), "trun_%s_%d", id, i);
        const char *ids[] = {run};
        struct tg_call c = {
            .submission_id = id, .seq = i, .operation = "add_runs", .method = "POST",
            .path = "/v1/tasks/groups/tgrp_c/runs", .first_input = i, .num_inputs = 1,
            .started_ms = calls[i].finished_ms - 100, .duration_ms = 100,
            .outcome = calls[i].outcome, .http_status = calls[i].outcome == TG_OUTCOME_OK ? 200 : 0,
            .run_cursor = calls[i].run_cursor,
            .num_runs = calls[i].outcome == TG_OUTCOME_OK ? 1 : 0, .run_ids = ids,
        };
        CHECK(tg_store_call_record(st, &c) == TG_OK);
    }
}

/* The cursor tg_store_recon_cursor gives for before_ms, as "sub#seq=cursor". */
static const char *cursor_at(struct tg_store *st, struct tg_pool *pool, int64_t before_ms)
{
    struct tg_recon_cursor c;
    int rc = tg_store_recon_cursor(st, pool, "tgrp_c", before_ms, &c);
    if (rc != TG_OK)
        return rc == TG_ENOTFOUND ? "none" : "error";
    return tg_pool_printf(pool, "%s#%d=%s", c.submission_id, c.seq,
                          c.run_cursor != NULL ? c.run_cursor : "(null)");
}

/* Where reconciliation starts reading a group: the last call whose runs existed before a
 * time (answered before it, or found by a reconciliation settled before it); a read cut
 * short records what it found whole and leaves the submission unknown with its cursor. */
static void test_recon_cursor(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "cursor");
    struct tg_pool *pool = tg_pool_create();
    if (st == NULL || pool == NULL) {
        CHECK(!"setup");
        tg_store_close(st);
        tg_pool_destroy(pool);
        return;
    }
    int64_t team = add_team(st, "research", "pk-1");
    int64_t t0 = tg_now_ms() - 600000;
    const struct call_at a[] = {{TG_OUTCOME_OK, t0 + 1000, NULL}};
    const struct call_at b[] = {{TG_OUTCOME_OK, t0 + 3000, "rc_b0"},
                                {TG_OUTCOME_OK, t0 + 3500, "rc_b1"}};
    const struct call_at c[] = {{TG_OUTCOME_UNKNOWN, t0 + 6000, NULL}};
    const struct call_at d[] = {{TG_OUTCOME_OK, t0 + 11000, "rc_d0"}};
    group_submission(st, team, "sub_a", 1, t0, a, 1);
    group_submission(st, team, "sub_b", 2, t0 + 2000, b, 2);
    group_submission(st, team, "sub_c", 1, t0 + 5000, c, 1);
    group_submission(st, team, "sub_d", 1, t0 + 10000, d, 1);
    CHECK(tg_store_submission_finish(st, "sub_a", TG_STATE_ACCEPTED, 200, 200, NULL) == TG_OK);
    CHECK(tg_store_submission_finish(st, "sub_b", TG_STATE_ACCEPTED, 200, 200, NULL) == TG_OK);
    CHECK(tg_store_submission_finish(st, "sub_c", TG_STATE_UNKNOWN, 504, 0, "lost") == TG_OK);
    CHECK(tg_store_submission_finish(st, "sub_d", TG_STATE_ACCEPTED, 200, 200, NULL) == TG_OK);

    CHECK_STR(cursor_at(st, pool, t0 + 500), "none");
    CHECK_STR(cursor_at(st, pool, t0 + 1500), "sub_a#0=(null)"); /* the group's first runs */
    CHECK_STR(cursor_at(st, pool, t0 + 3200), "sub_b#0=rc_b0");  /* #1 answered after */
    CHECK_STR(cursor_at(st, pool, t0 + 4000), "sub_b#1=rc_b1");
    /* sub_d was received before, but answered after; sub_c never answered. */
    CHECK_STR(cursor_at(st, pool, t0 + 10500), "sub_b#1=rc_b1");
    CHECK_STR(cursor_at(st, pool, t0 + 12000), "sub_d#0=rc_d0");

    /* sub_e's call was found by a read cut short: recorded with the cursor read before it,
     * the submission still unknown, the cursor to read on from kept on its row. */
    group_submission(st, team, "sub_e", 1, t0 + 20000, NULL, 0);
    CHECK(tg_store_submission_finish(st, "sub_e", TG_STATE_UNKNOWN, 502, 0, "lost") == TG_OK);
    const char *runs[] = {"trun_e0"};
    struct tg_recon_found f = {.seq = 0, .first_input = 0, .num_inputs = 1, .nruns = 1,
                               .run_ids = runs, .run_cursor = "rc_e0"};
    struct tg_recon_write w = {
        .sub_id = "sub_e", .actor = "test", .taskgroup_id = "tgrp_c", .api = "/v1",
        .state = TG_STATE_UNKNOWN, .outcome = "error", .runs_found = 1,
        .detail = "cut short", .resume_cursor = "rc_after", .nfound = 1, .found = &f,
    };
    CHECK(tg_store_recon_write(st, &w) == TG_OK);
    struct tg_recon_sub loaded;
    CHECK(tg_store_recon_load(st, pool, "sub_e", &loaded) == TG_OK);
    CHECK(loaded.state == TG_STATE_UNKNOWN && loaded.received_ms == t0 + 20000);
    CHECK_STR(loaded.resume_cursor != NULL ? loaded.resume_cursor : "(null)", "rc_after");
    CHECK(loaded.ncalls == 1 && loaded.calls[0].runs == 1);
    CHECK_STR(query(path, "SELECT outcome || '|' || run_cursor FROM upstream_calls"
                          " WHERE submission_id = 'sub_e'"), "unknown|rc_e0");
    /* Its runs existed when the call was recorded, not before. */
    CHECK_STR(cursor_at(st, pool, tg_now_ms() + 60000), "sub_e#0=rc_e0");
    CHECK_STR(cursor_at(st, pool, tg_now_ms() - 60000), "sub_d#0=rc_d0");
    /* Due at once, although it was just tried (its read goes on); sub_c, unknown only since
     * now, is not yet. */
    const char **ids;
    size_t n = 0;
    CHECK(tg_store_unknown_ids(st, pool, 10, tg_now_ms() - 300000, &ids, &n) == TG_OK);
    CHECK(n == 1 && strcmp(ids[0], "sub_e") == 0);
    long pending = -1, unknown = -1;
    int64_t oldest = 0;
    CHECK(tg_store_open_counts(st, &pending, &unknown, &oldest) == TG_OK);
    CHECK(pending == 0 && unknown == 2 && oldest == t0 + 5000);

    /* Found again by the next read, the call is not recorded twice. */
    w.state = TG_STATE_ACCEPTED;
    w.outcome = "accepted";
    w.resume_cursor = NULL;
    CHECK(tg_store_recon_write(st, &w) == TG_OK);
    CHECK_STR(query(path, "SELECT count(*) FROM runs WHERE submission_id = 'sub_e'"), "1");
    CHECK_STR(query(path, "SELECT state FROM submissions WHERE id = 'sub_e'"), "accepted");
    CHECK(tg_store_recon_write(st, &w) == TG_EINVAL);
    tg_pool_destroy(pool);
    tg_store_close(st);
    tg_test_remove_db(path);
}

static void test_ten_thousand_runs(void)
{
    enum { N = 10000 };
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "bulk");
    char *names = malloc((size_t)N * 16);
    const char **ids = malloc(sizeof(char *) * N);
    if (st == NULL || names == NULL || ids == NULL) {
        CHECK(!"setup");
        goto out;
    }
    int64_t team = add_team(st, "research", "pk-1");
    struct tg_submission sub = submission("sub_bulk", team, NULL, N + 500);
    CHECK(tg_store_submission_begin(st, &sub) == TG_OK);
    for (int i = 0; i < N; i++) {
        snprintf(names + (size_t)i * 16, 16, "trun_%06d", i);
        ids[i] = names + (size_t)i * 16;
    }
    struct tg_call call = {
        .submission_id = "sub_bulk", .seq = 0, .operation = "add_runs", .method = "POST",
        .path = "/v1/tasks/groups/tgrp_bulk/runs", .first_input = 500, .num_inputs = N,
        .started_ms = tg_now_ms(), .duration_ms = 900, .outcome = TG_OUTCOME_OK,
        .http_status = 200, .run_cursor = "rc", .event_cursor = "ec",
        .num_runs = N, .run_ids = ids, .processors = NULL,
    };
    int64_t t0 = tg_mono_us();
    CHECK(tg_store_call_record(st, &call) == TG_OK);
    int64_t us = tg_mono_us() - t0;
    fprintf(stderr, "     10000 runs recorded in one call in %.1f ms\n", (double)us / 1000.0);
    CHECK(us < 2000 * 1000);
    CHECK_STR(query(path, "SELECT count(*) || '|' || min(input_index) || '|' ||"
                          " max(input_index) FROM audit_runs WHERE submission_id = 'sub_bulk'"),
              "10000|500|10499");

    /* A duplicate run id rolls the whole call back. */
    struct tg_submission again = submission("sub_bulk2", team, NULL, 2);
    CHECK(tg_store_submission_begin(st, &again) == TG_OK);
    const char *dup[] = {"trun_new", "trun_000007"};
    struct tg_call clash = call;
    clash.submission_id = "sub_bulk2";
    clash.first_input = 0;
    clash.num_runs = 2;
    clash.run_ids = dup;
    CHECK(tg_store_call_record(st, &clash) == TG_EEXIST);
    CHECK_STR(query(path, "SELECT count(*) FROM upstream_calls WHERE submission_id = 'sub_bulk2'"),
              "0");
    CHECK_STR(query(path, "SELECT count(*) FROM runs WHERE run_id = 'trun_new'"), "0");
out:
    free(names);
    free(ids);
    tg_store_close(st);
    tg_test_remove_db(path);
}

/* ---- locking and read-only ------------------------------------------------------------ */

struct holder {
    const char *path;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int locked;
    int ok;
};

/* Holds the write lock from another connection for about 300 ms. */
static void *hold_lock(void *arg)
{
    struct holder *h = arg;
    sqlite3 *db = NULL;
    int ok = sqlite3_open_v2(h->path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
             sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
    pthread_mutex_lock(&h->mu);
    h->locked = 1;
    h->ok = ok;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (ok) {
        sleep_ms(300);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    sqlite3_close(db);
    return NULL;
}

static void test_busy(void)
{
    char path[512], err[256];
    struct tg_store *st = fresh_store(path, sizeof(path), "busy");
    struct tg_store *impatient = NULL;
    if (st == NULL)
        return;
    int64_t team = add_team(st, "research", "pk-1");
    CHECK(tg_store_open(&impatient, path, 0, 50, err, sizeof(err)) == TG_OK);

    struct holder h = {.path = path};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, hold_lock, &h) == 0);
    pthread_mutex_lock(&h.mu);
    while (!h.locked)
        pthread_cond_wait(&h.cv, &h.mu);
    pthread_mutex_unlock(&h.mu);
    CHECK(h.ok);

    /* 50 ms is not enough: the caller hears "busy", nothing is half-written. */
    struct tg_submission early = submission("sub_early", team, NULL, 1);
    if (impatient != NULL) {
        CHECK(tg_store_submission_begin(impatient, &early) == TG_EBUSY);
        CHECK(strstr(tg_store_errmsg(impatient), "locked") != NULL);
    }

    /* 5 s is: the write waits for the lock and succeeds. */
    struct tg_submission sub = submission("sub_wait", team, NULL, 1);
    int64_t t0 = tg_mono_us();
    CHECK(tg_store_submission_begin(st, &sub) == TG_OK);
    int64_t waited_ms = (tg_mono_us() - t0) / 1000;
    fprintf(stderr, "     write waited %lld ms for the other connection's lock\n",
            (long long)waited_ms);
    CHECK(waited_ms >= 100);
    pthread_join(th, NULL);
    pthread_mutex_destroy(&h.mu);
    pthread_cond_destroy(&h.cv);

    CHECK_STR(query(path, "SELECT group_concat(submission_id) FROM audit_submissions"),
              "sub_wait");
    tg_store_close(impatient);
    tg_store_close(st);
    tg_test_remove_db(path);
}

static void test_readonly(void)
{
    char path[512], err[256];
    struct tg_store *st = fresh_store(path, sizeof(path), "ro");
    if (st == NULL)
        return;
    int64_t team = add_team(st, "research", "pk-1");
    CHECK(tg_store_token_add(st, &cli, team, "tok_r", "beef", TG_ROLE_AUDIT, NULL, 0) == TG_OK);
    tg_store_close(st);

    st = NULL;
    CHECK(tg_store_open(&st, path, TG_STORE_READONLY, 1000, err, sizeof(err)) == TG_OK);
    if (st != NULL) {
        struct tg_auth a;
        CHECK(tg_store_ping(st) == TG_OK);
        CHECK(tg_store_auth(st, "beef", tg_now_ms(), &a) == TG_OK);
        struct tg_submission sub = submission("sub_ro", team, NULL, 1);
        CHECK(tg_store_submission_begin(st, &sub) == TG_EDB);
        CHECK(strstr(tg_store_errmsg(st), "readonly") != NULL);
        CHECK(tg_store_team_add(st, &cli, "other", "pk", NULL) == TG_EDB);
        tg_store_close(st);
    }

    /* A write-protected file behaves the same without the flag; root ignores the mode. */
    if (geteuid() == 0) {
        fprintf(stderr, "     (running as root: the chmod 0444 case is skipped)\n");
    } else {
        CHECK(chmod(path, 0444) == 0);
        st = NULL;
        CHECK(tg_store_open(&st, path, 0, 1000, err, sizeof(err)) == TG_OK);
        if (st != NULL) {
            struct tg_submission sub = submission("sub_ro2", team, NULL, 1);
            CHECK(tg_store_submission_begin(st, &sub) == TG_EDB);
            tg_store_close(st);
        }
        chmod(path, 0644);
    }
    CHECK_STR(query(path, "SELECT count(*) FROM submissions"), "0");
    tg_test_remove_db(path);
}

static void test_names(void)
{
    enum tg_role r;
    CHECK_STR(tg_domain_role_name(TG_ROLE_AUDIT), "audit");
    CHECK(tg_domain_role_parse("admin", &r) == TG_OK && r == TG_ROLE_ADMIN);
    CHECK(tg_domain_role_parse("root", &r) == TG_EINVAL);
    CHECK(tg_domain_role_parse(NULL, &r) == TG_EINVAL);
    CHECK_STR(tg_domain_state_name(TG_STATE_UNKNOWN), "unknown");
    CHECK_STR(tg_domain_outcome_name(TG_OUTCOME_NOT_SENT), "not_sent");
    /* Team and preset names: one grammar, addressable as a path segment. */
    CHECK(tg_admin_valid_name("ops"));
    CHECK(tg_admin_valid_name("Team.A_1-x"));
    CHECK(tg_admin_valid_name("a..b"));
    CHECK(tg_admin_valid_name("9"));
    CHECK(tg_admin_valid_name("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"));
    CHECK(!tg_admin_valid_name("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"));
    CHECK(!tg_admin_valid_name(".."));
    CHECK(!tg_admin_valid_name("."));
    CHECK(!tg_admin_valid_name(".hidden"));
    CHECK(!tg_admin_valid_name("-x"));
    CHECK(!tg_admin_valid_name("_x"));
    CHECK(!tg_admin_valid_name("a/b"));
    CHECK(!tg_admin_valid_name(""));
    CHECK(!tg_admin_valid_name(NULL));
}

/* ---- what came of each run ---------------------------------------------------------- */

/* A team, a submission and an add-runs call of runs ids into group tgrp_t. */
static void track_fixture(struct tg_store *st, const char *sub_id, int seq,
                          const char *const *ids, size_t n)
{
    if (seq == 0) {
        int64_t team = add_team(st, "research", "pk-1");
        struct tg_submission sub = submission(sub_id, team, NULL, (int)n);
        sub.taskgroup_id = "tgrp_t";
        CHECK(tg_store_submission_begin(st, &sub) == TG_OK);
    }
    struct tg_call call = {
        .submission_id = sub_id, .seq = seq, .operation = "add_runs", .method = "POST",
        .path = "/v1/tasks/groups/tgrp_t/runs", .first_input = seq * 10, .num_inputs = (int)n,
        .started_ms = tg_now_ms(), .duration_ms = 5, .outcome = TG_OUTCOME_OK,
        .http_status = 200, .num_runs = n, .run_ids = ids,
    };
    CHECK(tg_store_call_record(st, &call) == TG_OK);
}

static void test_track_groups_and_changes(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "track");
    if (st == NULL)
        return;
    const char *ids[] = {"trun_1", "trun_2"};
    track_fixture(st, "sub_t", 0, ids, 2);
    CHECK_STR(query(path, "SELECT state || '|' || adds FROM track_groups"), "follow|1");

    struct tg_track_group g[4];
    size_t n = 0;
    long waiting = -1;
    CHECK(tg_store_track_take(st, 4, g, &n, &waiting) == TG_OK);
    CHECK(n == 1 && waiting == 0);
    CHECK_STR(g[0].taskgroup_id, "tgrp_t");
    CHECK_STR(g[0].team, "research");
    CHECK_STR(g[0].last_event_id, "");
    CHECK(g[0].adds == 1);
    CHECK(tg_store_track_take(st, 4, g, &n, &waiting) == TG_OK && n == 0); /* held: ours */

    int64_t t0 = 1767225600000; /* 2026-01-01T00:00:00.000Z */
    struct tg_run_change first[] = {
        {"trun_1", "queued", NULL, t0, "e1", 0},
        {"trun_2", "queued", NULL, t0, "e2", 0},
        {"trun_1", "running", NULL, t0 + 1000, "e3", 0},
        {"trun_1", "running", NULL, t0 + 1000, "e3", 0}, /* told twice: once */
    };
    size_t rec = 0;
    CHECK(tg_store_track_record(st, "tgrp_t", "e3", first, 4, &rec) == TG_OK);
    CHECK(rec == 3);
    CHECK(first[0].news && first[1].news && first[2].news && !first[3].news);
    struct tg_run_change later[] = {
        {"trun_1", "failed", "no sources", t0 + 5000, "e4", 0},
        {"trun_1", "running", NULL, t0 + 6000, "e5", 0},   /* after a final status: nothing */
        {"trun_2", "completed", "not kept", t0 + 3000, "e6", 0},
        {"trun_2", "queued", NULL, t0 + 500, "e7", 0},     /* older than known: nothing */
        {"trun_2", "lost", NULL, t0 + 9000, "e8", 0},      /* not a status */
    };
    CHECK(tg_store_track_record(st, "tgrp_t", NULL, later, 4, &rec) == TG_OK);
    CHECK(rec == 2);
    CHECK(tg_store_track_record(st, "tgrp_t", NULL, later + 4, 1, &rec) == TG_EINVAL);
    CHECK_STR(query(path, "SELECT last_event_id FROM track_groups"), "e3");
    CHECK_STR(query(path, "SELECT group_concat(x, ',') FROM (SELECT run_id || ':' || status ||"
                          " ':' || coalesce(error, '-') || ':' || source || ':' || event_id"
                          " AS x FROM run_status_changes ORDER BY id)"),
              "trun_1:queued:-:events:e1,trun_2:queued:-:events:e2,"
              "trun_1:running:-:events:e3,trun_1:failed:no sources:events:e4,"
              "trun_2:completed:-:events:e6");
    CHECK_STR(query(path, "SELECT group_concat(x, ',') FROM (SELECT run_id || ':' ||"
                          " coalesce(status, '-') || ':' || coalesce(error, '-') || ':' ||"
                          " coalesce(completed_at, '-') AS x FROM audit_runs ORDER BY run_id)"),
              "trun_1:failed:no sources:2026-01-01T00:00:05.000Z,"
              "trun_2:completed:-:2026-01-01T00:00:03.000Z");
    CHECK_STR(query(path, "SELECT count(*) FROM audit_run_status_changes"), "5");

    /* Runs added while the follower decided the group was done: it stays to follow. */
    const char *more[] = {"trun_3"};
    track_fixture(st, "sub_t", 1, more, 1);
    int again = -1;
    CHECK(tg_store_track_settle(st, "tgrp_t", g[0].adds, 0, NULL, &again) == TG_OK);
    CHECK(again == 1);
    CHECK_STR(query(path, "SELECT state || '|' || coalesce(owner, '-') FROM track_groups"),
              "follow|-");
    /* An add to a group followed already moves its count, not since. */
    CHECK_STR(query(path, "SELECT g.adds || '|' || (g.since = c.started_at)"
                          " FROM track_groups g, upstream_calls c WHERE c.seq = 0"), "2|1");
    CHECK(tg_store_track_record(st, "tgrp_t", "e9", first, 1, &rec) == TG_ENOTFOUND);
    CHECK(tg_store_track_take(st, 4, g, &n, NULL) == TG_OK && n == 1 && g[0].adds == 2);
    CHECK_STR(g[0].last_event_id, "e3");
    CHECK(tg_store_track_settle(st, "tgrp_t", g[0].adds, 0, NULL, &again) == TG_OK);
    CHECK(again == 0);
    CHECK_STR(query(path, "SELECT state FROM track_groups"), "idle");
    CHECK(tg_store_track_take(st, 4, g, &n, &waiting) == TG_OK && n == 0 && waiting == 0);
    CHECK(tg_store_track_settle(st, "tgrp_t", 2, 0, NULL, &again) == TG_ENOTFOUND);

    /* Released on the way out, a group is anyone's to take at once. */
    const char *last[] = {"trun_4"};
    track_fixture(st, "sub_t", 2, last, 1);
    CHECK_STR(query(path, "SELECT g.state || '|' || g.adds || '|' || (g.since = c.started_at)"
                          " FROM track_groups g, upstream_calls c WHERE c.seq = 2"),
              "follow|3|1"); /* idle, then followed again from this add */
    CHECK(tg_store_track_take(st, 4, g, &n, NULL) == TG_OK && n == 1);
    CHECK(tg_store_track_release(st, NULL) == TG_OK);
    CHECK_STR(query(path, "SELECT state || '|' || coalesce(owner, '-') FROM track_groups"),
              "follow|-");
    CHECK(tg_store_track_take(st, 4, g, &n, NULL) == TG_OK && n == 1);
    CHECK(tg_store_track_settle(st, "tgrp_t", g[0].adds, 1, "TaskGroup not found", &again) ==
          TG_OK);
    CHECK_STR(query(path, "SELECT state || '|' || detail FROM track_groups"),
              "gone|TaskGroup not found");
    tg_store_close(st);
    tg_test_remove_db(path);
}

static void test_webhook_records(void)
{
    char path[512];
    struct tg_store *st = fresh_store(path, sizeof(path), "hooks");
    if (st == NULL)
        return;
    const char *ids[] = {"trun_w"};
    track_fixture(st, "sub_w", 0, ids, 1);
    int64_t t0 = 1767225600000;
    struct tg_run_change done = {"trun_w", "completed", NULL, t0, "msg_1", 0};
    enum tg_webhook_outcome out;
    char team[65];
    CHECK(tg_store_webhook_record(st, "msg_1", "tgrp_t", &done, &out, team, sizeof(team)) ==
          TG_OK);
    CHECK(out == TG_WEBHOOK_RECORDED);
    CHECK_STR(team, "research");
    CHECK(tg_store_webhook_record(st, "msg_1", "tgrp_t", &done, &out, team, sizeof(team)) ==
          TG_EEXIST);
    /* Another delivery of what is known; a run named without its group; someone else's. */
    CHECK(tg_store_webhook_record(st, "msg_2", NULL, &done, &out, NULL, 0) == TG_OK);
    CHECK(out == TG_WEBHOOK_KNOWN);
    struct tg_run_change other = {"trun_x", "failed", "e", t0, "msg_3", 0};
    CHECK(tg_store_webhook_record(st, "msg_3", "tgrp_other", &other, &out, team,
                                  sizeof(team)) == TG_OK);
    CHECK(out == TG_WEBHOOK_IGNORED);
    CHECK_STR(team, "");
    CHECK_STR(query(path, "SELECT group_concat(x, ',') FROM (SELECT webhook_id || ':' ||"
                          " outcome AS x FROM webhook_deliveries ORDER BY webhook_id)"),
              "msg_1:recorded,msg_2:known,msg_3:ignored");
    CHECK_STR(query(path, "SELECT group_concat(x, ',') FROM (SELECT run_id || ':' || status ||"
                          " ':' || source || ':' || event_id AS x FROM run_status_changes)"),
              "trun_w:completed:webhook:msg_1");
    long pruned = 0;
    CHECK(tg_store_webhook_prune(st, tg_now_ms() + 1000, &pruned) == TG_OK && pruned == 3);
    tg_store_close(st);
    tg_test_remove_db(path);
}

static void test_run_change_rule(void)
{
    const char *t1 = "2026-01-01T00:00:01.000Z", *t2 = "2026-01-01T00:00:02.000Z";
    CHECK(tg_domain_run_change_news(NULL, NULL, "queued", t1));
    CHECK(!tg_domain_run_change_news(NULL, NULL, "done", t1));
    CHECK(!tg_domain_run_change_news("queued", t1, "queued", t2));
    CHECK(tg_domain_run_change_news("queued", t1, "running", t1));
    CHECK(!tg_domain_run_change_news("running", t2, "queued", t1));
    CHECK(tg_domain_run_change_news("running", t1, "action_required", t2));
    CHECK(!tg_domain_run_change_news("cancelled", t1, "running", t2));
    CHECK(tg_domain_run_status_final("failed") && !tg_domain_run_status_final("cancelling"));
    CHECK(tg_domain_run_status_active("cancelling") && !tg_domain_run_status_active("failed"));
    CHECK(!tg_domain_run_status_known(NULL));
}

int main(void)
{
    /* Team keys are sealed under a key file: a fresh one for this run, named apart from
     * the tests' databases (test_team_key's is "key"): the ring is used only while its
     * file is there. */
    char key_file[512], err[256];
    db_path(key_file, sizeof(key_file), "ring.key");
    unlink(key_file);
    tg_crypto_configure(key_file);
    if (tg_crypto_load(1, NULL, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "key file: %s\n", err);
        return 1;
    }
    static const struct tg_test_case cases[] = {
        {"names", test_names},
        {"open_migrate_twice", test_open_migrate_twice},
        {"request_path_without_temp_tables", test_request_path_without_temp_tables},
        {"open_unmigrated", test_open_unmigrated},
        {"open_unsupported", test_open_unsupported},
        {"team_add_duplicate", test_team_add_duplicate},
        {"team_key", test_team_key},
        {"fingerprint", test_fingerprint},
        {"token_auth", test_token_auth},
        {"presets", test_presets},
        {"kept_reads", test_kept_reads},
        {"kept_tokens", test_kept_tokens},
        {"submission_flow", test_submission_flow},
        {"reject_and_unknown", test_reject_and_unknown},
        {"call_finish", test_call_finish},
        {"recon_cursor", test_recon_cursor},
        {"group_commit", test_group_commit},
        {"wal_starts_again", test_wal_starts_again},
        {"ten_thousand_runs", test_ten_thousand_runs},
        {"busy", test_busy},
        {"readonly", test_readonly},
        {"track_groups_and_changes", test_track_groups_and_changes},
        {"webhook_records", test_webhook_records},
        {"run_change_rule", test_run_change_rule},
        {NULL, NULL},
    };
    int rc = tg_test_run(cases);
    unlink(key_file);
    return rc;
}
