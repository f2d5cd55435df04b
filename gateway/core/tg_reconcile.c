/* Reconciliation (see tg_reconcile.h). A pass gathers the 'unknown' submissions it is given
 * by group and reads each group's runs stream (GET .../groups/{id}/runs: the group's runs in
 * the order they were created, as server-sent events) once for all of them, from the last
 * cursor the gateway knows to stand before every run they can have created; the runs whose
 * metadata carries one of their tags are recorded under the call the tag names, and each
 * submission is settled. A pass is bounded in time and resumable: a read cut short settles
 * the submissions it found whole and leaves the others the cursor the next read starts at.
 * Nothing is held while a group is read: no transaction (the store is read before and
 * written after), and no limit slot (an unknown submission is not in flight). */
#include "tg_reconcile.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tg_admin.h"
#include "tg_bg.h"
#include "tg_conf.h"
#include "tg_log.h"
#include "tg_metrics.h"
#include "tg_recon_read.h"
#include "tg_store.h"
#include "tg_upstream.h"

#define BATCH 1000
/* A call counts as answered before an unknown submission was received only when it was so
 * by this much. The two times come from different clocks when several daemons share a
 * PostgreSQL store (one host took the submission, another recorded the call), and a read
 * that started after one of the unknown submission's runs would miss it; hosts whose clocks
 * differ by less than this never cause that. What the margin costs is the runs added in
 * those seconds, read once more. */
#define CLOCK_SKEW_MS 10000

/* Set when the daemon stops: a pass under way cuts its read short and starts no group. */
static atomic_int stopping;

/* ---- settling ------------------------------------------------------------------------------ */

static const struct tg_recon_call *recorded_call(const struct tg_recon_sub *sub, int seq)
{
    for (size_t i = 0; i < sub->ncalls; i++)
        if (sub->calls[i].seq == seq)
            return &sub->calls[i];
    return NULL;
}

