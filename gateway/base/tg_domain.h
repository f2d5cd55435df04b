/* The gateway's domain terms, below every layer that speaks them: a token's role, a
 * submission's state, an upstream call's outcome, a run's status, and the comparisons every
 * team limit and every reported status change go through. The store records them; the core
 * and the handlers decide with them. */
#ifndef TG_DOMAIN_H
#define TG_DOMAIN_H

enum tg_role { TG_ROLE_SUBMIT = 0, TG_ROLE_AUDIT = 1, TG_ROLE_ADMIN = 2 };
/* "submit", "audit", "admin"; static storage. */
const char *tg_domain_role_name(enum tg_role r);
/* TG_OK and *out, or TG_EINVAL for an unknown name. */
int tg_domain_role_parse(const char *name, enum tg_role *out);

enum tg_state {
    TG_STATE_PENDING = 0,
    TG_STATE_ACCEPTED,
    TG_STATE_REJECTED,
    TG_STATE_FAILED,
    TG_STATE_UNKNOWN
};
/* "pending", "accepted", …; static storage. */
const char *tg_domain_state_name(enum tg_state s);

enum tg_outcome {
    TG_OUTCOME_OK = 0,      /* 2xx with a body we understood */
    TG_OUTCOME_ERROR,       /* upstream answered with an error: nothing was created */
    TG_OUTCOME_UNKNOWN,     /* sent, but no usable answer: may or may not have acted */
    TG_OUTCOME_NOT_SENT     /* never reached the upstream */
};
/* "ok", "error", "unknown", "not_sent"; static storage. */
const char *tg_domain_outcome_name(enum tg_outcome o);

/* Whether want more on top of used stays within limit (0 or less: no limit). Returns 1 when
 * it does, 0 when the request is beyond the limit. The same test for every limit: in flight
 * (used = submissions pending, want = 1) and runs per minute (used = runs admitted this
 * clock minute, want = the submission's runs). */
int tg_domain_limit_allows(long limit, long used, long want);

/* A task run's status as the upstream names it: "queued", "action_required", "running",
 * "completed", "failed", "cancelling", "cancelled". Whether s is one of them; whether it
 * is final (the run ends there: completed, failed, cancelled); whether it is active (the
 * upstream's is_active: queued, running, cancelling). NULL is none of them. */
int tg_domain_run_status_known(const char *s);
int tg_domain_run_status_final(const char *s);
int tg_domain_run_status_active(const char *s);

/* Whether a source's report that a run changed to status at `at` is news against what is
 * recorded (cur and cur_at, NULL when nothing is): a report of the status the run has, of
 * a change older than the recorded one, or of anything after a final status is not. Times
 * are as the records write them (tg_time_format), so they compare as text. The one rule
 * both sources go through, so that a change is recorded once whichever told it first. */
int tg_domain_run_change_news(const char *cur, const char *cur_at, const char *status,
                              const char *at);

#endif
