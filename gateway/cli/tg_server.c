/* The daemon's thread pool and signal handling (see tg_server.h). Each worker owns its
 * reading database handle, upstream client and request pool; a request shares only the
 * group commit of its writes (store/sqlite/tg_sqlite_writer.c), the metrics and the log. */
#include "tg_server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tg_fcgi.h"
#include "tg_http.h"
#include "tg_keys.h"
#include "tg_log.h"
#include "tg_metrics.h"
#include "tg_reconcile.h"
#include "tg_router.h"
#include "tg_share.h"
#include "tg_store.h"
#include "tg_track.h"
#include "tg_upstream.h"
#include "tg_webhook_http.h"

struct server;

struct slot {
    struct server *srv;
    struct tg_worker w;
    struct tg_fcgi *fcgi;
    struct tg_response resp;
    pthread_t thread;
    int started;
};

struct server {
    const struct tg_conf *conf;
    int fd;
    atomic_int stopping;
    struct slot *slots;
    long nslots;
};

static void serve_one(struct slot *s)
{
    struct tg_worker *w = &s->w;
    struct tg_request req;
    struct tg_response *resp = &s->resp;
    struct tg_buf body = resp->body;

    memset(resp, 0, sizeof(*resp));
    resp->body = body;
    tg_buf_clear(&resp->body);

    tg_metrics_request_begin();
    int rc = tg_fcgi_read(s->fcgi, w->pool, w->conf->max_body_bytes, &req);
    if (rc == TG_ETOOBIG)
        tg_resp_error(resp, &req, 413, "the body is larger than max_body_bytes", NULL);
    else if (rc == TG_EINVAL)
        tg_resp_error(resp, &req, 400, "bad Content-Length", NULL);
    else if (rc != TG_OK)
        tg_resp_error(resp, &req, 500, "out of memory", NULL);
    else
        tg_handle(w, &req, resp);
    /* Counted before the answer leaves, so a client that scrapes /metrics right after
     * its answer sees its own request. */
    tg_metrics_request_end(resp->interface, resp->status);
    tg_fcgi_write(s->fcgi, &req, resp);
    tg_fcgi_finish(s->fcgi);
    tg_http_log_request(&req, resp);
    tg_pool_reset(w->pool);
    /* Keep one answer's worth of memory for the next request, not the largest ever. */
    if (resp->body.cap > 1024 * 1024)
        tg_buf_free(&resp->body);
}

static void *worker_main(void *arg)
{
    struct slot *s = arg;
    struct server *srv = s->srv;
    prctl(PR_SET_NAME, "tg-worker");
    for (;;) {
        /* accept() on Linux is safe from many threads on one socket and wakes one of
         * them per connection; libfcgi keeps no shared state around it. Serialising it
         * with a mutex cost a second wake-up per request and held every other worker
         * back while one read its request's parameters. */
        if (atomic_load(&srv->stopping))
            break;
        int rc = tg_fcgi_accept(s->fcgi);
        if (rc != TG_OK) {
            if (atomic_load(&srv->stopping))
                break;
            tg_log(TG_LOG_WARN, "accept failed: %s", strerror(errno));
            continue;
        }
        serve_one(s);
    }
    return NULL;
}

static void slot_close(struct slot *s)
{
    tg_fcgi_free(s->fcgi);
    tg_store_close(s->w.store);
    tg_upstream_free(s->w.up);
    tg_pool_destroy(s->w.pool);
    tg_buf_free(&s->resp.body);
}

/* Everything a worker needs is opened before any thread starts, so that a bad database
 * path or a full disk stops start-up with a message rather than a half-running daemon. */
static int slot_open(struct server *srv, struct slot *s, int id)
{
    char err[512];
    s->srv = srv;
    s->w.conf = srv->conf;
    s->w.id = id;
    tg_buf_init(&s->resp.body, (size_t)256 * 1024 * 1024);
    int rc = tg_store_open(&s->w.store, srv->conf->database, 0,
                           (int)srv->conf->db_busy_timeout_ms, err, sizeof(err));
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "cannot open the database: %s", err);
        return rc;
    }
    s->w.up = tg_upstream_new(srv->conf);
    s->w.pool = tg_pool_create();
    s->fcgi = tg_fcgi_new(srv->fd);
    if (s->w.up == NULL || s->w.pool == NULL || s->fcgi == NULL) {
        tg_log(TG_LOG_ERROR, "out of memory while starting worker %d", id);
        return TG_ENOMEM;
    }
    return TG_OK;
}