/* Appends "a-b" ranges of the inputs without a run to b (bounded). */
static void missing_ranges(struct tg_buf *b, const unsigned char *have, size_t n)
{
    int listed = 0;
    for (size_t i = 0; i < n && listed < 20;) {
        if (have[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j + 1 < n && !have[j + 1])
            j++;
        if (i == j)
            tg_buf_printf(b, "%s%zu", listed ? ", " : "", i);
        else
            tg_buf_printf(b, "%s%zu-%zu", listed ? ", " : "", i, j);
        listed++;
        i = j + 1;
    }
}

/* What a read found of one submission: the calls to record and the inputs they and the
 * runs recorded before cover. */
struct plan {
    unsigned char *have;          /* by input: it has a run */
    struct tg_recon_found *found;
    size_t nfound, covered;
    int odd;                      /* tagged runs that did not match the recorded calls */
};

/* With whole, only the calls found whole count: a read cut short may have seen the first
 * runs of a call and not the rest. */
static int collect(struct tg_pool *pool, const struct tg_recon_member *m, int whole,
                   struct plan *pl)
{
    const struct tg_recon_sub *sub = &m->sub;
    size_t n = (size_t)sub->num_inputs;
    memset(pl, 0, sizeof(*pl));
    pl->have = tg_pool_calloc(pool, n + 1, 1);
    pl->found = tg_pool_calloc(pool, m->ncalls + 1, sizeof(*pl->found));
    if (pl->have == NULL || pl->found == NULL)
        return TG_ENOMEM;
    for (size_t i = 0; i < sub->ncalls; i++) {
        const struct tg_recon_call *c = &sub->calls[i];
        for (long k = 0; c->add_runs && k < c->runs && (size_t)(c->first_input + k) < n; k++)
            pl->have[c->first_input + k] = 1;
    }
    for (size_t i = 0; i < m->ncalls; i++) {
        const struct tg_recon_call_found *fc = &m->calls[i];
        const struct tg_recon_call *rec = recorded_call(sub, fc->seq);
        if (rec != NULL && rec->runs > 0)
            continue; /* its runs are recorded already */
        if (rec != NULL && (!rec->add_runs || rec->first_input != fc->first)) {
            pl->odd = 1; /* a tag that disagrees with the record: leave it to a person */
            continue;
        }
        if (whole && fc->n < (size_t)fc->count)
            continue;
        size_t take = fc->n;
        if (take > (size_t)fc->count)
            take = (size_t)fc->count;
        if ((size_t)fc->first + take > n)
            take = (size_t)fc->first < n ? n - (size_t)fc->first : 0;
        if (take < fc->n)
            pl->odd = 1; /* more runs than the call sent: the extra ones are not ours to map */
        struct tg_recon_found *f = &pl->found[pl->nfound++];
        f->seq = fc->seq;
        f->first_input = (int)fc->first;
        f->num_inputs = (int)fc->count;
        f->recorded = rec != NULL;
        f->nruns = take;
        f->run_ids = fc->ids;
        f->processors = fc->procs;
        f->run_cursor = fc->cursor;
        for (size_t k = 0; k < take; k++)
            pl->have[fc->first + k] = 1;
    }
    for (size_t i = 0; i < n; i++)
        pl->covered += pl->have[i];
    return TG_OK;
}

/* A pass: what it is given to do and what came of it. */
struct pass {
    struct tg_store *st;
    struct tg_upstream *up;
    const char *actor;
    int verbose;                  /* a line per submission on stdout (the CLI) */
    long read_s;                  /* reconcile_pass_s */
    int64_t deadline_us;          /* no group is started after it */
    struct tg_recon_report *last; /* when set, receives each report (tg_reconcile_one) */
    struct tg_recon_totals t;
};

static void report(struct pass *p, const char *id, const struct tg_recon_report *r)
{
    int ok = strcmp(r->outcome, "error") != 0 && strcmp(r->outcome, "skipped") != 0 &&
             strcmp(r->outcome, "deferred") != 0;
    p->t.settled += ok;
    p->t.left += strcmp(r->outcome, "error") == 0 || strcmp(r->outcome, "deferred") == 0;
    if (p->verbose)
        printf("%s %s runs_found=%ld %s\n", id, r->outcome, r->runs_found, r->message);
    tg_log(ok ? TG_LOG_INFO : TG_LOG_WARN, "reconcile %s: %s (%ld runs found): %s", id,
           r->outcome, r->runs_found, r->message);
    if (p->last != NULL)
        *p->last = *r;
}

static void report_text(struct pass *p, const char *id, const char *outcome, const char *text)
{
    struct tg_recon_report r = {.outcome = outcome};
    snprintf(r.message, sizeof(r.message), "%s", text);
    report(p, id, &r);
}

/* Writes w for m and reports it. */
static int write_outcome(struct pass *p, const struct tg_recon_member *m,
                         const struct tg_recon_write *w)
{
    int rc = tg_store_recon_write(p->st, w);
    if (rc == TG_EINVAL) {
        report_text(p, m->sub.id, "skipped", "already settled by someone else");
        return TG_OK;
    }
    if (rc != TG_OK)
        return rc;
    struct tg_recon_report r = {.outcome = w->outcome, .runs_found = w->runs_found};
    snprintf(r.message, sizeof(r.message), "%s", w->detail != NULL ? w->detail : "");
    report(p, m->sub.id, &r);
    return TG_OK;
}

/* Settles m (read: how its group was read, for the detail): accepted when every input has
 * a run, failed with the runs found otherwise, which only a read to the stream's end may
 * conclude. whole as for collect. */
static int settle(struct pass *p, struct tg_pool *pool, const struct tg_recon_member *m,
                  const char *read, int whole)
{
    struct plan pl;
    int rc = collect(pool, m, whole, &pl);
    if (rc != TG_OK)
        return rc;
    size_t n = (size_t)m->sub.num_inputs;
    struct tg_buf d;
    tg_buf_init(&d, 2048);
    struct tg_recon_write w = {
        .sub_id = m->sub.id, .actor = p->actor, .taskgroup_id = m->sub.taskgroup_id,
        .api = "/v1", .runs_found = m->tagged, .nfound = pl.nfound, .found = pl.found,
    };
    if (pl.covered == n) {
        w.state = TG_STATE_ACCEPTED;
        w.outcome = "accepted";
        tg_buf_printf(&d, "reconciled: every input of the %zu has its run upstream in group %s",
                      n, m->sub.taskgroup_id);
    } else if (pl.covered == 0) {
        w.state = TG_STATE_FAILED;
        w.outcome = "failed";
        tg_buf_printf(&d, "reconciled: no run of this submission exists upstream in group %s",
                      m->sub.taskgroup_id);
    } else {
        w.state = TG_STATE_FAILED;
        w.outcome = "partial";
        tg_buf_printf(&d, "reconciled: partly created: %zu of %zu inputs have runs upstream "
                      "(recorded); not created: inputs ", pl.covered, n);
        missing_ranges(&d, pl.have, n);
    }
    if (pl.odd)
        tg_buf_adds(&d, "; some tagged runs did not match the recorded calls and were not "
                        "recorded");
    tg_buf_printf(&d, "; %s", read);
    w.detail = tg_pool_strdup(pool, tg_buf_str(&d));
    tg_buf_free(&d);
    return write_outcome(p, m, &w);
}

/* After a read that did not reach the stream's end (why: what stopped it): m is accepted
 * when it was found whole; otherwise the calls found whole are recorded and it stays
 * unknown with an 'error' row, whose resume_cursor (NULL: none) is where the next read of
 * the group starts for it. */
static int settle_part(struct pass *p, struct tg_pool *pool, const struct tg_recon_member *m,
                       const char *why, const char *read, const char *resume)
{
    struct plan pl;
    int rc = collect(pool, m, 1, &pl);
    if (rc != TG_OK)
        return rc;
    if (pl.covered == (size_t)m->sub.num_inputs)
        return settle(p, pool, m, read, 1);
    struct tg_buf d;
    tg_buf_init(&d, 2048);
    tg_buf_printf(&d, "not settled: %s; %s; %zu of %d inputs found so far", why, read,
                  pl.covered, m->sub.num_inputs);
    if (pl.nfound > 0)
        tg_buf_adds(&d, " (the calls found whole are recorded)");
    if (resume != NULL)
        tg_buf_printf(&d, "; the next read starts at cursor %.200s", resume);
    struct tg_recon_write w = {
        .sub_id = m->sub.id, .actor = p->actor, .taskgroup_id = m->sub.taskgroup_id,
        .api = "/v1", .state = TG_STATE_UNKNOWN, .outcome = "error",
        .runs_found = m->tagged, .resume_cursor = resume, .nfound = pl.nfound,
        .found = pl.found,
    };
    w.detail = tg_pool_strdup(pool, tg_buf_str(&d));
    tg_buf_free(&d);
    return write_outcome(p, m, &w);
}

/* ---- a group -------------------------------------------------------------------------- */

/* Where the group's read starts, and how that is said in the reconciliations rows. From
 * where the last read of every member was cut short, when it is the same for all (they
 * were read together); otherwise from the cursor of the last call recorded in the group
 * whose runs existed before the earliest member was received (less CLOCK_SKEW_MS): no
 * member's call went out before then, so each of their runs comes after that call's in the
 * stream. From the beginning only when no such call is known. */
static int read_start(struct pass *p, struct tg_pool *pool, struct tg_recon_member **m,
                      size_t n, const char **from, const char **said)
{
    const char *resume = m[0]->sub.resume_cursor;
    int64_t earliest = m[0]->sub.received_ms;
    for (size_t i = 0; i < n; i++) {
        if (resume != NULL &&
            (m[i]->sub.resume_cursor == NULL || strcmp(m[i]->sub.resume_cursor, resume) != 0))
            resume = NULL;
        if (m[i]->sub.received_ms < earliest)
            earliest = m[i]->sub.received_ms;
    }
    *from = NULL;
    if (resume != NULL) {
        *from = resume;
        *said = tg_pool_printf(pool, "read on from cursor %.200s, where the last read was "
                               "cut short", resume);
        return *said != NULL ? TG_OK : TG_ENOMEM;
    }
    struct tg_recon_cursor c;
    int rc = earliest > CLOCK_SKEW_MS
                 ? tg_store_recon_cursor(p->st, pool, m[0]->sub.taskgroup_id,
                                         earliest - CLOCK_SKEW_MS, &c)
                 : TG_ENOTFOUND;
    if (rc == TG_ENOTFOUND) {
        *said = "read from the beginning: no cursor known";
        return TG_OK;
    }
    if (rc != TG_OK)
        return rc;
    if (c.run_cursor == NULL || c.run_cursor[0] == '\0' ||
        strlen(c.run_cursor) >= TG_RECON_CURSOR_MAX) {
        *said = tg_pool_printf(pool, "read from the beginning: the cursor of call %.64s#%d "
                               "is %s", c.submission_id, c.seq,
                               c.run_cursor == NULL || c.run_cursor[0] == '\0'
                                   ? "empty (it added the group's first runs)" : "too long");
    } else {
        *from = c.run_cursor;
        *said = tg_pool_printf(pool, "read from cursor %.200s (call %.64s#%d)", c.run_cursor,
                               c.submission_id, c.seq);
    }
    return *said != NULL ? TG_OK : TG_ENOMEM;
}

/* Reads the group of m[0..n) (unknown submissions of one team in one group) once and settles
 * each of them. */
static int reconcile_group(struct pass *p, struct tg_pool *pool, struct tg_recon_member **m,
                           size_t n)
{
    const char *group = m[0]->sub.taskgroup_id;
    struct tg_recon_member **by_id = tg_pool_calloc(pool, n, sizeof(*by_id));
    if (by_id == NULL)
        return TG_ENOMEM;
    memcpy(by_id, m, n * sizeof(*by_id));
    tg_recon_sort_by_id(by_id, n);
    const char *from, *said;
    int rc = read_start(p, pool, m, n, &from, &said);
    if (rc != TG_OK)
        return rc;
    char key[TG_UPSTREAM_KEY_MAX];
    struct tg_recon_outcome o = {.end = TG_RECON_FAILED};
    rc = tg_store_team_key(p->st, m[0]->sub.team_id, key, sizeof(key));
    if (rc == TG_OK) {
        tg_recon_read(p->up, key, group, from, p->read_s, &stopping, pool, by_id, n, &o);
        if (o.end == TG_RECON_FAILED && from != NULL && o.status == 422 && o.events == 0) {
            /* The upstream no longer takes the cursor: the beginning is the one safe place. */
            said = tg_pool_printf(pool, "read from the beginning: the upstream refused "
                                  "cursor %.200s", from);
            if (said != NULL)
                tg_recon_read(p->up, key, group, NULL, p->read_s, &stopping, pool, by_id, n,
                              &o);
        }
    } else if (rc == TG_ERR || rc == TG_ENOTFOUND || rc == TG_ETOOBIG) {
        /* Not set, or not decrypted: the team's to fix; the other groups go on. */
        snprintf(o.problem, sizeof(o.problem), "the team's upstream key cannot be used");
        rc = TG_OK;
    }
    tg_memzero(key, sizeof(key));
    if (rc != TG_OK || said == NULL)
        return rc != TG_OK ? rc : TG_ENOMEM;
    p->t.events += o.events;
    const char *read = tg_pool_printf(pool, "%s, %ld events read", said, o.events);
    if (read == NULL)
        return TG_ENOMEM;
    if (o.end == TG_RECON_WHOLE) {
        for (size_t i = 0; i < n && rc == TG_OK; i++)
            rc = settle(p, pool, m[i], read, 0);
        return rc;
    }
    const char *why = o.problem;
    if (o.end == TG_RECON_CUT) {
        why = tg_pool_printf(pool, "the read was cut short (%s) at cursor %.200s",
                             o.stopped ? "the daemon is stopping"
                                       : "its time, reconcile_pass_s, was up",
                             o.last != NULL ? o.last : "(the beginning)");
        if (why == NULL)
            return TG_ENOMEM;
        p->t.cut++;
    }
    for (size_t i = 0; i < n && rc == TG_OK; i++)
        rc = settle_part(p, pool, m[i], why, read, o.end == TG_RECON_CUT ? o.resume : NULL);
    return rc;
}

/* ---- a pass ---------------------------------------------------------------------------- */

/* Orders the members of a pass by group, then team (a group is one team's: this only keeps
 * a stray one apart, read with its own key), then time received. */
static int member_cmp_group(const void *a, const void *b)
{
    const struct tg_recon_member *x = *(struct tg_recon_member *const *)a;
    const struct tg_recon_member *y = *(struct tg_recon_member *const *)b;
    int c = strcmp(x->sub.taskgroup_id, y->sub.taskgroup_id);
    if (c == 0)
        c = (x->sub.team_id > y->sub.team_id) - (x->sub.team_id < y->sub.team_id);
    if (c == 0)
        c = (x->sub.received_ms > y->sub.received_ms) - (x->sub.received_ms < y->sub.received_ms);
    return c;
}

/* One group's members: m[start..start+n) of the pass's sorted list. */
struct span {
    size_t start, n;
    int64_t earliest;
};

static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    return (x->earliest > y->earliest) - (x->earliest < y->earliest);
}

