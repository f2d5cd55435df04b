/* Inside the store: what a backend provides behind the face (tg_store.h), as curl's
 * vtls_int.h and its struct Curl_ssl per TLS library. Only the face (tg_store.c) and the
 * backends (store/sqlite/, store/postgres/) include this; handlers, the core and
 * the CLI see tg_store.h alone.
 *
 * A backend is one `const struct tg_store_backend` listed in tg_store.c's table. Each
 * operation has the contract of the tg_store_ call of the same name in tg_store.h; the
 * face only chooses the backend (at open, from the config's database value) and
 * dispatches. A backend completes struct tg_store in its own inside header, beginning
 * with a struct tg_store_head (curl's backends likewise each define their own
 * struct ssl_backend_data): only one backend's definition is ever visible in a file. */
#ifndef TG_STORE_BACKEND_H
#define TG_STORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "tg_store.h"
#include "tg_store_usage.h"

struct tg_store_backend;

/* One duration bucket of a team's processor (NULL: none), for audit_durations; a non-zero
 * return stops the read and is returned by it. */
typedef int (*tg_duration_fn)(void *arg, const char *team, const char *processor,
                              int64_t bucket_ms, int64_t runs, int64_t total_ms,
                              int64_t max_ms);

/* tg_store_durations.c: the summary's durations by processor from the buckets of
 * audit_durations, passed to fn as TG_AUDIT_KIND_DURATION rows; *rows counts them. */
int tg_store_durations(struct tg_store *st, const struct tg_store_backend *be,
                       const struct tg_audit_query *q, tg_audit_fn fn, void *arg, long *rows);
const char *const *tg_store_duration_columns(int *n);

/* The first member of every backend's struct tg_store: the face reads it to dispatch. The
 * face sets it when the backend's open returns a handle. */
struct tg_store_head {
    const struct tg_store_backend *be;
};

struct tg_store_backend {
    const char *name; /* "sqlite": for messages */
    /* Whether the config's database value is this backend's (a file path for SQLite, a
     * URI of its scheme for a server). */
    int (*accepts)(const char *database);

    /* Without a handle: open, and what concerns the process (settings made once at
     * start-up, the daemon's shared writer) or the build (the schema version, the audit
     * rows' columns). The path arguments are the config's database value. */
    int (*open)(struct tg_store **out, const char *path, int flags, int busy_ms, char *err,
        size_t errlen);
    void (*set_max_pages)(long max_pages);
    int (*writer_start)(const char *path, int busy_ms, char *err, size_t errlen);
    void (*writer_stop)(void);
    int (*write_health)(char *why, size_t whylen);
    int (*secure_files)(const char *path, int create, int *tightened, char *err,
        size_t errlen);
    int (*schema_version)(void);
    /* tg_store_claim: the backend's claim, an opaque object of its own (id is this
     * daemon's, already made by the face). */
    struct tg_store_claim *(*claim)(const char *database, const struct tg_daemon_info *me,
        const char *id, int busy_ms, char *err, size_t errlen);
    void (*claim_release)(struct tg_store_claim *c);
    const char *const *(*audit_columns)(enum tg_audit_kind kind, int *n);

