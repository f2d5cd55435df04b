/* The pipeline's HTTP side (tg_submit_run: decode, token, role, the team's worker share
 * (core/tg_share.h), check, admission, forward, answer; rejected records, database trouble
 * and every answer's status) and POST /v1/runs,
 * the simplified interface's steps: decode a JSON or form body, merge the team's preset
 * under the submission, validate. Sending and recording is core/tg_pipeline.c's; the
 * record is final before the client hears anything. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tg_admit.h"
#include "tg_conf.h"
#include "tg_form.h"
#include "tg_http.h"
#include "tg_idem.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_usage_http.h"
#include "tg_merge.h"
#include "tg_metrics.h"
#include "tg_reconcile.h"
#include "tg_share.h"
#include "tg_store.h"
#include "tg_submit.h"
#include "tg_validate.h"

/* ---- answers ------------------------------------------------------------------------- */

static json_object *outcome_object(struct tg_sub *s, enum tg_state state);

/* The database failed us. Before anything went upstream that is a plain 503 (retry
 * later). After, the upstream may have acted: the submission is settled as unknown if
 * the database lets us, and the client is told not to retry blindly. */
void tg_submit_db_trouble(struct tg_sub *s, int rc)
{
    if (rc == TG_ESTALE && !s->p.begun) {
        /* The token was answered from memory and has changed since: nothing was written,
         * and tg_submit_run takes the submission again with a fresh check. */
        tg_resp_error(s->resp, s->req, 503, "the team's token or settings changed while this "
                      "submission was checked; nothing was sent upstream; retry", NULL);
        return;
    }
    tg_log(TG_LOG_ERROR, "submission %s: recording failed: %s (%s)", s->p.id, tg_rc_str(rc),
           tg_store_errmsg(s->w->store));
    if (!s->p.begun) {
        tg_resp_error(s->resp, s->req, 503,
                      "the audit database could not record this submission; nothing was sent "
                      "upstream; retry later", NULL);
        return;
    }
    s->p.staged = 0;
    char msg[256];
    snprintf(msg, sizeof(msg), "recording the upstream's answer failed: %s", tg_rc_str(rc));
    int settled = tg_store_submission_finish(s->w->store, s->p.id, TG_STATE_UNKNOWN, 500,
                                             s->p.last_upstream_status, msg) == TG_OK;
    if (settled)
        tg_metrics_submission(TG_STATE_UNKNOWN);
    else /* still pending: marked unknown in the background once the database recovers */
        tg_reconcile_owe_unknown(s->p.id, 500, s->p.last_upstream_status, msg);
    json_object *detail = outcome_object(s, TG_STATE_UNKNOWN);
    if (detail != NULL) {
        json_object_object_del(detail, "status");
        json_object_object_add(detail, "state", json_object_new_string(
                                                    settled ? "unknown" : "pending"));
    }
    tg_resp_error(s->resp, s->req, 500,
                  "the upstream may have created runs, but the audit database could not record "
                  "them: do not resubmit before this submission is reconciled", detail);
}

/* The common fields of every answer about a recorded submission. */
static json_object *outcome_object(struct tg_sub *s, enum tg_state state)
{
    json_object *o = tg_json_pool(s->req->pool, json_object_new_object());
    if (o == NULL)
        return NULL;
    json_object_object_add(o, "submission_id", json_object_new_string(s->p.id));
    json_object_object_add(o, "taskgroup_id",
                           s->p.taskgroup_id ? json_object_new_string(s->p.taskgroup_id) : NULL);
    json_object_object_add(o, "status", json_object_new_string(tg_domain_state_name(state)));
    json_object_object_add(o, "run_ids", json_object_get(s->p.run_ids));
    json_object_object_add(o, "run_cursor", json_object_get(s->p.first_run_cursor));
    json_object_object_add(o, "event_cursor", json_object_get(s->p.first_event_cursor));
    json_object_object_add(o, "calls", json_object_get(s->p.calls));
    return o;
}

