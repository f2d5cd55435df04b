/* The team's history in the browser (see tg_pages.h): a token form, the list of recent
 * submissions and one submission with its upstream calls and runs. The token travels as a
 * form field of a POST (never in a URL, never a cookie); the rows come from the store's
 * audit reads, and every read is logged in audit_reads like any other audit read. */
#include <stdio.h>
#include <string.h>

#include "tg_audit.h"
#include "tg_html.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_pages.h"
#include "tg_query.h"
#include "tg_store.h"

#define PAGE_ROWS 50
#define FIELD_MAX 1024  /* the longest field value a history form sends */
#define CELL_MAX 160

/* The fields of a history form post. */
struct fields {
    char token[FIELD_MAX];
    char state[FIELD_MAX];
    char cursor[FIELD_MAX];
};

/* Reads the urlencoded body's token, state and cursor (others are ignored). */
static int read_fields(const struct tg_request *req, struct fields *f)
{
    memset(f, 0, sizeof(*f));
    const char *s = req->body != NULL ? req->body : "";
    size_t len = req->body_len;
    if (len > 3 * FIELD_MAX * 4)
        return TG_ETOOBIG;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && s[end] != '&')
            end++;
        size_t eq = i;
        while (eq < end && s[eq] != '=')
            eq++;
        char name[16];
        char *dst = NULL;
        if (tg_query_decode_form(s + i, eq - i, name, sizeof(name)) == TG_OK) {
            if (strcmp(name, "token") == 0)
                dst = f->token;
            else if (strcmp(name, "state") == 0)
                dst = f->state;
            else if (strcmp(name, "cursor") == 0)
                dst = f->cursor;
        }
        if (dst != NULL && eq < end && tg_query_decode_form(s + eq + 1, end - eq - 1, dst, FIELD_MAX) != TG_OK)
            return TG_EINVAL;
        i = end + 1;
    }
    return TG_OK;
}

static const char *col(const struct tg_audit_row *row, const char *name)
{
    for (int i = 0; i < row->ncols; i++)
        if (strcmp(row->names[i], name) == 0)
            return row->values[i];
    return NULL;
}

/* "2026-11-28 12:00:05" from a stored RFC 3339 time, escaped. */
static void when(struct tg_buf *b, const char *t)
{
    if (t == NULL || strlen(t) < 19) {
        tg_html_escape(b, t != NULL ? t : "—");
        return;
    }
    char s[20];
    memcpy(s, t, 19);
    s[10] = ' ';
    s[19] = '\0';
    tg_buf_adds(b, "<time datetime=\"");
    tg_html_escape(b, t);
    tg_buf_adds(b, "\">");
    tg_html_escape(b, s);
    tg_buf_adds(b, "</time>");
}

static void badge(struct tg_buf *b, const char *state)
{
    tg_buf_adds(b, "<span class=\"state state-");
    tg_html_escape(b, state != NULL ? state : "none");
    tg_buf_adds(b, "\">");
    tg_html_escape(b, state != NULL ? state : "—");
    tg_buf_adds(b, "</span>");
}

static void hidden(struct tg_buf *b, const char *name, const char *value)
{
    tg_buf_printf(b, "<input type=\"hidden\" name=\"%s\" value=\"", name);
    tg_html_escape(b, value);
    tg_buf_adds(b, "\">");
}

