/* The request router: the one route table {method, pattern, roles, handler} naming every
 * handler, checked once for 404, 405 with its Allow header and the token's role, and the
 * gateway's own paths (/healthz, /metrics); and the one bound on what a read's answer may
 * hold (max_answer_bytes), set before its handler and checked once after it. Handlers answer through tg_http.c's helpers
 * and declare themselves in their own headers (tg_sdk_api.h, tg_admin_http.h, ...). */
#include "tg_router.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "tg_admin_http.h"
#include "tg_audit_http.h"
#include "tg_conf.h"
#include "tg_crypto.h"
#include "tg_html.h"
#include "tg_idem.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_merge.h"
#include "tg_metrics.h"
#include "tg_usage.h"
#include "tg_usage_http.h"
#include "tg_pages.h"
#include "tg_reconcile.h"
#include "tg_sdk_api.h"
#include "tg_store.h"
#include "tg_submit.h"
#include "tg_validate.h"
#include "tg_webhook_http.h"

/* Whether the client is on the gateway's own machine, as nginx saw it: the same addresses
 * nginx's /metrics allow-list admits. Only nginx can write to the daemon's socket (see
 * socket_mode), so REMOTE_ADDR is nginx's word. */
static int from_loopback(const struct tg_request *req)
{
    const char *a = req->remote_addr;
    return a != NULL && (strcmp(a, "127.0.0.1") == 0 || strcmp(a, "::1") == 0);
}

/* Logs a health problem when it differs from the last one logged: a health check polled
 * every few seconds would otherwise repeat it in every poll. */
static void log_health(const char *detail)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char last[400];
    pthread_mutex_lock(&lock);
    int changed = strncmp(last, detail, sizeof(last) - 1) != 0;
    if (changed)
        snprintf(last, sizeof(last), "%s", detail);
    pthread_mutex_unlock(&lock);
    if (changed)
        tg_log(TG_LOG_WARN, "/healthz: %s", detail);
}

/* Whether writes work, as far as the last write knows. When it failed, the check tries a
 * write of its own, at most once a second, so that a store that is back is told at once
 * even by a daemon that has nothing to write (the last failure stays what it tells
 * otherwise). */
