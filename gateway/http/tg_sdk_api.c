/* The upstream-compatible paths: the upstream's own task-group API, served with a team
 * token in x-api-key so that the official SDKs work by changing their base URL.
 *
 *   POST {api}/tasks/groups                      create a group (recorded)
 *   POST {api}/tasks/groups/{id}/runs            add runs (defaults, policy, chunks, recorded)
 *   GET  {api}/tasks/groups/{id}                 the group's status
 *   GET  {api}/tasks/groups/{id}/runs            the runs, an event stream
 *   GET  {api}/tasks/groups/{id}/events          the group's events, an event stream
 *   GET  {api}/tasks/groups/{id}/runs/{run_id}   one run
 *   GET  {api}/tasks/runs/{run_id}[/result|/input|/events]
 *
 * {api} is /v1 or /v1beta. Reads never hold a worker: nginx asks the daemon to authorise
 * each (a subrequest, req->authorize) and proxies it to the upstream itself with the key
 * the authorisation gives it, only for groups and runs the team's own submissions
 * created: anything else is a 404, whoever holds the Parallel key. Errors the gateway
 * makes itself use the upstream's shapes and the statuses the SDKs map to their typed
 * errors. */
#include "tg_sdk_api.h"

#include <stdio.h>
#include <string.h>

#include "tg_conf.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_merge.h"
#include "tg_metrics.h"
#include "tg_query.h"
#include "tg_store.h"
#include "tg_submit.h"
#include "tg_upstream.h"
#include "tg_validate.h"

/* A result may be awaited this long at most, whatever timeout the client asks for. */
#define RESULT_TIMEOUT_MAX_S 3600L
/* The upstream's default for a result's timeout (its OpenAPI document). */
#define RESULT_TIMEOUT_DEFAULT_S 600L

/* What a path names; parts are pool strings, NULL when absent. */
struct route {
    const char *api;      /* "/v1" or "/v1beta" */
    const char *group;
    const char *run;
    const char *leaf;     /* "runs", "events", "result", "input" or NULL */
    int groups;           /* under tasks/groups (else tasks/runs) */
};

/* ---- helpers ------------------------------------------------------------------------- */

/* Whether a query string can be passed on as it is: URL characters only. */
static int plain_query(const char *q)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789-._~%!$&'()*+,;=:@/?";
    return strspn(q, ok) == strlen(q);
}

/* The team's key into key; TG_OK, or the answer is in resp. */
static int team_key(struct tg_worker *w, const struct tg_request *req, struct tg_response *resp,
                    const struct tg_auth *auth, char *key, size_t keylen)
{
    int rc = tg_store_team_key(w->store, auth->team_id, key, keylen);
    if (rc == TG_OK)
        return TG_OK;
    tg_log(TG_LOG_ERROR, "team %s: no usable upstream key: %s", auth->team,
           tg_store_errmsg(w->store));
    tg_resp_error(resp, req, 503, "the team's upstream key cannot be read; ask an administrator",
                  NULL);
    return TG_ERR;
}

/* ---- reads: authorised here, proxied by nginx ------------------------------------------ */

/* How long a result may be awaited, in whole seconds, into *secs: the client's ?timeout=
 * (at most RESULT_TIMEOUT_MAX_S), or the upstream's default when absent. TG_EINVAL for
 * anything else (a sign, a fraction, a word, an empty value) and for a timeout given
 * twice, which the upstream might read otherwise than the gateway. */
static int result_timeout(const struct tg_request *req, long *secs)
{
    char value[64] = "";
    int seen = 0;
    for (const char *q = req->query; *q != '\0';) {
        size_t n = strcspn(q, "&");
        if (n >= 7 && strncmp(q, "timeout", 7) == 0 && (n == 7 || q[7] == '=')) {
            if (seen++ > 0 || n == 7 ||
                tg_query_decode(q + 8, n - 8, value, sizeof(value)) != TG_OK)
                return TG_EINVAL;
        }
        q += n + (q[n] == '&' ? 1 : 0);
    }
    *secs = RESULT_TIMEOUT_DEFAULT_S;
    if (!seen)
        return TG_OK;
    size_t len = strlen(value);
    if (len == 0 || strspn(value, "0123456789") != len)
        return TG_EINVAL;
    long v = 0;
    for (size_t i = 0; i < len && v <= RESULT_TIMEOUT_MAX_S; i++)
        v = v * 10 + (value[i] - '0');
    *secs = v > RESULT_TIMEOUT_MAX_S ? RESULT_TIMEOUT_MAX_S : v;
    return TG_OK;
}