/* The token form: GET /history and /history/{id}, and a POST whose token failed. */
static void token_page(const struct tg_request *req, struct tg_response *resp, int status,
                       const char *problem)
{
    struct tg_buf *b = &resp->body;
    tg_html_begin(b, "Your team's history", "history");
    tg_buf_adds(b, "<p class=\"lead\">Enter your team token to see the submissions your team "
                   "made through this gateway.</p>\n");
    tg_buf_adds(b, "<form method=\"post\" class=\"token-form\" id=\"history-form\" action=\"");
    tg_html_escape(b, req->path);
    tg_buf_adds(b, "\">\n<div class=\"field\"><label for=\"f-token\">Team token</label>\n");
    if (problem != NULL) {
        tg_buf_adds(b, "<p class=\"field-error\" id=\"e-token\">");
        tg_html_escape(b, problem);
        tg_buf_adds(b, "</p>\n");
    }
    tg_buf_printf(b, "<input type=\"password\" id=\"f-token\" name=\"token\" autocomplete=\"off\" "
                     "spellcheck=\"false\"%s></div>\n",
                  problem != NULL ? " class=\"invalid\" aria-invalid=\"true\" "
                                    "aria-describedby=\"e-token\"" : "");
    if (strcmp(req->path, "/history") == 0)
        tg_buf_adds(b, "<div class=\"field\"><label for=\"f-state\">State</label>\n<select "
                       "id=\"f-state\" name=\"state\"><option value=\"\">any</option>"
                       "<option>accepted</option><option>rejected</option><option>failed"
                       "</option><option>unknown</option><option>pending</option></select>"
                       "</div>\n");
    tg_buf_adds(b, "<p class=\"actions\"><button type=\"submit\" class=\"button\">Show</button>"
                   "</p>\n</form>\n");
    tg_html_end(b, req);
    tg_html_finish(req, resp, status);
}

/* ---- the list ---------------------------------------------------------------------------- */

struct list_ctx {
    struct tg_buf *b;
    const char *token;
};

static int list_row(void *arg, const struct tg_audit_row *row)
{
    struct list_ctx *c = arg;
    struct tg_buf *b = c->b;
    const char *id = col(row, "submission_id");
    const char *label = col(row, "token_label");
    tg_buf_adds(b, "<tr><td>");
    when(b, col(row, "received_at"));
    tg_buf_adds(b, "</td><td>");
    tg_html_escape(b, label != NULL ? label : col(row, "token_id"));
    tg_buf_adds(b, "</td><td class=\"num\">");
    tg_html_escape(b, col(row, "num_inputs"));
    tg_buf_adds(b, "</td><td>");
    badge(b, col(row, "state"));
    tg_buf_adds(b, "</td><td><code>");
    tg_html_escape(b, col(row, "taskgroup_id") != NULL ? col(row, "taskgroup_id") : "—");
    tg_buf_adds(b, "</code></td><td><button class=\"link\" formaction=\"/history/");
    tg_html_escape(b, id);
    tg_buf_adds(b, "\"><code>");
    tg_html_escape(b, id);
    tg_buf_adds(b, "</code></button></td></tr>\n");
    /* Past the answer's bound the read stops: the router answers that it is too large. */
    return b->refused ? TG_ETOOBIG : 0;
}

/* Logs the read; TG_OK, or the page is replaced by a 503 (an unlogged read is unanswered). */
static int log_read(struct tg_worker *w, const struct tg_request *req,
                    struct tg_response *resp, const struct tg_auth *auth, const char *what,
                    long rows)
{
    char actor[64];
    snprintf(actor, sizeof(actor), "token:%s", auth->token_id);
    struct tg_actor who = {actor, auth->team, "http", req->remote_addr};
    const char *query = tg_pool_printf(req->pool, "POST %s %s", req->path, what);
    int rc = query != NULL ? tg_store_audit_read_log(w->store, &who, query, rows) : TG_ENOMEM;
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "history read not logged: %s (%s)", tg_rc_str(rc),
               tg_store_errmsg(w->store));
        tg_html_error_page(req, resp, 503, "This read could not be logged, so it is not "
                                           "shown. Try again later.");
    }
    return rc;
}

