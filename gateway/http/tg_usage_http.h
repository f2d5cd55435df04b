/* Estimated spend over HTTP (tg_usage_http.c): GET /v1/audit/usage (JSON, or CSV on
 * request; a submit token reads its own team's), GET and PUT /v1/admin/teams/{team}/budget
 * (admin tokens; each change in the admin log), and the 402 a submission gets when it would
 * take its team past a hard budget. */
#ifndef TG_USAGE_HTTP_H
#define TG_USAGE_HTTP_H

#include "tg_http.h"
#include "tg_store_usage.h"

void tg_usage_http_read(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);
void tg_usage_http_budget(struct tg_worker *w, struct tg_request *req,
                          struct tg_response *resp);
void tg_usage_http_budget_set(struct tg_worker *w, struct tg_request *req,
                              struct tg_response *resp);

/* The answer to a submission sub_id a hard budget refused (n->refused): 402 in the
 * upstream's error shape, error.detail naming the budget, its period and what remains
 * of it, and nothing about any other team. */
void tg_usage_http_refused(struct tg_request *req, struct tg_response *resp,
                           const char *sub_id, const struct tg_budget_note *n);

#endif
