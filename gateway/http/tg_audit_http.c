/* GET /v1/audit/...: the audit trail over HTTP (contract in tg_audit.h). Parses the path
 * and query into a read, answers it through the shared formatter, and logs every read. */
#include "tg_audit.h"
#include "tg_audit_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tg_http.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_query.h"

#define QUERY_MAX 4096
#define VALUE_MAX 1024

static void problem(json_object *detail, const char *name, const char *msg, const char *type)
{
    tg_json_problem(detail, tg_json_loc("query", name, NULL), msg, type);
}

/* Sets one name=value pair of the query string; a problem goes to detail. */
static void query_pair(const char *p, size_t len, struct tg_audit_read *r, int *seen,
                       json_object *detail)
{
    const char *eq = memchr(p, '=', len);
    size_t nlen = eq != NULL ? (size_t)(eq - p) : len;
    const char *v = eq != NULL ? eq + 1 : p + len;
    char name[32], value[VALUE_MAX], err[200];
    if (tg_query_decode(p, nlen, name, sizeof(name)) != TG_OK ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz_") != strlen(name)) {
        problem(detail, NULL, "unknown query parameter", "extra_forbidden");
        return;
    }
    int bit = tg_audit_param(r, name);
    if (bit == 0) {
        problem(detail, name, "unknown query parameter for this path", "extra_forbidden");
        return;
    }
    if (tg_query_decode(v, (size_t)(p + len - v), value, sizeof(value)) != TG_OK) {
        problem(detail, name, "too long, a bad percent escape, or not UTF-8", "value_error");
        return;
    }
    if (value[0] == '\0')
        return; /* an empty value is no filter (what an empty form field sends) */
    if (*seen & bit) {
        problem(detail, name, "given more than once", "value_error");
        return;
    }
    *seen |= bit;
    if (tg_audit_set(r, name, value, TG_AUDIT_LIMIT_MAX, err, sizeof(err)) != TG_OK)
        problem(detail, name, err, "value_error");
}

/* Sets r from the query string; every problem goes to detail. */
static void parse_query(const char *query, struct tg_audit_read *r, json_object *detail)
{
    if (strlen(query) > QUERY_MAX) {
        problem(detail, NULL, "the query string is too long", "value_error");
        return;
    }
    int seen = 0;
    for (const char *p = query; *p != '\0';) {
        size_t len = strcspn(p, "&");
        if (len > 0)
            query_pair(p, len, r, &seen, detail);
        p += len;
        if (*p == '&')
            p++;
    }
}

/* The q of media type mt in an Accept header; -1 when it is not named. */
static double accept_q(const char *accept, const char *mt)
{
    size_t mlen = strlen(mt);
    for (const char *p = accept; p != NULL && *p != '\0';) {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, ",");
        size_t tlen = strcspn(p, ";, \t");
        if (tlen == mlen && strncasecmp(p, mt, mlen) == 0) {
            const char *qp = strstr(p, ";q=");
            if (qp == NULL || qp > p + len)
                qp = strstr(p, "; q=");
            if (qp == NULL || qp > p + len)
                return 1.0;
            return strtod(strchr(qp, '=') + 1, NULL);
        }
        p += len;
    }
    return -1.0;
}

/* CSV when the Accept header names text/csv above application/json. */
static int wants_csv(const char *accept)
{
    if (accept == NULL)
        return 0;
    double csv = accept_q(accept, "text/csv"), json = accept_q(accept, "application/json");
    return csv > 0 && csv > json;
}

/* Maps the path to a read; TG_ENOTFOUND when it names none. *id_name is the id's name for
 * a loc, NULL for lists. */
static int route(const char *path, struct tg_audit_read *r, const char **id, const char **id_name)
{
    static const struct {
        const char *prefix;
        enum tg_audit_what list, one;
        const char *id_name;
    } routes[] = {
        {"/v1/audit/submissions", TG_AUDIT_SUBMISSIONS, TG_AUDIT_SUBMISSION, "submission_id"},
        {"/v1/audit/runs", TG_AUDIT_RUNS, TG_AUDIT_RUN, "run_id"},
        {"/v1/audit/groups", TG_AUDIT_GROUP, TG_AUDIT_GROUP, "taskgroup_id"},
        {"/v1/audit/admin", TG_AUDIT_ADMIN, TG_AUDIT_ADMIN, NULL}, /* a list only */
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        size_t n = strlen(routes[i].prefix);
        if (strncmp(path, routes[i].prefix, n) != 0)
            continue;
        const char *rest = path + n;
        if (*rest == '\0' && routes[i].list != TG_AUDIT_GROUP) {
            tg_audit_init(r, routes[i].list);
            *id = NULL;
            *id_name = NULL;
            return TG_OK;
        }
        if (rest[0] == '/' && rest[1] != '\0' && strchr(rest + 1, '/') == NULL &&
            routes[i].id_name != NULL) {
            tg_audit_init(r, routes[i].one);
            *id = rest + 1;
            *id_name = routes[i].id_name;
            return TG_OK;
        }
    }
    return TG_ENOTFOUND;
}

