/* Repeats of a submission, on the HTTP side (see README "Guarantees"): the record an
 * answer is stored on, replaying a stored answer byte for byte, and storing the answer a
 * client was sent. Deciding what a repeat is answered is admission's (core/tg_admit.c). */
#include "tg_idem.h"

#include <string.h>

#include "tg_log.h"

/* The record whose answer is stored once the handler has answered (resp->idem). */
struct tg_idem_claim {
    int64_t team_id;
    enum tg_idem_kind kind;
    const char *key;
    const char *submission_id;
};

struct tg_idem_claim *tg_idem_claim(struct tg_pool *pool, int64_t team_id,
                                    enum tg_idem_kind kind, const char *key,
                                    const char *submission_id)
{
    struct tg_idem_claim *c = tg_pool_calloc(pool, 1, sizeof(*c));
    if (c != NULL) {
        c->team_id = team_id;
        c->kind = kind;
        c->key = key;
        c->submission_id = tg_pool_strdup(pool, submission_id);
    }
    return c;
}

void tg_idem_replay(const struct tg_request *req, struct tg_response *resp,
                    const struct tg_idem_rec *rec)
{
    resp->status = rec->answer_status;
    resp->content_type = rec->answer_type != NULL ? rec->answer_type : "application/json";
    resp->replayed = 1;
    resp->submission_id = rec->submission_id;
    tg_buf_clear(&resp->body);
    if (tg_buf_add(&resp->body, rec->answer_body, rec->answer_len) != TG_OK) {
        tg_resp_error(resp, req, 500, "the stored answer does not fit the answer buffer", NULL);
        return;
    }
    tg_resp_header(resp, "Idempotent-Replayed", "true");
}

void tg_idem_answered(struct tg_worker *w, const struct tg_request *req,
                      struct tg_response *resp)
{
    const struct tg_idem_claim *c = resp->idem;
    (void)req;
    if (c == NULL || resp->replayed || resp->status < 200 || resp->status > 299)
        return;
    int rc = tg_store_idem_answer(w->store, c->team_id, c->kind, c->key, c->submission_id,
                                  resp->status, resp->content_type, resp->body.data,
                                  resp->body.len);
    if (rc != TG_OK)
        /* A repeat then rebuilds the answer from the records instead (nothing is resent). */
        tg_log(TG_LOG_WARN, "submission %s: storing its answer for repeats failed: %s (%s)",
               c->submission_id, tg_rc_str(rc), tg_store_errmsg(w->store));
}