/* A submission whose group creation never answered: no add-runs call went out (one is sent
 * only after the group is recorded), so no run exists. */
static int settle_without_group(struct pass *p, const struct tg_recon_member *m)
{
    struct tg_recon_write w = {
        .sub_id = m->sub.id, .actor = p->actor, .api = "/v1", .state = TG_STATE_FAILED,
        .outcome = "failed",
        .detail = "reconciled: its group was never recorded, so no add-runs call was sent "
                  "and no run of it exists upstream",
    };
    return write_outcome(p, m, &w);
}

/* Loads the submissions ids names (each once), settles those without a group, and gives
 * the others, unknown ones with a group, in *out. */
static int load(struct pass *p, struct tg_pool *pool, const char *const *ids, size_t nids,
                struct tg_recon_member ***out, size_t *nout)
{
    struct tg_recon_member **m = tg_pool_calloc(pool, nids + 1, sizeof(*m));
    if (m == NULL)
        return TG_ENOMEM;
    size_t n = 0;
    int rc = TG_OK;
    for (size_t i = 0; i < nids && rc == TG_OK; i++) {
        struct tg_recon_member *x = tg_pool_calloc(pool, 1, sizeof(*x));
        if (x == NULL)
            return TG_ENOMEM;
        rc = tg_store_recon_load(p->st, pool, ids[i], &x->sub);
        if (rc == TG_ENOTFOUND) {
            report_text(p, ids[i], "skipped", "no such submission");
            rc = TG_OK;
        } else if (rc == TG_OK && x->sub.state != TG_STATE_UNKNOWN) {
            char why[64];
            snprintf(why, sizeof(why), "it is %s, not unknown",
                     tg_domain_state_name(x->sub.state));
            report_text(p, ids[i], "skipped", why);
        } else if (rc == TG_OK) {
            m[n++] = x;
        }
    }
    if (rc != TG_OK)
        return rc;
    /* The same id twice (named twice to the CLI) is one submission. */
    tg_recon_sort_by_id(m, n);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (kept == 0 || strcmp(m[kept - 1]->sub.id, m[i]->sub.id) != 0)
            m[kept++] = m[i];
    n = 0;
    for (size_t i = 0; i < kept && rc == TG_OK; i++) {
        if (m[i]->sub.taskgroup_id == NULL)
            rc = settle_without_group(p, m[i]);
        else
            m[n++] = m[i];
    }
    *out = m;
    *nout = n;
    return rc;
}