    /* On a handle the backend opened. */
    void (*close)(struct tg_store *st);
    const char *(*errmsg)(const struct tg_store *st);
    int (*migrate)(struct tg_store *st, int *from, int *to);
    int (*ping)(struct tg_store *st);
    int (*write_probe)(struct tg_store *st);
    int (*auth)(struct tg_store *st, const char *token_hash, int64_t now_ms,
        struct tg_auth *out);
    /* Optional (NULL: every check is read, as auth, and none is provisional). */
    int (*auth_kept)(struct tg_store *st, const char *token_hash, int64_t now_ms,
        struct tg_auth *out);
    int (*auth_confirm)(struct tg_store *st, int64_t now_ms);
    int (*team_key)(struct tg_store *st, int64_t team_id, char *buf, size_t buflen);
    int (*team_id)(struct tg_store *st, const char *name, int64_t *team_id);
    int (*team_add)(struct tg_store *st, const struct tg_actor *who, const char *name,
        const char *key, int64_t *team_id);
    int (*team_set_key)(struct tg_store *st, const struct tg_actor *who, const char *name,
        const char *key);
    int (*team_list)(struct tg_store *st,
        int (*fn)(void *arg, const struct tg_team_row *row), void *arg);
    int (*keys_summary)(struct tg_store *st, long *sealed, long *clear);
    int (*presets_clear)(struct tg_store *st, long *n);
    int (*keys_reseal)(struct tg_store *st, const struct tg_actor *who, int every,
        const char *action, long *n);
    int (*token_add)(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
        const char *token_id, const char *hash, enum tg_role role, const char *label,
        int64_t expires_ms);
    int (*token_revoke)(struct tg_store *st, const struct tg_actor *who, const char *token_id);
    int (*token_list)(struct tg_store *st, const char *team,
        int (*fn)(void *arg, const struct tg_token_row *row), void *arg);
    int (*preset_set)(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
        const char *name, const char *json);
    int (*preset_get)(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
        const char *name, char **json);
    int (*preset_list)(struct tg_store *st, int64_t team_id,
        int (*fn)(void *arg, const char *name, const char *updated_at), void *arg);
    int (*submission_begin)(struct tg_store *st, const struct tg_submission *sub);
    int (*submission_reject)(struct tg_store *st, const struct tg_submission *sub,
        int http_status, const char *error);
    int (*submission_group)(struct tg_store *st, const char *sub_id, const char *taskgroup_id);
    int (*submission_finish)(struct tg_store *st, const char *sub_id, enum tg_state state,
        int http_status, int upstream_status, const char *error);
    int (*recover_pending)(struct tg_store *st, long *n);
    int (*turn_begin)(struct tg_store *st, const char *what);
    void (*turn_end)(struct tg_store *st, const char *what);
    int (*call_record)(struct tg_store *st, const struct tg_call *call);
    int (*call_finish)(struct tg_store *st, const struct tg_call *call, enum tg_state state,
        int http_status, const char *error);
    int (*audit_submissions)(struct tg_store *st, const struct tg_audit_query *q,
        tg_audit_fn fn, void *arg, struct tg_audit_page *page);
    int (*audit_open)(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
        void *arg, struct tg_audit_page *page);
    int (*audit_runs)(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
        void *arg, struct tg_audit_page *page);
    int (*audit_admin)(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
        void *arg, struct tg_audit_page *page);
    int (*audit_submission)(struct tg_store *st, const char *scope_team, const char *id,
        tg_audit_fn fn, void *arg, long *rows);
    int (*audit_run)(struct tg_store *st, const char *scope_team, const char *run_id,
        tg_audit_fn fn, void *arg, long *rows);
    int (*audit_group)(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
        void *arg, struct tg_audit_page *page);
    int (*audit_summary)(struct tg_store *st, const struct tg_audit_query *q, tg_audit_fn fn,
        void *arg, struct tg_audit_page *page);
    /* The summary's durations as the backend counts them (duration_counts): fn once per
     * (team, processor, bucket) with a run in q's window and scope, in that order, with
     * the bucket's lower bound, its runs, their total and the longest. */
    int (*audit_durations)(struct tg_store *st, const struct tg_audit_query *q,
        tg_duration_fn fn, void *arg);
    int (*summary_compact)(struct tg_store *st);
    int (*audit_prune)(struct tg_store *st, const struct tg_actor *who, const char *before,
        int dry_run, struct tg_audit_pruned *out);
    int (*audit_read_log)(struct tg_store *st, const struct tg_actor *who, const char *query,
        long rows);
    int (*group_owned)(struct tg_store *st, int64_t team_id, const char *taskgroup_id);
    int (*run_owned)(struct tg_store *st, int64_t team_id, const char *run_id, char *group,
        size_t grouplen);
    int (*idem_get)(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
        enum tg_idem_kind kind, const char *key, int64_t now_ms, struct tg_idem_rec *out);
    int (*admit)(struct tg_store *st, const struct tg_submission *sub,
        const struct tg_admission *a, struct tg_admit_refusal *why);
    int (*idem_answer)(struct tg_store *st, int64_t team_id, enum tg_idem_kind kind,
        const char *key, const char *sub_id, int status, const char *content_type,
        const char *body, size_t len);
    int (*idem_prune)(struct tg_store *st, int64_t now_ms, long *n);
    int (*limits_get)(struct tg_store *st, int64_t team_id, struct tg_limits *out);
    int (*limits_set)(struct tg_store *st, const struct tg_actor *who, const char *team,
        const struct tg_limits *l);
    int (*recon_load)(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
        struct tg_recon_sub *out);
    int (*recon_cursor)(struct tg_store *st, struct tg_pool *pool, const char *taskgroup_id,
        int64_t before_ms, struct tg_recon_cursor *out);
    int (*recon_write)(struct tg_store *st, const struct tg_recon_write *w);
    int (*open_counts)(struct tg_store *st, long *pending, long *unknown,
        int64_t *oldest_unknown_ms);
    int (*unknown_ids)(struct tg_store *st, struct tg_pool *pool, size_t max,
        int64_t before_ms, const char ***ids, size_t *n);
    int (*prior_runs)(struct tg_store *st, struct tg_pool *pool, const char *sub_id,
        size_t num_inputs, const char ***ids, const char **group);
    /* what came of each run */
    int (*track_take)(struct tg_store *st, size_t max, struct tg_track_group *out, size_t *n,
        long *waiting);
    int (*track_renew)(struct tg_store *st);
    int (*track_record)(struct tg_store *st, const char *taskgroup_id,
        const char *last_event_id, struct tg_run_change *changes, size_t n,
        size_t *recorded);
    int (*track_settle)(struct tg_store *st, const char *taskgroup_id, int64_t adds, int gone,
        const char *detail, int *again);
    int (*track_release)(struct tg_store *st, const char *taskgroup_id);
    int (*webhook_record)(struct tg_store *st, const char *webhook_id,
        const char *taskgroup_id, struct tg_run_change *change,
        enum tg_webhook_outcome *out, char *team, size_t teamlen);
    int (*webhook_prune)(struct tg_store *st, int64_t before_ms, long *n);
    /* prices, budgets and usage (tg_store_usage.h) */
    const struct tg_store_usage_ops *usage;
};

