/* The submission pipeline shared by the simplified interface (tg_submit.c) and the
 * upstream-compatible paths (tg_compat.c): a submission, once authenticated and checked,
 * is recorded as pending, a group is created when none is named, its inputs go upstream in
 * chunks, and every call and run is recorded before the answer goes out. */
#ifndef TG_SUBMIT_H
#define TG_SUBMIT_H

#include <stddef.h>

#include <json-c/json.h>

#include "tg_core.h"
#include "tg_http.h"
#include "tg_store.h"
#include "tg_upstream.h"

struct tg_sub;

/* Appends the add-runs body for inputs [first, first+count) to b: TG_OK, TG_ETOOBIG or
 * TG_ENOMEM. */
typedef int (*tg_chunk_builder)(struct tg_sub *s, struct tg_buf *b, size_t first,
                                size_t count);

/* One submission in flight; lives on the handler's stack, its objects in the pool. */
struct tg_sub {
    struct tg_worker *w;
    struct tg_request *req;
    struct tg_response *resp;
    struct tg_auth auth;
    const char *interface;  /* "simplified" or "upstream-compatible" */
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
    tg_chunk_builder build_chunk; /* NULL: tg_merge_add_runs over tmpl */
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
    int keep_answer;        /* keep last_answer */
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
                struct tg_response *resp, const char *interface);

/* Refuses the submission before anything went upstream, with a 'rejected' record (the
 * team is known). A 422 with detail answers in the validation shape. */
void tg_sub_reject(struct tg_sub *s, int status, const char *message, json_object *detail);

/* Answers a database failure (rc): a 503 before the submission was begun, otherwise the
 * submission is settled as unknown where the database allows. */
void tg_sub_db_trouble(struct tg_sub *s, int rc);

/* Only submit tokens add runs (audit and admin tokens are for reading and managing): TG_OK,
 * or a 403 is answered and recorded as rejected. */
int tg_sub_check_role(struct tg_sub *s);

/* The one ownership check of a named group, for every interface: a group is the team's
 * when one of its own submissions created it (tg_store_group_owned), whoever holds the
 * Parallel key. TG_OK when s->taskgroup_id is NULL or the team's; otherwise the answer is
 * in resp: a 404 "no such task group for this team" with a rejected record (the group is
 * not named in the record's taskgroup_id: it is not the team's), or a database failure. */
int tg_sub_check_group(struct tg_sub *s);

/* Decides whether the submission goes upstream at all, after it passed every check and
 * before tg_sub_forward (both interfaces call it): a named group that is not the team's is
 * refused (tg_sub_check_group, unless the interface called it already); the client's
 * headers are checked (an Idempotency-Key sent must be usable, a parallel-beta sendable:
 * tg_validate_beta), else a 422 at ["header", name]; a repeat with the same Idempotency-Key
 * (or an SDK's retry of the same body by the same token) is answered from the record
 * (replay, 409 while in flight, 422 for another body), an unknown first attempt is
 * reconciled first, a failed or partly created one is resumed (only what is missing is
 * sent); then the team's limits (429) are checked and the submission is recorded as
 * pending, all in one transaction. TG_OK: call tg_sub_forward; otherwise the answer is in
 * resp. */
int tg_sub_admit(struct tg_sub *s);

/* Sends the submission tg_sub_admit recorded as pending (TG_EINVAL when it did not): a
 * group when s->taskgroup_id is NULL, then s->inputs in chunks (those of s->prior_runs
 * already created are taken over, not sent), each run tagged with s->run_tag, retrying a
 * call only while the upstream cannot have acted. A request the upstream client refuses to
 * send (a header value or path it cannot put on the wire) is a call recorded as not_sent and
 * a failed submission (502, nothing was sent: it may be sent again), never retried. TG_OK:
 * every call succeeded; TG_ERR: *f says what failed; other codes: the database failed
 * (answer with tg_sub_db_trouble). */
int tg_sub_forward(struct tg_sub *s, struct tg_failure *f);

/* Writes the final state (with the last call when one is waiting) and counts it in the
 * metrics. */
int tg_sub_finish(struct tg_sub *s, enum tg_state state, int http_status, const char *error);

/* The submission's record as tg_store writes it (strings borrowed from s). */
void tg_sub_record(struct tg_sub *s, struct tg_submission *rec);

/* The gateway's own defaults (conf's default_processor), the base of every merge; NULL when
 * out of memory. Pool-owned. */
json_object *tg_sub_global_defaults(struct tg_sub *s);

/* POST /v1/runs, the simplified interface's handler; always leaves an answer in resp. */
void tg_submit_runs(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

/* The stored form of the client's body: MCP server header values fingerprinted. */
const char *tg_sub_stored_request(struct tg_sub *s);

#endif
