/* Counters for /metrics (see tg_metrics.h). Fixed tables of relaxed atomics indexed by
 * interface, operation and HTTP status; the per-team run counters are the one table that
 * grows, under a mutex, and only when a team is first seen. */
#include "tg_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define STATUS_MAX 600
#define TEAMS_MAX 1024

static const char *const interfaces[] = {"simplified", "upstream-compatible", "audit", "admin",
                                         "webhook", "other"};
#define NIFACES (sizeof(interfaces) / sizeof(interfaces[0]))
static const char *const operations[] = {"create_group", "add_runs", "read", "other"};
#define NOPS (sizeof(operations) / sizeof(operations[0]))
static const char *const states[] = {"pending", "accepted", "rejected", "failed", "unknown"};
#define NSTATES (sizeof(states) / sizeof(states[0]))
/* What came of a read's authorisation (tg_metrics_read); the last is the catch-all. */
static const char *const read_outcomes[] = {"read", "stream", "result", "token", "role",
                                            "not_found", "invalid", "unavailable", "other"};
#define NREADS (sizeof(read_outcomes) / sizeof(read_outcomes[0]))
#define NREADS_AUTHORISED 3 /* the first three: the read went on to nginx's proxy */
static const char *const run_statuses[] = {"queued", "action_required", "running", "completed",
                                           "failed", "cancelling", "cancelled", "other"};
#define NRUNSTATUS (sizeof(run_statuses) / sizeof(run_statuses[0]))
/* What became of a webhook (tg_metrics_webhook): the first four are genuine ones. */
static const char *const hook_outcomes[] = {"recorded", "known", "ignored", "duplicate",
                                            "missing", "malformed", "stale", "forged",
                                            "unconfigured", "invalid"};
#define NHOOKS (sizeof(hook_outcomes) / sizeof(hook_outcomes[0]))
#define NHOOKS_RECEIVED 3 /* recorded, known, ignored */
/* A histogram: counts of observations at most each bound (seconds, at most MAX_BOUNDS of
 * them; one more count past the last), rendered cumulative as Prometheus wants them. */
#define MAX_BOUNDS 16
struct histogram {
    const double *bound;
    size_t n;
    atomic_ulong count[MAX_BOUNDS + 1];
    atomic_ullong sum_us;
};
#define HISTOGRAM(...)                                                                   \
    {.bound = (const double[]){__VA_ARGS__},                                             \
     .n = sizeof((const double[]){__VA_ARGS__}) / sizeof(double)}

/* Upstream latency. */
static struct histogram latency = HISTOGRAM(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                            5, 10, 30, 60);
/* Tracking lag: from the upstream's change to its record. */
static struct histogram lag = HISTOGRAM(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800);
/* A write's wait for its write transaction to begin (the writer's queue on SQLite). */
static struct histogram db_wait = HISTOGRAM(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25,
                                            1, 5);

static void observe(struct histogram *h, int64_t us)
{
    if (us < 0)
        us = 0;
    double secs = (double)us / 1e6;
    size_t b = 0;
    while (b < h->n && secs > h->bound[b])
        b++;
    atomic_fetch_add_explicit(&h->count[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)us, memory_order_relaxed);
}

static long workers;
static atomic_long in_flight;
static atomic_ulong share_refused;
static atomic_ulong requests[NIFACES][STATUS_MAX];
static atomic_ulong upstream_calls[NOPS][STATUS_MAX];
static atomic_ulong submissions[NSTATES];
static atomic_ulong reads[NREADS];
static atomic_ullong db_held_us[2];
static atomic_ulong db_tx, db_writes, db_frames, db_redos, auth_retries;
static atomic_ulong db_again[2]; /* answered, failed */
static atomic_ulong answers_too_large;
static atomic_ulong recon_passes, recon_events, recon_last_events;
static atomic_long track_followed, track_waiting;
static atomic_ulong track_events, track_reconnects;
static atomic_ulong hooks[NHOOKS];

