/* How the daemon's own threads ask to be scheduled. */
#ifndef TG_SCHED_H
#define TG_SCHED_H

#include <stdatomic.h>
#include <stddef.h>

/* The slice asked for by tg_sched_wake_soon, in microseconds: the shortest Linux takes. */
#define TG_SCHED_SLICE_US 100

/* Asks the kernel to run the calling thread soon after it is woken, without giving it a
 * larger share of the CPU: a time slice of TG_SCHED_SLICE_US instead of the default (its
 * base slice scaled by the number of cores: 1.4 ms on two), which Linux 6.12's EEVDF
 * scheduler honours by letting a woken thread with a shorter slice go first. The thread's
 * policy and nice value are kept; a thread under a real-time or idle policy is left as it
 * is. On a kernel without custom slices the request is taken
 * and changes nothing. TG_OK, or TG_ERR with the reason in err (NULL accepted). */
int tg_sched_wake_soon(char *err, size_t errlen);

/* A word that threads of this process sleep on until it changes (a Linux futex): one call
 * wakes every one of them, where a semaphore or a condition variable per sleeper takes a
 * call, and a wake-up that may hand the waker's core to the woken, for each. */

/* Sleeps while *word still holds seen; returns at once when it does not, or when woken or
 * interrupted: the caller looks at the word again. */
void tg_sched_word_wait(atomic_uint *word, unsigned seen);

/* Wakes every thread asleep on word (after the caller has changed it). */
void tg_sched_word_wake_all(atomic_uint *word);

#endif
