/* The PostgreSQL backend: prices, budgets and usage (contract in tg_store_usage.h, reference
 * behaviour in sqlite/tg_sqlite_usage.c). The runs' costs are written by the triggers of
 * sql/postgres/011_usage_budgets.sql in the statement that records them. Admission's budget
 * step is one statement: the submission priced from the price table, and the team's budget
 * row updated only while the estimate fits, a condition the server evaluates again on the
 * row's newest version after waiting for another admission's lock on it (READ COMMITTED),
 * so that daemons on several hosts never take the same last dollars. */
#include "tg_pg_int.h"

#include <stdio.h>
#include <string.h>

#include "tg_price.h"

/* $1 the team, $2 its month and $3 its day (the submission's), $4 the listed processors
 * and $5 their runs as arrays, $6 the submission. The hold is written with the periods the
 * row counts it in; the submission's own row follows in the same transaction (the hold's
 * foreign key is checked at commit). The answer: the estimate and whether it was taken. */
static const struct tg_pg_stmt budget_take_stmt = {
    "usage_budget_take",
    "WITH cost AS (SELECT coalesce(sum(x.n * coalesce((SELECT p.micro_per_run FROM prices p"
    "   WHERE p.processor = x.proc AND p.effective_from <= $3::text"
    "   ORDER BY p.effective_from DESC LIMIT 1), 0)), 0)::bigint AS c"
    "  FROM unnest($4::text[], $5::bigint[]) AS x(proc, n)),"
    " u AS (UPDATE team_budgets b SET month = greatest(b.month, $2::text),"
    "   day = greatest(b.day, $3::text),"
    "   month_micro = CASE WHEN $2::text > b.month THEN 0 ELSE b.month_micro END + cost.c,"
    "   day_micro = CASE WHEN $3::text > b.day THEN 0 ELSE b.day_micro END + cost.c"
    "  FROM cost WHERE b.team_id = $1::bigint AND (b.soft = 1 OR ((b.monthly_micro = 0"
    "   OR CASE WHEN $2::text > b.month THEN 0 ELSE b.month_micro END + cost.c"
    "    <= b.monthly_micro) AND (b.daily_micro = 0"
    "   OR CASE WHEN $3::text > b.day THEN 0 ELSE b.day_micro END + cost.c"
    "    <= b.daily_micro)))"
    "  RETURNING b.monthly_micro, b.daily_micro, b.soft, b.month, b.month_micro, b.day,"
    "   b.day_micro),"
    " h AS (INSERT INTO budget_holds (submission_id, team_id, month, day, held_micro, open)"
    "  SELECT $6, $1::bigint, u.month, u.day, cost.c, 1 FROM u, cost)"
    " SELECT cost.c, (u.monthly_micro IS NOT NULL)::int, u.monthly_micro, u.daily_micro, u.soft,"
    "  u.month, u.month_micro, u.day, u.day_micro FROM cost LEFT JOIN u ON true"};

static const struct tg_pg_stmt budget_get_stmt = {
    "usage_budget_get",
    "SELECT monthly_micro, daily_micro, soft, month, month_micro, day, day_micro"
    " FROM team_budgets WHERE team_id = $1"};

static const struct tg_pg_stmt price_list_stmt = {
    "usage_price_list",
    "SELECT processor, effective_from, micro_per_run, source, set_at FROM prices"
    " ORDER BY processor, effective_from"};

static const struct tg_pg_stmt price_get_stmt = {
    "usage_price_get",
    "SELECT micro_per_run FROM prices WHERE processor = $1 AND effective_from <= $2"
    " ORDER BY effective_from DESC LIMIT 1"};

static const struct tg_pg_stmt price_set_stmt = {
    "usage_price_set",
    "INSERT INTO prices (processor, effective_from, micro_per_run, source, set_at)"
    " VALUES ($1, $2, $3, 'operator', $4) ON CONFLICT (processor, effective_from)"
    " DO UPDATE SET micro_per_run = excluded.micro_per_run, source = 'operator',"
    " set_at = excluded.set_at"};

