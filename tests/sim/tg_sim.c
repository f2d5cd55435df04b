/* tg_sim.c: the upstream simulator, a stand-in for api.parallel.ai in tests. This file is
 * its command line and its server: one thread per connection, requests routed to the API
 * (tg_sim_api.c) or the /_sim control side (tg_sim_ctl.c), faults carried out. */
#include "tg_sim.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define THREAD_STACK ((size_t)1024 * 1024)

struct options {
    const char *host;
    long port;
    const char *port_file;
    char **keys;
    size_t nkeys;
    char **secrets;
    size_t nsecrets;
    long latency_ms;
    long run_ms;
    long stream_interval_ms;
    int quiet;
};

static struct options opt = {"127.0.0.1", 0, NULL, NULL, 0, NULL, 0, 0, 200, 0, 0};

pthread_mutex_t sim_lock = PTHREAD_MUTEX_INITIALIZER;

struct conn {
    struct sim_conn io;
    long hang_ms; /* how long a "hang" fault keeps the connection */
    long id;      /* 1, 2, ... in accept order (sim_request.conn_id) */
    long served;  /* requests read on it so far */
};

/* What happens to the connection after a request. */
enum after { AFTER_KEEP, AFTER_CLOSE, AFTER_LINGER, AFTER_RESET, AFTER_HANG };

/* ---- serving ------------------------------------------------------------------------- */

/* Makes resp a 200 whose body is cut short: no longer JSON (for "malformed" faults). */
static void truncate_body(struct sim_response *resp)
{
    static const char fake[] = "{\"status\":{\"num_task_runs\":1,\"task_run_status_co";
    size_t cut;

    resp->status = 200;
    if (resp->body == NULL || resp->body_len < 2) {
        free(resp->body);
        resp->body = sim_xstrdup(fake);
        resp->body_len = sizeof fake - 1;
        return;
    }
    cut = resp->body_len / 2;
    while (cut > 1 && ((unsigned char)resp->body[cut] & 0xC0) == 0x80)
        cut--; /* end on a character boundary: broken JSON, but valid UTF-8 */
    resp->body[cut] = '\0';
    resp->body_len = cut;
}

/* Makes resp the answer of a "status" fault. */
static void fault_status(const struct sim_fault *f, struct sim_response *resp)
{
    char msg[96];

    sim_response_free(resp);
    if (f->body != NULL) {
        resp->status = f->status;
        resp->body = sim_xstrdup(f->body);
        resp->body_len = strlen(f->body);
    } else if (f->status == 422) {
        sim_response_detail(resp, "Injected validation error", "value_error", -1);
    } else {
        snprintf(msg, sizeof msg, "Injected fault: %d %s", f->status, tg_http_reason(f->status));
        sim_response_error(resp, f->status, msg);
    }
    if (f->retry_after != NULL)
        resp->retry_after = sim_xstrdup(f->retry_after);
}

/* Applies fault f to req. Returns AFTER_KEEP when resp is to be sent as usual, or
 * AFTER_RESET / AFTER_HANG when nothing is to be sent. */
static enum after run_fault(struct conn *c, const struct sim_request *req,
                            const struct sim_fault *f, struct sim_response *resp)
{
    if (f->kind == SIM_FAULT_DELAY && !f->apply)
        sim_sleep_ms(f->delay_ms);
    if (f->apply)
        sim_api_handle(req, resp);
    switch (f->kind) {
    case SIM_FAULT_STATUS:
        fault_status(f, resp);
        break;
    case SIM_FAULT_DELAY:
        if (f->apply)
            sim_sleep_ms(f->delay_ms);
        else
            sim_api_handle(req, resp);
        break;
    case SIM_FAULT_MALFORMED:
        truncate_body(resp);
        break;
    case SIM_FAULT_RESET:
        return AFTER_RESET;
    case SIM_FAULT_HANG:
        c->hang_ms = f->delay_ms;
        return AFTER_HANG;
    }
    return AFTER_KEEP;
}

static void log_line(const struct sim_request *req, int status, const struct sim_fault *f)
{
    if (opt.quiet)
        return;
    fprintf(stderr, "tg_sim: %s %s%s%s -> %d%s%s\n", req->method, req->path,
            req->query[0] ? "?" : "", req->query, status, f ? " fault " : "",
            f ? sim_fault_name(f->kind) : "");
}