/* The operations of tg_store_usage.h, each with the contract of its tg_store_ call. */
struct tg_store_usage_ops {
    int (*price_list)(struct tg_store *st,
        int (*fn)(void *arg, const struct tg_price_row *row), void *arg);
    int (*price_set)(struct tg_store *st, const struct tg_actor *who, const char *processor,
        const char *from, int64_t micro_per_run);
    int (*budget_get)(struct tg_store *st, int64_t team_id, struct tg_budget *out);
    int (*budget_set)(struct tg_store *st, const struct tg_actor *who, const char *team,
        int64_t monthly_micro, int64_t daily_micro, int soft, int64_t now_ms);
    int (*spend_list)(struct tg_store *st, const char *month,
        int (*fn)(void *arg, const struct tg_spend_row *row), void *arg);
    int (*usage)(struct tg_store *st, const struct tg_usage_query *q,
        int (*fn)(void *arg, const struct tg_usage_row *row), void *arg, long *rows);
};

/* MCP server header values of a preset at rest (tg_store_mcp.c), for every backend: what
 * to do with the header values of the preset JSON body of team. */
enum tg_store_mcp_mode {
    TG_STORE_MCP_SEAL,   /* seal the values still in clear (a preset being stored, or one
                          * an older version stored) */
    TG_STORE_MCP_RESEAL, /* open every sealed value and seal it again (a rotation) */
    TG_STORE_MCP_OPEN,   /* open every sealed value: the preset as it is used and shown */
    TG_STORE_MCP_COUNT   /* only count the values in clear */
};
/* *out (may be NULL for TG_STORE_MCP_COUNT) receives a malloc'd new body when a value
 * changed, else NULL: the body stands as it is. *changed (may be NULL) counts the values
 * concerned. TG_OK, or an error with the reason in err (a value that does not open:
 * TG_ERR; a body that does not parse or nests too deeply: TG_EINVAL). */
int tg_store_preset_mcp(const char *team, const char *body, enum tg_store_mcp_mode mode,
                        char **out, long *changed, char *err, size_t errlen);

/* The backends this build has (tg_store.c lists them in this order; the first is the one
 * a process without a handle asks for its schema version and audit columns). */
extern const struct tg_store_backend tg_sqlite_backend;
extern const struct tg_store_backend tg_pg_backend;

#endif
