/* The PostgreSQL backend: the audit records' writes: submissions, calls and runs (tg_pg_int.h). Being written: each operation
 * says so until it is. */
#include "tg_pg_int.h"

int tg_pg_submission_begin(struct tg_store *st, const struct tg_submission *sub)
{
    (void)sub;
    return tg_pg_todo(st, "submission begin");
}

int tg_pg_submission_reject(struct tg_store *st, const struct tg_submission *sub,
                            int http_status, const char *error)
{
    (void)sub;
    (void)http_status;
    (void)error;
    return tg_pg_todo(st, "submission reject");
}

int tg_pg_submission_group(struct tg_store *st, const char *sub_id, const char *taskgroup_id)
{
    (void)sub_id;
    (void)taskgroup_id;
    return tg_pg_todo(st, "submission group");
}

int tg_pg_submission_finish(struct tg_store *st, const char *sub_id, enum tg_state state,
                            int http_status, int upstream_status, const char *error)
{
    (void)sub_id;
    (void)state;
    (void)http_status;
    (void)upstream_status;
    (void)error;
    return tg_pg_todo(st, "submission finish");
}

int tg_pg_recover_pending(struct tg_store *st, long *n)
{
    (void)n;
    return tg_pg_todo(st, "recover pending");
}

int tg_pg_call_record(struct tg_store *st, const struct tg_call *call)
{
    (void)call;
    return tg_pg_todo(st, "call record");
}

int tg_pg_call_finish(struct tg_store *st, const struct tg_call *call, enum tg_state state,
                      int http_status, const char *error)
{
    (void)call;
    (void)state;
    (void)http_status;
    (void)error;
    return tg_pg_todo(st, "call finish");
}
