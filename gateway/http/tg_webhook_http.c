/* Parallel's webhooks (see tg_webhook_http.h): the Standard Webhooks signature checked in
 * constant time against every configured secret (base/tg_webhook_sig.c), a timestamp more
 * than 5 minutes away refused, the body {"type": "task_run.status", "data": TaskRun} read
 * as the run tracker reads a run (core/tg_track.c), and the change recorded with the
 * delivery's webhook-id in one transaction (tg_store_webhook_record). Secrets are read
 * once at start and never written anywhere: not in answers, logs or the database. */
#include "tg_webhook_http.h"

#include <stdio.h>
#include <string.h>

#include "tg_conf.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_metrics.h"
#include "tg_store.h"
#include "tg_track.h"
#include "tg_webhook_sig.h"

#define BODY_DEPTH_MAX 64

/* Set before the workers start and read-only while they run. */
static struct tg_webhook_secret secrets[TG_WEBHOOK_SECRETS_MAX];
static size_t nsecrets;

int tg_webhook_http_init(const struct tg_conf *conf, char *err, size_t errlen)
{
    int rc = tg_webhook_secrets_load(conf->webhook_secrets, conf->webhook_secrets_file, secrets,
                                     TG_WEBHOOK_SECRETS_MAX, &nsecrets, err, errlen);
    if (rc != TG_OK)
        tg_webhook_http_done();
    return rc;
}

void tg_webhook_http_done(void)
{
    tg_memzero(secrets, sizeof(secrets));
    nsecrets = 0;
}

static const char *const refusal_names[] = {"", "missing", "malformed", "stale", "forged"};

/* 401 in the upstream's error shape, saying what was wrong without echoing what was
 * sent. */
static void refuse(struct tg_request *req, struct tg_response *resp, const char *reason,
                   const char *why)
{
    tg_metrics_webhook(reason);
    tg_log(TG_LOG_WARN, "webhook refused (%s): %s", reason, why);
    tg_resp_error(resp, req, 401, why, NULL);
}

static void answer(struct tg_request *req, struct tg_response *resp, const char *outcome)
{
    const char *body = tg_pool_printf(req->pool, "{\"received\":true,\"outcome\":\"%s\"}",
                                      outcome);
    if (body == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    tg_resp_json(resp, 200, body, strlen(body));
}

void tg_webhook_http_receive(struct tg_worker *w, struct tg_request *req,
                             struct tg_response *resp)
{
    resp->interface = "webhook";
    if (nsecrets == 0) {
        refuse(req, resp, "unconfigured", "this gateway has no webhook secret to verify "
               "webhooks with (webhook_secrets)");
        return;
    }
    const char *why = NULL;
    enum tg_webhook_verdict v = tg_webhook_verify(
        secrets, nsecrets, req->webhook_id, req->webhook_timestamp, req->webhook_signature,
        req->body != NULL ? req->body : "", req->body != NULL ? req->body_len : 0,
        tg_now_ms() / 1000, &why);
    if (v != TG_WEBHOOK_GENUINE) {
        refuse(req, resp, refusal_names[v], why);
        return;
    }
    /* Genuine: whatever it holds is answered 2xx, or Parallel sends it again for two
     * days. What the gateway cannot read it counts and leaves. */
    char err[128];
    json_object *body = tg_json_pool(req->pool,
                                     tg_json_parse(req->body != NULL ? req->body : "",
                                                   req->body_len, BODY_DEPTH_MAX, err,
                                                   sizeof(err)));
    const char *type = tg_json_get_str(body, "type");
    json_object *run = tg_json_get(body, "data");
    struct tg_run_change change;
    if (type == NULL || strcmp(type, "task_run.status") != 0 ||
        tg_track_run_change(run, &change) != TG_OK) {
        tg_metrics_webhook("invalid");
        tg_log(TG_LOG_WARN, "webhook %s: not a task_run.status of a run: not recorded",
               req->webhook_id);
        answer(req, resp, "invalid");
        return;
    }
    change.event_id = req->webhook_id;
    enum tg_webhook_outcome out = TG_WEBHOOK_IGNORED;
    char team[65] = "";
    int rc = tg_store_webhook_record(w->store, req->webhook_id,
                                     tg_json_get_str(run, "taskgroup_id"), &change, &out,
                                     team, sizeof(team));
    if (rc == TG_EEXIST) {
        tg_metrics_webhook("duplicate");
        answer(req, resp, "duplicate");
        return;
    }
    if (rc != TG_OK) {
        /* Not recorded: a 503 makes Parallel send it again later. */
        tg_log(TG_LOG_ERROR, "webhook %s: %s", req->webhook_id, tg_store_errmsg(w->store));
        tg_resp_error(resp, req, 503, "the webhook could not be recorded now; send it again",
                      NULL);
        return;
    }
    static const char *const outcomes[] = {"recorded", "known", "ignored"};
    tg_metrics_webhook(outcomes[out]);
    if (out == TG_WEBHOOK_RECORDED)
        tg_metrics_run_status(team, change.status);
    resp->team = team[0] != '\0' ? tg_pool_strdup(req->pool, team) : NULL;
    answer(req, resp, outcomes[out]);
}
