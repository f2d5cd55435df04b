/* The page a browser gets back from a form post of POST /v1/runs (see tg_pages.h): the
 * result, the form again with its problems, or what became of a submission that failed. */
#include <string.h>

#include "tg_form.h"
#include "tg_html.h"
#include "tg_json.h"
#include "tg_pages.h"

/* Longest input text shown in a table cell, in characters. */
#define CELL_MAX 200

/* ---- the answer to a form post ------------------------------------------------------------- */

static void fact(struct tg_buf *b, const char *name, json_object *value, int code)
{
    tg_buf_adds(b, "<tr><th scope=\"row\">");
    tg_html_escape(b, name);
    tg_buf_adds(b, "</th><td>");
    if (value == NULL) {
        tg_buf_adds(b, "<span class=\"muted\">none</span>");
    } else {
        tg_buf_adds(b, code ? "<code>" : "");
        tg_html_escape_json(b, value, 0);
        tg_buf_adds(b, code ? "</code>" : "");
    }
    tg_buf_adds(b, "</td></tr>\n");
}

/* The submission's facts, its calls with their cursors, and its runs next to their inputs. */
static void render_outcome(struct tg_buf *b, json_object *ans, json_object *inputs)
{
    json_object *ids = tg_json_get(ans, "run_ids");
    json_object *calls = tg_json_get(ans, "calls");
    const char *sub = tg_json_get_str(ans, "submission_id");
    size_t n = json_object_is_type(ids, json_type_array) ? json_object_array_length(ids) : 0;
    json_object *state = tg_json_get(ans, "status") ? tg_json_get(ans, "status")
                                                    : tg_json_get(ans, "state");
    tg_buf_adds(b, "<table class=\"facts\">\n");
    fact(b, "Submission", tg_json_get(ans, "submission_id"), 1);
    fact(b, "Task group", tg_json_get(ans, "taskgroup_id"), 1);
    fact(b, "State", state, 0);
    if (tg_json_get(ans, "num_inputs") != NULL)
        tg_buf_printf(b, "<tr><th scope=\"row\">Inputs accepted</th><td>%s of %s</td></tr>\n",
                      tg_json_str(tg_json_get(ans, "accepted_inputs"), NULL),
                      tg_json_str(tg_json_get(ans, "num_inputs"), NULL));
    fact(b, "Run cursor", tg_json_get(ans, "run_cursor"), 1);
    fact(b, "Event cursor", tg_json_get(ans, "event_cursor"), 1);
    tg_buf_adds(b, "</table>\n");
    if (sub != NULL) {
        tg_buf_adds(b, "<p class=\"actions\"><a class=\"button\" href=\"/history/");
        tg_html_escape(b, sub);
        tg_buf_adds(b, "\">Open this submission's page</a> <a href=\"/\">Add more runs</a></p>\n");
    }
    if (n > 0) {
        tg_buf_printf(b, "<h2>%zu run%s</h2>\n<div class=\"scroll\"><table class=\"runs\" "
                         "id=\"runs\"><thead><tr><th>#</th><th>Input</th><th>Run id</th></tr>"
                         "</thead><tbody>\n", n, n == 1 ? "" : "s");
        for (size_t i = 0; i < n; i++) {
            tg_buf_printf(b, "<tr><td>%zu</td><td class=\"input\">", i + 1);
            if (json_object_is_type(inputs, json_type_array) &&
                i < json_object_array_length(inputs))
                tg_html_escape_json(b, json_object_array_get_idx(inputs, i), CELL_MAX);
            tg_buf_adds(b, "</td><td><code class=\"run-id\">");
            tg_html_escape_json(b, json_object_array_get_idx(ids, i), 0);
            tg_buf_adds(b, "</code></td></tr>\n");
        }
        tg_buf_adds(b, "</tbody></table></div>\n");
    }
    size_t nc = json_object_is_type(calls, json_type_array) ? json_object_array_length(calls) : 0;
    if (nc == 0)
        return;
    tg_buf_adds(b, "<h2>Upstream calls</h2>\n<div class=\"scroll\"><table class=\"calls\"><thead>"
                   "<tr><th>Inputs</th><th>Status</th><th>Run cursor</th><th>Event cursor</th>"
                   "</tr></thead><tbody>\n");
    for (size_t i = 0; i < nc; i++) {
        json_object *c = json_object_array_get_idx(calls, i);
        int64_t first = json_object_get_int64(tg_json_get(c, "first_input"));
        int64_t count = json_object_get_int64(tg_json_get(c, "num_inputs"));
        tg_buf_printf(b, "<tr><td>%lld–%lld</td><td>", (long long)first + 1,
                      (long long)(first + count));
        tg_html_escape_json(b, tg_json_get(c, "http_status"), 0);
        tg_buf_adds(b, "</td><td><code>");
        tg_html_escape_json(b, tg_json_get(c, "run_cursor"), 0);
        tg_buf_adds(b, "</code></td><td><code>");
        tg_html_escape_json(b, tg_json_get(c, "event_cursor"), 0);
        tg_buf_adds(b, "</code></td></tr>\n");
    }
    tg_buf_adds(b, "</tbody></table></div>\n");
}

