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
    enum run_status status;
    enum run_status final; /* what the run ends as when its time is up */
    long long start_at;    /* monotonic ms when it leaves "queued" */
    long long done_at;     /* monotonic ms when it ends; < 0: only on demand */
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
/* Appends runs (taken over; the array itself stays the caller's) to g, logging a status
 * event. *run_before and *event_before get how many runs and events g had before. */
void sim_store_add(struct sim_group *g, struct sim_run *runs, size_t n, size_t *run_before,
                   size_t *event_before);
/* Ends run idx of g now as status (a terminal status) if it is still active; 1 if it
 * was. Call sim_store_log_status(g) after a batch of these. */
int sim_store_end_run(struct sim_group *g, size_t idx, enum run_status status);
/* Logs a task_group_status event for g's current status. */
void sim_store_log_status(struct sim_group *g);
/* Ends every active run of every group now as status; returns how many it ended. */
long sim_store_end_all(enum run_status status);
/* Whether g has an active run. */
int sim_store_active(const struct sim_group *g);

/* JSON texts. */
struct json_object *sim_store_status(const struct sim_group *g); /* TaskGroupStatus */
/* Appends run idx of g as a TaskRun object. */
int sim_store_run_json(struct sim_buf *b, const struct sim_group *g, size_t idx);
const char *sim_store_status_name(enum run_status s);
int sim_store_is_active(enum run_status s);
/* The run and event cursors: rcur_<hex>_<n> / ecur_<hex>_<n>. */
void sim_store_cursor(char *out, size_t size, const struct sim_group *g, char kind, size_t n);
/* Parses a cursor of kind ('r' or 'e') for g into *n; -1 when it is not one. */
int sim_store_parse_cursor(const char *s, const struct sim_group *g, char kind, size_t *n);

/* The output a run of this input will have: a schema-valid, deterministic output object
 * as JSON text (malloc'ed). spec is the task_spec that applies, or NULL. */
char *sim_store_make_output(struct json_object *spec, struct json_object *input);
/* The run input as echoed with include_input: the input object with the default task
 * spec applied and MCP server headers (write-only) left out. malloc'ed JSON text. */
char *sim_store_make_request(struct json_object *in, struct json_object *default_spec);

#endif
