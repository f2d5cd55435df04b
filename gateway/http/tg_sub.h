/* A submission in flight, shared by the pipeline's steps: what the request asked for, what
 * the upstream has accepted so far, and the record it is stored as. Both interfaces fill one
 * (tg_submit.c, tg_compat.c); admission (tg_admit.c) and forwarding (tg_submit.c) read it. */
#ifndef TG_SUB_H
#define TG_SUB_H

#include <stddef.h>

#include <json-c/json.h>

#include "tg_core.h"
#include "tg_http.h"
#include "tg_store.h"
#include "tg_upstream.h"

struct tg_sub;

struct tg_failure;

/* What makes an interface an interface: the steps of the pipeline that differ between the
 * simplified /v1/runs (tg_submit.c) and the upstream-compatible add-runs and create-group
 * (tg_compat.c). tg_sub_run calls them in this order, with the shared steps between:
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
    /* Appends the add-runs body for inputs [first, first+count) to b, each run tagged with
     * s->run_tag: TG_OK, TG_ETOOBIG or TG_ENOMEM. */
    int (*build_chunk)(struct tg_sub *s, struct tg_buf *b, size_t first, size_t count);
    /* Every call succeeded: writes the final state (tg_sub_finish) and answers. */
    void (*answer)(struct tg_sub *s);
    /* A call failed (*f): writes the final state and answers. */
    void (*answer_failed)(struct tg_sub *s, const struct tg_failure *f);
};

/* One submission in flight; lives on the handler's stack, its objects in the pool. */
struct tg_sub {
    struct tg_worker *w;
    struct tg_request *req;
    struct tg_response *resp;
    struct tg_auth auth;
    const struct tg_sub_ops *ops; /* the interface's steps */
    const char *interface;  /* ops->interface: "simplified" or "upstream-compatible" */
    json_object *body;      /* the client's JSON */
    json_object *inputs;    /* what is sent, one element per run */
    json_object *tmpl;      /* the merged template */
    const char *processor;  /* every run's processor, unless run_procs says otherwise */
    const char **run_procs; /* per input (may be NULL) */
    const char *beta;       /* the parallel-beta header the features need */
    const char *taskgroup_id;
    int group_checked;      /* tg_sub_check_group found taskgroup_id to be the team's */
    const char *group_body; /* the create-group body; NULL: one naming team and submission */
    const char *api;        /* the upstream's path prefix: "/v1" (NULL) or "/v1beta" */
    const char *runs_query; /* appended to the add-runs path ("refresh_status=true"), or NULL */
    const char *path_group; /* the group the request's path names (add-runs), or NULL */
    json_object *spec;      /* the default_task_spec every chunk carries (upstream-compatible) */
    const char *run_tag;    /* metadata tag for every run of the next chunk (may be NULL):
                               TG_RUN_TAG_KEY = tg_run_tag(), set per upstream call */
    char id[40];
    char key[TG_UPSTREAM_KEY_MAX];
    int seq;                /* next upstream call's number */
    size_t accepted;        /* inputs the upstream has accepted so far */
    json_object *run_ids;   /* every accepted run id, in input order */
    json_object *calls;     /* per-call summaries for the answer */
    json_object *first_run_cursor;
    json_object *first_event_cursor;
    json_object *detail;    /* problems found so far, answered as one 422 */
    int from_form;          /* the body was a form post */
    int unsupported;        /* the body's type is none we decode */
    int last_upstream_status;
    /* The last upstream answer as it came (pool copies), for interfaces that pass it on. */
    const char *last_answer;
    size_t last_answer_len;
    struct tg_call call;    /* the last call, recorded but not yet committed */
    int staged;             /* whether call holds one */
    int begun;              /* recorded as pending: the upstream may be called */
    /* Repeats (tg_idem.c): the client's Idempotency-Key (header, else the idempotency_key
     * field), the canonical request's hash, and the earlier submission this one resumes
     * with, per input, the run it already created (NULL: still to send). */
    const char *idem_key;
    char request_hash[65];
    const char *resumes;
    const char **prior_runs;
};

/* Why an upstream call did not give us what we needed. */
struct tg_failure {
    enum tg_state state;    /* FAILED or UNKNOWN */
    int status;             /* the answer's HTTP status */
    int upstream_answered;  /* the upstream answered with an error status (last_answer) */
    char message[512];
    const char *retry_after;
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
