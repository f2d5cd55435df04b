/* The audit records' writes (contract in tg_store.h): a submission from admission to its
 * final state, each upstream call with the runs it created, and the settling of what an
 * earlier daemon left pending. The request path's writes go through tg_sqlite_write, which
 * groups them on the daemon's shared writer (tg_sqlite_writer.c). */
#include "tg_store.h"
#include "tg_sqlite_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

/* ---- the audit records --------------------------------------------------------------------- */

/* Why an update guarded by the submission's state touched no row: TG_ENOTFOUND when the
 * submission does not exist, TG_EINVAL when its state forbids the change. */
static int refusal(struct tg_store *st, const char *sub_id, const char *what)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_SUB_STATE, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    rc = tg_sqlite_one(st, s, what);
    if (rc == TG_OK) {
        tg_sqlite_set_err(st, "%s: submission %.64s is already %s; its record is not rewritten", what,
                sub_id, tg_sqlite_col_text(s, 0));
        rc = TG_EINVAL;
    } else if (rc == TG_ENOTFOUND) {
        tg_sqlite_set_err(st, "%s: no submission %.64s", what, sub_id);
    }
    tg_sqlite_done(s);
    return rc;
}

int tg_sqlite_sub_insert(struct tg_store *st, const struct tg_submission *sub,
                         const char *resumes, enum tg_state state, int http_status,
                         const char *error)
{
    if (sub == NULL || sub->id == NULL || sub->interface == NULL || sub->num_inputs < 0)
        return tg_sqlite_invalid(st,
                                 "a submission needs an id, an interface and num_inputs >= 0");
    sqlite3_stmt *s;
    char received[TG_TIME_LEN], now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    if (sub->received_ms > 0)
        tg_time_format(sub->received_ms, received);
    else
        memcpy(received, now, sizeof(received));
    int rc = tg_sqlite_prep(st, S_SUB_INSERT, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub->id);
    sqlite3_bind_int64(s, 2, sub->team_id);
    tg_sqlite_bind_text(s, 3, sub->token_id);
    tg_sqlite_bind_text(s, 4, sub->request_id);
    tg_sqlite_bind_text(s, 5, received);
    tg_sqlite_bind_text(s, 6, state == TG_STATE_PENDING ? NULL : now);
    tg_sqlite_bind_text(s, 7, sub->remote_addr);
    tg_sqlite_bind_text(s, 8, sub->interface);
    tg_sqlite_bind_text(s, 9, sub->taskgroup_id);
    sqlite3_bind_int(s, 10, sub->num_inputs);
    tg_sqlite_bind_text(s, 11, tg_domain_state_name(state));
    tg_sqlite_bind_int_or_null(s, 12, http_status);
    tg_sqlite_bind_text(s, 13, error);
    tg_sqlite_bind_text(s, 14, sub->request);
    tg_sqlite_bind_text(s, 15, resumes);
    tg_sqlite_bind_text(s, 16, tg_store_daemon_id());
    rc = tg_sqlite_run(st, s, "record submission");
    if (rc == TG_EEXIST)
        tg_sqlite_set_err(st, "submission %.64s is already recorded", sub->id);
    else if (rc == TG_ENOTFOUND)
        tg_sqlite_set_err(st, "record submission: no team %lld or no token %.40s",
                (long long)sub->team_id, sub->token_id != NULL ? sub->token_id : "");
    if (rc == TG_OK)
        rc = tg_sqlite_counts_submission(st, sub->team_id, received, state);
    return rc;
}

struct sub_write {
    const struct tg_submission *sub;
    enum tg_state state;
    int http_status;
    const char *error;
};

static int sub_insert_w(struct tg_store *st, void *arg)
{
    const struct sub_write *a = arg;
    return tg_sqlite_sub_insert(st, a->sub, NULL, a->state, a->http_status, a->error);
}

static int sub_insert(struct tg_store *st, const struct tg_submission *sub,
                      enum tg_state state, int http_status, const char *error)
{
    struct sub_write a = {sub, state, http_status, error};
    return tg_sqlite_write(st, sub_insert_w, &a);
}

int tg_sqlite_submission_begin(struct tg_store *st, const struct tg_submission *sub)
{
    return sub_insert(st, sub, TG_STATE_PENDING, 0, NULL);
}

