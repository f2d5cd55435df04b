/* Estimated spend from the command line (see tg_usage_cli.h). */
#include "tg_usage_cli.h"

#include <stdio.h>
#include <string.h>

#include "tg_admin.h"
#include "tg_audit.h"
#include "tg_cli_common.h"
#include "tg_conf.h"
#include "tg_core.h"
#include "tg_price.h"
#include "tg_usage.h"

#define OUT_MAX ((size_t)64 * 1024 * 1024)

static int budget_usage(void)
{
    fputs("usage: taskgate team budget TEAM [--monthly USD] [--daily USD] [--soft | --hard]\n"
          "  USD in US dollars (10, 0.25); 0 removes that budget; a soft budget only reports\n"
          "  (a metric and a log line when passed); without options the budget is printed\n",
          stderr);
    return 2;
}

static void print_budget(const char *team, int has, const struct tg_budget *b)
{
    char shown[512], m[32], d[32], ms[32], ds[32];
    char month[TG_MONTH_LEN], day[TG_DAY_LEN];
    tg_budget_period(tg_now_ms(), month, day);
    tg_money_format(has ? b->monthly_micro : 0, m, sizeof(m));
    tg_money_format(has ? b->daily_micro : 0, d, sizeof(d));
    tg_money_format(has ? tg_budget_month_spent(b, month) : 0, ms, sizeof(ms));
    tg_money_format(has ? tg_budget_day_spent(b, day) : 0, ds, sizeof(ds));
    printf("team=%s monthly=%s daily=%s %s month=%s month_spent=%s day=%s day_spent=%s\n",
           tg_shown(team, 64, shown, sizeof(shown)), m, d, has && b->soft ? "soft" : "hard",
           month, ms, day, ds);
}

int tg_usage_cli_budget(const struct tg_conf *conf, int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-')
        return budget_usage();
    const char *team = argv[0], *monthly = NULL, *daily = NULL;
    int soft = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--soft") == 0 || strcmp(argv[i], "--hard") == 0) {
            soft = argv[i][2] == 's';
        } else if (i + 1 < argc && strcmp(argv[i], "--monthly") == 0) {
            monthly = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--daily") == 0) {
            daily = argv[++i];
        } else {
            return budget_usage();
        }
    }
    struct tg_store *st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        return 1;
    int64_t team_id = 0;
    struct tg_budget b;
    int rc = tg_store_team_id(st, team, &team_id);
    int has = 0;
    if (rc == TG_OK) {
        rc = tg_store_budget_get(st, team_id, &b);
        has = rc == TG_OK;
        if (rc == TG_ENOTFOUND)
            rc = TG_OK;
    }
    char err[512] = "";
    if (rc == TG_OK && (monthly != NULL || daily != NULL || soft >= 0)) {
        /* What is not given stays as it is. */
        char m[32], d[32];
        tg_money_format(has ? b.monthly_micro : 0, m, sizeof(m));
        tg_money_format(has ? b.daily_micro : 0, d, sizeof(d));
        char id[80];
        struct tg_actor who = tg_admin_os_actor(id, sizeof(id));
        rc = tg_usage_budget_set(st, &who, team, monthly != NULL ? monthly : m,
                                 daily != NULL ? daily : d, soft >= 0 ? soft : has && b.soft,
                                 err, sizeof(err));
        if (rc == TG_OK) {
            rc = tg_store_budget_get(st, team_id, &b);
            has = rc == TG_OK;
            if (rc == TG_ENOTFOUND)
                rc = TG_OK;
        }
    }
    if (rc == TG_ENOTFOUND) {
        fprintf(stderr, "taskgate: no team '%s'\n", team);
    } else if (rc == TG_EINVAL) {
        fprintf(stderr, "taskgate: %s\n", err);
        rc = TG_ERR;
        tg_store_close(st);
        return 2;
    } else if (rc != TG_OK) {
        fprintf(stderr, "taskgate: cannot set the budget: %s (%s)\n", tg_rc_str(rc),
                err[0] != '\0' ? err : tg_store_errmsg(st));
    } else {
        print_budget(team, has, &b);
    }
    tg_store_close(st);
    return rc == TG_OK ? 0 : 1;
}

/* ---- prices ------------------------------------------------------------------------- */