/* Sends resp as the answer to the request logged as seq. */
static enum after send_answer(struct conn *c, const struct sim_request *req,
                              const struct sim_response *resp, long seq, int keep)
{
    /* Logged before sending, so that a client reading the log right after the answer
     * finds the status there. */
    sim_log_status(seq, resp->status);
    if (sim_http_send(&c->io, resp, keep, strcmp(req->method, "HEAD") == 0) != 0) {
        sim_log_status(seq, 0);
        return AFTER_CLOSE;
    }
    return keep ? AFTER_KEEP : AFTER_CLOSE;
}

/* Serves a server-sent event stream, with fault f (or NULL): a status fault answers
 * instead, a delay waits first, "malformed" breaks the first event's JSON, and reset or
 * hang act before the stream (apply false) or right after its first event (apply true). */
static enum after serve_stream(struct conn *c, const struct sim_request *req, int keep,
                               long seq, const struct sim_fault *f, int *status)
{
    struct sim_response resp = {0, NULL, 0, NULL};
    enum sim_cut cut = SIM_CUT_NONE;
    enum sim_streamed how;
    enum after after;

    *status = 0;
    if (f != NULL && f->kind == SIM_FAULT_DELAY)
        sim_sleep_ms(f->delay_ms);
    if (f != NULL && f->kind == SIM_FAULT_MALFORMED)
        cut = SIM_CUT_MALFORMED;
    if (f != NULL && (f->kind == SIM_FAULT_RESET || f->kind == SIM_FAULT_HANG)) {
        c->hang_ms = f->delay_ms;
        if (!f->apply)
            return f->kind == SIM_FAULT_RESET ? AFTER_RESET : AFTER_HANG;
        cut = SIM_CUT_STOP;
    }
    if (f != NULL && f->kind == SIM_FAULT_STATUS) {
        fault_status(f, &resp);
        how = SIM_STREAM_ANSWER;
    } else {
        how = sim_stream_handle(&c->io, req, keep, cut, seq, &resp);
    }
    if (how == SIM_STREAM_ANSWER) {
        *status = resp.status;
        after = send_answer(c, req, &resp, seq, keep);
    } else {
        *status = 200;
        after = how == SIM_STREAM_DONE ? AFTER_KEEP : how == SIM_STREAM_CLOSE ? AFTER_CLOSE
              : f->kind == SIM_FAULT_RESET ? AFTER_RESET : AFTER_HANG;
    }
    sim_response_free(&resp);
    return after;
}

/* Serves one API request: log, latency, fault or normal answer. */
static enum after serve_api(struct conn *c, const struct sim_request *req, int keep)
{
    struct sim_response resp = {0, NULL, 0, NULL};
    struct sim_fault f;
    enum after after = AFTER_KEEP;
    long seq = sim_log_request(req);
    int faulted, status = 0;

    sim_sleep_ms(opt.latency_ms);
    faulted = sim_fault_take(req, &f);
    if (sim_api_is_stream(sim_api_classify(req))) {
        after = serve_stream(c, req, keep, seq, faulted ? &f : NULL, &status);
    } else {
        if (faulted)
            after = run_fault(c, req, &f, &resp);
        else
            sim_api_handle(req, &resp);
        if (after == AFTER_KEEP)
            after = send_answer(c, req, &resp, seq, keep);
        status = resp.status;
    }
    log_line(req, after == AFTER_RESET || after == AFTER_HANG ? 0 : status,
             faulted ? &f : NULL);
    sim_response_free(&resp);
    if (faulted)
        sim_fault_free(&f);
    return after;
}

static int is_control(const char *path)
{
    return strncmp(path, "/_sim/", 6) == 0 || strcmp(path, "/_sim") == 0;
}

static enum after serve(struct conn *c, const struct sim_request *req, int keep)
{
    struct sim_response resp = {0, NULL, 0, NULL};
    int rc;

    if (!is_control(req->path))
        return serve_api(c, req, keep);
    sim_ctl_handle(req, &resp);
    rc = sim_http_send(&c->io, &resp, keep, strcmp(req->method, "HEAD") == 0);
    sim_response_free(&resp);
    return rc == 0 && keep ? AFTER_KEEP : AFTER_CLOSE;
}

/* Answers a request that could not be read, then the connection is to be closed. */
static void answer_unreadable(struct conn *c, enum sim_rd rc, const struct sim_request *req)
{
    struct sim_response resp = {0, NULL, 0, NULL};
    int status = rc == SIM_RD_TOOBIG ? 413 : rc == SIM_RD_HEAD_TOOBIG ? 431
               : rc == SIM_RD_UNSUPPORTED ? 501 : 400;

    if (status == 413 && req->path != NULL && !is_control(req->path))
        sim_log_status(sim_log_request(req), 413);
    sim_response_error(&resp, status, status == 413 ? "Request body too large (64 MiB at most)"
                                      : status == 501 ? "Transfer-Encoding not supported"
                                                      : tg_http_reason(status));
    sim_http_send(&c->io, &resp, 0, 0);
    sim_response_free(&resp);
}

