/* Repeats of a submission (see tg_submit.h's tg_sub_admit and README "Guarantees"): the
 * canonical request hash, the Idempotency-Key and SDK-retry records, what a repeat is
 * answered, and storing the answer a client was sent so that a replay is byte for byte the
 * same. Both interfaces come through here, between their checks and tg_sub_forward. */
#include "tg_idem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_conf.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_metrics.h"
#include "tg_reconcile.h"
#include "tg_store.h"
#include "tg_submit.h"
#include "tg_token.h"
#include "tg_validate.h"

#define KEY_MAX 255
#define ROUNDS 4 /* a record that changes under us more often than this: answer 409 */

/* The record whose answer is stored once the handler has answered (resp->idem). */
struct tg_idem_claim {
    int64_t team_id;
    enum tg_idem_kind kind;
    const char *key;
    const char *submission_id;
};

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
static int hash_request(struct tg_sub *s)
{
    struct tg_buf b;
    tg_buf_init(&b, (size_t)1024 * 1024 * 1024);
    int rc = tg_buf_printf(&b, "%s\n%s\n%s\n%s\n", s->interface, s->req->method,
                           s->req->path != NULL ? s->req->path : "",
                           s->req->query != NULL ? s->req->query : "");
    if (rc == TG_OK)
        rc = canon(&b, s->body, 0);
    if (rc == TG_OK)
        tg_sha256_hex(b.data, b.len, s->request_hash);
    tg_buf_free(&b);
    return rc;
}

int tg_idem_valid_key(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > KEY_MAX)
        return 0;
    for (; *k != '\0'; k++)
        if ((unsigned char)*k < 0x20 || (unsigned char)*k > 0x7e)
            return 0;
    return 1;
}

/* x-stainless-retry-count above 0: an SDK's own retry. */
static int sdk_retry(const struct tg_request *req)
{
    long n;
    return req->retry_count != NULL && tg_parse_long(req->retry_count, 0, 1000000, &n) == TG_OK &&
           n > 0;
}

/* ---- answers to a repeat --------------------------------------------------------------- */

static void replay(struct tg_sub *s, const struct tg_idem_rec *rec)
{
    struct tg_response *resp = s->resp;
    resp->status = rec->answer_status;
    resp->content_type = rec->answer_type != NULL ? rec->answer_type : "application/json";
    resp->replayed = 1;
    resp->submission_id = rec->submission_id;
    tg_buf_clear(&resp->body);
    if (tg_buf_add(&resp->body, rec->answer_body, rec->answer_len) != TG_OK) {
        tg_resp_error(resp, s->req, 500, "the stored answer does not fit the answer buffer",
                      NULL);
        return;
    }
    tg_resp_header(resp, "Idempotent-Replayed", "true");
}

static json_object *naming(struct tg_sub *s, const char *sub_id)
{
    json_object *d = tg_json_pool(s->req->pool, json_object_new_object());
    if (d != NULL)
        json_object_object_add(d, "submission_id", json_object_new_string(sub_id));
    return d;
}

static void in_flight(struct tg_sub *s, const struct tg_idem_rec *rec)
{
    char msg[200];
    snprintf(msg, sizeof(msg), "submission %s with this %s is still in flight; retry after it "
             "is answered", rec->submission_id, s->idem_key != NULL ? "Idempotency-Key" : "body");
    tg_sub_reject(s, 409, msg, naming(s, rec->submission_id));
    tg_resp_header(s->resp, "Retry-After", "1");
}

static void other_body(struct tg_sub *s, const struct tg_idem_rec *rec)
{
    json_object *detail = tg_json_pool(s->req->pool, json_object_new_array());
    char msg[200];
    snprintf(msg, sizeof(msg), "this Idempotency-Key was used by submission %s with a different "
             "request; use a new key for a new request", rec->submission_id);
    tg_json_problem(detail, tg_json_loc("header", "Idempotency-Key", NULL), msg,
                    "idempotency_key_reused");
    tg_sub_reject(s, 422, msg, detail);
}

static void unreconciled(struct tg_sub *s, const char *sub_id, const char *why)
{
    char msg[700];
    snprintf(msg, sizeof(msg), "the outcome of submission %s is unknown and could not be "
             "reconciled now (%s); nothing was sent; retry later", sub_id, why);
    tg_sub_reject(s, 503, msg, naming(s, sub_id));
    tg_resp_header(s->resp, "Retry-After", "5");
}