/* The submission as the person sent it, for showing their values again; NULL when the
 * body cannot be read. Owned by the pool. */
static json_object *sent_values(const struct tg_request *req)
{
    json_object *v = NULL;
    char err[128];
    if (tg_form_is_form(req->content_type)) {
        json_object *ignored = json_object_new_array();
        if (ignored != NULL && tg_form_decode(req->content_type, req->body, req->body_len, &v,
                                              ignored, err, sizeof(err)) != TG_OK)
            v = NULL;
        json_object_put(ignored);
    } else if (req->body != NULL) {
        v = tg_json_parse(req->body, req->body_len, TG_JSON_MAX_DEPTH, err, sizeof(err));
    }
    if (!json_object_is_type(v, json_type_object)) {
        json_object_put(v);
        return NULL;
    }
    return tg_json_pool(req->pool, v);
}

static void render_form_again(const struct tg_request *req, struct tg_response *resp,
                              json_object *ans, json_object *values)
{
    struct tg_form_view v = {values, NULL, NULL, NULL, 0};
    json_object *detail = tg_json_get(ans, "detail");
    const char *message = tg_json_get_str(tg_json_get(ans, "error"), "message");
    int status = resp->status;
    const char *title = "The submission has problems";
    if (status == 422 && json_object_is_type(detail, json_type_array)) {
        v.detail = detail;
        v.keep_token = 1; /* the token was good: the person need not type it again */
    } else if (status == 401) {
        title = "Your team token was not accepted";
        v.token_error = message != NULL && strstr(message, "missing") != NULL
                            ? "Enter your team token."
                            : "This token is not valid: it is unknown, revoked or expired.";
    } else {
        title = status == 413 ? "That is too much at once" : "The form could not be read";
        v.general_error = message != NULL ? message : "the form could not be read";
    }
    struct tg_buf *b = &resp->body;
    tg_html_begin(b, title, "submit");
    tg_pages_form(b, &v);
    tg_html_end(b, req);
}

static void render_failure(const struct tg_request *req, struct tg_response *resp,
                           json_object *ans, json_object *values)
{
    json_object *error = tg_json_get(ans, "error");
    json_object *detail = tg_json_get(error, "detail");
    const char *state = tg_json_get_str(detail, "state");
    int status = resp->status;
    const char *title = tg_html_error_title(status);
    if (state != NULL && strcmp(state, "unknown") == 0)
        title = "Outcome unknown: do not resubmit yet";
    else if (state != NULL && strcmp(state, "failed") == 0 && status != 429)
        title = "The upstream refused the submission";
    struct tg_buf *b = &resp->body;
    tg_html_begin(b, title, "submit");
    tg_buf_adds(b, "<p class=\"notice error\">");
    tg_html_escape(b, tg_json_get_str(error, "message") ? tg_json_get_str(error, "message")
                                                        : "something went wrong");
    tg_buf_adds(b, "</p>\n<p>");
    if (state != NULL && strcmp(state, "unknown") == 0)
        tg_buf_adds(b, tg_html_error_advice(status == 500 ? 500 : 504));
    else if (state != NULL && strcmp(state, "failed") == 0 && status != 429 && status != 402 &&
             status != 403)
        tg_buf_adds(b, tg_html_error_advice(502));
    else
        tg_buf_adds(b, tg_html_error_advice(status));
    tg_buf_adds(b, "</p>\n");
    if (tg_json_get_str(detail, "submission_id") != NULL)
        render_outcome(b, detail, tg_json_get(values, "inputs"));
    else
        tg_buf_adds(b, "<p class=\"actions\"><a class=\"button\" href=\"/\">Back to the form"
                       "</a></p>\n");
    tg_html_end(b, req);
}

void tg_html_render(const struct tg_request *req, struct tg_response *resp)
{
    char err[64];
    json_object *ans = tg_json_pool(req->pool, tg_json_parse(tg_buf_str(&resp->body),
                                                             resp->body.len, TG_JSON_MAX_DEPTH,
                                                             err, sizeof(err)));
    json_object *values = sent_values(req);
    int status = resp->status;
    if (status == 200) {
        struct tg_buf *b = &resp->body;
        tg_html_begin(b, "Runs added", "submit");
        render_outcome(b, ans, tg_json_get(values, "inputs"));
        tg_html_end(b, req);
    } else if (status == 401 || status == 413 || status == 415 || status == 422 ||
               (status == 400 && tg_json_get_str(tg_json_get(tg_json_get(ans, "error"), "detail"),
                                                 "submission_id") == NULL)) {
        render_form_again(req, resp, ans, values);
    } else {
        render_failure(req, resp, ans, values);
    }
    tg_html_finish(req, resp, status);
}