static int writes_work(struct tg_store *st, char *detail, size_t len)
{
    static int64_t last_probe_ms;
    if (tg_store_write_health(detail, len) == TG_OK)
        return 1;
    int64_t now = tg_now_ms(), last = __atomic_load_n(&last_probe_ms, __ATOMIC_RELAXED);
    if (now - last < 1000
        || !__atomic_compare_exchange_n(&last_probe_ms, &last, now, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        return 0;
    if (tg_store_write_probe(st) == TG_OK)
        return 1;
    snprintf(detail, len, "%s", tg_store_errmsg(st));
    return 0;
}

/* 503 with what is wrong: in general terms for anyone (the endpoint is public), with the
 * details (paths, SQLite's words) for loopback clients and the log. */
static void health(struct tg_worker *w, struct tg_request *req,
                   struct tg_response *resp)
{
    char detail[400] = "";
    const char *pub = NULL;
    long owed;
    int rc = tg_store_ping(w->store);
    if (rc != TG_OK) {
        const char *msg = tg_store_errmsg(w->store);
        if (rc == TG_EDOWN)
            pub = "the database cannot be reached";
        else
            pub = strstr(msg, "read-only") != NULL ? "the database cannot be written"
                                                   : "the database cannot be read";
        snprintf(detail, sizeof(detail), "%s", msg);
    } else if (!writes_work(w->store, detail, sizeof(detail))) {
        pub = "the database cannot be written";
    } else if ((owed = tg_reconcile_owed()) > 0) {
        pub = "submissions wait for the database to record their outcome";
        snprintf(detail, sizeof(detail), "%ld submission(s) wait to be recorded as unknown",
                 owed);
    } else if (tg_crypto_check(detail, sizeof(detail), &pub) != TG_OK) {
        if (pub == NULL)
            pub = "the key file cannot be used";
    }
    /* Which daemon answered, and on which store: behind a load balancer over several
     * daemons, the one to look at. */
    const char *daemon = tg_store_daemon_id() != NULL ? tg_store_daemon_id() : "none";
    tg_resp_header(resp, "X-Taskgate-Daemon", daemon);
    if (pub == NULL) {
        const char *ok = tg_pool_printf(req->pool, "{\"status\":\"ok\",\"daemon\":\"%s\","
                                        "\"store\":\"%s\"}", daemon,
                                        tg_store_kind(w->store));
        if (ok == NULL)
            tg_resp_error(resp, req, 500, "out of memory", NULL);
        else
            tg_resp_json(resp, 200, ok, strlen(ok));
        return;
    }
    log_health(detail);
    const char *msg = pub;
    if (from_loopback(req) && detail[0] != '\0')
        msg = tg_pool_printf(req->pool, "%s: %s", pub, detail);
    tg_resp_error(resp, req, 503, msg != NULL ? msg : pub, NULL);
}

static void metrics(struct tg_worker *w, struct tg_request *req,
                    struct tg_response *resp)
{
    tg_buf_clear(&resp->body);
    int rc = tg_metrics_render(&resp->body);
    /* Read from the database, so that they are right across restarts; left out (and
     * /healthz says why) when it cannot be read. */
    if (rc == TG_OK)
        rc = tg_buf_printf(&resp->body,
                           "# HELP taskgate_daemon_info The daemon that answered and its store.\n"
                           "# TYPE taskgate_daemon_info gauge\n"
                           "taskgate_daemon_info{daemon=\"%s\",store=\"%s\"} 1\n",
                           tg_store_daemon_id() != NULL ? tg_store_daemon_id() : "none",
                           tg_store_kind(w->store));
    long pending, unknown;
    int64_t oldest;
    if (rc == TG_OK && tg_store_open_counts(w->store, &pending, &unknown, &oldest) == TG_OK) {
        int64_t lag_ms = oldest > 0 ? tg_now_ms() - oldest : 0;
        rc = tg_buf_printf(&resp->body,
                           "# HELP taskgate_submissions_open Submissions not settled: pending "
                           "(being sent) and unknown (to be reconciled).\n"
                           "# TYPE taskgate_submissions_open gauge\n"
                           "taskgate_submissions_open{state=\"pending\"} %ld\n"
                           "taskgate_submissions_open{state=\"unknown\"} %ld\n"
                           "# HELP taskgate_reconcile_lag_seconds Age of the oldest unknown "
                           "submission (0: none).\n"
                           "# TYPE taskgate_reconcile_lag_seconds gauge\n"
                           "taskgate_reconcile_lag_seconds %.3f\n",
                           pending, unknown, lag_ms > 0 ? (double)lag_ms / 1000.0 : 0.0);
    }
    if (rc == TG_OK) {
        /* Spend and budgets, from the database too; left out when it cannot be read. */
        size_t len = resp->body.len;
        if (tg_usage_metrics(w->store, &resp->body) != TG_OK)
            resp->body.len = len;
    }
    if (rc != TG_OK) {
        tg_resp_error(resp, req, 500, "metrics do not fit the answer buffer", NULL);
        return;
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* POST /v1/runs, the simplified interface; a browser's form post gets a page back. */
static void submit_runs(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    resp->interface = "simplified";
    tg_submit_runs(w, req, resp);
    if (tg_html_preferred(req->accept) && !resp->replayed)
        tg_html_render(req, resp);
}

/* The end of a route family with no row for the rest of the path: a 404 in JSON, for
 * browsers too (an API path is not a page). */
static void no_such_path(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    (void)w;
    tg_resp_error(resp, req, 404, "Not Found", NULL);
}

/* Under /history/ with no submission id the pages know: always a page. */
static void no_such_page(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    (void)w;
    tg_html_error_page(req, resp, 404, "There is no page at this address.");
}

/* ---- the route table ------------------------------------------------------------------ */

/* How a route family answers a method it does not take (405). */
enum refusal_page {
    PAGE_NEVER,       /* JSON: {"type":"error",...} with not_allowed */
    PAGE_IF_PREFERRED, /* an HTML page (not_allowed_page) when the client prefers HTML */
    PAGE_ALWAYS,      /* always an HTML page (not_allowed_page; NULL: the status's default) */
};

/* What the rows of one route family share. */
struct family {
    const char *interface;        /* for the log line, set once a pattern matches; NULL: the
                                   * handler sets it */
    const char *not_allowed;      /* the 405's JSON message */
    enum refusal_page page;
    const char *not_allowed_page; /* the 405's HTML message */
    const char *forbidden;        /* the 403's message, for a token whose role is not in the
                                   * row's roles */
    int (*valid_capture)(const char *segment); /* NULL: any non-empty segment */
};

#define ROLE(r) (1u << (r))
#define PUBLIC 0u /* no token: the handler needs none, or reads it itself (the submission
                   * pipeline records refusals; /history takes it from a form field) */
#define ANY_ROLE (ROLE(TG_ROLE_SUBMIT) | ROLE(TG_ROLE_AUDIT) | ROLE(TG_ROLE_ADMIN))

/* One route. A pattern is the path itself, where a segment "{name}" captures one non-empty
 * segment into req->cap[] (checked by the family's valid_capture) and a final "*" matches
 * any rest, empty included. The rows of one pattern are adjacent; the first pattern that
 * matches is the path's, and the Allow header of its 405 lists its rows' methods in order.
 * Method "*" takes any method. */
struct route {
    const char *method;
    const char *pattern;
    unsigned roles; /* PUBLIC, or the ROLE()s a token must have (the router authenticates) */
    void (*handler)(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);
    const struct family *family;
    /* Called after the 403 of a token whose role the row refuses; NULL for none. */
    void (*refused)(struct tg_worker *w, struct tg_request *req, struct tg_response *resp,
                    const struct tg_auth *auth);
};

static const struct family gateway = {NULL, "use GET", PAGE_NEVER, NULL, NULL, NULL};
static const struct family simplified = {NULL, "use POST to submit runs", PAGE_NEVER, NULL,
                                         NULL, NULL};
static const struct family sdk = {
    "upstream-compatible", "method not allowed", PAGE_NEVER, NULL,
    "this token may not read runs: use a submit token of the team (auditors: /v1/audit)",
    tg_validate_id};
static const struct family audit = {"audit", "the audit trail is read with GET", PAGE_NEVER,
                                    NULL, "the admin log is read with an audit or admin token",
                                    NULL};
static const struct family admin = {"admin", "this method is not allowed here", PAGE_NEVER,
                                    NULL, "administration needs a token with the admin role",
                                    NULL};
static const struct family pages = {"browser", "method not allowed here", PAGE_IF_PREFERRED,
                                    "This page is only read, never posted to.", NULL, NULL};
static const struct family files = {NULL, "method not allowed here", PAGE_IF_PREFERRED,
                                    "This page is only read, never posted to.", NULL, NULL};
static const struct family history = {"browser", NULL, PAGE_ALWAYS, NULL, NULL, NULL};
static const struct family webhooks = {"webhook", "webhooks are delivered with POST", PAGE_NEVER,
                                       NULL, NULL, NULL};

#define SUBMIT ROLE(TG_ROLE_SUBMIT)
#define ADMIN ROLE(TG_ROLE_ADMIN)
#define AUDIT_OR_ADMIN (ROLE(TG_ROLE_AUDIT) | ROLE(TG_ROLE_ADMIN))

static const struct route routes[] = {
    /* the gateway's own */
    {"GET", "/healthz", PUBLIC, health, &gateway, NULL},
    {"HEAD", "/healthz", PUBLIC, health, &gateway, NULL},
    {"GET", "/metrics", PUBLIC, metrics, &gateway, NULL},
    {"HEAD", "/metrics", PUBLIC, metrics, &gateway, NULL},
    /* the simplified interface (tg_submit.c) */
    {"POST", "/v1/runs", PUBLIC, submit_runs, &simplified, NULL},
    /* the upstream's own API, for the SDKs (tg_sdk_api.c), under /v1 and /v1beta */
    {"POST", "/v1/tasks/groups", PUBLIC, tg_sdk_api_create_group, &sdk, NULL},
    {"GET", "/v1/tasks/groups/{id}", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1/tasks/groups/{id}/runs", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"POST", "/v1/tasks/groups/{id}/runs", PUBLIC, tg_sdk_api_add_runs, &sdk, NULL},
    {"GET", "/v1/tasks/groups/{id}/events", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1/tasks/groups/{id}/runs/{run_id}", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1/tasks/runs/{run_id}", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1/tasks/runs/{run_id}/result", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1/tasks/runs/{run_id}/input", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1/tasks/runs/{run_id}/events", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"POST", "/v1beta/tasks/groups", PUBLIC, tg_sdk_api_create_group, &sdk, NULL},
    {"GET", "/v1beta/tasks/groups/{id}", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1beta/tasks/groups/{id}/runs", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"POST", "/v1beta/tasks/groups/{id}/runs", PUBLIC, tg_sdk_api_add_runs, &sdk, NULL},
    {"GET", "/v1beta/tasks/groups/{id}/events", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1beta/tasks/groups/{id}/runs/{run_id}", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1beta/tasks/runs/{run_id}", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1beta/tasks/runs/{run_id}/result", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1beta/tasks/runs/{run_id}/input", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    {"GET", "/v1beta/tasks/runs/{run_id}/events", SUBMIT, tg_sdk_api_read, &sdk, NULL},
    /* the audit trail (tg_audit_http.c): a submit token sees its own team's */
    {"GET", "/v1/audit/submissions", ANY_ROLE, tg_audit_http_submissions, &audit, NULL},
    {"HEAD", "/v1/audit/submissions", ANY_ROLE, tg_audit_http_submissions, &audit, NULL},
    {"GET", "/v1/audit/submissions/{id}", ANY_ROLE, tg_audit_http_submission, &audit, NULL},
    {"HEAD", "/v1/audit/submissions/{id}", ANY_ROLE, tg_audit_http_submission, &audit, NULL},
    {"GET", "/v1/audit/runs", ANY_ROLE, tg_audit_http_runs, &audit, NULL},
    {"HEAD", "/v1/audit/runs", ANY_ROLE, tg_audit_http_runs, &audit, NULL},
    {"GET", "/v1/audit/runs/{id}", ANY_ROLE, tg_audit_http_run, &audit, NULL},
    {"HEAD", "/v1/audit/runs/{id}", ANY_ROLE, tg_audit_http_run, &audit, NULL},
    {"GET", "/v1/audit/groups/{id}", ANY_ROLE, tg_audit_http_group, &audit, NULL},
    {"HEAD", "/v1/audit/groups/{id}", ANY_ROLE, tg_audit_http_group, &audit, NULL},
    {"GET", "/v1/audit/summary", ANY_ROLE, tg_audit_http_summary, &audit, NULL},
    {"HEAD", "/v1/audit/summary", ANY_ROLE, tg_audit_http_summary, &audit, NULL},
    {"GET", "/v1/audit/admin", AUDIT_OR_ADMIN, tg_audit_http_admin_log, &audit,
     tg_audit_http_refused},
    {"HEAD", "/v1/audit/admin", AUDIT_OR_ADMIN, tg_audit_http_admin_log, &audit,
     tg_audit_http_refused},
    {"GET", "/v1/audit/usage", ANY_ROLE, tg_usage_http_read, &audit, NULL},
    {"HEAD", "/v1/audit/usage", ANY_ROLE, tg_usage_http_read, &audit, NULL},
    {"GET", "/v1/audit/*", PUBLIC, no_such_path, &audit, NULL},
    {"HEAD", "/v1/audit/*", PUBLIC, no_such_path, &audit, NULL},
    /* administration (tg_admin_http.c) */
    {"GET", "/v1/admin/teams", ADMIN, tg_admin_http_teams, &admin, NULL},
    {"HEAD", "/v1/admin/teams", ADMIN, tg_admin_http_teams, &admin, NULL},
    {"POST", "/v1/admin/teams", ADMIN, tg_admin_http_team_add, &admin, NULL},
    {"PUT", "/v1/admin/teams/{team}/key", ADMIN, tg_admin_http_team_key, &admin, NULL},
    {"GET", "/v1/admin/teams/{team}/presets", ADMIN, tg_admin_http_presets, &admin, NULL},
    {"HEAD", "/v1/admin/teams/{team}/presets", ADMIN, tg_admin_http_presets, &admin, NULL},
    {"GET", "/v1/admin/teams/{team}/presets/{preset}", ADMIN, tg_admin_http_preset_show,
     &admin, NULL},
    {"HEAD", "/v1/admin/teams/{team}/presets/{preset}", ADMIN, tg_admin_http_preset_show,
     &admin, NULL},
    {"PUT", "/v1/admin/teams/{team}/presets/{preset}", ADMIN, tg_admin_http_preset_set,
     &admin, NULL},
    {"GET", "/v1/admin/tokens", ADMIN, tg_admin_http_tokens, &admin, NULL},
    {"HEAD", "/v1/admin/tokens", ADMIN, tg_admin_http_tokens, &admin, NULL},
    {"POST", "/v1/admin/tokens", ADMIN, tg_admin_http_token_issue, &admin, NULL},
    {"DELETE", "/v1/admin/tokens/{id}", ADMIN, tg_admin_http_token_revoke, &admin, NULL},
    {"GET", "/v1/admin/teams/{team}/budget", ADMIN, tg_usage_http_budget, &admin, NULL},
    {"HEAD", "/v1/admin/teams/{team}/budget", ADMIN, tg_usage_http_budget, &admin, NULL},
    {"PUT", "/v1/admin/teams/{team}/budget", ADMIN, tg_usage_http_budget_set, &admin, NULL},
    {"*", "/v1/admin/*", PUBLIC, no_such_path, &admin, NULL},
    /* Parallel's signed webhooks (tg_webhook_http.c): the signature is the credential */
    {"POST", TG_WEBHOOK_PATH, PUBLIC, tg_webhook_http_receive, &webhooks, NULL},
    /* the browser pages (tg_pages*.c) */
    {"GET", "/", PUBLIC, tg_pages_form_page, &pages, NULL},
    {"HEAD", "/", PUBLIC, tg_pages_form_page, &pages, NULL},
    {"GET", "/submit", PUBLIC, tg_pages_form_page, &pages, NULL},
    {"HEAD", "/submit", PUBLIC, tg_pages_form_page, &pages, NULL},
    {"GET", "/ui/presets", ANY_ROLE, tg_pages_presets, &pages, NULL},
    {"HEAD", "/ui/presets", ANY_ROLE, tg_pages_presets, &pages, NULL},
    {"GET", "/static/*", PUBLIC, tg_pages_static, &files, NULL},
    {"HEAD", "/static/*", PUBLIC, tg_pages_static, &files, NULL},
    {"GET", "/history", PUBLIC, tg_pages_history, &history, NULL},
    {"HEAD", "/history", PUBLIC, tg_pages_history, &history, NULL},
    {"POST", "/history", PUBLIC, tg_pages_history, &history, NULL},
    {"GET", "/history/{id}", PUBLIC, tg_pages_history, &history, NULL},
    {"HEAD", "/history/{id}", PUBLIC, tg_pages_history, &history, NULL},
    {"POST", "/history/{id}", PUBLIC, tg_pages_history, &history, NULL},
    {"*", "/history/*", PUBLIC, no_such_page, &history, NULL},
    {"GET", "/usage", PUBLIC, tg_usage_page, &history, NULL},
    {"HEAD", "/usage", PUBLIC, tg_usage_page, &history, NULL},
    {"POST", "/usage", PUBLIC, tg_usage_page, &history, NULL},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

/* Whether path matches pattern; on a match the captures go to req->cap (pool strings).
 * 1, 0, or -1 when the pool is out of memory. */
static int match(const struct route *r, const char *path, struct tg_request *req)
{
    const char *start[TG_ROUTE_CAPS];
    size_t len[TG_ROUTE_CAPS];
    int n = 0;
    const char *p = r->pattern, *s = path;
    while (*p != '\0') {
        if (p[0] == '*' && p[1] == '\0') {
            s += strlen(s);
            break;
        }
        if (*p == '{') {
            size_t seg = strcspn(s, "/");
            if (seg == 0 || n == TG_ROUTE_CAPS)
                return 0;
            start[n] = s;
            len[n++] = seg;
            s += seg;
            p += strcspn(p, "}");
            if (*p == '}')
                p++;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    if (*s != '\0')
        return 0;
    const char *cap[TG_ROUTE_CAPS];
    for (int i = 0; i < n; i++) {
        cap[i] = tg_pool_strndup(req->pool, start[i], len[i]);
        if (cap[i] == NULL)
            return -1;
        if (r->family->valid_capture != NULL && !r->family->valid_capture(cap[i]))
            return 0;
    }
    for (int i = 0; i < n; i++)
        req->cap[i] = cap[i];
    req->ncap = n;
    req->route = r->pattern;
    return 1;
}

/* 405 for the rows of one pattern (from first on), with their methods in Allow. */
static void not_allowed(const struct tg_request *req, struct tg_response *resp,
                        const struct route *first)
{
    char allow[128] = "";
    size_t used = 0;
    for (const struct route *r = first; r->pattern != NULL &&
                                        strcmp(r->pattern, first->pattern) == 0; r++) {
        int n = snprintf(allow + used, sizeof(allow) - used, "%s%s", used > 0 ? ", " : "",
                         r->method);
        if (n < 0 || (size_t)n >= sizeof(allow) - used)
            break;
        used += (size_t)n;
    }
    const struct family *f = first->family;
    tg_resp_header(resp, "Allow", tg_pool_strdup(req->pool, allow));
    if (f->page == PAGE_ALWAYS || (f->page == PAGE_IF_PREFERRED && tg_html_preferred(req->accept)))
        tg_html_error_page(req, resp, 405, f->not_allowed_page);
    else
        tg_resp_error(resp, req, 405, f->not_allowed, NULL);
}

/* ---- the bound on answers -------------------------------------------------------------- */

/* The most a write's answer may hold. What a submission or an admin change answers is
 * bounded by its request (max_body_bytes, max_inputs_per_submission), and it tells of
 * something done: it is never refused for its size. */
#define WRITE_ANSWER_MAX ((size_t)256 * 1024 * 1024)

/* Whether the row reads: GET and HEAD, and the history's POSTs (a form that carries the
 * token, reading like the audit API). Only reads are bounded by max_answer_bytes. */
static int reads(const struct route *r)
{
    return strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0 ||
           r->family == &history;
}

/* A read whose answer passed max_answer_bytes. The buffer refused the append that would
 * have passed it (so the memory never grew beyond), and whatever the handler made of that
 * (the rows before it, or its own error) is replaced here: the client gets all of its
 * answer or this, never a 200 with part of the rows.
 *
 * 400, because the client can fix it and must not simply retry: the read asks for more than
 * the gateway builds at once, and the same data read in smaller pages (a smaller limit, a
 * narrower since/until, more filters, then next_cursor) is answered whole. Not 413 (RFC 9110
 * 15.5.14: the request's content is too large, and a GET has none), not 422 (the upstream's
 * validation shape for a parameter that is wrong, where here each is right on its own), not
 * a 5xx (nothing failed, and a retry gets the same). In the upstream's error shape, with
 * the bound in detail; the browser's pages get a page. */
static void too_large(struct tg_worker *w, struct tg_request *req, struct tg_response *resp,
                      const struct family *f)
{
    tg_metrics_answer_too_large();
    int page = f->page == PAGE_ALWAYS ||
               (resp->content_type != NULL && strncmp(resp->content_type, "text/html", 9) == 0);
    long max = w->conf->max_answer_bytes;
    tg_log(TG_LOG_WARN, "%s %s: the answer would pass max_answer_bytes (%ld): refused",
           req->method, req->path, max);
    resp->nheaders = 0; /* X-Next-Cursor and the like were about the rows not sent */
    tg_buf_clear(&resp->body);
    tg_buf_bound(&resp->body, (size_t)max);
    if (page) {
        tg_html_error_page(req, resp, 400,
                           "This page would be larger than the gateway builds at once, so it "
                           "is not shown. A submission's runs can be read through the audit "
                           "API a page at a time (/v1/audit/groups/{task group id}?limit=100, "
                           "then its next_cursor); or ask the gateway's operator.");
        return;
    }
    const char *msg =
        f == &audit
            ? "the answer would be larger than this gateway builds at once (max_answer_bytes); "
              "nothing of it is sent: ask for fewer rows per page (limit), a narrower "
              "since/until or more filters (team, state, interface, taskgroup_id), and follow "
              "next_cursor for the rest; one submission this large is read with `taskgate "
              "audit` on the gateway's machine"
            : "the answer would be larger than this gateway builds at once (max_answer_bytes); "
              "nothing of it is sent: ask for less at once";
    json_object *detail = tg_json_pool(req->pool, json_object_new_object());
    if (detail != NULL)
        json_object_object_add(detail, "max_answer_bytes", json_object_new_int64(max));
    tg_resp_error(resp, req, 400, msg, detail);
}

static void route(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    const char *path = req->path != NULL ? req->path : "/";
    const struct route *r = routes;
    int m = 0;
    while (r->pattern != NULL && (m = match(r, path, req)) == 0)
        r++;
    if (m < 0) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    if (r->pattern == NULL) {
        if (tg_html_preferred(req->accept))
            tg_html_error_page(req, resp, 404, "There is no page at this address.");
        else
            tg_resp_error(resp, req, 404, "Not Found", NULL);
        return;
    }
    const struct route *first = r;
    if (first->family->interface != NULL)
        resp->interface = first->family->interface;
    while (r->pattern != NULL && strcmp(r->pattern, first->pattern) == 0 &&
           strcmp(r->method, "*") != 0 && strcmp(r->method, req->method) != 0)
        r++;
    if (r->pattern == NULL || strcmp(r->pattern, first->pattern) != 0) {
        not_allowed(req, resp, first);
        return;
    }
    if (r->roles != PUBLIC) {
        struct tg_auth *auth = tg_pool_calloc(req->pool, 1, sizeof(*auth));
        if (auth == NULL) {
            tg_resp_error(resp, req, 500, "out of memory", NULL);
            return;
        }
        if (tg_http_auth(w, req, resp, NULL, auth) != TG_OK)
            return;
        if ((r->roles & ROLE(auth->role)) == 0) {
            tg_resp_error(resp, req, 403, r->family->forbidden, NULL);
            if (r->refused != NULL)
                r->refused(w, req, resp, auth);
            return;
        }
        req->auth = auth;
    }
    int bounded = reads(r);
    tg_buf_bound(&resp->body, bounded ? (size_t)w->conf->max_answer_bytes : WRITE_ANSWER_MAX);
    r->handler(w, req, resp);
    if (bounded && resp->body.refused)
        too_large(w, req, resp, r->family);
}

void tg_handle(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    route(w, req, resp);
    if (req->authorize) {
        /* nginx's subrequest: a refusal goes back as one it can pass on (tg_sdk_api.c). */
        tg_sdk_api_authorized(req, resp);
        return;
    }
    /* The answer exactly as it goes out (HTML included), for a repeat to replay. */
    if (resp->idem != NULL)
        tg_idem_answered(w, req, resp);
}
