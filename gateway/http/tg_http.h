/* The plain request and response that handlers see. The FastCGI adapter (tg_fcgi.c) fills
 * a tg_request from libfcgi and writes a tg_response back; unit tests build them by hand. */
#ifndef TG_HTTP_H
#define TG_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "tg_core.h"
#include "tg_http_reason.h"

struct tg_conf;
struct tg_store;
struct tg_upstream;
struct json_object;
struct tg_request;
struct tg_response;
struct tg_auth;

#define TG_ROUTE_CAPS 4 /* the most captures a route pattern has */

/* Every string is NUL-terminated and lives in pool (or is static); NULL means absent. */
struct tg_request {
    struct tg_pool *pool;
    const char *method;
    const char *path;          /* decoded by nginx, without the query */
    const char *query;         /* raw, without '?'; "" when none */
    const char *content_type;
    const char *accept;
    const char *remote_addr;
    const char *request_id;    /* nginx's $request_id, or one we made */
    const char *authorization;
    const char *api_key;       /* x-api-key */
    const char *parallel_beta;
    const char *idempotency_key;
    const char *user_agent;
    const char *retry_count;   /* x-stainless-retry-count */
    const char *webhook_id;    /* a webhook's Standard Webhooks headers */
    const char *webhook_timestamp;
    const char *webhook_signature;
    const char *body;          /* NUL-terminated for convenience; may contain NULs */
    size_t body_len;
    int64_t started_us;        /* tg_mono_us() when the request arrived */
    int authorize;             /* nginx's authorisation subrequest for a read it proxies
                                * (the TASKGATE_AUTHORIZE parameter) */
    /* Filled by the router (tg_router.c) before the handler runs: the path's segments that
     * the route's pattern captures ({id}, {team}...), in order, and the token's owner when
     * the route needs a token (NULL for a route that takes none). */
    const char *route;         /* the pattern matched ("/v1/tasks/groups/{id}") */
    const char *cap[TG_ROUTE_CAPS];
    int ncap;
    const struct tg_auth *auth;
};

#define TG_RESP_MAX_HEADERS 8

struct tg_response {
    int status;                /* 0 until a handler answers */
    const char *content_type;
    const char *header_name[TG_RESP_MAX_HEADERS];
    const char *header_value[TG_RESP_MAX_HEADERS];
    int nheaders;
    struct tg_buf body;        /* owned by the worker, cleared per request */
    void *idem;                /* tg_idem.c: the record to store this answer on, or NULL */
    int replayed;              /* the answer is a stored one, replayed as it was */
    /* Filled by handlers for the request's log line. */
    const char *team;
    const char *interface;
    const char *submission_id;
    int inputs;
    int runs;
    int64_t upstream_us;
};

/* What a worker thread owns: one database handle, one upstream client, one pool. Handlers
 * may use all of them for the duration of a request. */
struct tg_worker {
    const struct tg_conf *conf;
    struct tg_store *store;
    struct tg_upstream *up;
    struct tg_pool *pool;
    int id;
};

/* Adds a response header (both strings must outlive the response: static or pool).
 * Headers beyond TG_RESP_MAX_HEADERS are dropped with an assertion in debug builds. */
void tg_resp_header(struct tg_response *resp, const char *name, const char *value);

/* Answers with the upstream's error shape {"type":"error","error":{…}}; detail may be NULL
 * and is borrowed. The ref_id is the request id. */
void tg_resp_error(struct tg_response *resp, const struct tg_request *req, int status,
                   const char *message, struct json_object *detail);

/* Answers 422 with {"detail": detail} (the upstream's validation shape); detail borrowed. */
void tg_resp_validation(struct tg_response *resp, struct json_object *detail);

/* Answers status with a JSON body taken as is. */
void tg_resp_json(struct tg_response *resp, int status, const char *json, size_t len);

/* The weight (q, 0 to 1) an Accept header gives media type type (RFC 9110 12.5.1): from its
 * most specific range (type/subtype, else type/ *, else * / *), with the q parameter matched
 * case-insensitively and optional white space around ';' and '='. -1 when no range covers
 * it; accept may be NULL. */
double tg_http_accept_q(const char *accept, const char *type);
/* Whether an Accept header (NULL accepted) asks for CSV: text/csv above application/json. */
int tg_http_wants_csv(const char *accept);

/* Finds and checks the request's team token: the Authorization or x-api-key header, else
 * form_token (a browser form's field; may be NULL). TG_OK fills *auth; otherwise resp
 * holds the answer (401 for a missing, unknown, revoked or expired token; 503 when the
 * database cannot be read) and the caller returns. */
int tg_http_auth(struct tg_worker *w, const struct tg_request *req, struct tg_response *resp,
                 const char *form_token, struct tg_auth *auth);
/* As tg_http_auth, but the token may be answered from what the worker's store handle kept
 * (tg_store_auth_kept): the caller settles it with tg_store_auth_confirm before it
 * answers. */
int tg_http_auth_kept(struct tg_worker *w, const struct tg_request *req,
                      struct tg_response *resp, const char *form_token, struct tg_auth *auth);

/* The one log line for an answered request: id, method, path, status, team, interface,
 * submission, inputs, runs, upstream and total time. */
void tg_http_log_request(const struct tg_request *req, const struct tg_response *resp);

#endif
