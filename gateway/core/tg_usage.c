/* Estimated spend (see tg_usage.h). */
#include "tg_usage.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_json.h"
#include "tg_log.h"
#include "tg_price.h"

/* ---- admission ---------------------------------------------------------------------- */

int tg_usage_ask(const struct tg_pipe *p, struct tg_admission *a)
{
    size_t n = tg_pipeline_inputs(p), k = 0;
    const char **procs = tg_pool_calloc(p->pool, n + 1, sizeof(*procs));
    long *runs = tg_pool_calloc(p->pool, n + 1, sizeof(*runs));
    if (procs == NULL || runs == NULL)
        return TG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (p->prior_runs != NULL && p->prior_runs[i] != NULL)
            continue; /* created by the submission this one resumes: not sent again */
        const char *proc = p->run_procs != NULL ? p->run_procs[i] : p->processor;
        char listed[64];
        if (tg_price_listed_name(proc, listed, sizeof(listed)) != TG_OK)
            continue; /* no processor the price table could list: the upstream refuses it */
        size_t j = 0;
        while (j < k && strcmp(procs[j], listed) != 0)
            j++;
        if (j == k) {
            procs[k] = tg_pool_strdup(p->pool, listed);
            if (procs[k] == NULL)
                return TG_ENOMEM;
            k++;
        }
        runs[j]++;
    }
    a->nprocs = k;
    a->procs = procs;
    a->proc_runs = runs;
    return TG_OK;
}

/* ---- soft budgets crossed, counted per team ---------------------------------------- */

#define CROSS_TEAMS 1024

static pthread_mutex_t cross_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char team[65];
    unsigned long monthly, daily;
} crossings[CROSS_TEAMS];
static size_t ncrossings;

void tg_usage_crossed(const char *team, const char *which, const struct tg_budget_note *n)
{
    char spent[32], budget[32], cost[32];
    tg_money_format(n->spent_micro + n->cost_micro, spent, sizeof(spent));
    tg_money_format(n->budget_micro, budget, sizeof(budget));
    tg_money_format(n->cost_micro, cost, sizeof(cost));
    tg_log(TG_LOG_WARN, "team %s passed its soft %s budget for %s: estimated spend $%s of "
           "$%s after a submission of $%s", team, which, n->period, spent, budget, cost);
    pthread_mutex_lock(&cross_lock);
    size_t i = 0;
    while (i < ncrossings && strcmp(crossings[i].team, team) != 0)
        i++;
    if (i == ncrossings && ncrossings < CROSS_TEAMS) {
        snprintf(crossings[i].team, sizeof(crossings[i].team), "%s", team);
        ncrossings++;
    }
    if (i < ncrossings) {
        if (strcmp(which, "monthly") == 0)
            crossings[i].monthly++;
        else
            crossings[i].daily++;
    }
    pthread_mutex_unlock(&cross_lock);
}

/* ---- metrics ------------------------------------------------------------------------ */

struct metrics_walk {
    struct tg_buf *spend, *left;
    char month[TG_MONTH_LEN], day[TG_DAY_LEN];
};

static int metrics_row(void *arg, const struct tg_spend_row *r)
{
    struct metrics_walk *w = arg;
    char usd[32];
    tg_money_format(r->month_micro, usd, sizeof(usd));
    int rc = tg_buf_printf(w->spend, "taskgate_team_spend_usd{team=\"%s\"} %s\n", r->team, usd);
    if (rc != TG_OK || !r->has_budget)
        return rc;
    const struct tg_budget *b = &r->budget;
    if (b->monthly_micro > 0) {
        tg_money_format(b->monthly_micro - tg_budget_month_spent(b, w->month), usd,
                        sizeof(usd));
        rc = tg_buf_printf(w->left, "taskgate_team_budget_remaining_usd{team=\"%s\","
                           "period=\"month\"} %s\n", r->team, usd);
    }
    if (rc == TG_OK && b->daily_micro > 0) {
        tg_money_format(b->daily_micro - tg_budget_day_spent(b, w->day), usd, sizeof(usd));
        rc = tg_buf_printf(w->left, "taskgate_team_budget_remaining_usd{team=\"%s\","
                           "period=\"day\"} %s\n", r->team, usd);
    }
    return rc;
}

