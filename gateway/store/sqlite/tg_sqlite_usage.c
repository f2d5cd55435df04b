/* The SQLite backend: prices, budgets and usage (contract in tg_store_usage.h): the runs'
 * costs as they are recorded (tg_sqlite_usage_runs), the reads, the operator's changes, and
 * admission's budget step. A submission's hold is given back by the trigger of
 * sql/sqlite/011_usage_budgets.sql when it settles. */
#include <stdio.h>
#include <string.h>

#include "tg_price.h"
#include "tg_sqlite_int.h"

static const char *const usage_sql[S_COUNT] = {
    [U_COST_HOLD_GET] = "SELECT month, day, open FROM budget_holds WHERE submission_id = ?1",
    [U_COST_CALL] =
        "INSERT INTO call_costs (submission_id, call_seq, processor, runs, est_cost_micro)"
        " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (submission_id, call_seq, processor)"
        " DO UPDATE SET runs = runs + excluded.runs,"
        " est_cost_micro = est_cost_micro + excluded.est_cost_micro",
    [U_COST_DAY] =
        "INSERT INTO usage_days (team_id, day, processor, runs, est_cost_micro)"
        " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (team_id, day, processor)"
        " DO UPDATE SET runs = runs + excluded.runs,"
        " est_cost_micro = est_cost_micro + excluded.est_cost_micro",
    [U_COST_HOLD] =
        "UPDATE budget_holds SET held_micro = held_micro - ?2"
        " WHERE submission_id = ?1 AND open = 1",
    [U_COST_BUDGET] =
        "UPDATE team_budgets SET"
        " month_micro = month_micro + CASE WHEN month = ?2 THEN ?4 ELSE 0 END,"
        " day_micro = day_micro + CASE WHEN day = ?3 THEN ?4 ELSE 0 END WHERE team_id = ?1",
    [U_BUDGET_GET] =
        "SELECT monthly_micro, daily_micro, soft, month, month_micro, day, day_micro"
        " FROM team_budgets WHERE team_id = ?1",
    [U_PRICE] =
        "SELECT micro_per_run FROM prices WHERE processor = ?1 AND effective_from <= ?2"
        " ORDER BY effective_from DESC LIMIT 1",
    [U_BUDGET_PUT] =
        "UPDATE team_budgets SET month = ?2, month_micro = ?3, day = ?4, day_micro = ?5"
        " WHERE team_id = ?1",
    [U_HOLD_PUT] =
        "INSERT INTO budget_holds (submission_id, team_id, month, day, held_micro, open)"
        " VALUES (?1, ?2, ?3, ?4, ?5, 1)",
    [U_PRICE_LIST] =
        "SELECT processor, effective_from, micro_per_run, source, set_at FROM prices"
        " ORDER BY processor, effective_from",
    [U_PRICE_GET] =
        "SELECT micro_per_run FROM prices WHERE processor = ?1 AND effective_from <= ?2"
        " ORDER BY effective_from DESC LIMIT 1",
    [U_PRICE_SET] =
        "INSERT INTO prices (processor, effective_from, micro_per_run, source, set_at)"
        " VALUES (?1, ?2, ?3, 'operator', ?4) ON CONFLICT (processor, effective_from)"
        " DO UPDATE SET micro_per_run = excluded.micro_per_run, source = 'operator',"
        " set_at = excluded.set_at",
    [U_TEAM_BUDGET] =
        "SELECT t.id, b.monthly_micro, b.daily_micro, b.soft FROM teams t"
        " LEFT JOIN team_budgets b ON b.team_id = t.id WHERE t.name = ?1",
    /* A new budget row starts from what its periods have spent; a changed one keeps its
     * counts. */
    [U_BUDGET_UPSERT] =
        "INSERT INTO team_budgets (team_id, monthly_micro, daily_micro, soft, month,"
        " month_micro, day, day_micro, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5,"
        " (SELECT coalesce(sum(est_cost_micro), 0) FROM usage_days"
        "  WHERE team_id = ?1 AND day >= ?5 || '-01' AND day <= ?5 || '-31'),"
        " ?6, (SELECT coalesce(sum(est_cost_micro), 0) FROM usage_days"
        "  WHERE team_id = ?1 AND day = ?6), ?7)"
        " ON CONFLICT (team_id) DO UPDATE SET monthly_micro = excluded.monthly_micro,"
        " daily_micro = excluded.daily_micro, soft = excluded.soft,"
        " updated_at = excluded.updated_at",
    [U_BUDGET_DEL] = "DELETE FROM team_budgets WHERE team_id = ?1",
    [U_SPEND_LIST] =
        "SELECT t.name, coalesce((SELECT sum(u.est_cost_micro) FROM usage_days u"
        "  WHERE u.team_id = t.id AND u.day >= ?1 || '-01' AND u.day <= ?1 || '-31'), 0),"
        " b.team_id IS NOT NULL, b.monthly_micro, b.daily_micro, b.soft, b.month,"
        " b.month_micro, b.day, b.day_micro"
        " FROM teams t LEFT JOIN team_budgets b ON b.team_id = t.id"
        " WHERE b.team_id IS NOT NULL OR EXISTS (SELECT 1 FROM usage_days u"
        "  WHERE u.team_id = t.id AND u.day >= ?1 || '-01' AND u.day <= ?1 || '-31')"
        " ORDER BY t.name",
    [U_USAGE] =
        "SELECT t.name, CASE WHEN ?5 THEN substr(u.day, 1, 7) ELSE u.day END AS period,"
        " u.processor, sum(u.runs), sum(u.est_cost_micro)"
        " FROM usage_days u JOIN teams t ON t.id = u.team_id"
        " WHERE (?1 IS NULL OR t.name = ?1) AND (?2 IS NULL OR u.day >= ?2)"
        " AND (?3 IS NULL OR u.day < ?3) AND (?4 IS NULL OR u.processor = ?4)"
        " GROUP BY t.name, period, u.processor ORDER BY t.name, period, u.processor",
};

