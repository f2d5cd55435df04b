/* The audit trail over HTTP (tg_audit_http.c), on the reads of tg_audit.h. */
#ifndef TG_AUDIT_HTTP_H
#define TG_AUDIT_HTTP_H

#include "tg_http.h"

/* GET (or HEAD) /v1/audit/...: the rows of tg_router.c's table that read the audit trail,
 * for any token (the router checks it and puts it in req->auth; the path's {id} in
 * req->cap). Each always leaves an answer in resp.
 *   admin            ?team&object&object_type&action&since&until&limit&cursor
 *                    {"data":[rows of audit_admin],"next_cursor":…}; audit and admin
 *                    tokens only (a submit token gets 403)
 *   submissions      ?team&state&interface&taskgroup_id&since&until&limit&cursor
 *                    {"data":[rows of audit_submissions],"next_cursor":"…"|null}
 *   submissions/{id} {"submission":{…,"request":{…}},"calls":[…],"runs":[…]}
 *   runs             ?team&taskgroup_id&since&until&limit&cursor   (as submissions)
 *   runs/{id}        {"run":{…},"submission":{…,"request":{…}}}
 *   groups/{id}      ?limit&cursor   {"taskgroup_id","submissions":[…] (first page only,
 *                    at most TG_AUDIT_GROUP_SUBS),"runs":[a page],"submissions_truncated",
 *                    "next_cursor"}
 *   summary          ?team&since&until   {"data":[rows of audit_summary]} (no pages: a
 *                    day a row; since and until pick the days they touch)
 * limit: 1..TG_AUDIT_LIMIT_MAX rows (default TG_AUDIT_LIMIT_DEFAULT); cursor: the previous
 * page's next_cursor (also sent as the X-Next-Cursor header). CSV (RFC 4180, header row
 * first) with ?format=csv or an Accept that ranks text/csv above application/json: a list's
 * rows, a one-object read's first row, a group's runs. Any token may read; a submit token
 * sees its own team only: another team's ids answer 404 exactly as unknown ids do, and a
 * team filter naming another team gives an empty list. A bad parameter or id is a 422 with
 * loc ["query", name] or ["path", name]. Every read with a valid token (answered, 404 or
 * 422) is logged in audit_reads after its answer is built; one that cannot be logged is
 * answered 503 instead. */
void tg_audit_http_submissions(struct tg_worker *w, struct tg_request *req,
                               struct tg_response *resp);
void tg_audit_http_submission(struct tg_worker *w, struct tg_request *req,
                              struct tg_response *resp);
void tg_audit_http_runs(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);
void tg_audit_http_run(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);
void tg_audit_http_group(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);
void tg_audit_http_summary(struct tg_worker *w, struct tg_request *req,
                           struct tg_response *resp);
void tg_audit_http_admin_log(struct tg_worker *w, struct tg_request *req,
                             struct tg_response *resp);

/* Logs a read the router refused with 403 (a submit token on the admin log): every read
 * with a valid token is logged. */
void tg_audit_http_refused(struct tg_worker *w, struct tg_request *req, struct tg_response *resp,
                           const struct tg_auth *auth);

#endif
