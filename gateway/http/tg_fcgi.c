/* The FastCGI adapter over libfcgi (see tg_fcgi.h). */
#include "tg_fcgi.h"

#include <errno.h>
#include <stddef.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "tg_core.h"

struct tg_fcgi {
    FCGX_Request req;
};

int tg_fcgi_init(void)
{
    return FCGX_Init() == 0 ? TG_OK : TG_ERR;
}

static int is_unix_address(const char *address)
{
    return strchr(address, ':') == NULL || address[0] == '/' || address[0] == '.';
}

/* Whether something accepts connections on the unix socket at path: a live daemon's
 * socket must never be unlinked (its clients would be taken over by whoever binds next). */
static int socket_answers(const char *path)
{
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof(sa.sun_path))
        return 0;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    /* Refused (nobody listens) or gone: stale. Anything else (answered, or a full backlog
     * that made connect wait) means a listener. */
    return rc == 0 || (errno != ECONNREFUSED && errno != ENOENT);
}

/* The group's id into *gid; TG_OK or TG_ERR with a message. */
static int group_id(const char *group, gid_t *gid, char *err, size_t errlen)
{
    struct group gr, *found = NULL;
    char buf[4096];
    if (getgrnam_r(group, &gr, buf, sizeof(buf), &found) != 0 || found == NULL) {
        snprintf(err, errlen, "group '%s' (config key `socket_group`) does not exist", group);
        return TG_ERR;
    }
    *gid = gr.gr_gid;
    return TG_OK;
}

int tg_fcgi_listen(const char *address, int backlog, long mode, const char *group,
                   struct tg_fcgi_sock *sock, char *err, size_t errlen)
{
    memset(sock, 0, sizeof(*sock));
    int is_unix = is_unix_address(address);
    gid_t gid = (gid_t)-1;
    if (is_unix && group != NULL && *group != '\0' && group_id(group, &gid, err, errlen) != TG_OK)
        return -1;
    if (is_unix) {
        struct stat st;
        if (lstat(address, &st) == 0 && S_ISSOCK(st.st_mode)) {
            if (socket_answers(address)) {
                snprintf(err, errlen, "another process is listening on %s (another taskgate "
                         "daemon?): refusing to replace its socket", address);
                return -1;
            }
            unlink(address);
        }
    }
    /* The socket is born with at most mode's permissions: between bind and chmod nobody
     * else can connect. Start-up is single-threaded, so the umask change is safe. */
    mode_t old = 0;
    if (is_unix)
        old = umask((mode_t)(~mode & 0777));
    int fd = FCGX_OpenSocket(address, backlog);
    int saved = errno;
    if (is_unix)
        umask(old);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", address, strerror(saved));
        return -1;
    }
    if (!is_unix)
        return fd;
    struct stat st;
    const char *what = NULL;
    if (gid != (gid_t)-1 && chown(address, (uid_t)-1, gid) != 0)
        what = "set the group of";
    else if (chmod(address, (mode_t)mode) != 0)
        what = "set the permissions of";
    else if (stat(address, &st) != 0)
        what = "read back";
    if (what != NULL) {
        snprintf(err, errlen, "cannot %s %s: %s", what, address, strerror(errno));
        close(fd);
        unlink(address);
        return -1;
    }
    sock->dev = st.st_dev;
    sock->ino = st.st_ino;
    sock->owned = 1;
    return fd;
}

