/* The store's face (contract in tg_store.h): chooses a backend from the config's database
 * value when a handle is opened, then passes every operation to the backend that opened
 * the handle (tg_store_backend.h). It holds no SQL and no state of its own besides which
 * backend runs the daemon's shared writer. */
#include <stdio.h>
#include "tg_core.h"
#include <string.h>

#include "tg_store.h"
#include "tg_store_backend.h"

/* Every backend this build has, tried in order; the first also answers for the build
 * (schema version, audit columns). */
static const struct tg_store_backend *const backends[] = {&tg_sqlite_backend, &tg_pg_backend};
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

static const struct tg_store_backend *backend_for(const char *database)
{
    for (size_t i = 0; i < NBACKENDS; i++)
        if (backends[i]->accepts(database))
            return backends[i];
    return NULL;
}

/* Every handle starts with a struct tg_store_head (tg_store_backend.h). */
static const struct tg_store_backend *be(const struct tg_store *st)
{
    return ((const struct tg_store_head *)(const void *)st)->be;
}

/* Names the scheme only: the rest of a URI may hold a password. */
static int unsupported(const char *database, char *err, size_t errlen)
{
    const char *end = database != NULL ? strstr(database, "://") : NULL;
    int n = end != NULL ? (int)(end - database) : 0;
    if (errlen > 0)
        snprintf(err, errlen, "database: %.*s:// is not supported by this build (it stores "
                 "its records in an SQLite file, given as a path, or in PostgreSQL, given as "
                 "a postgresql:// URI)", n > 32 ? 32 : n, database);
    return TG_EINVAL;
}

int tg_store_supported(const char *database, char *err, size_t errlen)
{
    return backend_for(database) != NULL ? TG_OK : unsupported(database, err, errlen);
}

int tg_store_open(struct tg_store **out, const char *database, int flags, int busy_ms,
                  char *err, size_t errlen)
{
    const struct tg_store_backend *b = backend_for(database);
    *out = NULL;
    if (b == NULL)
        return unsupported(database, err, errlen);
    int rc = b->open(out, database, flags, busy_ms, err, errlen);
    if (rc == TG_OK)
        ((struct tg_store_head *)(void *)*out)->be = b;
    return rc;
}

void tg_store_set_max_pages(long max_pages)
{
    for (size_t i = 0; i < NBACKENDS; i++)
        backends[i]->set_max_pages(max_pages);
}

/* The backend whose shared writer runs: set and cleared by the daemon's main thread
 * before the workers start and after they stopped. */
static const struct tg_store_backend *writer;

int tg_store_writer_start(const char *database, int busy_ms, char *err, size_t errlen)
{
    const struct tg_store_backend *b = backend_for(database);
    if (b == NULL)
        return unsupported(database, err, errlen);
    int rc = b->writer_start(database, busy_ms, err, errlen);
    if (rc == TG_OK)
        writer = b;
    return rc;
}

void tg_store_writer_stop(void)
{
    if (writer != NULL)
        writer->writer_stop();
    writer = NULL;
}

int tg_store_write_health(char *why, size_t whylen)
{
    return (writer != NULL ? writer : backends[0])->write_health(why, whylen);
}

int tg_store_secure_files(const char *database, int create, int *tightened, char *err,
                          size_t errlen)
{
    const struct tg_store_backend *b = backend_for(database);
    if (b == NULL) {
        if (tightened != NULL)
            *tightened = 0;
        return unsupported(database, err, errlen);
    }
    return b->secure_files(database, create, tightened, err, errlen);
}

/* This daemon's id, made once by tg_store_claim before any worker starts; read-only after. */
static char daemon_id[24];

/* The claim as the backend gave it, and which backend. */
struct claim_of {
    const struct tg_store_backend *be;
    struct tg_store_claim *c;
};
static struct claim_of held;

struct tg_store_claim *tg_store_claim(const char *database, const struct tg_daemon_info *me,
                                      int busy_ms, char *err, size_t errlen)
{
    const struct tg_store_backend *b = backend_for(database);
    if (b == NULL) {
        unsupported(database, err, errlen);
        return NULL;
    }
    char id[sizeof(daemon_id)];
    if (tg_random_id(id, sizeof(id), "dmn_", 8) != TG_OK) {
        snprintf(err, errlen, "cannot make the daemon's id: no randomness");
        return NULL;
    }
    struct tg_store_claim *c = b->claim(database, me, id, busy_ms, err, errlen);
    if (c == NULL)
        return NULL;
    memcpy(daemon_id, id, sizeof(daemon_id));
    held.be = b;
    held.c = c;
    return (struct tg_store_claim *)&held;
}

