/* The upstream's own task-group paths, served for the official SDKs (see tg_sdk_api.c):
 * the rows of tg_router.c's table that name them. Each expects the router's captures in
 * req->cap ({id}, then {run_id}) and req->route, the pattern it matched. */
#ifndef TG_SDK_API_H
#define TG_SDK_API_H

#include "tg_http.h"

/* POST {api}/tasks/groups: creates a group (recorded). Authenticates itself: the
 * submission pipeline records a refused token. */
void tg_sdk_api_create_group(struct tg_worker *w, struct tg_request *req,
                             struct tg_response *resp);

/* POST {api}/tasks/groups/{id}/runs: adds runs to a group of the team's (recorded). */
void tg_sdk_api_add_runs(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

/* GET of any of the upstream's read paths, for a submit token (req->auth), as nginx's
 * authorisation subrequest (req->authorize): 200 with X-Taskgate-Key (the team's key),
 * X-Taskgate-Path (what nginx reads upstream) and, for an event stream or an awaited
 * result, X-Taskgate-Long-Read (the team, which nginx's limit_conn counts). Without
 * req->authorize (an nginx site that is not `taskgate nginx-site`'s): 501. */
void tg_sdk_api_read(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

/* For an authorisation subrequest, after the router answered it: an answer that is not
 * tg_sdk_api_read's 200 becomes 403 (the one refusal auth_request passes on) with the
 * status, the answer and its Retry-After in X-Taskgate-Status, X-Taskgate-Answer and
 * X-Taskgate-Retry-After, which the site's @taskgate_refused sends to the client. */
void tg_sdk_api_authorized(struct tg_request *req, struct tg_response *resp);

#endif
