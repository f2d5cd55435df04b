/* HTML for browsers (contract in tg_html.h): the page frame, escaping, and the pages that
 * answer a form post of POST /v1/runs: the result, the form again with its problems, or
 * what became of a submission that failed. Every value is escaped; no script or style is
 * inline, so the Content-Security-Policy can forbid both. */
#include "tg_html.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tg_form.h"
#include "tg_json.h"
#include "tg_pages.h"

/* Longest input text shown in a table cell, in characters. */
#define CELL_MAX 200

/* The q value Accept gives a media type (exact or via type/ * or * / *), or -1. */
static double accept_q(const char *accept, const char *type)
{
    double best = -1;
    int best_rank = -1;
    size_t slash = strcspn(type, "/");
    for (const char *p = accept; *p != '\0';) {
        size_t n = strcspn(p, ",");
        const char *item = p;
        while (n > 0 && (*item == ' ' || *item == '\t')) {
            item++;
            n--;
        }
        size_t tlen = strcspn(item, ";,");
        while (tlen > 0 && item[tlen - 1] == ' ')
            tlen--;
        int rank = -1;
        if (tlen == strlen(type) && strncasecmp(item, type, tlen) == 0)
            rank = 2;
        else if (tlen == slash + 2 && strncasecmp(item, type, slash + 1) == 0 &&
                 item[slash + 1] == '*')
            rank = 1;
        else if (tlen == 3 && strncmp(item, "*/*", 3) == 0)
            rank = 0;
        if (rank > best_rank) {
            double q = 1.0;
            const char *qp = strstr(item, ";q=");
            if (qp != NULL && qp < item + n)
                q = strtod(qp + 3, NULL);
            best = q;
            best_rank = rank;
        }
        p = item + n;
        if (*p == ',')
            p++;
    }
    return best;
}

int tg_html_preferred(const char *accept)
{
    if (accept == NULL)
        return 0;
    double html = accept_q(accept, "text/html");
    double json = accept_q(accept, "application/json");
    return html > 0 && html > json;
}

static int escape_n(struct tg_buf *b, const char *s, size_t n)
{
    int rc = TG_OK;
    for (size_t i = 0; i < n && rc == TG_OK; i++) {
        switch (s[i]) {
        case '&': rc = tg_buf_adds(b, "&amp;"); break;
        case '<': rc = tg_buf_adds(b, "&lt;"); break;
        case '>': rc = tg_buf_adds(b, "&gt;"); break;
        case '"': rc = tg_buf_adds(b, "&quot;"); break;
        case '\'': rc = tg_buf_adds(b, "&#39;"); break;
        default: rc = tg_buf_add(b, s + i, 1); break;
        }
    }
    return rc;
}

int tg_html_escape(struct tg_buf *b, const char *s)
{
    return s == NULL ? TG_OK : escape_n(b, s, strlen(s));
}

int tg_html_escape_max(struct tg_buf *b, const char *s, size_t max_chars)
{
    if (s == NULL)
        return TG_OK;
    size_t chars = 0, i = 0;
    for (; s[i] != '\0'; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == max_chars)
                break;
            chars++;
        }
    }
    int rc = escape_n(b, s, i);
    if (rc == TG_OK && s[i] != '\0')
        rc = tg_buf_adds(b, "…");
    return rc;
}

int tg_html_escape_json(struct tg_buf *b, json_object *v, size_t max_chars)
{
    if (v == NULL)
        return TG_OK;
    const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                             : tg_json_str(v, NULL);
    return max_chars == 0 ? tg_html_escape(b, s) : tg_html_escape_max(b, s, max_chars);
}

void tg_html_begin(struct tg_buf *b, const char *title, const char *current)
{
    int sub = current != NULL && strcmp(current, "submit") == 0;
    int hist = current != NULL && strcmp(current, "history") == 0;
    tg_buf_clear(b);
    tg_buf_adds(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                   "<title>");
    tg_html_escape(b, title);
    tg_buf_adds(b, " · taskgate</title>\n<link rel=\"stylesheet\" href=\"/static/taskgate.css\">\n"
                   "<script src=\"/static/taskgate.js\" defer></script>\n</head>\n<body>\n"
                   "<header class=\"top\"><a class=\"brand\" href=\"/\">taskgate</a><nav>");
    tg_buf_printf(b, "<a href=\"/\"%s>Add runs</a><a href=\"/history\"%s>History</a>",
                  sub ? " aria-current=\"page\"" : "", hist ? " aria-current=\"page\"" : "");
    tg_buf_adds(b, "</nav></header>\n<main>\n<h1>");
    tg_html_escape(b, title);
    tg_buf_adds(b, "</h1>\n");
}

