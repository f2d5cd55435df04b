/* tg_sim_webhook.c: the simulator's webhooks, as Parallel sends them: a run that asked for
 * task_run.status deliveries gets one POST when it completes or fails, body {"timestamp",
 * "type", "data": the TaskRun}, signed by the Standard Webhooks scheme with every
 * --webhook-secret (headers webhook-id, webhook-timestamp, webhook-signature). A delivery
 * answered with anything but a 2xx (or not at all) is sent again after 5 s, then 10 s,
 * doubling, for up to 48 hours. One thread sends them in turn; /_sim/webhooks lists them
 * and /_sim/webhooks/resend sends one again at once, with its own id, as a retry does. */
#include "tg_sim.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tg_webhook_sig.h"

#define RETRY_FIRST_MS 5000LL
#define RETRY_MAX_MS (24LL * 3600 * 1000)     /* the longest pause between two attempts */
#define GIVE_UP_MS (48LL * 3600 * 1000)       /* attempts stop this long after the first */
#define IO_TIMEOUT_S 10                       /* to connect, send, and read the answer */
#define SIGNATURES_MAX (TG_WEBHOOK_SECRETS_MAX * 52)

/* One delivery and what became of it; every field under sim_lock. */
struct delivery {
    char id[40];        /* msg_<32 hex>: the same for every attempt */
    char *url;
    char *run_id;
    char *body;
    long attempts;
    int status;         /* the last attempt's HTTP status, 0 when it got no answer */
    int delivered;      /* a 2xx came */
    long long first_ms; /* monotonic ms of the first attempt's due time */
    long long next_ms;  /* when the next attempt is due; -1: none (delivered, given up or
                           being sent) */
};

static struct delivery *list;
static size_t nlist, caplist;
static pthread_cond_t due = PTHREAD_COND_INITIALIZER; /* with sim_lock: a delivery is due */
static struct tg_webhook_secret secrets[TG_WEBHOOK_SECRETS_MAX];
static size_t nsecrets;
static int quiet;

/* ---- sending ------------------------------------------------------------------------- */

/* Splits an http:// URL into host, port and path; -1 when it is not one. */
static int split_url(const char *url, char *host, size_t hsize, char *port, size_t psize,
                     const char **path)
{
    const char *h = url + 7, *end, *colon;
    size_t hlen;

    if (strncmp(url, "http://", 7) != 0)
        return -1;
    end = h + strcspn(h, "/?");
    *path = *end != '\0' ? end : "/";
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));

        if (close == NULL)
            return -1;
        hlen = (size_t)(close - h - 1);
        h++;
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        hlen = (size_t)((colon != NULL ? colon : end) - h);
    }
    if (hlen == 0 || hlen >= hsize)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, psize, "%.*s", colon != NULL ? (int)(end - colon - 1) : 2,
             colon != NULL ? colon + 1 : "80");
    return port[0] != '\0' ? 0 : -1;
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct timeval tv = {IO_TIMEOUT_S, 0};
    int fd = -1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        /* On Linux the send timeout bounds connect() too. */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The status of the answer's status line, read from fd; 0 when there is none. */