static int start_workers(struct server *srv)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    int rc = TG_OK;
    for (long i = 0; i < srv->nslots && rc == TG_OK; i++) {
        rc = slot_open(srv, &srv->slots[i], (int)i);
        if (rc == TG_OK && pthread_create(&srv->slots[i].thread, &attr, worker_main,
                                          &srv->slots[i]) != 0) {
            tg_log(TG_LOG_ERROR, "cannot start worker thread %ld", i);
            rc = TG_ERR;
        }
        if (rc == TG_OK)
            srv->slots[i].started = 1;
    }
    pthread_attr_destroy(&attr);
    return rc;
}

/* Stops accepting: a shut-down listening socket makes every blocked accept() fail. */
static void stop_and_join(struct server *srv)
{
    atomic_store(&srv->stopping, 1);
    shutdown(srv->fd, SHUT_RDWR);
    for (long i = 0; i < srv->nslots; i++)
        if (srv->slots[i].started)
            pthread_join(srv->slots[i].thread, NULL);
    for (long i = 0; i < srv->nslots; i++)
        slot_close(&srv->slots[i]);
}

/* systemd socket activation: when LISTEN_PID names this process, the listening socket is
 * already open as descriptor 3 (SD_LISTEN_FDS_START). Returns it, or -1. */
static int inherited_socket(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    long p, n;
    if (pid == NULL || fds == NULL || tg_parse_long(pid, 1, LONG_MAX, &p) != TG_OK ||
        p != (long)getpid() || tg_parse_long(fds, 1, 64, &n) != TG_OK)
        return -1;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return 3;
}

/* Started as root, the daemon gives root up once its socket is open: everything after
 * (the database, the upstream, every request) runs as user. */
static int drop_privileges(const char *user)
{
    if (geteuid() != 0)
        return TG_OK;
    if (*user == '\0') {
        tg_log(TG_LOG_WARN, "running as root: set `user` in the config to drop privileges");
        return TG_OK;
    }
    struct passwd pw, *found = NULL;
    char buf[4096];
    if (getpwnam_r(user, &pw, buf, sizeof(buf), &found) != 0 || found == NULL) {
        tg_log(TG_LOG_ERROR, "user '%s' (config key `user`) does not exist", user);
        return TG_ERR;
    }
    if (initgroups(user, pw.pw_gid) != 0 || setgid(pw.pw_gid) != 0 || setuid(pw.pw_uid) != 0) {
        tg_log(TG_LOG_ERROR, "cannot switch to user '%s': %s", user, strerror(errno));
        return TG_ERR;
    }
    if (setuid(0) == 0) {
        tg_log(TG_LOG_ERROR, "switched to user '%s' but could become root again", user);
        return TG_ERR;
    }
    tg_log(TG_LOG_INFO, "running as user %s (uid %ld)", user, (long)pw.pw_uid);
    return TG_OK;
}

/* Submissions a previous daemon left pending can no longer be finished by anyone: they
 * become unknown, to be reconciled, before any worker takes a request. */
static int recover(const struct tg_conf *conf)
{
    char err[512];
    struct tg_store *st = NULL;
    long n = 0;
    int rc = tg_store_open(&st, conf->database, 0, (int)conf->db_busy_timeout_ms, err,
                           sizeof(err));
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "cannot open the database: %s", err);
        return rc;
    }
    rc = tg_store_recover_pending(st, &n);
    if (rc != TG_OK)
        tg_log(TG_LOG_ERROR, "cannot settle pending submissions: %s", tg_store_errmsg(st));
    else if (n > 0)
        tg_log(TG_LOG_WARN, "%ld submission(s) left pending by an earlier daemon are now "
               "'unknown': reconcile them", n);
    tg_store_close(st);
    return rc;
}