static void over_limit(struct tg_sub *s, const struct tg_admit_refusal *why)
{
    tg_metrics_submission(TG_STATE_REJECTED);
    json_object *d = tg_json_pool(s->req->pool, json_object_new_object());
    if (d != NULL) {
        json_object_object_add(d, "submission_id", json_object_new_string(s->id));
        json_object_object_add(d, "state", json_object_new_string("rejected"));
        json_object_object_add(d, "limit", json_object_new_string(why->limit));
        json_object_object_add(d, "value", json_object_new_int64(why->value));
        json_object_object_add(d, "used", json_object_new_int64(why->used));
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "the team's limit %s (%ld) is reached (%ld in use); nothing was "
             "sent; retry after %ld s", why->limit, why->value, why->used, why->retry_after_s);
    tg_resp_error(s->resp, s->req, 429, msg, d);
    tg_resp_header(s->resp, "Retry-After", tg_pool_printf(s->req->pool, "%ld",
                                                          why->retry_after_s));
}

/* ---- admission ---------------------------------------------------------------------------- */

static size_t num_inputs(const struct tg_sub *s)
{
    return json_object_is_type(s->inputs, json_type_array) ? json_object_array_length(s->inputs)
                                                           : 0;
}

/* Takes over what submission from already created: its group and, per input, its runs.
 * Returns how many inputs are still to be sent. */
static int plan_resume(struct tg_sub *s, const char *from, long *to_send)
{
    size_t n = num_inputs(s);
    const char **ids;
    const char *group;
    int rc = tg_store_prior_runs(s->w->store, s->req->pool, from, n, &ids, &group);
    if (rc != TG_OK)
        return rc;
    long missing = 0;
    for (size_t i = 0; i < n; i++)
        missing += ids[i] == NULL;
    s->resumes = tg_pool_strdup(s->req->pool, from);
    s->prior_runs = ids;
    if (s->taskgroup_id == NULL && group != NULL)
        s->taskgroup_id = group;
    *to_send = missing;
    return TG_OK;
}


