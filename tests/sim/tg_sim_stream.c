/* tg_sim_stream.c: the simulator's server-sent event streams, as Parallel sends them: a
 * group's runs (GET .../groups/{id}/runs: every run as it is now, then the end) and a
 * group's events (GET .../groups/{id}/events: the event log, then new events as runs end,
 * until no run is active or the timeout passes). Each event is written and flushed on its
 * own, sim_stream_interval_ms apart; no lock is held while waiting. */
#include "tg_sim_store.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define WAIT_STEP_MS 20L                 /* how often a waiting event stream looks again */
#define EVENTS_TIMEOUT_DEFAULT 600.0     /* seconds an event stream stays open at most */
#define EVENTS_TIMEOUT_MAX 3600.0        /* "up to an hour" */
#define QUERY_VALUE_MAX 256

/* ---- query parameters ---------------------------------------------------------------- */

/* A 422 in the HTTPValidationError shape for query parameter name. */
static void refuse_query(struct sim_response *resp, const char *name, const char *msg,
                         const char *type)
{
    struct json_object *root = json_object_new_object();
    struct json_object *list = json_object_new_array();
    struct json_object *item = json_object_new_object();
    struct json_object *loc = json_object_new_array();

    json_object_array_add(loc, json_object_new_string("query"));
    json_object_array_add(loc, json_object_new_string(name));
    json_object_object_add(item, "loc", loc);
    json_object_object_add(item, "msg", json_object_new_string(msg));
    json_object_object_add(item, "type", json_object_new_string(type));
    json_object_array_add(list, item);
    json_object_object_add(root, "detail", list);
    sim_response_json(resp, 422, root);
}

/* A boolean query parameter the way FastAPI reads one; -1 after answering 422. */
static int query_bool(const struct sim_request *req, const char *name, int *out,
                      struct sim_response *resp)
{
    static const char *const yes[] = {"1", "true", "t", "yes", "y", "on"};
    static const char *const no[] = {"0", "false", "f", "no", "n", "off"};
    char val[16];
    int found = sim_query_get(req->query, name, val, sizeof val);
    size_t i;

    *out = 0;
    for (i = 0; found > 0 && i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(val, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(val, no[i]) == 0)
            return 0;
    }
    if (found == 0)
        return 0;
    refuse_query(resp, name, "Input should be a valid boolean, unable to interpret input",
                 "bool_parsing");
    return -1;
}

/* The last_event_id parameter into val ("" when absent or empty); -1 after a 422. */
static int query_cursor(const struct sim_request *req, char *val, size_t size,
                        struct sim_response *resp)
{
    int found = sim_query_get(req->query, "last_event_id", val, size);

    if (found < 0) {
        refuse_query(resp, "last_event_id", "Invalid event id", "value_error");
        return -1;
    }
    if (found == 0)
        val[0] = '\0';
    return 0;
}

/* ---- writing events ------------------------------------------------------------------ */

/* Waits ms, watching the client: 0, or -1 when it has hung up. */
static int wait_client(int fd, long ms)
{
    long long end = sim_mono_ms() + ms;

    for (;;) {
        long long left = end - sim_mono_ms();
        struct pollfd pfd = {fd, POLLIN, 0};
        char ch;
        ssize_t got;

        if (left <= 0)
            return 0;
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        got = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return -1;
        if (got > 0) { /* a pipelined request: nothing more to watch, just wait */
            sim_sleep_ms((long)(end - sim_mono_ms()));
            return 0;
        }
    }
}

struct streamer {
    const struct sim_conn *c;
    enum sim_cut cut;
    long interval_ms;
    size_t sent;
    int broken; /* the client went away */
    int cut_done;
};

/* Sends one event (json, taken over), after the pause when it is not the first. Returns
 * 0 to go on, -1 when the stream is to stop (client gone, or a fault's cut). */
static int emit(struct streamer *s, const char *type, char *json)
{
    size_t len = strlen(json);
    int rc = 0;

    if (s->sent > 0 && s->interval_ms > 0 && wait_client(s->c->fd, s->interval_ms) != 0)
        rc = -1;
    if (rc == 0 && s->cut == SIM_CUT_MALFORMED) {
        len /= 2; /* broken JSON, but whole characters and a well-formed SSE frame */
        while (len > 0 && ((unsigned char)json[len] & 0xC0) == 0x80)
            len--;
    }
    if (rc == 0)
        rc = sim_http_stream_event(s->c, type, json, len);
    free(json);
    if (rc != 0) {
        s->broken = 1;
        return -1;
    }
    s->sent++;
    if (s->cut != SIM_CUT_NONE) {
        s->cut_done = 1;
        return -1;
    }
    return 0;
}