/* Reconciles the submissions ids names, group by group, the group of the earliest first,
 * until the pass's time is up. */
static int run_pass(struct pass *p, const char *const *ids, size_t nids)
{
    struct tg_pool *pool = tg_pool_create();
    struct tg_pool *gpool = tg_pool_create();
    struct tg_recon_member **m = NULL;
    struct span *spans = NULL;
    size_t n = 0, nspans = 0;
    int rc = pool != NULL && gpool != NULL ? TG_OK : TG_ENOMEM;
    p->deadline_us = tg_mono_us() + p->read_s * 1000000;
    if (rc == TG_OK)
        rc = load(p, pool, ids, nids, &m, &n);
    if (rc == TG_OK && n > 0) {
        qsort(m, n, sizeof(*m), member_cmp_group);
        spans = tg_pool_calloc(pool, n, sizeof(*spans));
        if (spans == NULL)
            rc = TG_ENOMEM;
    }
    for (size_t i = 0; rc == TG_OK && i < n; i++) {
        if (i == 0 || strcmp(m[i - 1]->sub.taskgroup_id, m[i]->sub.taskgroup_id) != 0 ||
            m[i - 1]->sub.team_id != m[i]->sub.team_id)
            spans[nspans++] = (struct span){i, 0, m[i]->sub.received_ms};
        spans[nspans - 1].n++;
    }
    if (rc == TG_OK && nspans > 0)
        qsort(spans, nspans, sizeof(*spans), span_cmp);
    for (size_t g = 0; rc == TG_OK && g < nspans; g++) {
        const char *held = atomic_load(&stopping) ? "the daemon is stopping"
                         : tg_mono_us() >= p->deadline_us ? "the pass's time, reconcile_pass_s, "
                                                            "was up"
                                                          : NULL;
        if (held != NULL) {
            /* Not tried, so no row: the next pass takes them. */
            char why[128];
            snprintf(why, sizeof(why), "not tried in this pass: %s", held);
            for (size_t k = 0; k < spans[g].n; k++)
                report_text(p, m[spans[g].start + k]->sub.id, "deferred", why);
            p->t.deferred += (long)spans[g].n;
            continue;
        }
        rc = reconcile_group(p, gpool, m + spans[g].start, spans[g].n);
        tg_pool_reset(gpool);
    }
    tg_metrics_reconcile_pass(p->t.events);
    tg_pool_destroy(gpool);
    tg_pool_destroy(pool);
    return rc;
}