int tg_server_run(const struct tg_conf *conf)
{
    char err[2048];
    struct server srv;
    memset(&srv, 0, sizeof(srv));
    srv.conf = conf;
    srv.nslots = conf->threads;
    tg_metrics_init(conf->threads);
    tg_share_init(conf);

    /* Signals are taken by the main thread alone, with sigwait; workers never see them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (tg_upstream_global_init() != TG_OK || tg_fcgi_init() != TG_OK) {
        tg_log(TG_LOG_ERROR, "cannot initialise libcurl or libfcgi");
        return 1;
    }
    /* The claim first: until it is held, neither the database nor the socket is ours. */
    struct tg_daemon_info me = {conf->listen, conf->user};
    struct tg_store_claim *claim = tg_store_claim(conf->database, &me,
                                                  (int)conf->db_busy_timeout_ms, err,
                                                  sizeof(err));
    if (claim == NULL) {
        tg_log(TG_LOG_ERROR, "%s", err);
        tg_upstream_global_cleanup();
        return 1;
    }
    int activated = 0;
    struct tg_fcgi_sock sock;
    memset(&sock, 0, sizeof(sock));
    srv.fd = inherited_socket();
    if (srv.fd >= 0)
        activated = 1;
    else
        srv.fd = tg_fcgi_listen(conf->listen, (int)conf->backlog, conf->socket_mode,
                                conf->socket_group, &sock, err, sizeof(err));
    if (srv.fd < 0)
        tg_log(TG_LOG_ERROR, "%s", err);
    if (srv.fd < 0 || drop_privileges(conf->user) != TG_OK) {
        if (srv.fd >= 0) {
            close(srv.fd);
            tg_fcgi_unlink(conf->listen, &sock);
        }
        tg_store_claim_release(claim);
        tg_upstream_global_cleanup();
        return 1;
    }
    /* Every team's inputs are in these files: readable by the daemon's user alone. */
    int tightened = 0;
    if (tg_store_secure_files(conf->database, 0, &tightened, err, sizeof(err)) != TG_OK)
        tg_log(TG_LOG_WARN, "%s", err);
    else if (tightened > 0)
        tg_log(TG_LOG_WARN, "the database's files were readable by group or others: now only "
               "by their owner (%d changed)", tightened);
    srv.slots = calloc((size_t)srv.nslots, sizeof(*srv.slots));
    /* After dropping root: a key file it creates belongs to the daemon's user. */
    tg_keys_serve_start(conf);
    int rc = srv.slots != NULL ? recover(conf) : TG_ENOMEM;
    if (rc == TG_OK) {
        rc = tg_webhook_http_init(conf, err, sizeof(err));
        if (rc != TG_OK)
            tg_log(TG_LOG_ERROR, "%s", err);
    }
    if (rc == TG_OK) {
        rc = tg_store_writer_start(conf->database, (int)conf->db_busy_timeout_ms, err,
                                   sizeof(err));
        if (rc != TG_OK)
            tg_log(TG_LOG_ERROR, "cannot open the database: %s", err);
    }
    if (rc == TG_OK)
        rc = start_workers(&srv);
    /* Unknown submissions (those just recovered among them) are reconciled in the
     * background while the workers serve, and expired idempotency records removed. */
    if (rc == TG_OK && tg_reconcile_start(conf) != TG_OK)
        tg_log(TG_LOG_WARN, "cannot start the background thread: run `taskgate reconcile`; "
               "expired idempotency records are not removed");
    /* What comes of the runs is followed on a thread of its own. */
    if (rc == TG_OK && tg_track_start(conf) != TG_OK)
        tg_log(TG_LOG_WARN, "cannot start the run tracker: runs' status changes are recorded "
               "from webhooks alone");
    if (rc == TG_OK) {
        tg_log(TG_LOG_INFO, "taskgate serving on %s with %ld threads, upstream %s",
               activated ? "the socket systemd passed" : conf->listen, conf->threads,
               conf->upstream_url);
        int sig = 0;
        do {
            sigwait(&sigs, &sig);
        } while (sig == SIGHUP);
        tg_log(TG_LOG_INFO, "signal %d: finishing requests in flight", sig);
    }
    if (srv.slots != NULL)
        stop_and_join(&srv);
    tg_reconcile_stop();
    tg_track_stop();
    tg_webhook_http_done();
    tg_store_writer_stop();
    free(srv.slots);
    close(srv.fd);
    if (!activated)
        tg_fcgi_unlink(conf->listen, &sock); /* only if it is still ours */
    tg_store_claim_release(claim);
    tg_upstream_global_cleanup();
    if (rc == TG_OK)
        tg_log(TG_LOG_INFO, "stopped");
    return rc == TG_OK ? 0 : 1;
}
