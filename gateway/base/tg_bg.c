/* Background threads that sleep until woken or stopped (see tg_bg.h). */
#include "tg_bg.h"

#include <time.h>

#include "tg_core.h"

int tg_bg_start(struct tg_bg *bg, void *(*fn)(void *), void *arg)
{
    bg->stop = 0;
    bg->poked = 0;
    if (pthread_create(&bg->thread, NULL, fn, arg) != 0)
        return TG_ERR;
    bg->running = 1;
    return TG_OK;
}

int tg_bg_wait(struct tg_bg *bg, long secs)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += secs;
    pthread_mutex_lock(&bg->lock);
    int timed_out = 0;
    while (!bg->stop && !bg->poked && !timed_out) {
        if (secs > 0)
            timed_out = pthread_cond_timedwait(&bg->wake, &bg->lock, &until) != 0;
        else
            pthread_cond_wait(&bg->wake, &bg->lock);
    }
    bg->poked = 0;
    int stop = bg->stop;
    pthread_mutex_unlock(&bg->lock);
    return stop;
}

static void wake(struct tg_bg *bg, int stop)
{
    pthread_mutex_lock(&bg->lock);
    if (stop)
        bg->stop = 1;
    else
        bg->poked = 1;
    pthread_cond_signal(&bg->wake);
    pthread_mutex_unlock(&bg->lock);
}

void tg_bg_poke(struct tg_bg *bg)
{
    wake(bg, 0);
}

void tg_bg_stop(struct tg_bg *bg)
{
    if (!bg->running)
        return;
    wake(bg, 1);
    pthread_join(bg->thread, NULL);
    bg->running = 0;
}
