/* Unit tests of the writer connection's VFS (gateway/store/sqlite/tg_sqlite_walvfs.c),
 * which writes the frames of a commit to the WAL in one call: every commit is read back
 * whole by another connection as soon as it returns, a WAL it wrote is recovered whole
 * from the file alone, and a write that fails fails its commit and loses nothing
 * committed before. The transactions range from one page to thousands (past what is
 * written in one call, and spilled before their commit by a tiny page cache, which makes
 * SQLite rewrite frames in place and recompute their checksums). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tg_store.h"
#include "tg_test.h"

#define VFS "taskgate-wal"

static void db_path(char *out, size_t len, const char *name)
{
    tg_test_db_path(out, len, "test_walvfs", name);
}

/* The VFS is registered by the first writer started; a store made for it, then let go. */
static int register_vfs(void)
{
    char path[512], err[256];
    db_path(path, sizeof(path), "register");
    int rc = tg_test_new_db(path, err, sizeof(err));
    if (rc == TG_OK)
        rc = tg_store_writer_start(path, 5000, err, sizeof(err));
    if (rc == TG_OK)
        tg_store_writer_stop();
    tg_test_remove_db(path);
    return rc == TG_OK && sqlite3_vfs_find(VFS) != NULL;
}

static int exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, msg != NULL ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

/* "rows|hash" of table t as db reads it: an FNV-1a hash of every key and value. */
static const char *state_of(sqlite3 *db)
{
    static char out[128];
    sqlite3_stmt *s = NULL;
    long rows = 0;
    unsigned long long h = 1469598103934665603ULL;
    int rc = sqlite3_prepare_v2(db, "SELECT k, v FROM t ORDER BY k", -1, &s, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        long long k = sqlite3_column_int64(s, 0);
        const unsigned char *v = sqlite3_column_blob(s, 1);
        int n = sqlite3_column_bytes(s, 1);
        for (int i = 0; i < 8; i++)
            h = (h ^ (unsigned char)(k >> (8 * i))) * 1099511628211ULL;
        for (int i = 0; i < n; i++)
            h = (h ^ v[i]) * 1099511628211ULL;
        rows++;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_DONE)
        snprintf(out, sizeof(out), "%ld|%016llx", rows, h);
    else
        snprintf(out, sizeof(out), "(error: %s)", sqlite3_errmsg(db));
    return out;
}

static const char *integrity(sqlite3 *db)
{
    static char out[128];
    sqlite3_stmt *s = NULL;
    snprintf(out, sizeof(out), "(error)");
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        snprintf(out, sizeof(out), "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
}

/* One transaction on w: n rows of size bytes from key k, then the first half of them
 * written again (which, spilled meanwhile, rewrites frames of the same transaction). */
static int write_rows(sqlite3 *w, int k, int n, int size)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "BEGIN; WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c"
             " WHERE i + 1 < %d) INSERT OR REPLACE INTO t SELECT %d + i, randomblob(%d)"
             " FROM c; UPDATE t SET v = randomblob(%d) WHERE k >= %d AND k < %d; COMMIT",
             n, k, size, size, k, k + n / 2);
    return exec(w, sql);
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int ok = in != NULL && out != NULL;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in != NULL)
        fclose(in);
    if (out != NULL && fclose(out) != 0)
        ok = 0;
    return ok;
}

/* A new database at the path for name, opened through the writer's VFS as the daemon's
 * writer opens it but with a page cache of cache_pages, and its table t. */
static sqlite3 *new_db(char *path, size_t len, const char *name, int cache_pages)
{
    sqlite3 *w = NULL;
    char pragma[160];
    db_path(path, len, name);
    tg_test_remove_db(path);
    snprintf(pragma, sizeof(pragma),
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
             " PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = %d;"
             " CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)",
             cache_pages);
    int ok = sqlite3_open_v2(path, &w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, VFS) ==
                 SQLITE_OK &&
             exec(w, pragma) == SQLITE_OK;
    CHECK(ok);
    if (!ok) {
        sqlite3_close(w);
        return NULL;
    }
    return w;
}

/* Commits from one page to thousands, each read by a second connection (the default VFS)
 * as soon as it returns; then the WAL, copied with the database while both are open (no
 * checkpoint has run), is recovered by a third from the files alone, whole: recovery stops
 * at the first frame whose checksum does not follow, and would lose what comes after. */