static void list_page(struct tg_worker *w, const struct tg_request *req,
                      struct tg_response *resp, const struct tg_auth *auth,
                      const struct fields *f)
{
    char err[200];
    struct tg_audit_read r;
    tg_audit_init(&r, TG_AUDIT_SUBMISSIONS);
    if ((f->state[0] != '\0' && tg_audit_set(&r, "state", f->state, PAGE_ROWS, err,
                                             sizeof(err)) != TG_OK) ||
        (f->cursor[0] != '\0' && tg_audit_set(&r, "cursor", f->cursor, PAGE_ROWS, err,
                                              sizeof(err)) != TG_OK)) {
        tg_html_error_page(req, resp, 422, err);
        return;
    }
    struct tg_audit_query q;
    memset(&q, 0, sizeof(q));
    q.scope_team = auth->role == TG_ROLE_SUBMIT ? auth->team : NULL;
    q.team = auth->team;
    q.state = r.state[0] != '\0' ? r.state : NULL;
    q.limit = PAGE_ROWS;
    q.after = r.after;
    struct tg_audit_page page;
    memset(&page, 0, sizeof(page));

    struct tg_buf *b = &resp->body;
    tg_html_begin(b, "Your team's history", "history");
    tg_buf_adds(b, "<p class=\"lead\">Submissions of team <strong>");
    tg_html_escape(b, auth->team);
    tg_buf_adds(b, "</strong>");
    if (q.state != NULL) {
        tg_buf_adds(b, " in state ");
        badge(b, q.state);
    }
    tg_buf_adds(b, ", newest first. Open one to see its runs and upstream calls.</p>\n"
                   "<form method=\"post\" action=\"/history\" id=\"history-list\">");
    hidden(b, "token", f->token);
    hidden(b, "state", r.state);
    tg_buf_adds(b, "\n<div class=\"scroll\"><table class=\"history\"><thead><tr><th>Received"
                   " (UTC)</th><th>Token</th><th>Inputs</th><th>State</th><th>Task group</th>"
                   "<th>Submission</th></tr></thead><tbody>\n");
    struct list_ctx c = {b, f->token};
    int rc = tg_store_audit_submissions(w->store, &q, list_row, &c, &page);
    if (rc == TG_ETOOBIG) { /* b->refused: the router answers */
        log_read(w, req, resp, auth, "list", -1);
        return;
    }
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "history read failed: %s (%s)", tg_rc_str(rc),
               tg_store_errmsg(w->store));
        if (log_read(w, req, resp, auth, "list", -1) == TG_OK)
            tg_html_error_page(req, resp, 503, "The audit database cannot be read right now.");
        return;
    }
    tg_buf_adds(b, "</tbody></table></div>\n");
    if (page.rows == 0)
        tg_buf_adds(b, "<p class=\"empty\">Nothing here yet. <a href=\"/\">Add runs</a> and "
                       "they will be listed.</p>\n");
    char next[TG_AUDIT_CURSOR_MAX];
    tg_audit_cursor(&r, &page, next, sizeof(next));
    if (next[0] != '\0') {
        tg_buf_adds(b, "<p class=\"actions\"><button class=\"button secondary\" name=\"cursor\" "
                       "value=\"");
        tg_html_escape(b, next);
        tg_buf_adds(b, "\">Older submissions</button></p>\n");
    }
    tg_buf_adds(b, "</form>\n");
    tg_html_end(b, req);
    if (log_read(w, req, resp, auth, q.state != NULL ? q.state : "list", page.rows) == TG_OK)
        tg_html_finish(req, resp, 200);
}

/* ---- one submission ------------------------------------------------------------------------ */

struct detail_ctx {
    struct tg_pool *pool;
    struct tg_buf *b;       /* the facts */
    struct tg_buf calls;
    struct tg_buf runs;
    json_object *inputs;    /* the stored request's inputs */
    char state[16];
    long ncalls, nruns;
};

