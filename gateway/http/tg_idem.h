/* Repeats: storing the answer of a submission with an idempotency record (tg_idem.c; the
 * admission side is tg_sub_admit in tg_submit.h). */
#ifndef TG_IDEM_H
#define TG_IDEM_H

#include "tg_http.h"

/* Whether key is a usable idempotency key: 1 to 255 printable ASCII characters. */
int tg_idem_valid_key(const char *key);

/* Called once the handler (and the HTML rendering) has produced the answer, before it is
 * sent: when resp->idem names a record and the answer is a success, stores its status,
 * content type and body on the record, so that a repeat gets exactly these bytes. */
void tg_idem_answered(struct tg_worker *w, const struct tg_request *req,
                      struct tg_response *resp);

#endif
