/* Reconciliation: settles 'unknown' submissions by reading their group's runs from the
 * upstream and matching the gateway's run tag, with `taskgate reconcile`, a pass when the
 * daemon starts, and before a repeat of an unknown submission is answered. */
#ifndef TG_RECONCILE_H
#define TG_RECONCILE_H

#include "tg_core.h"

struct tg_conf;
struct tg_store;
struct tg_upstream;

/* What one reconciliation did. */
struct tg_recon_report {
    const char *outcome;      /* "accepted", "failed", "partial", "error" (still unknown),
                                 "skipped" (it was not unknown) */
    long runs_found;
    char message[512];
};

/* Reconciles one submission (it must be 'unknown'): reads its group's runs with its team's
 * key, records the runs carrying its tag, settles it as accepted (every input has a run)
 * or failed (some or none), and logs the attempt in reconciliations under actor. TG_OK
 * whatever the outcome, as long as the database could be written; *r says what happened. */
int tg_reconcile_one(struct tg_store *st, struct tg_upstream *up, struct tg_pool *pool,
                     const char *sub_id, const char *actor, struct tg_recon_report *r);

/* Reconciles every unknown submission (with before_ms above 0: those unknown since before
 * it and not tried since); *settled and *left (may be NULL) count them. */
int tg_reconcile_all(struct tg_store *st, struct tg_upstream *up, const char *actor, int verbose,
                     int64_t before_ms, long *settled, long *left);

/* The daemon's background thread, so that serving starts at once: the reconcile pass at
 * start-up (reconcile_on_start), then every housekeeping_interval_s the removal of expired
 * idempotency records. Stop wakes and joins it (a pass under way ends after the submission
 * it is working on). */
int tg_reconcile_start(const struct tg_conf *conf);
void tg_reconcile_stop(void);

/* A submission the upstream may have acted on whose outcome the database refused to record,
 * so that it is still 'pending': the background thread marks it 'unknown' (with error, and
 * the statuses given) as soon as the database takes writes again, and then reconciles it
 * like any unknown submission, all while the daemon runs. Until then it counts as in flight
 * for its team and /healthz reports it. Thread-safe; copies what it is given. TG_OK, or
 * TG_ETOOBIG when too many are owed already (the daemon's next start settles it). */
int tg_reconcile_owe_unknown(const char *sub_id, int http_status, int upstream_status,
                             const char *error);

/* How many such submissions wait to be marked unknown. */
long tg_reconcile_owed(void);

/* `taskgate reconcile [SUBMISSION_ID...]`. Returns the exit code. */
int tg_reconcile_cli(const struct tg_conf *conf, int argc, char **argv);

#endif
