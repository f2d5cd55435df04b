/* `taskgate audit ...`: the audit trail for people (an aligned table) and scripts (--json,
 * --csv), through the same parameters, store calls and formatter as GET /v1/audit/...
 * (tg_audit.c). Lists are read page by page and written as they come; every read is
 * logged in audit_reads under the operating-system user. Usage errors exit 2. */
#include "tg_audit_cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tg_admin.h"
#include "tg_audit.h"
#include "tg_audit_format.h"
#include "tg_cli_common.h"
#include "tg_conf.h"
#include "tg_core.h"
#include "tg_store.h"
#include "tg_usage_cli.h"

#define PAGE_ROWS 1000           /* rows read per store call */
#define LIMIT_MAX 1000000000L    /* the most rows --limit may ask for */
#define OUT_MAX ((size_t)256 * 1024 * 1024)
#define ASKED_MAX 2000

static const char audit_usage[] =
    "usage: taskgate [--config FILE] audit COMMAND [OPTIONS]\n"
    "\n"
    TG_AUDIT_USAGE
    "\n"
    "options of every command: --json (the HTTP answer's JSON) or --csv (RFC 4180, header\n"
    "row first); a table for people otherwise. T is an RFC 3339 time or a date\n"
    "(2026-11-28); --since includes, --until excludes. Lists print every matching row\n"
    "unless --limit N; --cursor C continues from a next_cursor that --json printed.\n";

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tg_cli_common_usage(audit_usage, fmt, ap);
    va_end(ap);
    return rc;
}

static const struct {
    const char *name;
    enum tg_audit_what what;
    int takes_id;
} subcommands[] = {
    {"submissions", TG_AUDIT_SUBMISSIONS, 0}, {"submission", TG_AUDIT_SUBMISSION, 1},
    {"runs", TG_AUDIT_RUNS, 0},               {"run", TG_AUDIT_RUN, 1},
    {"group", TG_AUDIT_GROUP, 1},             {"unknown", TG_AUDIT_OPEN, 0},
    {"admin", TG_AUDIT_ADMIN, 0},             {"summary", TG_AUDIT_SUMMARY, 0},
};


/* Fills r from the options after the subcommand (and its id). Returns 0 or the usage
 * error's exit status. */
static int parse_options(struct tg_audit_read *r, const char *cmd, int argc, char **argv)
{
    int format_set = 0;
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--json") == 0 || strcmp(opt, "--csv") == 0) {
            if (format_set++)
                return usage("give one of --json and --csv");
            r->format = opt[2] == 'j' ? TG_AUDIT_JSON : TG_AUDIT_CSV;
            continue;
        }
        if (strncmp(opt, "--", 2) != 0)
            return usage("audit %s: unexpected argument '%s'", cmd, opt);
        const char *name = opt + 2;
        if (strcmp(name, "group") == 0)
            name = "taskgroup_id";
        else if (strcmp(name, "object-type") == 0)
            name = "object_type";
        else if (strcmp(name, "taskgroup_id") == 0 || strcmp(name, "format") == 0 ||
                 strcmp(name, "object_type") == 0)
            name = ""; /* the CLI spells these --group, --json, --csv and --object-type */
        if (strcmp(name, "limit") == 0 || strcmp(name, "cursor") == 0) {
            if (!tg_audit_pages(r->what))
                return usage("audit %s takes no %s", cmd, opt);
        }
        if (i + 1 >= argc)
            return usage("option %s needs a value", opt);
        char err[200];
        int rc = tg_audit_set(r, name, argv[++i], LIMIT_MAX, err, sizeof(err));
        if (rc == TG_ENOTFOUND)
            return usage("audit %s takes no option %s", cmd, opt);
        if (rc != TG_OK)
            return usage("%s '%s': %s", opt, argv[i], err);
    }
    return 0;
}

/* What was asked, for the log of reads: "audit submissions --team a". */
static void asked(char *out, size_t outlen, int argc, char **argv)
{
    size_t n = (size_t)snprintf(out, outlen, "audit");
    for (int i = 0; i < argc && n < outlen; i++)
        n += (size_t)snprintf(out + n, outlen - n, " %s", argv[i]);
}

