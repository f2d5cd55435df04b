/* The domain terms' names and the limit comparison (contract in tg_domain.h). */
#include "tg_domain.h"

#include <string.h>

#include "tg_core.h"

static const char *const role_names[] = {"submit", "audit", "admin"};
static const char *const state_names[] = {"pending", "accepted", "rejected", "failed",
                                          "unknown"};
static const char *const outcome_names[] = {"ok", "error", "unknown", "not_sent"};

const char *tg_domain_role_name(enum tg_role r)
{
    return (unsigned)r < 3 ? role_names[r] : "invalid";
}

int tg_domain_role_parse(const char *name, enum tg_role *out)
{
    for (unsigned i = 0; name != NULL && i < 3; i++) {
        if (strcmp(name, role_names[i]) == 0) {
            *out = (enum tg_role)i;
            return TG_OK;
        }
    }
    return TG_EINVAL;
}

const char *tg_domain_state_name(enum tg_state s)
{
    return (unsigned)s < 5 ? state_names[s] : "invalid";
}

const char *tg_domain_outcome_name(enum tg_outcome o)
{
    return (unsigned)o < 4 ? outcome_names[o] : "invalid";
}

int tg_domain_limit_allows(long limit, long used, long want)
{
    if (limit <= 0)
        return 1;
    if (used < 0)
        used = 0;
    if (want < 0)
        want = 0;
    /* used + want > limit, written so that it cannot overflow. */
    return used <= limit && want <= limit - used;
}
