/* `taskgate audit ...` (tg_audit_cli.c), on the reads of tg_audit.h. */
#ifndef TG_AUDIT_CLI_H
#define TG_AUDIT_CLI_H

struct tg_conf;

/* `taskgate audit ARGS` (argv starts after "audit"): returns the exit status (0, 1, or 2
 * for a usage error). Lives in tg_audit_cli.c, with the command-line programs. */
int tg_audit_cli(const struct tg_conf *conf, int argc, char **argv);

/* The audit part of `taskgate --help`. */
#define TG_AUDIT_USAGE                                                                       \
    "  audit submissions [--team T] [--state S] [--interface I] [--group G]\n"                \
    "                    [--since T] [--until T] [--limit N] [--cursor C]\n"                  \
    "                               submissions, newest first\n"                              \
    "  audit submission SUB_ID      one submission with its upstream calls and runs\n"        \
    "  audit runs [--team T] [--group G] [--status S] [--since T] [--until T] [--limit N]\n" \
    "             [--cursor C]      runs, newest first, with what came of each\n"            \
    "  audit run RUN_ID             one run and its submission\n"                             \
    "  audit group TGRP_ID [--limit N] [--cursor C]\n"                                        \
    "                               a task group's submissions and runs\n"                    \
    "  audit unknown [--team T] [--since T] [--until T] [--limit N]\n"                        \
    "                               submissions pending or unknown, oldest first\n"           \
    "  audit admin [--team T] [--object ID] [--object-type T] [--action A]\n"                \
    "              [--since T] [--until T] [--limit N] [--cursor C]\n"                       \
    "                               changes to teams, keys, presets, tokens; prunes\n"        \
    "  audit summary [--team T] [--since DAY] [--until DAY] [--part counts|durations]\n"     \
    "                               submissions and runs by day, team, processor, state;\n"   \
    "                               completed runs' durations by team and processor\n"       \
    "  audit prune --before DATE [--dry-run]\n"                                               \
    "                               delete settled audit records older than DATE\n"           \
    "                               (audit: a table; --json or --csv for scripts; every\n"    \
    "                               read is logged in audit_reads)\n"

#endif