int tg_reconcile_ids(struct tg_store *st, struct tg_upstream *up, const char *actor,
                     int verbose, const char *const *ids, size_t n, long pass_s,
                     struct tg_recon_totals *t)
{
    struct pass p = {.st = st, .up = up, .actor = actor, .verbose = verbose, .read_s = pass_s};
    int rc = run_pass(&p, ids, n);
    if (t != NULL)
        *t = p.t;
    return rc;
}

int tg_reconcile_one(struct tg_store *st, struct tg_upstream *up, const char *sub_id,
                     const char *actor, long read_s, struct tg_recon_report *r)
{
    struct pass p = {.st = st, .up = up, .actor = actor, .read_s = read_s, .last = r};
    memset(r, 0, sizeof(*r));
    r->outcome = "skipped";
    return run_pass(&p, &sub_id, 1);
}

int tg_reconcile_all(struct tg_store *st, struct tg_upstream *up, const char *actor, int verbose,
                     int64_t before_ms, long pass_s, struct tg_recon_totals *t)
{
    struct tg_pool *pool = tg_pool_create();
    if (pool == NULL)
        return TG_ENOMEM;
    const char **ids;
    size_t n;
    int rc = tg_store_unknown_ids(st, pool, BATCH * 100, before_ms, &ids, &n);
    if (rc == TG_OK)
        rc = tg_reconcile_ids(st, up, actor, verbose, ids, n, pass_s, t);
    tg_pool_destroy(pool);
    return rc;
}

