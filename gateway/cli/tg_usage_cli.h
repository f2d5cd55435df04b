/* Estimated spend from the command line (tg_usage_cli.c): `taskgate team budget`, `taskgate
 * price set|list` and `taskgate audit usage`. */
#ifndef TG_USAGE_CLI_H
#define TG_USAGE_CLI_H

struct tg_conf;

#define TG_USAGE_CLI_USAGE                                                                     \
    "  team budget NAME [--monthly USD] [--daily USD] [--soft | --hard]\n"                    \
    "                               show or set a team's budgets (0: none; soft: report only)\n" \
    "  price list                   the price table (US dollars per 1,000 runs)\n"            \
    "  price set PROCESSOR USD_PER_1000 [--from YYYY-MM-DD]\n"                                \
    "                               a processor's price from a later UTC day (default: tomorrow)\n"

#define TG_USAGE_AUDIT_USAGE                                                                   \
    "  audit usage [--team T] [--by day|month] [--since D] [--until D] [--processor P]\n"    \
    "                               runs created and their estimated cost\n"

/* `taskgate team budget TEAM ...`: argv starts at TEAM. Returns the exit code. */
int tg_usage_cli_budget(const struct tg_conf *conf, int argc, char **argv);
/* `taskgate price ...`: argv starts after "price". */
int tg_usage_cli_price(const struct tg_conf *conf, int argc, char **argv);
/* `taskgate audit usage ...`: argv starts after "usage". */
int tg_usage_cli_audit(const struct tg_conf *conf, int argc, char **argv);

#endif