static enum sim_streamed finish(struct streamer *s, int keep)
{
    if (s->broken)
        return SIM_STREAM_CLOSE;
    if (s->cut == SIM_CUT_STOP)
        return SIM_STREAM_CUT;
    if (sim_http_stream_end(s->c) != 0 || s->c->http10 || !keep)
        return SIM_STREAM_CLOSE;
    return SIM_STREAM_DONE;
}

/* ---- the runs stream ------------------------------------------------------------------ */

/* The task_run.state event of run idx for the runs stream, or NULL when filtered out;
 * call under sim_lock. */
static char *run_event(const struct sim_group *g, size_t idx, int status, int with_input,
                       int with_output)
{
    const struct sim_run *r = &g->runs[idx];
    struct sim_buf b = {0};
    char id[80];
    int rc;

    if (status != -1 && (int)r->status != status)
        return NULL;
    sim_store_cursor(id, sizeof id, g, 'r', idx + 1);
    rc = sim_buf_addf(&b, "{\"type\":\"task_run.state\",\"event_id\":\"%s\",\"input\":", id);
    if (rc == 0)
        rc = sim_buf_adds(&b, with_input ? r->request : "null");
    if (rc == 0)
        rc = sim_buf_adds(&b, ",\"run\":");
    if (rc == 0)
        rc = sim_store_run_json(&b, g, idx);
    if (rc == 0)
        rc = sim_buf_adds(&b, ",\"output\":");
    if (rc == 0)
        rc = sim_buf_adds(&b, with_output && r->status == RS_COMPLETED ? r->output : "null");
    if (rc == 0)
        rc = sim_buf_adds(&b, "}");
    if (rc != 0) {
        sim_buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* The status query parameter: -1 for any, else an enum run_status; -2 after a 422. */
static int query_status(const struct sim_request *req, struct sim_response *resp)
{
    static const char *const all[] = {"queued", "action_required", "running", "completed",
                                      "failed", "cancelling", "cancelled"};
    static const int mapped[] = {RS_QUEUED, -3, RS_RUNNING, RS_COMPLETED, RS_FAILED, -3,
                                 RS_CANCELLED};
    char val[32];
    int found = sim_query_get(req->query, "status", val, sizeof val);
    size_t i;

    if (found == 0)
        return -1;
    for (i = 0; found > 0 && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(val, all[i]) == 0)
            return mapped[i]; /* -3: a status no simulated run ever has */
    }
    refuse_query(resp, "status", "Input should be 'queued', 'action_required', 'running', "
                 "'completed', 'failed', 'cancelling' or 'cancelled'", "enum");
    return -2;
}

static enum sim_streamed stream_runs(const struct sim_conn *c, const struct sim_request *req,
                                     const struct sim_route *r, const char *account, int keep,
                                     enum sim_cut cut, long seq, struct sim_response *resp)
{
    struct streamer s = {c, cut, 0, 0, 0, 0};
    char cursor[QUERY_VALUE_MAX];
    int status, with_input, with_output;
    struct sim_group *g;
    size_t from = 0, total, i;

    status = query_status(req, resp);
    if (status == -2 || query_bool(req, "include_input", &with_input, resp) != 0 ||
        query_bool(req, "include_output", &with_output, resp) != 0 ||
        query_cursor(req, cursor, sizeof cursor, resp) != 0)
        return SIM_STREAM_ANSWER;
    pthread_mutex_lock(&sim_lock);
    g = sim_store_group_find(r->id, r->id_len);
    if (g == NULL || strcmp(g->account, account) != 0) {
        pthread_mutex_unlock(&sim_lock);
        sim_response_error(resp, 404, "TaskGroup not found");
        return SIM_STREAM_ANSWER;
    }
    if (cursor[0] != '\0' &&
        (sim_store_parse_cursor(cursor, g, 'r', &from) != 0 || from > g->nruns)) {
        pthread_mutex_unlock(&sim_lock);
        refuse_query(resp, "last_event_id", "Invalid event id", "value_error");
        return SIM_STREAM_ANSWER;
    }
    total = g->nruns; /* the runs there are now: the stream does not wait for more */
    s.interval_ms = sim_stream_interval_ms;
    pthread_mutex_unlock(&sim_lock);
    sim_log_status(seq, 200);
    if (sim_http_stream_begin(c, keep) != 0)
        return SIM_STREAM_CLOSE;
    for (i = from; i < total; i++) {
        char *json;

        pthread_mutex_lock(&sim_lock);
        sim_store_advance(g);
        json = run_event(g, i, status, with_input, with_output);
        pthread_mutex_unlock(&sim_lock);
        if (json != NULL && emit(&s, "task_run.state", json) != 0)
            break;
    }
    return finish(&s, keep);
}

/* ---- the events stream ---------------------------------------------------------------- */

/* The timeout query parameter in ms (default EVENTS_TIMEOUT_DEFAULT s); -1 after a 422. */
static long long query_timeout(const struct sim_request *req, struct sim_response *resp)
{
    char val[64], *end;
    double v = EVENTS_TIMEOUT_DEFAULT;
    int found = sim_query_get(req->query, "timeout", val, sizeof val);

    if (found > 0) {
        errno = 0;
        v = strtod(val, &end);
        if (val[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(v))
            found = -1;
    }
    if (found < 0) {
        refuse_query(resp, "timeout", "Input should be a valid number", "float_parsing");
        return -1;
    }
    if (v < 0)
        v = 0;
    if (v > EVENTS_TIMEOUT_MAX)
        v = EVENTS_TIMEOUT_MAX;
    return (long long)(v * 1000.0);
}

static enum sim_streamed stream_events(const struct sim_conn *c,
                                       const struct sim_request *req,
                                       const struct sim_route *r, const char *account,
                                       int keep, enum sim_cut cut, long seq,
                                       struct sim_response *resp)
{
    static const char run_prefix[] = "{\"type\":\"task_run.state\"";
    struct streamer s = {c, cut, 0, 0, 0, 0};
    char cursor[QUERY_VALUE_MAX];
    long long timeout = query_timeout(req, resp), deadline;
    struct sim_group *g;
    size_t next = 0;

    if (timeout < 0 || query_cursor(req, cursor, sizeof cursor, resp) != 0)
        return SIM_STREAM_ANSWER;
    deadline = sim_mono_ms() + timeout;
    pthread_mutex_lock(&sim_lock);
    g = sim_store_group_find(r->id, r->id_len);
    if (g == NULL || strcmp(g->account, account) != 0) {
        pthread_mutex_unlock(&sim_lock);
        sim_response_error(resp, 404, "TaskGroup not found");
        return SIM_STREAM_ANSWER;
    }
    sim_store_advance(g);
    if (cursor[0] != '\0' &&
        (sim_store_parse_cursor(cursor, g, 'e', &next) != 0 || next > g->nevents)) {
        pthread_mutex_unlock(&sim_lock);
        refuse_query(resp, "last_event_id", "Invalid event id", "value_error");
        return SIM_STREAM_ANSWER;
    }
    s.interval_ms = sim_stream_interval_ms;
    pthread_mutex_unlock(&sim_lock);
    sim_log_status(seq, 200);
    if (sim_http_stream_begin(c, keep) != 0)
        return SIM_STREAM_CLOSE;
    for (;;) {
        char *json = NULL;
        int active;

        pthread_mutex_lock(&sim_lock);
        sim_store_advance(g);
        if (next < g->nevents)
            json = sim_xstrdup(g->events[next]);
        active = sim_store_active(g);
        pthread_mutex_unlock(&sim_lock);
        if (json != NULL) {
            int is_run = strncmp(json, run_prefix, sizeof run_prefix - 1) == 0;

            next++;
            if (emit(&s, is_run ? "task_run.state" : "task_group_status", json) != 0)
                break;
            continue;
        }
        if (!active || sim_mono_ms() >= deadline)
            break;
        if (wait_client(c->fd, WAIT_STEP_MS) != 0) {
            s.broken = 1;
            break;
        }
    }
    return finish(&s, keep);
}

enum sim_streamed sim_stream_handle(const struct sim_conn *c, const struct sim_request *req,
                                    int keep, enum sim_cut cut, long seq,
                                    struct sim_response *resp)
{
    const char *account = sim_api_account(req, resp);
    struct sim_route r;

    sim_api_route(req, &r);
    if (account == NULL)
        return SIM_STREAM_ANSWER;
    if (r.op == SIM_OP_STREAM_RUNS)
        return stream_runs(c, req, &r, account, keep, cut, seq, resp);
    if (r.op == SIM_OP_STREAM_EVENTS)
        return stream_events(c, req, &r, account, keep, cut, seq, resp);
    sim_response_error(resp, 404, "Not Found");
    return SIM_STREAM_ANSWER;
}