static pthread_mutex_t teams_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char name[65];
    atomic_ulong runs;
    atomic_ulong long_reads; /* event streams and awaited results authorised */
    atomic_ulong statuses[NRUNSTATUS]; /* runs that reached each status */
} teams[TEAMS_MAX];
static atomic_int nteams;

void tg_metrics_init(long threads)
{
    workers = threads;
}

static size_t index_of(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; name != NULL && i < n - 1; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return n - 1;
}

static int status_index(int status)
{
    return status > 0 && status < STATUS_MAX ? status : 0;
}

void tg_metrics_request_begin(void)
{
    atomic_fetch_add_explicit(&in_flight, 1, memory_order_relaxed);
}

void tg_metrics_request_end(const char *interface, int status)
{
    size_t i = index_of(interfaces, NIFACES, interface);
    atomic_fetch_add_explicit(&requests[i][status_index(status)], 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&in_flight, 1, memory_order_relaxed);
}

void tg_metrics_upstream(const char *operation, int status, int64_t duration_us)
{
    size_t op = index_of(operations, NOPS, operation);
    atomic_fetch_add_explicit(&upstream_calls[op][status_index(status)], 1,
                              memory_order_relaxed);
    observe(&latency, duration_us);
}

void tg_metrics_submission(int state)
{
    if (state >= 0 && (size_t)state < NSTATES)
        atomic_fetch_add_explicit(&submissions[state], 1, memory_order_relaxed);
}

/* The counters of team, added when it is first seen; NULL past TEAMS_MAX teams. */
static int team_slot(const char *team)
{
    int count = atomic_load(&nteams);
    for (int i = 0; i < count; i++)
        if (strcmp(teams[i].name, team) == 0)
            return i;
    pthread_mutex_lock(&teams_lock);
    count = atomic_load(&nteams);
    int i = 0;
    while (i < count && strcmp(teams[i].name, team) != 0)
        i++;
    if (i == count && count < TEAMS_MAX) {
        size_t len = strlen(team);
        if (len >= sizeof(teams[i].name))
            len = sizeof(teams[i].name) - 1;
        memcpy(teams[i].name, team, len);
        teams[i].name[len] = '\0';
        atomic_store(&nteams, count + 1);
    }
    pthread_mutex_unlock(&teams_lock);
    return i < TEAMS_MAX ? i : -1;
}

void tg_metrics_runs(const char *team, long n)
{
    if (team == NULL || n <= 0)
        return;
    int i = team_slot(team);
    if (i >= 0)
        atomic_fetch_add_explicit(&teams[i].runs, (unsigned long)n, memory_order_relaxed);
}

void tg_metrics_read(const char *outcome, const char *team)
{
    atomic_fetch_add_explicit(&reads[index_of(read_outcomes, NREADS, outcome)], 1,
                              memory_order_relaxed);
    int i = team != NULL ? team_slot(team) : -1;
    if (i >= 0)
        atomic_fetch_add_explicit(&teams[i].long_reads, 1, memory_order_relaxed);
}

void tg_metrics_track_groups(long followed, long waiting)
{
    atomic_store_explicit(&track_followed, followed, memory_order_relaxed);
    atomic_store_explicit(&track_waiting, waiting, memory_order_relaxed);
}

void tg_metrics_track_events(long n)
{
    if (n > 0)
        atomic_fetch_add_explicit(&track_events, (unsigned long)n, memory_order_relaxed);
}

void tg_metrics_track_reconnect(void)
{
    atomic_fetch_add_explicit(&track_reconnects, 1, memory_order_relaxed);
}

void tg_metrics_track_lag(int64_t ms)
{
    observe(&lag, ms * 1000);
}

void tg_metrics_run_status(const char *team, const char *status)
{
    int i = team != NULL && team[0] != '\0' ? team_slot(team) : -1;
    if (i >= 0)
        atomic_fetch_add_explicit(&teams[i].statuses[index_of(run_statuses, NRUNSTATUS, status)],
                                  1, memory_order_relaxed);
}

