/* Estimated spend over HTTP (contract in tg_usage_http.h). */
#include "tg_usage_http.h"

#include <stdio.h>
#include <string.h>

#include "tg_json.h"
#include "tg_log.h"
#include "tg_price.h"
#include "tg_query.h"
#include "tg_usage.h"

#define QUERY_MAX 4096
#define BODY_MAX 4096

static void problem(json_object *detail, const char *where, const char *name, const char *msg,
                    const char *type)
{
    tg_json_problem(detail, tg_json_loc(where, name, NULL), msg, type);
}

/* ---- GET /v1/audit/usage ------------------------------------------------------------ */

/* One name=value pair of the query string; a problem goes to detail. */
static void query_pair(const char *p, size_t len, struct tg_usage_read *r, json_object *detail)
{
    const char *eq = memchr(p, '=', len);
    size_t nlen = eq != NULL ? (size_t)(eq - p) : len;
    const char *v = eq != NULL ? eq + 1 : p + len;
    char name[32], value[256], err[200];
    if (tg_query_decode(p, nlen, name, sizeof(name)) != TG_OK) {
        problem(detail, "query", NULL, "unknown query parameter", "extra_forbidden");
        return;
    }
    if (tg_query_decode(v, (size_t)(p + len - v), value, sizeof(value)) != TG_OK) {
        problem(detail, "query", name, "too long, a bad percent escape, or not UTF-8",
                "value_error");
        return;
    }
    if (value[0] == '\0')
        return; /* an empty value is no filter (what an empty form field sends) */
    int rc = tg_usage_set(r, name, value, err, sizeof(err));
    if (rc != TG_OK)
        problem(detail, "query", name, err, rc == TG_ENOTFOUND ? "extra_forbidden" : "value_error");
}

static void parse_query(const char *query, struct tg_usage_read *r, json_object *detail)
{
    if (strlen(query) > QUERY_MAX) {
        problem(detail, "query", NULL, "the query string is too long", "value_error");
        return;
    }
    for (const char *p = query; *p != '\0';) {
        size_t len = strcspn(p, "&");
        if (len > 0)
            query_pair(p, len, r, detail);
        p += len;
        if (*p == '&')
            p++;
    }
}

void tg_usage_http_read(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    const struct tg_auth *auth = req->auth;
    struct tg_usage_read r;
    tg_usage_init(&r);
    r.scope_team = auth->role == TG_ROLE_SUBMIT ? auth->team : NULL;
    long rows = -1;
    json_object *detail = tg_json_pool(req->pool, json_object_new_array());
    if (detail == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    const char *q = req->query != NULL ? req->query : "";
    if (tg_http_wants_csv(req->accept))
        r.format = TG_AUDIT_CSV;
    parse_query(q, &r, detail);
    if (json_object_array_length(detail) > 0) {
        tg_resp_validation(resp, detail);
    } else {
        tg_buf_clear(&resp->body);
        int rc = tg_usage_answer(w->store, &r, &resp->body, &rows);
        if (rc == TG_OK) {
            resp->status = 200;
            resp->content_type = r.format == TG_AUDIT_CSV ? "text/csv; charset=utf-8"
                                                          : "application/json";
        } else if (rc == TG_ETOOBIG) {
            tg_resp_error(resp, req, 400, "the answer is larger than the gateway sends: ask "
                          "for fewer days or one team", NULL);
        } else {
            tg_log(TG_LOG_ERROR, "usage read failed: %s (%s)", tg_rc_str(rc),
                   tg_store_errmsg(w->store));
            tg_resp_error(resp, req, 503, "the audit database cannot be read; try again later",
                          NULL);
        }
    }
    /* Logged like every audit read; one that cannot be logged is not answered. */
    char actor[64];
    snprintf(actor, sizeof(actor), "token:%s", auth->token_id);
    struct tg_actor who = {actor, auth->team, "http", req->remote_addr};
    const char *what = tg_pool_printf(req->pool, "%s %s%s%s", req->method, req->path,
                                      q[0] != '\0' ? "?" : "", q);
    int rc = what != NULL ? tg_store_audit_read_log(w->store, &who, what, rows) : TG_ENOMEM;
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "audit read not logged: %s (%s)", tg_rc_str(rc),
               tg_store_errmsg(w->store));
        resp->nheaders = 0;
        tg_resp_error(resp, req, 503, "this audit read could not be logged, so it is not "
                                      "answered; try again later", NULL);
    }
}

/* ---- /v1/admin/teams/{team}/budget -------------------------------------------------- */

static int64_t team_id_of(struct tg_worker *w, struct tg_request *req,
                          struct tg_response *resp, const char *team)
{
    int64_t id = 0;
    int rc = tg_store_team_id(w->store, team, &id);
    if (rc == TG_ENOTFOUND) {
        tg_resp_error(resp, req, 404, tg_pool_printf(req->pool, "no team %.64s", team), NULL);
        return 0;
    }
    if (rc != TG_OK) {
        tg_resp_error(resp, req, 503, "the database cannot be read; try again later", NULL);
        return 0;
    }
    return id;
}

static void answer_budget(struct tg_worker *w, struct tg_request *req,
                          struct tg_response *resp, const char *team, int64_t team_id,
                          int status)
{
    tg_buf_clear(&resp->body);
    int rc = tg_usage_budget_json(w->store, team, team_id, &resp->body);
    if (rc != TG_OK) {
        tg_resp_error(resp, req, 503, "the database cannot be read; try again later", NULL);
        return;
    }
    resp->status = status;
    resp->content_type = "application/json";
}