static void fact(struct tg_buf *b, const char *name, const char *value, int code)
{
    tg_buf_adds(b, "<tr><th scope=\"row\">");
    tg_buf_adds(b, name);
    tg_buf_adds(b, "</th><td>");
    if (value == NULL)
        tg_buf_adds(b, "<span class=\"muted\">none</span>");
    tg_buf_adds(b, code && value != NULL ? "<code>" : "");
    tg_html_escape(b, value);
    tg_buf_adds(b, code && value != NULL ? "</code>" : "");
    tg_buf_adds(b, "</td></tr>\n");
}

/* What happened, in plain words, and what to do about it. */
static const char *state_advice(const char *state)
{
    if (strcmp(state, "accepted") == 0)
        return "Every upstream call succeeded: the runs below are all the runs this "
               "submission created.";
    if (strcmp(state, "rejected") == 0)
        return "The gateway refused this submission before sending anything upstream, so "
               "nothing was created. Fix the problem named in “Error” and submit again.";
    if (strcmp(state, "failed") == 0)
        return "The upstream answered with an error, so the failing call created no runs. "
               "Runs listed below, if any, came from earlier calls and are real. Fix the cause "
               "(see “Error”), then submit again only the inputs that have no run id here.";
    if (strcmp(state, "unknown") == 0)
        return "The gateway cannot know whether the upstream created these runs: it did not "
               "answer in time, the connection was lost, or the gateway stopped. Do not submit "
               "the same inputs again yet: ask the gateway's operator to reconcile this "
               "submission (taskgate audit unknown), quoting its id.";
    return "The submission is still being sent upstream. Reload this page in a moment.";
}

static void submission_row(struct detail_ctx *c, const struct tg_audit_row *row)
{
    struct tg_buf *b = c->b;
    const char *state = col(row, "state");
    snprintf(c->state, sizeof(c->state), "%s", state != NULL ? state : "pending");
    char err[64];
    const char *req = col(row, "request");
    json_object *r = req != NULL ? tg_json_pool(c->pool, tg_json_parse(req, strlen(req),
                                                                       TG_JSON_MAX_DEPTH, err,
                                                                       sizeof(err)))
                                 : NULL;
    c->inputs = tg_json_get(r, "inputs");
    tg_buf_printf(b, "<div class=\"notice state-box state-%s\"><p>", c->state);
    badge(b, c->state);
    tg_buf_printf(b, " %s</p></div>\n<table class=\"facts\">\n", state_advice(c->state));
    fact(b, "Submission", col(row, "submission_id"), 1);
    fact(b, "Team", col(row, "team"), 0);
    fact(b, "Token", col(row, "token_label") != NULL ? col(row, "token_label")
                                                     : col(row, "token_id"), 0);
    fact(b, "Received", col(row, "received_at"), 0);
    fact(b, "Completed", col(row, "completed_at"), 0);
    fact(b, "Interface", col(row, "interface"), 0);
    fact(b, "Task group", col(row, "taskgroup_id"), 1);
    fact(b, "Inputs", col(row, "num_inputs"), 0);
    fact(b, "Answer status", col(row, "http_status"), 0);
    fact(b, "Upstream status", col(row, "upstream_status"), 0);
    fact(b, "Error", col(row, "error"), 0);
    fact(b, "Request id", col(row, "request_id"), 1);
    tg_buf_adds(b, "</table>\n");
}