void tg_fcgi_unlink(const char *address, const struct tg_fcgi_sock *sock)
{
    struct stat st;
    if (!sock->owned || !is_unix_address(address))
        return;
    if (lstat(address, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == sock->dev &&
        st.st_ino == sock->ino)
        unlink(address);
}

struct tg_fcgi *tg_fcgi_new(int fd)
{
    struct tg_fcgi *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    if (FCGX_InitRequest(&f->req, fd, 0) != 0) {
        free(f);
        return NULL;
    }
    return f;
}

void tg_fcgi_free(struct tg_fcgi *f)
{
    if (f == NULL)
        return;
    FCGX_Free(&f->req, 0);
    free(f);
}

int tg_fcgi_accept(struct tg_fcgi *f)
{
    return FCGX_Accept_r(&f->req) == 0 ? TG_OK : TG_ERR;
}

static const char *param(struct tg_fcgi *f, struct tg_pool *pool, const char *name)
{
    const char *v = FCGX_GetParam(name, f->req.envp);
    return v != NULL ? tg_pool_strdup(pool, v) : NULL;
}

static int read_body(struct tg_fcgi *f, struct tg_pool *pool, long max_body,
                     struct tg_request *req)
{
    const char *cl = FCGX_GetParam("CONTENT_LENGTH", f->req.envp);
    long len = 0;
    if (cl != NULL && *cl != '\0' && tg_parse_long(cl, 0, 0x7fffffffL, &len) != TG_OK)
        return TG_EINVAL;
    if (len > max_body)
        return TG_ETOOBIG;
    char *body = tg_pool_alloc(pool, (size_t)len + 1);
    if (body == NULL)
        return TG_ENOMEM;
    long got = 0;
    while (got < len) {
        int n = FCGX_GetStr(body + got, (int)(len - got), f->req.in);
        if (n <= 0)
            break;
        got += n;
    }
    /* The end of stdin, which nginx sends right after the body: once it has been read,
     * nothing more comes on this connection (tg_fcgi_finish). */
    if (got == len)
        (void)FCGX_GetChar(f->req.in);
    body[got] = '\0';
    req->body = body;
    req->body_len = (size_t)got;
    return TG_OK;
}

/* The FastCGI parameters a request carries, and the field of struct tg_request each fills
 * (NULL when nginx did not send it). */
static const struct {
    const char *name;
    size_t off;
} params[] = {
    {"REQUEST_METHOD", offsetof(struct tg_request, method)},
    {"DOCUMENT_URI", offsetof(struct tg_request, path)},
    {"QUERY_STRING", offsetof(struct tg_request, query)},
    {"CONTENT_TYPE", offsetof(struct tg_request, content_type)},
    {"HTTP_ACCEPT", offsetof(struct tg_request, accept)},
    {"REMOTE_ADDR", offsetof(struct tg_request, remote_addr)},
    {"REQUEST_ID", offsetof(struct tg_request, request_id)},
    {"HTTP_AUTHORIZATION", offsetof(struct tg_request, authorization)},
    {"HTTP_X_API_KEY", offsetof(struct tg_request, api_key)},
    {"HTTP_PARALLEL_BETA", offsetof(struct tg_request, parallel_beta)},
    {"HTTP_IDEMPOTENCY_KEY", offsetof(struct tg_request, idempotency_key)},
    {"HTTP_USER_AGENT", offsetof(struct tg_request, user_agent)},
    {"HTTP_X_STAINLESS_RETRY_COUNT", offsetof(struct tg_request, retry_count)},
    {"HTTP_WEBHOOK_ID", offsetof(struct tg_request, webhook_id)},
    {"HTTP_WEBHOOK_TIMESTAMP", offsetof(struct tg_request, webhook_timestamp)},
    {"HTTP_WEBHOOK_SIGNATURE", offsetof(struct tg_request, webhook_signature)},
};

int tg_fcgi_read(struct tg_fcgi *f, struct tg_pool *pool, long max_body,
                 struct tg_request *req)
{
    memset(req, 0, sizeof(*req));
    req->pool = pool;
    req->started_us = tg_mono_us();
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        const char **field = (const char **)((char *)req + params[i].off);
        *field = param(f, pool, params[i].name);
    }
    if (req->method == NULL)
        req->method = "GET";
    if (req->path == NULL)
        req->path = "/";
    if (req->query == NULL)
        req->query = "";
    if (req->request_id == NULL || *req->request_id == '\0') {
        char id[40];
        if (tg_random_id(id, sizeof(id), "req_", 16) == TG_OK)
            req->request_id = tg_pool_strdup(pool, id);
    }
    req->body = "";
    req->authorize = FCGX_GetParam("TASKGATE_AUTHORIZE", f->req.envp) != NULL;
    return read_body(f, pool, max_body, req);
}

/* Writes the CGI status line and headers. */
static int write_head(struct tg_fcgi *f, const struct tg_request *req,
                      const struct tg_response *resp, long long content_length)
{
    struct tg_buf head;
    tg_buf_init(&head, 16384);
    int status = resp->status != 0 ? resp->status : 500;
    tg_buf_printf(&head, "Status: %d %s\r\nContent-Type: %s\r\n", status,
                  tg_http_reason(status),
                  resp->content_type != NULL ? resp->content_type : "application/json");
    tg_buf_printf(&head, "Content-Length: %lld\r\n", content_length);
    if (req->request_id != NULL)
        tg_buf_printf(&head, "X-Request-Id: %s\r\n", req->request_id);
    int cache_set = 0; /* answers are not cached unless the handler said otherwise */
    for (int i = 0; i < resp->nheaders; i++) {
        tg_buf_printf(&head, "%s: %s\r\n", resp->header_name[i], resp->header_value[i]);
        cache_set |= strcasecmp(resp->header_name[i], "Cache-Control") == 0;
    }
    tg_buf_adds(&head, cache_set ? "\r\n" : "Cache-Control: no-store\r\n\r\n");
    int n = FCGX_PutStr(tg_buf_str(&head), (int)head.len, f->req.out);
    tg_buf_free(&head);
    return n < 0 ? TG_ERR : TG_OK;
}

void tg_fcgi_write(struct tg_fcgi *f, const struct tg_request *req,
                   const struct tg_response *resp)
{
    write_head(f, req, resp, (long long)resp->body.len);
    if (strcmp(req->method, "HEAD") != 0 && resp->body.len > 0)
        FCGX_PutStr(resp->body.data, (int)resp->body.len, f->req.out);
}

void tg_fcgi_finish(struct tg_fcgi *f)
{
    /* libfcgi closes a connection by shutting down its sending side and reading until
     * nginx closes too, so that no data of nginx's still unread is answered with a reset: a
     * poll and a wake-up more per request. When the request's stdin has been read to its
     * end, nginx sends nothing more, and the connection is closed at once (FCGX_Detach
     * marks it so). */
    if (!f->req.keepConnection && FCGX_HasSeenEOF(f->req.in) == EOF)
        FCGX_Detach(&f->req);
    FCGX_Finish_r(&f->req);
}
