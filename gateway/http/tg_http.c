/* The response helpers every handler shares: the one place where errors become HTTP
 * statuses and the upstream's error shapes; the team-token check; the request's log line.
 * The router is tg_router.c, above the handlers. */
#include "tg_http.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tg_json.h"
#include "tg_log.h"
#include "tg_store.h"
#include "tg_token.h"

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

/* The q parameter's value among the parameters in [p, end), 1 when there is none. */
static double param_q(const char *p, const char *end)
{
    while (p < end) {
        p += strspn(p, "; \t");
        if (p < end && (*p == 'q' || *p == 'Q')) {
            const char *v = p + 1 + strspn(p + 1, " \t");
            if (v < end && *v == '=')
                return strtod(v + 1 + strspn(v + 1, " \t"), NULL);
        }
        p += strcspn(p, ";");
        if (p > end)
            break;
    }
    return 1.0;
}

double tg_http_accept_q(const char *accept, const char *type)
{
    double best = -1;
    int best_rank = -1;
    size_t tlen_want = strlen(type);
    size_t slash = strcspn(type, "/");
    for (const char *p = accept; p != NULL && *p != '\0';) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t tlen = strcspn(p, ";, \t");
        int rank = -1;
        if (tlen == tlen_want && strncasecmp(p, type, tlen) == 0)
            rank = 2;
        else if (tlen == slash + 2 && strncasecmp(p, type, slash + 1) == 0 && p[slash + 1] == '*')
            rank = 1;
        else if (tlen == 3 && strncmp(p, "*/*", 3) == 0)
            rank = 0;
        if (rank > best_rank) {
            best = param_q(p + tlen, p + n);
            best_rank = rank;
        }
        p += n;
    }
    return best;
}

int tg_http_wants_csv(const char *accept)
{
    if (accept == NULL)
        return 0;
    double csv = tg_http_accept_q(accept, "text/csv");
    return csv > 0 && csv > tg_http_accept_q(accept, "application/json");
}

static int check_token(struct tg_worker *w, const struct tg_request *req,
                       struct tg_response *resp, const char *form_token, struct tg_auth *auth,
                       int kept)
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
    int rc = kept ? tg_store_auth_kept(w->store, hash, tg_now_ms(), auth)
                  : tg_store_auth(w->store, hash, tg_now_ms(), auth);
    if (rc == TG_ENOTFOUND) {
        tg_resp_error(resp, req, 401, "invalid, expired or revoked team token", NULL);
        return TG_ERR;
    }
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "token lookup failed: %s", tg_store_errmsg(w->store));
        tg_resp_error(resp, req, 503, "the audit database is unavailable; nothing was sent "
                      "upstream; retry later",
                      NULL);
        return TG_ERR;
    }
    resp->team = tg_pool_strdup(req->pool, auth->team);
    return TG_OK;
}

int tg_http_auth(struct tg_worker *w, const struct tg_request *req, struct tg_response *resp,
                 const char *form_token, struct tg_auth *out)
{
    return check_token(w, req, resp, form_token, out, 0);
}

int tg_http_auth_kept(struct tg_worker *w, const struct tg_request *req,
                      struct tg_response *resp, const char *form_token, struct tg_auth *out)
{
    return check_token(w, req, resp, form_token, out, 1);
}

void tg_http_log_request(const struct tg_request *req, const struct tg_response *resp)
{
    if (!tg_log_enabled(TG_LOG_INFO))
        return;
    const struct tg_log_field f[] = {
        {"msg", "request", 0, 0},
        {"request_id", req->request_id, 0, 0},
        {"method", req->method, 0, 0},
        {"path", req->path, 0, 0},
        {"status", NULL, resp->status, 1},
        {"remote_addr", req->remote_addr, 0, 0},
        {"team", resp->team, 0, 0},
        {"interface", resp->interface, 0, 0},
        {"submission_id", resp->submission_id, 0, 0},
        {"inputs", NULL, resp->inputs, 1},
        {"runs", NULL, resp->runs, 1},
        {"upstream_ms", NULL, resp->upstream_us / 1000, 1},
        {"total_ms", NULL, (tg_mono_us() - req->started_us) / 1000, 1},
    };
    tg_log_fields(TG_LOG_INFO, f, sizeof(f) / sizeof(f[0]));
}
