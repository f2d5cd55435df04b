/* Admission (see tg_admit.h): ownership of a named group, the client's headers, repeats
 * (the canonical request hash, the Idempotency-Key and SDK-retry records, resuming what a
 * failed attempt left), the team's upstream key and limits, and the pending record, each
 * ending in a verdict. Both interfaces come through here (http/tg_submit.c), between their
 * checks and tg_pipeline_forward; what a verdict is answered is the HTTP side's. */
#include "tg_admit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_conf.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_reconcile.h"
#include "tg_sha256.h"
#include "tg_usage.h"
#include "tg_validate.h"

#define KEY_MAX 255
#define ROUNDS 4 /* a record that changes under us more often than this: answer 409 */

int tg_admit_valid_key(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > KEY_MAX)
        return 0;
    for (; *k != '\0'; k++)
        if ((unsigned char)*k < 0x20 || (unsigned char)*k > 0x7e)
            return 0;
    return 1;
}

/* ---- verdicts ------------------------------------------------------------------------ */

static enum tg_admit_kind trouble(struct tg_verdict *v, int rc)
{
    v->kind = TG_ADMIT_TROUBLE;
    v->rc = rc;
    return v->kind;
}

static enum tg_admit_kind refuse(struct tg_verdict *v, int rc, int status, json_object *detail,
                                 const char *retry_after, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static enum tg_admit_kind refuse(struct tg_verdict *v, int rc, int status, json_object *detail,
                                 const char *retry_after, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof(v->message), fmt, ap);
    va_end(ap);
    v->kind = TG_ADMIT_REFUSED;
    v->rc = rc;
    v->status = status;
    v->detail = detail;
    v->retry_after = retry_after;
    return v->kind;
}

/* ---- the canonical request ------------------------------------------------------------- */

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* obj as JSON with every object's keys sorted, so that two bodies that mean the same hash
 * the same whatever order their keys came in. */
static int canon(struct tg_buf *b, json_object *obj, int depth)
{
    if (depth > 64)
        return TG_ETOOBIG;
    if (json_object_is_type(obj, json_type_object)) {
        size_t n = (size_t)json_object_object_length(obj), i = 0;
        const char **keys = n > 0 ? malloc(n * sizeof(*keys)) : NULL;
        if (n > 0 && keys == NULL)
            return TG_ENOMEM;
        json_object_object_foreach(obj, k, v) {
            (void)v;
            keys[i++] = k;
        }
        qsort(keys, n, sizeof(*keys), cmp_keys);
        int rc = tg_buf_adds(b, "{");
        for (i = 0; rc == TG_OK && i < n; i++) {
            if (i > 0)
                rc = tg_buf_adds(b, ",");
            if (rc == TG_OK)
                rc = tg_json_buf_string(b, keys[i]);
            if (rc == TG_OK)
                rc = tg_buf_adds(b, ":");
            if (rc == TG_OK)
                rc = canon(b, tg_json_get(obj, keys[i]), depth + 1);
        }
        free(keys);
        return rc == TG_OK ? tg_buf_adds(b, "}") : rc;
    }
    if (json_object_is_type(obj, json_type_array)) {
        int rc = tg_buf_adds(b, "[");
        for (size_t i = 0; rc == TG_OK && i < json_object_array_length(obj); i++) {
            if (i > 0)
                rc = tg_buf_adds(b, ",");
            if (rc == TG_OK)
                rc = canon(b, json_object_array_get_idx(obj, i), depth + 1);
        }
        return rc == TG_OK ? tg_buf_adds(b, "]") : rc;
    }
    if (obj == NULL)
        return tg_buf_adds(b, "null");
    size_t len;
    const char *text = tg_json_str(obj, &len);
    return tg_buf_add(b, text, len);
}

/* sha256 of interface, method, path, query and the canonical body (the form token and
 * idempotency_key already taken out of it). */
static int hash_request(struct tg_admit_ask *s)
{
    struct tg_buf b;
    tg_buf_init(&b, (size_t)1024 * 1024 * 1024);
    int rc = tg_buf_printf(&b, "%s\n%s\n%s\n%s\n", s->interface, s->method,
                           s->path != NULL ? s->path : "",
                           s->query != NULL ? s->query : "");
    if (rc == TG_OK)
        rc = canon(&b, s->body, 0);
    if (rc == TG_OK)
        tg_sha256_hex(b.data, b.len, s->request_hash);
    tg_buf_free(&b);
    return rc;
}

/* x-stainless-retry-count above 0: an SDK's own retry. */
static int sdk_retry(const struct tg_admit_ask *s)
{
    long n;
    return s->retry_count != NULL && tg_parse_long(s->retry_count, 0, 1000000, &n) == TG_OK &&
           n > 0;
}

/* ---- repeats that are refused ------------------------------------------------------- */

