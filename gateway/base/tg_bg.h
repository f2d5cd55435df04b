/* A background thread of the daemon that sleeps until it is woken, a period passes, or it
 * is told to stop: the WAL checkpointer and the housekeeping thread. */
#ifndef TG_BG_H
#define TG_BG_H

#include <pthread.h>

struct tg_bg {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    int running; /* started and not yet joined */
    int stop;    /* told to stop */
    int poked;   /* woken since it last waited */
};

#define TG_BG_INIT {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER}

/* Starts fn(arg) on a thread of its own. TG_OK or TG_ERR. */
int tg_bg_start(struct tg_bg *bg, void *(*fn)(void *), void *arg);

/* Called by the thread: waits until poked or secs seconds have passed (secs <= 0: until
 * poked). Returns nonzero when the thread must stop instead. */
int tg_bg_wait(struct tg_bg *bg, long secs);

/* Wakes the thread's current or next wait. */
void tg_bg_poke(struct tg_bg *bg);

/* Tells the thread to stop, wakes it and joins it; nothing when it is not running. */
void tg_bg_stop(struct tg_bg *bg);

#endif