int tg_sqlite_submission_reject(struct tg_store *st, const struct tg_submission *sub,
                                int http_status, const char *error)
{
    return sub_insert(st, sub, TG_STATE_REJECTED, http_status, error);
}

static int sub_group_w(struct tg_store *st, void *arg)
{
    const char *const *a = arg;
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_SUB_GROUP, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, a[0]);
    tg_sqlite_bind_text(s, 2, a[1]);
    rc = tg_sqlite_run(st, s, "record group");
    if (rc == TG_OK && sqlite3_changes(st->db) == 0)
        rc = refusal(st, a[0], "record group");
    return rc;
}

int tg_sqlite_submission_group(struct tg_store *st, const char *sub_id,
                               const char *taskgroup_id)
{
    if (sub_id == NULL || taskgroup_id == NULL)
        return tg_sqlite_invalid(st, "submission group: missing argument");
    const char *a[2] = {sub_id, taskgroup_id};
    return tg_sqlite_write(st, sub_group_w, a);
}

int tg_sqlite_sub_facts(struct tg_store *st, const char *sub_id, struct tg_sqlite_sub_facts *f)
{
    sqlite3_stmt *s;
    memset(f, 0, sizeof(*f));
    int rc = tg_sqlite_prep(st, S_SUB_FACTS, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    rc = tg_sqlite_one(st, s, "read the submission");
    if (rc == TG_OK) {
        f->team_id = sqlite3_column_int64(s, 0);
        tg_sqlite_col_copy(f->day, sizeof(f->day), s, 1);
        tg_sqlite_col_copy(f->month, sizeof(f->month), s, 2);
        tg_sqlite_col_copy(f->state, sizeof(f->state), s, 3);
        f->had_runs = sqlite3_column_int(s, 4);
    }
    tg_sqlite_done(s);
    return rc;
}

/* Runs the UPDATE s of the open submission sub_id (bound as ?1 by the caller) and refuses
 * when it touched no row. */
static int update_open(struct tg_store *st, sqlite3_stmt *s, const char *sub_id,
                       const char *what)
{
    int rc = tg_sqlite_run(st, s, what);
    if (rc == TG_OK && sqlite3_changes(st->db) == 0)
        rc = refusal(st, sub_id, what);
    return rc;
}

/* The final-state UPDATE of a submission as known before the write (its state then, was),
 * and its move in the audit summary, inside the caller's transaction; call: the call this
 * write recorded, whose status upstream_status is (none: NULL, 0), else 0 keeps the status
 * recorded before. */
static int finish_in_tx(struct tg_store *st, const char *sub_id,
                        const struct tg_sqlite_sub_facts *was, enum tg_state state,
                        int http_status, int upstream_status, const char *error,
                        const struct tg_call *call)
{
    sqlite3_stmt *s;
    char now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    int rc = tg_sqlite_prep(st, call != NULL ? S_SUB_FINISH_CALL : S_SUB_FINISH, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    tg_sqlite_bind_text(s, 2, tg_domain_state_name(state));
    tg_sqlite_bind_int_or_null(s, 3, http_status);
    tg_sqlite_bind_int_or_null(s, 4, upstream_status);
    tg_sqlite_bind_text(s, 5, error);
    tg_sqlite_bind_text(s, 6, now);
    rc = update_open(st, s, sub_id, "finish submission");
    if (rc == TG_OK)
        rc = tg_sqlite_counts_move_known(st, sub_id, was->state, tg_domain_state_name(state),
                                         was, call != NULL ? call->num_runs : 0,
                                         call != NULL ? call->processors : NULL);
    return rc;
}

static int check_final(struct tg_store *st, const char *sub_id, enum tg_state state)
{
    if (sub_id == NULL)
        return tg_sqlite_invalid(st, "finish: no submission id");
    if (state == TG_STATE_PENDING || (unsigned)state > TG_STATE_UNKNOWN)
        return tg_sqlite_invalid(st, "finish: the final state must be accepted, rejected, failed or "
                           "unknown");
    return TG_OK;
}

static int call_in_tx(struct tg_store *st, const struct tg_call *call,
                      const struct tg_sqlite_sub_facts *finishing);

/* A final state, with the call that led to it when there is one. */
struct finish_write {
    const struct tg_call *call;
    const char *sub_id;
    enum tg_state state;
    int http_status;
    int upstream_status;
    const char *error;
};

static int finish_w(struct tg_store *st, void *arg)
{
    const struct finish_write *a = arg;
    /* One read of the submission for the whole write: the steps below are handed it. */
    struct tg_sqlite_sub_facts was;
    int rc = tg_sqlite_sub_facts(st, a->sub_id, &was);
    if (rc == TG_ENOTFOUND)
        return refusal(st, a->sub_id, "finish submission");
    if (rc != TG_OK)
        return rc;
    /* A settled submission (or none) is refused before its call is looked at; the final
     * UPDATE sets the call's status, so the call's own UPDATE is left out. */
    if (strcmp(was.state, "pending") != 0 && strcmp(was.state, "unknown") != 0)
        return refusal(st, a->sub_id, "finish submission");
    if (a->call != NULL)
        rc = call_in_tx(st, a->call, &was);
    if (rc == TG_OK)
        rc = finish_in_tx(st, a->sub_id, &was, a->state, a->http_status, a->upstream_status,
                          a->error, a->call);
    return rc;
}

int tg_sqlite_submission_finish(struct tg_store *st, const char *sub_id, enum tg_state state,
                                int http_status, int upstream_status, const char *error)
{
    int rc = check_final(st, sub_id, state);
    if (rc != TG_OK)
        return rc;
    struct finish_write a = {NULL, sub_id, state, http_status, upstream_status, error};
    return tg_sqlite_write(st, finish_w, &a);
}

static int check_call(struct tg_store *st, const struct tg_call *c)
{
    if (c == NULL || c->submission_id == NULL || c->operation == NULL || c->method == NULL ||
        c->path == NULL)
        return tg_sqlite_invalid(st, "a call needs a submission, an operation, a method and a path");
    if ((unsigned)c->outcome > TG_OUTCOME_NOT_SENT)
        return tg_sqlite_invalid(st, "unknown call outcome");
    if (c->num_runs == 0)
        return TG_OK;
    if (c->run_ids == NULL || c->first_input < 0 ||
        c->num_runs > (size_t)(INT_MAX - c->first_input))
        return tg_sqlite_invalid(st, "a call with runs needs run ids and a first input");
    for (size_t i = 0; i < c->num_runs; i++)
        if (c->run_ids[i] == NULL)
            return tg_sqlite_invalid(st, "a run id is missing");
    return TG_OK;
}

static int insert_call(struct tg_store *st, const struct tg_call *c)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_CALL_INSERT, &s);
    if (rc != TG_OK)
        return rc;
    char started[TG_TIME_LEN], finished[TG_TIME_LEN];
    tg_time_format(c->started_ms, started);
    tg_time_format(c->started_ms + (c->duration_ms > 0 ? c->duration_ms : 0), finished);
    tg_sqlite_bind_text(s, 1, c->submission_id);
    sqlite3_bind_int(s, 2, c->seq);
    tg_sqlite_bind_text(s, 3, c->operation);
    tg_sqlite_bind_text(s, 4, c->method);
    tg_sqlite_bind_text(s, 5, c->path);
    if (c->first_input >= 0)
        sqlite3_bind_int(s, 6, c->first_input);
    sqlite3_bind_int(s, 7, c->num_inputs);
    tg_sqlite_bind_text(s, 8, started);
    tg_sqlite_bind_text(s, 9, c->outcome == TG_OUTCOME_NOT_SENT ? NULL : finished);
    sqlite3_bind_int64(s, 10, c->duration_ms);
    tg_sqlite_bind_text(s, 11, tg_domain_outcome_name(c->outcome));
    tg_sqlite_bind_int_or_null(s, 12, c->http_status);
    tg_sqlite_bind_text(s, 13, c->run_cursor);
    tg_sqlite_bind_text(s, 14, c->event_cursor);
    tg_sqlite_bind_text(s, 15, c->error);
    rc = tg_sqlite_run(st, s, "record upstream call");
    if (rc == TG_EEXIST)
        tg_sqlite_set_err(st, "call %d of submission %.64s is already recorded", c->seq,
                c->submission_id);
    return rc;
}

