/* The submission pipeline's HTTP-free half (see tg_pipeline.h): create the group, send the
 * chunks with their retries, record every call and run, and say what failed. */
#include "tg_pipeline.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tg_conf.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_merge.h"
#include "tg_metrics.h"
#include "tg_reconcile.h"
#include "tg_run_tag.h"
#include "tg_validate.h"

size_t tg_pipeline_inputs(const struct tg_pipe *p)
{
    return json_object_is_type(p->inputs, json_type_array) ? json_object_array_length(p->inputs)
                                                           : 0;
}

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

static void describe_failure(struct tg_pipe *p, const struct tg_up_result *res,
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
                 res->error != NULL ? res->error : "no answer", p->id);
        break;
    default: {
        json_object *err = tg_json_pool(p->pool,
                                        tg_json_parse_text(res->body_len > 0 ? res->body : "{}"));
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
static int flush_call(struct tg_pipe *p)
{
    if (!p->staged)
        return TG_OK;
    p->staged = 0;
    return tg_store_call_record(p->store, &p->call);
}

/* Writes the final state, with the last call when one is waiting. */
int tg_pipeline_finish(struct tg_pipe *p, enum tg_state state, int http_status,
                       const char *error)
{
    int rc;
    if (!p->staged) {
        rc = tg_store_submission_finish(p->store, p->id, state, http_status,
                                        p->last_upstream_status, error);
    } else {
        p->staged = 0;
        rc = tg_store_call_finish(p->store, &p->call, state, http_status, error);
    }
    if (rc == TG_OK) {
        tg_metrics_submission((int)state);
        tg_metrics_runs(p->team, (long)p->accepted);
    }
    return rc;
}

/* Records one upstream call (see flush_call); the answer must not go out unless it was
 * committed. */
static int record_call(struct tg_pipe *p, const char *operation, const char *path,
                       size_t first, size_t count, int64_t started_ms,
                       const struct tg_up_result *res, enum tg_outcome outcome,
                       json_object *answer, const char *error)
{
    struct tg_call call = {
        .submission_id = p->id,
        .seq = p->seq++,
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
        const char **run_ids = tg_pool_calloc(p->pool, n + 1, sizeof(char *));
        const char **procs = tg_pool_calloc(p->pool, n + 1, sizeof(char *));
        if (run_ids == NULL || procs == NULL)
            return TG_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            run_ids[i] = json_object_get_string(json_object_array_get_idx(ids, i));
            procs[i] = p->run_procs != NULL ? p->run_procs[first + i] : p->processor;
        }
        call.num_runs = n;
        call.run_ids = run_ids;
        call.processors = procs;
    }
    tg_metrics_upstream(operation, res->http_status, res->duration_us);
    p->last_upstream_status = res->http_status;
    p->upstream_us += res->duration_us;
    int rc = flush_call(p);
    p->call = call;
    p->staged = 1;
    return rc;
}