void tg_metrics_webhook(const char *outcome)
{
    atomic_fetch_add_explicit(&hooks[index_of(hook_outcomes, NHOOKS, outcome)], 1,
                              memory_order_relaxed);
}

void tg_metrics_db_wait(int64_t us)
{
    observe(&db_wait, us);
}

void tg_metrics_share_refused(void)
{
    atomic_fetch_add_explicit(&share_refused, 1, memory_order_relaxed);
}

void tg_metrics_db_tx(unsigned long writes, unsigned long frames)
{
    atomic_fetch_add_explicit(&db_tx, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&db_writes, writes, memory_order_relaxed);
    atomic_fetch_add_explicit(&db_frames, frames, memory_order_relaxed);
}

void tg_metrics_db_held(int64_t us, int checkpoint)
{
    atomic_fetch_add_explicit(&db_held_us[checkpoint != 0], (unsigned long long)(us > 0 ? us : 0),
                              memory_order_relaxed);
}

void tg_metrics_db_again(int answered)
{
    atomic_fetch_add_explicit(&db_again[answered ? 0 : 1], 1, memory_order_relaxed);
}

void tg_metrics_db_redo(void)
{
    atomic_fetch_add_explicit(&db_redos, 1, memory_order_relaxed);
}

void tg_metrics_auth_retry(void)
{
    atomic_fetch_add_explicit(&auth_retries, 1, memory_order_relaxed);
}

void tg_metrics_answer_too_large(void)
{
    atomic_fetch_add_explicit(&answers_too_large, 1, memory_order_relaxed);
}

void tg_metrics_reconcile_pass(long events)
{
    unsigned long n = events > 0 ? (unsigned long)events : 0;
    atomic_fetch_add_explicit(&recon_passes, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&recon_events, n, memory_order_relaxed);
    atomic_store_explicit(&recon_last_events, n, memory_order_relaxed);
}

/* One line per non-zero counter of a [name][HTTP status] table:
 * metric{label="name",status="S"} N. */
static void render_by_status(struct tg_buf *b, const char *metric, const char *label,
                             const char *const *names, size_t n,
                             atomic_ulong (*counts)[STATUS_MAX])
{
    for (size_t i = 0; i < n; i++)
        for (int s = 0; s < STATUS_MAX; s++) {
            unsigned long v = atomic_load_explicit(&counts[i][s], memory_order_relaxed);
            if (v > 0)
                tg_buf_printf(b, "%s{%s=\"%s\",status=\"%d\"} %lu\n", metric, label, names[i],
                              s, v);
        }
}

static void render_requests(struct tg_buf *b)
{
    tg_buf_adds(b, "# HELP taskgate_requests_total Requests answered, by interface and status.\n"
                   "# TYPE taskgate_requests_total counter\n");
    render_by_status(b, "taskgate_requests_total", "interface", interfaces, NIFACES, requests);
    long busy = atomic_load(&in_flight);
    tg_buf_printf(b, "# HELP taskgate_requests_in_flight Requests being handled now.\n"
                     "# TYPE taskgate_requests_in_flight gauge\ntaskgate_requests_in_flight %ld\n"
                     "# HELP taskgate_workers_free Worker threads waiting for a request.\n"
                     "# TYPE taskgate_workers_free gauge\ntaskgate_workers_free %ld\n",
                  busy, workers - busy > 0 ? workers - busy : 0);
    tg_buf_printf(b, "# HELP taskgate_answers_too_large_total Reads refused because their answer "
                     "would pass max_answer_bytes.\n# TYPE taskgate_answers_too_large_total "
                     "counter\ntaskgate_answers_too_large_total %lu\n",
                  atomic_load(&answers_too_large));
    tg_buf_printf(b, "# HELP taskgate_worker_share_refusals_total Submissions refused 429 "
                     "because their team's submissions held every worker one team may "
                     "(threads - worker_reserve).\n# TYPE taskgate_worker_share_refusals_total "
                     "counter\ntaskgate_worker_share_refusals_total %lu\n",
                  atomic_load(&share_refused));
}

