/* The submission pipeline's HTTP-free half (tg_pipeline.c): a submission admitted as pending
 * goes upstream — a group created when none is named, its inputs sent in chunks, each call
 * sent again only while the upstream cannot have acted — and every call and run is recorded
 * before the answer goes out. The interfaces (http/tg_submit.c, http/tg_sdk_api.c) fill a
 * tg_pipe, call tg_pipeline_forward and answer from it. */
#ifndef TG_PIPELINE_H
#define TG_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "tg_core.h"
#include "tg_store.h"
#include "tg_upstream.h"

struct tg_conf;
struct tg_pipe;

/* Appends the add-runs body for inputs [first, first+count) of p->inputs to b, each run
 * tagged with p->run_tag: TG_OK, TG_ETOOBIG or TG_ENOMEM. One per interface. */
typedef int (*tg_chunk_builder)(const struct tg_pipe *p, struct tg_buf *b, size_t first,
                                size_t count);

/* One submission on its way upstream; lives inside the interface's submission, its objects
 * in pool. Strings are pool-owned or borrowed from the request, which outlives it. */
struct tg_pipe {
    /* The context, set by the interface. */
    struct tg_store *store;
    struct tg_upstream *up;
    const struct tg_conf *conf;
    struct tg_pool *pool;
    const char *request_id;
    const char *team;       /* the team's name (metrics, the group's metadata) */
    tg_chunk_builder build_chunk;
    int keeps_answer;       /* keep the upstream's last answer as it came (last_answer) */
    /* What is sent. */
    json_object *inputs;    /* one element per run */
    json_object *tmpl;      /* the merged template every input gets (simplified) */
    json_object *spec;      /* the default_task_spec every chunk carries (upstream-compatible) */
    const char *processor;  /* every run's processor, unless run_procs says otherwise */
    const char **run_procs; /* per input (may be NULL) */
    const char *beta;       /* the parallel-beta header the features need */
    const char *taskgroup_id;
    const char *group_body; /* the create-group body; NULL: one naming team and submission */
    const char *api;        /* the upstream's path prefix: "/v1" (NULL) or "/v1beta" */
    const char *runs_query; /* appended to the add-runs path ("refresh_status=true"), or NULL */
    const char *run_tag;    /* metadata tag for every run of the next chunk (may be NULL):
                               TG_RUN_TAG_KEY = tg_run_tag(), set per upstream call */
    const char *resumes;    /* the earlier submission this one resumes, and per input the */
    const char **prior_runs;/* run it already created (NULL: still to send) */
    char id[40];
    char key[TG_UPSTREAM_KEY_MAX]; /* the team's upstream key; wiped after forwarding */
    int begun;              /* recorded as pending (admission): the upstream may be called */
    /* What came back. */
    int seq;                /* next upstream call's number */
    size_t accepted;        /* inputs the upstream has accepted so far */
    json_object *run_ids;   /* every accepted run id, in input order */
    json_object *calls;     /* per-call summaries for the answer */
    json_object *first_run_cursor;
    json_object *first_event_cursor;
    int last_upstream_status;
    const char *last_answer; /* the last upstream answer as it came (keeps_answer) */
    size_t last_answer_len;
    int64_t upstream_us;    /* time spent in upstream calls */
    struct tg_call call;    /* the last call, recorded but not yet committed */
    int staged;             /* whether call holds one */
};

/* Why an upstream call did not give us what we needed. */
struct tg_failure {
    enum tg_state state;    /* FAILED or UNKNOWN */
    int status;             /* the answer's HTTP status */
    int upstream_answered;  /* the upstream answered with an error status (last_answer) */
    char message[512];
    const char *retry_after;
};

/* Sends the submission admission recorded as pending (TG_EINVAL when it did not): a group
 * when p->taskgroup_id is NULL, then p->inputs in chunks (those of p->prior_runs already
 * created are taken over, not sent), each run tagged with p->run_tag, retrying a call only
 * while the upstream cannot have acted. A request the upstream client refuses to send (a
 * header value or path it cannot put on the wire) is a call recorded as not_sent and a
 * failed submission (502, nothing was sent: it may be sent again), never retried. TG_OK:
 * every call succeeded; TG_ERR: *f says what failed; other codes: the database failed.
 * p->key is wiped on return. */
int tg_pipeline_forward(struct tg_pipe *p, struct tg_failure *f);

/* Writes the final state (with the last call when one is waiting) and counts it in the
 * metrics. */
int tg_pipeline_finish(struct tg_pipe *p, enum tg_state state, int http_status,
                       const char *error);

/* How many inputs p->inputs holds (0 when it is not a list). */
size_t tg_pipeline_inputs(const struct tg_pipe *p);

#endif
