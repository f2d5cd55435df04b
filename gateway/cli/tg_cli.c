/* The taskgate command: global options, the subcommands that manage the database (init,
 * teams, tokens, presets) and `serve`, which runs the daemon. Usage errors exit 2. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tg_admin.h"
#include "tg_audit.h"
#include "tg_audit_cli.h"
#include "tg_cli_common.h"
#include "tg_clock.h"
#include "tg_conf.h"
#include "tg_core.h"
#include "tg_crypto.h"
#include "tg_json.h"
#include "tg_keys.h"
#include "tg_limits.h"
#include "tg_log.h"
#include "tg_nginx_site.h"
#include "tg_reconcile.h"
#include "tg_usage_cli.h"
#include "tg_server.h"
#include "tg_store.h"
#include "tg_token.h"
#include "tg_validate.h"

#define KEY_MAX (TG_ADMIN_KEY_MAX + 2) /* the key, its newline and the NUL */

int tg_cli_main(int argc, char **argv);

static const char usage_text[] =
    "usage: taskgate [--config FILE] COMMAND [ARGS]\n"
    "\n"
    "A FastCGI gateway in front of Parallel's Task Group API.\n"
    "\n"
    "commands:\n"
    "  init                         create the database or migrate it to this version\n"
    "  serve                        run the FastCGI daemon (SIGTERM: finish and exit)\n"
    "  team add NAME                add a team; its Parallel API key is read from stdin\n"
    "  team set-key NAME            replace a team's Parallel API key (read from stdin)\n"
    "  team list                    list teams (key fingerprints only)\n"
    "  team limits NAME [--runs-per-minute N] [--in-flight N]\n"
    "                               show or set a team's limits (0: none)\n"
    TG_USAGE_CLI_USAGE
    "  reconcile [SUBMISSION_ID...] settle unknown submissions from the upstream's runs\n"
    "  token issue TEAM [--role submit|audit|admin] [--label TEXT] [--expires WHEN]\n"
    "                               issue a token; it is printed once, alone on stdout\n"
    "  token revoke ID              revoke a token by its id (tok_...)\n"
    "  token list [TEAM]            list tokens (ids, roles, labels; never the tokens)\n"
    "  preset set TEAM NAME FILE    store a preset from a JSON file ('-': stdin)\n"
    "  preset show TEAM NAME        print a preset\n"
    "  preset list TEAM             list a team's presets\n"
    "  config                       print the effective configuration\n"
    "  nginx-site                   print the nginx site for this config (socket, limits,\n"
    "                               timeouts, the upstream and its TLS)\n"
    TG_KEYS_USAGE
    TG_AUDIT_USAGE
    TG_USAGE_AUDIT_USAGE
    "\n"
    "options:\n"
    "  --config FILE   the config file (default: $TASKGATE_CONFIG, else conf/taskgate.conf)\n"
    "  --help          this text; `taskgate COMMAND --help` for one command\n"
    "  --version       the version\n"
    "\n"
    "WHEN is an RFC 3339 time (2027-01-31T00:00:00Z) or a duration from now (90d, 12h).\n";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Says what was wrong with the command line, then how to use it; returns 2. */
static int usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tg_cli_common_usage(usage_text, fmt, ap);
    va_end(ap);
    return rc;
}

/* Reads the key from stdin (never argv, which `ps` shows): one line, trimmed. */
static int read_key(char *key, size_t keylen)
{
    if (isatty(STDIN_FILENO))
        fputs("Parallel API key: ", stderr);
    if (fgets(key, (int)keylen, stdin) == NULL) {
        fputs("taskgate: no key on standard input\n", stderr);
        return TG_EINVAL;
    }
    size_t n = strlen(key);
    if (n == keylen - 1 && key[n - 1] != '\n') {
        fputs("taskgate: the key is too long\n", stderr);
        return TG_EINVAL;
    }
    while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r' || key[n - 1] == ' '))
        key[--n] = '\0';
    const char *why = tg_admin_key_problem(key);
    if (why != NULL) {
        fprintf(stderr, "taskgate: %s\n", why);
        return TG_EINVAL;
    }
    return TG_OK;
}