void tg_usage_http_budget(struct tg_worker *w, struct tg_request *req,
                          struct tg_response *resp)
{
    int64_t id = team_id_of(w, req, resp, req->cap[0]);
    if (id != 0)
        answer_budget(w, req, resp, req->cap[0], id, 200);
}

/* An amount member: a string of dollars or a whole number; absent or null: none. */
static const char *amount_member(struct tg_request *req, json_object *body, const char *name,
                                 json_object *detail)
{
    json_object *v = tg_json_get(body, name);
    if (v == NULL)
        return NULL;
    if (json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    if (json_object_is_type(v, json_type_int))
        return tg_pool_printf(req->pool, "%lld", (long long)json_object_get_int64(v));
    problem(detail, "body", name, "an amount in US dollars as a string, such as \"0.10\"",
            "string_type");
    return NULL;
}

void tg_usage_http_budget_set(struct tg_worker *w, struct tg_request *req,
                              struct tg_response *resp)
{
    const char *team = req->cap[0];
    json_object *detail = tg_json_pool(req->pool, json_object_new_array());
    if (detail == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    if (req->content_type != NULL && strncmp(req->content_type, "application/json", 16) != 0) {
        tg_resp_error(resp, req, 415, "send the body as application/json", NULL);
        return;
    }
    if (req->body_len > BODY_MAX) {
        tg_resp_error(resp, req, 413, "the body is larger than a budget takes", NULL);
        return;
    }
    char err[256];
    json_object *where = NULL;
    json_object *body = tg_json_pool(req->pool,
                                     tg_json_parse_input(req->body, req->body_len,
                                                         TG_JSON_MAX_DEPTH, err, sizeof(err),
                                                         &where));
    if (body == NULL) {
        tg_json_problem(detail, where, err, "json_invalid");
    } else if (!json_object_is_type(body, json_type_object)) {
        tg_json_problem(detail, NULL, "the body is a JSON object", "model_attributes_type");
        body = NULL;
    }
    const char *monthly = NULL, *daily = NULL;
    int soft = 0;
    if (body != NULL) {
        json_object_object_foreach(body, key, value) {
            (void)value;
            if (strcmp(key, "monthly_usd") != 0 && strcmp(key, "daily_usd") != 0 &&
                strcmp(key, "soft") != 0)
                problem(detail, "body", key, "unknown field (monthly_usd, daily_usd, soft)",
                        "extra_forbidden");
        }
        monthly = amount_member(req, body, "monthly_usd", detail);
        daily = amount_member(req, body, "daily_usd", detail);
        json_object *s = tg_json_get(body, "soft");
        if (s != NULL && !json_object_is_type(s, json_type_boolean))
            problem(detail, "body", "soft", "true or false", "bool_type");
        soft = s != NULL && json_object_get_boolean(s);
    }
    if (json_object_array_length(detail) > 0) {
        tg_resp_validation(resp, detail);
        return;
    }
    int64_t id = team_id_of(w, req, resp, team);
    if (id == 0)
        return;
    char actor[64];
    snprintf(actor, sizeof(actor), "token:%s", req->auth->token_id);
    struct tg_actor who = {actor, req->auth->team, "http", req->remote_addr};
    int rc = tg_usage_budget_set(w->store, &who, team, monthly, daily, soft, err, sizeof(err));
    if (rc == TG_EINVAL) {
        const char *name = strncmp(err, "--daily", 7) == 0  ? "daily_usd"
                           : strncmp(err, "--soft", 6) == 0 ? "soft"
                                                            : "monthly_usd";
        problem(detail, "body", name, err, "value_error");
        tg_resp_validation(resp, detail);
    } else if (rc == TG_ENOTFOUND) {
        tg_resp_error(resp, req, 404, err, NULL);
    } else if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "admin change failed: %s (%s)", tg_rc_str(rc), err);
        tg_resp_error(resp, req, 503, "the database cannot make this change now; nothing was "
                                      "changed, try again later", NULL);
    } else {
        answer_budget(w, req, resp, team, id, 200);
    }
}

/* ---- the 402 ------------------------------------------------------------------------ */

void tg_usage_http_refused(struct tg_request *req, struct tg_response *resp,
                           const char *sub_id, const struct tg_budget_note *n)
{
    char budget[32], spent[32], left[32], cost[32];
    int64_t remaining = n->budget_micro - n->spent_micro;
    tg_money_format(n->budget_micro, budget, sizeof(budget));
    tg_money_format(n->spent_micro, spent, sizeof(spent));
    tg_money_format(remaining > 0 ? remaining : 0, left, sizeof(left));
    tg_money_format(n->cost_micro, cost, sizeof(cost));
    json_object *d = tg_json_pool(req->pool, json_object_new_object());
    if (d != NULL) {
        json_object_object_add(d, "submission_id", json_object_new_string(sub_id));
        json_object_object_add(d, "state", json_object_new_string("rejected"));
        json_object_object_add(d, "budget", json_object_new_string(n->which));
        json_object_object_add(d, "period", json_object_new_string(n->period));
        json_object_object_add(d, "budget_usd", json_object_new_string(budget));
        json_object_object_add(d, "spent_usd", json_object_new_string(spent));
        json_object_object_add(d, "remaining_usd", json_object_new_string(left));
        json_object_object_add(d, "estimate_usd", json_object_new_string(cost));
    }
    char msg[400];
    snprintf(msg, sizeof(msg), "the team's %s budget for %s ($%s) has $%s left; this "
             "submission's estimated cost is $%s; nothing was sent", n->which, n->period,
             budget, left, cost);
    tg_resp_error(resp, req, 402, msg, d);
}