/* The query to send upstream: the client's, with a result's timeout written as the
 * gateway will honour it (capped), so that nginx's wait and the upstream's agree. */
static const char *upstream_query(const struct tg_request *req, int result, long secs)
{
    if (!result)
        return req->query;
    struct tg_buf b;
    tg_buf_init(&b, 4096);
    int rc = TG_OK;
    for (const char *q = req->query; rc == TG_OK && *q != '\0';) {
        size_t n = strcspn(q, "&");
        int is_timeout = n >= 7 && strncmp(q, "timeout", 7) == 0 && (n == 7 || q[7] == '=');
        if (n > 0 && !is_timeout)
            rc = tg_buf_printf(&b, "%s%.*s", b.len > 0 ? "&" : "", (int)n, q);
        q += n + (q[n] == '&' ? 1 : 0);
    }
    if (rc == TG_OK)
        rc = tg_buf_printf(&b, "%stimeout=%ld", b.len > 0 ? "&" : "", secs);
    const char *out = rc == TG_OK ? tg_pool_strdup(req->pool, tg_buf_str(&b)) : NULL;
    tg_buf_free(&b);
    return out;
}

/* The read's path upstream, rebuilt from what the route captured (ids the router checked)
 * rather than passed on as the client wrote it. */
static const char *upstream_path(const struct tg_request *req, const struct route *r,
                                 const char *query)
{
    const char *q = query[0] != '\0' ? "?" : "";
    const char *leaf = r->leaf != NULL ? r->leaf : "";
    const char *sep = r->leaf != NULL ? "/" : "";
    if (r->groups && r->run != NULL)
        return tg_pool_printf(req->pool, "%s/tasks/groups/%s/runs/%s%s%s", r->api, r->group,
                              r->run, q, query);
    if (r->groups)
        return tg_pool_printf(req->pool, "%s/tasks/groups/%s%s%s%s%s", r->api, r->group, sep,
                              leaf, q, query);
    return tg_pool_printf(req->pool, "%s/tasks/runs/%s%s%s%s%s", r->api, r->run, sep, leaf, q,
                          query);
}

/* Authorises a read for nginx: the team's own group or run, a header and query the
 * upstream can be given. The answer is 200 with the team's key, the upstream path and,
 * for an event stream or an awaited result, the team (nginx counts those per team); a
 * refusal is any other answer, which tg_sdk_api_authorized hands to nginx. */
