/* HTML answers for browsers: when a client prefers text/html, the JSON answer a handler
 * produced is rendered as a small, escaped page instead. */
#ifndef TG_HTML_H
#define TG_HTML_H

#include "tg_http.h"

/* Whether an Accept header (may be NULL) prefers text/html over application/json. */
int tg_html_preferred(const char *accept);

/* Appends s to b with &, <, >, " and ' escaped. */
int tg_html_escape(struct tg_buf *b, const char *s);

/* Replaces resp's JSON body (a submission answer, a 422 detail or an error) with an HTML
 * page saying the same, with the same status. */
void tg_html_render(const struct tg_request *req, struct tg_response *resp);

#endif