/* name's histogram h, with its HELP and TYPE lines. */
static void render_histogram(struct tg_buf *b, const char *name, const char *help,
                             struct histogram *h)
{
    tg_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long cumulative = 0;
    for (size_t i = 0; i <= h->n; i++) {
        cumulative += atomic_load_explicit(&h->count[i], memory_order_relaxed);
        if (i < h->n)
            tg_buf_printf(b, "%s_bucket{le=\"%g\"} %lu\n", name, h->bound[i], cumulative);
        else
            tg_buf_printf(b, "%s_bucket{le=\"+Inf\"} %lu\n", name, cumulative);
    }
    tg_buf_printf(b, "%s_sum %.6f\n%s_count %lu\n", name,
                  (double)atomic_load(&h->sum_us) / 1e6, name, cumulative);
}

static void render_upstream(struct tg_buf *b)
{
    tg_buf_adds(b, "# HELP taskgate_upstream_calls_total Upstream calls, by operation and HTTP "
                   "status (0: no answer).\n# TYPE taskgate_upstream_calls_total counter\n");
    render_by_status(b, "taskgate_upstream_calls_total", "operation", operations, NOPS,
                     upstream_calls);
    render_histogram(b, "taskgate_upstream_duration_seconds", "Upstream call latency.",
                     &latency);
}