/* The CLI's changes are logged under the operating-system user who ran it. */
static const struct tg_actor *os_actor(void)
{
    static char id[80];
    static struct tg_actor actor;
    actor = tg_admin_os_actor(id, sizeof(id));
    return &actor;
}

static int fail(struct tg_store *st, int rc, const char *what)
{
    fprintf(stderr, "taskgate: %s: %s (%s)\n", what, tg_rc_str(rc), tg_store_errmsg(st));
    return 1;
}

/* ---- init, config ---------------------------------------------------------------------- */

static int cmd_init(const struct tg_conf *conf, int argc, char **argv)
{
    (void)argc; /* none: the command table says so */
    (void)argv;
    struct tg_store *st = tg_cli_common_store(conf, TG_STORE_CREATE | TG_STORE_NO_VERSION_CHECK);
    if (st == NULL)
        return 1;
    int from = 0, to = 0;
    char note[512], err[512];
    int rc = tg_store_migrate(st, &from, &to);
    if (rc != TG_OK) {
        rc = fail(st, rc, "migration failed");
    } else if (tg_keys_prepare(st, note, sizeof(note), err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "taskgate: %s\n", err);
        rc = 1;
    } else {
        if (note[0] != '\0')
            fprintf(stderr, "taskgate: %s\n", note);
        if (from == to)
            fprintf(stderr, "taskgate: %s is up to date (schema version %d)\n", conf->database,
                    to);
        else
            fprintf(stderr, "taskgate: %s migrated from schema version %d to %d\n",
                    conf->database, from, to);
    }
    tg_store_close(st);
    return rc;
}

static int cmd_config(const struct tg_conf *conf, int argc, char **argv)
{
    (void)argc; /* none: the command table says so */
    (void)argv;
    char buf[8192];
    if (tg_conf_dump(conf, buf, sizeof(buf)) != TG_OK)
        return 1;
    fputs(buf, stdout);
    return 0;
}

/* ---- teams ----------------------------------------------------------------------------- */

/* Tables: every stored text goes through tg_shown (tg_core.h), so that a value cannot
 * drive the terminal. A field is shown in full up to SHOWN_MAX code points. */
#define SHOWN_MAX 200
#define SHOWN_LEN (SHOWN_MAX * 6 + 4)

static int print_team(void *arg, const struct tg_team_row *row)
{
    (void)arg;
    char name[SHOWN_LEN], fp[SHOWN_LEN], created[SHOWN_LEN];
    printf("%-24s %-22s tokens=%d presets=%d created=%s\n",
           tg_shown(row->name, SHOWN_MAX, name, sizeof(name)),
           tg_shown(row->key_fingerprint, SHOWN_MAX, fp, sizeof(fp)), row->tokens,
           row->presets, tg_shown(row->created_at, SHOWN_MAX, created, sizeof(created)));
    return 0;
}

static int cmd_team(const struct tg_conf *conf, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "limits") == 0)
        return tg_limits_cli(conf, argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "budget") == 0)
        return tg_usage_cli_budget(conf, argc - 1, argv + 1);
    if (argc == 1 && strcmp(argv[0], "list") == 0) {
        struct tg_store *st = tg_cli_common_store(conf, 0);
        if (st == NULL)
            return 1;
        int rc = tg_store_team_list(st, print_team, NULL);
        rc = rc == TG_OK ? 0 : fail(st, rc, "cannot list teams");
        tg_store_close(st);
        return rc;
    }
    if (argc != 2 || (strcmp(argv[0], "add") != 0 && strcmp(argv[0], "set-key") != 0))
        return usage("usage: taskgate team add|set-key NAME, or team list");
    if (!tg_admin_valid_name(argv[1]))
        return usage("bad team name '%s': a team name is " TG_ADMIN_NAME_RULE, argv[1]);
    char key[KEY_MAX];
    if (read_key(key, sizeof(key)) != TG_OK)
        return 1;
    struct tg_store *st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        return 1;
    char err[512];
    int add = strcmp(argv[0], "add") == 0;
    int rc = add ? tg_admin_team_add(st, os_actor(), argv[1], key, err, sizeof(err))
                 : tg_admin_team_set_key(st, os_actor(), argv[1], key, err, sizeof(err));
    memset(key, 0, sizeof(key));
    if (rc == TG_OK)
        fprintf(stderr, add ? "taskgate: added team '%s'\n"
                            : "taskgate: replaced the key of team '%s'\n", argv[1]);
    else
        fprintf(stderr, "taskgate: %s\n", err);
    tg_store_close(st);
    return rc == TG_OK ? 0 : 1;
}

