/* GET /v1/audit/...: the audit trail over HTTP (contract in tg_audit_http.h). Parses the
 * query into a read, answers it through the shared formatter, and logs every read. */
#include "tg_audit_http.h"

#include <stdio.h>
#include <string.h>

#include "tg_audit.h"
#include "tg_audit_format.h"
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
        /* The answer passed max_answer_bytes: the router replaces this with its 400. */
        tg_resp_error(resp, req, 400, "the answer is larger than the gateway sends: ask for a "
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
static void log_read(struct tg_worker *w, const struct tg_request *req, struct tg_response *resp,
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

void tg_audit_http_refused(struct tg_worker *w, struct tg_request *req, struct tg_response *resp,
                           const struct tg_auth *auth)
{
    log_read(w, req, resp, auth, -1);
}

/* Answers a read of what (with the path's {id}, named id_name in a loc, for one object),
 * and logs it. */
static void serve(struct tg_worker *w, struct tg_request *req, struct tg_response *resp,
                  enum tg_audit_what what, const char *id_name)
{
    const struct tg_auth *auth = req->auth;
    const char *id = id_name != NULL ? req->cap[0] : NULL;
    struct tg_audit_read r;
    tg_audit_init(&r, what);
    r.scope_team = auth->role == TG_ROLE_SUBMIT ? auth->team : NULL;

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
    if (!r.format_set && tg_http_wants_csv(req->accept))
        r.format = TG_AUDIT_CSV;
    if (json_object_array_length(detail) > 0)
        tg_resp_validation(resp, detail);
    else
        rows = answer(w, req, resp, &r);
log:
    log_read(w, req, resp, auth, rows);
}

void tg_audit_http_submissions(struct tg_worker *w, struct tg_request *req,
                               struct tg_response *resp)
{
    serve(w, req, resp, TG_AUDIT_SUBMISSIONS, NULL);
}

void tg_audit_http_submission(struct tg_worker *w, struct tg_request *req,
                              struct tg_response *resp)
{
    serve(w, req, resp, TG_AUDIT_SUBMISSION, "submission_id");
}

void tg_audit_http_runs(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    serve(w, req, resp, TG_AUDIT_RUNS, NULL);
}

void tg_audit_http_run(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    serve(w, req, resp, TG_AUDIT_RUN, "run_id");
}

void tg_audit_http_group(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    serve(w, req, resp, TG_AUDIT_GROUP, "taskgroup_id");
}

void tg_audit_http_summary(struct tg_worker *w, struct tg_request *req,
                           struct tg_response *resp)
{
    serve(w, req, resp, TG_AUDIT_SUMMARY, NULL);
}

void tg_audit_http_admin_log(struct tg_worker *w, struct tg_request *req,
                             struct tg_response *resp)
{
    serve(w, req, resp, TG_AUDIT_ADMIN, NULL);
}