static void call_row(struct detail_ctx *c, const struct tg_audit_row *row)
{
    struct tg_buf *b = &c->calls;
    const char *first = col(row, "first_input");
    long f = 0, n = 0;
    c->ncalls++;
    tg_buf_adds(b, "<tr><td>");
    tg_html_escape(b, col(row, "seq"));
    tg_buf_adds(b, "</td><td>");
    tg_html_escape(b, col(row, "operation"));
    tg_buf_adds(b, "</td><td>");
    if (first != NULL && tg_parse_long(first, 0, 1000000000, &f) == TG_OK &&
        tg_parse_long(col(row, "num_inputs") ? col(row, "num_inputs") : "", 0, 1000000000,
                      &n) == TG_OK)
        tg_buf_printf(b, "%ld–%ld", f + 1, f + n);
    else
        tg_buf_adds(b, "—");
    tg_buf_adds(b, "</td><td>");
    when(b, col(row, "started_at"));
    tg_buf_adds(b, "</td><td class=\"num\">");
    tg_html_escape(b, col(row, "duration_ms"));
    tg_buf_adds(b, "</td><td>");
    tg_html_escape(b, col(row, "outcome"));
    tg_buf_adds(b, " ");
    tg_html_escape(b, col(row, "http_status"));
    tg_buf_adds(b, "</td><td><code>");
    tg_html_escape(b, col(row, "run_cursor"));
    tg_buf_adds(b, "</code></td><td><code>");
    tg_html_escape(b, col(row, "event_cursor"));
    tg_buf_adds(b, "</code></td><td>");
    tg_html_escape_max(b, col(row, "error"), CELL_MAX);
    tg_buf_adds(b, "</td></tr>\n");
}

static void run_row(struct detail_ctx *c, const struct tg_audit_row *row)
{
    struct tg_buf *b = &c->runs;
    long idx = -1;
    const char *i = col(row, "input_index");
    c->nruns++;
    if (i != NULL && tg_parse_long(i, 0, 1000000000, &idx) != TG_OK)
        idx = -1;
    tg_buf_printf(b, "<tr><td>%ld</td><td class=\"input\">", idx + 1);
    if (idx >= 0 && json_object_is_type(c->inputs, json_type_array) &&
        (size_t)idx < json_object_array_length(c->inputs))
        tg_html_escape_json(b, json_object_array_get_idx(c->inputs, (size_t)idx), CELL_MAX);
    tg_buf_adds(b, "</td><td><code class=\"run-id\">");
    tg_html_escape(b, col(row, "run_id"));
    tg_buf_adds(b, "</code></td><td>");
    tg_html_escape(b, col(row, "processor"));
    /* What came of it, as recorded (docs/run-outcomes.md): none yet shows as waiting. */
    const char *status = col(row, "status");
    tg_buf_adds(b, "</td><td class=\"run-status\">");
    badge(b, status != NULL ? status : "waiting");
    if (col(row, "error") != NULL) {
        tg_buf_adds(b, " <span class=\"run-error\">");
        tg_html_escape_max(b, col(row, "error"), CELL_MAX);
        tg_buf_adds(b, "</span>");
    }
    tg_buf_adds(b, "</td><td>");
    when(b, col(row, "completed_at"));
    tg_buf_adds(b, "</td></tr>\n");
}

static int detail_row(void *arg, const struct tg_audit_row *row)
{
    struct detail_ctx *c = arg;
    if (row->kind == TG_AUDIT_KIND_SUBMISSION)
        submission_row(c, row);
    else if (row->kind == TG_AUDIT_KIND_CALL)
        call_row(c, row);
    else
        run_row(c, row);
    /* The page is the facts and both tables: once they pass the answer's bound together,
     * the read stops and the page counts as refused (the router answers that it is too
     * large), so the three buffers hold little more than the bound between them. */
    if (c->b->refused || c->calls.refused || c->runs.refused ||
        c->b->len + c->calls.len + c->runs.len > c->b->max) {
        c->b->refused = 1;
        return TG_ETOOBIG;
    }
    return 0;
}

