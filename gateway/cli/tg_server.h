/* The daemon: a fixed pool of worker threads taking FastCGI requests from one listening
 * socket. SIGTERM or SIGINT stops accepting, lets the requests in flight finish, exits. */
#ifndef TG_SERVER_H
#define TG_SERVER_H

#include "tg_conf.h"

/* Runs until SIGTERM/SIGINT. Returns the process exit status: 0 after a clean stop, 1 when
 * start-up failed (the reason is logged). */
int tg_server_run(const struct tg_conf *conf);

#endif
