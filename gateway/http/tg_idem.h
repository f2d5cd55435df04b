/* Repeats on the HTTP side: the record an answer is stored on, replaying and
 * storing answers (tg_idem.c; what a repeat is answered is decided in tg_admit.c). */
#ifndef TG_IDEM_H
#define TG_IDEM_H

#include <stdint.h>

#include "tg_http.h"
#include "tg_store.h"

struct tg_idem_claim;

/* The record (team, kind, key) whose answer is to be stored for submission_id, for
 * resp->idem; pool-owned (submission_id copied), NULL when out of memory (the answer is
 * then not stored, and a repeat rebuilds it from the records). */
struct tg_idem_claim *tg_idem_claim(struct tg_pool *pool, int64_t team_id,
                                    enum tg_idem_kind kind, const char *key,
                                    const char *submission_id);

/* Answers a repeat with rec's stored answer as it was, marked Idempotent-Replayed (a 500
 * when it does not fit the answer buffer). rec's strings must outlive the answer. */
void tg_idem_replay(const struct tg_request *req, struct tg_response *resp,
                    const struct tg_idem_rec *rec);

/* Called once the handler (and the HTML rendering) has produced the answer, before it is
 * sent: when resp->idem names a record and the answer is a success, stores its status,
 * content type and body on the record, so that a repeat gets exactly these bytes. */
void tg_idem_answered(struct tg_worker *w, const struct tg_request *req,
                      struct tg_response *resp);

#endif