void tg_store_claim_release(struct tg_store_claim *c)
{
    struct claim_of *h = (struct claim_of *)c;
    if (h == NULL || h->c == NULL)
        return;
    h->be->claim_release(h->c);
    h->c = NULL;
}

const char *tg_store_kind(const struct tg_store *st)
{
    return be(st)->name;
}

const char *tg_store_daemon_id(void)
{
    return daemon_id[0] != '\0' ? daemon_id : NULL;
}

int tg_store_schema_version(void)
{
    return backends[0]->schema_version();
}

const char *const *tg_store_audit_columns(enum tg_audit_kind kind, int *n)
{
    if (kind == TG_AUDIT_KIND_DURATION)
        return tg_store_duration_columns(n);
    return backends[0]->audit_columns(kind, n);
}

/* ---- on a handle: the backend that opened it ----------------------------------------- */

void tg_store_close(struct tg_store *st)
{
    if (st != NULL)
        be(st)->close(st);
}

const char *tg_store_errmsg(const struct tg_store *st)
{
    return st != NULL ? be(st)->errmsg(st) : "no store";
}

int tg_store_migrate(struct tg_store *st, int *from, int *to)
{
    return be(st)->migrate(st, from, to);
}

int tg_store_ping(struct tg_store *st)
{
    return be(st)->ping(st);
}

int tg_store_write_probe(struct tg_store *st)
{
    return be(st)->write_probe(st);
}

int tg_store_auth(struct tg_store *st, const char *token_hash, int64_t now_ms,
                  struct tg_auth *out)
{
    return be(st)->auth(st, token_hash, now_ms, out);
}

int tg_store_auth_kept(struct tg_store *st, const char *token_hash, int64_t now_ms,
                       struct tg_auth *out)
{
    return be(st)->auth_kept != NULL ? be(st)->auth_kept(st, token_hash, now_ms, out)
                                     : be(st)->auth(st, token_hash, now_ms, out);
}

int tg_store_auth_confirm(struct tg_store *st, int64_t now_ms)
{
    return be(st)->auth_confirm != NULL ? be(st)->auth_confirm(st, now_ms) : TG_OK;
}

int tg_store_team_key(struct tg_store *st, int64_t team_id, char *buf, size_t buflen)
{
    return be(st)->team_key(st, team_id, buf, buflen);
}

int tg_store_team_id(struct tg_store *st, const char *name, int64_t *team_id)
{
    return be(st)->team_id(st, name, team_id);
}

int tg_store_team_add(struct tg_store *st, const struct tg_actor *who, const char *name,
                      const char *key, int64_t *team_id)
{
    return be(st)->team_add(st, who, name, key, team_id);
}

int tg_store_team_set_key(struct tg_store *st, const struct tg_actor *who, const char *name,
                          const char *key)
{
    return be(st)->team_set_key(st, who, name, key);
}

int tg_store_team_list(struct tg_store *st,
                       int (*fn)(void *arg, const struct tg_team_row *row), void *arg)
{
    return be(st)->team_list(st, fn, arg);
}

int tg_store_keys_summary(struct tg_store *st, long *sealed, long *clear)
{
    return be(st)->keys_summary(st, sealed, clear);
}

int tg_store_presets_clear(struct tg_store *st, long *n)
{
    return be(st)->presets_clear(st, n);
}

int tg_store_keys_reseal(struct tg_store *st, const struct tg_actor *who, int every,
                         const char *action, long *n)
{
    return be(st)->keys_reseal(st, who, every, action, n);
}

int tg_store_token_add(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
                       const char *token_id, const char *hash, enum tg_role role,
                       const char *label, int64_t expires_ms)
{
    return be(st)->token_add(st, who, team_id, token_id, hash, role, label, expires_ms);
}

int tg_store_token_revoke(struct tg_store *st, const struct tg_actor *who,
                          const char *token_id)
{
    return be(st)->token_revoke(st, who, token_id);
}

int tg_store_token_list(struct tg_store *st, const char *team,
                        int (*fn)(void *arg, const struct tg_token_row *row), void *arg)
{
    return be(st)->token_list(st, team, fn, arg);
}

int tg_store_preset_set(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
                        const char *name, const char *json)
{
    return be(st)->preset_set(st, who, team_id, name, json);
}