static void detail_page(struct tg_worker *w, const struct tg_request *req,
                        struct tg_response *resp, const struct tg_auth *auth,
                        const struct fields *f, const char *id)
{
    char err[200];
    struct tg_audit_read r;
    tg_audit_init(&r, TG_AUDIT_SUBMISSION);
    if (tg_audit_set_id(&r, id, err, sizeof(err)) != TG_OK) {
        tg_html_error_page(req, resp, 404, "That is not a submission id.");
        return;
    }
    struct tg_buf *b = &resp->body;
    tg_html_begin(b, "Submission", "history");
    struct detail_ctx c;
    memset(&c, 0, sizeof(c));
    c.pool = req->pool;
    c.b = b;
    tg_buf_init(&c.calls, b->max);
    tg_buf_init(&c.runs, b->max);
    long rows = 0;
    int rc = tg_store_audit_submission(w->store, auth->role == TG_ROLE_SUBMIT ? auth->team : NULL,
                                       r.id, detail_row, &c, &rows);
    if (rc == TG_OK) {
        if (c.ncalls > 0) {
            tg_buf_adds(b, "<h2>Upstream calls</h2>\n<div class=\"scroll\"><table class=\"calls\">"
                           "<thead><tr><th>#</th><th>Call</th><th>Inputs</th><th>Started (UTC)"
                           "</th><th>ms</th><th>Outcome</th><th>Run cursor</th><th>Event cursor"
                           "</th><th>Error</th></tr></thead><tbody>\n");
            tg_buf_add(b, c.calls.data, c.calls.len);
            tg_buf_adds(b, "</tbody></table></div>\n");
        }
        tg_buf_printf(b, "<h2>%ld run%s</h2>\n", c.nruns, c.nruns == 1 ? "" : "s");
        if (c.nruns > 0) {
            tg_buf_adds(b, "<div class=\"scroll\"><table class=\"runs\" id=\"runs\"><thead><tr>"
                           "<th>#</th><th>Input</th><th>Run id</th><th>Processor</th>"
                           "<th>Status</th><th>Ended (UTC)</th></tr></thead><tbody>\n");
            tg_buf_add(b, c.runs.data, c.runs.len);
            tg_buf_adds(b, "</tbody></table></div>\n");
        }
        tg_buf_adds(b, "<form method=\"post\" action=\"/history\" class=\"actions\">");
        hidden(b, "token", f->token);
        tg_buf_adds(b, "<button class=\"button secondary\">Back to the history</button> "
                       "<a href=\"/\">Add runs</a></form>\n");
        tg_html_end(b, req);
    }
    tg_buf_free(&c.calls);
    tg_buf_free(&c.runs);
    if (log_read(w, req, resp, auth, r.id, rc == TG_OK ? rows : -1) != TG_OK)
        return;
    if (rc == TG_ETOOBIG) {
        return; /* b->refused: the router answers */
    } else if (rc == TG_ENOTFOUND) {
        tg_html_error_page(req, resp, 404, "No submission with this id that your token can "
                                           "see. Check the id, or use your own team's token.");
    } else if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "history read failed: %s (%s)", tg_rc_str(rc),
               tg_store_errmsg(w->store));
        tg_html_error_page(req, resp, 503, "The audit database cannot be read right now.");
    } else {
        tg_html_finish(req, resp, 200);
    }
}

void tg_pages_history(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    const char *id = req->ncap > 0 ? req->cap[0] : NULL;
    if (strcmp(req->method, "POST") != 0) {
        token_page(req, resp, 200, NULL);
        return;
    }
    struct fields *f = tg_pool_calloc(req->pool, 1, sizeof(*f));
    if (f == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    int rc = read_fields(req, f);
    if (rc != TG_OK) {
        tg_html_error_page(req, resp, rc == TG_ETOOBIG ? 413 : 400, "The form could not be read.");
        return;
    }
    struct tg_auth auth;
    if (tg_http_auth(w, req, resp, f->token, &auth) != TG_OK) {
        if (resp->status == 401)
            token_page(req, resp, 401, f->token[0] == '\0'
                                           ? "Enter your team token."
                                           : "This token is not valid: it is unknown, revoked "
                                             "or expired.");
        else
            tg_html_error_page(req, resp, resp->status, "The database cannot be read right now.");
        return;
    }
    if (id == NULL)
        list_page(w, req, resp, &auth, f);
    else
        detail_page(w, req, resp, &auth, f, id);
}
