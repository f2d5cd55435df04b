/* The browser pages (contract in tg_pages.h): the form page, the stylesheet and
 * script compiled into the binary, and the team's preset names for the script. */
#include "tg_pages.h"

#include <string.h>

#include "tg_html.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_store.h"

void tg_pages_form_page(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    (void)w;
    struct tg_form_view v = {NULL, NULL, NULL, NULL, 0};
    struct tg_buf *b = &resp->body;
    tg_html_begin(b, "Add runs", "submit");
    tg_buf_adds(b, "<p class=\"lead\">Each input becomes one run in a Parallel task group. "
                   "Fields you leave empty come from your team's preset.</p>\n");
    tg_pages_form(b, &v);
    tg_html_end(b, req);
    tg_html_finish(req, resp, 200);
}

void tg_pages_static(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    (void)w;
    for (const struct tg_static_file *f = tg_static_files; f->path != NULL; f++) {
        if (strcmp(f->path, req->path) != 0)
            continue;
        tg_buf_clear(&resp->body);
        if (tg_buf_add(&resp->body, f->data, f->len) != TG_OK) {
            tg_resp_error(resp, req, 500, "out of memory", NULL);
            return;
        }
        resp->status = 200;
        resp->content_type = f->content_type;
        tg_resp_header(resp, "Cache-Control", "public, max-age=300");
        tg_resp_header(resp, "X-Content-Type-Options", "nosniff");
        return;
    }
    tg_resp_error(resp, req, 404, "Not Found", NULL);
}

struct preset_list {
    struct tg_store *st;
    struct tg_pool *pool;
    int64_t team_id;
    json_object *list;
};

static int add_preset(void *arg, const char *name, const char *updated_at)
{
    struct preset_list *pl = arg;
    (void)updated_at;
    json_object *p = json_object_new_object();
    if (p == NULL || json_object_array_add(pl->list, p) != 0) {
        json_object_put(p);
        return TG_ENOMEM;
    }
    json_object_object_add(p, "name", json_object_new_string(name));
    /* The processor helps a person choose; the rest of the preset stays on the server. */
    char *text = NULL;
    if (tg_store_preset_get(pl->st, pl->pool, pl->team_id, name, &text) == TG_OK) {
        char err[64];
        json_object *body = tg_json_pool(pl->pool, tg_json_parse(text, strlen(text),
                                                                 TG_JSON_MAX_DEPTH, err,
                                                                 sizeof(err)));
        const char *proc = tg_json_get_str(body, "processor");
        if (proc != NULL)
            json_object_object_add(p, "processor", json_object_new_string(proc));
    }
    return TG_OK;
}

/* GET /ui/presets with the token in a header (never a form field: a GET's query would
 * land in logs): {"team": …, "presets": [{"name", "processor"?}, …]}. */
void tg_pages_presets(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    const struct tg_auth *auth = req->auth;
    json_object *ans = tg_json_pool(req->pool, json_object_new_object());
    json_object *list = json_object_new_array();
    if (ans == NULL || list == NULL) {
        json_object_put(list);
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    json_object_object_add(ans, "team", json_object_new_string(auth->team));
    json_object_object_add(ans, "presets", list);
    struct preset_list pl = {w->store, req->pool, auth->team_id, list};
    int rc = tg_store_preset_list(w->store, auth->team_id, add_preset, &pl);
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "preset list failed: %s (%s)", tg_rc_str(rc),
               tg_store_errmsg(w->store));
        tg_resp_error(resp, req, 503, "the database cannot be read; try again later", NULL);
        return;
    }
    size_t len;
    const char *text = tg_json_str(ans, &len);
    tg_resp_json(resp, 200, text, len);
}
