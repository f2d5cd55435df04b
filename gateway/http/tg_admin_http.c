/* /v1/admin/...: teams, keys, presets and tokens over HTTP for admin tokens (contract in
 * tg_admin_http.h). JSON bodies and answers only: every change is made by the same
 * operation of tg_admin.c that the CLI calls, logged under the acting token. */
#include "tg_admin_http.h"

#include <stdio.h>
#include <string.h>

#include "tg_admin.h"
#include "tg_http.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_query.h"

#define BODY_MAX (1024 * 1024) /* an admin body; a preset is the largest */

/* One admin request on its way through: the parts of the answer it builds. */
struct admin {
    struct tg_worker *w;
    struct tg_request *req;
    struct tg_response *resp;
    struct tg_auth auth;
    struct tg_actor who;
    char actor[64];
    json_object *detail;   /* 422 problems */
    char err[512];
};

/* ---- answers ----------------------------------------------------------------------------- */

static void answer_json(struct admin *a, int status, json_object *o)
{
    size_t len;
    const char *text = o != NULL ? tg_json_str(o, &len) : NULL;
    if (text == NULL) {
        tg_resp_error(a->resp, a->req, 500, "out of memory", NULL);
        return;
    }
    tg_resp_json(a->resp, status, text, len);
}

static void problem(struct admin *a, const char *where, const char *name, const char *msg)
{
    tg_json_problem(a->detail, tg_json_loc(where, name, NULL), msg, "value_error");
}

/* The answer to an operation that failed: 422 for a refused argument (at loc where/name),
 * 404, 409, 503 for the store. */
static void answer_failure(struct admin *a, int rc, const char *where, const char *name)
{
    if (rc == TG_EINVAL) {
        if (json_object_array_length(a->detail) == 0)
            problem(a, where, name, a->err);
        tg_resp_validation(a->resp, a->detail);
    } else if (rc == TG_ENOTFOUND) {
        tg_resp_error(a->resp, a->req, 404, a->err, NULL);
    } else if (rc == TG_EEXIST) {
        tg_resp_error(a->resp, a->req, 409, a->err, NULL);
    } else {
        tg_log(TG_LOG_ERROR, "admin change failed: %s (%s)", tg_rc_str(rc), a->err);
        tg_resp_error(a->resp, a->req, 503, "the database cannot make this change now; "
                                            "nothing was changed, try again later", NULL);
    }
}

/* ---- bodies ------------------------------------------------------------------------------ */

/* The body as a JSON object (pool-owned), or NULL with the answer already in resp. */
static json_object *body_object(struct admin *a)
{
    const char *ct = a->req->content_type;
    if (ct != NULL && strncmp(ct, "application/json", 16) != 0) {
        tg_resp_error(a->resp, a->req, 415, "send the body as application/json", NULL);
        return NULL;
    }
    if (a->req->body_len > BODY_MAX) {
        tg_resp_error(a->resp, a->req, 413, "the body is larger than an admin request takes",
                      NULL);
        return NULL;
    }
    char err[256];
    json_object *where = NULL;
    json_object *o = tg_json_pool(a->req->pool,
                                  tg_json_parse_input(a->req->body, a->req->body_len,
                                                      TG_JSON_MAX_DEPTH, err, sizeof(err),
                                                      &where));
    if (o == NULL) {
        tg_json_problem(a->detail, where, err, "json_invalid");
    } else if (!json_object_is_type(o, json_type_object)) {
        tg_json_problem(a->detail, NULL, "the body is a JSON object", "model_attributes_type");
        o = NULL;
    }
    if (o == NULL)
        tg_resp_validation(a->resp, a->detail);
    return o;
}

/* The string members names[] of body (NULL where absent or null) into vals[]; a member of
 * another type, or one not in names[], is a problem. TG_OK or TG_EINVAL. */