static json_object *naming(struct tg_admit_ask *s, const char *sub_id)
{
    json_object *d = tg_json_pool(s->p->pool, json_object_new_object());
    if (d != NULL)
        json_object_object_add(d, "submission_id", json_object_new_string(sub_id));
    return d;
}

static enum tg_admit_kind in_flight(struct tg_admit_ask *s, const struct tg_idem_rec *rec,
                                    struct tg_verdict *v)
{
    return refuse(v, TG_EEXIST, 409, naming(s, rec->submission_id), "1",
                  "submission %s with this %s is still in flight; retry after it is answered",
                  rec->submission_id, s->idem_key != NULL ? "Idempotency-Key" : "body");
}

static enum tg_admit_kind other_body(struct tg_admit_ask *s, const struct tg_idem_rec *rec,
                                     struct tg_verdict *v)
{
    json_object *detail = tg_json_pool(s->p->pool, json_object_new_array());
    refuse(v, TG_EINVAL, 422, detail, NULL, "this Idempotency-Key was used by submission %s "
           "with a different request; use a new key for a new request", rec->submission_id);
    tg_json_problem(detail, tg_json_loc("header", "Idempotency-Key", NULL), v->message,
                    "idempotency_key_reused");
    return v->kind;
}

static enum tg_admit_kind unreconciled(struct tg_admit_ask *s, const char *sub_id, const char *why,
                                       struct tg_verdict *v)
{
    return refuse(v, TG_EEXIST, 503, naming(s, sub_id), "5", "the outcome of submission %s is "
                  "unknown and could not be reconciled now (%s); nothing was sent; retry later",
                  sub_id, why);
}

/* ---- ownership ---------------------------------------------------------------------- */

enum tg_admit_kind tg_admit_group(struct tg_admit_ask *s, struct tg_verdict *v)
{
    memset(v, 0, sizeof(*v));
    if (s->p->taskgroup_id == NULL || s->group_checked)
        return TG_ADMIT_PASS;
    int rc = tg_store_group_owned(s->p->store, s->auth->team_id, s->p->taskgroup_id);
    if (rc == TG_OK) {
        s->group_checked = 1;
        return TG_ADMIT_PASS;
    }
    if (rc != TG_ENOTFOUND)
        return trouble(v, rc);
    /* The same answer as for a group that does not exist: whether another team has it is
     * not this team's to learn. */
    s->p->taskgroup_id = NULL;
    return refuse(v, rc, 404, NULL, NULL, "no such task group for this team");
}

/* ---- admission ---------------------------------------------------------------------------- */

/* Takes over what submission from already created: its group and, per input, its runs.
 * Returns how many inputs are still to be sent. */
static int plan_resume(struct tg_admit_ask *s, const char *from, long *to_send)
{
    size_t n = tg_pipeline_inputs(s->p);
    const char **ids;
    const char *group;
    int rc = tg_store_prior_runs(s->p->store, s->p->pool, from, n, &ids, &group);
    if (rc != TG_OK)
        return rc;
    long missing = 0;
    for (size_t i = 0; i < n; i++)
        missing += ids[i] == NULL;
    s->p->resumes = tg_pool_strdup(s->p->pool, from);
    s->p->prior_runs = ids;
    if (s->p->taskgroup_id == NULL && group != NULL)
        s->p->taskgroup_id = group;
    *to_send = missing;
    return TG_OK;
}


enum tg_admit_kind tg_admit_submission(struct tg_admit_ask *s, struct tg_verdict *v)
{
    const struct tg_conf *conf = s->p->conf;
    struct tg_pool *pool = s->p->pool;
    int rc;
    memset(v, 0, sizeof(*v));
    /* The headers every interface may send, checked before anything is created: an
     * Idempotency-Key sent but unusable is refused, never ignored (each repeat would create
     * runs again), and a parallel-beta the upstream client could not send is refused here
     * rather than after a group was made. */
    json_object *detail = tg_json_pool(pool, json_object_new_array());
    if (detail == NULL)
        return trouble(v, TG_ENOMEM);
    if (s->idempotency_key != NULL && !tg_admit_valid_key(s->idempotency_key))
        tg_json_problem(detail, tg_json_loc("header", "Idempotency-Key", NULL),
                        "an Idempotency-Key is 1 to 255 printable ASCII characters",
                        "value_error");
    tg_validate_beta(s->parallel_beta, detail);
    if (json_object_array_length(detail) > 0) {
        return refuse(v, TG_EINVAL, 422, detail, NULL, "a header of the request is invalid");
    }
    if (s->idem_key == NULL && s->idempotency_key != NULL)
        s->idem_key = s->idempotency_key;
    /* Only a request that can be repeated under a record pays for the hash. */
    rc = s->idem_key != NULL || s->retry_count != NULL ? hash_request(s) : TG_OK;
    if (rc != TG_OK)
        return trouble(v, rc);
    struct tg_admission a = {.request_hash = s->request_hash};
    int retry = sdk_retry(s);
    if (s->idem_key != NULL) {
        a.kind = TG_IDEM_KEY;
        a.key = s->idem_key;
    } else if (s->retry_count != NULL && conf->retry_dedupe_window_s > 0) {
        a.kind = TG_IDEM_RETRY;
        a.key = tg_pool_printf(pool, "%s:%s", s->auth->token_id, s->request_hash);
        if (a.key == NULL)
            return trouble(v, TG_ENOMEM);
    }
    const char *actor = tg_pool_printf(pool, "token:%s", s->auth->token_id);