static int read_status(int fd)
{
    char buf[512];
    size_t got = 0;
    int status = 0;

    while (got < sizeof buf - 1 && memchr(buf, '\n', got) == NULL) {
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    if (strncmp(buf, "HTTP/1.", 7) != 0 || sscanf(buf + 8, " %3d", &status) != 1)
        return 0;
    return status;
}

/* The webhook-signature value for (id, timestamp, body): one v1 signature per secret,
 * space-separated; "" without secrets (an unsigned delivery). */
static void sign_all(const char *id, const char *timestamp, const char *body, char *out,
                     size_t size)
{
    size_t used = 0, i;

    out[0] = '\0';
    for (i = 0; i < nsecrets; i++) {
        char one[64];

        if (tg_webhook_sign(&secrets[i], id, timestamp, body, strlen(body), one,
                            sizeof one) != 0)
            continue;
        used += (size_t)snprintf(out + used, size - used, "%s%s", used > 0 ? " " : "", one);
        if (used >= size)
            break;
    }
}

/* One attempt: POSTs body to url, signed now. Returns the answer's status, 0 for none. */
static int post(const char *url, const char *id, const char *body)
{
    char host[256], port[16], timestamp[24], sig[SIGNATURES_MAX + 1];
    const char *path;
    struct sim_buf req = {0};
    int fd, status = 0;

    if (split_url(url, host, sizeof host, port, sizeof port, &path) != 0)
        return 0;
    snprintf(timestamp, sizeof timestamp, "%lld", (long long)time(NULL));
    sign_all(id, timestamp, body, sig, sizeof sig);
    req.max = strlen(body) + 4096;
    sim_buf_addf(&req, "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nUser-Agent: tg_sim webhooks\r\nwebhook-id: %s\r\n"
                 "webhook-timestamp: %s\r\n", path, host, port, strlen(body), id, timestamp);
    if (sig[0] != '\0')
        sim_buf_addf(&req, "webhook-signature: %s\r\n", sig);
    sim_buf_adds(&req, "Connection: close\r\n\r\n");
    sim_buf_adds(&req, body);
    fd = connect_to(host, port);
    if (fd >= 0 && send_all(fd, req.p, req.len) == 0)
        status = read_status(fd);
    if (fd >= 0)
        close(fd);
    sim_buf_free(&req);
    if (!quiet)
        fprintf(stderr, "tg_sim: webhook %s -> %s: %d\n", id, url, status);
    return status;
}

/* Notes the outcome of an attempt on delivery i; call under sim_lock. */
static void attempted(size_t i, int status)
{
    struct delivery *d = &list[i];
    long long now = sim_mono_ms(), pause = RETRY_FIRST_MS;
    long k;

    d->attempts++;
    d->status = status;
    if (status >= 200 && status < 300)
        d->delivered = 1;
    if (d->delivered) {
        d->next_ms = -1;
        return;
    }
    for (k = 1; k < d->attempts && pause < RETRY_MAX_MS; k++)
        pause *= 2;
    d->next_ms = now - d->first_ms + pause <= GIVE_UP_MS ? now + pause : -1;
}

static void *sender_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&sim_lock);
    for (;;) {
        long long now = sim_mono_ms(), soonest = -1;
        size_t i, pick = nlist;
        char *url, *body;
        char id[40];
        int status;

        for (i = 0; i < nlist; i++) {
            if (list[i].next_ms >= 0 && (soonest < 0 || list[i].next_ms < soonest)) {
                soonest = list[i].next_ms;
                pick = i;
            }
        }
        if (pick == nlist) {
            pthread_cond_wait(&due, &sim_lock);
            continue;
        }
        if (soonest > now) {
            struct timespec until;
            long long wait = soonest - now;

            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += (time_t)(wait / 1000);
            until.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&due, &sim_lock, &until);
            continue;
        }
        list[pick].next_ms = -1;
        url = sim_xstrdup(list[pick].url);
        body = sim_xstrdup(list[pick].body);
        memcpy(id, list[pick].id, sizeof id);
        pthread_mutex_unlock(&sim_lock);
        status = post(url, id, body);
        free(url);
        free(body);
        pthread_mutex_lock(&sim_lock);
        attempted(pick, status);
    }
    return NULL;
}

void sim_webhook_init(char **texts, size_t n, int be_quiet)
{
    pthread_t tid;
    size_t i;

    quiet = be_quiet;
    for (i = 0; i < n; i++) {
        if (nsecrets == TG_WEBHOOK_SECRETS_MAX ||
            tg_webhook_secret_parse(texts[i], &secrets[nsecrets]) != 0) {
            fprintf(stderr, "tg_sim: --webhook-secret: not a usable secret (at most %d, "
                            "whsec_<base64> or plain text)\n", TG_WEBHOOK_SECRETS_MAX);
            exit(2);
        }
        nsecrets++;
    }
    if (pthread_create(&tid, NULL, sender_main, NULL) != 0) {
        fprintf(stderr, "tg_sim: cannot start the webhook thread\n");
        exit(1);
    }
    pthread_detach(tid);
}