/* The call, its runs and, unless the final UPDATE that follows sets it (finishing: the
 * submission as the final write read it), the submission's upstream status, inside a
 * transaction. */
static int call_in_tx(struct tg_store *st, const struct tg_call *call,
                      const struct tg_sqlite_sub_facts *finishing)
{
    sqlite3_stmt *s;
    int rc = TG_OK;
    if (call->taskgroup_id != NULL) {
        /* Before the call's row: its trigger follows the submission's group. Touches no
         * row when the record holds that group already, which is the usual case. */
        rc = tg_sqlite_prep(st, S_SUB_CALL_GROUP, &s);
        if (rc != TG_OK)
            return rc;
        tg_sqlite_bind_text(s, 1, call->submission_id);
        tg_sqlite_bind_text(s, 2, call->taskgroup_id);
        rc = tg_sqlite_run(st, s, "record the call's group");
    }
    if (rc == TG_OK && finishing == NULL) {
        rc = tg_sqlite_prep(st, S_SUB_UPSTREAM, &s);
        if (rc != TG_OK)
            return rc;
        tg_sqlite_bind_text(s, 1, call->submission_id);
        tg_sqlite_bind_int_or_null(s, 2, call->http_status);
        rc = update_open(st, s, call->submission_id, "record upstream call");
    }
    if (rc == TG_OK)
        rc = insert_call(st, call);
    if (rc == TG_OK)
        rc = tg_sqlite_runs_add(st, call->submission_id, call->seq, call->first_input,
                                call->num_runs, call->run_ids, call->processors, finishing);
    return rc;
}