int tg_sub_admit(struct tg_sub *s)
{
    const struct tg_conf *conf = s->w->conf;
    struct tg_pool *pool = s->req->pool;
    int rc = tg_sub_check_group(s);
    if (rc != TG_OK)
        return rc;
    /* The headers every interface may send, checked before anything is created: an
     * Idempotency-Key sent but unusable is refused, never ignored (each repeat would create
     * runs again), and a parallel-beta the upstream client could not send is refused here
     * rather than after a group was made. */
    json_object *detail = tg_json_pool(pool, json_object_new_array());
    if (detail == NULL) {
        tg_sub_db_trouble(s, TG_ENOMEM);
        return TG_ENOMEM;
    }
    if (s->req->idempotency_key != NULL && !tg_idem_valid_key(s->req->idempotency_key))
        tg_json_problem(detail, tg_json_loc("header", "Idempotency-Key", NULL),
                        "an Idempotency-Key is 1 to 255 printable ASCII characters",
                        "value_error");
    tg_validate_beta(s->req->parallel_beta, detail);
    if (json_object_array_length(detail) > 0) {
        tg_sub_reject(s, 422, "a header of the request is invalid", detail);
        return TG_EINVAL;
    }
    if (s->idem_key == NULL && s->req->idempotency_key != NULL)
        s->idem_key = s->req->idempotency_key;
    /* Only a request that can be repeated under a record pays for the hash. */
    rc = s->idem_key != NULL || s->req->retry_count != NULL ? hash_request(s) : TG_OK;
    if (rc != TG_OK) {
        tg_sub_db_trouble(s, rc);
        return rc;
    }
    struct tg_admission a = {.request_hash = s->request_hash};
    int retry = sdk_retry(s->req);
    if (s->idem_key != NULL) {
        a.kind = TG_IDEM_KEY;
        a.key = s->idem_key;
    } else if (s->req->retry_count != NULL && conf->retry_dedupe_window_s > 0) {
        a.kind = TG_IDEM_RETRY;
        a.key = tg_pool_printf(pool, "%s:%s", s->auth.token_id, s->request_hash);
        if (a.key == NULL) {
            tg_sub_db_trouble(s, TG_ENOMEM);
            return TG_ENOMEM;
        }
    }
    const char *actor = tg_pool_printf(pool, "token:%s", s->auth.token_id);

    for (int round = 0; round < ROUNDS; round++) {
        a.now_ms = tg_now_ms();
        a.replaces = NULL;
        a.resumes = NULL;
        a.runs = (long)num_inputs(s);
        s->resumes = NULL;
        s->prior_runs = NULL;
        struct tg_idem_rec rec;
        rc = a.key != NULL ? tg_store_idem_get(s->w->store, pool, s->auth.team_id, a.kind, a.key,
                                               a.now_ms, &rec)
                           : TG_ENOTFOUND;
        if (rc == TG_OK && a.kind == TG_IDEM_RETRY && !retry) {
            a.replaces = rec.submission_id; /* the SDK's first try: a new submission */
        } else if (rc == TG_OK) {
            if (a.kind == TG_IDEM_KEY && strcmp(rec.request_hash, s->request_hash) != 0) {
                other_body(s, &rec);
                return TG_EINVAL;
            }
            if (rec.state == TG_STATE_PENDING) {
                in_flight(s, &rec);
                return TG_EEXIST;
            }
            if (rec.state == TG_STATE_ACCEPTED && rec.answer_status != 0) {
                replay(s, &rec);
                return TG_EEXIST;
            }
            if (rec.state == TG_STATE_UNKNOWN) {
                struct tg_recon_report r;
                rc = tg_reconcile_one(s->w->store, s->w->up, pool, rec.submission_id, actor, &r);
                if (rc != TG_OK) {
                    tg_sub_db_trouble(s, rc);
                    return rc;
                }
                if (strcmp(r.outcome, "error") == 0) {
                    unreconciled(s, rec.submission_id, r.message);
                    return TG_EEXIST;
                }
                continue; /* read the record again: the submission is settled now */
            }
            /* failed, or accepted without a stored answer: send only what is missing */
            a.replaces = rec.submission_id;
            rc = plan_resume(s, rec.submission_id, &a.runs);
            if (rc != TG_OK) {
                tg_sub_db_trouble(s, rc);
                return rc;
            }
            a.resumes = s->resumes;
        } else if (rc != TG_ENOTFOUND) {
            tg_sub_db_trouble(s, rc);
            return rc;
        }
        a.expires_ms = a.now_ms + (a.kind == TG_IDEM_KEY ? conf->idempotency_ttl_s
                                                         : conf->retry_dedupe_window_s) * 1000;
        rc = tg_store_team_key(s->w->store, s->auth.team_id, s->key, sizeof(s->key));
        if (rc == TG_ERR || rc == TG_ENOTFOUND || rc == TG_ETOOBIG) {
            /* The key cannot be had (not set, or not decrypted): the team's to fix, and
             * nothing was sent. The store's message names the cause for the log only. */
            tg_log(TG_LOG_ERROR, "team %s: upstream key unusable: %s", s->auth.team,
                   tg_store_errmsg(s->w->store));
            tg_memzero(s->key, sizeof(s->key));
            tg_sub_reject(s, 503, "the team's upstream key cannot be used; ask an "
                                  "administrator (nothing was sent upstream)", NULL);
            return TG_ERR;
        }
        struct tg_submission sub;
        tg_sub_record(s, &sub);
        struct tg_admit_refusal why;
        if (rc == TG_OK)
            rc = tg_store_admit(s->w->store, &sub, &a, &why);
        if (rc == TG_EEXIST)
            continue; /* another request took the key meanwhile: look again */
        if (rc == TG_ETOOBIG) {
            tg_memzero(s->key, sizeof(s->key));
            over_limit(s, &why);
            return rc;
        }
        if (rc != TG_OK) {
            tg_memzero(s->key, sizeof(s->key));
            tg_sub_db_trouble(s, rc);
            return rc;
        }
        s->begun = 1;
        if (a.key != NULL) {
            struct tg_idem_claim *c = tg_pool_calloc(pool, 1, sizeof(*c));
            if (c != NULL) {
                c->team_id = s->auth.team_id;
                c->kind = a.kind;
                c->key = a.key;
                c->submission_id = tg_pool_strdup(pool, s->id);
                s->resp->idem = c;
            }
        }
        return TG_OK;
    }
    tg_sub_reject(s, 409, "this request's record kept changing while it was checked; retry",
                  NULL);
    tg_resp_header(s->resp, "Retry-After", "1");
    return TG_EEXIST;
}

void tg_idem_answered(struct tg_worker *w, const struct tg_request *req,
                      struct tg_response *resp)
{
    const struct tg_idem_claim *c = resp->idem;
    (void)req;
    if (c == NULL || resp->replayed || resp->status < 200 || resp->status > 299)
        return;
    int rc = tg_store_idem_answer(w->store, c->team_id, c->kind, c->key, c->submission_id,
                                  resp->status, resp->content_type, resp->body.data,
                                  resp->body.len);
    if (rc != TG_OK)
        /* A repeat then rebuilds the answer from the records instead (nothing is resent). */
        tg_log(TG_LOG_WARN, "submission %s: storing its answer for repeats failed: %s (%s)",
               c->submission_id, tg_rc_str(rc), tg_store_errmsg(w->store));
}