static int body_strings(struct admin *a, json_object *body, const char *const *names,
                        const char **vals, int n)
{
    for (int i = 0; i < n; i++)
        vals[i] = NULL;
    json_object_object_foreach(body, key, value) {
        int i = 0;
        while (i < n && strcmp(names[i], key) != 0)
            i++;
        if (i == n)
            tg_json_problem(a->detail, tg_json_loc("body", key, NULL), "unknown field",
                            "extra_forbidden");
        else if (value != NULL && !json_object_is_type(value, json_type_string))
            tg_json_problem(a->detail, tg_json_loc("body", key, NULL), "expected a string",
                            "string_type");
        else if (value != NULL)
            vals[i] = json_object_get_string(value);
    }
    return json_object_array_length(a->detail) == 0 ? TG_OK : TG_EINVAL;
}

/* ---- teams ------------------------------------------------------------------------------- */

static json_object *team_json(const struct tg_team_row *row)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(row->name));
    json_object_object_add(o, "key_fingerprint", json_object_new_string(row->key_fingerprint));
    json_object_object_add(o, "created_at", json_object_new_string(row->created_at));
    json_object_object_add(o, "tokens", json_object_new_int(row->tokens));
    json_object_object_add(o, "presets", json_object_new_int(row->presets));
    return o;
}

static int add_team_row(void *arg, const struct tg_team_row *row)
{
    return json_object_array_add(arg, team_json(row)) == 0 ? 0 : TG_ENOMEM;
}

static int keep_team_row(void *arg, const struct tg_team_row *row)
{
    *(json_object **)arg = team_json(row);
    return 0;
}

/* Answers with the team's row as it is now (after a change: its new fingerprint). */
static void answer_team(struct admin *a, int status, const char *name)
{
    json_object *o = NULL;
    int rc = tg_admin_team_show(a->w->store, name, keep_team_row, &o, a->err, sizeof(a->err));
    tg_json_pool(a->req->pool, o);
    if (rc != TG_OK)
        answer_failure(a, rc, "path", "team");
    else
        answer_json(a, status, o);
}

static void teams_list(struct admin *a)
{
    json_object *data = tg_json_pool(a->req->pool, json_object_new_array());
    int rc = data != NULL ? tg_store_team_list(a->w->store, add_team_row, data) : TG_ENOMEM;
    if (rc != TG_OK) {
        snprintf(a->err, sizeof(a->err), "%s", tg_store_errmsg(a->w->store));
        answer_failure(a, rc, NULL, NULL);
        return;
    }
    json_object *o = tg_json_pool(a->req->pool, json_object_new_object());
    json_object_object_add(o, "data", json_object_get(data));
    answer_json(a, 200, o);
}

static void team_add(struct admin *a)
{
    static const char *const names[] = {"name", "key"};
    const char *v[2];
    json_object *body = body_object(a);
    if (body == NULL)
        return;
    if (body_strings(a, body, names, v, 2) != TG_OK) {
        tg_resp_validation(a->resp, a->detail);
        return;
    }
    if (v[0] == NULL)
        problem(a, "body", "name", "the team's name is required");
    else if (!tg_admin_valid_name(v[0]))
        problem(a, "body", "name", "a team name is " TG_ADMIN_NAME_RULE);
    if (tg_admin_key_problem(v[1]) != NULL)
        problem(a, "body", "key", v[1] == NULL ? "the team's Parallel API key is required"
                                               : tg_admin_key_problem(v[1]));
    if (json_object_array_length(a->detail) > 0) {
        tg_resp_validation(a->resp, a->detail);
        return;
    }
    int rc = tg_admin_team_add(a->w->store, &a->who, v[0], v[1], a->err, sizeof(a->err));
    if (rc != TG_OK)
        answer_failure(a, rc, "body", "name");
    else
        answer_team(a, 201, v[0]);
}

