/* The browser pages: the submission form (GET / and /submit), the team's history
 * (/history), the one stylesheet and script they use, and the small JSON read the script
 * makes (the team's presets). Pages carry no inline script or style and work without
 * JavaScript; the token is never a cookie: a person types it (or the script fills it from
 * the browser's storage when they asked to be remembered) and it travels as a form field or
 * an Authorization header. */
#ifndef TG_PAGES_H
#define TG_PAGES_H

#include <stddef.h>

#include <json-c/json.h>

#include "tg_http.h"

/* The rows of tg_router.c's table for the pages. Each always leaves an answer in resp. */
/* GET / and /submit: the empty form. */
void tg_pages_form_page(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);
/* GET /static/...: a file of tg_static_files, or a 404. */
void tg_pages_static(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);
/* GET /ui/presets, for a token (req->auth) in a header (never a form field: a GET's query
 * would land in logs): {"team": ..., "presets": [{"name", "processor"?}, ...]}. */
void tg_pages_presets(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

/* Replaces resp's JSON answer to POST /v1/runs (a submission answer, a 422 detail or an
 * error) with an HTML page saying the same, with the same status: the result with every
 * run id next to its input; the form again with the person's values and each problem by
 * its field (401, 413, 415, 422); or what happened to a failed or unknown submission and
 * what to do. The request's body is decoded again for the values (tg_pages_answer.c). */
void tg_html_render(const struct tg_request *req, struct tg_response *resp);

/* What the submission form shows. Everything is borrowed for the call. */
struct tg_form_view {
    json_object *values;        /* the submission as decoded (tg_form_decode); NULL: empty */
    json_object *detail;        /* problems in the 422 shape, shown by their fields; NULL */
    const char *token_error;    /* a problem with the token, shown by its field; NULL */
    const char *general_error;  /* a problem with the whole post, shown on top; NULL */
    int keep_token;             /* put values.token back into the token field */
};

/* Appends the form (and, when there are problems, a summary linking to each field) to b,
 * which holds a page started by tg_html_begin. */
void tg_pages_form(struct tg_buf *b, const struct tg_form_view *v);

/* The history pages (tg_pages_history.c): GET /history and /history/{id} (a token form
 * the script may fill and send), POST /history (the list: fields token, state, cursor) and
 * POST /history/{id} (one submission with its calls and runs; {id} in req->cap[0]). The
 * token comes from the form, so it checks the token itself. Always answers. */
void tg_pages_history(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

/* The usage page (tg_usage_page.c): GET /usage (a token form) and POST /usage (this month's
 * estimated spend against the team's budget, with a chart of spend per day). The token
 * comes from the form, so it checks the token itself. Always answers. */
void tg_usage_page(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

/* A file served under /static/, embedded at build time (cmake/embed_static.cmake). */
struct tg_static_file {
    const char *path;           /* "/static/taskgate.css" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
};
/* Ends with an entry whose path is NULL. */
extern const struct tg_static_file tg_static_files[];

#endif