static void render_records(struct tg_buf *b)
{
    tg_buf_adds(b, "# HELP taskgate_submissions_total Submissions by final state.\n"
                   "# TYPE taskgate_submissions_total counter\n");
    for (size_t i = 1; i < NSTATES; i++)
        tg_buf_printf(b, "taskgate_submissions_total{state=\"%s\"} %lu\n", states[i],
                      atomic_load_explicit(&submissions[i], memory_order_relaxed));
    tg_buf_adds(b, "# HELP taskgate_runs_created_total Runs the upstream created, by team.\n"
                   "# TYPE taskgate_runs_created_total counter\n");
    int count = atomic_load(&nteams);
    for (int i = 0; i < count; i++)
        tg_buf_printf(b, "taskgate_runs_created_total{team=\"%s\"} %lu\n", teams[i].name,
                      atomic_load_explicit(&teams[i].runs, memory_order_relaxed));
    tg_buf_adds(b, "# HELP taskgate_long_reads_authorised_total Event streams and awaited "
                   "results authorised for nginx to proxy, by team.\n"
                   "# TYPE taskgate_long_reads_authorised_total counter\n");
    for (int i = 0; i < count; i++)
        tg_buf_printf(b, "taskgate_long_reads_authorised_total{team=\"%s\"} %lu\n",
                      teams[i].name,
                      atomic_load_explicit(&teams[i].long_reads, memory_order_relaxed));
    tg_buf_adds(b, "# HELP taskgate_reads_authorised_total Reads of the upstream API authorised "
                   "for nginx to proxy, by kind.\n# TYPE taskgate_reads_authorised_total "
                   "counter\n");
    for (size_t i = 0; i < NREADS_AUTHORISED; i++)
        tg_buf_printf(b, "taskgate_reads_authorised_total{kind=\"%s\"} %lu\n",
                      read_outcomes[i], atomic_load_explicit(&reads[i], memory_order_relaxed));
    tg_buf_adds(b, "# HELP taskgate_reads_refused_total Reads of the upstream API refused, by "
                   "reason.\n# TYPE taskgate_reads_refused_total counter\n");
    for (size_t i = NREADS_AUTHORISED; i < NREADS; i++)
        tg_buf_printf(b, "taskgate_reads_refused_total{reason=\"%s\"} %lu\n",
                      read_outcomes[i], atomic_load_explicit(&reads[i], memory_order_relaxed));
    tg_buf_printf(b, "# HELP taskgate_db_wait_seconds_total Time writes spent waiting for their "
                     "write transaction to begin.\n# TYPE taskgate_db_wait_seconds_total counter\n"
                     "taskgate_db_wait_seconds_total %.6f\n"
                     "# HELP taskgate_db_writer_held_seconds_total Time the one SQLite writer "
                     "was held, by write transactions and by checkpoints (0 on PostgreSQL).\n"
                     "# TYPE taskgate_db_writer_held_seconds_total counter\n"
                     "taskgate_db_writer_held_seconds_total{by=\"writes\"} %.6f\n"
                     "taskgate_db_writer_held_seconds_total{by=\"checkpoints\"} %.6f\n"
                     "# HELP taskgate_db_transactions_total Write transactions begun.\n"
                     "# TYPE taskgate_db_transactions_total counter\n"
                     "taskgate_db_transactions_total %lu\n"
                     "# HELP taskgate_db_writes_total Writes (admissions, calls, final states, "
                     "...) those transactions held: several per transaction under group "
                     "commit.\n# TYPE taskgate_db_writes_total counter\n"
                     "taskgate_db_writes_total %lu\n"
                     "# HELP taskgate_db_wal_frames_total Pages the shared writer appended to "
                     "SQLite's WAL (0 on PostgreSQL: its WAL is the server's).\n"
                     "# TYPE taskgate_db_wal_frames_total counter\n"
                     "taskgate_db_wal_frames_total %lu\n"
                     "# HELP taskgate_db_group_redos_total Groups of writes taken back and run "
                     "again without one that failed after changing rows.\n"
                     "# TYPE taskgate_db_group_redos_total counter\n"
                     "taskgate_db_group_redos_total %lu\n"
                     "# HELP taskgate_auth_rechecks_total Submissions taken again with the "
                     "token read afresh: what was kept of it in memory had changed.\n"
                     "# TYPE taskgate_auth_rechecks_total counter\n"
                     "taskgate_auth_rechecks_total %lu\n",
                  (double)atomic_load(&db_wait.sum_us) / 1e6, (double)atomic_load(&db_held_us[0]) / 1e6,
                  (double)atomic_load(&db_held_us[1]) / 1e6, atomic_load(&db_tx),
                  atomic_load(&db_writes), atomic_load(&db_frames), atomic_load(&db_redos),
                  atomic_load(&auth_retries));
    render_histogram(b, "taskgate_db_wait_seconds",
                     "How long each write waited for its write transaction to begin (on "
                     "SQLite, the writer's queue and a checkpoint's locked pass).", &db_wait);
    tg_buf_printf(b, "# HELP taskgate_db_queries_again_total Queries whose PostgreSQL session "
                     "ended while they ran, made once more on a new connection, by outcome.\n"
                     "# TYPE taskgate_db_queries_again_total counter\n"
                     "taskgate_db_queries_again_total{outcome=\"answered\"} %lu\n"
                     "taskgate_db_queries_again_total{outcome=\"failed\"} %lu\n",
                  atomic_load(&db_again[0]), atomic_load(&db_again[1]));
}

static void render_reconcile(struct tg_buf *b)
{
    tg_buf_printf(b, "# HELP taskgate_reconcile_passes_total Reconciliation passes this daemon "
                     "ran.\n# TYPE taskgate_reconcile_passes_total counter\n"
                     "taskgate_reconcile_passes_total %lu\n"
                     "# HELP taskgate_reconcile_events_read_total Events of groups' runs "
                     "streams read by reconciliation.\n"
                     "# TYPE taskgate_reconcile_events_read_total counter\n"
                     "taskgate_reconcile_events_read_total %lu\n"
                     "# HELP taskgate_reconcile_last_pass_events Events the last reconciliation "
                     "pass read.\n# TYPE taskgate_reconcile_last_pass_events gauge\n"
                     "taskgate_reconcile_last_pass_events %lu\n",
                  atomic_load(&recon_passes), atomic_load(&recon_events),
                  atomic_load(&recon_last_events));
}

