/* POST /v1/runs, the simplified submission: authenticate, merge the team's preset under
 * the submission, validate, record as pending, create a group when none is named, send
 * the inputs in chunks, record every call and run, then answer. The record is final
 * before the client hears anything. */
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <strings.h>

#include "tg_conf.h"
#include "tg_form.h"
#include "tg_http.h"
#include "tg_idem.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_merge.h"
#include "tg_metrics.h"
#include "tg_reconcile.h"
#include "tg_run_tag.h"
#include "tg_store.h"
#include "tg_submit.h"
#include "tg_token.h"
#include "tg_upstream.h"
#include "tg_validate.h"

static const char *client_message(json_object *err_body)
{
    json_object *err = tg_json_get(err_body, "error");
    const char *msg = tg_json_get_str(err, "message");
    if (msg != NULL)
        return msg;
    json_object *detail = tg_json_get(err_body, "detail");
    if (json_object_is_type(detail, json_type_array) && json_object_array_length(detail) > 0)
        return tg_json_get_str(json_object_array_get_idx(detail, 0), "msg");
    return NULL;
}

/* The client's status for an upstream that answered with an error status. Errors about
 * the request pass through; errors about our credentials or the upstream's health
 * become 502, so a client never mistakes them for its own fault. */
static int status_for_upstream_error(int status)
{
    switch (status) {
    case 400: case 402: case 403: case 404: case 409: case 413: case 422: case 429:
        return status;
    case 408:
        return 504;
    default:
        return 502;
    }
}

static void describe_failure(struct tg_sub *s, const struct tg_up_result *res,
                             const char *what, struct tg_failure *f)
{
    memset(f, 0, sizeof(*f));
    switch (res->outcome) {
    case TG_OUTCOME_NOT_SENT:
        f->state = TG_STATE_FAILED;
        f->status = 502;
        snprintf(f->message, sizeof(f->message),
                 "could not reach the upstream to %s (%s); nothing was sent", what,
                 res->error != NULL ? res->error : "connection failed");
        break;
    case TG_OUTCOME_UNKNOWN:
        f->state = TG_STATE_UNKNOWN;
        f->status = res->timed_out ? 504 : 502;
        snprintf(f->message, sizeof(f->message),
                 "the upstream %s while we waited to %s (%s): the outcome is unknown and "
                 "submission %s is recorded as unknown for reconciliation",
                 res->timed_out ? "did not answer in time" : "connection failed", what,
                 res->error != NULL ? res->error : "no answer", s->id);
        break;
    default: {
        json_object *err = tg_json_pool(s->req->pool,
                                        json_tokener_parse(res->body_len > 0 ? res->body : "{}"));
        const char *msg = client_message(err);
        f->state = TG_STATE_FAILED;
        f->status = status_for_upstream_error(res->http_status);
        f->retry_after = res->retry_after;
        f->upstream_answered = 1;
        snprintf(f->message, sizeof(f->message), "the upstream refused to %s: %d%s%s", what,
                 res->http_status, msg != NULL ? " " : "", msg != NULL ? msg : "");
        break;
    }
    }
}

/* A recorded call is committed before the next upstream call goes out, or together with
 * the submission's final state when it is the last: one commit fewer per request. */
static int flush_call(struct tg_sub *s)
{
    if (!s->staged)
        return TG_OK;
    s->staged = 0;
    return tg_store_call_record(s->w->store, &s->call);
}

/* Writes the final state, with the last call when one is waiting. */
int tg_sub_finish(struct tg_sub *s, enum tg_state state, int http_status, const char *error)
{
    int rc;
    if (!s->staged) {
        rc = tg_store_submission_finish(s->w->store, s->id, state, http_status,
                                        s->last_upstream_status, error);
    } else {
        s->staged = 0;
        rc = tg_store_call_finish(s->w->store, &s->call, state, http_status, error);
    }
    if (rc == TG_OK) {
        tg_metrics_submission((int)state);
        tg_metrics_runs(s->auth.team, (long)s->accepted);
    }
    return rc;
}

