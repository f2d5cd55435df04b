/* The request router and the response helpers every handler shares: the one place where
 * errors become HTTP statuses and the upstream's error shapes. */
#include "tg_http.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "tg_admin.h"
#include "tg_audit.h"
#include "tg_compat.h"
#include "tg_crypto.h"
#include "tg_html.h"
#include "tg_idem.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_metrics.h"
#include "tg_pages.h"
#include "tg_reconcile.h"
#include "tg_store.h"
#include "tg_token.h"

const char *tg_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

void tg_resp_header(struct tg_response *resp, const char *name, const char *value)
{
    assert(resp->nheaders < TG_RESP_MAX_HEADERS);
    if (resp->nheaders >= TG_RESP_MAX_HEADERS)
        return;
    resp->header_name[resp->nheaders] = name;
    resp->header_value[resp->nheaders] = value;
    resp->nheaders++;
}

void tg_resp_json(struct tg_response *resp, int status, const char *json, size_t len)
{
    resp->status = status;
    resp->content_type = "application/json";
    tg_buf_clear(&resp->body);
    if (tg_buf_add(&resp->body, json, len) != TG_OK) {
        resp->status = 500;
        tg_buf_clear(&resp->body);
    }
}

void tg_resp_error(struct tg_response *resp, const struct tg_request *req, int status,
                   const char *message, struct json_object *detail)
{
    resp->status = status;
    resp->content_type = "application/json";
    tg_buf_clear(&resp->body);
    if (tg_json_error_body(&resp->body, req->request_id, message, detail) != TG_OK) {
        tg_buf_clear(&resp->body);
        tg_json_error_body(&resp->body, req->request_id, "internal error", NULL);
    }
}

void tg_resp_validation(struct tg_response *resp, struct json_object *detail)
{
    resp->status = 422;
    resp->content_type = "application/json";
    tg_buf_clear(&resp->body);
    int rc = tg_buf_adds(&resp->body, "{\"detail\":");
    if (rc == TG_OK) {
        size_t len;
        const char *text = tg_json_str(detail, &len);
        rc = tg_buf_add(&resp->body, text, len);
    }
    if (rc == TG_OK)
        rc = tg_buf_adds(&resp->body, "}");
    if (rc != TG_OK) {
        tg_buf_clear(&resp->body);
        tg_buf_adds(&resp->body, "{\"detail\":[]}");
    }
}

int tg_http_auth(struct tg_worker *w, const struct tg_request *req, struct tg_response *resp,
                 const char *form_token, struct tg_auth *auth)
{
    size_t len;
    const char *token = tg_token_from_headers(req->authorization, req->api_key, &len);
    if (token == NULL && form_token != NULL && *form_token != '\0' && strlen(form_token) < 256) {
        token = form_token;
        len = strlen(form_token);
    }
    if (token == NULL) {
        tg_resp_error(resp, req, 401,
                      "missing team token: send 'Authorization: Bearer <token>' or "
                      "'x-api-key: <token>' (or a 'token' field in a form)",
                      NULL);
        return TG_ERR;
    }
    char hash[TG_HASH_LEN];
    tg_sha256_hex(token, len, hash);
    int rc = tg_store_auth(w->store, hash, tg_now_ms(), auth);
    if (rc == TG_ENOTFOUND) {
        tg_resp_error(resp, req, 401, "invalid, expired or revoked team token", NULL);
        return TG_ERR;
    }
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "token lookup failed: %s", tg_store_errmsg(w->store));
        tg_resp_error(resp, req, 503, "the audit database is unavailable; nothing was sent",
                      NULL);
        return TG_ERR;
    }
    resp->team = tg_pool_strdup(req->pool, auth->team);
    return TG_OK;
}

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

/* 503 with what is wrong: in general terms for anyone (the endpoint is public), with the
 * details (paths, SQLite's words) for loopback clients and the log. */
