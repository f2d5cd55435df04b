/* tg_sim_http.c: the simulator's HTTP/1.1 wire protocol: reading requests (request line,
 * headers, Content-Length and chunked bodies, strict JSON) and writing responses. */
#include "tg_sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define HEADERS_MAX 200
#define CHUNK_LINE_MAX 4096
#define JSON_DEPTH 256

/* ---- reading ------------------------------------------------------------------------- */

/* Reads more bytes into c->buf: returns how many, 0 at end of stream, -1 on error or when
 * the buffer is full of unconsumed bytes. */
static ssize_t conn_fill(struct sim_conn *c)
{
    ssize_t n;

    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end == SIM_CONN_BUF)
        return -1;
    do {
        n = recv(c->fd, c->buf + c->end, SIM_CONN_BUF - c->end, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0)
        c->end += (size_t)n;
    return n;
}

/* Length of the line at c->start including its '\n', or 0 when it is not complete. */
static size_t conn_line(const struct sim_conn *c)
{
    const char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);

    return nl ? (size_t)(nl - (c->buf + c->start)) + 1 : 0;
}

/* Finds the end of the header section (after its empty line) in c->buf, starting the
 * search at *scan; returns the section length or 0 when it is not complete yet. */
static size_t head_end(const struct sim_conn *c, size_t *scan)
{
    size_t i;

    for (i = *scan; i + 1 < c->end; i++) {
        if (c->buf[i] != '\n')
            continue;
        if (c->buf[i + 1] == '\n')
            return i + 2 - c->start;
        if (c->buf[i + 1] == '\r' && i + 2 < c->end && c->buf[i + 2] == '\n')
            return i + 3 - c->start;
        if (c->buf[i + 1] == '\r' && i + 2 >= c->end)
            break;
    }
    *scan = i;
    return 0;
}

/* Waits for a complete header section and returns a NUL-terminated copy of it in *head,
 * consumed from the buffer. Empty lines before the request line are skipped. */
static enum sim_rd read_head(struct sim_conn *c, char **head)
{
    size_t searched = 0, scan, len = 0; /* searched: bytes after c->start already seen */
    ssize_t n;

    for (;;) {
        while (searched == 0 && c->start < c->end &&
               (c->buf[c->start] == '\r' || c->buf[c->start] == '\n'))
            c->start++;
        scan = c->start + searched;
        if (c->start < c->end) {
            len = head_end(c, &scan);
            searched = scan - c->start;
        }
        if (len > 0)
            break;
        n = conn_fill(c);
        if (n < 0 && c->end == SIM_CONN_BUF)
            return SIM_RD_HEAD_TOOBIG;
        if (n <= 0)
            return c->start == c->end ? SIM_RD_EOF : SIM_RD_IOERR;
    }
    *head = sim_xstrndup(c->buf + c->start, len);
    c->start += len;
    return memchr(*head, '\0', len) ? SIM_RD_BAD : SIM_RD_OK;
}

static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int parse_request_line(char *line, struct sim_request *req, int *http10)
{
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL, *q, *p;
    size_t mlen;

    if (sp2 == NULL)
        return -1;
    mlen = (size_t)(sp1 - line);
    if (mlen == 0 || mlen >= sizeof req->method)
        return -1;
    for (p = line; p < sp1; p++) {
        if (!is_tchar((unsigned char)*p))
            return -1;
    }
    memcpy(req->method, line, mlen);
    req->method[mlen] = '\0';
    if (sp1[1] != '/')
        return -1;
    for (p = sp1 + 1; p < sp2; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return -1;
    }
    if (strcmp(sp2 + 1, "HTTP/1.1") != 0 && strcmp(sp2 + 1, "HTTP/1.0") != 0)
        return -1;
    *http10 = sp2[8] == '0';
    *sp2 = '\0';
    q = strchr(sp1 + 1, '?');
    req->path = sim_xstrndup(sp1 + 1, q ? (size_t)(q - sp1 - 1) : strlen(sp1 + 1));
    req->query = sim_xstrdup(q ? q + 1 : "");
    return 0;
}