/* Records one upstream call (see flush_call); the answer must not go out unless it was
 * committed. */
static int record_call(struct tg_sub *s, const char *operation, const char *path,
                       size_t first, size_t count, int64_t started_ms,
                       const struct tg_up_result *res, enum tg_outcome outcome,
                       json_object *answer, const char *error)
{
    struct tg_call call = {
        .submission_id = s->id,
        .seq = s->seq++,
        .operation = operation,
        .method = "POST",
        .path = path,
        .first_input = operation[0] == 'c' ? -1 : (int)first,
        .num_inputs = (int)count,
        .started_ms = started_ms,
        .duration_ms = res->duration_us / 1000,
        .outcome = outcome,
        .http_status = res->http_status,
        .run_cursor = tg_json_get_str(answer, "run_cursor"),
        .event_cursor = tg_json_get_str(answer, "event_cursor"),
        .error = error,
    };
    json_object *ids = tg_json_get(answer, "run_ids");
    if (outcome == TG_OUTCOME_OK && ids != NULL) {
        size_t n = json_object_array_length(ids);
        const char **run_ids = tg_pool_calloc(s->req->pool, n + 1, sizeof(char *));
        const char **procs = tg_pool_calloc(s->req->pool, n + 1, sizeof(char *));
        if (run_ids == NULL || procs == NULL)
            return TG_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            run_ids[i] = json_object_get_string(json_object_array_get_idx(ids, i));
            procs[i] = s->run_procs != NULL ? s->run_procs[first + i] : s->processor;
        }
        call.num_runs = n;
        call.run_ids = run_ids;
        call.processors = procs;
    }
    tg_metrics_upstream(operation, res->http_status, res->duration_us);
    s->last_upstream_status = res->http_status;
    s->resp->upstream_us += res->duration_us;
    int rc = flush_call(s);
    s->call = call;
    s->staged = 1;
    return rc;
}

/* Checks an add-runs answer: run_ids must be count strings. */
static json_object *parse_runs_answer(struct tg_sub *s, const struct tg_up_result *res,
                                      size_t count)
{
    char err[128];
    json_object *a = tg_json_pool(s->req->pool, tg_json_parse(res->body, res->body_len,
                                                              TG_JSON_MAX_DEPTH, err, sizeof(err)));
    json_object *ids = tg_json_get(a, "run_ids");
    if (!json_object_is_type(ids, json_type_array) || json_object_array_length(ids) != count)
        return NULL;
    for (size_t i = 0; i < count; i++)
        if (!json_object_is_type(json_object_array_get_idx(ids, i), json_type_string))
            return NULL;
    return a;
}

/* The failure for a 2xx answer we could not use: the upstream acted, we cannot say how. */
static void unreadable_answer(struct tg_sub *s, const char *what, struct tg_failure *f)
{
    memset(f, 0, sizeof(*f));
    f->state = TG_STATE_UNKNOWN;
    f->status = 502;
    snprintf(f->message, sizeof(f->message),
             "the upstream accepted the request to %s but its answer could not be read: "
             "submission %s is recorded as unknown for reconciliation",
             what, s->id);
}

/* The group's metadata names the team and the submission that made it. */
static const char *own_group_body(struct tg_sub *s)
{
    struct tg_buf b;
    tg_buf_init(&b, 4096);
    tg_buf_adds(&b, "{\"metadata\":{\"taskgate_team\":");
    tg_json_buf_string(&b, s->auth.team);
    tg_buf_printf(&b, ",\"taskgate_sub\":\"%s\"}}", s->id);
    char *body = tg_pool_strdup(s->req->pool, tg_buf_str(&b));
    tg_buf_free(&b);
    return body;
}