int tg_usage_metrics(struct tg_store *st, struct tg_buf *b)
{
    struct tg_buf spend, left;
    tg_buf_init(&spend, (size_t)4 << 20);
    tg_buf_init(&left, (size_t)4 << 20);
    struct metrics_walk w = {&spend, &left, "", ""};
    tg_budget_period(tg_now_ms(), w.month, w.day);
    int rc = tg_store_spend_list(st, w.month, metrics_row, &w);
    if (rc == TG_OK)
        rc = tg_buf_printf(b, "# HELP taskgate_team_spend_usd Estimated spend of the runs "
                           "created this UTC month (processor x runs x price), by team.\n"
                           "# TYPE taskgate_team_spend_usd gauge\n%s"
                           "# HELP taskgate_team_budget_remaining_usd What a team's budget "
                           "has left in its current UTC month or day (runs created and "
                           "estimates held counted).\n"
                           "# TYPE taskgate_team_budget_remaining_usd gauge\n%s"
                           "# HELP taskgate_budget_crossed_total Soft budgets passed by an "
                           "admission, by team and budget.\n"
                           "# TYPE taskgate_budget_crossed_total counter\n",
                           tg_buf_str(&spend), tg_buf_str(&left));
    pthread_mutex_lock(&cross_lock);
    for (size_t i = 0; rc == TG_OK && i < ncrossings; i++)
        rc = tg_buf_printf(b, "taskgate_budget_crossed_total{team=\"%s\",budget=\"monthly\"} "
                           "%lu\ntaskgate_budget_crossed_total{team=\"%s\",budget=\"daily\"} "
                           "%lu\n", crossings[i].team, crossings[i].monthly, crossings[i].team,
                           crossings[i].daily);
    pthread_mutex_unlock(&cross_lock);
    tg_buf_free(&spend);
    tg_buf_free(&left);
    return rc;
}

/* ---- the operator's changes -------------------------------------------------------- */

static int bad(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return TG_EINVAL;
}

static int amount(const char *text, const char *what, int64_t *micro, char *err,
                  size_t errlen)
{
    *micro = 0;
    if (text == NULL)
        return TG_OK;
    if (tg_money_parse(text, micro) != TG_OK)
        return bad(err, errlen, "%s: an amount in US dollars, such as 10 or 0.25 (at most six "
                   "decimals, not negative)", what);
    return TG_OK;
}

int tg_usage_budget_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                        const char *monthly, const char *daily, int soft, char *err,
                        size_t errlen)
{
    int64_t m, d;
    int rc = amount(monthly, "--monthly", &m, err, errlen);
    if (rc == TG_OK)
        rc = amount(daily, "--daily", &d, err, errlen);
    if (rc != TG_OK)
        return rc;
    if (m > 0 && d > m)
        return bad(err, errlen, "%s: the daily budget is above the monthly one", "--daily");
    if (m == 0 && d == 0 && soft)
        return bad(err, errlen, "%s: a soft budget needs an amount", "--soft");
    rc = tg_store_budget_set(st, who, team, m, d, soft, tg_now_ms());
    if (rc == TG_ENOTFOUND)
        snprintf(err, errlen, "no team %.64s", team);
    else if (rc != TG_OK)
        snprintf(err, errlen, "%s", tg_store_errmsg(st));
    return rc;
}

static int money_member(struct tg_buf *b, const char *name, int has, int64_t micro)
{
    char usd[32];
    if (!has)
        return tg_buf_printf(b, ",\"%s\":null", name);
    tg_money_format(micro, usd, sizeof(usd));
    return tg_buf_printf(b, ",\"%s\":\"%s\"", name, usd);
}

