/* HTML answers for browsers (see tg_html.h): a page per answer kind, every value escaped,
 * no script, a strict Content-Security-Policy. */
#include "tg_html.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tg_json.h"

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

int tg_html_escape(struct tg_buf *b, const char *s)
{
    int rc = TG_OK;
    for (const char *p = s; *p != '\0' && rc == TG_OK; p++) {
        switch (*p) {
        case '&': rc = tg_buf_adds(b, "&amp;"); break;
        case '<': rc = tg_buf_adds(b, "&lt;"); break;
        case '>': rc = tg_buf_adds(b, "&gt;"); break;
        case '"': rc = tg_buf_adds(b, "&quot;"); break;
        case '\'': rc = tg_buf_adds(b, "&#39;"); break;
        default: rc = tg_buf_add(b, p, 1); break;
        }
    }
    return rc;
}

static void page_start(struct tg_buf *b, const char *title)
{
    tg_buf_adds(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                   "<title>");
    tg_html_escape(b, title);
    tg_buf_adds(b, " · taskgate</title><link rel=\"stylesheet\" href=\"/static/taskgate.css\">"
                   "</head><body><main><h1>");
    tg_html_escape(b, title);
    tg_buf_adds(b, "</h1>\n");
}

static void row(struct tg_buf *b, const char *name, json_object *value)
{
    tg_buf_adds(b, "<tr><th>");
    tg_html_escape(b, name);
    tg_buf_adds(b, "</th><td><code>");
    tg_html_escape(b, value == NULL ? "—"
                   : json_object_is_type(value, json_type_string) ? json_object_get_string(value)
                                                                  : tg_json_str(value, NULL));
    tg_buf_adds(b, "</code></td></tr>\n");
}

static void render_runs(struct tg_buf *b, json_object *ans)
{
    json_object *ids = tg_json_get(ans, "run_ids");
    size_t n = json_object_is_type(ids, json_type_array) ? json_object_array_length(ids) : 0;
    tg_buf_adds(b, "<table class=\"facts\">\n");
    row(b, "Submission", tg_json_get(ans, "submission_id"));
    row(b, "Task group", tg_json_get(ans, "taskgroup_id"));
    row(b, "State", tg_json_get(ans, "status") ? tg_json_get(ans, "status")
                                               : tg_json_get(ans, "state"));
    row(b, "Run cursor", tg_json_get(ans, "run_cursor"));
    row(b, "Event cursor", tg_json_get(ans, "event_cursor"));
    tg_buf_adds(b, "</table>\n");
    if (n == 0)
        return;
    tg_buf_printf(b, "<h2>%zu runs</h2>\n<table class=\"runs\"><tr><th>Input</th>"
                     "<th>Run id</th></tr>\n", n);
    for (size_t i = 0; i < n; i++) {
        tg_buf_printf(b, "<tr><td>%zu</td><td><code>", i + 1);
        tg_html_escape(b, json_object_get_string(json_object_array_get_idx(ids, i)));
        tg_buf_adds(b, "</code></td></tr>\n");
    }
    tg_buf_adds(b, "</table>\n");
}

static void render_problems(struct tg_buf *b, json_object *detail)
{
    tg_buf_adds(b, "<ul class=\"problems\">\n");
    for (size_t i = 0; i < json_object_array_length(detail); i++) {
        json_object *p = json_object_array_get_idx(detail, i);
        json_object *loc = tg_json_get(p, "loc");
        tg_buf_adds(b, "<li><code>");
        for (size_t j = 1; loc != NULL && j < json_object_array_length(loc); j++) {
            json_object *part = json_object_array_get_idx(loc, j);
            if (j > 1)
                tg_buf_adds(b, ".");
            tg_html_escape(b, json_object_is_type(part, json_type_string)
                                  ? json_object_get_string(part) : tg_json_str(part, NULL));
        }
        tg_buf_adds(b, "</code>: ");
        tg_html_escape(b, tg_json_get_str(p, "msg") ? tg_json_get_str(p, "msg") : "invalid");
        tg_buf_adds(b, "</li>\n");
    }
    tg_buf_adds(b, "</ul>\n");
}

void tg_html_render(const struct tg_request *req, struct tg_response *resp)
{
    char err[64];
    json_object *ans = tg_json_parse(tg_buf_str(&resp->body), resp->body.len,
                                     TG_JSON_MAX_DEPTH, err, sizeof(err));
    struct tg_buf b;
    tg_buf_init(&b, resp->body.max);
    json_object *error = tg_json_get(ans, "error");
    json_object *detail = tg_json_get(ans, "detail");
    if (resp->status == 200) {
        page_start(&b, "Runs added");
        render_runs(&b, ans);
    } else if (json_object_is_type(detail, json_type_array)) {
        page_start(&b, "The submission has problems");
        render_problems(&b, detail);
    } else {
        page_start(&b, tg_http_reason(resp->status));
        tg_buf_adds(&b, "<p class=\"error\">");
        tg_html_escape(&b, tg_json_get_str(error, "message") ? tg_json_get_str(error, "message")
                                                             : "something went wrong");
        tg_buf_adds(&b, "</p>\n");
        if (tg_json_get(tg_json_get(error, "detail"), "submission_id") != NULL)
            render_runs(&b, tg_json_get(error, "detail"));
    }
    tg_buf_adds(&b, "<p class=\"ref\">Reference: <code>");
    tg_html_escape(&b, req->request_id != NULL ? req->request_id : "");
    tg_buf_adds(&b, "</code> · <a href=\"/\">Submit more runs</a></p></main></body></html>\n");
    json_object_put(ans);

    tg_buf_free(&resp->body);
    resp->body = b;
    resp->content_type = "text/html; charset=utf-8";
    tg_resp_header(resp, "Content-Security-Policy",
                   "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                   "frame-ancestors 'none'; base-uri 'none'");
    tg_resp_header(resp, "X-Content-Type-Options", "nosniff");
}
