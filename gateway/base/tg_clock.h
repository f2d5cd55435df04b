/* The test clock: a shift of the gateway's wall clock (tg_now_ms) read from a file, so that
 * the tests can take the daemon and the command across a day or a month (budget periods)
 * without waiting. For tests only: the config key test_clock_file names the file, which
 * holds a number of milliseconds (may be negative) added to the real time; empty, missing or
 * unreadable means no shift. Unset (the default), the clock is the system's. */
#ifndef TG_CLOCK_H
#define TG_CLOCK_H

#include <stdint.h>

/* Uses path (NULL or "": none) from now on. Call once at start-up, before threads. */
void tg_clock_use_file(const char *path);

/* What to add to the system's time, in milliseconds: the file's number, read again at most
 * every 50 ms; 0 without a file. Thread-safe. */
int64_t tg_clock_shift_ms(void);

#endif