int tg_usage_budget_json(struct tg_store *st, const char *team, int64_t team_id,
                         struct tg_buf *b)
{
    struct tg_budget bud;
    int rc = tg_store_budget_get(st, team_id, &bud);
    int has = rc == TG_OK;
    if (rc == TG_ENOTFOUND) {
        memset(&bud, 0, sizeof(bud));
        rc = TG_OK;
    }
    if (rc != TG_OK)
        return rc;
    char month[TG_MONTH_LEN], day[TG_DAY_LEN];
    tg_budget_period(tg_now_ms(), month, day);
    int64_t ms = has ? tg_budget_month_spent(&bud, month) : 0;
    int64_t ds = has ? tg_budget_day_spent(&bud, day) : 0;
    rc = tg_buf_adds(b, "{\"team\":");
    if (rc == TG_OK)
        rc = tg_json_buf_string(b, team);
    if (rc == TG_OK)
        rc = money_member(b, "monthly_usd", has && bud.monthly_micro > 0, bud.monthly_micro);
    if (rc == TG_OK)
        rc = money_member(b, "daily_usd", has && bud.daily_micro > 0, bud.daily_micro);
    if (rc == TG_OK)
        rc = tg_buf_printf(b, ",\"soft\":%s,\"month\":\"%s\"", bud.soft ? "true" : "false",
                           month);
    if (rc == TG_OK)
        rc = money_member(b, "month_spent_usd", has, ms);
    if (rc == TG_OK)
        rc = money_member(b, "month_remaining_usd", has && bud.monthly_micro > 0,
                          bud.monthly_micro - ms);
    if (rc == TG_OK)
        rc = tg_buf_printf(b, ",\"day\":\"%s\"", day);
    if (rc == TG_OK)
        rc = money_member(b, "day_spent_usd", has, ds);
    if (rc == TG_OK)
        rc = money_member(b, "day_remaining_usd", has && bud.daily_micro > 0,
                          bud.daily_micro - ds);
    return rc == TG_OK ? tg_buf_adds(b, "}") : rc;
}

/* A day as stored: YYYY-MM-DD with a month 01..12 and a day 01..31. */
static int valid_day(const char *s)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return 0;
    int month = (s[5] - '0') * 10 + (s[6] - '0'), day = (s[8] - '0') * 10 + (s[9] - '0');
    return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

static int valid_processor(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32 || strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789") != n)
        return 0;
    return 1;
}

int tg_usage_price_set(struct tg_store *st, const struct tg_actor *who, const char *processor,
                       const char *usd_per_1000, const char *from, char *err, size_t errlen)
{
    if (!valid_processor(processor))
        return bad(err, errlen, "%s: a processor as the price list names it: 1 to 32 "
                   "lowercase letters and digits (a -fast variant costs what its base "
                   "does)", "processor");
    int64_t per_1000;
    if (tg_money_parse(usd_per_1000, &per_1000) != TG_OK || per_1000 % 1000 != 0)
        return bad(err, errlen, "%s: US dollars per 1,000 runs, such as 10 or 12.5 (at most "
                   "three decimals: a whole micro-dollar per run)", "price");
    char today[TG_DAY_LEN], tomorrow[TG_DAY_LEN], month[TG_MONTH_LEN];
    int64_t now = tg_now_ms();
    tg_budget_period(now, month, today);
    tg_budget_period(now + 86400000, month, tomorrow);
    if (from == NULL)
        from = tomorrow;
    if (!valid_day(from))
        return bad(err, errlen, "%s: a UTC day, YYYY-MM-DD", "--from");
    if (strcmp(from, today) <= 0) {
        snprintf(err, errlen, "--from: %s is not after today (%s UTC): a price takes effect "
                 "from a later day, so that nothing recorded is repriced", from, today);
        return TG_EINVAL;
    }
    int rc = tg_store_price_set(st, who, processor, from, per_1000 / 1000);
    if (rc != TG_OK)
        snprintf(err, errlen, "%s", tg_store_errmsg(st));
    return rc;
}

/* ---- usage reads -------------------------------------------------------------------- */

void tg_usage_init(struct tg_usage_read *r)
{
    memset(r, 0, sizeof(*r));
    r->format = TG_AUDIT_JSON;
}

/* A day, or a month (its first day), into out. */
static int set_day(const char *value, char out[11])
{
    char day[16];
    if (strlen(value) == 7)
        snprintf(day, sizeof(day), "%s-01", value);
    else
        snprintf(day, sizeof(day), "%.10s", value);
    if (strlen(value) > 10 || !valid_day(day))
        return TG_EINVAL;
    memcpy(out, day, 11);
    return TG_OK;
}

