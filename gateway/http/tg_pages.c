/* The browser pages' router (contract in tg_pages.h), the form page, the stylesheet and
 * script compiled into the binary, and the team's preset names for the script. */
#include "tg_pages.h"

#include <string.h>

#include "tg_html.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_store.h"

static int is_get(const struct tg_request *req)
{
    return strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
}

static void form_page(const struct tg_request *req, struct tg_response *resp)
{
    struct tg_form_view v = {NULL, NULL, NULL, NULL, 0};
    struct tg_buf *b = &resp->body;
    tg_html_begin(b, "Add runs", "submit");
    tg_buf_adds(b, "<p class=\"lead\">Each input becomes one run in a Parallel task group. "
                   "Fields you leave empty come from your team's preset.</p>\n");
    tg_pages_form(b, &v);
    tg_html_end(b, req);
    tg_html_finish(req, resp, 200);
}

static void static_file(const struct tg_request *req, struct tg_response *resp)
{
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
static void presets(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    struct tg_auth auth;
    if (tg_http_auth(w, req, resp, NULL, &auth) != TG_OK)
        return;
    json_object *ans = tg_json_pool(req->pool, json_object_new_object());
    json_object *list = json_object_new_array();
    if (ans == NULL || list == NULL) {
        json_object_put(list);
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        return;
    }
    json_object_object_add(ans, "team", json_object_new_string(auth.team));
    json_object_object_add(ans, "presets", list);
    struct preset_list pl = {w->store, req->pool, auth.team_id, list};
    int rc = tg_store_preset_list(w->store, auth.team_id, add_preset, &pl);
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

static void not_allowed(const struct tg_request *req, struct tg_response *resp,
                        const char *allow)
{
    tg_resp_header(resp, "Allow", allow);
    if (tg_html_preferred(req->accept))
        tg_html_error_page(req, resp, 405, "This page is only read, never posted to.");
    else
        tg_resp_error(resp, req, 405, "method not allowed here", NULL);
}

int tg_pages_handle(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    const char *path = req->path != NULL ? req->path : "/";
    if (strcmp(path, "/") == 0 || strcmp(path, "/submit") == 0) {
        resp->interface = "browser";
        if (is_get(req))
            form_page(req, resp);
        else
            not_allowed(req, resp, "GET, HEAD");
        return 1;
    }
    if (strncmp(path, "/static/", 8) == 0) {
        if (is_get(req))
            static_file(req, resp);
        else
            not_allowed(req, resp, "GET, HEAD");
        return 1;
    }
    if (strcmp(path, "/ui/presets") == 0) {
        resp->interface = "browser";
        if (is_get(req))
            presets(w, req, resp);
        else
            not_allowed(req, resp, "GET, HEAD");
        return 1;
    }
    if (strcmp(path, "/history") == 0 || strncmp(path, "/history/", 9) == 0) {
        resp->interface = "browser";
        tg_pages_history(w, req, resp);
        return 1;
    }
    if (tg_html_preferred(req->accept)) {
        tg_html_error_page(req, resp, 404, "There is no page at this address.");
        return 1;
    }
    return 0;
}