/* The run tracker, the runs' statuses by team, and webhooks. */
static void render_outcomes(struct tg_buf *b)
{
    tg_buf_printf(b, "# HELP taskgate_track_groups_followed Task groups this daemon follows now "
                     "(their event streams).\n# TYPE taskgate_track_groups_followed gauge\n"
                     "taskgate_track_groups_followed %ld\n"
                     "# HELP taskgate_track_groups_waiting Task groups with active runs that no "
                     "daemon follows yet (past track_groups_max, or just added).\n"
                     "# TYPE taskgate_track_groups_waiting gauge\n"
                     "taskgate_track_groups_waiting %ld\n"
                     "# HELP taskgate_track_events_total Events read from the task groups' event "
                     "streams.\n# TYPE taskgate_track_events_total counter\n"
                     "taskgate_track_events_total %lu\n"
                     "# HELP taskgate_track_reconnects_total Event streams opened again after "
                     "they ended early or failed.\n# TYPE taskgate_track_reconnects_total "
                     "counter\ntaskgate_track_reconnects_total %lu\n",
                  atomic_load(&track_followed), atomic_load(&track_waiting),
                  atomic_load(&track_events), atomic_load(&track_reconnects));
    render_histogram(b, "taskgate_track_lag_seconds",
                     "From a run's status change upstream (its modified_at) to its record, "
                     "for changes the event streams told.", &lag);
    tg_buf_adds(b, "# HELP taskgate_run_status_changes_total Runs that reached each status, by "
                   "team, as recorded from the event streams and webhooks.\n"
                   "# TYPE taskgate_run_status_changes_total counter\n");
    int count = atomic_load(&nteams);
    for (int i = 0; i < count; i++)
        for (size_t k = 0; k < NRUNSTATUS - 1; k++) {
            unsigned long v = atomic_load_explicit(&teams[i].statuses[k], memory_order_relaxed);
            if (v > 0)
                tg_buf_printf(b, "taskgate_run_status_changes_total{team=\"%s\",status=\"%s\"}"
                              " %lu\n", teams[i].name, run_statuses[k], v);
        }
    tg_buf_adds(b, "# HELP taskgate_webhooks_received_total Webhooks with a genuine signature, by "
                   "what they told: recorded (a status change), known (told already), ignored "
                   "(not a run of the gateway's).\n"
                   "# TYPE taskgate_webhooks_received_total counter\n");
    for (size_t i = 0; i < NHOOKS_RECEIVED; i++)
        tg_buf_printf(b, "taskgate_webhooks_received_total{outcome=\"%s\"} %lu\n",
                      hook_outcomes[i], atomic_load(&hooks[i]));
    tg_buf_printf(b, "# HELP taskgate_webhooks_duplicates_total Webhooks whose webhook-id was "
                     "received already: answered 2xx, nothing recorded.\n"
                     "# TYPE taskgate_webhooks_duplicates_total counter\n"
                     "taskgate_webhooks_duplicates_total %lu\n"
                     "# HELP taskgate_webhooks_refused_total Webhooks refused, by reason.\n"
                     "# TYPE taskgate_webhooks_refused_total counter\n",
                  atomic_load(&hooks[NHOOKS_RECEIVED]));
    for (size_t i = NHOOKS_RECEIVED + 1; i < NHOOKS; i++)
        tg_buf_printf(b, "taskgate_webhooks_refused_total{reason=\"%s\"} %lu\n",
                      hook_outcomes[i], atomic_load(&hooks[i]));
}

int tg_metrics_render(struct tg_buf *b)
{
    render_requests(b);
    render_upstream(b);
    render_records(b);
    render_reconcile(b);
    render_outcomes(b);
    return b->len < b->max ? TG_OK : TG_ETOOBIG;
}
