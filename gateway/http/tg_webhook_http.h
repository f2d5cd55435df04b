/* POST /v1/webhooks/parallel: Parallel's task_run.status webhooks (tg_webhook_http.c). */
#ifndef TG_WEBHOOK_HTTP_H
#define TG_WEBHOOK_HTTP_H

#include "tg_http.h"

/* Reads the configured secrets (webhook_secrets, webhook_secrets_file) once, before the
 * workers start; they stay in this process's memory only. TG_OK, or an error with err
 * saying which setting is wrong (never a secret). */
int tg_webhook_http_init(const struct tg_conf *conf, char *err, size_t errlen);
/* Forgets them (wiped). */
void tg_webhook_http_done(void);

/* The route's handler: a delivery whose signature is not genuine gets 401 and changes
 * nothing; a genuine one is recorded once by its webhook-id (a repeat gets 200 and changes
 * nothing) and answered 200 at once. */
void tg_webhook_http_receive(struct tg_worker *w, struct tg_request *req,
                             struct tg_response *resp);

#endif
