/* Worker shares: how many of this process's worker threads each team's submissions hold
 * now, so that one team's slow submissions can never take the workers every other team
 * (and /healthz) needs. A submission holds a worker for as long as the upstream takes;
 * a team may hold at most threads - worker_reserve of them at once. The count is of this
 * process's threads, so it lives in process memory, not in the database. */
#ifndef TG_SHARE_H
#define TG_SHARE_H

#include <stdint.h>

#include "tg_conf.h"

/* Sets the share from conf (threads, worker_reserve). Call before any worker starts. */
void tg_share_init(const struct tg_conf *conf);

/* The most workers one team's submissions may hold at once (at least 1). */
long tg_share_limit(void);

/* Takes a worker for one of team's submissions: 1 when the team held fewer than the limit
 * (it then holds one more until tg_share_release), 0 when it must be refused; *held is
 * what the team held before this call. */
int tg_share_take(int64_t team, long *held);

/* Gives back what tg_share_take(team) took. */
void tg_share_release(int64_t team);

#endif