/* ---- the daemon's background thread --------------------------------------------------- */

/* Reconciles the unknown submissions once at start-up (reconcile_on_start), in passes of
 * reconcile_pass_s one after the other until none is left untried or cut short; then,
 * every housekeeping_interval_s, those that have been unknown for reconcile_after_s and
 * were not tried in that time (a submission that just timed out may still be being created
 * upstream: reconciled at once it could be called failed too early) or whose last read was
 * cut short, and removes expired idempotency records: every SDK request leaves one, with
 * its answer, for retry_dedupe_window_s. */
static struct tg_bg bg = TG_BG_INIT;
static const struct tg_conf *bg_conf; /* the daemon's: it outlives the thread */

static long prune(struct tg_store *st)
{
    long pruned = 0;
    if (tg_store_idem_prune(st, tg_now_ms(), &pruned) != TG_OK)
        tg_log(TG_LOG_WARN, "pruning expired idempotency records failed: %s",
               tg_store_errmsg(st));
    return pruned;
}

/* Submissions owed an 'unknown' (tg_reconcile_owe_unknown), oldest first. In memory only:
 * if the daemon stops before the database takes them, they are still 'pending' in it, and
 * the next start makes every pending submission unknown before serving. */
#define OWED_MAX 4096
#define TROUBLE_RETRY_S 1 /* how often owed writes (or a probe) are tried while writes fail */

struct owed {
    char id[64];
    int http_status, upstream_status;
    char error[256];
    struct owed *next;
};

static struct {
    pthread_mutex_t lock;
    struct owed *head, **tail;
    long n;
} owed = {PTHREAD_MUTEX_INITIALIZER, NULL, &owed.head, 0};

int tg_reconcile_owe_unknown(const char *sub_id, int http_status, int upstream_status,
                             const char *error)
{
    if (sub_id == NULL || strlen(sub_id) >= sizeof(((struct owed *)0)->id))
        return TG_EINVAL;
    struct owed *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return TG_ENOMEM;
    snprintf(o->id, sizeof(o->id), "%s", sub_id);
    snprintf(o->error, sizeof(o->error), "%s", error != NULL ? error : "");
    o->http_status = http_status;
    o->upstream_status = upstream_status;
    pthread_mutex_lock(&owed.lock);
    int full = owed.n >= OWED_MAX;
    if (!full) {
        *owed.tail = o;
        owed.tail = &o->next;
        owed.n++;
    }
    pthread_mutex_unlock(&owed.lock);
    if (full) {
        free(o);
        tg_log(TG_LOG_ERROR, "submission %s stays pending until the daemon restarts: %d "
               "submissions already wait for the database", sub_id, OWED_MAX);
        return TG_ETOOBIG;
    }
    tg_bg_poke(&bg);
    return TG_OK;
}

long tg_reconcile_owed(void)
{
    pthread_mutex_lock(&owed.lock);
    long n = owed.n;
    pthread_mutex_unlock(&owed.lock);
    return n;
}