int tg_usage_set(struct tg_usage_read *r, const char *name, const char *value, char *err,
                 size_t errlen)
{
    if (strcmp(name, "team") == 0) {
        if (strlen(value) >= sizeof(r->team))
            return bad(err, errlen, "%s: at most 64 characters", name);
        snprintf(r->team, sizeof(r->team), "%s", value);
    } else if (strcmp(name, "processor") == 0) {
        if (strlen(value) >= sizeof(r->processor))
            return bad(err, errlen, "%s: at most 64 characters", name);
        snprintf(r->processor, sizeof(r->processor), "%s", value);
    } else if (strcmp(name, "by") == 0) {
        if (strcmp(value, "day") != 0 && strcmp(value, "month") != 0)
            return bad(err, errlen, "%s: day or month", name);
        r->by_month = strcmp(value, "month") == 0;
    } else if (strcmp(name, "since") == 0 || strcmp(name, "until") == 0) {
        if (set_day(value, name[0] == 's' ? r->since : r->until) != TG_OK)
            return bad(err, errlen, "%s: a UTC day (YYYY-MM-DD) or month (YYYY-MM)", name);
    } else if (strcmp(name, "format") == 0) {
        if (strcmp(value, "json") == 0)
            r->format = TG_AUDIT_JSON;
        else if (strcmp(value, "csv") == 0)
            r->format = TG_AUDIT_CSV;
        else
            return bad(err, errlen, "%s: json or csv", name);
    } else {
        snprintf(err, errlen, "unknown parameter %s (team, by, since, until, processor, "
                 "format)", name);
        return TG_ENOTFOUND;
    }
    return TG_OK;
}

/* The rows, kept for a table's widths and the totals. */
struct usage_rows {
    size_t n, cap;
    struct row {
        char *team, *period, *processor;
        int64_t runs, micro;
    } *v;
};

static int keep_row(void *arg, const struct tg_usage_row *r)
{
    struct usage_rows *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 64 : l->cap * 2;
        struct row *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return TG_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    struct row *k = &l->v[l->n];
    k->team = strdup(r->team != NULL ? r->team : "");
    k->period = strdup(r->period != NULL ? r->period : "");
    k->processor = strdup(r->processor != NULL ? r->processor : "");
    k->runs = r->runs;
    k->micro = r->est_cost_micro;
    if (k->team == NULL || k->period == NULL || k->processor == NULL) {
        free(k->team);
        free(k->period);
        free(k->processor);
        return TG_ENOMEM;
    }
    l->n++;
    return TG_OK;
}

static void free_rows(struct usage_rows *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].team);
        free(l->v[i].period);
        free(l->v[i].processor);
    }
    free(l->v);
}

static int write_json(const struct tg_usage_read *r, const struct usage_rows *l,
                      int64_t runs, int64_t micro, struct tg_buf *b)
{
    char usd[32];
    int rc = tg_buf_printf(b, "{\"by\":\"%s\",\"usage\":[", r->by_month ? "month" : "day");
    for (size_t i = 0; rc == TG_OK && i < l->n; i++) {
        const struct row *k = &l->v[i];
        tg_money_format(k->micro, usd, sizeof(usd));
        rc = tg_buf_adds(b, i > 0 ? ",{\"team\":" : "{\"team\":");
        if (rc == TG_OK)
            rc = tg_json_buf_string(b, k->team);
        if (rc == TG_OK)
            rc = tg_buf_printf(b, ",\"%s\":\"%s\",\"processor\":", r->by_month ? "month" : "day",
                               k->period);
        if (rc == TG_OK)
            rc = tg_json_buf_string(b, k->processor);
        if (rc == TG_OK)
            rc = tg_buf_printf(b, ",\"runs\":%lld,\"est_cost_micro\":%lld,"
                               "\"est_cost_usd\":\"%s\"}", (long long)k->runs,
                               (long long)k->micro, usd);
    }
    tg_money_format(micro, usd, sizeof(usd));
    if (rc == TG_OK)
        rc = tg_buf_printf(b, "],\"total\":{\"runs\":%lld,\"est_cost_micro\":%lld,"
                           "\"est_cost_usd\":\"%s\"}}\n", (long long)runs, (long long)micro,
                           usd);
    return rc;
}

/* A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180); one a
 * spreadsheet would run as a formula is written as text, a quote in front, as the audit's
 * CSV does (a processor is what a client sent). */
