/* The PostgreSQL backend: the audit reads, the read log and the prune (tg_pg_int.h). Being written: each operation
 * says so until it is. */
#include "tg_pg_int.h"

int tg_pg_audit_submissions(struct tg_store *st, const struct tg_audit_query *q,
                            tg_audit_fn fn, void *arg, struct tg_audit_page *page)
{
    (void)q;
    (void)fn;
    (void)arg;
    (void)page;
    return tg_pg_todo(st, "audit submissions");
}

int tg_pg_audit_open(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                     void *arg, struct tg_audit_page *page)
{
    (void)q;
    (void)fn;
    (void)arg;
    (void)page;
    return tg_pg_todo(st, "audit open");
}

int tg_pg_audit_runs(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                     void *arg, struct tg_audit_page *page)
{
    (void)q;
    (void)fn;
    (void)arg;
    (void)page;
    return tg_pg_todo(st, "audit runs");
}

int tg_pg_audit_admin(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                      void *arg, struct tg_audit_page *page)
{
    (void)q;
    (void)fn;
    (void)arg;
    (void)page;
    return tg_pg_todo(st, "audit admin");
}

int tg_pg_audit_submission(struct tg_store *st, const char *scope_team, const char *id,
                           tg_audit_fn fn, void *arg, long *rows)
{
    (void)scope_team;
    (void)id;
    (void)fn;
    (void)arg;
    (void)rows;
    return tg_pg_todo(st, "audit submission");
}

int tg_pg_audit_run(struct tg_store *st, const char *scope_team, const char *run_id,
                    tg_audit_fn fn, void *arg, long *rows)
{
    (void)scope_team;
    (void)run_id;
    (void)fn;
    (void)arg;
    (void)rows;
    return tg_pg_todo(st, "audit run");
}

int tg_pg_audit_group(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                      void *arg, struct tg_audit_page *page)
{
    (void)q;
    (void)fn;
    (void)arg;
    (void)page;
    return tg_pg_todo(st, "audit group");
}

int tg_pg_audit_prune(struct tg_store *st, const struct tg_actor *who, const char *before,
                      int dry_run, struct tg_audit_pruned *out)
{
    (void)who;
    (void)before;
    (void)dry_run;
    (void)out;
    return tg_pg_todo(st, "audit prune");
}

int tg_pg_audit_read_log(struct tg_store *st, const struct tg_actor *who, const char *query,
                         long rows)
{
    (void)who;
    (void)query;
    (void)rows;
    return tg_pg_todo(st, "audit read log");
}

const char *const *tg_pg_audit_columns(enum tg_audit_kind kind, int *n)
{
    (void)kind;
    *n = 0;
    return NULL;
}