static const struct tg_pg_stmt team_budget_stmt = {
    "usage_team_budget",
    "SELECT t.id, b.monthly_micro, b.daily_micro, b.soft FROM teams t"
    " LEFT JOIN team_budgets b ON b.team_id = t.id WHERE t.name = $1 FOR UPDATE OF t"};

static const struct tg_pg_stmt budget_upsert_stmt = {
    "usage_budget_upsert",
    "INSERT INTO team_budgets (team_id, monthly_micro, daily_micro, soft, month,"
    " month_micro, day, day_micro, updated_at)"
    " VALUES ($1, $2, $3, $4, $5,"
    " (SELECT coalesce(sum(est_cost_micro), 0) FROM usage_days"
    "  WHERE team_id = $1 AND day >= $5 || '-01' AND day <= $5 || '-31'),"
    " $6, (SELECT coalesce(sum(est_cost_micro), 0) FROM usage_days"
    "  WHERE team_id = $1 AND day = $6), $7)"
    " ON CONFLICT (team_id) DO UPDATE SET monthly_micro = excluded.monthly_micro,"
    " daily_micro = excluded.daily_micro, soft = excluded.soft,"
    " updated_at = excluded.updated_at"};

static const struct tg_pg_stmt budget_del_stmt = {
    "usage_budget_del", "DELETE FROM team_budgets WHERE team_id = $1"};

static const struct tg_pg_stmt spend_list_stmt = {
    "usage_spend_list",
    "SELECT t.name, coalesce((SELECT sum(u.est_cost_micro) FROM usage_days u"
    "  WHERE u.team_id = t.id AND u.day >= $1 || '-01' AND u.day <= $1 || '-31'), 0),"
    " b.team_id IS NOT NULL, b.monthly_micro, b.daily_micro, b.soft, b.month,"
    " b.month_micro, b.day, b.day_micro"
    " FROM teams t LEFT JOIN team_budgets b ON b.team_id = t.id"
    " WHERE b.team_id IS NOT NULL OR EXISTS (SELECT 1 FROM usage_days u"
    "  WHERE u.team_id = t.id AND u.day >= $1 || '-01' AND u.day <= $1 || '-31')"
    " ORDER BY t.name"};

static const struct tg_pg_stmt usage_stmt = {
    "usage_read",
    "SELECT t.name, CASE WHEN $5::bigint = 1 THEN substr(u.day, 1, 7) ELSE u.day END"
    " AS period, u.processor, sum(u.runs), sum(u.est_cost_micro)"
    " FROM usage_days u JOIN teams t ON t.id = u.team_id"
    " WHERE ($1::text IS NULL OR t.name = $1::text) AND ($2::text IS NULL OR u.day >= $2::text)"
    " AND ($3::text IS NULL OR u.day < $3::text) AND ($4::text IS NULL OR u.processor = $4::text)"
    " GROUP BY t.name, period, u.processor ORDER BY t.name, period, u.processor"};

static void read_budget(const PGresult *res, int row, int col, struct tg_budget *b)
{
    memset(b, 0, sizeof(*b));
    b->monthly_micro = tg_pg_int(res, row, col);
    b->daily_micro = tg_pg_int(res, row, col + 1);
    b->soft = tg_pg_int(res, row, col + 2) != 0;
    tg_pg_copy(b->month, sizeof(b->month), res, row, col + 3);
    b->month_micro = tg_pg_int(res, row, col + 4);
    tg_pg_copy(b->day, sizeof(b->day), res, row, col + 5);
    b->day_micro = tg_pg_int(res, row, col + 6);
}