/* ---- tokens ---------------------------------------------------------------------------- */

static int token_issue(const struct tg_conf *conf, int argc, char **argv)
{
    enum tg_role role = TG_ROLE_SUBMIT;
    const char *label = NULL;
    int64_t expires = 0;
    if (argc < 1 || argv[0][0] == '-')
        return usage("usage: taskgate token issue TEAM [--role R] [--label TEXT] [--expires WHEN]");
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage("option %s needs a value", argv[i]);
        if (strcmp(argv[i], "--role") == 0) {
            if (tg_domain_role_parse(argv[++i], &role) != TG_OK)
                return usage("--role must be submit, audit or admin, not '%s'", argv[i]);
        } else if (strcmp(argv[i], "--label") == 0) {
            label = argv[++i];
            if (strlen(label) > 128)
                return usage("--label may have at most 128 characters");
        } else if (strcmp(argv[i], "--expires") == 0) {
            if (tg_admin_parse_when(argv[++i], tg_now_ms(), &expires) != TG_OK)
                return usage("--expires takes an RFC 3339 time or a duration like 90d, not '%s'",
                             argv[i]);
        } else {
            return usage("unknown option '%s'", argv[i]);
        }
    }
    struct tg_store *st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        return 1;
    struct tg_admin_token t;
    char err[512];
    int rc = tg_admin_token_issue(st, os_actor(), argv[0], role, label, expires, &t, err,
                                  sizeof(err));
    if (rc != TG_OK) {
        fprintf(stderr, "taskgate: cannot issue the token: %s\n", err);
    } else {
        fprintf(stderr, "taskgate: issued token id=%s team=%s role=%s (shown once; store it now)\n",
                t.id, argv[0], tg_domain_role_name(role));
        printf("%s\n", t.token);
    }
    memset(&t, 0, sizeof(t));
    tg_store_close(st);
    return rc == TG_OK ? 0 : 1;
}

static int print_token(void *arg, const struct tg_token_row *row)
{
    (void)arg;
    char id[SHOWN_LEN], team[SHOWN_LEN], role[SHOWN_LEN], label[SHOWN_LEN], created[SHOWN_LEN];
    char expires[SHOWN_LEN], revoked[SHOWN_LEN];
    printf("%-21s %-16s %-6s %-24s created=%s expires=%s%s%s\n",
           tg_shown(row->id, SHOWN_MAX, id, sizeof(id)),
           tg_shown(row->team, SHOWN_MAX, team, sizeof(team)),
           tg_shown(row->role, SHOWN_MAX, role, sizeof(role)),
           tg_shown(row->label, SHOWN_MAX, label, sizeof(label)),
           tg_shown(row->created_at, SHOWN_MAX, created, sizeof(created)),
           row->expires_at != NULL ? tg_shown(row->expires_at, SHOWN_MAX, expires,
                                              sizeof(expires))
                                   : "never",
           row->revoked_at != NULL ? " revoked=" : "",
           row->revoked_at != NULL ? tg_shown(row->revoked_at, SHOWN_MAX, revoked,
                                              sizeof(revoked))
                                   : "");
    return 0;
}