/* Marks owed submissions unknown, oldest first, until the database refuses one (the rest
 * wait for the next try). With none owed while writes fail, probes whether they work
 * again, so that /healthz recovers without traffic. */
static void settle_owed(struct tg_store *st)
{
    for (;;) {
        pthread_mutex_lock(&owed.lock);
        struct owed *o = owed.head;
        pthread_mutex_unlock(&owed.lock);
        if (o == NULL)
            break;
        /* Only this thread takes entries off, so o stays at the head meanwhile. */
        int rc = tg_store_submission_finish(st, o->id, TG_STATE_UNKNOWN, o->http_status,
                                            o->upstream_status, o->error);
        if (rc == TG_EDB || rc == TG_EBUSY || rc == TG_ENOMEM)
            return;
        if (rc == TG_OK) {
            tg_metrics_submission(TG_STATE_UNKNOWN);
            tg_log(TG_LOG_WARN, "submission %s is now 'unknown' (its outcome could not be "
                   "recorded earlier): it will be reconciled", o->id);
        }
        else
            tg_log(TG_LOG_WARN, "submission %s: not marked unknown: %s", o->id,
                   tg_store_errmsg(st));
        pthread_mutex_lock(&owed.lock);
        owed.head = o->next;
        if (owed.head == NULL)
            owed.tail = &owed.head;
        owed.n--;
        pthread_mutex_unlock(&owed.lock);
        free(o);
    }
    char why[8];
    if (tg_store_write_health(why, sizeof(why)) != TG_OK)
        tg_store_write_probe(st);
}

/* The name of the turn (tg_store_turn_begin) the housekeeping of every daemon on one store
 * takes: one of them at a time settles, reconciles and prunes. */
#define TURN "housekeeping"

/* One pass of the background thread; nonzero when it left work it can go on with at once
 * (submissions not tried for want of time, or reads cut short). */
static int pass(struct tg_store *st, struct tg_upstream *up, const struct tg_conf *conf,
                const char *actor, int64_t before_ms)
{
    struct tg_recon_totals t = {0};
    int64_t t0 = tg_mono_us();
    int rc = tg_reconcile_all(st, up, actor, 0, before_ms, conf->reconcile_pass_s, &t);
    if (rc != TG_OK)
        tg_log(TG_LOG_ERROR, "reconcile pass (%s): %s (%s)", actor, tg_rc_str(rc),
               tg_store_errmsg(st));
    else if (t.settled > 0 || t.left > 0)
        tg_log(TG_LOG_INFO, "reconcile pass (%s): %ld settled, %ld still unknown (%ld not "
               "tried, %ld group reads cut short), %ld events read in %.1f s", actor,
               t.settled, t.left, t.deferred, t.cut, t.events,
               (double)(tg_mono_us() - t0) / 1e6);
    return rc == TG_OK && (t.deferred > 0 || t.cut > 0) && !atomic_load(&stopping);
}

static int housekeeping(struct tg_store *st, struct tg_upstream *up, const struct tg_conf *conf)
{
    int rc = tg_store_turn_begin(st, TURN);
    if (rc == TG_EBUSY)
        return 0; /* another daemon's turn */
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "housekeeping: %s", tg_store_errmsg(st));
        return 0;
    }
    /* A daemon on the same store may have died since: what it left pending is settled as
     * unknown once its lease has run out, then reconciled below. */
    long orphans = 0;
    if (tg_store_recover_pending(st, &orphans) != TG_OK)
        tg_log(TG_LOG_ERROR, "housekeeping: %s", tg_store_errmsg(st));
    else if (orphans > 0)
        tg_log(TG_LOG_WARN, "%ld submission(s) left pending by a daemon that is gone are "
               "now 'unknown'", orphans);
    long pruned = prune(st);
    if (pruned > 0)
        tg_log(TG_LOG_DEBUG, "%ld expired idempotency records removed", pruned);
    if (tg_store_summary_compact(st) != TG_OK)
        tg_log(TG_LOG_ERROR, "housekeeping: %s", tg_store_errmsg(st));
    int more = 0;
    if (conf->reconcile_after_s > 0)
        more = pass(st, up, conf, "daemon:periodic",
                    tg_now_ms() - conf->reconcile_after_s * 1000);
    tg_store_turn_end(st, TURN);
    return more;
}