static void team_set_key(struct admin *a, const char *team)
{
    static const char *const names[] = {"key"};
    const char *key;
    json_object *body = body_object(a);
    if (body == NULL)
        return;
    if (body_strings(a, body, names, &key, 1) == TG_OK && tg_admin_key_problem(key) != NULL)
        problem(a, "body", "key", key == NULL ? "the team's Parallel API key is required"
                                              : tg_admin_key_problem(key));
    if (json_object_array_length(a->detail) > 0) {
        tg_resp_validation(a->resp, a->detail);
        return;
    }
    int rc = tg_admin_team_set_key(a->w->store, &a->who, team, key, a->err, sizeof(a->err));
    if (rc != TG_OK)
        answer_failure(a, rc, "body", "key");
    else
        answer_team(a, 200, team);
}

/* ---- presets ----------------------------------------------------------------------------- */

static int add_preset_row(void *arg, const char *name, const char *updated_at)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "updated_at", json_object_new_string(updated_at));
    return json_object_array_add(arg, o) == 0 ? 0 : TG_ENOMEM;
}

static void presets_list(struct admin *a, const char *team)
{
    json_object *data = tg_json_pool(a->req->pool, json_object_new_array());
    int rc = data != NULL ? tg_admin_preset_list(a->w->store, team, add_preset_row, data,
                                                 a->err, sizeof(a->err))
                          : TG_ENOMEM;
    if (rc != TG_OK) {
        answer_failure(a, rc, "path", "team");
        return;
    }
    json_object *o = tg_json_pool(a->req->pool, json_object_new_object());
    json_object_object_add(o, "team", json_object_new_string(team));
    json_object_object_add(o, "data", json_object_get(data));
    answer_json(a, 200, o);
}

/* Answers {"team","name","preset"} with the stored preset, MCP header values as
 * fingerprints: like a key, they are written, never read back. */
static void preset_show(struct admin *a, const char *team, const char *name)
{
    char *text = NULL;
    int rc = tg_admin_preset_get(a->w->store, a->req->pool, team, name, &text, a->err,
                                 sizeof(a->err));
    if (rc != TG_OK) {
        answer_failure(a, rc, "path", "preset");
        return;
    }
    json_object *preset = tg_json_parse_text(text);
    if (tg_json_redact_mcp(preset) != TG_OK) {
        json_object_put(preset);
        preset = NULL;
    }
    json_object *o = tg_json_pool(a->req->pool, json_object_new_object());
    json_object_object_add(o, "team", json_object_new_string(team));
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "preset", preset);
    answer_json(a, 200, o);
}

static void preset_set(struct admin *a, const char *team, const char *name)
{
    json_object *body = body_object(a);
    if (body == NULL)
        return;
    int rc = tg_admin_preset_set(a->w->store, &a->who, team, name, body, a->detail, a->err,
                                 sizeof(a->err));
    if (rc != TG_OK)
        answer_failure(a, rc, "path", "preset");
    else
        preset_show(a, team, name);
}

/* ---- tokens ------------------------------------------------------------------------------ */

static void add_opt_string(json_object *o, const char *name, const char *v)
{
    json_object_object_add(o, name, v != NULL ? json_object_new_string(v) : NULL);
}

static int add_token_row(void *arg, const struct tg_token_row *row)
{
    json_object *o = json_object_new_object();
    add_opt_string(o, "id", row->id);
    add_opt_string(o, "team", row->team);
    add_opt_string(o, "role", row->role);
    add_opt_string(o, "label", row->label);
    add_opt_string(o, "created_at", row->created_at);
    add_opt_string(o, "expires_at", row->expires_at);
    add_opt_string(o, "revoked_at", row->revoked_at);
    return json_object_array_add(arg, o) == 0 ? 0 : TG_ENOMEM;
}