static int price_usage(void)
{
    fputs("usage: taskgate price list\n"
          "       taskgate price set PROCESSOR USD_PER_1000 [--from YYYY-MM-DD]\n"
          "  a price takes effect from a later UTC day (default: tomorrow), so that nothing\n"
          "  recorded is repriced; a -fast variant costs what its base does\n", stderr);
    return 2;
}

static int price_row(void *arg, const struct tg_price_row *r)
{
    (void)arg;
    char usd[32], shown[128];
    tg_money_format(r->micro_per_run * 1000, usd, sizeof(usd));
    printf("%-10s %-10s %12s  %s\n", tg_shown(r->processor, 32, shown, sizeof(shown)),
           r->effective_from, usd, r->source);
    return 0;
}

int tg_usage_cli_price(const struct tg_conf *conf, int argc, char **argv)
{
    int list = argc == 1 && strcmp(argv[0], "list") == 0;
    int set = argc >= 3 && strcmp(argv[0], "set") == 0;
    const char *from = NULL;
    if (set && argc == 5 && strcmp(argv[3], "--from") == 0)
        from = argv[4];
    else if (set && argc != 3)
        return price_usage();
    if (!list && !set)
        return price_usage();
    struct tg_store *st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        return 1;
    int rc;
    char err[512] = "";
    if (set) {
        char id[80];
        struct tg_actor who = tg_admin_os_actor(id, sizeof(id));
        rc = tg_usage_price_set(st, &who, argv[1], argv[2], from, err, sizeof(err));
        if (rc == TG_EINVAL) {
            fprintf(stderr, "taskgate: %s\n", err);
            tg_store_close(st);
            return 2;
        }
    }
    printf("%-10s %-10s %12s  %s\n", "PROCESSOR", "FROM", "USD_PER_1000", "SOURCE");
    rc = set && err[0] != '\0' ? TG_ERR : tg_store_price_list(st, price_row, NULL);
    if (rc != TG_OK)
        fprintf(stderr, "taskgate: %s\n", err[0] != '\0' ? err : tg_store_errmsg(st));
    tg_store_close(st);
    return rc == TG_OK ? 0 : 1;
}

/* ---- audit usage -------------------------------------------------------------------- */

int tg_usage_cli_audit(const struct tg_conf *conf, int argc, char **argv)
{
    struct tg_usage_read r;
    tg_usage_init(&r);
    r.format = TG_AUDIT_TABLE;
    char what[1024] = "audit usage";
    for (int i = 0; i < argc; i++) {
        size_t len = strlen(what);
        snprintf(what + len, sizeof(what) - len, " %s", argv[i]);
        char err[200];
        if (strcmp(argv[i], "--json") == 0) {
            r.format = TG_AUDIT_JSON;
        } else if (strcmp(argv[i], "--csv") == 0) {
            r.format = TG_AUDIT_CSV;
        } else if (strncmp(argv[i], "--", 2) == 0 && i + 1 < argc &&
                   strcmp(argv[i] + 2, "format") != 0) {
            if (tg_usage_set(&r, argv[i] + 2, argv[i + 1], err, sizeof(err)) != TG_OK) {
                fprintf(stderr, "taskgate: %s\n", err);
                return 2;
            }
            i++;
            len = strlen(what);
            snprintf(what + len, sizeof(what) - len, " %s", argv[i]);
        } else {
            fprintf(stderr, "usage: taskgate audit usage [--team T] [--by day|month] "
                            "[--since D] [--until D] [--processor P] [--json|--csv]\n");
            return 2;
        }
    }
    struct tg_store *st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        return 1;
    struct tg_buf b;
    tg_buf_init(&b, OUT_MAX);
    long rows = -1;
    int rc = tg_usage_answer(st, &r, &b, &rows);
    if (rc == TG_OK)
        fwrite(b.data != NULL ? b.data : "", 1, b.len, stdout);
    else
        fprintf(stderr, "taskgate: cannot read usage: %s (%s)\n", tg_rc_str(rc),
                tg_store_errmsg(st));
    fflush(stdout);
    char id[80];
    tg_admin_os_actor(id, sizeof(id));
    struct tg_actor who = {id, NULL, "cli", NULL};
    int logged = tg_store_audit_read_log(st, &who, what, rows);
    if (logged != TG_OK)
        fprintf(stderr, "taskgate: this read could not be logged in audit_reads: %s (%s)\n",
                tg_rc_str(logged), tg_store_errmsg(st));
    tg_buf_free(&b);
    tg_store_close(st);
    return rc == TG_OK && logged == TG_OK ? 0 : 1;
}