int tg_store_preset_get(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
                        const char *name, char **json)
{
    return be(st)->preset_get(st, pool, team_id, name, json);
}

int tg_store_preset_list(struct tg_store *st, int64_t team_id,
                         int (*fn)(void *arg, const char *name, const char *updated_at),
                         void *arg)
{
    return be(st)->preset_list(st, team_id, fn, arg);
}

int tg_store_submission_begin(struct tg_store *st, const struct tg_submission *sub)
{
    return be(st)->submission_begin(st, sub);
}

int tg_store_submission_reject(struct tg_store *st, const struct tg_submission *sub,
                               int http_status, const char *error)
{
    return be(st)->submission_reject(st, sub, http_status, error);
}

int tg_store_submission_group(struct tg_store *st, const char *sub_id,
                              const char *taskgroup_id)
{
    return be(st)->submission_group(st, sub_id, taskgroup_id);
}

int tg_store_submission_finish(struct tg_store *st, const char *sub_id, enum tg_state state,
                               int http_status, int upstream_status, const char *error)
{
    return be(st)->submission_finish(st, sub_id, state, http_status, upstream_status, error);
}

int tg_store_turn_begin(struct tg_store *st, const char *what)
{
    return be(st)->turn_begin(st, what);
}

void tg_store_turn_end(struct tg_store *st, const char *what)
{
    be(st)->turn_end(st, what);
}

int tg_store_recover_pending(struct tg_store *st, long *n)
{
    return be(st)->recover_pending(st, n);
}

int tg_store_call_record(struct tg_store *st, const struct tg_call *call)
{
    return be(st)->call_record(st, call);
}

int tg_store_call_finish(struct tg_store *st, const struct tg_call *call,
                         enum tg_state state, int http_status, const char *error)
{
    return be(st)->call_finish(st, call, state, http_status, error);
}

int tg_store_audit_submissions(struct tg_store *st, const struct tg_audit_query *q,
                               tg_audit_fn fn, void *arg, struct tg_audit_page *page)
{
    return be(st)->audit_submissions(st, q, fn, arg, page);
}

int tg_store_audit_open(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                        void *arg, struct tg_audit_page *page)
{
    return be(st)->audit_open(st, q, fn, arg, page);
}

int tg_store_audit_runs(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                        void *arg, struct tg_audit_page *page)
{
    return be(st)->audit_runs(st, q, fn, arg, page);
}

int tg_store_audit_admin(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                         void *arg, struct tg_audit_page *page)
{
    return be(st)->audit_admin(st, q, fn, arg, page);
}

int tg_store_audit_submission(struct tg_store *st, const char *scope_team, const char *id,
                              tg_audit_fn fn, void *arg, long *rows)
{
    return be(st)->audit_submission(st, scope_team, id, fn, arg, rows);
}

int tg_store_audit_run(struct tg_store *st, const char *scope_team, const char *run_id,
                       tg_audit_fn fn, void *arg, long *rows)
{
    return be(st)->audit_run(st, scope_team, run_id, fn, arg, rows);
}

int tg_store_audit_group(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
                         void *arg, struct tg_audit_page *page)
{
    return be(st)->audit_group(st, q, fn, arg, page);
}

int tg_store_audit_summary(struct tg_store *st, const struct tg_audit_query *q,
                           tg_audit_fn fn, void *arg, struct tg_audit_page *page)
{
    if (q == NULL || page == NULL)
        return be(st)->audit_summary(st, q, fn, arg, page); /* its refusal */
    int parts = q->parts != 0 ? q->parts : TG_AUDIT_PART_COUNTS | TG_AUDIT_PART_DURATIONS;
    int rc = TG_OK;
    memset(page, 0, sizeof(*page));
    long counted = 0;
    if (parts & TG_AUDIT_PART_COUNTS)
        rc = be(st)->audit_summary(st, q, fn, arg, page);
    if (rc == TG_OK && (parts & TG_AUDIT_PART_DURATIONS))
        rc = tg_store_durations(st, be(st), q, fn, arg, &counted);
    page->rows += counted;
    return rc;
}

int tg_store_summary_compact(struct tg_store *st)
{
    return be(st)->summary_compact(st);
}

int tg_store_audit_prune(struct tg_store *st, const struct tg_actor *who, const char *before,
                         int dry_run, struct tg_audit_pruned *out)
{
    return be(st)->audit_prune(st, who, before, dry_run, out);
}