/* The rows of team's tokens (NULL: every team's), as a pool-owned array. */
static json_object *token_rows(struct admin *a, const char *team, int *rc)
{
    json_object *data = tg_json_pool(a->req->pool, json_object_new_array());
    *rc = data != NULL ? tg_admin_token_list(a->w->store, team, add_token_row, data, a->err,
                                             sizeof(a->err))
                       : TG_ENOMEM;
    return data;
}

static void tokens_list(struct admin *a)
{
    char team[80];
    int q = tg_query_get(a->req->query, "team", team, sizeof(team));
    if (q == TG_EINVAL || (q == TG_OK && !tg_admin_valid_name(team))) {
        problem(a, "query", "team", "a team name is " TG_ADMIN_NAME_RULE);
        tg_resp_validation(a->resp, a->detail);
        return;
    }
    int rc;
    json_object *data = token_rows(a, q == TG_OK ? team : NULL, &rc);
    if (rc != TG_OK) {
        answer_failure(a, rc, "query", "team");
        return;
    }
    json_object *o = tg_json_pool(a->req->pool, json_object_new_object());
    json_object_object_add(o, "data", json_object_get(data));
    answer_json(a, 200, o);
}

/* Answers status with the row of token id as stored now, plus "token" when token is not
 * NULL (the one answer that shows a token). */
static void answer_token(struct admin *a, int status, const char *id, const char *team,
                         const char *token)
{
    int rc;
    json_object *data = token_rows(a, team, &rc);
    json_object *row = NULL;
    for (size_t i = 0; rc == TG_OK && i < json_object_array_length(data); i++) {
        json_object *r = json_object_array_get_idx(data, i);
        const char *rid = tg_json_get_str(r, "id");
        if (rid != NULL && strcmp(rid, id) == 0)
            row = r;
    }
    if (row == NULL) {
        tg_resp_error(a->resp, a->req, 503, "the change is made but cannot be read back",
                      NULL);
        return;
    }
    if (token != NULL)
        json_object_object_add(row, "token", json_object_new_string(token));
    answer_json(a, status, row);
    if (token != NULL)
        json_object_object_del(row, "token"); /* the pool frees it; leave no copy there */
}

static void token_issue(struct admin *a)
{
    static const char *const names[] = {"team", "role", "label", "expires"};
    const char *v[4];
    json_object *body = body_object(a);
    if (body == NULL)
        return;
    enum tg_role role = TG_ROLE_SUBMIT;
    int64_t expires = 0;
    if (body_strings(a, body, names, v, 4) == TG_OK) {
        if (v[0] == NULL || !tg_admin_valid_name(v[0]))
            problem(a, "body", "team", v[0] == NULL ? "the token's team is required"
                                                    : "a team name is " TG_ADMIN_NAME_RULE);
        if (v[1] != NULL && tg_domain_role_parse(v[1], &role) != TG_OK)
            problem(a, "body", "role", "the role is submit, audit or admin");
        if (v[2] != NULL && (strlen(v[2]) > 128 || v[2][0] == '\0'))
            problem(a, "body", "label", "a label is 1 to 128 characters");
        if (v[3] != NULL && tg_admin_parse_when(v[3], tg_now_ms(), &expires) != TG_OK)
            problem(a, "body", "expires",
                    "an RFC 3339 time, a date or a duration from now such as 90d, 12h, 30m");
    }
    if (json_object_array_length(a->detail) > 0) {
        tg_resp_validation(a->resp, a->detail);
        return;
    }
    struct tg_admin_token t;
    int rc = tg_admin_token_issue(a->w->store, &a->who, v[0], role, v[2], expires, &t, a->err,
                                  sizeof(a->err));
    if (rc == TG_ENOTFOUND)
        problem(a, "body", "team", a->err);
    if (rc == TG_ENOTFOUND || rc == TG_EINVAL)
        answer_failure(a, TG_EINVAL, "body", "label");
    else if (rc != TG_OK)
        answer_failure(a, rc, NULL, NULL);
    else
        answer_token(a, 201, t.id, v[0], t.token);
    memset(&t, 0, sizeof(t));
}