/* Keeps the upstream's answer as it came, for interfaces that pass it on. */
static int keep_answer(struct tg_sub *s, const struct tg_up_result *res)
{
    if (!s->keep_answer)
        return TG_OK;
    char *copy = tg_pool_alloc(s->req->pool, res->body_len + 1);
    if (copy == NULL)
        return TG_ENOMEM;
    if (res->body_len > 0)
        memcpy(copy, res->body, res->body_len);
    copy[res->body_len] = '\0';
    s->last_answer = copy;
    s->last_answer_len = res->body_len;
    return TG_OK;
}

/* How long to wait before sending again, or -1 not to. Only when the upstream cannot have
 * acted: the request never left (connection refused or failed before sending), or a 429 or
 * 503 with a Retry-After in seconds; and only while the pauses of this call stay within
 * upstream_retry_max_wait_ms. Never after a timeout, a lost connection or another error. */
static long retry_pause_ms(const struct tg_sub *s, const struct tg_up_result *res, int attempt,
                           long waited)
{
    long budget = s->w->conf->upstream_retry_max_wait_ms - waited;
    long pause = -1, secs;
    if (res->outcome == TG_OUTCOME_NOT_SENT)
        pause = 100L << (attempt < 5 ? attempt : 5);
    else if (res->outcome == TG_OUTCOME_ERROR &&
             (res->http_status == 429 || res->http_status == 503) && res->retry_after != NULL &&
             tg_parse_long(res->retry_after, 0, 86400, &secs) == TG_OK)
        pause = secs * 1000 > 50 ? secs * 1000 : 50;
    return pause >= 0 && pause <= budget ? pause : -1;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void add_call_summary(struct tg_sub *s, size_t first, size_t count, int status,
                             json_object *answer)
{
    json_object *c = json_object_new_object();
    json_object_object_add(c, "first_input", json_object_new_int64((int64_t)first));
    json_object_object_add(c, "num_inputs", json_object_new_int64((int64_t)count));
    json_object_object_add(c, "http_status", status != 0 ? json_object_new_int(status) : NULL);
    json_object_object_add(c, "run_cursor", json_object_get(tg_json_get(answer, "run_cursor")));
    json_object_object_add(c, "event_cursor",
                           json_object_get(tg_json_get(answer, "event_cursor")));
    json_object_array_add(s->calls, c);
}

/* The upstream client refused to send a request (tg_upstream_call's TG_EINVAL: a header
 * value or the path it cannot put on the wire): nothing left this host, and sending it again
 * would be refused the same way. The attempt is recorded as a call that was not sent and the
 * submission fails with *f (502: the request could not go upstream; nothing was sent, so it
 * may be sent again). Returns TG_ERR, or the database's code. */
static int not_sendable(struct tg_sub *s, const char *operation, const char *path,
                        const char *what, size_t first, size_t count, int64_t started,
                        struct tg_up_result *res, struct tg_failure *f)
{
    memset(res, 0, sizeof(*res));
    res->outcome = TG_OUTCOME_NOT_SENT;
    res->body = "";
    memset(f, 0, sizeof(*f));
    f->state = TG_STATE_FAILED;
    f->status = 502;
    snprintf(f->message, sizeof(f->message),
             "the request to %s could not be sent upstream (a header value or the path cannot "
             "be sent as it is); nothing was sent, so submission %s may be sent again", what,
             s->id);
    tg_log(TG_LOG_ERROR, "submission %s: the upstream client refused to send the request to "
           "%s", s->id, what);
    /* The staged call keeps the message until it is committed: a pool copy. */
    const char *kept = tg_pool_strdup(s->req->pool, f->message);
    if (kept == NULL)
        return TG_ENOMEM;
    if (operation[0] != 'c')
        add_call_summary(s, first, count, 0, NULL);
    int rc = record_call(s, operation, path, first, count, started, res, TG_OUTCOME_NOT_SENT,
                         NULL, kept);
    return rc != TG_OK ? rc : TG_ERR;
}

/* Sends one upstream request, and again while retry_pause_ms allows. Each attempt that is
 * retried is recorded as its own call; the last is left in *res (and its start in
 * *started) for the caller to record. A chunk (body NULL) is built afresh for each attempt:
 * its run tag names the attempt's call. A request the upstream client refuses to send is
 * recorded here (not_sendable): TG_ERR with *f filled. Other codes: the database's. */
static int send_with_retries(struct tg_sub *s, const char *operation, const char *path,
                             const char *beta, const char *what, const char *body,
                             size_t first, size_t count, struct tg_up_result *res,
                             int64_t *started, struct tg_failure *fail)
{
    long waited = 0;
    for (int attempt = 0;; attempt++) {
        struct tg_buf b;
        tg_buf_init(&b, (size_t)64 * 1024 * 1024);
        const char *data = body;
        size_t len = body != NULL ? strlen(body) : 0;
        int rc = TG_OK;
        if (body == NULL) {
            s->run_tag = tg_run_tag(s->req->pool, s->id, s->seq, first, count);
            rc = s->run_tag == NULL ? TG_ENOMEM
                 : s->build_chunk != NULL
                     ? s->build_chunk(s, &b, first, count)
                     : tg_merge_add_runs_tagged(&b, s->tmpl, s->inputs, first, count, s->run_tag);
            data = b.data;
            len = b.len;
        }
        if (rc == TG_OK)
            rc = flush_call(s);
        if (rc != TG_OK) {
            tg_buf_free(&b);
            return rc;
        }
        *started = tg_now_ms();
        rc = tg_upstream_call(s->w->up, "POST", path, s->key, beta, s->req->request_id, data,
                              len, res);
        tg_buf_free(&b);
        if (rc != TG_OK)
            return not_sendable(s, operation, path, what, first, count, *started, res, fail);
        long pause = retry_pause_ms(s, res, attempt, waited);
        if (pause < 0)
            return TG_OK;
        struct tg_failure f;
        char msg[sizeof(f.message) + 64];
        describe_failure(s, res, what, &f);
        snprintf(msg, sizeof(msg), "%s; sent again after %ld ms", f.message, pause);
        /* The staged call keeps the message until it is committed: a pool copy. */
        const char *kept = tg_pool_strdup(s->req->pool, msg);
        if (kept == NULL)
            return TG_ENOMEM;
        rc = record_call(s, operation, path, first, count, *started, res, res->outcome, NULL,
                         kept);
        if (rc != TG_OK)
            return rc;
        tg_log(TG_LOG_INFO, "submission %s: upstream %s %d, sending again in %ld ms", s->id,
               what, res->http_status, pause);
        pause_ms(pause);
        waited += pause;
    }
}

static int create_group(struct tg_sub *s, struct tg_failure *f)
{
    const char *path = tg_pool_printf(s->req->pool, "%s/tasks/groups",
                                      s->api != NULL ? s->api : "/v1");
    const char *body = s->group_body != NULL ? s->group_body : own_group_body(s);
    if (body == NULL || path == NULL)
        return TG_ENOMEM;

    struct tg_up_result res;
    int64_t started;
    int rc = send_with_retries(s, "create_group", path, NULL, "create a group", body, 0, 0, &res,
                               &started, f);
    if (rc != TG_OK)
        return rc;
    if (keep_answer(s, &res) != TG_OK)
        return TG_ENOMEM;
    json_object *a = NULL;
    const char *gid = NULL;
    if (res.outcome == TG_OUTCOME_OK) {
        char err[128];
        a = tg_json_pool(s->req->pool, tg_json_parse(res.body, res.body_len, TG_JSON_MAX_DEPTH,
                                                     err, sizeof(err)));
        gid = tg_json_get_str(a, "taskgroup_id");
        if (gid == NULL || !tg_validate_id(gid)) {
            unreadable_answer(s, "create a group", f);
            rc = record_call(s, "create_group", path, 0, 0, started, &res, TG_OUTCOME_UNKNOWN,
                             NULL, f->message);
            return rc != TG_OK ? rc : TG_ERR;
        }
    } else {
        describe_failure(s, &res, "create a group", f);
    }
    if (gid != NULL)
        s->taskgroup_id = tg_pool_strdup(s->req->pool, gid);
    rc = record_call(s, "create_group", path, 0, 0, started, &res, res.outcome, NULL,
                     gid == NULL ? f->message : NULL);
    if (rc == TG_OK && s->staged)
        s->call.taskgroup_id = s->taskgroup_id; /* stored with the call */
    if (rc != TG_OK)
        return rc;
    return gid == NULL ? TG_ERR : TG_OK;
}

static int send_chunk(struct tg_sub *s, size_t first, size_t count, struct tg_failure *f)
{
    int q = s->runs_query != NULL && *s->runs_query != '\0';
    const char *path = tg_pool_printf(s->req->pool, "%s/tasks/groups/%s/runs%s%s",
                                      s->api != NULL ? s->api : "/v1", s->taskgroup_id,
                                      q ? "?" : "", q ? s->runs_query : "");
    if (path == NULL)
        return TG_ENOMEM;
    struct tg_up_result res;
    int64_t started;
    int rc = send_with_retries(s, "add_runs", path, s->beta, "add runs", NULL, first, count, &res,
                               &started, f);
    if (rc != TG_OK)
        return rc;
    if (keep_answer(s, &res) != TG_OK)
        return TG_ENOMEM;

    json_object *a = NULL;
    enum tg_outcome outcome = res.outcome;
    if (outcome == TG_OUTCOME_OK) {
        a = parse_runs_answer(s, &res, count);
        if (a == NULL) {
            unreadable_answer(s, "add runs", f);
            outcome = TG_OUTCOME_UNKNOWN;
        }
    } else {
        describe_failure(s, &res, "add runs", f);
    }
    if (outcome != TG_OUTCOME_OK)
        add_call_summary(s, first, count, res.http_status, NULL);
    rc = record_call(s, "add_runs", path, first, count, started, &res, outcome, a,
                     outcome == TG_OUTCOME_OK ? NULL : f->message);
    if (rc != TG_OK)
        return rc;
    if (outcome != TG_OUTCOME_OK)
        return TG_ERR;

    json_object *ids = tg_json_get(a, "run_ids");
    for (size_t i = 0; i < count; i++)
        json_object_array_add(s->run_ids, json_object_get(json_object_array_get_idx(ids, i)));
    if (s->accepted == 0) {
        s->first_run_cursor = tg_json_get(a, "run_cursor");
        s->first_event_cursor = tg_json_get(a, "event_cursor");
    }
    s->accepted += count;
    add_call_summary(s, first, count, res.http_status, a);
    return TG_OK;
}

/* ---- answers ------------------------------------------------------------------------- */

static json_object *outcome_object(struct tg_sub *s, enum tg_state state);

/* The database failed us. Before anything went upstream that is a plain 503 (retry
 * later). After, the upstream may have acted: the submission is settled as unknown if
 * the database lets us, and the client is told not to retry blindly. */
void tg_sub_db_trouble(struct tg_sub *s, int rc)
{
    tg_log(TG_LOG_ERROR, "submission %s: recording failed: %s (%s)", s->id, tg_rc_str(rc),
           tg_store_errmsg(s->w->store));
    if (!s->begun) {
        tg_resp_error(s->resp, s->req, 503,
                      "the audit database could not record this submission; nothing was sent "
                      "upstream; retry later", NULL);
        return;
    }
    s->staged = 0;
    char msg[256];
    snprintf(msg, sizeof(msg), "recording the upstream's answer failed: %s", tg_rc_str(rc));
    int settled = tg_store_submission_finish(s->w->store, s->id, TG_STATE_UNKNOWN, 500,
                                             s->last_upstream_status, msg) == TG_OK;
    if (settled)
        tg_metrics_submission(TG_STATE_UNKNOWN);
    else /* still pending: marked unknown in the background once the database recovers */
        tg_reconcile_owe_unknown(s->id, 500, s->last_upstream_status, msg);
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
    json_object_object_add(o, "submission_id", json_object_new_string(s->id));
    json_object_object_add(o, "taskgroup_id",
                           s->taskgroup_id ? json_object_new_string(s->taskgroup_id) : NULL);
    json_object_object_add(o, "status", json_object_new_string(tg_domain_state_name(state)));
    json_object_object_add(o, "run_ids", json_object_get(s->run_ids));
    json_object_object_add(o, "run_cursor", json_object_get(s->first_run_cursor));
    json_object_object_add(o, "event_cursor", json_object_get(s->first_event_cursor));
    json_object_object_add(o, "calls", json_object_get(s->calls));
    return o;
}

static void answer_success(struct tg_sub *s)
{
    int rc = tg_sub_finish(s, TG_STATE_ACCEPTED, 200, NULL);
    if (rc != TG_OK) {
        tg_sub_db_trouble(s, rc);
        return;
    }
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
    int rc = tg_sub_finish(s, f->state, f->status, f->message);
    if (rc != TG_OK) {
        tg_sub_db_trouble(s, rc);
        return;
    }
    json_object *detail = outcome_object(s, f->state);
    if (detail != NULL) {
        /* In an error's detail the submission's state is called so: "status" there would
         * read as an HTTP status. */
        json_object_object_del(detail, "status");
        json_object_object_add(detail, "state",
                               json_object_new_string(tg_domain_state_name(f->state)));
        json_object_object_add(detail, "accepted_inputs",
                               json_object_new_int64((int64_t)s->accepted));
        json_object_object_add(detail, "num_inputs",
                               json_object_new_int64((int64_t)json_object_array_length(s->inputs)));
    }
    tg_resp_error(s->resp, s->req, f->status, f->message, detail);
    if (f->retry_after != NULL)
        tg_resp_header(s->resp, "Retry-After", tg_pool_strdup(s->req->pool, f->retry_after));
}

/* ---- before anything goes upstream ---------------------------------------------------- */

void tg_sub_record(struct tg_sub *s, struct tg_submission *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->id = s->id;
    rec->team_id = s->auth.team_id;
    rec->token_id = s->auth.token_id;
    rec->request_id = s->req->request_id;
    rec->remote_addr = s->req->remote_addr;
    rec->interface = s->interface;
    rec->taskgroup_id = s->taskgroup_id;
    rec->num_inputs = json_object_is_type(s->inputs, json_type_array)
                          ? (int)json_object_array_length(s->inputs) : 0;
    rec->request = tg_sub_stored_request(s);
    rec->received_ms = tg_now_ms() - (tg_mono_us() - s->req->started_us) / 1000;
}

/* The submission as it is stored: the body with MCP server header values (credentials for
 * someone else's server) replaced by fingerprints. Pool-owned text. */
const char *tg_sub_stored_request(struct tg_sub *s)
{
    if (s->body == NULL)
        return NULL;
    if (!tg_json_has_mcp_headers(s->body))
        return tg_json_str(s->body, NULL);
    json_object *copy = NULL;
    if (json_object_deep_copy(s->body, &copy, NULL) != 0 || tg_json_pool(s->req->pool, copy) == NULL)
        return NULL;
    if (tg_json_redact_mcp(copy) != TG_OK)
        return NULL; /* stored without its request rather than with a secret in it */
    return tg_json_str(copy, NULL);
}

/* Refuses the submission: the team is known, so a 'rejected' record is written. */
void tg_sub_reject(struct tg_sub *s, int status, const char *message, json_object *detail)
{
    struct tg_submission rec;
    tg_sub_record(s, &rec);
    int rc = tg_store_submission_reject(s->w->store, &rec, status, message);
    if (rc != TG_OK) {
        tg_sub_db_trouble(s, rc);
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
    s->inputs = tg_json_get(s->body, "inputs");
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
    if (!tg_idem_valid_key(key)) {
        tg_json_problem(s->detail, tg_json_loc("body", "idempotency_key", NULL),
                        "an idempotency key is 1 to 255 printable ASCII characters",
                        "value_error");
        return;
    }
    if (s->req->idempotency_key == NULL)
        s->idem_key = tg_pool_strdup(s->req->pool, key);
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

json_object *tg_sub_global_defaults(struct tg_sub *s)
{
    json_object *global = tg_json_pool(s->req->pool, json_object_new_object());
    if (global != NULL && s->w->conf->default_processor[0] != '\0')
        json_object_object_add(global, "processor",
                               json_object_new_string(s->w->conf->default_processor));
    return global;
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
    json_object *base = tg_json_pool(pool, tg_merge(global, tg_json_pool(pool,
                                                    tg_merge_template_from_preset(preset))));
    json_object *own = tg_json_pool(pool, tg_merge_template_from_submission(s->body));
    s->tmpl = tg_json_pool(pool, tg_merge(base, own));
    if (s->tmpl == NULL)
        return TG_ENOMEM;
    tg_merge_template_finish(s->tmpl);
    tg_merge_check_policy(preset, own, s->body, s->tmpl, detail);
    s->processor = tg_json_get_str(s->tmpl, "processor");
    s->beta = tg_merge_beta_header(pool, s->tmpl, s->req->parallel_beta);
    if (s->beta == NULL)
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
        s->taskgroup_id = json_object_get_string(g);
}

/* Runs every check; TG_OK, or the answer is already in resp. */
static int prepare(struct tg_sub *s)
{
    json_object *detail = s->detail;
    if (s->unsupported) {
        tg_sub_reject(s, 415, "send the submission as application/json, "
                       "application/x-www-form-urlencoded or multipart/form-data", NULL);
        return TG_ERR;
    }
    int rc = TG_OK;
    if (s->body != NULL) {
        rc = build_template(s, detail);
        if (rc == TG_OK || rc == TG_EINVAL) {
            check_group(s, detail);
            if (s->tmpl != NULL) {
                json_object *at = tg_json_pool(s->req->pool, tg_json_loc("body", NULL));
                struct tg_locator where = {tg_validate_loc_simplified, s->body, at};
                tg_validate_template(s->tmpl, &where, detail);
            }
            tg_validate_inputs(s->inputs, s->w->conf->max_inputs_per_submission,
                               tg_validate_task_spec_chars(s->tmpl), detail);
            if (tg_json_has(tg_json_get(s->tmpl, "metadata"), TG_RUN_TAG_KEY))
                tg_json_problem(detail, tg_json_loc("body", "metadata", TG_RUN_TAG_KEY, NULL),
                                "metadata key '" TG_RUN_TAG_KEY "' is the gateway's run tag; "
                                "use another key", "value_error");
            rc = TG_OK;
        }
    }
    if (rc != TG_OK) {
        tg_sub_db_trouble(s, rc);
        return rc;
    }
    if (json_object_array_length(detail) > 0) {
        tg_sub_reject(s, 422, "the submission is invalid", detail);
        return TG_EINVAL;
    }
    return TG_OK;
}

int tg_sub_init(struct tg_sub *s, struct tg_worker *w, struct tg_request *req,
                struct tg_response *resp, const char *interface)
{
    memset(s, 0, sizeof(*s));
    s->w = w;
    s->req = req;
    s->resp = resp;
    s->interface = interface;
    s->detail = tg_json_pool(req->pool, json_object_new_array());
    s->run_ids = tg_json_pool(req->pool, json_object_new_array());
    s->calls = tg_json_pool(req->pool, json_object_new_array());
    if (s->detail == NULL || s->run_ids == NULL || s->calls == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return TG_ENOMEM;
    }
    if (tg_sortable_id(s->id, sizeof(s->id), "sub_") != TG_OK) {
        tg_resp_error(resp, req, 500, "no randomness available", NULL);
        return TG_ERR;
    }
    resp->submission_id = tg_pool_strdup(req->pool, s->id);
    return TG_OK;
}

int tg_sub_check_group(struct tg_sub *s)
{
    if (s->taskgroup_id == NULL || s->group_checked)
        return TG_OK;
    int rc = tg_store_group_owned(s->w->store, s->auth.team_id, s->taskgroup_id);
    if (rc == TG_OK) {
        s->group_checked = 1;
        return TG_OK;
    }
    if (rc != TG_ENOTFOUND) {
        tg_sub_db_trouble(s, rc);
        return rc;
    }
    /* The same answer as for a group that does not exist: whether another team has it is
     * not this team's to learn. */
    s->taskgroup_id = NULL;
    tg_sub_reject(s, 404, "no such task group for this team", NULL);
    return rc;
}

int tg_sub_check_role(struct tg_sub *s)
{
    if (s->auth.role == TG_ROLE_SUBMIT)
        return TG_OK;
    tg_sub_reject(s, 403, "this token may not add runs: use a submit token of the team", NULL);
    return TG_ERR;
}

/* Inputs an earlier submission already created (a resumed repeat) are taken over, not
 * sent: their runs join the answer in input order. Returns how many follow from first. */
static size_t take_prior(struct tg_sub *s, size_t first, size_t n)
{
    size_t i = first;
    while (s->prior_runs != NULL && i < n && s->prior_runs[i] != NULL) {
        json_object_array_add(s->run_ids, json_object_new_string(s->prior_runs[i]));
        i++;
    }
    if (i > first) {
        json_object *c = json_object_new_object();
        json_object_object_add(c, "first_input", json_object_new_int64((int64_t)first));
        json_object_object_add(c, "num_inputs", json_object_new_int64((int64_t)(i - first)));
        json_object_object_add(c, "from_submission", json_object_new_string(s->resumes));
        json_object_array_add(s->calls, c);
        s->accepted += i - first;
    }
    return i - first;
}

int tg_sub_forward(struct tg_sub *s, struct tg_failure *f)
{
    struct tg_worker *w = s->w;
    size_t n = json_object_is_type(s->inputs, json_type_array)
                   ? json_object_array_length(s->inputs) : 0;
    s->resp->inputs = (int)n;
    if (!s->begun) {
        /* tg_sub_admit records the submission; forwarding without it is a bug. */
        tg_log(TG_LOG_ERROR, "submission %s: forwarded without admission", s->id);
        return TG_EINVAL;
    }

    /* From here on the submission is recorded: every path ends in a final state. */
    int rc = s->taskgroup_id == NULL ? create_group(s, f) : TG_OK;
    size_t chunk = (size_t)w->conf->chunk_size;
    for (size_t first = 0; rc == TG_OK && first < n;) {
        size_t taken = take_prior(s, first, n);
        if (taken > 0) {
            first += taken;
            continue;
        }
        size_t end = first;
        while (end < n && end - first < chunk &&
               (s->prior_runs == NULL || s->prior_runs[end] == NULL))
            end++;
        rc = send_chunk(s, first, end - first, f);
        first = end;
    }
    s->resp->runs = (int)s->accepted;
    tg_memzero(s->key, sizeof(s->key));
    return rc;
}

void tg_submit_runs(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    struct tg_sub s;
    if (tg_sub_init(&s, w, req, resp, "simplified") != TG_OK)
        return;
    if (decode_body(&s) != TG_OK) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    if (tg_http_auth(w, req, resp, take_form_token(&s), &s.auth) != TG_OK)
        return;
    if (tg_sub_check_role(&s) != TG_OK)
        return;
    take_idempotency_key(&s);
    if (prepare(&s) != TG_OK)
        return;
    if (tg_sub_admit(&s) != TG_OK)
        return;

    struct tg_failure f;
    int rc = tg_sub_forward(&s, &f);
    if (rc == TG_OK)
        answer_success(&s);
    else if (rc == TG_ERR)
        answer_failure(&s, &f);
    else
        tg_sub_db_trouble(&s, rc);
}