static void answer_success(struct tg_sub *s)
{
    json_object *o = outcome_object(s, TG_STATE_ACCEPTED);
    if (o == NULL) {
        tg_resp_error(s->resp, s->req, 500, "out of memory", NULL);
        return;
    }
    size_t len;
    const char *text = tg_json_str(o, &len);
    tg_resp_json(s->resp, 200, text, len);
}

static void answer_failure(struct tg_sub *s, const struct tg_failure *f)
{
    json_object *detail = outcome_object(s, f->state);
    if (detail != NULL) {
        /* In an error's detail the submission's state is called so: "status" there would
         * read as an HTTP status. */
        json_object_object_del(detail, "status");
        json_object_object_add(detail, "state", json_object_new_string(tg_domain_state_name(f->state)));
        json_object_object_add(detail, "accepted_inputs",
                               json_object_new_int64((int64_t)s->p.accepted));
        json_object_object_add(detail, "num_inputs",
                               json_object_new_int64((int64_t)tg_pipeline_inputs(&s->p)));
    }
    tg_resp_error(s->resp, s->req, f->status, f->message, detail);
    if (f->retry_after != NULL)
        tg_resp_header(s->resp, "Retry-After", tg_pool_strdup(s->req->pool, f->retry_after));
}

/* ---- before anything goes upstream ---------------------------------------------------- */

/* Refuses the submission: the team is known, so a 'rejected' record is written. */
void tg_submit_reject(struct tg_sub *s, int status, const char *message, json_object *detail)
{
    struct tg_submission rec;
    tg_sub_record(s, &rec);
    int rc = tg_store_submission_reject(s->w->store, &rec, status, message);
    if (rc != TG_OK) {
        tg_submit_db_trouble(s, rc);
        return;
    }
    tg_metrics_submission(TG_STATE_REJECTED);
    if (status == 422 && detail != NULL)
        tg_resp_validation(s->resp, detail);
    else
        tg_resp_error(s->resp, s->req, status, message, detail);
}