static int csv_field(struct tg_buf *b, const char *s)
{
    int formula = s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL;
    if (!formula && strcspn(s, ",\"\r\n") == strlen(s))
        return tg_buf_adds(b, s);
    int rc = tg_buf_adds(b, formula ? "\"'" : "\"");
    for (; rc == TG_OK && *s != '\0'; s++)
        rc = *s == '"' ? tg_buf_adds(b, "\"\"") : tg_buf_add(b, s, 1);
    return rc == TG_OK ? tg_buf_adds(b, "\"") : rc;
}

static int write_csv(const struct tg_usage_read *r, const struct usage_rows *l,
                     struct tg_buf *b)
{
    char usd[32];
    int rc = tg_buf_printf(b, "team,%s,processor,runs,est_cost_micro,est_cost_usd\r\n",
                           r->by_month ? "month" : "day");
    for (size_t i = 0; rc == TG_OK && i < l->n; i++) {
        const struct row *k = &l->v[i];
        tg_money_format(k->micro, usd, sizeof(usd));
        rc = csv_field(b, k->team);
        if (rc == TG_OK)
            rc = tg_buf_printf(b, ",%s,", k->period);
        if (rc == TG_OK)
            rc = csv_field(b, k->processor);
        if (rc == TG_OK)
            rc = tg_buf_printf(b, ",%lld,%lld,%s\r\n", (long long)k->runs, (long long)k->micro,
                               usd);
    }
    return rc;
}

static int write_table(const struct tg_usage_read *r, const struct usage_rows *l,
                       int64_t runs, int64_t micro, struct tg_buf *b)
{
    int tw = 4, pw = 9;
    for (size_t i = 0; i < l->n; i++) {
        int t = (int)strlen(l->v[i].team), p = (int)strlen(l->v[i].processor);
        tw = t > tw ? t : tw;
        pw = p > pw ? p : pw;
    }
    char usd[32];
    int rc = tg_buf_printf(b, "%-*s  %-10s  %-*s  %10s  %14s\n", tw, "TEAM",
                           r->by_month ? "MONTH" : "DAY", pw, "PROCESSOR", "RUNS",
                           "EST_COST_USD");
    for (size_t i = 0; rc == TG_OK && i < l->n; i++) {
        const struct row *k = &l->v[i];
        tg_money_format(k->micro, usd, sizeof(usd));
        rc = tg_buf_printf(b, "%-*s  %-10s  %-*s  %10lld  %14s\n", tw, k->team, k->period, pw,
                           k->processor, (long long)k->runs, usd);
    }
    tg_money_format(micro, usd, sizeof(usd));
    if (rc == TG_OK)
        rc = tg_buf_printf(b, "%-*s  %-10s  %-*s  %10lld  %14s\n", tw, "total", "", pw, "",
                           (long long)runs, usd);
    return rc;
}

int tg_usage_answer(struct tg_store *st, const struct tg_usage_read *r, struct tg_buf *b,
                    long *rows)
{
    struct usage_rows l = {0, 0, NULL};
    const char *team = r->team[0] != '\0' ? r->team : NULL;
    int rc = TG_OK;
    /* A reader held to one team sees nothing of another, not even that it exists. */
    int other = r->scope_team != NULL && team != NULL && strcmp(team, r->scope_team) != 0;
    if (!other) {
        struct tg_usage_query q = {r->scope_team != NULL ? r->scope_team : team,
                                   r->since[0] != '\0' ? r->since : NULL,
                                   r->until[0] != '\0' ? r->until : NULL,
                                   r->processor[0] != '\0' ? r->processor : NULL, r->by_month};
        rc = tg_store_usage(st, &q, keep_row, &l, NULL);
    }
    int64_t runs = 0, micro = 0;
    for (size_t i = 0; i < l.n; i++) {
        runs += l.v[i].runs;
        micro += l.v[i].micro;
    }
    if (rc == TG_OK)
        rc = r->format == TG_AUDIT_CSV    ? write_csv(r, &l, b)
             : r->format == TG_AUDIT_JSON ? write_json(r, &l, runs, micro, b)
                                          : write_table(r, &l, runs, micro, b);
    if (rows != NULL)
        *rows = rc == TG_OK ? (long)l.n : -1;
    free_rows(&l);
    return rc;
}