static int flush(struct tg_buf *b)
{
    if (b->len > 0 && fwrite(b->data, 1, b->len, stdout) != b->len)
        return TG_ERR;
    tg_buf_clear(b);
    return TG_OK;
}

/* Reads r page by page (one page for a single object), writing each as it comes. */
static int run_read(struct tg_store *st, struct tg_audit_read *r, long total,
                    struct tg_audit_formatter *o, struct tg_buf *b)
{
    struct tg_audit_page page;
    char cursor[TG_AUDIT_CURSOR_MAX] = "";
    long left = total;
    int truncated = 0;
    int rc = tg_audit_format_begin(o, r);
    memset(&page, 0, sizeof(page));
    while (rc == TG_OK) {
        r->limit = left > 0 && left < PAGE_ROWS ? left : PAGE_ROWS;
        rc = tg_audit_format_fetch(st, r, o, &page);
        truncated |= page.truncated;
        if (rc == TG_OK)
            rc = flush(b);
        if (rc != TG_OK || !tg_audit_pages(r->what) || !page.more)
            break;
        left -= page.rows;
        if (total > 0 && left <= 0) {
            tg_audit_cursor(r, &page, cursor, sizeof(cursor));
            break;
        }
        tg_audit_continue(r, &page);
    }
    page.truncated = truncated;
    if (rc == TG_OK)
        rc = tg_audit_format_end(o, &page, cursor);
    if (rc == TG_OK && r->format == TG_AUDIT_JSON)
        rc = tg_buf_adds(b, "\n");
    if (rc == TG_OK)
        rc = flush(b);
    if (rc == TG_OK && truncated)
        fprintf(stderr, "taskgate: the group has more than %d submissions; list them all with "
                "`taskgate audit submissions --group %s`\n", TG_AUDIT_GROUP_SUBS, r->id);
    return rc;
}

static void explain(struct tg_store *st, const struct tg_audit_read *r, int rc)
{
    if (rc == TG_ENOTFOUND)
        fprintf(stderr, "taskgate: no %s '%s' in the audit trail\n",
                r->what == TG_AUDIT_SUBMISSION ? "submission"
                : r->what == TG_AUDIT_RUN      ? "run"
                                               : "task group",
                r->id);
    else if (rc == TG_ETOOBIG)
        fputs("taskgate: too many rows for a table: use --csv or --json, or narrow the read "
              "(--limit, --since)\n", stderr);
    else if (rc == TG_ERR)
        fputs("taskgate: cannot write the output\n", stderr);
    else
        fprintf(stderr, "taskgate: cannot read the audit trail: %s (%s)\n", tg_rc_str(rc),
                tg_store_errmsg(st));
}

/* `audit prune --before DATE [--dry-run]`: the one way audit records are deleted. */
static int prune(const struct tg_conf *conf, int argc, char **argv)
{
    const char *when = NULL;
    int dry_run = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0)
            dry_run = 1;
        else if (strcmp(argv[i], "--before") == 0 && i + 1 < argc && when == NULL)
            when = argv[++i];
        else
            return usage("audit prune: unexpected argument '%s'", argv[i]);
    }
    int64_t ms;
    if (when == NULL)
        return usage("audit prune needs --before DATE");
    if (tg_time_parse(when, &ms) != TG_OK || ms < 0)
        return usage("--before '%s': a time is RFC 3339 (2026-11-01T00:00:00Z) or a date "
                     "(2026-11-01)", when);
    if (ms > tg_now_ms())
        return usage("--before '%s' is in the future: a prune keeps everything since then",
                     when);
    char before[TG_TIME_LEN], id[80];
    tg_time_format(ms, before);
    tg_admin_os_actor(id, sizeof(id));
    struct tg_actor who = {id, NULL, "cli", NULL};
    struct tg_store *st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        return 1;
    struct tg_audit_pruned n;
    int rc = tg_store_audit_prune(st, &who, before, dry_run, &n);
    if (rc == TG_OK && dry_run) {
        char what[128];
        snprintf(what, sizeof(what), "audit prune --before %s --dry-run", before);
        rc = tg_store_audit_read_log(st, &who, what, n.submissions + n.calls + n.runs + n.reads);
    }
    if (rc != TG_OK && dry_run) {
        fprintf(stderr, "taskgate: the dry run failed, nothing was deleted: %s (%s)\n",
                tg_rc_str(rc), tg_store_errmsg(st));
    } else if (rc != TG_OK) {
        /* Batches before the failure stay deleted (and are logged when the log could be). */
        fprintf(stderr, "taskgate: the prune stopped: %s (%s); it had deleted %ld "
                "submissions, %ld upstream calls, %ld runs, %ld audit reads\n", tg_rc_str(rc),
                tg_store_errmsg(st), n.submissions, n.calls, n.runs, n.reads);
    }
    if (rc != TG_OK) {
        tg_store_close(st);
        return 1;
    }
    printf("%s the audit records received before %s:\n"
           "  submissions     %ld\n  upstream_calls  %ld\n  runs            %ld\n"
           "  audit_reads     %ld\n",
           dry_run ? "a prune would delete" : "deleted", before, n.submissions, n.calls, n.runs,
           n.reads);
    if (n.kept_open > 0)
        printf("kept %ld submission%s before then that %s pending or unknown: a prune never "
               "deletes those; reconcile them first (taskgate audit unknown --until %s)\n",
               n.kept_open, n.kept_open == 1 ? "" : "s", n.kept_open == 1 ? "is" : "are",
               before);
    if (!dry_run)
        printf("the admin log keeps every change, and now this prune (audit.prune)\n");
    tg_store_close(st);
    return 0;
}