static int cmd_token(const struct tg_conf *conf, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "issue") == 0)
        return token_issue(conf, argc - 1, argv + 1);
    int is_revoke = argc == 2 && strcmp(argv[0], "revoke") == 0;
    int is_list = argc >= 1 && argc <= 2 && strcmp(argv[0], "list") == 0;
    if (!is_revoke && !is_list)
        return usage("usage: taskgate token issue|revoke|list ...");
    struct tg_store *st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        return 1;
    int rc;
    char err[512];
    if (is_revoke) {
        rc = tg_admin_token_revoke(st, os_actor(), argv[1], err, sizeof(err));
        if (rc == TG_OK)
            fprintf(stderr, "taskgate: revoked %s\n", argv[1]);
    } else {
        rc = tg_admin_token_list(st, argc == 2 ? argv[1] : NULL, print_token, NULL, err,
                                 sizeof(err));
    }
    if (rc != TG_OK)
        fprintf(stderr, "taskgate: %s\n", err);
    tg_store_close(st);
    return rc == TG_OK ? 0 : 1;
}

/* ---- presets --------------------------------------------------------------------------- */

static int read_file(const char *path, struct tg_buf *b)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "taskgate: %s: %s\n", path, strerror(errno));
        return TG_ERR;
    }
    char chunk[4096];
    size_t n;
    int rc = TG_OK;
    while (rc == TG_OK && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = tg_buf_add(b, chunk, n);
    if (f != stdin)
        fclose(f);
    if (rc != TG_OK)
        fprintf(stderr, "taskgate: %s: too large for a preset\n", path);
    return rc;
}

/* One validation problem as a person reads it: "FILE: metadata.k: msg". */
static void print_problem(const char *path, json_object *problem)
{
    json_object *loc = tg_json_get(problem, "loc");
    fprintf(stderr, "taskgate: %s: ", path);
    size_t n = json_object_is_type(loc, json_type_array) ? json_object_array_length(loc) : 0;
    for (size_t j = 1; j < n; j++) { /* loc[0] is "body" */
        json_object *part = json_object_array_get_idx(loc, j);
        fprintf(stderr, "%s%s", j > 1 ? "." : "",
                json_object_is_type(part, json_type_string) ? json_object_get_string(part)
                                                            : tg_json_str(part, NULL));
    }
    const char *msg = tg_json_get_str(problem, "msg");
    fprintf(stderr, "%s%s\n", n > 1 ? ": " : "", msg != NULL ? msg : "invalid");
}

static int preset_set(struct tg_store *st, const char *team, const char *name, const char *path)
{
    struct tg_buf b;
    tg_buf_init(&b, 1024 * 1024);
    int rc = read_file(path, &b);
    if (rc != TG_OK) {
        tg_buf_free(&b);
        return 1;
    }
    char err[256];
    json_object *preset = tg_json_parse_input(tg_buf_str(&b), b.len, TG_JSON_MAX_DEPTH, err,
                                              sizeof(err), NULL);
    tg_buf_free(&b);
    if (preset == NULL) {
        fprintf(stderr, "taskgate: %s: %s\n", path, err);
        return 1;
    }
    json_object *detail = json_object_new_array();
    rc = tg_admin_preset_set(st, os_actor(), team, name, preset, detail, err, sizeof(err));
    size_t problems = json_object_array_length(detail);
    for (size_t i = 0; i < problems; i++)
        print_problem(path, json_object_array_get_idx(detail, i));
    if (rc == TG_OK)
        fprintf(stderr, "taskgate: stored preset '%s'\n", name);
    else if (problems == 0)
        fprintf(stderr, "taskgate: cannot store the preset: %s\n", err);
    json_object_put(detail);
    json_object_put(preset);
    return rc == TG_OK ? 0 : 1;
}

static int print_preset(void *arg, const char *name, const char *updated_at)
{
    (void)arg;
    char n[SHOWN_LEN], u[SHOWN_LEN];
    printf("%-24s updated=%s\n", tg_shown(name, SHOWN_MAX, n, sizeof(n)),
           tg_shown(updated_at, SHOWN_MAX, u, sizeof(u)));
    return 0;
}

