/* The FastCGI adapter over libfcgi (see tg_fcgi.h). */
#include "tg_fcgi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "tg_core.h"

struct tg_fcgi {
    FCGX_Request req;
    struct tg_stream stream;
};

static int stream_begin(void *ctx, const struct tg_request *req, const struct tg_response *resp);
static int stream_write(void *ctx, const char *data, size_t len);

int tg_fcgi_init(void)
{
    return FCGX_Init() == 0 ? TG_OK : TG_ERR;
}

int tg_fcgi_listen(const char *address, int backlog, long mode, char *err, size_t errlen)
{
    int is_unix = strchr(address, ':') == NULL || address[0] == '/' || address[0] == '.';
    if (is_unix) {
        struct stat st;
        if (lstat(address, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(address);
    }
    int fd = FCGX_OpenSocket(address, backlog);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", address, strerror(errno));
        return -1;
    }
    if (is_unix && chmod(address, (mode_t)mode) != 0) {
        snprintf(err, errlen, "cannot set the permissions of %s: %s", address, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
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
    f->stream.ctx = f;
    f->stream.begin = stream_begin;
    f->stream.write = stream_write;
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
    body[got] = '\0';
    req->body = body;
    req->body_len = (size_t)got;
    return TG_OK;
}

int tg_fcgi_read(struct tg_fcgi *f, struct tg_pool *pool, long max_body,
                 struct tg_request *req)
{
    memset(req, 0, sizeof(*req));
    req->pool = pool;
    req->started_us = tg_mono_us();
    req->method = param(f, pool, "REQUEST_METHOD");
    req->path = param(f, pool, "DOCUMENT_URI");
    req->query = param(f, pool, "QUERY_STRING");
    req->content_type = param(f, pool, "CONTENT_TYPE");
    req->accept = param(f, pool, "HTTP_ACCEPT");
    req->remote_addr = param(f, pool, "REMOTE_ADDR");
    req->request_id = param(f, pool, "REQUEST_ID");
    req->authorization = param(f, pool, "HTTP_AUTHORIZATION");
    req->api_key = param(f, pool, "HTTP_X_API_KEY");
    req->parallel_beta = param(f, pool, "HTTP_PARALLEL_BETA");
    req->idempotency_key = param(f, pool, "HTTP_IDEMPOTENCY_KEY");
    req->user_agent = param(f, pool, "HTTP_USER_AGENT");
    req->retry_count = param(f, pool, "HTTP_X_STAINLESS_RETRY_COUNT");
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
    req->out = &f->stream;
    return read_body(f, pool, max_body, req);
}

/* Writes the CGI status line and headers; content_length < 0 leaves it out (a stream). */
static int write_head(struct tg_fcgi *f, const struct tg_request *req,
                      const struct tg_response *resp, long long content_length)
{
    struct tg_buf head;
    tg_buf_init(&head, 16384);
    int status = resp->status != 0 ? resp->status : 500;
    tg_buf_printf(&head, "Status: %d %s\r\nContent-Type: %s\r\n", status,
                  tg_http_reason(status),
                  resp->content_type != NULL ? resp->content_type : "application/json");
    if (content_length >= 0)
        tg_buf_printf(&head, "Content-Length: %lld\r\n", content_length);
    else
        tg_buf_adds(&head, "X-Accel-Buffering: no\r\n");
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
    if (resp->streamed)
        return;
    write_head(f, req, resp, (long long)resp->body.len);
    if (strcmp(req->method, "HEAD") != 0 && resp->body.len > 0)
        FCGX_PutStr(resp->body.data, (int)resp->body.len, f->req.out);
}

static int stream_begin(void *ctx, const struct tg_request *req, const struct tg_response *resp)
{
    struct tg_fcgi *f = ctx;
    if (write_head(f, req, resp, -1) != TG_OK)
        return TG_ERR;
    return FCGX_FFlush(f->req.out) < 0 ? TG_ERR : TG_OK;
}

static int stream_write(void *ctx, const char *data, size_t len)
{
    struct tg_fcgi *f = ctx;
    while (len > 0) {
        int n = len > 65536 ? 65536 : (int)len;
        if (FCGX_PutStr(data, n, f->req.out) != n)
            return TG_ERR;
        data += n;
        len -= (size_t)n;
    }
    return FCGX_FFlush(f->req.out) < 0 ? TG_ERR : TG_OK;
}

void tg_fcgi_finish(struct tg_fcgi *f)
{
    FCGX_Finish_r(&f->req);
}