void sim_webhook_queue(const char *url, const char *run_id, char *body)
{
    struct delivery *d;

    if (nlist == caplist) {
        caplist = caplist ? caplist * 2 : 64;
        list = sim_xrealloc(list, caplist * sizeof *list);
    }
    d = &list[nlist++];
    memset(d, 0, sizeof *d);
    sim_random_id(d->id, sizeof d->id, "msg_");
    d->url = sim_xstrdup(url);
    d->run_id = sim_xstrdup(run_id);
    d->body = body;
    d->first_ms = sim_mono_ms();
    d->next_ms = d->first_ms;
    pthread_cond_signal(&due);
}

/* ---- /_sim/webhooks ------------------------------------------------------------------- */

static void dump(struct sim_response *resp)
{
    struct sim_buf b = {0};
    int rc = sim_buf_adds(&b, "[");
    size_t i;

    pthread_mutex_lock(&sim_lock);
    for (i = 0; i < nlist && rc == 0; i++) {
        const struct delivery *d = &list[i];

        rc = sim_buf_addf(&b, "%s{\"id\":\"%s\",\"run_id\":\"%s\",\"url\":", i > 0 ? "," : "",
                          d->id, d->run_id);
        if (rc == 0)
            rc = sim_buf_add_json_string(&b, d->url, strlen(d->url));
        if (rc == 0)
            rc = sim_buf_addf(&b, ",\"attempts\":%ld,\"status\":%d,\"delivered\":%s,"
                              "\"pending\":%s,\"body\":%s}", d->attempts, d->status,
                              d->delivered ? "true" : "false",
                              d->next_ms >= 0 ? "true" : "false", d->body);
    }
    pthread_mutex_unlock(&sim_lock);
    if (rc == 0)
        rc = sim_buf_adds(&b, "]");
    if (rc != 0) {
        sim_buf_free(&b);
        sim_response_error(resp, 500, "Webhook list too large to dump");
        return;
    }
    resp->status = 200;
    resp->body = b.p;
    resp->body_len = b.len;
}

/* POST /_sim/webhooks/resend {"id": ID}: one more attempt of that delivery, now, on this
 * thread; answers {"id", "status"} with the receiver's status (0: no answer). */
static void resend(const struct sim_request *req, struct sim_response *resp)
{
    struct json_object *id = NULL, *o;
    char *url = NULL, *body = NULL, want[40];
    size_t i;
    int status;

    if (req->json == NULL || !json_object_object_get_ex(req->json, "id", &id) ||
        !json_object_is_type(id, json_type_string) ||
        strlen(json_object_get_string(id)) >= sizeof want) {
        sim_response_error(resp, 400, "the body must be {\"id\": a delivery's id}");
        return;
    }
    snprintf(want, sizeof want, "%s", json_object_get_string(id));
    pthread_mutex_lock(&sim_lock);
    for (i = 0; i < nlist && strcmp(list[i].id, want) != 0; i++)
        continue;
    if (i < nlist) {
        url = sim_xstrdup(list[i].url);
        body = sim_xstrdup(list[i].body);
    }
    pthread_mutex_unlock(&sim_lock);
    if (url == NULL) {
        sim_response_error(resp, 404, "no such delivery");
        return;
    }
    status = post(url, want, body);
    free(url);
    free(body);
    pthread_mutex_lock(&sim_lock);
    list[i].attempts++;
    list[i].status = status;
    if (status >= 200 && status < 300) {
        list[i].delivered = 1;
        list[i].next_ms = -1;
    }
    pthread_mutex_unlock(&sim_lock);
    o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(want));
    json_object_object_add(o, "status", json_object_new_int(status));
    sim_response_json(resp, 200, o);
}

void sim_webhook_ctl(const struct sim_request *req, struct sim_response *resp)
{
    if (strcmp(req->path, "/_sim/webhooks") == 0 && strcmp(req->method, "GET") == 0)
        dump(resp);
    else if (strcmp(req->path, "/_sim/webhooks/resend") == 0 &&
             strcmp(req->method, "POST") == 0)
        resend(req, resp);
    else
        sim_response_error(resp, 404, "Not Found");
}
