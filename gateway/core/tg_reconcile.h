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
                                 "skipped" (it was not unknown), "deferred" (not tried: the
                                 pass's time was up or the daemon is stopping) */
    long runs_found;
    char message[512];
};

/* What a pass did. */
struct tg_recon_totals {
    long settled;             /* accepted or failed */
    long left;                /* still unknown: an error, a read cut short, or not tried */
    long deferred;            /* not tried: the pass's time was up */
    long cut;                 /* group reads cut short (they go on in the next pass) */
    long events;              /* events of runs streams read */
};

/* Reconciles the submissions ids names (those not unknown are skipped), in one pass:
 * gathered by group, each group's runs stream read once for all of them (with the team's
 * key) from the last cursor known to stand before their runs, the runs carrying their tags
 * recorded, and each settled as accepted (every input has a run) or failed (some or none),
 * every attempt logged in reconciliations under actor. No group is started after pass_s
 * seconds, and a group's read is cut short after pass_s: the submissions it found whole
 * are settled, the others stay unknown and the next pass reads on where it stopped.
 * verbose: a line per submission on stdout. TG_OK whatever the outcomes, as long as the
 * database could be read and written; *t (may be NULL) counts them. */
int tg_reconcile_ids(struct tg_store *st, struct tg_upstream *up, const char *actor,
                     int verbose, const char *const *ids, size_t n, long pass_s,
                     struct tg_recon_totals *t);

/* The same for one submission (a repeat of an unknown one), its read bounded by read_s;
 * *r says what happened. */
int tg_reconcile_one(struct tg_store *st, struct tg_upstream *up, const char *sub_id,
                     const char *actor, long read_s, struct tg_recon_report *r);

/* The same for every unknown submission (with before_ms above 0: those unknown since
 * before it and not tried since, and those whose last read was cut short). */
int tg_reconcile_all(struct tg_store *st, struct tg_upstream *up, const char *actor, int verbose,
                     int64_t before_ms, long pass_s, struct tg_recon_totals *t);

/* The daemon's background thread, so that serving starts at once: the reconcile pass at
 * start-up (reconcile_on_start), then every housekeeping_interval_s the periodic pass and
 * the removal of expired idempotency records. Stop wakes and joins it (a pass under way
 * cuts its read short, records what it found and starts no other group). */
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