/* Checks an add-runs answer: run_ids must be count strings. */
static json_object *parse_runs_answer(struct tg_pipe *p, const struct tg_up_result *res,
                                      size_t count)
{
    char err[128];
    json_object *a = tg_json_pool(p->pool, tg_json_parse(res->body, res->body_len,
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
static void unreadable_answer(struct tg_pipe *p, const char *what, struct tg_failure *f)
{
    memset(f, 0, sizeof(*f));
    f->state = TG_STATE_UNKNOWN;
    f->status = 502;
    snprintf(f->message, sizeof(f->message),
             "the upstream accepted the request to %s but its answer could not be read: "
             "submission %s is recorded as unknown for reconciliation",
             what, p->id);
}

/* The group's metadata names the team and the submission that made it. */
static const char *own_group_body(struct tg_pipe *p)
{
    struct tg_buf b;
    tg_buf_init(&b, 4096);
    tg_buf_adds(&b, "{\"metadata\":{\"taskgate_team\":");
    tg_json_buf_string(&b, p->team);
    tg_buf_printf(&b, ",\"taskgate_sub\":\"%s\"}}", p->id);
    char *body = tg_pool_strdup(p->pool, tg_buf_str(&b));
    tg_buf_free(&b);
    return body;
}

/* Keeps the upstream's answer as it came, for interfaces that pass it on. */
static int keep_answer(struct tg_pipe *p, const struct tg_up_result *res)
{
    if (!p->keeps_answer)
        return TG_OK;
    char *copy = tg_pool_alloc(p->pool, res->body_len + 1);
    if (copy == NULL)
        return TG_ENOMEM;
    if (res->body_len > 0)
        memcpy(copy, res->body, res->body_len);
    copy[res->body_len] = '\0';
    p->last_answer = copy;
    p->last_answer_len = res->body_len;
    return TG_OK;
}

/* How long to wait before sending again, or -1 not to. Only when the upstream cannot have
 * acted: the request never left (connection refused or failed before sending), or a 429 or
 * 503 with a Retry-After in seconds; and only while the pauses of this call stay within
 * upstream_retry_max_wait_ms. Never after a timeout, a lost connection or another error. */
static long retry_pause_ms(const struct tg_pipe *p, const struct tg_up_result *res, int attempt,
                           long waited)
{
    long budget = p->conf->upstream_retry_max_wait_ms - waited;
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

static void add_call_summary(struct tg_pipe *p, size_t first, size_t count, int status,
                             json_object *answer)
{
    json_object *c = json_object_new_object();
    json_object_object_add(c, "first_input", json_object_new_int64((int64_t)first));
    json_object_object_add(c, "num_inputs", json_object_new_int64((int64_t)count));
    json_object_object_add(c, "http_status", status != 0 ? json_object_new_int(status) : NULL);
    json_object_object_add(c, "run_cursor", json_object_get(tg_json_get(answer, "run_cursor")));
    json_object_object_add(c, "event_cursor",
                           json_object_get(tg_json_get(answer, "event_cursor")));
    json_object_array_add(p->calls, c);
}

/* The upstream client refused to send a request (tg_upstream_call's TG_EINVAL: a header
 * value or the path it cannot put on the wire): nothing left this host, and sending it again
 * would be refused the same way. The attempt is recorded as a call that was not sent and the
 * submission fails with *f (502: the request could not go upstream; nothing was sent, so it
 * may be sent again). Returns TG_ERR, or the database's code. */
static int not_sendable(struct tg_pipe *p, const char *operation, const char *path,
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
             p->id);
    tg_log(TG_LOG_ERROR, "submission %s: the upstream client refused to send the request to "
           "%s", p->id, what);
    /* The staged call keeps the message until it is committed: a pool copy. */
    const char *kept = tg_pool_strdup(p->pool, f->message);
    if (kept == NULL)
        return TG_ENOMEM;
    if (operation[0] != 'c')
        add_call_summary(p, first, count, 0, NULL);
    int rc = record_call(p, operation, path, first, count, started, res, TG_OUTCOME_NOT_SENT,
                         NULL, kept);
    return rc != TG_OK ? rc : TG_ERR;
}

/* Sends one upstream request, and again while retry_pause_ms allows. Each attempt that is
 * retried is recorded as its own call; the last is left in *res (and its start in
 * *started) for the caller to record. A chunk (body NULL) is built afresh for each attempt:
 * its run tag names the attempt's call. A request the upstream client refuses to send is
 * recorded here (not_sendable): TG_ERR with *f filled. Other codes: the database's. */
static int send_with_retries(struct tg_pipe *p, const char *operation, const char *path,
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
            p->run_tag = tg_run_tag(p->pool, p->id, p->seq, first, count);
            rc = p->run_tag == NULL ? TG_ENOMEM : p->build_chunk(p, &b, first, count);
            data = b.data;
            len = b.len;
        }
        if (rc == TG_OK)
            rc = flush_call(p);
        if (rc != TG_OK) {
            tg_buf_free(&b);
            return rc;
        }
        *started = tg_now_ms();
        rc = tg_upstream_call(p->up, "POST", path, p->key, beta, p->request_id, data,
                              len, res);
        tg_buf_free(&b);
        if (rc != TG_OK)
            return not_sendable(p, operation, path, what, first, count, *started, res, fail);
        long pause = retry_pause_ms(p, res, attempt, waited);
        if (pause < 0)
            return TG_OK;
        struct tg_failure f;
        char msg[sizeof(f.message) + 64];
        describe_failure(p, res, what, &f);
        snprintf(msg, sizeof(msg), "%s; sent again after %ld ms", f.message, pause);
        /* The staged call keeps the message until it is committed: a pool copy. */
        const char *kept = tg_pool_strdup(p->pool, msg);
        if (kept == NULL)
            return TG_ENOMEM;
        rc = record_call(p, operation, path, first, count, *started, res, res->outcome, NULL,
                         kept);
        if (rc != TG_OK)
            return rc;
        tg_log(TG_LOG_INFO, "submission %s: upstream %s %d, sending again in %ld ms", p->id,
               what, res->http_status, pause);
        pause_ms(pause);
        waited += pause;
    }
}

/* send_with_retries, then the last answer kept as it came (keep_answer). */
static int send_kept(struct tg_pipe *p, const char *operation, const char *path,
                     const char *beta, const char *what, const char *body, size_t first,
                     size_t count, struct tg_up_result *res, int64_t *started,
                     struct tg_failure *f)
{
    int rc = send_with_retries(p, operation, path, beta, what, body, first, count, res, started,
                               f);
    if (rc != TG_OK)
        return rc;
    return keep_answer(p, res) != TG_OK ? TG_ENOMEM : TG_OK;
}

static int create_group(struct tg_pipe *p, struct tg_failure *f)
{
    const char *path = tg_pool_printf(p->pool, "%s/tasks/groups",
                                      p->api != NULL ? p->api : "/v1");
    const char *body = p->group_body != NULL ? p->group_body : own_group_body(p);
    if (body == NULL || path == NULL)
        return TG_ENOMEM;

    struct tg_up_result res;
    int64_t started;
    int rc = send_kept(p, "create_group", path, NULL, "create a group", body, 0, 0, &res,
                       &started, f);
    if (rc != TG_OK)
        return rc;
    json_object *a = NULL;
    const char *gid = NULL;
    if (res.outcome == TG_OUTCOME_OK) {
        char err[128];
        a = tg_json_pool(p->pool, tg_json_parse(res.body, res.body_len, TG_JSON_MAX_DEPTH,
                                                err, sizeof(err)));
        gid = tg_json_get_str(a, "taskgroup_id");
        if (gid == NULL || !tg_validate_id(gid)) {
            unreadable_answer(p, "create a group", f);
            rc = record_call(p, "create_group", path, 0, 0, started, &res, TG_OUTCOME_UNKNOWN,
                             NULL, f->message);
            return rc != TG_OK ? rc : TG_ERR;
        }
    } else {
        describe_failure(p, &res, "create a group", f);
    }
    if (gid != NULL)
        p->taskgroup_id = tg_pool_strdup(p->pool, gid);
    rc = record_call(p, "create_group", path, 0, 0, started, &res, res.outcome, NULL,
                     gid == NULL ? f->message : NULL);
    if (rc == TG_OK && p->staged)
        p->call.taskgroup_id = p->taskgroup_id; /* stored with the call */
    if (rc != TG_OK)
        return rc;
    return gid == NULL ? TG_ERR : TG_OK;
}

static int send_chunk(struct tg_pipe *p, size_t first, size_t count, struct tg_failure *f)
{
    int q = p->runs_query != NULL && *p->runs_query != '\0';
    const char *path = tg_pool_printf(p->pool, "%s/tasks/groups/%s/runs%s%s",
                                      p->api != NULL ? p->api : "/v1", p->taskgroup_id,
                                      q ? "?" : "", q ? p->runs_query : "");
    if (path == NULL)
        return TG_ENOMEM;
    struct tg_up_result res;
    int64_t started;
    int rc = send_kept(p, "add_runs", path, p->beta, "add runs", NULL, first, count, &res,
                       &started, f);
    if (rc != TG_OK)
        return rc;

    json_object *a = NULL;
    enum tg_outcome outcome = res.outcome;
    if (outcome == TG_OUTCOME_OK) {
        a = parse_runs_answer(p, &res, count);
        if (a == NULL) {
            unreadable_answer(p, "add runs", f);
            outcome = TG_OUTCOME_UNKNOWN;
        }
    } else {
        describe_failure(p, &res, "add runs", f);
    }
    if (outcome != TG_OUTCOME_OK)
        add_call_summary(p, first, count, res.http_status, NULL);
    rc = record_call(p, "add_runs", path, first, count, started, &res, outcome, a,
                     outcome == TG_OUTCOME_OK ? NULL : f->message);
    if (rc != TG_OK)
        return rc;
    if (outcome != TG_OUTCOME_OK)
        return TG_ERR;

    json_object *ids = tg_json_get(a, "run_ids");
    for (size_t i = 0; i < count; i++)
        json_object_array_add(p->run_ids, json_object_get(json_object_array_get_idx(ids, i)));
    if (p->accepted == 0) {
        p->first_run_cursor = tg_json_get(a, "run_cursor");
        p->first_event_cursor = tg_json_get(a, "event_cursor");
    }
    p->accepted += count;
    add_call_summary(p, first, count, res.http_status, a);
    return TG_OK;
}

/* Inputs an earlier submission already created (a resumed repeat) are taken over, not
 * sent: their runs join the answer in input order. Returns how many follow from first. */
static size_t take_prior(struct tg_pipe *p, size_t first, size_t n)
{
    size_t i = first;
    while (p->prior_runs != NULL && i < n && p->prior_runs[i] != NULL) {
        json_object_array_add(p->run_ids, json_object_new_string(p->prior_runs[i]));
        i++;
    }
    if (i > first) {
        json_object *c = json_object_new_object();
        json_object_object_add(c, "first_input", json_object_new_int64((int64_t)first));
        json_object_object_add(c, "num_inputs", json_object_new_int64((int64_t)(i - first)));
        json_object_object_add(c, "from_submission", json_object_new_string(p->resumes));
        json_object_array_add(p->calls, c);
        p->accepted += i - first;
    }
    return i - first;
}

int tg_pipeline_forward(struct tg_pipe *p, struct tg_failure *f)
{
        size_t n = tg_pipeline_inputs(p);
    if (!p->begun) {
        /* admission records the submission; forwarding without it is a bug. */
        tg_log(TG_LOG_ERROR, "submission %s: forwarded without admission", p->id);
        return TG_EINVAL;
    }

    /* From here on the submission is recorded: every path ends in a final state. */
    int rc = p->taskgroup_id == NULL ? create_group(p, f) : TG_OK;
    size_t chunk = (size_t)p->conf->chunk_size;
    for (size_t first = 0; rc == TG_OK && first < n;) {
        size_t taken = take_prior(p, first, n);
        if (taken > 0) {
            first += taken;
            continue;
        }
        size_t end = first;
        while (end < n && end - first < chunk &&
               (p->prior_runs == NULL || p->prior_runs[end] == NULL))
            end++;
        rc = send_chunk(p, first, end - first, f);
        first = end;
    }
    tg_memzero(p->key, sizeof(p->key));
    return rc;
}
