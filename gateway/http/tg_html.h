/* HTML for browsers: the page frame every page shares (one stylesheet, one script, a strict
 * Content-Security-Policy), escaping and the error pages. The pages are tg_pages.h. */
#ifndef TG_HTML_H
#define TG_HTML_H

#include <json-c/json.h>

#include "tg_http.h"

/* Whether an Accept header (may be NULL) prefers text/html over application/json. */
int tg_html_preferred(const char *accept);

/* Appends s to b with &, <, >, " and ' escaped. s may be NULL (nothing is appended). */
int tg_html_escape(struct tg_buf *b, const char *s);

/* As tg_html_escape, but at most max_chars characters (UTF-8 aware), then "…". */
int tg_html_escape_max(struct tg_buf *b, const char *s, size_t max_chars);

/* Appends a JSON value as text: a string as itself, anything else as compact JSON, NULL as
 * the empty string; escaped, at most max_chars characters (0: no limit). */
int tg_html_escape_json(struct tg_buf *b, json_object *v, size_t max_chars);

/* Starts a page in b (cleared first): doctype, head with title, the stylesheet and script,
 * the header with navigation ("submit" or "history" marks the current page; NULL: none),
 * then <main> and an <h1> holding title. */
void tg_html_begin(struct tg_buf *b, const char *title, const char *current);

/* Ends a page started by tg_html_begin: the footer with the request id (for support). */
void tg_html_end(struct tg_buf *b, const struct tg_request *req);

/* Marks resp as an HTML page with the given status (its body already written) and adds
 * the safety headers: Content-Security-Policy (no inline script or style, forms to this
 * origin only, no framing), nosniff and no referrer. (Every answer without its own
 * Cache-Control is sent with no-store: pages may show a team's records.) A body that overflowed becomes a short 500 page. */
void tg_html_finish(const struct tg_request *req, struct tg_response *resp, int status);

/* A friendly title for an error status, and what to do about it (HTML, links included);
 * static storage. */
const char *tg_html_error_title(int status);
const char *tg_html_error_advice(int status);

/* Renders a short page for an error status: a friendly title, message (escaped; NULL: a
 * default for the status) and what to do, with links back to the form and the history. */
void tg_html_error_page(const struct tg_request *req, struct tg_response *resp, int status,
                        const char *message);

#endif