static void authorize_read(struct tg_worker *w, const struct tg_request *req,
                           struct tg_response *resp, const struct route *r,
                           const struct tg_auth *auth)
{
    int rc;
    if (r->run != NULL) {
        char group[160];
        rc = tg_store_run_owned(w->store, auth->team_id, r->run, group, sizeof(group));
        if (rc == TG_OK && r->group != NULL && strcmp(group, r->group) != 0)
            rc = TG_ENOTFOUND;
    } else {
        rc = tg_store_group_owned(w->store, auth->team_id, r->group);
    }
    if (rc == TG_ENOTFOUND) {
        tg_metrics_read("not_found", NULL);
        tg_resp_error(resp, req, 404, r->run != NULL ? "no such run for this team"
                                                     : "no such task group for this team",
                      NULL);
        return;
    }
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "ownership lookup failed: %s", tg_store_errmsg(w->store));
        tg_metrics_read("unavailable", NULL);
        tg_resp_error(resp, req, 503, "the audit database is unavailable", NULL);
        return;
    }
    /* The same check as for submissions, so that a header the upstream client could not
     * send is the client's 422 rather than a refusal after the fact. */
    json_object *detail = tg_json_pool(req->pool, json_object_new_array());
    if (detail == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    tg_validate_beta(req->parallel_beta, detail);
    int stream = r->leaf != NULL && (strcmp(r->leaf, "runs") == 0 ||
                                     strcmp(r->leaf, "events") == 0);
    int result = r->leaf != NULL && strcmp(r->leaf, "result") == 0;
    long secs = 0;
    if (result && result_timeout(req, &secs) != TG_OK)
        tg_json_problem(detail, tg_json_loc("query", "timeout", NULL),
                        "timeout is a whole number of seconds, 0 or more, given once",
                        "int_parsing");
    if (json_object_array_length(detail) > 0) {
        tg_metrics_read("invalid", NULL);
        tg_resp_validation(resp, detail);
        return;
    }
    if (!plain_query(req->query)) {
        tg_metrics_read("invalid", NULL);
        tg_resp_error(resp, req, 400, "the query string has characters that must be escaped",
                      NULL);
        return;
    }
    const char *query = upstream_query(req, result, secs);
    const char *path = query != NULL ? upstream_path(req, r, query) : NULL;
    char key[TG_UPSTREAM_KEY_MAX];
    if (path == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    if (team_key(w, req, resp, auth, key, sizeof(key)) != TG_OK) {
        tg_metrics_read("unavailable", NULL);
        return;
    }
    /* The key goes to nginx only, in this answer's header, which nginx never forwards
     * (auth_request keeps the subrequest's headers for its variables). */
    const char *k = tg_pool_strdup(req->pool, key);
    tg_memzero(key, sizeof(key));
    if (k == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    resp->status = 200;
    resp->content_type = "text/plain";
    tg_resp_header(resp, "X-Taskgate-Key", k);
    tg_resp_header(resp, "X-Taskgate-Path", path);
    if (stream || result) {
        const char *team = tg_pool_printf(req->pool, "%lld", (long long)auth->team_id);
        if (team == NULL) {
            tg_resp_error(resp, req, 500, "out of memory", NULL);
            return;
        }
        tg_resp_header(resp, "X-Taskgate-Long-Read", team);
    }
    tg_metrics_read(stream ? "stream" : result ? "result" : "read",
                    stream || result ? auth->team : NULL);
}

/* ---- writes -------------------------------------------------------------------------- */

/* Parses the body as a JSON object; NULL with the problem in s->detail. */
static json_object *object_body(struct tg_sub *s)
{
    char err[256];
    json_object *where = NULL;
    json_object *body = tg_json_pool(s->req->pool,
                                     tg_json_parse_input(s->req->body, s->req->body_len,
                                                         TG_JSON_MAX_DEPTH, err, sizeof(err),
                                                         &where));
    if (body == NULL) {
        tg_json_problem(s->detail, where, err, "json_invalid");
        return NULL;
    }
    if (!json_object_is_type(body, json_type_object)) {
        tg_json_problem(s->detail, tg_json_loc("body", NULL), "Input should be a valid dictionary",
                        "dict_type");
        return NULL;
    }
    return body;
}

/* Answers with the upstream's last answer as it came, or a gateway error when it cannot. */
static void pass_answer(struct tg_sub *s, int status)
{
    if (s->p.last_answer == NULL) {
        tg_resp_error(s->resp, s->req, 502, "the upstream's answer was lost", NULL);
        return;
    }
    tg_resp_json(s->resp, status, s->p.last_answer, s->p.last_answer_len);
}

/* The answer for a submission that failed: the upstream's own error when it answered one,
 * else the gateway's, with what was accepted before (chunks) named in its detail. */
static void answer_failed(struct tg_sub *s, const struct tg_failure *f)
{
    if (f->upstream_answered && s->p.accepted == 0 && s->p.last_upstream_status != 401 &&
        s->p.last_upstream_status < 500) {
        pass_answer(s, s->p.last_upstream_status);
    } else {
        json_object *detail = NULL;
        if (s->p.accepted > 0 || f->state == TG_STATE_UNKNOWN) {
            detail = tg_json_pool(s->req->pool, json_object_new_object());
            json_object_object_add(detail, "submission_id", json_object_new_string(s->p.id));
            json_object_object_add(detail, "state",
                                   json_object_new_string(tg_domain_state_name(f->state)));
            json_object_object_add(detail, "run_ids", json_object_get(s->p.run_ids));
        }
        tg_resp_error(s->resp, s->req, f->status, f->message, detail);
    }
    if (f->retry_after != NULL)
        tg_resp_header(s->resp, "Retry-After", tg_pool_strdup(s->req->pool, f->retry_after));
}

/* The add-runs answer once every chunk is accepted: the upstream's own when there was one
 * call; for several, one of the same shape with every run id, the first call's cursors
 * (from where the client's streams should start) and the last call's status. */
static void answer_added(struct tg_sub *s)
{
    /* One add-runs call answered (retried attempts before it add no summary). */
    if (json_object_array_length(s->p.calls) <= 1 && s->p.last_answer != NULL &&
        s->p.resumes == NULL) {
        pass_answer(s, 200);
        return;
    }
    char err[128];
    json_object *last = tg_json_pool(s->req->pool, tg_json_parse(s->p.last_answer,
                                                                 s->p.last_answer_len,
                                                                 TG_JSON_MAX_DEPTH, err,
                                                                 sizeof(err)));
    json_object *o = tg_json_pool(s->req->pool, json_object_new_object());
    if (o == NULL) {
        tg_resp_error(s->resp, s->req, 500, "out of memory", NULL);
        return;
    }
    json_object_object_add(o, "status", json_object_get(tg_json_get(last, "status")));
    json_object_object_add(o, "run_ids", json_object_get(s->p.run_ids));
    json_object_object_add(o, "run_cursor", json_object_get(s->p.first_run_cursor));
    json_object_object_add(o, "event_cursor", json_object_get(s->p.first_event_cursor));
    size_t len;
    const char *text = tg_json_str(o, &len);
    tg_resp_json(s->resp, 200, text, len);
}

static int check_group_create(struct tg_sub *s)
{
    json_object *body = object_body(s);
    json_object *meta = tg_json_get(body, "metadata");
    if (meta != NULL) {
        json_object *at = tg_json_pool(s->req->pool, tg_json_loc("body", NULL));
        struct tg_locator where = {tg_validate_loc_plain, body, at};
        tg_validate_metadata(meta, &where, s->detail);
    }
    s->body = body;
    if (json_object_array_length(s->detail) > 0) {
        tg_submit_reject(s, 422, "the request is invalid", s->detail);
        return TG_EINVAL;
    }
    s->p.group_body = tg_json_str(body, NULL);
    return TG_OK;
}

/* The group was created: the upstream's answer as it came. */
static void answer_created(struct tg_sub *s)
{
    pass_answer(s, 200);
}

/* Problems found in a part of the body under prefix: their locs get prefix in front of
 * what follows their first part ("body"). */
static void move_problems(json_object *from, json_object *to, json_object *prefix,
                          const char *suffix)
{
    for (size_t i = 0; i < json_object_array_length(from); i++) {
        json_object *p = json_object_array_get_idx(from, i);
        json_object *loc = tg_json_get(p, "loc");
        json_object *nloc = json_object_new_array();
        for (size_t k = 0; k < json_object_array_length(prefix); k++)
            json_object_array_add(nloc, json_object_get(json_object_array_get_idx(prefix, k)));
        for (size_t k = 1; k < json_object_array_length(loc); k++)
            json_object_array_add(nloc, json_object_get(json_object_array_get_idx(loc, k)));
        if (suffix != NULL && json_object_array_length(loc) <= 1)
            json_object_array_add(nloc, json_object_new_string(suffix));
        json_object_object_add(p, "loc", nloc);
        json_object_array_add(to, json_object_get(p));
    }
}

/* A default_task_spec problem's loc: task_spec.x → ["body","default_task_spec","x"]. */
static json_object *spec_loc(const struct tg_locator *self, const char *path)
{
    if (strncmp(path, "task_spec", 9) == 0) {
        char renamed[256];
        snprintf(renamed, sizeof(renamed), "default_task_spec%s", path + 9);
        return tg_validate_loc_plain(self, renamed);
    }
    return tg_validate_loc_plain(self, path);
}

/* Builds one chunk: {"default_task_spec":…,"inputs":[merged runs…]}, each run tagged. */
static int build_chunk(const struct tg_pipe *p, struct tg_buf *b, size_t first, size_t count)
{
    int rc = tg_merge_add_runs_open(b, p->spec);
    for (size_t i = 0; rc == TG_OK && i < count; i++) {
        json_object *run = json_object_array_get_idx(p->inputs, first + i);
        if (p->run_tag != NULL) {
            json_object *meta = tg_json_get(run, "metadata");
            if (meta == NULL) {
                meta = json_object_new_object();
                json_object_object_add(run, "metadata", meta);
            }
            if (json_object_is_type(meta, json_type_object))
                json_object_object_add(meta, TG_RUN_TAG_KEY, json_object_new_string(p->run_tag));
        }
        size_t len;
        const char *text = tg_json_str(run, &len);
        if (i > 0)
            rc = tg_buf_adds(b, ",");
        if (rc == TG_OK)
            rc = tg_buf_add(b, text, len);
    }
    if (rc == TG_OK)
        rc = tg_buf_adds(b, "]}");
    return rc;
}

/* The team's default preset (parsed; NULL when it has none). TG_OK or a database error. */
static int default_preset(struct tg_sub *s, json_object **out)
{
    char *text = NULL;
    *out = NULL;
    int rc = tg_store_preset_get(s->w->store, s->req->pool, s->auth.team_id, "default", &text);
    if (rc == TG_ENOTFOUND)
        return TG_OK;
    if (rc != TG_OK)
        return rc;
    char err[128];
    *out = tg_json_pool(s->req->pool, tg_json_parse(text, strlen(text), 64, err, sizeof(err)));
    return TG_OK;
}

/* Merges the team's defaults into every run, checks policy and limits. Problems go to
 * s->detail. TG_OK or a database/memory error. */
static int prepare_runs(struct tg_sub *s, json_object *body)
{
    struct tg_pool *pool = s->req->pool;
    json_object *preset;
    int rc = default_preset(s, &preset);
    if (rc != TG_OK)
        return rc;

    json_object *global = tg_sub_global_defaults(s);
    if (global == NULL)
        return TG_ENOMEM;
    json_object *ptmpl = tg_json_pool(pool, tg_merge_template_from_preset(preset));
    if (tg_merge_gateway_webhook(ptmpl, preset, s->w->conf->webhook_public_url) != TG_OK)
        return TG_ENOMEM;
    json_object *pspec = tg_json_get(ptmpl, "task_spec");
    s->p.spec = tg_json_get(body, "default_task_spec");
    if (s->p.spec == NULL && pspec != NULL)
        s->p.spec = pspec;
    if (ptmpl != NULL)
        json_object_object_del(ptmpl, "task_spec");
    json_object *base = tg_json_pool(pool, tg_merge(global, ptmpl));
    if (base == NULL)
        return TG_ENOMEM;

    size_t spec_chars = 0;
    if (s->p.spec != NULL) {
        json_object *t = tg_json_pool(pool, json_object_new_object());
        json_object *at = tg_json_pool(pool, tg_json_loc("body", NULL));
        struct tg_locator where = {spec_loc, body, at};
        if (t == NULL)
            return TG_ENOMEM;
        json_object_object_add(t, "task_spec", json_object_get(s->p.spec));
        tg_merge_template_finish(t);
        s->p.spec = tg_json_get(t, "task_spec");
        tg_validate_task_spec(s->p.spec, &where, s->detail);
        spec_chars = tg_validate_task_spec_chars(t);
    }

    json_object *inputs = tg_json_get(body, "inputs");
    if (!json_object_is_type(inputs, json_type_array)) {
        tg_json_problem(s->detail, tg_json_loc("body", "inputs", NULL),
                        inputs == NULL ? "Field required" : "Input should be a valid list",
                        inputs == NULL ? "missing" : "list_type");
        return TG_OK;
    }
    size_t n = json_object_array_length(inputs);
    json_object *runs = tg_json_pool(pool, json_object_new_array_ext((int)n));
    json_object *values = tg_json_pool(pool, json_object_new_array_ext((int)n));
    s->p.run_procs = tg_pool_calloc(pool, n + 1, sizeof(char *));
    if (runs == NULL || values == NULL || s->p.run_procs == NULL)
        return TG_ENOMEM;
    const char *beta = s->req->parallel_beta;
    for (size_t i = 0; i < n; i++) {
        json_object *run = json_object_array_get_idx(inputs, i);
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", i);
        json_object *prefix = tg_json_pool(pool, json_object_new_array());
        if (prefix == NULL)
            return TG_ENOMEM;
        json_object_array_add(prefix, json_object_new_string("body"));
        json_object_array_add(prefix, json_object_new_string("inputs"));
        json_object_array_add(prefix, json_object_new_int64((int64_t)i));
        if (!json_object_is_type(run, json_type_object)) {
            tg_json_problem(s->detail, json_object_get(prefix),
                            "Input should be a valid dictionary", "dict_type");
            json_object_array_add(values, NULL);
            json_object_array_add(runs, NULL);
            continue;
        }
        json_object_array_add(values, json_object_get(tg_json_get(run, "input")));
        json_object *own = tg_json_pool(pool, tg_merge(run, NULL));
        if (own == NULL)
            return TG_ENOMEM;
        json_object_object_del(own, "input");
        json_object *merged = tg_json_pool(pool, tg_merge(base, own));
        if (merged == NULL)
            return TG_ENOMEM;
        tg_merge_template_finish(merged);

        json_object *problems = tg_json_pool(pool, json_object_new_array());
        json_object *at = tg_json_pool(pool, tg_json_loc("body", NULL));
        struct tg_locator where = {tg_validate_loc_plain, run, at};
        tg_merge_check_policy(preset, own, run, merged, problems);
        tg_validate_template(merged, &where, problems);
        if (tg_json_has(tg_json_get(merged, "metadata"), TG_RUN_TAG_KEY))
            tg_json_problem(problems, tg_json_loc("body", "metadata", TG_RUN_TAG_KEY, NULL),
                            "metadata key '" TG_RUN_TAG_KEY "' is the gateway's run tag; use "
                            "another key", "value_error");
        move_problems(problems, s->detail, prefix, NULL);

        s->p.run_procs[i] = tg_json_get_str(merged, "processor");
        beta = tg_merge_beta_header(pool, merged, beta);
        if (beta == NULL)
            return TG_ENOMEM;
        json_object *full = json_object_new_object();
        json_object_object_add(full, "input", json_object_get(tg_json_get(run, "input")));
        json_object_object_foreach(merged, k, v)
            json_object_object_add(full, k, json_object_get(v));
        json_object_array_add(runs, full);
    }
    /* The inputs' own checks (present, size with the task spec), with locs at .input. */
    json_object *problems = tg_json_pool(pool, json_object_new_array());
    tg_validate_inputs(values, s->w->conf->max_inputs_per_submission, spec_chars, problems);
    for (size_t i = 0; i < json_object_array_length(problems); i++) {
        json_object *p = json_object_array_get_idx(problems, i);
        json_object *loc = tg_json_get(p, "loc");
        if (json_object_array_length(loc) == 3)
            json_object_array_add(loc, json_object_new_string("input"));
    }
    for (size_t i = 0; i < json_object_array_length(problems); i++)
        json_object_array_add(s->detail, json_object_get(json_object_array_get_idx(problems, i)));
    s->p.inputs = runs;
    s->p.beta = beta;
    s->p.processor = n > 0 ? s->p.run_procs[0] : NULL;
    return TG_OK;
}

static int check_add_runs(struct tg_sub *s)
{
    /* Ownership first, before the body is read: a foreign group is a 404 whatever is sent. */
    s->p.taskgroup_id = s->path_group;
    if (tg_submit_check_group(s) != TG_OK)
        return TG_ENOTFOUND;
    if (!plain_query(s->req->query)) {
        tg_submit_reject(s, 400, "the query string has characters that must be escaped", NULL);
        return TG_EINVAL;
    }
    s->p.runs_query = s->req->query;
    json_object *body = object_body(s);
    s->body = body;
    if (body != NULL) {
        int rc = prepare_runs(s, body);
        if (rc != TG_OK) {
            tg_submit_db_trouble(s, rc);
            return rc;
        }
    }
    if (json_object_array_length(s->detail) > 0) {
        tg_submit_reject(s, 422, "the request is invalid", s->detail);
        return TG_EINVAL;
    }
    return TG_OK;
}

/* The two upstream-compatible submissions: both pass the upstream's answer on. A group
 * is created only when none is named, so create-group's pipeline never builds a chunk. */
static const struct tg_sub_ops create_group_ops = {
    .interface = "upstream-compatible",
    .keeps_answer = 1,
    .check = check_group_create,
    .build_chunk = build_chunk,
    .answer = answer_created,
    .answer_failed = answer_failed,
};

static const struct tg_sub_ops add_runs_ops = {
    .interface = "upstream-compatible",
    .keeps_answer = 1,
    .check = check_add_runs,
    .build_chunk = build_chunk,
    .answer = answer_added,
    .answer_failed = answer_failed,
};

/* ---- entries (rows of tg_router.c's table) ------------------------------------------- */

/* The route the router matched: its pattern says which of the paths above it is. */
static void route_of(const struct tg_request *req, struct route *r)
{
    memset(r, 0, sizeof(*r));
    r->api = strncmp(req->path, "/v1beta/", 8) == 0 ? "/v1beta" : "/v1";
    const char *last = strrchr(req->route, '/') + 1;
    r->leaf = last[0] != '{' ? last : NULL;
    r->groups = strstr(req->route, "/tasks/groups") != NULL;
    if (r->groups) {
        r->group = req->ncap > 0 ? req->cap[0] : NULL;
        r->run = req->ncap > 1 ? req->cap[1] : NULL;
        if (r->group == NULL || r->run != NULL)
            r->leaf = NULL;
    } else {
        r->run = req->cap[0];
    }
}

static void submit(struct tg_worker *w, struct tg_request *req, struct tg_response *resp,
                   int create)
{
    struct route r;
    route_of(req, &r);
    tg_submit_run(create ? &create_group_ops : &add_runs_ops, w, req, resp, r.api,
                  create ? NULL : r.group);
}

void tg_sdk_api_create_group(struct tg_worker *w, struct tg_request *req,
                             struct tg_response *resp)
{
    submit(w, req, resp, 1);
}

void tg_sdk_api_add_runs(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    submit(w, req, resp, 0);
}

/* The most of a refusal's answer that travels in a header to nginx (its fastcgi_buffer_size
 * holds the whole head); a longer one is replaced by a short one of the same status. */
#define REFUSAL_MAX 2048

/* Which reason of tg_metrics_read a refusal's status stands for. */
static const char *refusal_reason(int status)
{
    switch (status) {
    case 401: return "token";
    case 403: return "role";
    case 404: return "not_found";
    case 400:
    case 405:
    case 422: return "invalid";
    case 503: return "unavailable";
    default: return "other";
    }
}

void tg_sdk_api_authorized(struct tg_request *req, struct tg_response *resp)
{
    for (int i = 0; resp->status == 200 && i < resp->nheaders; i++)
        if (strcmp(resp->header_name[i], "X-Taskgate-Path") == 0)
            return; /* authorised: nginx proxies the read */
    int status = resp->status == 200 || resp->status == 0 ? 500 : resp->status;
    tg_metrics_read(refusal_reason(status), NULL);
    const char *retry_after = NULL;
    for (int i = 0; i < resp->nheaders; i++)
        if (strcmp(resp->header_name[i], "Retry-After") == 0)
            retry_after = resp->header_value[i];
    /* The answer must be one header line: JSON as json-c writes it has no raw CR or LF. */
    const char *answer = tg_pool_strndup(req->pool, resp->body.data != NULL ? resp->body.data : "",
                                         resp->body.len);
    if (answer == NULL || resp->body.len > REFUSAL_MAX || strlen(answer) != resp->body.len ||
        strpbrk(answer, "\r\n") != NULL || resp->body.len == 0)
        answer = tg_pool_printf(req->pool, "{\"type\":\"error\",\"error\":{\"ref_id\":\"%s\","
                                "\"message\":\"%s\"}}", req->request_id != NULL ? req->request_id : "",
                                tg_http_reason(status));
    resp->status = 403;
    resp->content_type = "text/plain";
    resp->nheaders = 0;
    tg_buf_clear(&resp->body);
    tg_resp_header(resp, "X-Taskgate-Status", tg_pool_printf(req->pool, "%d", status));
    if (answer != NULL)
        tg_resp_header(resp, "X-Taskgate-Answer", answer);
    if (retry_after != NULL)
        tg_resp_header(resp, "X-Taskgate-Retry-After", retry_after);
}

void tg_sdk_api_read(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    if (!req->authorize) {
        /* Reads reach the daemon only as nginx's authorisation subrequests: an nginx site
         * that sends them here as they are is not the one `taskgate nginx-site` renders. */
        tg_resp_error(resp, req, 501, "reads of the upstream API are proxied by nginx, which "
                      "this nginx site does not do: render it with `taskgate nginx-site`",
                      NULL);
        return;
    }
    struct route r;
    route_of(req, &r);
    authorize_read(w, req, resp, &r, req->auth);
}