static int stmt(struct tg_store *st, enum stmt_id id, sqlite3_stmt **out)
{
    return tg_sqlite_stmt(st, id, usage_sql[id], out);
}

static void read_budget(sqlite3_stmt *s, int col, struct tg_budget *b)
{
    memset(b, 0, sizeof(*b));
    b->monthly_micro = sqlite3_column_int64(s, col);
    b->daily_micro = sqlite3_column_int64(s, col + 1);
    b->soft = sqlite3_column_int(s, col + 2) != 0;
    tg_sqlite_col_copy(b->month, sizeof(b->month), s, col + 3);
    b->month_micro = sqlite3_column_int64(s, col + 4);
    tg_sqlite_col_copy(b->day, sizeof(b->day), s, col + 5);
    b->day_micro = sqlite3_column_int64(s, col + 6);
}

static int budget_get(struct tg_store *st, int64_t team_id, struct tg_budget *out)
{
    sqlite3_stmt *s;
    int rc = stmt(st, U_BUDGET_GET, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, team_id);
    rc = tg_sqlite_one(st, s, "read the team's budget");
    if (rc == TG_OK)
        read_budget(s, 0, out);
    tg_sqlite_done(s);
    return rc;
}

/* The price of one run of a listed processor on day (0: not listed). */
static int price_on(struct tg_store *st, const char *processor, const char *day, int64_t *micro)
{
    sqlite3_stmt *s;
    *micro = 0;
    int rc = stmt(st, U_PRICE, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, processor);
    tg_sqlite_bind_text(s, 2, day);
    rc = tg_sqlite_one(st, s, "read a price");
    if (rc == TG_OK)
        *micro = sqlite3_column_int64(s, 0);
    tg_sqlite_done(s);
    return rc == TG_ENOTFOUND ? TG_OK : rc;
}

/* ---- the runs' costs, as they are recorded ------------------------------------------- */

/* What pricing a submission's runs needs to know of it: its team and day, and the periods
 * its hold (open or given back) was counted in, else its own. */
struct cost_of {
    int64_t team_id;
    char sub_day[11];           /* the submission's day: its prices and its usage row */
    char day[11], month[8];     /* the budget periods its runs count in */
    int hold_open;
};