/* Adds the header line "Name: value" to req (repeats are joined with ", "). */
static int add_header(struct sim_request *req, char *line)
{
    char *colon = strchr(line, ':'), *value, *end, *p;
    struct sim_header *h;
    size_t i;

    if (colon == NULL || colon == line)
        return -1;
    for (p = line; p < colon; p++) {
        if (!is_tchar((unsigned char)*p))
            return -1;
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    *colon = '\0';
    for (value = colon + 1; *value == ' ' || *value == '\t'; value++)
        continue;
    for (end = value + strlen(value); end > value && (end[-1] == ' ' || end[-1] == '\t'); end--)
        continue;
    *end = '\0';
    for (p = value; *p != '\0'; p++) {
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return -1;
    }
    for (i = 0; i < req->nheaders; i++) {
        h = &req->headers[i];
        if (strcmp(h->name, line) == 0) {
            size_t old = strlen(h->value), add = strlen(value);

            h->value = sim_xrealloc(h->value, old + add + 3);
            memcpy(h->value + old, ", ", 2);
            memcpy(h->value + old + 2, value, add + 1);
            return 0;
        }
    }
    if (req->nheaders == HEADERS_MAX)
        return -1;
    req->headers = sim_xrealloc(req->headers, (req->nheaders + 1) * sizeof *req->headers);
    h = &req->headers[req->nheaders++];
    h->name = sim_xstrdup(line);
    h->value = sim_xstrdup(value);
    return 0;
}

/* Parses a header section (modified in place) into req. */
static enum sim_rd parse_head(char *head, struct sim_request *req, int *http10)
{
    char *line = head, *nl;
    int first = 1;

    while (*line != '\0') {
        nl = strchr(line, '\n');
        if (nl == NULL)
            return SIM_RD_BAD;
        *nl = '\0';
        if (nl > line && nl[-1] == '\r')
            nl[-1] = '\0';
        if (line[0] == '\0')
            break;
        if (first ? parse_request_line(line, req, http10) != 0
                  : (line[0] == ' ' || line[0] == '\t' || add_header(req, line) != 0))
            return SIM_RD_BAD;
        first = 0;
        line = nl + 1;
    }
    return first ? SIM_RD_BAD : SIM_RD_OK;
}

/* Reads a body of exactly len bytes. */
static enum sim_rd read_body_length(struct sim_conn *c, struct sim_request *req, size_t len)
{
    size_t have = c->end - c->start < len ? c->end - c->start : len;
    ssize_t n;

    req->body = sim_xmalloc(len + 1);
    memcpy(req->body, c->buf + c->start, have);
    c->start += have;
    while (have < len) {
        n = recv(c->fd, req->body + have, len - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return SIM_RD_IOERR;
        have += (size_t)n;
    }
    req->body[len] = '\0';
    req->body_len = len;
    return SIM_RD_OK;
}

/* State of a chunked body being decoded. */
enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_DONE };

struct chunker {
    enum chunk_state state;
    size_t remaining; /* bytes left in the current chunk */
    size_t trailer;   /* bytes of trailer fields seen */
};

/* Parses a chunk-size line "HEX[;ext]\r\n" of len bytes. */
static enum sim_rd chunk_size_line(const char *line, size_t len, struct chunker *ch)
{
    size_t i = 0, size = 0;

    while (i < len && line[i] != '\0' && strchr("0123456789abcdefABCDEF", line[i]) != NULL) {
        unsigned char d = (unsigned char)line[i];
        size_t v = d <= '9' ? (size_t)(d - '0') : (size_t)((d | 0x20) - 'a' + 10);

        if (size > SIM_BODY_MAX)
            return SIM_RD_TOOBIG;
        size = size * 16 + v;
        i++;
    }
    if (i == 0 || (line[i] != ';' && line[i] != ' ' && line[i] != '\t' && line[i] != '\r' &&
                   line[i] != '\n'))
        return SIM_RD_BAD;
    if (size > SIM_BODY_MAX)
        return SIM_RD_TOOBIG;
    ch->remaining = size;
    ch->state = size > 0 ? CH_DATA : CH_TRAILER;
    return SIM_RD_OK;
}

/* Decodes what the buffer holds of a chunked body into body. Returns SIM_RD_OK when it made
 * progress or finished (ch->state == CH_DONE), SIM_RD_EOF when it needs more bytes, or an
 * error. */
static enum sim_rd chunk_step(struct sim_conn *c, struct chunker *ch, struct sim_buf *body)
{
    const char *p = c->buf + c->start;
    size_t avail = c->end - c->start, line = conn_line(c), n;
    enum sim_rd rc = SIM_RD_OK;

    if (ch->state == CH_DATA) {
        n = ch->remaining < avail ? ch->remaining : avail;
        if (n == 0)
            return SIM_RD_EOF;
        if (sim_buf_add(body, p, n) != 0)
            return SIM_RD_TOOBIG;
        c->start += n;
        ch->remaining -= n;
        if (ch->remaining == 0)
            ch->state = CH_DATA_END;
        return SIM_RD_OK;
    }
    if (line == 0)
        return avail > CHUNK_LINE_MAX ? SIM_RD_BAD : SIM_RD_EOF;
    if (ch->state == CH_SIZE) {
        rc = chunk_size_line(p, line, ch);
    } else if (ch->state == CH_DATA_END) {
        if (!(line == 1 || (line == 2 && p[0] == '\r')))
            rc = SIM_RD_BAD;
        ch->state = CH_SIZE;
    } else if (line == 1 || (line == 2 && p[0] == '\r')) {
        ch->state = CH_DONE;
    } else {
        ch->trailer += line;
        if (ch->trailer > SIM_CONN_BUF)
            rc = SIM_RD_BAD;
    }
    c->start += line;
    return rc;
}

static enum sim_rd read_body_chunked(struct sim_conn *c, struct sim_request *req)
{
    struct chunker ch = {CH_SIZE, 0, 0};
    struct sim_buf body = {NULL, 0, 0, SIM_BODY_MAX + 1};
    enum sim_rd rc = SIM_RD_OK;

    while (rc == SIM_RD_OK && ch.state != CH_DONE) {
        rc = chunk_step(c, &ch, &body);
        if (rc == SIM_RD_EOF)
            rc = conn_fill(c) > 0 ? SIM_RD_OK : SIM_RD_IOERR;
    }
    if (rc != SIM_RD_OK) {
        sim_buf_free(&body);
        return rc;
    }
    req->body = body.p ? body.p : sim_xstrdup("");
    req->body_len = body.len;
    return SIM_RD_OK;
}

/* Parses the body as one strict JSON text (see struct sim_request). */
static void parse_json(struct sim_request *req)
{
    struct json_tokener *tok;
    struct json_object *obj;
    size_t end;

    if (req->body == NULL || req->body_len == 0)
        return;
    tok = json_tokener_new_ex(JSON_DEPTH);
    if (tok == NULL)
        return;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    /* The terminating NUL is passed too, so that a bare number or literal ends. */
    obj = json_tokener_parse_ex(tok, req->body, (int)req->body_len + 1);
    end = json_tokener_get_parse_end(tok);
    if (end > req->body_len)
        end = req->body_len;
    if (json_tokener_get_error(tok) == json_tokener_success &&
        strspn(req->body + end, " \t\r\n") == req->body_len - end) {
        req->json_valid = 1;
        req->json = obj;
    } else {
        json_object_put(obj);
        req->json_error_at = end;
    }
    json_tokener_free(tok);
}

/* Whether the comma-separated header value list contains token (case-insensitive). */
static int has_token(const char *list, const char *token)
{
    size_t n = strlen(token);

    while (list != NULL && *list != '\0') {
        list += strspn(list, " \t,");
        if (strncasecmp(list, token, n) == 0 && strchr(" \t,", list[n]) != NULL)
            return 1;
        list = strchr(list, ',');
    }
    return 0;
}

/* Reads the body the headers announce, answering "Expect: 100-continue" first. */
static enum sim_rd read_body(struct sim_conn *c, struct sim_request *req, int http10)
{
    const char *te = sim_header(req, "transfer-encoding");
    const char *cl = sim_header(req, "content-length");
    const char *expect = sim_header(req, "expect");
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    unsigned long long len = 0;
    char *end;

    if (te != NULL && cl != NULL)
        return SIM_RD_BAD;
    if (te != NULL && strcasecmp(te, "chunked") != 0)
        return SIM_RD_UNSUPPORTED;
    if (cl != NULL) {
        errno = 0;
        len = strtoull(cl, &end, 10);
        if (cl[0] < '0' || cl[0] > '9' || *end != '\0' || errno != 0)
            return SIM_RD_BAD;
        if (len > SIM_BODY_MAX)
            return SIM_RD_TOOBIG;
    }
    if (te == NULL && len == 0)
        return SIM_RD_OK;
    if (!http10 && expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
        c->start == c->end)
        (void)send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL);
    return te != NULL ? read_body_chunked(c, req) : read_body_length(c, req, (size_t)len);
}