static int budget_get(struct tg_store *st, int64_t team_id, struct tg_budget *out)
{
    char team[TG_PG_I64_LEN];
    const char *p[] = {tg_pg_i64(team, team_id)};
    PGresult *res;
    int rc = tg_pg_one(st, &budget_get_stmt, 1, p, &res, "read the team's budget");
    if (rc == TG_OK) {
        read_budget(res, 0, 0, out);
        PQclear(res);
    }
    return rc;
}

/* ---- admission ---------------------------------------------------------------------- */

/* The processors and their runs as two array literals; names are escaped as the array
 * syntax wants. */
static int arrays(const struct tg_admission *a, struct tg_buf *procs, struct tg_buf *runs)
{
    int rc = tg_buf_adds(procs, "{");
    if (rc == TG_OK)
        rc = tg_buf_adds(runs, "{");
    for (size_t i = 0; rc == TG_OK && i < a->nprocs; i++) {
        rc = tg_buf_adds(procs, i > 0 ? ",\"" : "\"");
        for (const char *c = a->procs[i]; rc == TG_OK && *c != '\0'; c++) {
            if (*c == '"' || *c == '\\')
                rc = tg_buf_adds(procs, "\\");
            if (rc == TG_OK)
                rc = tg_buf_add(procs, c, 1);
        }
        if (rc == TG_OK)
            rc = tg_buf_adds(procs, "\"");
        if (rc == TG_OK)
            rc = tg_buf_printf(runs, "%s%ld", i > 0 ? "," : "", a->proc_runs[i]);
    }
    if (rc == TG_OK)
        rc = tg_buf_adds(procs, "}");
    if (rc == TG_OK)
        rc = tg_buf_adds(runs, "}");
    return rc;
}

int tg_pg_budget_take(struct tg_store *st, const struct tg_submission *sub,
                      const struct tg_admission *a, struct tg_admit_refusal *why)
{
    struct tg_budget_note note;
    memset(&note, 0, sizeof(note));
    char month[TG_MONTH_LEN], day[TG_DAY_LEN], team[TG_PG_I64_LEN];
    tg_budget_period(sub->received_ms, month, day);
    struct tg_buf procs, runs;
    tg_buf_init(&procs, (size_t)16 << 20);
    tg_buf_init(&runs, (size_t)16 << 20);
    int rc = arrays(a, &procs, &runs);
    if (rc != TG_OK) {
        tg_pg_set_err(st, "price the submission: %s", tg_rc_str(rc));
        goto out;
    }
    const char *p[] = {tg_pg_i64(team, sub->team_id), month, day, tg_buf_str(&procs),
                       tg_buf_str(&runs), sub->id};
    PGresult *res;
    rc = tg_pg_one(st, &budget_take_stmt, 6, p, &res, "count the submission against the budget");
    if (rc != TG_OK)
        goto out;
    int64_t cost = tg_pg_int(res, 0, 0);
    int taken = tg_pg_int(res, 0, 1) != 0;
    struct tg_budget b;
    if (taken) {
        read_budget(res, 0, 2, &b);
        /* The soft budget it crossed, from the row as it was before it. */
        b.month_micro -= cost;
        b.day_micro -= cost;
        tg_budget_take(&b, month, day, cost, &note);
    }
    PQclear(res);
    if (!taken) {
        /* No row taken: the team has no budget, or a hard one refused. What the row holds
         * now (this statement's snapshot may predate the lock it waited for) says which. */
        rc = budget_get(st, sub->team_id, &b);
        if (rc == TG_ENOTFOUND) {
            rc = TG_OK;
            goto out;
        }
        if (rc != TG_OK)
            goto out;
        if (tg_budget_take(&b, month, day, cost, &note) == TG_OK) {
            /* It fits now (a refund came in between): still refused, naming the month. */
            note.refused = 1;
            note.which = "monthly";
            snprintf(note.period, sizeof(note.period), "%s", b.month);
            note.budget_micro = b.monthly_micro;
            note.spent_micro = tg_budget_month_spent(&b, month) - cost;
        }
        *why = (struct tg_admit_refusal){.limit = note.which};
        rc = TG_ETOOBIG;
    }
out:
    if (a->budget != NULL)
        *a->budget = note;
    tg_buf_free(&procs);
    tg_buf_free(&runs);
    return rc;
}

