/* Scheduling requests for the daemon's threads (see tg_sched.h). */
#include "tg_sched.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tg_core.h"

/* Linux's values (include/uapi/linux/sched.h); <sched.h> names them only for _GNU_SOURCE. */
#define POLICY_BATCH 3
#define POLICY_RESET_ON_FORK 0x40000000
#define FLAG_RESET_ON_FORK 0x01

/* The kernel's struct sched_attr (sched_setattr(2)); glibc has no wrapper before 2.41. */
struct sched_attr_v1 {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime; /* for SCHED_OTHER and SCHED_BATCH: the slice, in ns */
    uint64_t sched_deadline;
    uint64_t sched_period;
};

int tg_sched_wake_soon(char *err, size_t errlen)
{
#ifdef SYS_sched_setattr
    int policy = sched_getscheduler(0);
    if (policy == -1) {
        if (err != NULL)
            snprintf(err, errlen, "sched_getscheduler: %s", strerror(errno));
        return TG_ERR;
    }
    int reset_on_fork = (policy & POLICY_RESET_ON_FORK) != 0;
    policy &= ~POLICY_RESET_ON_FORK;
    if (policy != SCHED_OTHER && policy != POLICY_BATCH)
        return TG_OK; /* real-time or idle: the operator's choice stands */
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0); /* this thread's: Linux keeps nice per thread */
    if (nice == -1 && errno != 0) {
        if (err != NULL)
            snprintf(err, errlen, "getpriority: %s", strerror(errno));
        return TG_ERR;
    }
    struct sched_attr_v1 attr = {
        .size = sizeof(attr),
        .sched_policy = (uint32_t)policy,
        .sched_flags = reset_on_fork ? FLAG_RESET_ON_FORK : 0,
        .sched_nice = nice,
        .sched_runtime = (uint64_t)TG_SCHED_SLICE_US * 1000,
    };
    if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
        if (err != NULL)
            snprintf(err, errlen, "sched_setattr: %s", strerror(errno));
        return TG_ERR;
    }
    return TG_OK;
#else
    if (err != NULL)
        snprintf(err, errlen, "sched_setattr: not on this system");
    return TG_ERR;
#endif
}

_Static_assert(sizeof(atomic_uint) == 4, "a futex is a 32-bit word");

void tg_sched_word_wait(atomic_uint *word, unsigned seen)
{
    /* The kernel compares the word with seen under its own lock: a change made before the
     * sleep begins returns EAGAIN instead of a sleep that nothing would end. */
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

void tg_sched_word_wake_all(atomic_uint *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
