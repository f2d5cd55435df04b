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

/* GET of any of the upstream's read paths, for a submit token (req->auth): relayed as the
 * upstream answers, as it arrives through req->out, for the team's own groups and runs. */
void tg_sdk_api_read(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

#endif