static void health(struct tg_worker *w, const struct tg_request *req,
                   struct tg_response *resp)
{
    char detail[400] = "";
    const char *pub = NULL;
    long owed;
    if (tg_store_ping(w->store) != TG_OK) {
        const char *msg = tg_store_errmsg(w->store);
        pub = strstr(msg, "read-only") != NULL ? "the database cannot be written"
                                               : "the database cannot be read";
        snprintf(detail, sizeof(detail), "%s", msg);
    } else if (tg_store_write_health(detail, sizeof(detail)) != TG_OK) {
        pub = "the database cannot be written";
    } else if ((owed = tg_reconcile_owed()) > 0) {
        pub = "submissions wait for the database to record their outcome";
        snprintf(detail, sizeof(detail), "%ld submission(s) wait to be recorded as unknown",
                 owed);
    } else if (tg_crypto_check(detail, sizeof(detail), &pub) != TG_OK) {
        if (pub == NULL)
            pub = "the key file cannot be used";
    }
    if (pub == NULL) {
        static const char ok[] = "{\"status\":\"ok\"}";
        tg_resp_json(resp, 200, ok, sizeof(ok) - 1);
        return;
    }
    log_health(detail);
    const char *msg = pub;
    if (from_loopback(req) && detail[0] != '\0')
        msg = tg_pool_printf(req->pool, "%s: %s", pub, detail);
    tg_resp_error(resp, req, 503, msg != NULL ? msg : pub, NULL);
}

static void metrics(struct tg_worker *w, const struct tg_request *req,
                    struct tg_response *resp)
{
    tg_buf_clear(&resp->body);
    int rc = tg_metrics_render(&resp->body);
    /* Read from the database, so that they are right across restarts; left out (and
     * /healthz says why) when it cannot be read. */
    long pending, unknown;
    if (rc == TG_OK && tg_store_open_counts(w->store, &pending, &unknown) == TG_OK)
        rc = tg_buf_printf(&resp->body,
                           "# HELP taskgate_submissions_open Submissions not settled: pending "
                           "(being sent) and unknown (to be reconciled).\n"
                           "# TYPE taskgate_submissions_open gauge\n"
                           "taskgate_submissions_open{state=\"pending\"} %ld\n"
                           "taskgate_submissions_open{state=\"unknown\"} %ld\n",
                           pending, unknown);
    if (rc != TG_OK) {
        tg_resp_error(resp, req, 500, "metrics do not fit the answer buffer", NULL);
        return;
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static void route(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    const char *path = req->path != NULL ? req->path : "/";
    int is_get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    int is_post = strcmp(req->method, "POST") == 0;

    if (strcmp(path, "/healthz") == 0) {
        if (is_get)
            health(w, req, resp);
        else
            tg_resp_error(resp, req, 405, "use GET", NULL);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        if (is_get)
            metrics(w, req, resp);
        else
            tg_resp_error(resp, req, 405, "use GET", NULL);
        return;
    }
    if (strcmp(path, "/v1/runs") == 0) {
        if (is_post) {
            resp->interface = "simplified";
            tg_submit_runs(w, req, resp);
            if (tg_html_preferred(req->accept) && !resp->replayed)
                tg_html_render(req, resp);
        } else {
            tg_resp_header(resp, "Allow", "POST");
            tg_resp_error(resp, req, 405, "use POST to submit runs", NULL);
        }
        return;
    }
    if (tg_compat_handle(w, req, resp))
        return;
    if (strncmp(path, "/v1/audit/", 10) == 0) {
        resp->interface = "audit";
        tg_audit_http(w, req, resp);
        return;
    }
    if (strncmp(path, "/v1/admin/", 10) == 0) {
        resp->interface = "admin";
        tg_admin_http(w, req, resp);
        return;
    }
    if (tg_pages_handle(w, req, resp)) /* the browser pages, and a browser's 404 */
        return;
    tg_resp_error(resp, req, 404, "Not Found", NULL);
}

void tg_handle(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    route(w, req, resp);
    /* The answer exactly as it goes out (HTML included), for a repeat to replay. */
    if (resp->idem != NULL)
        tg_idem_answered(w, req, resp);
}