static void *bg_main(void *arg)
{
    const struct tg_conf *conf = bg_conf;
    (void)arg;
    char err[512];
    struct tg_store *st = NULL;
    struct tg_upstream *up = tg_upstream_new(conf);
    if (up == NULL ||
        tg_store_open(&st, conf->database, 0, (int)conf->db_busy_timeout_ms, err,
                      sizeof(err)) != TG_OK) {
        tg_log(TG_LOG_ERROR, "background pass: cannot start: %s",
               up == NULL ? "out of memory" : err);
        tg_upstream_free(up);
        return NULL;
    }
    long pruned = prune(st);
    if (pruned > 0)
        tg_log(TG_LOG_INFO, "%ld expired idempotency records removed", pruned);
    int starting = conf->reconcile_on_start ? pass(st, up, conf, "daemon:start", 0) : 0;
    /* Housekeeping every housekeeping_interval_s, at once again after a pass that left work
     * it can go on with. Every TROUBLE_RETRY_S, the submissions owed an 'unknown' are
     * written, or while writes fail a probe sees whether they work again (a failed write
     * does not wake this thread: it looks), and the start-up pass goes on while it has
     * work left. */
    int64_t next = tg_mono_us() + conf->housekeeping_interval_s * 1000000;
    while (!tg_bg_wait(&bg, TROUBLE_RETRY_S)) {
        settle_owed(st);
        if (starting) {
            starting = pass(st, up, conf, "daemon:start", 0);
        } else if (tg_mono_us() >= next) {
            int more = housekeeping(st, up, conf);
            next = tg_mono_us() + (more ? 0 : conf->housekeeping_interval_s * 1000000);
        }
    }
    settle_owed(st); /* a last try: what is left stays pending for the next start */
    pthread_mutex_lock(&owed.lock);
    if (owed.n > 0)
        tg_log(TG_LOG_WARN, "%ld submission(s) stay pending: the next start makes them "
               "unknown", owed.n);
    while (owed.head != NULL) {
        struct owed *o = owed.head;
        owed.head = o->next;
        free(o);
    }
    owed.tail = &owed.head;
    owed.n = 0;
    pthread_mutex_unlock(&owed.lock);
    tg_store_close(st);
    tg_upstream_free(up);
    return NULL;
}

int tg_reconcile_start(const struct tg_conf *conf)
{
    bg_conf = conf;
    atomic_store(&stopping, 0);
    return tg_bg_start(&bg, bg_main, NULL);
}

void tg_reconcile_stop(void)
{
    atomic_store(&stopping, 1);
    tg_bg_stop(&bg);
}

/* ---- taskgate reconcile ---------------------------------------------------------------------- */

int tg_reconcile_cli(const struct tg_conf *conf, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-') {
            fprintf(stderr, "usage: taskgate reconcile [SUBMISSION_ID...]\n");
            return 2;
        }
    }
    char err[512];
    struct tg_store *st = NULL;
    if (tg_upstream_global_init() != TG_OK) {
        fprintf(stderr, "taskgate: cannot initialise libcurl\n");
        return 1;
    }
    struct tg_upstream *up = tg_upstream_new(conf);
    int rc = up != NULL ? tg_store_open(&st, conf->database, 0, (int)conf->db_busy_timeout_ms,
                                        err, sizeof(err))
                        : TG_ENOMEM;
    if (rc != TG_OK) {
        fprintf(stderr, "taskgate: %s\n", rc == TG_ENOMEM ? "out of memory" : err);
    } else {
        char actor[80];
        tg_admin_os_actor(actor, sizeof(actor));
        struct tg_recon_totals t = {0};
        /* The same group-wise pass for named submissions as for every unknown one. */
        if (argc == 0)
            rc = tg_reconcile_all(st, up, actor, 1, 0, conf->reconcile_pass_s, &t);
        else
            rc = tg_reconcile_ids(st, up, actor, 1, (const char *const *)argv, (size_t)argc,
                                  conf->reconcile_pass_s, &t);
        if (rc != TG_OK)
            fprintf(stderr, "taskgate: reconcile failed: %s (%s)\n", tg_rc_str(rc),
                    tg_store_errmsg(st));
        else
            fprintf(stderr, "taskgate: %ld settled, %ld could not be reconciled now; %ld "
                    "events read%s\n", t.settled, t.left, t.events,
                    t.deferred > 0 || t.cut > 0 ? " (the pass ran out of time, "
                                                  "reconcile_pass_s: run it again to go on)"
                                                : "");
        if (rc == TG_OK && t.left > 0)
            rc = TG_ERR;
    }
    tg_store_close(st);
    tg_upstream_free(up);
    tg_upstream_global_cleanup();
    return rc == TG_OK ? 0 : 1;
}
