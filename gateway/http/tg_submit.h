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
#include "tg_sub.h"
#include "tg_upstream.h"

/* Refuses the submission before anything went upstream, with a 'rejected' record (the
 * team is known). A 422 with detail answers in the validation shape. */
void tg_sub_reject(struct tg_sub *s, int status, const char *message, json_object *detail);

/* Answers a database failure (rc): a 503 before the submission was begun, otherwise the
 * submission is settled as unknown where the database allows. */
void tg_sub_db_trouble(struct tg_sub *s, int rc);

/* Only submit tokens add runs (audit and admin tokens are for reading and managing): TG_OK,
 * or a 403 is answered and recorded as rejected. */
int tg_sub_check_role(struct tg_sub *s);

/* The ownership check of a named group (tg_admit_group) for an interface that makes it
 * before it reads the body: TG_OK when s->taskgroup_id is NULL or the team's; otherwise the
 * answer is in resp (a 404 with a rejected record, or a database failure). */
int tg_sub_check_group(struct tg_sub *s);

/* Admission, after the interface's checks and before tg_sub_forward (both interfaces call
 * it): tg_admit_group unless the interface made it already, then tg_admit_submission, its
 * verdict answered here (REFUSED with a rejected record and the verdict's status, LIMITED
 * 429 with Retry-After, REPLAY the stored answer, TROUBLE tg_sub_db_trouble). TG_OK: the
 * submission is recorded as pending, call tg_sub_forward; otherwise the answer is in resp. */
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

/* Runs one submission through the pipeline of ops (see struct tg_sub_ops): init, decode,
 * the token (tg_http_auth) and its role, check, admission (tg_sub_admit), forwarding
 * (tg_sub_forward), and the answer. api is the upstream's path prefix ("/v1" when NULL),
 * path_group the group the path names (NULL: none). Always leaves an answer in resp. */
void tg_sub_run(const struct tg_sub_ops *ops, struct tg_worker *w, struct tg_request *req,
                struct tg_response *resp, const char *api, const char *path_group);

/* POST /v1/runs, the simplified interface's handler; always leaves an answer in resp. */
void tg_submit_runs(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

#endif
