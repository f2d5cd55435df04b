/* The administration API over HTTP (tg_admin_http.c), on the operations of tg_admin.h. */
#ifndef TG_ADMIN_HTTP_H
#define TG_ADMIN_HTTP_H

#include "tg_http.h"

/* /v1/admin/...: the rows of tg_router.c's table that administer teams, keys, presets and
 * tokens, each for an admin token (the router checks it and puts it in req->auth; the
 * path's {team}, {preset} or {id} in req->cap). Each always leaves an answer in resp.
 *   GET    /v1/admin/teams                          {"data":[team rows]}
 *   POST   /v1/admin/teams           {"name","key"}  201 the team's row
 *   PUT    /v1/admin/teams/{team}/key      {"key"}  the team's row (a new fingerprint)
 *   GET    /v1/admin/teams/{team}/presets           {"data":[{"name","updated_at"}]}
 *   GET    /v1/admin/teams/{team}/presets/{name}    {"team","name","preset"}
 *   PUT    /v1/admin/teams/{team}/presets/{name}    (the preset)  {"team","name","preset"}
 *   GET    /v1/admin/tokens[?team=T]                {"data":[token rows]}
 *   POST   /v1/admin/tokens  {"team","role","label","expires"}  201 with "token", once
 *   DELETE /v1/admin/tokens/{id}                    the token's row, revoked
 * No token: 401; a token of another role: 403 (the upstream's error shape); a refused
 * argument: 422 {"detail":[{"loc":["body"|"path"|"query", …],"msg","type"}]}. Keys and
 * tokens are never in an answer after the one that issues a token; MCP server header
 * values of presets are shown as fingerprints. */
void tg_admin_http_teams(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);
void tg_admin_http_team_add(struct tg_worker *w, struct tg_request *req,
                            struct tg_response *resp);
void tg_admin_http_team_key(struct tg_worker *w, struct tg_request *req,
                            struct tg_response *resp);
void tg_admin_http_presets(struct tg_worker *w, struct tg_request *req,
                           struct tg_response *resp);
void tg_admin_http_preset_show(struct tg_worker *w, struct tg_request *req,
                               struct tg_response *resp);
void tg_admin_http_preset_set(struct tg_worker *w, struct tg_request *req,
                              struct tg_response *resp);
void tg_admin_http_tokens(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);
void tg_admin_http_token_issue(struct tg_worker *w, struct tg_request *req,
                               struct tg_response *resp);
void tg_admin_http_token_revoke(struct tg_worker *w, struct tg_request *req,
                                struct tg_response *resp);

#endif
