/* tg_sim_store.h: the simulator's in-memory Task Group store (tg_sim_store.c): groups, their
 * runs and run lifecycle, and each group's event log; shared by the API handlers
 * (tg_sim_api.c) and the streams (tg_sim_stream.c). Test code only.
 *
 * Every function here, and every access to the structs, happens with sim_lock held.
 * Groups are never freed, so a group pointer stays valid after the lock is dropped; a run
 * is reached by its index (the runs array moves when it grows). */
#ifndef TG_SIM_STORE_H
#define TG_SIM_STORE_H

#include "tg_sim.h"

enum run_status { RS_QUEUED, RS_RUNNING, RS_COMPLETED, RS_FAILED, RS_CANCELLED };

struct sim_run {
    char id[40];        /* trun_<32 hex> */
    char *processor;
    char *input;        /* canonical JSON text of the input's "input" */
    char *metadata;     /* canonical JSON text, or NULL */
    char *request;      /* the run input as a TaskRunInput JSON object text */
    char *output;       /* the output object (TaskRunTextOutput / TaskRunJsonOutput) */
    char *error;        /* the message of its error when it fails, or NULL (a default) */
    char *webhook_url;  /* where its task_run.status webhook goes when it ends, or NULL */
    enum run_status status;
    enum run_status final; /* what the run ends as when its time is up (sim_store_outcome) */
    long long start_at;    /* monotonic ms when it leaves "queued" */
    long long done_at;     /* monotonic ms when it ends; < 0: only on demand */
    size_t batch;          /* the add-runs call that made it (0 for the first) */
    char created_at[32];
    char modified_at[32];
};

struct sim_group {
    char id[40]; /* tgrp_<32 hex> */
    char *account;
    char created_at[32];
    char modified_at[32];
    char *metadata; /* canonical JSON text, or NULL */
    struct sim_run *runs;
    size_t nruns, cap;
    size_t counts[5];    /* runs by status (enum run_status) */
    size_t first_active; /* runs before it are all done */
    long long next_due;  /* earliest start_at/done_at still to come; < 0: none */
    char **events;       /* the event log: complete event JSON texts, oldest first */
    size_t nevents, events_cap;
    size_t *batch_runs;   /* per add-runs call: the index of its first run */
    size_t *batch_events; /* per add-runs call: the index of its status event */
    size_t nbatches, batches_cap;
    struct sim_group *next; /* hash chain */
};

/* Where a request goes (tg_sim_api.c): the operation and the ids in its path (not
 * NUL-terminated; NULL when absent). */
struct sim_route {
    enum sim_op op;
    const char *id; /* the group id */
    size_t id_len;
    const char *run_id;
    size_t run_id_len;
};
void sim_api_route(const struct sim_request *req, struct sim_route *r);

/* Settings: the duration of runs created from now on (ms; -1: they end only on demand
 * through /_sim/runs/complete) and the pause between two stream events. */
extern long sim_run_ms;
extern long sim_stream_interval_ms;

void sim_store_init(void);
void sim_store_counts(long *runs_created, long *groups);

/* A new group of account with metadata (canonical JSON text or NULL, taken over). */
struct sim_group *sim_store_group_new(const char *account, char *metadata);
struct sim_group *sim_store_group_find(const char *id, size_t len);
/* The group holding run id, with the run's index in *idx; NULL when there is none. */
struct sim_group *sim_store_run_find(const char *id, size_t len, size_t *idx);

/* Brings g's runs up to now: due transitions happen, terminal ones logged as events. */
void sim_store_advance(struct sim_group *g);
/* Appends runs (taken over; the array itself stays the caller's) to g as a new batch,
 * logging a status event; returns the batch's number (0 for the first). */
size_t sim_store_add(struct sim_group *g, struct sim_run *runs, size_t n);
/* Ends run idx of g now as status (a terminal status; -1: the one it was to end as) if it
 * is still active; 1 if it was. Call sim_store_log_status(g) after a batch of these. */
int sim_store_end_run(struct sim_group *g, size_t idx, int status);
/* Logs a task_group_status event for g's current status. */
void sim_store_log_status(struct sim_group *g);
/* Ends every active run of every group now as status (-1 as above); returns how many it
 * ended. */
long sim_store_end_all(int status);
/* Whether g has an active run. */
int sim_store_active(const struct sim_group *g);

/* JSON texts. */
struct json_object *sim_store_status(const struct sim_group *g); /* TaskGroupStatus */
/* Appends run idx of g as a TaskRun object. */
int sim_store_run_json(struct sim_buf *b, const struct sim_group *g, size_t idx);
const char *sim_store_status_name(enum run_status s);
int sim_store_is_active(enum run_status s);
/* Cursors (kind 'r': the runs stream, 'e': the events stream) are <kind>cur_<hex>_<b>
 * for "before batch b" (what add-runs answers) and <kind>cur_<hex>_<b>_<m> for "after
 * the m-th run or event since batch b began" (a stream's event ids). */
void sim_store_cursor(char *out, size_t size, const struct sim_group *g, char kind, size_t b,
                      size_t m);
/* The event id of run idx in the runs stream. */
void sim_store_run_cursor(char *out, size_t size, const struct sim_group *g, size_t idx);
/* Parses a cursor of kind for g into *pos, the index of the run or event it comes
 * before; -1 when it is not one (pos may still be past the end: callers check). */
int sim_store_parse_cursor(const char *s, const struct sim_group *g, char kind, size_t *pos);

/* What a run asks to end as: "failed" with an error when its metadata says sim_outcome
 * "failed" (sim_error: the message) or its input is a text starting "fail:" (the rest,
 * trimmed, is the message); "cancelled" likewise; else "completed". *error receives a
 * malloc'ed message or NULL. in is the run input object. */
enum run_status sim_store_outcome(struct json_object *in, char **error);

/* The output a run of this input will have: a schema-valid, deterministic output object
 * as JSON text (malloc'ed). spec is the task_spec that applies, or NULL. */
char *sim_store_make_output(struct json_object *spec, struct json_object *input);
/* The run input as echoed with include_input: the input object with the default task
 * spec applied and MCP server headers (write-only) left out. malloc'ed JSON text. */
char *sim_store_make_request(struct json_object *in, struct json_object *default_spec);

#endif