static int is_json_type(const char *ct)
{
    if (ct == NULL || *ct == '\0')
        return 1; /* scripts often send none; the body must still be JSON */
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
           (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
}

/* Decodes the body before the token is checked, since a browser form carries the token
 * as a field. Problems go to s->detail, to be answered once the team is known. */
static int decode_body(struct tg_sub *s)
{
    char err[256];
    json_object *body = NULL;
    const char *ct = s->req->content_type;
    if (tg_form_is_form(ct)) {
        int rc = tg_form_decode(ct, s->req->body, s->req->body_len, &body, s->detail, err,
                                sizeof(err));
        if (rc == TG_ENOMEM)
            return rc;
        if (rc != TG_OK)
            tg_json_problem(s->detail, NULL, err, "value_error");
        s->body = tg_json_pool(s->req->pool, body);
        s->from_form = 1;
    } else if (!is_json_type(ct)) {
        s->unsupported = 1;
        return TG_OK;
    } else {
        json_object *where = NULL;
        body = tg_json_parse_input(s->req->body, s->req->body_len, TG_JSON_MAX_DEPTH, err,
                                   sizeof(err), &where);
        if (body == NULL)
            tg_json_problem(s->detail, where, err, "json_invalid");
        else if (!json_object_is_type(body, json_type_object))
            tg_json_problem(s->detail, NULL, "the body must be a JSON object", "dict_type");
        if (tg_json_pool(s->req->pool, body) != NULL && json_object_is_type(body, json_type_object))
            s->body = body;
    }
    s->p.inputs = tg_json_get(s->body, "inputs");
    return TG_OK;
}

/* The idempotency_key field (JSON or form), taken out of the body: it names the request,
 * it is not part of it. The Idempotency-Key header wins when both are sent. A field that is
 * not a valid key (a number, a boolean, a list, an object, an empty or overlong string) is a
 * problem at ["body","idempotency_key"], never dropped: dropping it would let every repeat
 * create runs again. It stays in the body then, so that the rejected record shows it. */
static void take_idempotency_key(struct tg_sub *s)
{
    json_object *v = tg_json_get(s->body, "idempotency_key");
    if (v == NULL)
        return; /* absent, or null: no key */
    if (!json_object_is_type(v, json_type_string)) {
        tg_json_problem(s->detail, tg_json_loc("body", "idempotency_key", NULL),
                        "Input should be a valid string", "string_type");
        return;
    }
    const char *key = json_object_get_string(v);
    if (!tg_admit_valid_key(key)) {
        tg_json_problem(s->detail, tg_json_loc("body", "idempotency_key", NULL),
                        "an idempotency key is 1 to 255 printable ASCII characters",
                        "value_error");
        return;
    }
    if (s->req->idempotency_key == NULL)
        s->ask.idem_key = tg_pool_strdup(s->req->pool, key);
    json_object_object_del(s->body, "idempotency_key");
}

/* The form's token field, taken out of the body so that it is never stored. */
static const char *take_form_token(struct tg_sub *s)
{
    const char *token = tg_json_get_str(s->body, "token");
    token = tg_pool_strdup(s->req->pool, token);
    if (s->body != NULL)
        json_object_object_del(s->body, "token");
    return s->from_form ? token : NULL;
}

/* global defaults ← the team's preset ← the submission's own fields. */
static int build_template(struct tg_sub *s, json_object *detail)
{
    struct tg_pool *pool = s->req->pool;
    json_object *preset_name = tg_json_get(s->body, "preset");
    const char *name = "default";
    if (preset_name != NULL) {
        if (!json_object_is_type(preset_name, json_type_string)) {
            tg_json_problem(detail, tg_json_loc("body", "preset", NULL),
                            "Input should be a valid string", "string_type");
            return TG_EINVAL;
        }
        name = json_object_get_string(preset_name);
    }
    char *text = NULL;
    int rc = tg_store_preset_get(s->w->store, pool, s->auth.team_id, name, &text);
    json_object *preset = NULL;
    if (rc == TG_OK) {
        char err[128];
        preset = tg_json_pool(pool, tg_json_parse(text, strlen(text), 64, err, sizeof(err)));
    } else if (rc == TG_ENOTFOUND && preset_name != NULL) {
        tg_json_problem(detail, tg_json_loc("body", "preset", NULL),
                        "the team has no preset by this name", "value_error");
        return TG_EINVAL;
    } else if (rc != TG_ENOTFOUND) {
        return rc;
    }

    json_object *global = tg_sub_global_defaults(s);
    if (global == NULL)
        return TG_ENOMEM;
    json_object *ptmpl = tg_json_pool(pool, tg_merge_template_from_preset(preset));
    if (tg_merge_gateway_webhook(ptmpl, preset, s->w->conf->webhook_public_url) != TG_OK)
        return TG_ENOMEM;
    json_object *base = tg_json_pool(pool, tg_merge(global, ptmpl));
    json_object *own = tg_json_pool(pool, tg_merge_template_from_submission(s->body));
    s->p.tmpl = tg_json_pool(pool, tg_merge(base, own));
    if (s->p.tmpl == NULL)
        return TG_ENOMEM;
    tg_merge_template_finish(s->p.tmpl);
    tg_merge_check_policy(preset, own, s->body, s->p.tmpl, detail);
    s->p.processor = tg_json_get_str(s->p.tmpl, "processor");
    s->p.beta = tg_merge_beta_header(pool, s->p.tmpl, s->req->parallel_beta);
    if (s->p.beta == NULL)
        return TG_ENOMEM;
    return TG_OK;
}

static void check_group(struct tg_sub *s, json_object *detail)
{
    json_object *g = tg_json_get(s->body, "taskgroup_id");
    if (g == NULL)
        return;
    if (!json_object_is_type(g, json_type_string) || !tg_validate_id(json_object_get_string(g)))
        tg_json_problem(detail, tg_json_loc("body", "taskgroup_id", NULL),
                        "a task group id is 1 to 128 letters, digits, '_' or '-'",
                        "value_error");
    else
        s->p.taskgroup_id = json_object_get_string(g);
}

/* Runs every check; TG_OK, or the answer is already in resp. */
static int prepare(struct tg_sub *s)
{
    json_object *detail = s->detail;
    if (s->unsupported) {
        tg_submit_reject(s, 415, "send the submission as application/json, "
                       "application/x-www-form-urlencoded or multipart/form-data", NULL);
        return TG_ERR;
    }
    int rc = TG_OK;
    if (s->body != NULL) {
        rc = build_template(s, detail);
        if (rc == TG_OK || rc == TG_EINVAL) {
            check_group(s, detail);
            if (s->p.tmpl != NULL) {
                json_object *at = tg_json_pool(s->req->pool, tg_json_loc("body", NULL));
                struct tg_locator where = {tg_validate_loc_simplified, s->body, at};
                tg_validate_template(s->p.tmpl, &where, detail);
            }
            tg_validate_inputs(s->p.inputs, s->w->conf->max_inputs_per_submission,
                               tg_validate_task_spec_chars(s->p.tmpl), detail);
            if (tg_json_has(tg_json_get(s->p.tmpl, "metadata"), TG_RUN_TAG_KEY))
                tg_json_problem(detail, tg_json_loc("body", "metadata", TG_RUN_TAG_KEY, NULL),
                                "metadata key '" TG_RUN_TAG_KEY "' is the gateway's run tag; "
                                "use another key", "value_error");
            rc = TG_OK;
        }
    }
    if (rc != TG_OK) {
        tg_submit_db_trouble(s, rc);
        return rc;
    }
    if (json_object_array_length(detail) > 0) {
        tg_submit_reject(s, 422, "the submission is invalid", detail);
        return TG_EINVAL;
    }
    return TG_OK;
}

/* ---- admission's verdicts, answered ------------------------------------------------- */

static void over_limit(struct tg_sub *s, const struct tg_admit_refusal *why)
{
    tg_metrics_submission(TG_STATE_REJECTED);
    json_object *d = tg_json_pool(s->req->pool, json_object_new_object());
    if (d != NULL) {
        json_object_object_add(d, "submission_id", json_object_new_string(s->p.id));
        json_object_object_add(d, "state", json_object_new_string("rejected"));
        json_object_object_add(d, "limit", json_object_new_string(why->limit));
        json_object_object_add(d, "value", json_object_new_int64(why->value));
        json_object_object_add(d, "used", json_object_new_int64(why->used));
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "the team's limit %s (%ld) is reached (%ld in use); nothing was "
             "sent; retry after %ld s", why->limit, why->value, why->used, why->retry_after_s);
    tg_resp_error(s->resp, s->req, 429, msg, d);
    tg_resp_header(s->resp, "Retry-After", tg_pool_printf(s->req->pool, "%ld",
                                                          why->retry_after_s));
}

/* The one place a verdict becomes an answer: TG_OK to go on (PASS), otherwise the answer is
 * in resp and the verdict's code is returned. */
static int answer_verdict(struct tg_sub *s, const struct tg_verdict *v)
{
    switch (v->kind) {
    case TG_ADMIT_PASS:
        if (v->claim_key != NULL)
            s->resp->idem = tg_idem_claim(s->req->pool, s->auth.team_id, v->claim_kind,
                                          v->claim_key, s->p.id);
        return TG_OK;
    case TG_ADMIT_REFUSED:
        tg_submit_reject(s, v->status, v->message, v->detail);
        if (v->retry_after != NULL)
            tg_resp_header(s->resp, "Retry-After", v->retry_after);
        break;
    case TG_ADMIT_LIMITED:
        if (v->budget.refused) {
            tg_metrics_submission(TG_STATE_REJECTED);
            tg_usage_http_refused(s->req, s->resp, s->p.id, &v->budget);
        } else {
            over_limit(s, &v->limit);
        }
        break;
    case TG_ADMIT_REPLAY:
        tg_idem_replay(s->req, s->resp, &v->earlier);
        break;
    case TG_ADMIT_TROUBLE:
        tg_submit_db_trouble(s, v->rc);
        break;
    }
    return v->rc != TG_OK ? v->rc : TG_ERR;
}

/* What admission reads of s, afresh before each check. */
static struct tg_admit_ask *ask(struct tg_sub *s)
{
    struct tg_admit_ask *a = &s->ask;
    a->p = &s->p;
    a->auth = &s->auth;
    a->interface = s->interface;
    a->method = s->req->method;
    a->path = s->req->path;
    a->query = s->req->query;
    a->idempotency_key = s->req->idempotency_key;
    a->retry_count = s->req->retry_count;
    a->parallel_beta = s->req->parallel_beta;
    a->body = s->body;
    tg_sub_record(s, &a->rec);
    return a;
}

int tg_submit_check_group(struct tg_sub *s)
{
    struct tg_verdict v;
    tg_admit_group(ask(s), &v);
    return answer_verdict(s, &v);
}

int tg_submit_admit(struct tg_sub *s)
{
    struct tg_verdict v;
    struct tg_admit_ask *a = ask(s);
    if (tg_admit_group(a, &v) == TG_ADMIT_PASS)
        tg_admit_submission(a, &v);
    return answer_verdict(s, &v);
}

int tg_submit_check_role(struct tg_sub *s)
{
    if (s->auth.role == TG_ROLE_SUBMIT)
        return TG_OK;
    tg_submit_reject(s, 403, "this token may not add runs: use a submit token of the team", NULL);
    return TG_ERR;
}

/* ---- the simplified interface's steps ---------------------------------------------- */

static int simplified_decode(struct tg_sub *s, const char **form_token)
{
    int rc = decode_body(s);
    *form_token = rc == TG_OK ? take_form_token(s) : NULL;
    return rc;
}

static int simplified_check(struct tg_sub *s)
{
    take_idempotency_key(s);
    return prepare(s);
}

/* One chunk: the merged template with the chunk's inputs (tg_merge_add_runs_tagged). */
static int simplified_chunk(const struct tg_pipe *p, struct tg_buf *b, size_t first,
                            size_t count)
{
    return tg_merge_add_runs_tagged(b, p->tmpl, p->inputs, first, count, p->run_tag);
}

static const struct tg_sub_ops simplified = {
    .interface = "simplified",
    .keeps_answer = 0,
    .decode = simplified_decode,
    .check = simplified_check,
    .build_chunk = simplified_chunk,
    .answer = answer_success,
    .answer_failed = answer_failure,
};

/* ---- the pipeline ------------------------------------------------------------------- */

/* Takes a worker of the team's share (core/tg_share.h) for s: TG_OK, or the team's
 * submissions already hold every worker one team may, and the 429 (a rejected record,
 * nothing sent) is in resp. */
static int take_share(struct tg_sub *s)
{
    long held = 0;
    if (tg_share_take(s->auth.team_id, &held))
        return TG_OK;
    tg_metrics_share_refused();
    long limit = tg_share_limit();
    json_object *d = tg_json_pool(s->req->pool, json_object_new_object());
    if (d != NULL) {
        json_object_object_add(d, "submission_id", json_object_new_string(s->p.id));
        json_object_object_add(d, "state", json_object_new_string("rejected"));
        json_object_object_add(d, "limit", json_object_new_string("worker_share"));
        json_object_object_add(d, "value", json_object_new_int64(limit));
        json_object_object_add(d, "used", json_object_new_int64(held));
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "the team's submissions in flight hold %ld of the gateway's "
             "workers, the most one team may (worker_share %ld: threads minus worker_reserve); "
             "nothing was sent; retry after 1 s", held, limit);
    tg_submit_reject(s, 429, msg, d);
    if (s->resp->status == 429)
        tg_resp_header(s->resp, "Retry-After", "1");
    return TG_ERR;
}

/* tg_submit_run once the token may add runs and a worker of the team's share is held. */
static void run_held(struct tg_sub *s)
{
    if (s->ops->check(s) != TG_OK)
        return;
    if (tg_submit_admit(s) != TG_OK)
        return;

    struct tg_failure f;
    int rc = tg_pipeline_forward(&s->p, &f);
    s->resp->inputs = (int)tg_pipeline_inputs(&s->p);
    s->resp->runs = (int)s->p.accepted;
    s->resp->upstream_us += s->p.upstream_us;
    /* The record is final before the client hears anything. */
    int written = rc;
    if (rc == TG_OK)
        written = tg_pipeline_finish(&s->p, TG_STATE_ACCEPTED, 200, NULL);
    else if (rc == TG_ERR)
        written = tg_pipeline_finish(&s->p, f.state, f.status, f.message);
    if (written != TG_OK)
        tg_submit_db_trouble(s, written);
    else if (rc == TG_OK)
        s->ops->answer(s);
    else
        s->ops->answer_failed(s, &f);
}

/* One pass of a submission, its token checked from what the worker's handle kept when kept
 * is set (tg_http_auth_kept). */
static void submit_once(const struct tg_sub_ops *ops, struct tg_worker *w,
                        struct tg_request *req, struct tg_response *resp, const char *api,
                        const char *path_group, int kept)
{
    struct tg_sub s;
    if (tg_sub_init(&s, w, req, resp, ops) != TG_OK)
        return;
    s.p.api = api;
    s.path_group = path_group;
    const char *form_token = NULL;
    if (ops->decode != NULL && ops->decode(&s, &form_token) != TG_OK) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    int rc = kept ? tg_http_auth_kept(w, req, resp, form_token, &s.auth)
                  : tg_http_auth(w, req, resp, form_token, &s.auth);
    if (rc != TG_OK)
        return;
    if (tg_submit_check_role(&s) != TG_OK)
        return;
    if (take_share(&s) != TG_OK)
        return;
    run_held(&s);
    tg_share_release(s.auth.team_id);
}

/* The token is first checked from memory, without a read. Every answer that records the
 * submission settles that check in the record's own transaction (tg_store_auth_kept); an
 * answer that recorded nothing settles it with a read before it goes out. If the token,
 * the team's key or presets changed since, nothing was recorded or sent, and the
 * submission is taken once more from the start with the token read afresh. */
void tg_submit_run(const struct tg_sub_ops *ops, struct tg_worker *w, struct tg_request *req,
                struct tg_response *resp, const char *api, const char *path_group)
{
    int nheaders = resp->nheaders;
    submit_once(ops, w, req, resp, api, path_group, 1);
    int rc = tg_store_auth_confirm(w->store, tg_now_ms());
    if (rc == TG_OK)
        return;
    resp->status = 0;
    resp->content_type = NULL;
    resp->nheaders = nheaders;
    tg_buf_clear(&resp->body);
    resp->idem = NULL;
    resp->replayed = 0;
    resp->inputs = resp->runs = 0;
    resp->upstream_us = 0;
    if (rc == TG_ESTALE) {
        tg_metrics_auth_retry();
        submit_once(ops, w, req, resp, api, path_group, 0);
        return;
    }
    tg_log(TG_LOG_ERROR, "token lookup failed: %s", tg_store_errmsg(w->store));
    tg_resp_error(resp, req, 503, "the audit database is unavailable; nothing was sent "
                  "upstream; retry later", NULL);
}

void tg_submit_runs(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    tg_submit_run(&simplified, w, req, resp, NULL, NULL);
}
