/* The request router: names every handler, above them all, and answers the gateway's own
 * paths (/healthz, /metrics). Handlers answer through tg_http.c's helpers. */
#include "tg_router.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "tg_admin.h"
#include "tg_audit.h"
#include "tg_sdk_api.h"
#include "tg_crypto.h"
#include "tg_html.h"
#include "tg_idem.h"
#include "tg_log.h"
#include "tg_metrics.h"
#include "tg_pages.h"
#include "tg_reconcile.h"
#include "tg_store.h"
#include "tg_submit.h"

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