/* Builds the answer in resp; returns the rows it carries, or -1 when it is an error. */
static long answer(struct tg_worker *w, struct tg_request *req, struct tg_response *resp,
                   struct tg_audit_read *r)
{
    long rows = -1;
    char cursor[TG_AUDIT_CURSOR_MAX];
    struct tg_audit_page page;
    memset(&page, 0, sizeof(page));
    struct tg_audit_formatter *o = tg_audit_format_new(r->format, &resp->body);
    if (o == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        goto out;
    }
    tg_buf_clear(&resp->body);
    int rc = tg_audit_format_begin(o, r);
    if (rc == TG_OK)
        rc = tg_audit_format_fetch(w->store, r, o, &page);
    tg_audit_cursor(r, &page, cursor, sizeof(cursor));
    if (rc == TG_OK)
        rc = tg_audit_format_end(o, &page, cursor);
    if (rc == TG_ENOTFOUND) {
        const char *what = r->what == TG_AUDIT_SUBMISSION ? "submission"
                           : r->what == TG_AUDIT_RUN      ? "run"
                                                          : "task group";
        char msg[200];
        snprintf(msg, sizeof(msg), "no %s %s in the audit trail", what, r->id);
        tg_resp_error(resp, req, 404, msg, NULL);
    } else if (rc == TG_ETOOBIG) {
        tg_resp_error(resp, req, 500, "the answer is larger than the gateway sends: ask for a "
                                      "smaller limit", NULL);
    } else if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "audit read failed: %s (%s)", tg_rc_str(rc),
               tg_store_errmsg(w->store));
        tg_resp_error(resp, req, 503, "the audit database cannot be read; try again later", NULL);
    } else {
        resp->status = 200;
        resp->content_type = r->format == TG_AUDIT_CSV ? "text/csv; charset=utf-8"
                                                       : "application/json";
        if (cursor[0] != '\0')
            tg_resp_header(resp, "X-Next-Cursor", tg_pool_strdup(req->pool, cursor));
        rows = tg_audit_format_rows(o);
    }
out:
    tg_audit_format_free(o);
    return rows;
}

/* Every audit read is logged, answered or not; a read that cannot be logged is not
 * answered. */
static void log_read(struct tg_worker *w, struct tg_request *req, struct tg_response *resp,
                     const struct tg_auth *auth, long rows)
{
    char actor[64];
    snprintf(actor, sizeof(actor), "token:%s", auth->token_id);
    struct tg_actor who = {actor, auth->team, "http", req->remote_addr};
    const char *q = req->query != NULL ? req->query : "";
    const char *query = tg_pool_printf(req->pool, "%s %s%s%s", req->method, req->path,
                                       q[0] != '\0' ? "?" : "", q);
    int rc = query != NULL ? tg_store_audit_read_log(w->store, &who, query, rows) : TG_ENOMEM;
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "audit read not logged: %s (%s)", tg_rc_str(rc),
               tg_store_errmsg(w->store));
        resp->nheaders = 0;
        tg_resp_error(resp, req, 503, "this audit read could not be logged, so it is not "
                                      "answered; try again later", NULL);
    }
}

void tg_audit_http(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        tg_resp_header(resp, "Allow", "GET, HEAD");
        tg_resp_error(resp, req, 405, "the audit trail is read with GET", NULL);
        return;
    }
    struct tg_audit_read r;
    const char *id, *id_name;
    if (route(req->path, &r, &id, &id_name) != TG_OK) {
        tg_resp_error(resp, req, 404, "Not Found", NULL);
        return;
    }
    struct tg_auth auth;
    if (tg_http_auth(w, req, resp, NULL, &auth) != TG_OK)
        return;
    r.scope_team = auth.role == TG_ROLE_SUBMIT ? auth.team : NULL;
    if (r.what == TG_AUDIT_ADMIN && auth.role == TG_ROLE_SUBMIT) {
        tg_resp_error(resp, req, 403, "the admin log is read with an audit or admin token",
                      NULL);
        log_read(w, req, resp, &auth, -1);
        return;
    }

    long rows = -1;
    char err[200];
    json_object *detail = tg_json_pool(req->pool, json_object_new_array());
    if (detail == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        goto log;
    }
    if (id != NULL && tg_audit_set_id(&r, id, err, sizeof(err)) != TG_OK)
        tg_json_problem(detail, tg_json_loc("path", id_name, NULL), err, "value_error");
    parse_query(req->query != NULL ? req->query : "", &r, detail);
    if (!r.format_set && wants_csv(req->accept))
        r.format = TG_AUDIT_CSV;
    if (json_object_array_length(detail) > 0)
        tg_resp_validation(resp, detail);
    else
        rows = answer(w, req, resp, &r);
log:
    log_read(w, req, resp, &auth, rows);
}
