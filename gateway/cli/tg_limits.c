/* Per-team limits (see tg_limits.h): the command that sets and shows them. The comparison
 * every limit uses, checked inside the store's admission transaction, is tg_domain_limit_allows
 * (tg_domain.c). */
#include "tg_limits.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tg_admin.h"
#include "tg_cli_common.h"
#include "tg_conf.h"
#include "tg_core.h"
#include "tg_store.h"

static int limits_usage(void)
{
    fputs("usage: taskgate team limits TEAM [--runs-per-minute N] [--in-flight N]\n"
          "  N = 0 removes the limit; without options the limits are printed\n", stderr);
    return 2;
}

int tg_limits_cli(const struct tg_conf *conf, int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-')
        return limits_usage();
    const char *team = argv[0];
    long rpm = -1, inflight = -1;
    for (int i = 1; i < argc; i += 2) { /* option value pairs */
        long *dst = strcmp(argv[i], "--runs-per-minute") == 0 ? &rpm
                    : strcmp(argv[i], "--in-flight") == 0     ? &inflight
                                                              : NULL;
        if (dst == NULL || i + 1 >= argc || tg_parse_long(argv[i + 1], 0, INT_MAX, dst) != TG_OK)
            return limits_usage();
    }
    struct tg_store *st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        return 1;
    int64_t team_id;
    struct tg_limits l;
    int rc = tg_store_team_id(st, team, &team_id);
    if (rc == TG_OK)
        rc = tg_store_limits_get(st, team_id, &l);
    if (rc == TG_OK && (rpm >= 0 || inflight >= 0)) {
        if (rpm >= 0)
            l.runs_per_minute = rpm;
        if (inflight >= 0)
            l.in_flight = inflight;
        char id[80];
        struct tg_actor who = tg_admin_os_actor(id, sizeof(id));
        rc = tg_store_limits_set(st, &who, team, &l);
    }
    if (rc == TG_ENOTFOUND) {
        fprintf(stderr, "taskgate: no team '%s'\n", team);
    } else if (rc != TG_OK) {
        fprintf(stderr, "taskgate: cannot set limits: %s (%s)\n", tg_rc_str(rc),
                tg_store_errmsg(st));
    } else {
        char shown[512];
        printf("team=%s runs_per_minute=%ld in_flight=%ld\n",
               tg_shown(team, 64, shown, sizeof(shown)), l.runs_per_minute, l.in_flight);
    }
    tg_store_close(st);
    return rc == TG_OK ? 0 : 1;
}