/* ---- prices ------------------------------------------------------------------------- */

struct price_walk {
    int (*fn)(void *arg, const struct tg_price_row *row);
    void *arg;
};

static int price_row(void *arg, PGresult *res, int i)
{
    const struct price_walk *w = arg;
    struct tg_price_row r = {tg_pg_text(res, i, 0), tg_pg_text(res, i, 1), tg_pg_int(res, i, 2),
                             tg_pg_text(res, i, 3), tg_pg_text(res, i, 4)};
    return w->fn(w->arg, &r);
}

static int price_list(struct tg_store *st,
                      int (*fn)(void *arg, const struct tg_price_row *row), void *arg)
{
    struct price_walk w = {fn, arg};
    return tg_pg_each(st, &price_list_stmt, 0, NULL, "list prices", price_row, &w);
}

struct price_write {
    const struct tg_actor *who;
    const char *processor, *from;
    int64_t micro;
};

static int price_set_w(struct tg_store *st, void *arg)
{
    const struct price_write *w = arg;
    char now[TG_TIME_LEN], before[64] = "null", after[160], money[32], micro[TG_PG_I64_LEN];
    tg_pg_now_text(now);
    const char *p1[] = {w->processor, w->from};
    PGresult *res;
    int rc = tg_pg_one(st, &price_get_stmt, 2, p1, &res, "read the price");
    if (rc == TG_OK) {
        tg_money_format(tg_pg_int(res, 0, 0) * 1000, money, sizeof(money));
        snprintf(before, sizeof(before), "{\"usd_per_1000\":\"%s\"}", money);
        PQclear(res);
    }
    if (rc == TG_ENOTFOUND)
        rc = TG_OK;
    if (rc == TG_OK) {
        const char *p2[] = {w->processor, w->from, tg_pg_i64(micro, w->micro), now};
        rc = tg_pg_run(st, &price_set_stmt, 4, p2, "set the price");
    }
    if (rc == TG_OK) {
        tg_money_format(w->micro * 1000, money, sizeof(money));
        snprintf(after, sizeof(after), "{\"usd_per_1000\":\"%s\",\"effective_from\":\"%s\"}",
                 money, w->from);
        rc = tg_pg_admin_log(st, w->who, "price.set", "price", w->processor, NULL, before,
                             after);
    }
    return rc;
}

static int price_set(struct tg_store *st, const struct tg_actor *who, const char *processor,
                     const char *from, int64_t micro_per_run)
{
    if (who == NULL || who->id == NULL || who->interface == NULL || processor == NULL ||
        from == NULL)
        return tg_pg_invalid(st, "price: missing actor, processor or date");
    struct price_write w = {who, processor, from, micro_per_run};
    return tg_pg_write(st, price_set_w, &w);
}

/* ---- budgets ------------------------------------------------------------------------ */

struct budget_write {
    const struct tg_actor *who;
    const char *team;
    int64_t monthly, daily, now_ms;
    int soft;
};

