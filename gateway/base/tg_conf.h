/* Configuration: one file of "key = value" lines, overridden by TASKGATE_<KEY> environment
 * variables, parsed and checked once at start-up into a struct nothing writes afterwards. */
#ifndef TG_CONF_H
#define TG_CONF_H

#include <stddef.h>

enum tg_log_level { TG_LOG_ERROR = 0, TG_LOG_WARN, TG_LOG_INFO, TG_LOG_DEBUG };
enum tg_log_format { TG_LOG_LOGFMT = 0, TG_LOG_JSON };

#define TG_CONF_STR 512

struct tg_conf {
    char listen[TG_CONF_STR];       /* unix socket path, or "host:port" / ":port" */
    long socket_mode;               /* permissions of a unix socket, e.g. 0660 */
    char socket_group[33];          /* the unix socket's group (nginx's workers'); "" keep */
    long threads;                   /* worker threads */
    long worker_reserve;            /* workers one team's submissions cannot take; 0: max(2, threads/4) */
    long backlog;                   /* listen backlog */
    char database[TG_CONF_STR];     /* SQLite file, or a URI (kept as given) */
    long db_busy_timeout_ms;        /* how long to wait on a locked database */
    long db_max_pages;              /* cap on the database's size in pages; 0: none */
    char key_file[TG_CONF_STR];     /* the upstream keys' encryption key (tg_crypto.h);
                                       after tg_conf_load never "": database + ".key" */
    char upstream_url[TG_CONF_STR]; /* base URL, no trailing slash */
    long upstream_connect_timeout_ms;
    long upstream_timeout_ms;
    long max_body_bytes;
    long max_answer_bytes;          /* the largest answer a read builds; past it 400 */
    long chunk_size;                /* inputs per add-runs request, at most 1000 */
    long max_inputs_per_submission;
    char default_processor[64];     /* global default; "" for none */
    long upstream_retry_max_wait_ms; /* total wait for safe retries of one call; 0: none */
    long idempotency_ttl_s;         /* how long an Idempotency-Key answers for its first use */
    long retry_dedupe_window_s;     /* how long an SDK's retry without a key is recognised */
    long reconcile_on_start;        /* 1: reconcile unknown submissions when the daemon starts */
    long reconcile_after_s;         /* unknown this long: reconciled in the background; 0 never */
    long reconcile_pass_s;          /* a pass starts no group after this; a group's read is
                                       cut after this */
    long housekeeping_interval_s;   /* how often the background thread looks for work */
    long long_reads_per_team;       /* a team's event streams and awaited results open at once,
                                       counted by nginx (the site's limit_conn) */
    char nginx_listen[TG_CONF_STR]; /* where the rendered nginx site listens */
    char nginx_resolver[TG_CONF_STR]; /* DNS servers for nginx to find the upstream; "": those
                                         of /etc/resolv.conf when the site is rendered */
    char upstream_ca_file[TG_CONF_STR]; /* the CAs nginx verifies the upstream against */
    char user[33];                  /* the user to run as when started as root; "" none */
    long track_groups_max;          /* task groups the daemon follows at once; 0: none */
    char webhook_secrets[TG_CONF_STR]; /* Parallel's webhook secrets, space-separated; never
                                          shown (tg_conf_dump) or logged */
    char webhook_secrets_file[TG_CONF_STR]; /* a file holding more of them; "" none */
    char webhook_public_url[TG_CONF_STR]; /* the gateway's URL as Parallel reaches it; "" none */
    enum tg_log_level log_level;
    enum tg_log_format log_format;
    char test_clock_file[TG_CONF_STR]; /* tests only: shifts the clock (tg_clock.h); "" none */
    char path[TG_CONF_STR];         /* the file it was read from */
};

/* Fills c with the defaults. */
void tg_conf_defaults(struct tg_conf *c);

/* Loads defaults, then path (NULL: skip the file), then the environment. Relative paths
 * in the file (database, listen) are taken relative to the file's directory. On error
 * returns TG_EINVAL (or TG_ERR when the file cannot be read) with a message such as
 * "conf/taskgate.conf:12: threads: must be between 1 and 4096" in err. */
int tg_conf_load(struct tg_conf *c, const char *path, char *err, size_t errlen);

/* Parses one "key", "value" pair into c; where names the source for messages
 * ("file:line" or "TASKGATE_THREADS"). Exposed for the unit tests and fuzzing. */
int tg_conf_set(struct tg_conf *c, const char *key, const char *value, const char *where,
                char *err, size_t errlen);

/* Parses the text of a whole config file (what tg_conf_load reads), naming it name in
 * messages. Does not apply defaults or the environment. */
int tg_conf_parse(struct tg_conf *c, const char *text, size_t len, const char *name,
                  char *err, size_t errlen);

/* Writes every key with its current value, one "key = value" per line, to buf; the webhook
 * secrets as "" with a comment saying how many are set. */
int tg_conf_dump(const struct tg_conf *c, char *buf, size_t buflen);

#endif
