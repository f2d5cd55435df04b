/* The request router (tg_router.c): the one entry from the FastCGI adapter's worker loop
 * to the handlers. */
#ifndef TG_ROUTER_H
#define TG_ROUTER_H

#include "tg_http.h"

/* Routes one request to its handler; always leaves an answer in resp. */
void tg_handle(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

#endif
