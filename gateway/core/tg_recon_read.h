/* One read of a group's runs stream for reconciliation (tg_reconcile.c): the runs whose
 * gateway tag names one of a set of submissions, by call, with where each call's runs stand
 * in the stream, read from a cursor for a bounded time. */
#ifndef TG_RECON_READ_H
#define TG_RECON_READ_H

#include <stdatomic.h>
#include <stddef.h>

#include "tg_core.h"
#include "tg_store.h"

struct tg_upstream;

/* The longest event id kept as a cursor. */
#define TG_RECON_CURSOR_MAX 512

/* The runs of one call, as found, in the stream's order; strings in the read's pool. */
struct tg_recon_call_found {
    int seq;
    long first, count;        /* the tag's first input and inputs in the call */
    size_t n, cap;
    const char **ids;
    const char **procs;
    const char *cursor;       /* the id of the event just before its first run (NULL: the
                                 stream's beginning): what the upstream's run_cursor for the
                                 call means */
    long order;               /* that run's event, counted from the read's first */
};

/* A submission being reconciled, and what a read found of it. */
struct tg_recon_member {
    struct tg_recon_sub sub;
    struct tg_recon_call_found *calls;
    size_t ncalls, cap;
    long tagged;              /* runs carrying its tag */
};

/* How a read ended. */
enum tg_recon_end {
    TG_RECON_WHOLE,           /* to the stream's end */
    TG_RECON_CUT,             /* cut short on purpose: the time was up, or stop was set */
    TG_RECON_FAILED           /* the upstream could not be read (or understood) further */
};

struct tg_recon_outcome {
    enum tg_recon_end end;
    int stopped;              /* TG_RECON_CUT: by stop, not by the time */
    int status;               /* the answer's HTTP status (0: none) */
    long events;              /* whole events read */
    const char *last;         /* the id of the last whole event read, else the cursor the
                                 read began at (NULL: the beginning); in the pool */
    const char *resume;       /* TG_RECON_CUT: where a read must start to see every run of
                                 the members not found whole that this one did not see whole:
                                 before the first call of theirs it saw only in part, else
                                 last (NULL: the beginning); in the pool */
    char problem[200];        /* TG_RECON_FAILED: why */
};

/* Orders members by submission id, as tg_recon_read needs them. */
void tg_recon_sort_by_id(struct tg_recon_member **m, size_t n);

/* Reads group's runs stream (GET /v1/tasks/groups/{group}/runs, with the team's key) from
 * cursor from (NULL: the beginning), for at most read_s seconds and until *stop is set,
 * adding to each of m[0..n) (sorted by tg_recon_sort_by_id) the runs carrying its tag.
 * Whatever the end, the runs found stand; *out says how it ended. Memory from pool. */
void tg_recon_read(struct tg_upstream *up, const char *key, const char *group,
                   const char *from, long read_s, const atomic_int *stop, struct tg_pool *pool,
                   struct tg_recon_member **m, size_t n, struct tg_recon_outcome *out);

#endif