static void test_commits_read_back_and_recovered(void)
{
    char path[512], copy[600], side[700];
    sqlite3 *w = new_db(path, sizeof(path), "commits", 8), *r = NULL;
    if (w == NULL)
        return;
    CHECK(sqlite3_open_v2(path, &r, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);

    const int sizes[][2] = {{1, 100}, {3, 3000}, {40, 1000}, {2, 50}, {400, 2000},
                            {1, 10}, {1500, 3000}, {20, 500}};
    char expect[128] = "";
    int k = 0, read_back = 0, rounds = 0;
    for (int round = 0; round < 6; round++)
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++, rounds++) {
            CHECK(write_rows(w, k, sizes[i][0], sizes[i][1]) == SQLITE_OK);
            k += sizes[i][0] * (round % 2 == 0 ? 1 : 0) + 7; /* odd rounds replace rows */
            snprintf(expect, sizeof(expect), "%s", state_of(w));
            read_back += strcmp(state_of(r), expect) == 0;
        }
    CHECK(read_back == rounds);

    /* A big transaction spilled and then rolled back leaves nothing, and the next commit
     * is read whole. */
    CHECK(exec(w, "BEGIN; WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c"
                  " WHERE i < 2000) INSERT INTO t SELECT 1000000 + i, randomblob(2000)"
                  " FROM c; ROLLBACK") == SQLITE_OK);
    CHECK_STR(state_of(r), expect);
    CHECK(write_rows(w, k, 30, 700) == SQLITE_OK);
    snprintf(expect, sizeof(expect), "%s", state_of(w));
    CHECK_STR(state_of(r), expect);
    CHECK_STR(integrity(r), "ok");

    struct stat sb;
    snprintf(side, sizeof(side), "%s-wal", path);
    CHECK(stat(side, &sb) == 0 && sb.st_size > 10L << 20); /* it all is still in the WAL */
    snprintf(copy, sizeof(copy), "%s.copy", path);
    tg_test_remove_db(copy);
    CHECK(copy_file(path, copy));
    char copy_wal[700];
    snprintf(copy_wal, sizeof(copy_wal), "%s-wal", copy);
    CHECK(copy_file(side, copy_wal));
    sqlite3 *c = NULL;
    CHECK(sqlite3_open_v2(copy, &c, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    CHECK_STR(state_of(c), expect);
    CHECK_STR(integrity(c), "ok");
    sqlite3_close(c);
    sqlite3_close(r);
    sqlite3_close(w);
    tg_test_remove_db(copy);
    tg_test_remove_db(path);
}

/* A commit whose write fails (the file may not grow: RLIMIT_FSIZE) fails, leaves what was
 * committed before as it was for a reader and for the writer, and the next commit, once
 * the file may grow again, is written whole and is in the database after it closes. */
static void test_failed_write_fails_its_commit(void)
{
    char path[512], side[600];
    sqlite3 *w = new_db(path, sizeof(path), "failed", 2000), *r = NULL;
    if (w == NULL)
        return;
    CHECK(write_rows(w, 0, 50, 1000) == SQLITE_OK);
    CHECK(sqlite3_open_v2(path, &r, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    char before[128];
    snprintf(before, sizeof(before), "%s", state_of(r));

    struct stat sb;
    snprintf(side, sizeof(side), "%s-wal", path);
    CHECK(stat(side, &sb) == 0);
    struct rlimit was, small;
    CHECK(getrlimit(RLIMIT_FSIZE, &was) == 0);
    small = was;
    small.rlim_cur = (rlim_t)sb.st_size + 100 * 1024; /* a 1 MB commit does not fit */
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    int rc = write_rows(w, 100, 250, 4000);
    CHECK(setrlimit(RLIMIT_FSIZE, &was) == 0);
    signal(SIGXFSZ, old);
    CHECK(rc != SQLITE_OK);
    if (!sqlite3_get_autocommit(w))
        CHECK(exec(w, "ROLLBACK") == SQLITE_OK);
    CHECK_STR(state_of(r), before);
    CHECK_STR(state_of(w), before);

    CHECK(write_rows(w, 100, 250, 4000) == SQLITE_OK);
    char after[128];
    snprintf(after, sizeof(after), "%s", state_of(w));
    CHECK(strcmp(after, before) != 0);
    CHECK_STR(state_of(r), after);
    CHECK_STR(integrity(r), "ok");
    sqlite3_close(r);
    sqlite3_close(w);
    /* Closed, the WAL was checkpointed into the database: it holds the second commit. */
    sqlite3 *c = NULL;
    CHECK(sqlite3_open_v2(path, &c, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    CHECK_STR(state_of(c), after);
    sqlite3_close(c);
    tg_test_remove_db(path);
}

int main(void)
{
    if (!register_vfs()) {
        fprintf(stderr, "the writer's VFS is not registered\n");
        return 1;
    }
    static const struct tg_test_case cases[] = {
        {"commits_read_back_and_recovered", test_commits_read_back_and_recovered},
        {"failed_write_fails_its_commit", test_failed_write_fails_its_commit},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