void sim_request_free(struct sim_request *req)
{
    size_t i;

    for (i = 0; i < req->nheaders; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }
    free(req->headers);
    free(req->path);
    free(req->query);
    free(req->body);
    json_object_put(req->json);
    memset(req, 0, sizeof *req);
}

enum sim_rd sim_http_read(struct sim_conn *c, struct sim_request *req, int *keep)
{
    const char *connection;
    char *head = NULL;
    int http10 = 0;
    enum sim_rd rc = read_head(c, &head);

    if (rc == SIM_RD_OK)
        rc = parse_head(head, req, &http10);
    free(head);
    if (rc != SIM_RD_OK)
        return rc;
    c->http10 = http10;
    connection = sim_header(req, "connection");
    *keep = http10 ? has_token(connection, "keep-alive") : !has_token(connection, "close");
    rc = read_body(c, req, http10);
    if (rc == SIM_RD_OK)
        parse_json(req);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------- */

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t sent = send(fd, p, n, MSG_NOSIGNAL);

        if (sent < 0 && errno == EINTR)
            continue;
        if (sent <= 0)
            return -1;
        p += sent;
        n -= (size_t)sent;
    }
    return 0;
}

int sim_http_send(const struct sim_conn *c, const struct sim_response *resp, int keep,
                  int head_only)
{
    char retry[160] = "";
    struct sim_buf out = {NULL, 0, 0, 0};
    size_t i;
    int rc;

    if (resp->retry_after != NULL) {
        snprintf(retry, sizeof retry, "Retry-After: %.128s", resp->retry_after);
        for (i = 0; retry[i] != '\0'; i++) {
            if (retry[i] == '\r' || retry[i] == '\n')
                retry[i] = ' '; /* a fault's value must not split the header */
        }
        memcpy(retry + i, "\r\n", 3);
    }
    rc = sim_buf_addf(&out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n%s%s\r\n", resp->status,
                      tg_http_reason(resp->status), resp->body_len, retry,
                      !keep ? "Connection: close\r\n"
                      : c->http10 ? "Connection: keep-alive\r\n" : "");
    if (rc == 0 && !head_only)
        rc = sim_buf_add(&out, resp->body, resp->body_len);
    if (rc == 0)
        rc = send_all(c->fd, out.p, out.len);
    sim_buf_free(&out);
    return rc;
}