static int budget_set_w(struct tg_store *st, void *arg)
{
    const struct budget_write *w = arg;
    char before[160] = "null", after[160], team_id[TG_PG_I64_LEN] = "";
    const char *p1[] = {w->team};
    PGresult *res;
    int rc = tg_pg_one(st, &team_budget_stmt, 1, p1, &res, "read the team");
    if (rc == TG_OK) {
        tg_pg_copy(team_id, sizeof(team_id), res, 0, 0);
        if (tg_pg_text(res, 0, 1) != NULL)
            tg_budget_json(before, sizeof(before), tg_pg_int(res, 0, 1), tg_pg_int(res, 0, 2),
                           tg_pg_int(res, 0, 3) != 0);
        PQclear(res);
    } else if (rc == TG_ENOTFOUND) {
        tg_pg_set_err(st, "no team %.64s", w->team);
    }
    if (rc == TG_OK && w->monthly == 0 && w->daily == 0) {
        const char *p[] = {team_id};
        rc = tg_pg_run(st, &budget_del_stmt, 1, p, "remove the budget");
        snprintf(after, sizeof(after), "null");
    } else if (rc == TG_OK) {
        char now[TG_TIME_LEN], month[TG_MONTH_LEN], day[TG_DAY_LEN];
        char m[TG_PG_I64_LEN], d[TG_PG_I64_LEN];
        tg_pg_now_text(now);
        tg_budget_period(w->now_ms, month, day);
        const char *p[] = {team_id, tg_pg_i64(m, w->monthly), tg_pg_i64(d, w->daily),
                           w->soft ? "1" : "0", month, day, now};
        rc = tg_pg_run(st, &budget_upsert_stmt, 7, p, "set the budget");
        tg_budget_json(after, sizeof(after), w->monthly, w->daily, w->soft);
    }
    if (rc == TG_OK)
        rc = tg_pg_admin_log(st, w->who, "team.budget", "team", w->team, w->team, before,
                             after);
    return rc;
}

static int budget_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                      int64_t monthly, int64_t daily, int soft, int64_t now_ms)
{
    if (who == NULL || who->id == NULL || who->interface == NULL || team == NULL)
        return tg_pg_invalid(st, "budget: missing actor or team");
    struct budget_write w = {who, team, monthly, daily, now_ms, soft};
    return tg_pg_write(st, budget_set_w, &w);
}

struct spend_walk {
    int (*fn)(void *arg, const struct tg_spend_row *row);
    void *arg;
};

static int spend_row(void *arg, PGresult *res, int i)
{
    const struct spend_walk *w = arg;
    struct tg_spend_row r;
    memset(&r, 0, sizeof(r));
    r.team = tg_pg_text(res, i, 0);
    r.month_micro = tg_pg_int(res, i, 1);
    const char *has = tg_pg_text(res, i, 2);
    r.has_budget = has != NULL && has[0] == 't';
    if (r.has_budget)
        read_budget(res, i, 3, &r.budget);
    return w->fn(w->arg, &r);
}

static int spend_list(struct tg_store *st, const char *month,
                      int (*fn)(void *arg, const struct tg_spend_row *row), void *arg)
{
    const char *p[] = {month};
    struct spend_walk w = {fn, arg};
    return tg_pg_each(st, &spend_list_stmt, 1, p, "read the teams' spend", spend_row, &w);
}

/* ---- usage -------------------------------------------------------------------------- */

struct usage_walk {
    int (*fn)(void *arg, const struct tg_usage_row *row);
    void *arg;
    long rows;
};

static int usage_row(void *arg, PGresult *res, int i)
{
    struct usage_walk *w = arg;
    struct tg_usage_row r = {tg_pg_text(res, i, 0), tg_pg_text(res, i, 1),
                             tg_pg_text(res, i, 2), tg_pg_int(res, i, 3),
                             tg_pg_int(res, i, 4)};
    w->rows++;
    return w->fn(w->arg, &r);
}

static int usage(struct tg_store *st, const struct tg_usage_query *q,
                 int (*fn)(void *arg, const struct tg_usage_row *row), void *arg, long *rows)
{
    const char *p[] = {q->team, q->since, q->until, q->processor, q->by_month ? "1" : "0"};
    struct usage_walk w = {fn, arg, 0};
    int rc = tg_pg_each(st, &usage_stmt, 5, p, "read usage", usage_row, &w);
    if (rows != NULL)
        *rows = w.rows;
    return rc;
}

const struct tg_store_usage_ops tg_pg_usage_ops = {
    .price_list = price_list,
    .price_set = price_set,
    .budget_get = budget_get,
    .budget_set = budget_set,
    .spend_list = spend_list,
    .usage = usage,
};
