/* HTML for browsers (contract in tg_html.h): the page frame, escaping and the error pages
 * every page shares (the pages themselves are tg_pages*.c). Every value is escaped; no
 * script or style is inline, so the Content-Security-Policy can forbid both. */
#include "tg_html.h"

#include <string.h>

#include "tg_json.h"

int tg_html_preferred(const char *accept)
{
    if (accept == NULL)
        return 0;
    double html = tg_http_accept_q(accept, "text/html");
    double json = tg_http_accept_q(accept, "application/json");
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
    int use = current != NULL && strcmp(current, "usage") == 0;
    tg_buf_clear(b);
    tg_buf_adds(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                   "<title>");
    tg_html_escape(b, title);
    tg_buf_adds(b, " · taskgate</title>\n<link rel=\"stylesheet\" href=\"/static/taskgate.css\">\n"
                   "<script src=\"/static/taskgate.js\" defer></script>\n</head>\n<body>\n"
                   "<header class=\"top\"><a class=\"brand\" href=\"/\">taskgate</a><nav>");
    tg_buf_printf(b, "<a href=\"/\"%s>Add runs</a><a href=\"/history\"%s>History</a>"
                     "<a href=\"/usage\"%s>Usage</a>",
                  sub ? " aria-current=\"page\"" : "", hist ? " aria-current=\"page\"" : "",
                  use ? " aria-current=\"page\"" : "");
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

const char *tg_html_error_title(int status)
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

const char *tg_html_error_advice(int status)
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
    tg_html_begin(b, tg_html_error_title(status), NULL);
    if (message != NULL) {
        tg_buf_adds(b, "<p class=\"notice error\">");
        tg_html_escape(b, message);
        tg_buf_adds(b, "</p>\n");
    }
    tg_buf_printf(b, "<p>%s</p>\n", tg_html_error_advice(status));
    tg_buf_adds(b, "<p class=\"actions\"><a class=\"button\" href=\"/\">Add runs</a> "
                   "<a href=\"/history\">Your team's history</a></p>\n");
    tg_html_end(b, req);
    tg_html_finish(req, resp, status);
}