/* ---- connections --------------------------------------------------------------------- */

static long elapsed_ms(const struct timespec *since)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* Reads and drops what the client sends until it closes the connection, an error occurs,
 * ms pass, or (when max_bytes > 0) max_bytes were dropped. */
static void drain(int fd, long ms, size_t max_bytes)
{
    struct timespec start;
    char sink[16384];
    size_t dropped = 0;
    long left;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t n;

        left = ms - elapsed_ms(&start);
        if (left <= 0)
            return;
        if (poll(&pfd, 1, left > 1000 ? 1000 : (int)left) <= 0)
            continue;
        n = recv(fd, sink, sizeof sink, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return;
        if (n > 0)
            dropped += (size_t)n;
        if (max_bytes > 0 && dropped >= max_bytes)
            return;
    }
}

/* Closes the connection the way the last request asked for. */
static void conn_close(struct conn *c, enum after after)
{
    struct linger lg = {1, 0};

    if (after == AFTER_RESET) {
        setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    } else if (after == AFTER_HANG) {
        drain(c->io.fd, c->hang_ms, 0);
    } else if (after == AFTER_LINGER) {
        /* Let the client read the error before the close; unread input would turn the
         * close into a reset that may destroy the answer in flight. */
        shutdown(c->io.fd, SHUT_WR);
        drain(c->io.fd, 2000, SIM_BODY_MAX);
    }
    close(c->io.fd);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    enum after after = AFTER_KEEP;

    while (after == AFTER_KEEP) {
        struct sim_request req;
        int keep = 0;
        enum sim_rd rc;

        memset(&req, 0, sizeof req);
        rc = sim_http_read(&c->io, &req, &keep);
        if (rc == SIM_RD_OK) {
            req.conn_id = c->id;
            req.conn_nth = ++c->served;
            after = serve(c, &req, keep);
        } else if (rc == SIM_RD_EOF || rc == SIM_RD_IOERR) {
            after = AFTER_CLOSE;
        } else {
            answer_unreadable(c, rc, &req);
            after = AFTER_LINGER;
        }
        sim_request_free(&req);
    }
    conn_close(c, after);
    free(c->io.buf);
    free(c);
    return NULL;
}

static void accept_loop(int lfd)
{
    pthread_attr_t attr;
    long accepted = 0;
    int one = 1;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    for (;;) {
        struct conn *c;
        pthread_t tid;
        int fd = accept(lfd, NULL, NULL);

        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED)
                sim_sleep_ms(20); /* out of descriptors or memory: let connections end */
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c = sim_xmalloc(sizeof *c);
        memset(c, 0, sizeof *c);
        c->io.fd = fd;
        c->id = ++accepted;
        c->io.buf = sim_xmalloc(SIM_CONN_BUF);
        if (pthread_create(&tid, &attr, conn_main, c) != 0) {
            close(fd);
            free(c->io.buf);
            free(c);
            sim_sleep_ms(20);
        }
    }
}

/* ---- start-up ------------------------------------------------------------------------ */

/* Binds and listens on host:port; returns the socket and the bound port, or -1. */
static int listen_on(const char *host, long port, long *bound)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    char service[16];
    int fd = -1, one = 1, rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof service, "%ld", port);
    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "tg_sim: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
            rc = errno;
            close(fd);
            fd = -1;
            errno = rc;
        }
    }
    freeaddrinfo(res);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
        fprintf(stderr, "tg_sim: cannot listen on %s:%ld: %s\n", host, port, strerror(errno));
        return -1;
    }
    *bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                      : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* Writes the port to path through path.tmp and a rename, so readers never see half. */
