/* The upstream's own task-group paths, served for the official SDKs (see tg_sdk_api.c). */
#ifndef TG_SDK_API_H
#define TG_SDK_API_H

#include "tg_http.h"

/* Serves req when its path is one of the upstream's task paths (/v1/tasks/…,
 * /v1beta/tasks/…) and returns 1 with the answer in resp (or already streamed through
 * req->out); returns 0 for any other path. */
int tg_compat_handle(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

#endif