static int cmd_preset(const struct tg_conf *conf, int argc, char **argv)
{
    int ok = (argc == 4 && strcmp(argv[0], "set") == 0) ||
             (argc == 3 && strcmp(argv[0], "show") == 0) ||
             (argc == 2 && strcmp(argv[0], "list") == 0);
    if (!ok)
        return usage("usage: taskgate preset set TEAM NAME FILE | show TEAM NAME | list TEAM");
    if (argc >= 3 && !tg_admin_valid_name(argv[2]))
        return usage("bad preset name '%s': a preset name is " TG_ADMIN_NAME_RULE, argv[2]);
    struct tg_store *st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        return 1;
    int rc, status = 1;
    char err[512];
    if (strcmp(argv[0], "set") == 0) {
        status = preset_set(st, argv[1], argv[2], argv[3]);
    } else if (strcmp(argv[0], "show") == 0) {
        struct tg_pool *pool = tg_pool_create();
        char *json = NULL;
        rc = pool != NULL ? tg_admin_preset_get(st, pool, argv[1], argv[2], &json, err,
                                                sizeof(err))
                          : TG_ENOMEM;
        if (rc == TG_OK) {
            /* MCP header values are written, never read back: fingerprints only, as
             * over HTTP. A preset that cannot be shown so is not shown at all. */
            json_object *o = tg_json_parse_text(json);
            if (o != NULL && tg_json_redact_mcp(o) == TG_OK) {
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                           JSON_C_TO_STRING_NOSLASHESCAPE));
                status = 0;
            } else {
                fprintf(stderr, "taskgate: the stored preset cannot be shown\n");
            }
            json_object_put(o);
        } else {
            fprintf(stderr, "taskgate: %s\n", pool != NULL ? err : "out of memory");
        }
        tg_pool_destroy(pool);
    } else {
        rc = tg_admin_preset_list(st, argv[1], print_preset, NULL, err, sizeof(err));
        if (rc != TG_OK)
            fprintf(stderr, "taskgate: %s\n", err);
        status = rc == TG_OK ? 0 : 1;
    }
    tg_store_close(st);
    return status;
}

/* ---- serve and dispatch ------------------------------------------------------------------- */

static int cmd_serve(const struct tg_conf *conf, int argc, char **argv)
{
    (void)argc; /* none: the command table says so */
    (void)argv;
    return tg_server_run(conf);
}

static const struct command {
    const char *name;
    int (*run)(const struct tg_conf *conf, int argc, char **argv);
    int no_args; /* the command takes no arguments: any is a usage error */
} commands[] = {
    {"init", cmd_init, 1},         {"serve", cmd_serve, 1},     {"team", cmd_team, 0},
    {"token", cmd_token, 0},       {"preset", cmd_preset, 0},   {"config", cmd_config, 1},
    {"audit", tg_audit_cli, 0},    {"keys", tg_keys_cli, 0},    {"reconcile", tg_reconcile_cli, 0},
    {"nginx-site", tg_nginx_site_cli, 1},
    {"price", tg_usage_cli_price, 0},
    {NULL, NULL, 0},
};

int tg_cli_main(int argc, char **argv)
{
    const char *config = getenv("TASKGATE_CONFIG");
    if (config == NULL || *config == '\0')
        config = "conf/taskgate.conf";
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            puts("taskgate 0.1.0");
            return 0;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else {
            return usage("unknown option '%s'", argv[i]);
        }
    }
    if (i >= argc)
        return usage("no command given");
    const struct command *cmd = commands;
    while (cmd->name != NULL && strcmp(cmd->name, argv[i]) != 0)
        cmd++;
    if (cmd->name == NULL)
        return usage("unknown command '%s'", argv[i]);
    for (int j = i + 1; j < argc; j++) {
        if (strcmp(argv[j], "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
    }

    struct tg_conf conf;
    char err[1024];
    if (tg_conf_load(&conf, config, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "taskgate: %s\n", err);
        return 1;
    }
    /* A database this build has no store backend for stops every command here. */
    if (tg_store_supported(conf.database, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "taskgate: %s\n", err);
        return 1;
    }
    tg_log_setup(conf.log_level, conf.log_format);
    tg_clock_use_file(conf.test_clock_file);
    tg_crypto_configure(conf.key_file);
    tg_store_set_max_pages(conf.db_max_pages);
    if (cmd->no_args && argc - i - 1 != 0)
        return usage("%s takes no arguments", cmd->name);
    return cmd->run(&conf, argc - i - 1, argv + i + 1);
}
