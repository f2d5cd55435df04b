/* Admission of a submission (tg_admit.c): whether it goes upstream at all. Each check
 * returns a verdict; it writes no answer and calls nothing of the interfaces that ask it,
 * so that the HTTP side (tg_submit.c) alone turns a verdict into a status. */
#ifndef TG_ADMIT_H
#define TG_ADMIT_H

#include <json-c/json.h>

#include "tg_store.h"
#include "tg_sub.h"

enum tg_admit_kind {
    TG_ADMIT_PASS,    /* recorded as pending (or, for a group check, the team's): go on */
    TG_ADMIT_REFUSED, /* refused before anything went upstream: status, message, detail and
                         retry_after say how; to be recorded as rejected */
    TG_ADMIT_LIMITED, /* a team limit refused it (limit); the store recorded it as rejected */
    TG_ADMIT_REPLAY,  /* a repeat, answered with the stored answer of earlier */
    TG_ADMIT_TROUBLE  /* the database or memory failed (rc) */
};

/* What admission decided. Strings are static, pool-owned or held here. */
struct tg_verdict {
    enum tg_admit_kind kind;
    int rc;                    /* TG_OK for PASS; otherwise the code the check failed with */
    int status;                /* REFUSED: the HTTP status it stands for */
    char message[700];         /* REFUSED: what the client is told */
    json_object *detail;       /* REFUSED: the problems (422) or the error's detail; may be NULL */
    const char *retry_after;   /* REFUSED: a Retry-After in seconds, or NULL */
    struct tg_admit_refusal limit;    /* LIMITED */
    struct tg_idem_rec earlier;       /* REPLAY */
    void *claim;               /* PASS: the record to store the answer on (tg_idem.c), or NULL */
};

/* The one ownership check of a named group, for every interface: a group is the team's
 * when one of its own submissions created it (tg_store_group_owned), whoever holds the
 * Parallel key. PASS when s->taskgroup_id is NULL or the team's (checked once); REFUSED
 * 404 "no such task group for this team" with s->taskgroup_id cleared (it is not the
 * team's, so the record must not name it); TROUBLE when the database failed. */
enum tg_admit_kind tg_admit_group(struct tg_sub *s, struct tg_verdict *v);

/* Decides whether a submission that passed its interface's checks and tg_admit_group goes
 * upstream: the client's headers are checked (an Idempotency-Key sent must be usable, a
 * parallel-beta sendable: tg_validate_beta), else REFUSED 422 at ["header", name]; a repeat
 * with the same Idempotency-Key (or an SDK's retry of the same body by the same token) is
 * decided from the record (REPLAY, REFUSED 409 while in flight, 422 for another body), an
 * unknown first attempt is reconciled first, a failed or partly created one is resumed
 * (s->prior_runs: only what is missing is sent); a team key that cannot be used is REFUSED
 * 503; then the team's limits (LIMITED) are checked and the submission recorded as pending
 * (s->begun, s->key), all in one transaction: PASS. */
enum tg_admit_kind tg_admit_submission(struct tg_sub *s, struct tg_verdict *v);

#endif