void tg_html_end(struct tg_buf *b, const struct tg_request *req)
{
    tg_buf_adds(b, "</main>\n<footer>Reference <code>");
    tg_html_escape(b, req->request_id);
    tg_buf_adds(b, "</code>: quote it when you ask for help.</footer>\n</body></html>\n");
}

void tg_html_finish(const struct tg_request *req, struct tg_response *resp, int status)
{
    static const char overflow[] =
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Too large"
        "</title></head><body><h1>This page is too large to show</h1><p>Use the audit API "
        "(<code>/v1/audit/…</code>) or <code>taskgate audit</code> instead.</p></body></html>\n";
    (void)req;
    if (resp->body.len == 0 || resp->body.data == NULL) {
        tg_buf_clear(&resp->body);
        tg_buf_adds(&resp->body, overflow);
        status = 500;
    }
    resp->status = status;
    resp->content_type = "text/html; charset=utf-8";
    tg_resp_header(resp, "Content-Security-Policy",
                   "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                   "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                   "base-uri 'none'");
    tg_resp_header(resp, "X-Content-Type-Options", "nosniff");
    tg_resp_header(resp, "Referrer-Policy", "no-referrer");
}

/* ---- error pages ------------------------------------------------------------------------ */

static const char *error_title(int status)
{
    switch (status) {
    case 400: return "The request was not understood";
    case 401: return "Your team token was not accepted";
    case 402: return "The team's Parallel account needs attention";
    case 403: return "Not allowed";
    case 404: return "Page not found";
    case 405: return "That does not work here";
    case 409: return "The upstream reported a conflict";
    case 413: return "That is too much at once";
    case 415: return "The form was sent in a way the gateway does not read";
    case 422: return "The submission has problems";
    case 429: return "Too many requests: wait a little";
    case 500: return "Outcome unknown: do not resubmit yet";
    case 502: return "The upstream failed";
    case 503: return "Nothing was sent: try again later";
    case 504: return "No answer in time: outcome unknown";
    default: return "Something went wrong";
    }
}

static const char *error_advice(int status)
{
    switch (status) {
    case 401:
        return "Check the token you typed (it starts with <code>tg_</code>). Tokens can expire "
               "or be revoked: ask your team lead or the gateway's operator for a new one.";
    case 402:
        return "Nothing was created. Ask the gateway's operator to check the team's Parallel "
               "account (credits or billing).";
    case 403:
        return "Your token or the team's Parallel key may not be allowed to do this. Ask the "
               "gateway's operator.";
    case 404:
        return "Go to the form to add runs, or to your team's history.";
    case 413:
        return "Split the inputs into smaller files or fewer lines and send them as several "
               "submissions.";
    case 429:
        return "The upstream limits how fast runs can be added. Wait a minute, then submit "
               "again: nothing from the refused request was created.";
    case 500:
        return "The upstream may have created runs, but the gateway could not record them. "
               "Do not submit the same inputs again: ask the gateway's operator to reconcile "
               "this submission first, quoting the reference below.";
    case 502:
        return "The call that failed created nothing. Runs listed below were created by "
               "earlier calls; if there are none, it is safe to submit again later. If it "
               "keeps happening, tell the gateway's operator.";
    case 503:
        return "Nothing was sent upstream. Wait a moment and submit again.";
    case 504:
        return "The upstream may still have created the runs. Do not submit the same inputs "
               "again: open the submission's page in a few minutes, or ask the gateway's "
               "operator to reconcile it.";
    default:
        return "Go back to the form, check what you entered, and try again.";
    }
}

void tg_html_error_page(const struct tg_request *req, struct tg_response *resp, int status,
                        const char *message)
{
    struct tg_buf *b = &resp->body;
    tg_html_begin(b, error_title(status), NULL);
    if (message != NULL) {
        tg_buf_adds(b, "<p class=\"notice error\">");
        tg_html_escape(b, message);
        tg_buf_adds(b, "</p>\n");
    }
    tg_buf_printf(b, "<p>%s</p>\n", error_advice(status));
    tg_buf_adds(b, "<p class=\"actions\"><a class=\"button\" href=\"/\">Add runs</a> "
                   "<a href=\"/history\">Your team's history</a></p>\n");
    tg_html_end(b, req);
    tg_html_finish(req, resp, status);
}

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
    const char *title = error_title(status);
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
        tg_buf_adds(b, error_advice(status == 500 ? 500 : 504));
    else if (state != NULL && strcmp(state, "failed") == 0 && status != 429 && status != 402 &&
             status != 403)
        tg_buf_adds(b, error_advice(502));
    else
        tg_buf_adds(b, error_advice(status));
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
