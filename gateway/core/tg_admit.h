/* Admission of a submission (tg_admit.c): whether it goes upstream at all. Each check
 * returns a verdict; it knows no HTTP type, writes no answer and calls nothing of the
 * interfaces that ask it, so that the HTTP side (http/tg_submit.c) alone turns a verdict
 * into a status. */
#ifndef TG_ADMIT_H
#define TG_ADMIT_H

#include <json-c/json.h>

#include "tg_store.h"
#include "tg_store_usage.h"
#include "tg_pipeline.h"

enum tg_admit_kind {
    TG_ADMIT_PASS,    /* recorded as pending (or, for a group check, the team's): go on */
    TG_ADMIT_REFUSED, /* refused before anything went upstream: status, message, detail and
                         retry_after say how; to be recorded as rejected */
    TG_ADMIT_LIMITED, /* a team limit refused it (limit); the store recorded it as rejected */
    TG_ADMIT_REPLAY,  /* a repeat, answered with the stored answer of earlier */
    TG_ADMIT_TROUBLE  /* the database or memory failed (rc) */
};

/* What admission reads of a submission: the interface fills it from its request before
 * each check; idem_key, group_checked and request_hash persist between the checks. Strings
 * are borrowed and outlive the admission. */
struct tg_admit_ask {
    struct tg_pipe *p;             /* what goes upstream: p->taskgroup_id, p->inputs, p->key */
    const struct tg_auth *auth;
    const char *interface;         /* "simplified" or "upstream-compatible" */
    const char *method;
    const char *path;
    const char *query;
    const char *idempotency_key;   /* the Idempotency-Key header, or NULL */
    const char *retry_count;       /* x-stainless-retry-count, or NULL */
    const char *parallel_beta;     /* the parallel-beta header, or NULL */
    json_object *body;             /* the client's body as it is hashed */
    struct tg_submission rec;      /* the submission's record (taskgroup_id and num_inputs are
                                      taken from p when it is written) */
    const char *idem_key;          /* the header, else the body's idempotency_key field */
    int group_checked;             /* tg_admit_group found p->taskgroup_id to be the team's */
    char request_hash[65];
};

/* Whether key is a usable idempotency key: 1 to 255 printable ASCII characters. */
int tg_admit_valid_key(const char *key);

/* What admission decided. Strings are static, pool-owned or held here. */
struct tg_verdict {
    enum tg_admit_kind kind;
    int rc;                    /* TG_OK for PASS; otherwise the code the check failed with */
    int status;                /* REFUSED: the HTTP status it stands for */
    char message[700];         /* REFUSED: what the client is told */
    json_object *detail;       /* REFUSED: the problems (422) or the error's detail; may be NULL */
    const char *retry_after;   /* REFUSED: a Retry-After in seconds, or NULL */
    struct tg_admit_refusal limit;    /* LIMITED */
    struct tg_budget_note budget;     /* LIMITED by a budget when budget.refused */
    struct tg_idem_rec earlier;       /* REPLAY */
    /* PASS: the idempotency record the answer is to be stored on (claim_key NULL: none). */
    enum tg_idem_kind claim_kind;
    const char *claim_key;
};

/* The one ownership check of a named group, for every interface: a group is the team's
 * when one of its own submissions created it (tg_store_group_owned), whoever holds the
 * Parallel key. PASS when s->p->taskgroup_id is NULL or the team's (checked once); REFUSED
 * 404 "no such task group for this team" with s->p->taskgroup_id cleared (it is not the
 * team's, so the record must not name it); TROUBLE when the database failed. */
enum tg_admit_kind tg_admit_group(struct tg_admit_ask *s, struct tg_verdict *v);

/* Decides whether a submission that passed its interface's checks and tg_admit_group goes
 * upstream: the client's headers are checked (an Idempotency-Key sent must be usable, a
 * parallel-beta sendable: tg_validate_beta), else REFUSED 422 at ["header", name]; a repeat
 * with the same Idempotency-Key (or an SDK's retry of the same body by the same token) is
 * decided from the record (REPLAY, REFUSED 409 while in flight, 422 for another body), an
 * unknown first attempt is reconciled first, a failed or partly created one is resumed
 * (s->p->prior_runs: only what is missing is sent); a team key that cannot be used is REFUSED
 * 503; then the team's limits (LIMITED) are checked and the submission recorded as pending
 * (s->p->begun, s->p->key), all in one transaction: PASS. */
enum tg_admit_kind tg_admit_submission(struct tg_admit_ask *s, struct tg_verdict *v);

#endif
