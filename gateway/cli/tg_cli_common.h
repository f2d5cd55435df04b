/* What every command of the command line does alike: open the configured database with
 * the failure said on stderr, and answer a bad command line. Below tg_cli.c and the
 * command files (tg_audit_cli.c, tg_keys.c, tg_limits.c), which all use it. */
#ifndef TG_CLI_COMMON_H
#define TG_CLI_COMMON_H

#include <stdarg.h>

struct tg_conf;
struct tg_store;

/* Opens conf's database with tg_store_open's flags. NULL (with "taskgate: why" on stderr)
 * when it cannot be opened; the caller closes what it gets. */
struct tg_store *tg_cli_common_store(const struct tg_conf *conf, int flags);

/* Prints "taskgate: " and the formatted message, a blank line and text (the command's
 * usage) on stderr; returns 2, the exit code of a usage error. */
int tg_cli_common_usage(const char *text, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#endif