static int write_port_file(const char *path, long port)
{
    size_t n = strlen(path) + 5;
    char *tmp = sim_xmalloc(n);
    FILE *f;
    int rc = -1;

    snprintf(tmp, n, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f != NULL) {
        int wrote = fprintf(f, "%ld\n", port) > 0;

        if (fclose(f) == 0 && wrote && rename(tmp, path) == 0)
            rc = 0;
    }
    if (rc != 0) {
        fprintf(stderr, "tg_sim: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: tg_sim [--host 127.0.0.1] [--port N] [--port-file PATH] [--key KEY]...\n"
               "              [--latency-ms N] [--run-ms N|manual] [--stream-interval-ms N]\n"
               "              [--webhook-secret SECRET]... [--quiet]\n"
               "A stand-in for Parallel's Task Group API, for tests. --port 0 (the default)\n"
               "binds a free port; --port-file receives it. Without --key every key is valid.\n"
               "Runs complete --run-ms after they were added (200; 'manual': only through\n"
               "POST /_sim/runs/complete), or fail when their metadata says sim_outcome\n"
               "\"failed\" (sim_error: the message) or their input starts with \"fail:\";\n"
               "event streams pause --stream-interval-ms (0) between two events. A run with\n"
               "a webhook for task_run.status is POSTed when it completes or fails, signed\n"
               "with every --webhook-secret (whsec_<base64> or text; none: unsigned).\n");
}

static void usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "tg_sim: %s: %s\n", what, arg);
    usage(stderr);
    exit(2);
}

static long parse_num(const char *name, const char *s, long max)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v > max)
        usage_error(name, "expected a number in range");
    return v;
}

/* Fills opt from the command line; exits 2 on a usage error. */
static void parse_args(int argc, char **argv)
{
    int i;

    opt.keys = sim_xmalloc((size_t)argc * sizeof *opt.keys);
    opt.secrets = sim_xmalloc((size_t)argc * sizeof *opt.secrets);
    for (i = 1; i < argc; i++) {
        char *arg = argv[i], *eq = strchr(arg, '='), *val;
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(arg, "--quiet") == 0) {
            opt.quiet = 1;
            continue;
        }
        if (eq == NULL && i + 1 >= argc)
            usage_error("option needs a value", arg);
        val = eq ? eq + 1 : argv[++i];
        if (nlen == 6 && strncmp(arg, "--host", nlen) == 0 && val[0] != '\0')
            opt.host = val;
        else if (nlen == 6 && strncmp(arg, "--port", nlen) == 0)
            opt.port = parse_num(arg, val, 65535);
        else if (nlen == 11 && strncmp(arg, "--port-file", nlen) == 0 && val[0] != '\0')
            opt.port_file = val;
        else if (nlen == 5 && strncmp(arg, "--key", nlen) == 0 && val[0] != '\0')
            opt.keys[opt.nkeys++] = val;
        else if (nlen == 12 && strncmp(arg, "--latency-ms", nlen) == 0)
            opt.latency_ms = parse_num(arg, val, 3600000L);
        else if (nlen == 8 && strncmp(arg, "--run-ms", nlen) == 0)
            opt.run_ms = strcmp(val, "manual") == 0 ? -1 : parse_num(arg, val, 86400000L);
        else if (nlen == 20 && strncmp(arg, "--stream-interval-ms", nlen) == 0)
            opt.stream_interval_ms = parse_num(arg, val, 3600000L);
        else if (nlen == 16 && strncmp(arg, "--webhook-secret", nlen) == 0 && val[0] != '\0')
            opt.secrets[opt.nsecrets++] = val;
        else
            usage_error("unknown option or empty value", arg);
    }
}

/* Waits for SIGTERM or SIGINT (blocked in every other thread) and exits 0. */
static void *signal_main(void *arg)
{
    const sigset_t *set = arg;
    int sig = 0;

    while (sigwait(set, &sig) != 0)
        continue;
    if (!opt.quiet)
        fprintf(stderr, "tg_sim: signal %d, exiting\n", sig);
    exit(0);
}

int main(int argc, char **argv)
{
    static sigset_t set;
    pthread_t tid;
    long port = 0;
    int lfd;

    parse_args(argc, argv);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_create(&tid, NULL, signal_main, &set) != 0) {
        fprintf(stderr, "tg_sim: cannot start the signal thread\n");
        return 1;
    }
    pthread_detach(tid);
    sim_api_init(opt.keys, opt.nkeys, opt.run_ms, opt.stream_interval_ms);
    sim_webhook_init(opt.secrets, opt.nsecrets, opt.quiet);
    lfd = listen_on(opt.host, opt.port, &port);
    if (lfd < 0)
        return 1;
    if (opt.port_file != NULL && write_port_file(opt.port_file, port) != 0)
        return 1;
    fprintf(stderr, strchr(opt.host, ':') ? "tg_sim listening on [%s]:%ld\n"
                                          : "tg_sim listening on %s:%ld\n", opt.host, port);
    accept_loop(lfd);
    return 0;
}
