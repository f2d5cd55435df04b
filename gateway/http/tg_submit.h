/* The submission pipeline's HTTP side, shared by the simplified interface (tg_submit.c) and
 * the upstream-compatible paths (tg_sdk_api.c): tg_submit_run takes a request through the
 * interface's steps (struct tg_sub_ops), admission (tg_admit.c), forwarding
 * (core/tg_pipeline.c) and the answer; every error becomes a status here. */
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
void tg_submit_reject(struct tg_sub *s, int status, const char *message, json_object *detail);

/* Answers a database failure (rc): a 503 before the submission was begun, otherwise the
 * submission is settled as unknown where the database allows. */
void tg_submit_db_trouble(struct tg_sub *s, int rc);

/* Only submit tokens add runs (audit and admin tokens are for reading and managing): TG_OK,
 * or a 403 is answered and recorded as rejected. */
int tg_submit_check_role(struct tg_sub *s);

/* The ownership check of a named group (tg_admit_group) for an interface that makes it
 * before it reads the body: TG_OK when s->taskgroup_id is NULL or the team's; otherwise the
 * answer is in resp (a 404 with a rejected record, or a database failure). */
int tg_submit_check_group(struct tg_sub *s);

/* Admission, after the interface's checks and before tg_pipeline_forward (both interfaces call
 * it): tg_admit_group unless the interface made it already, then tg_admit_submission, its
 * verdict answered here (REFUSED with a rejected record and the verdict's status, LIMITED
 * 429 with Retry-After, REPLAY the stored answer, TROUBLE tg_submit_db_trouble). TG_OK: the
 * submission is recorded as pending, call tg_pipeline_forward; otherwise the answer is in resp. */
int tg_submit_admit(struct tg_sub *s);

/* Runs one submission through the pipeline of ops (see struct tg_sub_ops): init, decode,
 * the token (tg_http_auth) and its role, check, admission (tg_submit_admit), forwarding
 * (tg_pipeline_forward), and the answer. api is the upstream's path prefix ("/v1" when NULL),
 * path_group the group the path names (NULL: none). Always leaves an answer in resp. */
void tg_submit_run(const struct tg_sub_ops *ops, struct tg_worker *w, struct tg_request *req,
                struct tg_response *resp, const char *api, const char *path_group);

/* POST /v1/runs, the simplified interface's handler; always leaves an answer in resp. */
void tg_submit_runs(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

#endif
