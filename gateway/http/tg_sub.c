/* The submission in flight (see tg_sub.h): setting one up, the record it is stored as, and
 * the defaults every merge starts from. */
#include "tg_sub.h"

#include <string.h>

#include "tg_conf.h"
#include "tg_json.h"

int tg_sub_init(struct tg_sub *s, struct tg_worker *w, struct tg_request *req,
                struct tg_response *resp, const struct tg_sub_ops *ops)
{
    memset(s, 0, sizeof(*s));
    s->w = w;
    s->req = req;
    s->resp = resp;
    s->ops = ops;
    s->interface = ops->interface;
    s->p.store = w->store;
    s->p.up = w->up;
    s->p.conf = w->conf;
    s->p.pool = req->pool;
    s->p.request_id = req->request_id;
    s->p.team = s->auth.team; /* filled once the token is checked */
    s->p.build_chunk = ops->build_chunk;
    s->p.keeps_answer = ops->keeps_answer;
    s->detail = tg_json_pool(req->pool, json_object_new_array());
    s->p.run_ids = tg_json_pool(req->pool, json_object_new_array());
    s->p.calls = tg_json_pool(req->pool, json_object_new_array());
    if (s->detail == NULL || s->p.run_ids == NULL || s->p.calls == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return TG_ENOMEM;
    }
    if (tg_sortable_id(s->p.id, sizeof(s->p.id), "sub_") != TG_OK) {
        tg_resp_error(resp, req, 500, "no randomness available", NULL);
        return TG_ERR;
    }
    resp->submission_id = tg_pool_strdup(req->pool, s->p.id);
    return TG_OK;
}

void tg_sub_record(struct tg_sub *s, struct tg_submission *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->id = s->p.id;
    rec->team_id = s->auth.team_id;
    rec->token_id = s->auth.token_id;
    rec->request_id = s->req->request_id;
    rec->remote_addr = s->req->remote_addr;
    rec->interface = s->interface;
    rec->taskgroup_id = s->p.taskgroup_id;
    rec->num_inputs = json_object_is_type(s->p.inputs, json_type_array)
                          ? (int)json_object_array_length(s->p.inputs) : 0;
    rec->request = tg_sub_stored_request(s);
    rec->received_ms = tg_now_ms() - (tg_mono_us() - s->req->started_us) / 1000;
}

/* The submission as it is stored: the body with MCP server header values (credentials for
 * someone else's server) replaced by fingerprints. Pool-owned text. */
const char *tg_sub_stored_request(struct tg_sub *s)
{
    if (s->body == NULL)
        return NULL;
    if (!tg_json_has_mcp_headers(s->body))
        return tg_json_str(s->body, NULL);
    json_object *copy = NULL;
    if (json_object_deep_copy(s->body, &copy, NULL) != 0 ||
        tg_json_pool(s->req->pool, copy) == NULL)
        return NULL;
    if (tg_json_redact_mcp(copy) != TG_OK)
        return NULL; /* stored without its request rather than with a secret in it */
    return tg_json_str(copy, NULL);
}

json_object *tg_sub_global_defaults(struct tg_sub *s)
{
    json_object *global = tg_json_pool(s->req->pool, json_object_new_object());
    if (global != NULL && s->w->conf->default_processor[0] != '\0')
        json_object_object_add(global, "processor",
                               json_object_new_string(s->w->conf->default_processor));
    return global;
}
