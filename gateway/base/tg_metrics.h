/* Process-wide counters for GET /metrics (Prometheus text format). Every update is a
 * relaxed atomic add, so recording costs a request almost nothing; rendering reads them
 * without stopping anyone. */
#ifndef TG_METRICS_H
#define TG_METRICS_H

#include <stdint.h>

#include "tg_core.h"

/* Sets the number of worker threads (for the free-workers gauge). Call before threads. */
void tg_metrics_init(long threads);

/* A request was accepted from nginx / was answered with status. interface may be NULL. */
void tg_metrics_request_begin(void);
void tg_metrics_request_end(const char *interface, int status);

/* One upstream call: operation ("create_group", "add_runs", …), HTTP status (0: no
 * answer) and how long it took. */
void tg_metrics_upstream(const char *operation, int status, int64_t duration_us);

/* A submission reached its final state; state is a tg_state value. */
void tg_metrics_submission(int state);

/* The upstream created n runs for team. */
void tg_metrics_runs(const char *team, long n);

/* A read of the upstream API was authorised for nginx to proxy ("read", "stream",
 * "result") or refused ("token", "role", "not_found", "invalid", "unavailable"); team is
 * the team of an authorised stream or awaited result, else NULL. */
void tg_metrics_read(const char *outcome, const char *team);

/* A read was refused because its answer would have passed max_answer_bytes. */
void tg_metrics_answer_too_large(void);

/* A submission was refused because its team's submissions held every worker a team may
 * (threads - worker_reserve, core/tg_share.h). */
void tg_metrics_share_refused(void);

/* Time a write spent waiting for its transaction to begin. */
void tg_metrics_db_wait(int64_t us);

/* A write transaction that held writes writes and appended frames pages to the WAL (0
 * when unknown). */
void tg_metrics_db_tx(unsigned long writes, unsigned long frames);

/* The process's SQLite write lock was held for us microseconds, by a checkpoint's pass
 * when checkpoint is set, else by write transactions (store/sqlite). Their sum over time
 * is how busy the one writer is: near one second per second, writes queue. */
void tg_metrics_db_held(int64_t us, int checkpoint);

/* A group of writes was taken back and run again without one that had failed after
 * changing rows (store/sqlite/tg_sqlite_writer.c). */
void tg_metrics_db_redo(void);

/* A PostgreSQL query made once more on a new connection, and whether that answered. */
void tg_metrics_db_again(int answered);

/* A submission was taken again with its token read afresh: the token, as kept in memory,
 * had changed, or the team's key, presets or groups had (http/tg_submit.c). */
void tg_metrics_auth_retry(void);

/* A reconciliation pass (tg_reconcile.c) ended, having read events events of runs
 * streams: counted, and kept as the last pass's. */
void tg_metrics_reconcile_pass(long events);
/* The run tracker (core/tg_track.c): the groups this daemon follows and those no daemon
 * follows yet (gauges, as last counted), events read from the group streams, streams
 * opened again, and how long after the upstream's change (the run's modified_at) a
 * status change was recorded. */
void tg_metrics_track_groups(long followed, long waiting);
void tg_metrics_track_events(long n);
void tg_metrics_track_reconnect(void);
void tg_metrics_track_lag(int64_t ms);

/* A run of team reached status (a tg_domain_run_status_known name), recorded from the
 * event stream or a webhook. */
void tg_metrics_run_status(const char *team, const char *status);

/* A webhook delivery: a genuine one "recorded", "known" (told already), "ignored" (not a
 * run of the gateway's) or "duplicate" (its webhook-id was received already); a refused one
 * "missing", "malformed", "stale", "forged" (a tg_webhook_verdict) or "unconfigured" (no
 * secret to verify it with); "invalid": genuine, but not a task_run.status body. */
void tg_metrics_webhook(const char *outcome);

/* Appends every metric in Prometheus text exposition format 0.0.4 to b. */
int tg_metrics_render(struct tg_buf *b);

#endif
