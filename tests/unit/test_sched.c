/* Unit tests for tg_sched: a thread asks for a short slice and keeps its share, the
 * daemon's writer thread runs with that slice, and one call wakes every thread asleep on
 * a word. */
#define _GNU_SOURCE /* SCHED_IDLE */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tg_core.h"
#include "tg_sched.h"
#include "tg_store.h"
#include "tg_test.h"

static long my_tid(void);
static long long slice_of(long tid);

/* The kernel's struct sched_attr, for the probe below (independent of tg_sched's). */
struct attr_probe {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

static void *slice_probe(void *arg)
{
    int *ok = arg;
    struct attr_probe a = {.size = sizeof(a), .policy = SCHED_OTHER, .runtime = 100000};
    *ok = syscall(SYS_sched_setattr, 0, &a, 0) == 0 && slice_of(my_tid()) == 100000;
    return NULL;
}

/* Whether a thread here can choose its slice and /proc shows it: Linux 6.12 and later,
 * with sched_setattr(2) allowed (a container's seccomp filter may refuse it). Asked once,
 * of a thread of its own, by the system call itself. */
static int custom_slices(void)
{
    static int known = -1;
    if (known < 0) {
        pthread_t t;
        int ok = 0;
        if (pthread_create(&t, NULL, slice_probe, &ok) == 0)
            pthread_join(t, NULL);
        known = ok;
        if (!ok)
            fprintf(stderr, "  (no custom slices here: the slices are not checked)\n");
    }
    return known;
}

/* The slice in ns of thread tid of this process as /proc shows it, or -1 when it is not
 * shown (a kernel without its scheduler's debug fields). */
static long long slice_of(long tid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/task/%ld/sched", tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long long ns = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "se.slice", 8) == 0 && colon != NULL)
            ns = strtoll(colon + 1, NULL, 10);
    }
    fclose(f);
    return ns;
}

static long my_tid(void)
{
    return (long)syscall(SYS_gettid);
}

struct probe {
    int set_nice;      /* nice value to take first */
    int idle;          /* take SCHED_IDLE first */
    int rc;            /* tg_sched_wake_soon's */
    int nice_after;
    int policy_after;
    long long slice_before, slice_after;
};

static void *probe_thread(void *arg)
{
    struct probe *p = arg;
    if (p->set_nice != 0)
        CHECK(setpriority(PRIO_PROCESS, 0, p->set_nice) == 0);
    if (p->idle) {
        struct sched_param none = {0};
        CHECK(sched_setscheduler(0, SCHED_IDLE, &none) == 0);
    }
    p->slice_before = slice_of(my_tid());
    char err[128] = "";
    p->rc = tg_sched_wake_soon(err, sizeof(err));
    if (p->rc != TG_OK)
        fprintf(stderr, "tg_sched_wake_soon: %s\n", err);
    p->nice_after = getpriority(PRIO_PROCESS, 0);
    p->policy_after = sched_getscheduler(0);
    p->slice_after = slice_of(my_tid());
    return NULL;
}

static void run_probe(struct probe *p)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, probe_thread, p) == 0);
    pthread_join(t, NULL);
}

/* The slice is asked for, and the nice value the thread had (a lower priority here) is
 * kept: the thread goes first when woken, but gets no larger share of the CPU. */
static void test_short_slice_keeps_nice(void)
{
    struct probe p = {.set_nice = 4};
    run_probe(&p);
    CHECK(p.nice_after == 4);
    CHECK(p.policy_after == SCHED_OTHER);
    if (custom_slices()) {
        CHECK(p.rc == TG_OK);
        CHECK(p.slice_after == TG_SCHED_SLICE_US * 1000LL);
    }
}

/* A thread the operator put under SCHED_IDLE stays there, with its slice unchanged. */
static void test_idle_thread_left_alone(void)
{
    struct probe p = {.idle = 1};
    run_probe(&p);
    CHECK(p.rc == TG_OK);
    CHECK(p.policy_after == SCHED_IDLE);
    CHECK(p.slice_after == p.slice_before);
}

/* The tid of this process's thread named name, or -1. */
static long thread_named(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return -1;
    long found = -1;
    struct dirent *e;
    while (found < 0 && (e = readdir(d)) != NULL) {
        char path[300], comm[64] = "";
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(comm, sizeof(comm), f) != NULL) {
            comm[strcspn(comm, "\n")] = '\0';
            if (strcmp(comm, name) == 0)
                found = strtol(e->d_name, NULL, 10);
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

/* The SQLite writer thread, which every submission waits for twice, has the short slice;
 * the process's other threads keep the default. */
static void test_writer_thread_has_short_slice(void)
{
    char path[512], err[256];
    tg_test_db_path(path, sizeof(path), "test_sched", "writer");
    int rc = tg_test_new_db(path, err, sizeof(err));
    CHECK(rc == TG_OK);
    if (rc == TG_OK)
        rc = tg_store_writer_start(path, 5000, err, sizeof(err));
    CHECK(rc == TG_OK);
    if (rc == TG_OK) {
        long writer = -1;
        for (int i = 0; i < 200 && writer < 0; i++) { /* it names itself once it runs */
            writer = thread_named("tg-writer");
            if (writer < 0)
                usleep(5000);
        }
        CHECK(writer > 0);
        long long slice = writer > 0 ? slice_of(writer) : -1;
        long long mine = slice_of(my_tid());
        if (custom_slices()) {
            CHECK(slice == TG_SCHED_SLICE_US * 1000LL);
            CHECK(mine != TG_SCHED_SLICE_US * 1000LL);
        }
        tg_store_writer_stop();
    }
    tg_test_remove_db(path);
}

#define SLEEPERS 8

struct sleeper {
    atomic_uint *word;
    atomic_int *asleep, *awake;
};

/* Sleeps until the word is past 0, as the writer's workers wait for their group. */
static void *sleeper(void *arg)
{
    struct sleeper *s = arg;
    atomic_fetch_add(s->asleep, 1);
    unsigned seen;
    while ((seen = atomic_load(s->word)) == 0)
        tg_sched_word_wait(s->word, seen);
    atomic_fetch_add(s->awake, 1);
    return NULL;
}

/* A wait for a value the word no longer holds returns at once; threads asleep on a word
 * stay asleep until it changes, and then one call wakes every one of them. */
static void test_one_call_wakes_every_sleeper(void)
{
    atomic_uint word = 0;
    atomic_int asleep = 0, awake = 0;
    tg_sched_word_wait(&word, 1); /* not what it holds: no sleep, or this test hangs */

    pthread_t t[SLEEPERS];
    struct sleeper s = {&word, &asleep, &awake};
    int started = 0;
    for (int i = 0; i < SLEEPERS; i++)
        started += pthread_create(&t[i], NULL, sleeper, &s) == 0;
    CHECK(started == SLEEPERS);
    for (int i = 0; i < 400 && atomic_load(&asleep) < started; i++)
        usleep(5000);
    usleep(50000); /* let the last of them reach its sleep */
    CHECK(atomic_load(&awake) == 0);

    atomic_store(&word, 1);
    tg_sched_word_wake_all(&word);
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&awake) == started);
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"short_slice_keeps_nice", test_short_slice_keeps_nice},
        {"idle_thread_left_alone", test_idle_thread_left_alone},
        {"writer_thread_has_short_slice", test_writer_thread_has_short_slice},
        {"one_call_wakes_every_sleeper", test_one_call_wakes_every_sleeper},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
