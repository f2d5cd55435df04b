/* The test clock (see tg_clock.h). */
#include "tg_clock.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REREAD_US 50000

static char file[4096];
static _Atomic int64_t shift;
static _Atomic int64_t read_at_us; /* monotonic time of the last read; 0: never */

void tg_clock_use_file(const char *path)
{
    snprintf(file, sizeof(file), "%s", path != NULL ? path : "");
    atomic_store(&read_at_us, 0);
    atomic_store(&shift, 0);
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The file's number, or 0 when it holds none. */
static int64_t read_shift(void)
{
    char text[64] = "";
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text)
        return 0;
    return (int64_t)v;
}

int64_t tg_clock_shift_ms(void)
{
    if (file[0] == '\0')
        return 0;
    int64_t now = mono_us(), last = atomic_load(&read_at_us);
    if (last == 0 || now - last >= REREAD_US) {
        atomic_store(&shift, read_shift());
        atomic_store(&read_at_us, now);
    }
    return atomic_load(&shift);
}
