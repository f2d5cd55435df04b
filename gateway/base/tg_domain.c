/* The domain terms' names, the limit comparison and the rule for run status changes (contract
 * in tg_domain.h). */
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

static const char *const run_statuses[] = {"queued", "action_required", "running",
                                           "completed", "failed", "cancelling", "cancelled"};

static int is_one_of(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; s != NULL && i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return 1;
    return 0;
}

int tg_domain_run_status_known(const char *s)
{
    return is_one_of(s, run_statuses, sizeof(run_statuses) / sizeof(run_statuses[0]));
}

int tg_domain_run_status_final(const char *s)
{
    static const char *const final[] = {"completed", "failed", "cancelled"};
    return is_one_of(s, final, 3);
}

int tg_domain_run_status_active(const char *s)
{
    static const char *const active[] = {"queued", "running", "cancelling"};
    return is_one_of(s, active, 3);
}

int tg_domain_run_change_news(const char *cur, const char *cur_at, const char *status,
                              const char *at)
{
    if (!tg_domain_run_status_known(status))
        return 0;
    if (cur == NULL)
        return 1;
    if (strcmp(cur, status) == 0 || tg_domain_run_status_final(cur))
        return 0;
    return cur_at == NULL || at == NULL || strcmp(at, cur_at) >= 0;
}