/* ---- server-sent event streams ------------------------------------------------------- */

int sim_http_stream_begin(const struct sim_conn *c, int keep)
{
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n%s\r\n",
                     c->http10 ? "Connection: close\r\n"
                     : keep ? "Transfer-Encoding: chunked\r\n"
                            : "Transfer-Encoding: chunked\r\nConnection: close\r\n");

    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    return send_all(c->fd, head, (size_t)n);
}

int sim_http_stream_event(const struct sim_conn *c, const char *type, const char *json,
                          size_t len)
{
    struct sim_buf out = {NULL, 0, 0, 0};
    size_t body = strlen("event: ") + strlen(type) + strlen("\ndata: ") + len + 2;
    int rc = 0;

    if (!c->http10)
        rc = sim_buf_addf(&out, "%zx\r\n", body);
    if (rc == 0)
        rc = sim_buf_addf(&out, "event: %s\ndata: ", type);
    if (rc == 0)
        rc = sim_buf_add(&out, json, len);
    if (rc == 0)
        rc = sim_buf_adds(&out, c->http10 ? "\n\n" : "\n\n\r\n");
    if (rc == 0)
        rc = send_all(c->fd, out.p, out.len);
    sim_buf_free(&out);
    return rc;
}

int sim_http_stream_end(const struct sim_conn *c)
{
    return c->http10 ? 0 : send_all(c->fd, "0\r\n\r\n", 5);
}
