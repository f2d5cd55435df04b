/* What every command of the command line does alike (see tg_cli_common.h). */
#include "tg_cli_common.h"

#include <stdio.h>

#include "tg_conf.h"
#include "tg_core.h"
#include "tg_store.h"

struct tg_store *tg_cli_common_store(const struct tg_conf *conf, int flags)
{
    char err[512];
    struct tg_store *st = NULL;
    if (tg_store_open(&st, conf->database, flags, (int)conf->db_busy_timeout_ms, err,
                      sizeof(err)) != TG_OK) {
        fprintf(stderr, "taskgate: %s\n", err);
        return NULL;
    }
    return st;
}

int tg_cli_common_usage(const char *text, const char *fmt, va_list ap)
{
    fputs("taskgate: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n\n", stderr);
    fputs(text, stderr);
    return 2;
}