    for (int round = 0; round < ROUNDS; round++) {
        a.now_ms = tg_now_ms();
        a.replaces = NULL;
        a.resumes = NULL;
        a.runs = (long)tg_pipeline_inputs(s->p);
        s->p->resumes = NULL;
        s->p->prior_runs = NULL;
        struct tg_idem_rec rec;
        rc = a.key != NULL ? tg_store_idem_get(s->p->store, pool, s->auth->team_id, a.kind, a.key,
                                               a.now_ms, &rec)
                           : TG_ENOTFOUND;
        if (rc == TG_OK && a.kind == TG_IDEM_RETRY && !retry) {
            a.replaces = rec.submission_id; /* the SDK's first try: a new submission */
        } else if (rc == TG_OK) {
            if (a.kind == TG_IDEM_KEY && strcmp(rec.request_hash, s->request_hash) != 0)
                return other_body(s, &rec, v);
            if (rec.state == TG_STATE_PENDING)
                return in_flight(s, &rec, v);
            if (rec.state == TG_STATE_ACCEPTED && rec.answer_status != 0) {
                v->kind = TG_ADMIT_REPLAY;
                v->rc = TG_EEXIST;
                v->earlier = rec;
                return v->kind;
            }
            if (rec.state == TG_STATE_UNKNOWN) {
                struct tg_recon_report r;
                rc = tg_reconcile_one(s->p->store, s->p->up, rec.submission_id, actor,
                                      conf->reconcile_pass_s, &r);
                if (rc != TG_OK)
                    return trouble(v, rc);
                if (strcmp(r.outcome, "error") == 0 || strcmp(r.outcome, "deferred") == 0)
                    return unreconciled(s, rec.submission_id, r.message, v);
                continue; /* read the record again: the submission is settled now */
            }
            /* failed, or accepted without a stored answer: send only what is missing */
            a.replaces = rec.submission_id;
            rc = plan_resume(s, rec.submission_id, &a.runs);
            if (rc != TG_OK)
                return trouble(v, rc);
            a.resumes = s->p->resumes;
        } else if (rc != TG_ENOTFOUND) {
            return trouble(v, rc);
        }
        a.expires_ms = a.now_ms + (a.kind == TG_IDEM_KEY ? conf->idempotency_ttl_s
                                                         : conf->retry_dedupe_window_s) * 1000;
        rc = tg_store_team_key(s->p->store, s->auth->team_id, s->p->key, sizeof(s->p->key));
        if (rc == TG_ERR || rc == TG_ENOTFOUND || rc == TG_ETOOBIG) {
            /* The key cannot be had (not set, or not decrypted): the team's to fix, and
             * nothing was sent. The store's message names the cause for the log only. */
            tg_log(TG_LOG_ERROR, "team %s: upstream key unusable: %s", s->auth->team,
                   tg_store_errmsg(s->p->store));
            tg_memzero(s->p->key, sizeof(s->p->key));
            return refuse(v, TG_ERR, 503, NULL, NULL, "the team's upstream key cannot be used; "
                          "ask an administrator (nothing was sent upstream)");
        }
        struct tg_submission sub = s->rec;
        sub.taskgroup_id = s->p->taskgroup_id;
        sub.num_inputs = (int)tg_pipeline_inputs(s->p);
        struct tg_admit_refusal why;
        if (rc == TG_OK)
            rc = tg_usage_ask(s->p, &a);
        a.budget = &v->budget;
        if (rc == TG_OK)
            rc = tg_store_admit(s->p->store, &sub, &a, &why);
        if (rc == TG_EEXIST)
            continue; /* another request took the key meanwhile: look again */
        if (rc == TG_ETOOBIG) {
            tg_memzero(s->p->key, sizeof(s->p->key));
            v->kind = TG_ADMIT_LIMITED;
            v->rc = rc;
            v->limit = why;
            return v->kind;
        }
        if (rc != TG_OK) {
            tg_memzero(s->p->key, sizeof(s->p->key));
            return trouble(v, rc);
        }
        if (v->budget.crossed != NULL)
            tg_usage_crossed(s->auth->team, v->budget.crossed, &v->budget);
        s->p->begun = 1;
        v->claim_kind = a.kind;
        v->claim_key = a.key;
        v->kind = TG_ADMIT_PASS;
        return v->kind;
    }
    return refuse(v, TG_EEXIST, 409, NULL, "1",
                  "this request's record kept changing while it was checked; retry");
}
