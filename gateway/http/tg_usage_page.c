/* The usage page for team leads: GET /usage (a token form) and POST /usage (the page): this
 * UTC month's estimated spend against the team's budget, a chart of spend per day by
 * processor drawn as SVG on the server (tg_chart.c: no script, no chart library), and the
 * same numbers as a table. The token travels as a form field of a POST, as on /history;
 * the numbers are the usage rows GET /v1/audit/usage answers from, and the read is logged
 * in audit_reads like any other audit read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tg_chart.h"
#include "tg_html.h"
#include "tg_log.h"
#include "tg_pages.h"
#include "tg_price.h"
#include "tg_query.h"
#include "tg_usage.h"

#define FIELD_MAX 1024
#define SERIES_MAX 32 /* processors shown apart in the chart; the rest as "other" */

static const char *const month_names[] = {"January", "February", "March", "April", "May",
                                          "June", "July", "August", "September", "October",
                                          "November", "December"};

/* The form's token field. */
static int read_token(const struct tg_request *req, char token[FIELD_MAX])
{
    token[0] = '\0';
    const char *s = req->body != NULL ? req->body : "";
    size_t len = req->body_len;
    if (len > 4 * FIELD_MAX)
        return TG_ETOOBIG;
    for (size_t i = 0; i < len;) {
        size_t end = i, eq;
        while (end < len && s[end] != '&')
            end++;
        for (eq = i; eq < end && s[eq] != '='; eq++)
            ;
        char name[16];
        if (tg_query_decode_form(s + i, eq - i, name, sizeof(name)) == TG_OK &&
            strcmp(name, "token") == 0 && eq < end &&
            tg_query_decode_form(s + eq + 1, end - eq - 1, token, FIELD_MAX) != TG_OK)
            return TG_EINVAL;
        i = end + 1;
    }
    return TG_OK;
}

static void token_page(const struct tg_request *req, struct tg_response *resp, int status,
                       const char *problem)
{
    struct tg_buf *b = &resp->body;
    tg_html_begin(b, "Your team's usage", "usage");
    tg_buf_adds(b, "<p class=\"lead\">Enter your team token to see this month's estimated "
                   "spend and your team's budget.</p>\n<form method=\"post\" "
                   "class=\"token-form\" id=\"usage-form\" action=\"/usage\">\n"
                   "<div class=\"field\"><label for=\"f-token\">Team token</label>\n");
    if (problem != NULL) {
        tg_buf_adds(b, "<p class=\"field-error\" id=\"e-token\">");
        tg_html_escape(b, problem);
        tg_buf_adds(b, "</p>\n");
    }
    tg_buf_printf(b, "<input type=\"password\" id=\"f-token\" name=\"token\" "
                     "autocomplete=\"off\" spellcheck=\"false\"%s></div>\n",
                  problem != NULL ? " class=\"invalid\" aria-invalid=\"true\" "
                                    "aria-describedby=\"e-token\"" : "");
    tg_buf_adds(b, "<p class=\"actions\"><button type=\"submit\" class=\"button\">Show</button>"
                   "</p>\n</form>\n");
    tg_html_end(b, req);
    tg_html_finish(req, resp, status);
}

/* This month's usage rows of one team, by day and processor. */
struct month {
    int days;                       /* in the month */
    size_t nseries;
    const char *series[SERIES_MAX + 1];
    int64_t *values;                /* days x (SERIES_MAX + 1) */
    int64_t total_micro, total_runs;
    struct tg_pool *pool;
    struct tg_buf *rows;            /* the table's rows */
};

static size_t series_of(struct month *m, const char *processor)
{
    for (size_t i = 0; i < m->nseries; i++)
        if (strcmp(m->series[i], processor) == 0)
            return i;
    if (m->nseries == SERIES_MAX)
        return SERIES_MAX; /* "other" */
    m->series[m->nseries] = tg_pool_strdup(m->pool, processor[0] != '\0' ? processor : "none");
    return m->series[m->nseries] != NULL ? m->nseries++ : SERIES_MAX;
}

