/* A submission in flight, shared by the pipeline's steps: what the request asked for, what
 * the upstream has accepted so far, and the record it is stored as. Both interfaces fill one
 * (tg_submit.c, tg_sdk_api.c); admission (core/tg_admit.c) reads its ask, forwarding
 * (core/tg_pipeline.c) its p. */
#ifndef TG_SUB_H
#define TG_SUB_H

#include <stddef.h>

#include <json-c/json.h>

#include "tg_core.h"
#include "tg_admit.h"
#include "tg_http.h"
#include "tg_pipeline.h"
#include "tg_store.h"
#include "tg_upstream.h"

struct tg_sub;

struct tg_failure;

/* What makes an interface an interface: the steps of the pipeline that differ between the
 * simplified /v1/runs (tg_submit.c) and the upstream-compatible add-runs and create-group
 * (tg_sdk_api.c). tg_submit_run calls them in this order, with the shared steps between:
 *   decode, [token, role], check, [admission], [create the group], build_chunk per chunk
 *   [sent, recorded], answer or answer_failed.
 * A step that answers itself (a 4xx with a rejected record, a database failure) returns
 * something other than TG_OK and the pipeline stops there. */
struct tg_sub_ops {
    const char *interface;  /* recorded as the submission's interface, and hashed for repeats */
    int keeps_answer;       /* the upstream's last answer is kept as it came (last_answer) */
    /* Before the token is checked (a browser form carries it as a field): reads the body
     * into s, its problems into s->detail to be answered once the team is known, and sets
     * *form_token (NULL: none). TG_OK or TG_ENOMEM (answered 500). NULL: nothing to do. */
    int (*decode)(struct tg_sub *s, const char **form_token);
    /* Once the token may add runs: every check of the interface, s->inputs and what the
     * chunks need. TG_OK, or the answer is in resp. */
    int (*check)(struct tg_sub *s);
    /* Builds one chunk's add-runs body from s->p (see tg_chunk_builder). */
    tg_chunk_builder build_chunk;
    /* Every call succeeded and the accepted state is written: answers. */
    void (*answer)(struct tg_sub *s);
    /* A call failed (*f) and the failed or unknown state is written: answers. */
    void (*answer_failed)(struct tg_sub *s, const struct tg_failure *f);
};

/* One submission in flight; lives on the handler's stack, its objects in the pool. What goes
 * upstream and what came back is p, the pipeline's (tg_pipeline.h); the rest is what the
 * HTTP side and admission need. */
struct tg_sub {
    struct tg_worker *w;
    struct tg_request *req;
    struct tg_response *resp;
    struct tg_auth auth;
    const struct tg_sub_ops *ops; /* the interface's steps */
    const char *interface;  /* ops->interface: "simplified" or "upstream-compatible" */
    json_object *body;      /* the client's JSON */
    json_object *detail;    /* problems found so far, answered as one 422 */
    const char *path_group; /* the group the request's path names (add-runs), or NULL */
    int from_form;          /* the body was a form post */
    int unsupported;        /* the body's type is none we decode */
    struct tg_admit_ask ask; /* what admission reads (core/tg_admit.h) */
    struct tg_pipe p;
};

/* Sets up s for a request: a fresh submission id and empty result lists. TG_OK, or the
 * answer (500) is in resp. */
int tg_sub_init(struct tg_sub *s, struct tg_worker *w, struct tg_request *req,
                struct tg_response *resp, const struct tg_sub_ops *ops);

/* The submission's record as tg_store writes it (strings borrowed from s). */
void tg_sub_record(struct tg_sub *s, struct tg_submission *rec);

/* The gateway's own defaults (conf's default_processor), the base of every merge; NULL when
 * out of memory. Pool-owned. */
json_object *tg_sub_global_defaults(struct tg_sub *s);

/* The stored form of the client's body: MCP server header values fingerprinted. */
const char *tg_sub_stored_request(struct tg_sub *s);

#endif