int tg_audit_cli(const struct tg_conf *conf, int argc, char **argv)
{
    if (argc < 1)
        return usage("audit needs a command");
    if (strcmp(argv[0], "help") == 0) {
        fputs(audit_usage, stdout);
        return 0;
    }
    if (strcmp(argv[0], "prune") == 0)
        return prune(conf, argc - 1, argv + 1);
    if (strcmp(argv[0], "usage") == 0)
        return tg_usage_cli_audit(conf, argc - 1, argv + 1);
    size_t k = 0, nsub = sizeof(subcommands) / sizeof(subcommands[0]);
    while (k < nsub && strcmp(subcommands[k].name, argv[0]) != 0)
        k++;
    if (k == nsub)
        return usage("unknown audit command '%s'", argv[0]);
    struct tg_audit_read r;
    tg_audit_init(&r, subcommands[k].what);
    r.format = TG_AUDIT_TABLE;
    int first = 1;
    if (subcommands[k].takes_id) {
        char err[200];
        if (argc < 2 || argv[1][0] == '-')
            return usage("audit %s needs an id", argv[0]);
        if (tg_audit_set_id(&r, argv[1], err, sizeof(err)) != TG_OK)
            return usage("bad id '%s': %s", argv[1], err);
        first = 2;
    }
    int status = parse_options(&r, argv[0], argc - first, argv + first);
    if (status != 0)
        return status;
    long total = r.limit;

    struct tg_store *st = NULL;
    struct tg_audit_formatter *o = NULL;
    struct tg_buf b;
    tg_buf_init(&b, OUT_MAX);
    status = 1;
    st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        goto out;
    o = tg_audit_format_new(r.format, &b);
    if (o == NULL) {
        fputs("taskgate: out of memory\n", stderr);
        goto out;
    }
    int rc = run_read(st, &r, total, o, &b);
    if (rc != TG_OK)
        explain(st, &r, rc);
    fflush(stdout);

    char id[80], what[ASKED_MAX + 1];
    tg_admin_os_actor(id, sizeof(id));
    asked(what, sizeof(what), argc, argv);
    struct tg_actor who = {id, NULL, "cli", NULL};
    long rows = rc == TG_OK ? tg_audit_format_rows(o) : -1;
    int logged = tg_store_audit_read_log(st, &who, what, rows);
    if (logged != TG_OK)
        fprintf(stderr, "taskgate: this read could not be logged in audit_reads: %s (%s)\n",
                tg_rc_str(logged), tg_store_errmsg(st));
    status = rc == TG_OK && logged == TG_OK ? 0 : 1;
out:
    tg_audit_format_free(o);
    tg_buf_free(&b);
    tg_store_close(st);
    return status;
}