static void token_revoke(struct admin *a, const char *id)
{
    int rc = tg_admin_token_revoke(a->w->store, &a->who, id, a->err, sizeof(a->err));
    if (rc != TG_OK)
        answer_failure(a, rc, "path", "token_id");
    else
        answer_token(a, 200, id, NULL, NULL);
}

/* ---- entries (rows of tg_router.c's table) ------------------------------------------- */

/* Starts an admin request the router let through (an admin token in req->auth): the acting
 * token and the names in the path, captured as {team} then {preset} when names > 0 (checked
 * here so that a problem's loc points at the path). TG_OK, or the answer is in resp. */
static int begin(struct admin *a, struct tg_worker *w, struct tg_request *req,
                 struct tg_response *resp, int names)
{
    memset(a, 0, sizeof(*a));
    a->w = w;
    a->req = req;
    a->resp = resp;
    a->auth = *req->auth;
    a->detail = tg_json_pool(req->pool, json_object_new_array());
    if (a->detail == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return TG_ERR;
    }
    snprintf(a->actor, sizeof(a->actor), "token:%s", a->auth.token_id);
    a->who = (struct tg_actor){a->actor, a->auth.team, "http", req->remote_addr};
    if (names >= 1 && !tg_admin_valid_name(req->cap[0]))
        problem(a, "path", "team", "a team name is " TG_ADMIN_NAME_RULE);
    if (names >= 2 && !tg_admin_valid_name(req->cap[1]))
        problem(a, "path", "preset", "a preset name is " TG_ADMIN_NAME_RULE);
    if (json_object_array_length(a->detail) > 0) {
        tg_resp_validation(resp, a->detail);
        return TG_ERR;
    }
    return TG_OK;
}

void tg_admin_http_teams(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    struct admin a;
    if (begin(&a, w, req, resp, 0) == TG_OK)
        teams_list(&a);
}

void tg_admin_http_team_add(struct tg_worker *w, struct tg_request *req,
                            struct tg_response *resp)
{
    struct admin a;
    if (begin(&a, w, req, resp, 0) == TG_OK)
        team_add(&a);
}

void tg_admin_http_team_key(struct tg_worker *w, struct tg_request *req,
                            struct tg_response *resp)
{
    struct admin a;
    if (begin(&a, w, req, resp, 1) == TG_OK)
        team_set_key(&a, req->cap[0]);
}

void tg_admin_http_presets(struct tg_worker *w, struct tg_request *req,
                           struct tg_response *resp)
{
    struct admin a;
    if (begin(&a, w, req, resp, 1) == TG_OK)
        presets_list(&a, req->cap[0]);
}

void tg_admin_http_preset_show(struct tg_worker *w, struct tg_request *req,
                               struct tg_response *resp)
{
    struct admin a;
    if (begin(&a, w, req, resp, 2) == TG_OK)
        preset_show(&a, req->cap[0], req->cap[1]);
}

void tg_admin_http_preset_set(struct tg_worker *w, struct tg_request *req,
                              struct tg_response *resp)
{
    struct admin a;
    if (begin(&a, w, req, resp, 2) == TG_OK)
        preset_set(&a, req->cap[0], req->cap[1]);
}

void tg_admin_http_tokens(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    struct admin a;
    if (begin(&a, w, req, resp, 0) == TG_OK)
        tokens_list(&a);
}

void tg_admin_http_token_issue(struct tg_worker *w, struct tg_request *req,
                               struct tg_response *resp)
{
    struct admin a;
    if (begin(&a, w, req, resp, 0) == TG_OK)
        token_issue(&a);
}

void tg_admin_http_token_revoke(struct tg_worker *w, struct tg_request *req,
                                struct tg_response *resp)
{
    struct admin a;
    if (begin(&a, w, req, resp, 0) == TG_OK)
        token_revoke(&a, req->cap[0]);
}
