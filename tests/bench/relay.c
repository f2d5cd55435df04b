/* The benchmark's bare FastCGI relay (column F): what nginx -> FastCGI -> libcurl costs
 * with none of taskgate's own work. Each of its threads accepts a request, reads the body,
 * POSTs it to one fixed upstream URL with the team's key on its own kept-alive libcurl
 * handle, and returns the upstream's status and body. No JSON, no database, no auth.
 *
 *   tg_bench_relay SOCKET URL KEY [THREADS]
 *
 * It listens on the unix socket SOCKET (mode 0666, for nginx's workers) until killed. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <fcgiapp.h>

#define MAX_BODY (1L << 20)

struct buf {
    char *data;
    size_t len, cap;
};

struct relay {
    int sock;
    const char *url;
    struct curl_slist *headers;
};

/* Appends n bytes to b, growing it; 0, or -1 when out of memory. */
static int buf_add(struct buf *b, const char *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    return buf_add(arg, p, size * n) == 0 ? size * n : 0;
}

/* The request's body into body (reused between requests); 0, or -1 when it is too large
 * or out of memory. */
static int read_body(FCGX_Request *req, struct buf *body)
{
    const char *cl = FCGX_GetParam("CONTENT_LENGTH", req->envp);
    long len = cl != NULL ? strtol(cl, NULL, 10) : 0;
    body->len = 0;
    if (len < 0 || len > MAX_BODY)
        return -1;
    char chunk[16384];
    while ((long)body->len < len) {
        int got = FCGX_GetStr(chunk, (int)sizeof(chunk), req->in);
        if (got <= 0)
            break;
        if (buf_add(body, chunk, (size_t)got) != 0)
            return -1;
    }
    return 0;
}

static void answer(FCGX_Request *req, long status, const char *data, size_t len)
{
    char head[128]; /* libfcgi's own printf knows no %zu */
    int n = snprintf(head, sizeof(head), "Status: %ld\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n", status, len);
    FCGX_PutStr(head, n, req->out);
    FCGX_PutStr(data, (int)len, req->out);
}

/* One worker: its own easy handle, so that the connection to the upstream is kept. */
static void *worker(void *arg)
{
    const struct relay *r = arg;
    FCGX_Request req;
    CURL *c = curl_easy_init();
    struct buf body = {0}, out = {0};
    if (c == NULL || FCGX_InitRequest(&req, r->sock, 0) != 0) {
        fprintf(stderr, "tg_bench_relay: cannot set up a worker\n");
        exit(1);
    }
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    while (FCGX_Accept_r(&req) == 0) {
        long status = 0;
        out.len = 0;
        if (read_body(&req, &body) != 0) {
            answer(&req, 413, "{}", 2);
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.len ? body.data : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body.len);
            if (curl_easy_perform(c) == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            if (status == 0)
                answer(&req, 502, "{}", 2);
            else
                answer(&req, status, out.data ? out.data : "", out.len);
        }
        FCGX_Finish_r(&req);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: tg_bench_relay SOCKET URL KEY [THREADS]\n");
        return 2;
    }
    char *end = NULL;
    long threads = argc == 5 ? strtol(argv[4], &end, 10) : 16;
    if (threads < 1 || threads > 1024 || (end != NULL && *end != '\0')) {
        fprintf(stderr, "tg_bench_relay: THREADS must be 1 to 1024\n");
        return 2;
    }
    char key[512];
    if (snprintf(key, sizeof(key), "x-api-key: %s", argv[3]) >= (int)sizeof(key)) {
        fprintf(stderr, "tg_bench_relay: KEY is too long\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || FCGX_Init() != 0)
        return 1;
    struct relay r = {.url = argv[2]};
    r.headers = curl_slist_append(NULL, "Content-Type: application/json");
    r.headers = curl_slist_append(r.headers, key);
    r.headers = curl_slist_append(r.headers, "Expect:");
    unlink(argv[1]);
    mode_t old = umask(0);
    r.sock = FCGX_OpenSocket(argv[1], 1024);
    umask(old);
    if (r.sock < 0 || r.headers == NULL) {
        fprintf(stderr, "tg_bench_relay: cannot listen on %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    pthread_t *t = calloc((size_t)threads, sizeof(*t));
    if (t == NULL)
        return 1;
    for (long i = 0; i < threads; i++) {
        if (pthread_create(&t[i], NULL, worker, &r) != 0) {
            fprintf(stderr, "tg_bench_relay: cannot start thread %ld\n", i);
            return 1;
        }
    }
    for (long i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    return 0;
}
