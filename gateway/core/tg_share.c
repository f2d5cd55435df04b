/* Worker shares (see tg_share.h): a small table of (team, workers held), one entry per team
 * with a submission in flight, under one mutex. At most `threads` entries are ever in use,
 * since each holds a worker; a take or release scans at most that many. */
#include "tg_share.h"

#include <pthread.h>
#include <stdlib.h>

struct entry {
    int64_t team;
    long held; /* 0: the entry is free */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *table;
static long entries;
static long limit = 1;

long tg_share_limit(void)
{
    return limit;
}

void tg_share_init(const struct tg_conf *conf)
{
    long reserve = conf->worker_reserve > 0 ? conf->worker_reserve
                                            : (conf->threads / 4 > 2 ? conf->threads / 4 : 2);
    pthread_mutex_lock(&lock);
    limit = conf->threads - reserve > 0 ? conf->threads - reserve : 1;
    free(table);
    entries = conf->threads;
    table = calloc((size_t)entries, sizeof(*table));
    if (table == NULL)
        entries = 0;
    pthread_mutex_unlock(&lock);
}

int tg_share_take(int64_t team, long *held)
{
    int ok = 0;
    *held = 0;
    pthread_mutex_lock(&lock);
    struct entry *mine = NULL, *spare = NULL;
    for (long i = 0; i < entries && mine == NULL; i++) {
        if (table[i].held > 0 && table[i].team == team)
            mine = &table[i];
        else if (table[i].held == 0 && spare == NULL)
            spare = &table[i];
    }
    if (mine != NULL) {
        *held = mine->held;
        if (mine->held < limit) {
            mine->held++;
            ok = 1;
        }
    } else if (spare != NULL) { /* none only when uninitialised: then nothing is limited */
        spare->team = team;
        spare->held = 1;
        ok = 1;
    } else {
        ok = entries == 0;
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

void tg_share_release(int64_t team)
{
    pthread_mutex_lock(&lock);
    for (long i = 0; i < entries; i++)
        if (table[i].held > 0 && table[i].team == team) {
            table[i].held--;
            break;
        }
    pthread_mutex_unlock(&lock);
}
