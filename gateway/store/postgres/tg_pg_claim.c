/* The PostgreSQL backend's claim (tg_store_claim in tg_store.h): many daemons on one
 * database, each a row of `daemons` with a lease. The row is written when the daemon starts,
 * its lease renewed every TG_STORE_LEASE_RENEW_MS by a thread of the claim's own on a
 * connection of its own, and marked stopped when the daemon stops cleanly. A daemon whose
 * lease ran out (killed, or cut off from the database longer than the lease) is presumed
 * gone: its pending submissions may then be settled by another (tg_pg_recover_pending). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tg_bg.h"
#include "tg_core.h"
#include "tg_log.h"
#include "tg_pg_int.h"

struct tg_store_claim {
    struct tg_store *st;  /* the lease's own connection */
    struct tg_bg bg;      /* the renewing thread */
    char id[32];
    int lost;             /* the last renewal failed (logged once) */
};

static const struct tg_pg_stmt claim_insert = {
    "claim_insert",
    "INSERT INTO daemons (id, host, pid, listen, started_at, heartbeat_at, lease_until) "
    "VALUES ($1, $2, $3, $4, $5, $5, $6)"};
static const struct tg_pg_stmt claim_renew = {
    "claim_renew",
    "UPDATE daemons SET heartbeat_at = $2, lease_until = $3 WHERE id = $1"};
static const struct tg_pg_stmt claim_stop = {
    "claim_stop",
    "UPDATE daemons SET heartbeat_at = $2, lease_until = $2, stopped_at = $2 WHERE id = $1"};

/* The daemons of this host still holding a lease, to see which of them are gone. */
static const struct tg_pg_stmt claim_peers = {
    "claim_peers",
    "SELECT id, pid FROM daemons WHERE host = $1 AND id <> $2 AND stopped_at IS NULL "
    "AND lease_until > $3"};
static const struct tg_pg_stmt claim_expire = {
    "claim_expire",
    "UPDATE daemons SET lease_until = $2 WHERE id = $1 AND stopped_at IS NULL"};

/* A daemon of this very host whose process is gone (killed, crashed) need not be waited
 * for: its lease ends now, so what it left pending is settled at once rather than after
 * TG_STORE_LEASE_MS. Other hosts' daemons are judged by their lease alone. */
static void expire_dead_peers(struct tg_store_claim *c, const char *host, const char *now)
{
    PGresult *r;
    const char *p[] = {host, c->id, now};
    if (tg_pg_exec(c->st, &claim_peers, 3, p, &r, "read this host's daemons") != TG_OK)
        return;
    for (int i = 0; i < PQntuples(r); i++) {
        pid_t pid = (pid_t)tg_pg_int(r, i, 1);
        if (pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        const char *q[] = {tg_pg_text(r, i, 0), now};
        if (tg_pg_run(c->st, &claim_expire, 2, q, "end a gone daemon's lease") == TG_OK)
            tg_log(TG_LOG_INFO, "daemon %s (pid %ld on this host) is gone: its lease ends now",
                   q[0], (long)pid);
    }
    PQclear(r);
}

/* Now and now plus the lease, as the records' times are written. */
static void lease_times(char now[TG_TIME_LEN], char until[TG_TIME_LEN])
{
    int64_t t = tg_now_ms();
    tg_time_format(t, now);
    tg_time_format(t + TG_STORE_LEASE_MS, until);
}

static int renew(struct tg_store_claim *c)
{
    char now[TG_TIME_LEN], until[TG_TIME_LEN];
    lease_times(now, until);
    const char *p[] = {c->id, now, until};
    return tg_pg_run(c->st, &claim_renew, 3, p, "renew the daemon's lease");
}

static void *renew_main(void *arg)
{
    struct tg_store_claim *c = arg;
    long secs = TG_STORE_LEASE_RENEW_MS / 1000 > 0 ? TG_STORE_LEASE_RENEW_MS / 1000 : 1;
    while (!tg_bg_wait(&c->bg, secs)) {
        int rc = renew(c);
        if (rc != TG_OK && !c->lost)
            tg_log(TG_LOG_ERROR, "%s: if it is not renewed within %d s, other daemons may "
                   "settle this one's pending submissions", tg_pg_errmsg(c->st),
                   TG_STORE_LEASE_MS / 1000);
        else if (rc == TG_OK && c->lost)
            tg_log(TG_LOG_INFO, "the daemon's lease is renewed again");
        c->lost = rc != TG_OK;
    }
    return NULL;
}

struct tg_store_claim *tg_pg_claim(const char *database, const struct tg_daemon_info *me,
                                   const char *id, int busy_ms, char *err, size_t errlen)
{
    struct tg_store_claim *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct tg_bg init = TG_BG_INIT;
    c->bg = init;
    snprintf(c->id, sizeof(c->id), "%s", id);
    if (tg_pg_open(&c->st, database, 0, busy_ms, err, errlen) != TG_OK) {
        free(c);
        return NULL;
    }
    char host[256] = "", pid[TG_PG_I64_LEN], now[TG_TIME_LEN], until[TG_TIME_LEN];
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "unknown");
    lease_times(now, until);
    const char *p[] = {c->id, host, tg_pg_i64(pid, (int64_t)getpid()), me->listen, now, until};
    if (tg_pg_run(c->st, &claim_insert, 6, p, "register the daemon") != TG_OK ||
        tg_bg_start(&c->bg, renew_main, c) != TG_OK) {
        snprintf(err, errlen, "%s", tg_pg_errmsg(c->st));
        tg_pg_close(c->st);
        free(c);
        return NULL;
    }
    expire_dead_peers(c, host, now);
    return c;
}

void tg_pg_claim_release(struct tg_store_claim *c)
{
    if (c == NULL)
        return;
    tg_bg_stop(&c->bg);
    char now[TG_TIME_LEN];
    tg_time_format(tg_now_ms(), now);
    const char *p[] = {c->id, now};
    if (tg_pg_run(c->st, &claim_stop, 2, p, "mark the daemon stopped") != TG_OK)
        tg_log(TG_LOG_WARN, "%s (its lease runs out by itself)", tg_pg_errmsg(c->st));
    tg_pg_close(c->st);
    free(c);
}