int tg_store_audit_read_log(struct tg_store *st, const struct tg_actor *who,
                            const char *query, long rows)
{
    return be(st)->audit_read_log(st, who, query, rows);
}

int tg_store_group_owned(struct tg_store *st, int64_t team_id, const char *taskgroup_id)
{
    return be(st)->group_owned(st, team_id, taskgroup_id);
}

int tg_store_run_owned(struct tg_store *st, int64_t team_id, const char *run_id, char *group,
                       size_t grouplen)
{
    return be(st)->run_owned(st, team_id, run_id, group, grouplen);
}

int tg_store_idem_get(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
                      enum tg_idem_kind kind, const char *key, int64_t now_ms,
                      struct tg_idem_rec *out)
{
    return be(st)->idem_get(st, pool, team_id, kind, key, now_ms, out);
}

int tg_store_admit(struct tg_store *st, const struct tg_submission *sub,
                   const struct tg_admission *a, struct tg_admit_refusal *why)
{
    return be(st)->admit(st, sub, a, why);
}

int tg_store_idem_answer(struct tg_store *st, int64_t team_id, enum tg_idem_kind kind,
                         const char *key, const char *sub_id, int status,
                         const char *content_type, const char *body, size_t len)
{
    return be(st)->idem_answer(st, team_id, kind, key, sub_id, status, content_type, body, len);
}

int tg_store_idem_prune(struct tg_store *st, int64_t now_ms, long *n)
{
    return be(st)->idem_prune(st, now_ms, n);
}

int tg_store_limits_get(struct tg_store *st, int64_t team_id, struct tg_limits *out)
{
    return be(st)->limits_get(st, team_id, out);
}

int tg_store_limits_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                        const struct tg_limits *l)
{
    return be(st)->limits_set(st, who, team, l);
}

int tg_store_recon_load(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
                        struct tg_recon_sub *out)
{
    return be(st)->recon_load(st, pool, sub_id, out);
}

int tg_store_recon_cursor(struct tg_store *st, struct tg_pool *pool, const char *taskgroup_id,
                          int64_t before_ms, struct tg_recon_cursor *out)
{
    return be(st)->recon_cursor(st, pool, taskgroup_id, before_ms, out);
}

int tg_store_recon_write(struct tg_store *st, const struct tg_recon_write *w)
{
    return be(st)->recon_write(st, w);
}

int tg_store_open_counts(struct tg_store *st, long *pending, long *unknown,
                         int64_t *oldest_unknown_ms)
{
    return be(st)->open_counts(st, pending, unknown, oldest_unknown_ms);
}

int tg_store_unknown_ids(struct tg_store *st, struct tg_pool *pool, size_t max,
                         int64_t before_ms, const char ***ids, size_t *n)
{
    return be(st)->unknown_ids(st, pool, max, before_ms, ids, n);
}

int tg_store_prior_runs(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
                        size_t num_inputs, const char ***ids, const char **group)
{
    return be(st)->prior_runs(st, pool, sub_id, num_inputs, ids, group);
}

/* ---- what came of each run ---------------------------------------------------------------- */

int tg_store_track_take(struct tg_store *st, size_t max, struct tg_track_group *out,
                        size_t *n, long *waiting)
{
    return be(st)->track_take(st, max, out, n, waiting);
}

int tg_store_track_renew(struct tg_store *st)
{
    return be(st)->track_renew(st);
}

int tg_store_track_record(struct tg_store *st, const char *taskgroup_id,
                          const char *last_event_id, struct tg_run_change *changes,
                          size_t n, size_t *recorded)
{
    return be(st)->track_record(st, taskgroup_id, last_event_id, changes, n, recorded);
}

int tg_store_track_settle(struct tg_store *st, const char *taskgroup_id, int64_t adds, int gone,
                          const char *detail, int *again)
{
    return be(st)->track_settle(st, taskgroup_id, adds, gone, detail, again);
}

int tg_store_track_release(struct tg_store *st, const char *taskgroup_id)
{
    return be(st)->track_release(st, taskgroup_id);
}

int tg_store_webhook_record(struct tg_store *st, const char *webhook_id,
                            const char *taskgroup_id, struct tg_run_change *change,
                            enum tg_webhook_outcome *out, char *team, size_t teamlen)
{
    return be(st)->webhook_record(st, webhook_id, taskgroup_id, change, out, team, teamlen);
}

int tg_store_webhook_prune(struct tg_store *st, int64_t before_ms, long *n)
{
    return be(st)->webhook_prune(st, before_ms, n);
}