/* Whether any submission is pending: a read, so that a database that cannot be written
 * (read-only, full) still lets the daemon start when there is nothing to settle. */
static int any_pending(struct tg_store *st, int *yes)
{
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(st->db, "SELECT EXISTS (SELECT 1 FROM submissions"
                                         " WHERE state = 'pending')", -1, &s, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    int rc = TG_OK;
    if (src == SQLITE_ROW)
        *yes = sqlite3_column_int(s, 0);
    else
        rc = tg_sqlite_db_err(st, src, "look for pending submissions");
    sqlite3_finalize(s);
    return rc;
}

int tg_sqlite_recover_pending(struct tg_store *st, long *n)
{
    sqlite3_stmt *s;
    char now[TG_TIME_LEN];
    int pending = 1;
    if (n != NULL)
        *n = 0;
    int rc = any_pending(st, &pending);
    if (rc != TG_OK || !pending)
        return rc;
    tg_sqlite_now_text(now);
    rc = tg_sqlite_prep(st, S_RECOVER, &s);
    if (rc == TG_OK)
        rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    /* The summary first: it moves the very submissions the UPDATE settles. */
    rc = tg_sqlite_counts_recover(st, tg_store_daemon_id());
    tg_sqlite_bind_text(s, 1, now);
    tg_sqlite_bind_text(s, 2, tg_store_daemon_id()); /* this daemon's own go on */
    if (rc == TG_OK)
        rc = tg_sqlite_run(st, s, "settle pending submissions");
    else
        tg_sqlite_done(s);
    if (n != NULL)
        *n = rc == TG_OK ? (long)sqlite3_changes(st->db) : 0;
    return tg_sqlite_tx_end(st, rc);
}

static int call_w(struct tg_store *st, void *arg)
{
    const struct tg_call *const *call = arg;
    return call_in_tx(st, *call, NULL);
}

int tg_sqlite_call_record(struct tg_store *st, const struct tg_call *call)
{
    int rc = check_call(st, call);
    if (rc != TG_OK)
        return rc;
    return tg_sqlite_write(st, call_w, &call);
}

int tg_sqlite_call_finish(struct tg_store *st, const struct tg_call *call, enum tg_state state,
                          int http_status, const char *error)
{
    int rc = check_call(st, call);
    if (rc == TG_OK)
        rc = check_final(st, call->submission_id, state);
    if (rc != TG_OK)
        return rc;
    struct finish_write a = {call, call->submission_id, state, http_status, call->http_status,
                             error};
    return tg_sqlite_write(st, finish_w, &a);
}