static int cost_of(struct tg_store *st, const char *sub_id,
                   const struct tg_sqlite_sub_facts *known, struct cost_of *c)
{
    c->team_id = known->team_id;
    snprintf(c->sub_day, sizeof(c->sub_day), "%s", known->day);
    snprintf(c->month, sizeof(c->month), "%s", known->month);
    memcpy(c->day, c->sub_day, sizeof(c->day));
    sqlite3_stmt *s;
    c->hold_open = 0;
    int rc = stmt(st, U_COST_HOLD_GET, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    rc = tg_sqlite_one(st, s, "read a budget hold");
    if (rc == TG_OK) {
        tg_sqlite_col_copy(c->month, sizeof(c->month), s, 0);
        tg_sqlite_col_copy(c->day, sizeof(c->day), s, 1);
        c->hold_open = sqlite3_column_int(s, 2) != 0;
    }
    tg_sqlite_done(s);
    return rc == TG_ENOTFOUND ? TG_OK : rc;
}

/* n runs of one processor: the call's and the day's cost, then the hold or the budget. */
static int cost_add(struct tg_store *st, const char *sub_id, int seq, const struct cost_of *c,
                    const char *processor, int64_t n)
{
    char listed[128];
    int64_t micro = 0;
    int rc = TG_OK;
    if (processor != NULL
        && tg_price_listed_name(processor, listed, sizeof(listed)) == TG_OK)
        rc = price_on(st, listed, c->sub_day, &micro);
    if (rc != TG_OK)
        return rc;
    int64_t amount = n * micro;
    const char *proc = processor != NULL ? processor : "";
    sqlite3_stmt *s;
    if ((rc = stmt(st, U_COST_CALL, &s)) != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub_id);
    sqlite3_bind_int(s, 2, seq);
    tg_sqlite_bind_text(s, 3, proc);
    sqlite3_bind_int64(s, 4, n);
    sqlite3_bind_int64(s, 5, amount);
    if ((rc = tg_sqlite_run(st, s, "record a call's cost")) != TG_OK
        || (rc = stmt(st, U_COST_DAY, &s)) != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, c->team_id);
    tg_sqlite_bind_text(s, 2, c->sub_day);
    tg_sqlite_bind_text(s, 3, proc);
    sqlite3_bind_int64(s, 4, n);
    sqlite3_bind_int64(s, 5, amount);
    if ((rc = tg_sqlite_run(st, s, "record a day's usage")) != TG_OK || amount == 0)
        return rc;
    if (c->hold_open) { /* counted in the periods already: the hold holds that much less */
        if ((rc = stmt(st, U_COST_HOLD, &s)) != TG_OK)
            return rc;
        tg_sqlite_bind_text(s, 1, sub_id);
        sqlite3_bind_int64(s, 2, amount);
        return tg_sqlite_run(st, s, "move a hold's cost");
    }
    if ((rc = stmt(st, U_COST_BUDGET, &s)) != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, c->team_id);
    tg_sqlite_bind_text(s, 2, c->month);
    tg_sqlite_bind_text(s, 3, c->day);
    sqlite3_bind_int64(s, 4, amount);
    return tg_sqlite_run(st, s, "count a cost in the budget");
}

static int same_proc(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int tg_sqlite_usage_runs(struct tg_store *st, const char *sub_id, int seq, size_t n,
                         const char *const *procs, const struct tg_sqlite_sub_facts *known)
{
    struct cost_of c;
    if (n == 0)
        return TG_OK;
    int rc = cost_of(st, sub_id, known, &c);
    if (rc != TG_OK)
        return rc;
    /* A call's runs have one processor as a rule: one step per run of a processor in a row. */
    size_t from = 0;
    for (size_t i = 1; rc == TG_OK && i <= n; i++) {
        const char *p = procs != NULL ? procs[from] : NULL;
        if (i < n && same_proc(p, procs != NULL ? procs[i] : NULL))
            continue;
        rc = cost_add(st, sub_id, seq, &c, p, (int64_t)(i - from));
        from = i;
    }
    return rc;
}

/* ---- admission ---------------------------------------------------------------------- */

int tg_sqlite_budget_check(struct tg_store *st, const struct tg_submission *sub,
                           const struct tg_admission *a, struct tg_admit_refusal *why,
                           struct tg_sqlite_hold *hold)
{
    struct tg_budget b;
    struct tg_budget_note note;
    memset(&note, 0, sizeof(note));
    memset(hold, 0, sizeof(*hold));
    int rc = budget_get(st, sub->team_id, &b);
    if (rc == TG_ENOTFOUND)
        return TG_OK; /* no budget: nothing to price or hold */
    if (rc != TG_OK)
        return rc;
    char month[TG_MONTH_LEN], day[TG_DAY_LEN];
    tg_budget_period(sub->received_ms, month, day);
    int64_t cost = 0;
    for (size_t i = 0; i < a->nprocs; i++) {
        int64_t micro;
        rc = price_on(st, a->procs[i], day, &micro);
        if (rc != TG_OK)
            return rc;
        cost += micro * a->proc_runs[i];
    }
    rc = tg_budget_take(&b, month, day, cost, &note);
    if (a->budget != NULL)
        *a->budget = note;
    if (rc == TG_ETOOBIG) {
        *why = (struct tg_admit_refusal){.limit = note.which, .value = 0, .used = 0,
                                         .retry_after_s = 0};
        return rc;
    }
    sqlite3_stmt *s;
    rc = stmt(st, U_BUDGET_PUT, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, sub->team_id);
    tg_sqlite_bind_text(s, 2, b.month);
    sqlite3_bind_int64(s, 3, b.month_micro);
    tg_sqlite_bind_text(s, 4, b.day);
    sqlite3_bind_int64(s, 5, b.day_micro);
    rc = tg_sqlite_run(st, s, "count the submission against the budget");
    if (rc == TG_OK) {
        hold->held = 1;
        hold->micro = cost;
        memcpy(hold->month, b.month, sizeof(hold->month));
        memcpy(hold->day, b.day, sizeof(hold->day));
    }
    return rc;
}

int tg_sqlite_budget_hold(struct tg_store *st, const struct tg_submission *sub,
                          const struct tg_sqlite_hold *hold)
{
    if (!hold->held)
        return TG_OK;
    sqlite3_stmt *s;
    int rc = stmt(st, U_HOLD_PUT, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, sub->id);
    sqlite3_bind_int64(s, 2, sub->team_id);
    tg_sqlite_bind_text(s, 3, hold->month);
    tg_sqlite_bind_text(s, 4, hold->day);
    sqlite3_bind_int64(s, 5, hold->micro);
    return tg_sqlite_run(st, s, "hold the submission's estimate");
}

/* ---- prices ------------------------------------------------------------------------- */

struct price_walk {
    int (*fn)(void *arg, const struct tg_price_row *row);
    void *arg;
};

static int price_row(void *arg, sqlite3_stmt *s)
{
    const struct price_walk *w = arg;
    struct tg_price_row r = {tg_sqlite_col_text(s, 0), tg_sqlite_col_text(s, 1),
                             sqlite3_column_int64(s, 2), tg_sqlite_col_text(s, 3),
                             tg_sqlite_col_text(s, 4)};
    return w->fn(w->arg, &r);
}

static int price_list(struct tg_store *st,
                      int (*fn)(void *arg, const struct tg_price_row *row), void *arg)
{
    sqlite3_stmt *s;
    int rc = stmt(st, U_PRICE_LIST, &s);
    if (rc != TG_OK)
        return rc;
    struct price_walk w = {fn, arg};
    return tg_sqlite_each(st, s, "list prices", price_row, &w);
}

static int price_set(struct tg_store *st, const struct tg_actor *who, const char *processor,
                     const char *from, int64_t micro_per_run)
{
    if (who == NULL || who->id == NULL || who->interface == NULL || processor == NULL ||
        from == NULL)
        return tg_sqlite_invalid(st, "price: missing actor, processor or date");
    int rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    char now[TG_TIME_LEN], before[64] = "null", after[160], money[32];
    tg_sqlite_now_text(now);
    int64_t old;
    sqlite3_stmt *s;
    rc = stmt(st, U_PRICE_GET, &s);
    if (rc == TG_OK) {
        tg_sqlite_bind_text(s, 1, processor);
        tg_sqlite_bind_text(s, 2, from);
        rc = tg_sqlite_one(st, s, "read the price");
        if (rc == TG_OK) {
            old = sqlite3_column_int64(s, 0);
            tg_money_format(old * 1000, money, sizeof(money));
            snprintf(before, sizeof(before), "{\"usd_per_1000\":\"%s\"}", money);
        }
        tg_sqlite_done(s);
        if (rc == TG_ENOTFOUND)
            rc = TG_OK;
    }
    if (rc == TG_OK)
        rc = stmt(st, U_PRICE_SET, &s);
    if (rc == TG_OK) {
        tg_sqlite_bind_text(s, 1, processor);
        tg_sqlite_bind_text(s, 2, from);
        sqlite3_bind_int64(s, 3, micro_per_run);
        tg_sqlite_bind_text(s, 4, now);
        rc = tg_sqlite_run(st, s, "set the price");
    }
    if (rc == TG_OK) {
        tg_money_format(micro_per_run * 1000, money, sizeof(money));
        snprintf(after, sizeof(after), "{\"usd_per_1000\":\"%s\",\"effective_from\":\"%s\"}",
                 money, from);
        rc = tg_sqlite_admin_log(st, who, "price.set", "price", processor, NULL, before, after);
    }
    return tg_sqlite_tx_end(st, rc);
}

/* ---- budgets ------------------------------------------------------------------------ */

static int budget_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                      int64_t monthly, int64_t daily, int soft, int64_t now_ms)
{
    if (who == NULL || who->id == NULL || who->interface == NULL || team == NULL)
        return tg_sqlite_invalid(st, "budget: missing actor or team");
    int rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    char before[160] = "null", after[160];
    int64_t team_id = 0;
    sqlite3_stmt *s;
    rc = stmt(st, U_TEAM_BUDGET, &s);
    if (rc == TG_OK) {
        tg_sqlite_bind_text(s, 1, team);
        rc = tg_sqlite_one(st, s, "read the team");
        if (rc == TG_OK) {
            team_id = sqlite3_column_int64(s, 0);
            if (sqlite3_column_type(s, 1) != SQLITE_NULL)
                tg_budget_json(before, sizeof(before), sqlite3_column_int64(s, 1),
                               sqlite3_column_int64(s, 2), sqlite3_column_int(s, 3));
        } else if (rc == TG_ENOTFOUND) {
            tg_sqlite_set_err(st, "no team %.64s", team);
        }
        tg_sqlite_done(s);
    }
    if (rc == TG_OK && monthly == 0 && daily == 0) {
        rc = stmt(st, U_BUDGET_DEL, &s);
        if (rc == TG_OK) {
            sqlite3_bind_int64(s, 1, team_id);
            rc = tg_sqlite_run(st, s, "remove the budget");
        }
        snprintf(after, sizeof(after), "null");
    } else if (rc == TG_OK) {
        char now[TG_TIME_LEN], month[TG_MONTH_LEN], day[TG_DAY_LEN];
        tg_sqlite_now_text(now);
        tg_budget_period(now_ms, month, day);
        rc = stmt(st, U_BUDGET_UPSERT, &s);
        if (rc == TG_OK) {
            sqlite3_bind_int64(s, 1, team_id);
            sqlite3_bind_int64(s, 2, monthly);
            sqlite3_bind_int64(s, 3, daily);
            sqlite3_bind_int(s, 4, soft != 0);
            tg_sqlite_bind_text(s, 5, month);
            tg_sqlite_bind_text(s, 6, day);
            tg_sqlite_bind_text(s, 7, now);
            rc = tg_sqlite_run(st, s, "set the budget");
        }
        tg_budget_json(after, sizeof(after), monthly, daily, soft);
    }
    if (rc == TG_OK)
        rc = tg_sqlite_admin_log(st, who, "team.budget", "team", team, team, before, after);
    return tg_sqlite_tx_end(st, rc);
}

struct spend_walk {
    int (*fn)(void *arg, const struct tg_spend_row *row);
    void *arg;
};

static int spend_row(void *arg, sqlite3_stmt *s)
{
    const struct spend_walk *w = arg;
    struct tg_spend_row r;
    memset(&r, 0, sizeof(r));
    r.team = tg_sqlite_col_text(s, 0);
    r.month_micro = sqlite3_column_int64(s, 1);
    r.has_budget = sqlite3_column_int(s, 2) != 0;
    if (r.has_budget)
        read_budget(s, 3, &r.budget);
    return w->fn(w->arg, &r);
}

static int spend_list(struct tg_store *st, const char *month,
                      int (*fn)(void *arg, const struct tg_spend_row *row), void *arg)
{
    sqlite3_stmt *s;
    int rc = stmt(st, U_SPEND_LIST, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, month);
    struct spend_walk w = {fn, arg};
    return tg_sqlite_each(st, s, "read the teams' spend", spend_row, &w);
}

/* ---- usage -------------------------------------------------------------------------- */

struct usage_walk {
    int (*fn)(void *arg, const struct tg_usage_row *row);
    void *arg;
    long rows;
};

static int usage_row(void *arg, sqlite3_stmt *s)
{
    struct usage_walk *w = arg;
    struct tg_usage_row r = {tg_sqlite_col_text(s, 0), tg_sqlite_col_text(s, 1),
                             tg_sqlite_col_text(s, 2), sqlite3_column_int64(s, 3),
                             sqlite3_column_int64(s, 4)};
    w->rows++;
    return w->fn(w->arg, &r);
}

static int usage(struct tg_store *st, const struct tg_usage_query *q,
                 int (*fn)(void *arg, const struct tg_usage_row *row), void *arg, long *rows)
{
    sqlite3_stmt *s;
    int rc = stmt(st, U_USAGE, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, q->team);
    tg_sqlite_bind_text(s, 2, q->since);
    tg_sqlite_bind_text(s, 3, q->until);
    tg_sqlite_bind_text(s, 4, q->processor);
    sqlite3_bind_int(s, 5, q->by_month != 0);
    struct usage_walk w = {fn, arg, 0};
    rc = tg_sqlite_each(st, s, "read usage", usage_row, &w);
    if (rows != NULL)
        *rows = w.rows;
    return rc;
}

const struct tg_store_usage_ops tg_sqlite_usage_ops = {
    .price_list = price_list,
    .price_set = price_set,
    .budget_get = budget_get,
    .budget_set = budget_set,
    .spend_list = spend_list,
    .usage = usage,
};