static int month_row(void *arg, const struct tg_usage_row *r)
{
    struct month *m = arg;
    int64_t at;
    if (r->period == NULL || tg_time_parse(r->period, &at) != TG_OK)
        return TG_OK; /* not a day: the query asked for days */
    time_t secs = (time_t)(at / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int day = tm.tm_mday;
    if (day < 1 || day > m->days)
        return TG_OK;
    size_t s = series_of(m, r->processor != NULL ? r->processor : "");
    m->values[(size_t)(day - 1) * (SERIES_MAX + 1) + s] += r->est_cost_micro;
    m->total_micro += r->est_cost_micro;
    m->total_runs += r->runs;
    char usd[32];
    tg_money_format(r->est_cost_micro, usd, sizeof(usd));
    tg_buf_adds(m->rows, "<tr><td>");
    tg_html_escape(m->rows, r->period);
    tg_buf_adds(m->rows, "</td><td>");
    tg_html_escape(m->rows, r->processor);
    tg_buf_printf(m->rows, "</td><td class=\"num\">%lld</td><td class=\"num\">$%s</td></tr>\n",
                  (long long)r->runs, usd);
    return m->rows->refused ? TG_ETOOBIG : TG_OK;
}

static void fact(struct tg_buf *b, const char *name, const char *id, const char *value)
{
    tg_buf_printf(b, "<tr><th>%s</th><td id=\"%s\">", name, id);
    tg_html_escape(b, value);
    tg_buf_adds(b, "</td></tr>\n");
}

static void budget_facts(struct tg_buf *b, const struct tg_budget *bud, const char *month,
                         const char *day)
{
    char usd[40];
    int64_t ms = tg_budget_month_spent(bud, month), ds = tg_budget_day_spent(bud, day);
    const char *kind = bud->soft ? " (soft: reported, never refused)" : "";
    if (bud->monthly_micro > 0) {
        tg_money_format(bud->monthly_micro, usd + 1, sizeof(usd) - 1);
        usd[0] = '$';
        tg_buf_printf(b, "<tr><th>Monthly budget</th><td id=\"budget-monthly\">%s%s</td></tr>\n",
                      usd, kind);
        tg_money_format(bud->monthly_micro - ms, usd + 1, sizeof(usd) - 1);
        fact(b, "Left this month", "budget-remaining", usd);
    }
    if (bud->daily_micro > 0) {
        tg_money_format(bud->daily_micro, usd + 1, sizeof(usd) - 1);
        tg_buf_printf(b, "<tr><th>Daily budget</th><td id=\"budget-daily\">%s%s</td></tr>\n",
                      usd, kind);
        tg_money_format(bud->daily_micro - ds, usd + 1, sizeof(usd) - 1);
        fact(b, "Left today", "budget-day-remaining", usd);
    }
    tg_money_format(ms, usd + 1, sizeof(usd) - 1);
    fact(b, "Counted against the budget", "budget-counted", usd);
}

static void usage_page(struct tg_worker *w, const struct tg_request *req,
                       struct tg_response *resp, const struct tg_auth *auth)
{
    char month[TG_MONTH_LEN], day[TG_DAY_LEN], since[TG_DAY_LEN], until[32];
    int64_t now = tg_now_ms();
    tg_budget_period(now, month, day);
    snprintf(since, sizeof(since), "%s-01", month);
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int y = tm.tm_year + 1900, mo = tm.tm_mon + 1;
    snprintf(until, sizeof(until), "%04d-%02d-01", mo == 12 ? y + 1 : y, mo == 12 ? 1 : mo + 1);
    struct tg_buf rows;
    tg_buf_init(&rows, resp->body.max);
    struct month m;
    memset(&m, 0, sizeof(m));
    m.days = tg_days_in_month(y, mo);
    m.pool = req->pool;
    m.rows = &rows;
    m.values = tg_pool_calloc(req->pool, (size_t)m.days * (SERIES_MAX + 1), sizeof(int64_t));
    struct tg_budget bud;
    int rc = m.values != NULL ? TG_OK : TG_ENOMEM;
    struct tg_usage_query q = {auth->team, since, until, NULL, 0};
    long nrows = -1;
    if (rc == TG_OK)
        rc = tg_store_usage(w->store, &q, month_row, &m, &nrows);
    int has_budget = 0;
    if (rc == TG_OK) {
        rc = tg_store_budget_get(w->store, auth->team_id, &bud);
        has_budget = rc == TG_OK;
        if (rc == TG_ENOTFOUND)
            rc = TG_OK;
    }
    /* Logged before it is shown; an unlogged read is not answered. */
    char actor[64];
    snprintf(actor, sizeof(actor), "token:%s", auth->token_id);
    struct tg_actor who = {actor, auth->team, "http", req->remote_addr};
    const char *what = tg_pool_printf(req->pool, "POST /usage month=%s", month);
    int lrc = what != NULL ? tg_store_audit_read_log(w->store, &who, what,
                                                     rc == TG_OK ? nrows : -1) : TG_ENOMEM;
    if (lrc != TG_OK || rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "usage page: %s (%s)", tg_rc_str(lrc != TG_OK ? lrc : rc),
               tg_store_errmsg(w->store));
        tg_buf_free(&rows);
        tg_html_error_page(req, resp, 503, lrc != TG_OK ? "This read could not be logged, so "
                           "it is not shown. Try again later." : "The audit database cannot "
                           "be read right now.");
        return;
    }
    struct tg_buf *b = &resp->body;
    char title[96], usd[40];
    snprintf(title, sizeof(title), "Usage, %s %d", month_names[(mo - 1) % 12], y);
    tg_html_begin(b, title, "usage");
    tg_buf_adds(b, "<p class=\"lead\">Team <strong>");
    tg_html_escape(b, auth->team);
    tg_buf_adds(b, "</strong>: estimated spend of the runs created this month (UTC), "
                   "processor × runs × the gateway's price table. It is an estimate, not "
                   "Parallel's invoice.</p>\n<table class=\"facts\">\n");
    usd[0] = '$';
    tg_money_format(m.total_micro, usd + 1, sizeof(usd) - 1);
    fact(b, "Spent this month", "month-total", usd);
    snprintf(usd, sizeof(usd), "%lld", (long long)m.total_runs);
    fact(b, "Runs created", "month-runs", usd);
    if (has_budget)
        budget_facts(b, &bud, month, day);
    else
        tg_buf_adds(b, "<tr><th>Budget</th><td id=\"budget-monthly\">none</td></tr>\n");
    tg_buf_adds(b, "</table>\n<h2>Spend per day</h2>\n<figure class=\"chart\">\n");
    /* The chart: one bar a day, one colour a processor; the daily budget as a line. */
    size_t nseries = m.nseries + (m.nseries == SERIES_MAX ? 1 : 0);
    const char **series = m.series;
    if (m.nseries == SERIES_MAX)
        series[SERIES_MAX] = "other";
    const char **labels = tg_pool_calloc(req->pool, (size_t)m.days, sizeof(*labels));
    int64_t *values = tg_pool_calloc(req->pool, (size_t)m.days * (nseries > 0 ? nseries : 1),
                                     sizeof(*values));
    if (labels == NULL || values == NULL) {
        tg_buf_free(&rows);
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    for (int d = 0; d < m.days; d++) {
        labels[d] = tg_pool_printf(req->pool, "%d", d + 1);
        for (size_t s = 0; s < nseries; s++)
            values[(size_t)d * nseries + s] = m.values[(size_t)d * (SERIES_MAX + 1) + s];
    }
    struct tg_chart c = {title, (size_t)m.days, labels, nseries, series, values,
                         has_budget ? bud.daily_micro : 0};
    tg_chart_bars(b, &c);
    tg_buf_adds(b, "</figure>\n");
    if (rows.len > 0) {
        tg_buf_adds(b, "<h2>By day and processor</h2>\n<div class=\"scroll\"><table "
                       "id=\"usage-rows\"><thead><tr><th>Day</th><th>Processor</th><th>Runs"
                       "</th><th>Estimated cost</th></tr></thead><tbody>\n");
        tg_buf_add(b, rows.data, rows.len);
        tg_buf_adds(b, "</tbody></table></div>\n");
    } else {
        tg_buf_adds(b, "<p>No runs were created this month.</p>\n");
    }
    tg_buf_free(&rows);
    tg_buf_adds(b, "<p class=\"actions\"><a href=\"/history\">History</a> · "
                   "<a href=\"/\">Add runs</a></p>\n");
    tg_html_end(b, req);
    tg_html_finish(req, resp, 200);
}

void tg_usage_page(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    if (strcmp(req->method, "POST") != 0) {
        token_page(req, resp, 200, NULL);
        return;
    }
    char *token = tg_pool_alloc(req->pool, FIELD_MAX);
    if (token == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    int rc = read_token(req, token);
    if (rc != TG_OK) {
        tg_html_error_page(req, resp, rc == TG_ETOOBIG ? 413 : 400, "The form could not be read.");
        return;
    }
    struct tg_auth auth;
    if (tg_http_auth(w, req, resp, token, &auth) != TG_OK) {
        if (resp->status == 401)
            token_page(req, resp, 401, token[0] == '\0'
                                           ? "Enter your team token."
                                           : "This token is not valid: it is unknown, revoked "
                                             "or expired.");
        else
            tg_html_error_page(req, resp, resp->status, "The database cannot be read right now.");
        return;
    }
    usage_page(w, req, resp, &auth);
}
