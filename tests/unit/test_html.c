/* Unit tests of the HTML answers: content negotiation, escaping, and the pages rendered
 * from JSON answers. */
#include <string.h>

#include "tg_html.h"
#include "tg_pages.h"
#include "tg_test.h"

static void negotiation(void)
{
    CHECK(tg_html_preferred("text/html,application/xhtml+xml,application/xml;q=0.9,"
                            "*/*;q=0.8"));
    CHECK(!tg_html_preferred(NULL));
    CHECK(!tg_html_preferred("*/*"));
    CHECK(!tg_html_preferred("application/json"));
    CHECK(!tg_html_preferred("application/json, text/html;q=0.5"));
    CHECK(tg_html_preferred("text/*"));
    CHECK(!tg_html_preferred("text/html;q=0"));
}

/* One Accept reading for the pages and the audit trail's CSV: ranges by specificity, and
 * the q parameter with white space around ';' (RFC 9110 12.5.1). */
static void test_accept_q(void)
{
    CHECK(tg_http_accept_q(NULL, "text/csv") < 0);
    CHECK(tg_http_accept_q("application/json", "text/csv") < 0);
    CHECK(tg_http_accept_q("text/csv; q=0.5", "text/csv") == 0.5);
    CHECK(tg_http_accept_q("text/csv ;Q=0.25, */*", "text/csv") == 0.25);
    CHECK(tg_http_accept_q("text/*;q=0.3, */*;q=0.1", "text/csv") == 0.3);
    CHECK(tg_http_accept_q("*/*;q=0.1, TEXT/CSV", "text/csv") == 1.0);
    CHECK(tg_http_accept_q("text/csv;charset=utf-8;q=0.7", "text/csv") == 0.7);
}

static void escaping(void)
{
    struct tg_buf b;
    tg_buf_init(&b, 1024);
    tg_html_escape(&b, "<script>alert('x')</script> & \"q\"");
    CHECK_STR(tg_buf_str(&b),
              "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
    tg_buf_free(&b);
}

static struct tg_pool *pool;

/* Renders a JSON answer to a form post of body (urlencoded; may be NULL). */
static void render_post(int status, const char *json, const char *body,
                        struct tg_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    tg_buf_init(&resp->body, 1 << 20);
    tg_buf_adds(&resp->body, json);
    resp->status = status;
    struct tg_request req = {.pool = pool, .method = "POST", .path = "/v1/runs",
                             .request_id = "req<1>"};
    if (body != NULL) {
        req.content_type = "application/x-www-form-urlencoded";
        req.body = body;
        req.body_len = strlen(body);
    }
    tg_html_render(&req, resp);
}

static void render(int status, const char *json, struct tg_response *resp)
{
    render_post(status, json, NULL, resp);
}

static int has_header(const struct tg_response *resp, const char *name, const char *part)
{
    for (int i = 0; i < resp->nheaders; i++)
        if (strcmp(resp->header_name[i], name) == 0 && strstr(resp->header_value[i], part))
            return 1;
    return 0;
}

static void pages(void)
{
    struct tg_response resp;
    render(200, "{\"submission_id\":\"sub_1\",\"taskgroup_id\":\"tgrp_<b>\",\"status\":\"accepted\","
                "\"run_ids\":[\"trun_a\",\"trun_b\"],\"run_cursor\":null,\"event_cursor\":\"e1\"}",
           &resp);
    const char *page = tg_buf_str(&resp.body);
    CHECK(strstr(page, "<!doctype html>") == page);
    CHECK(strstr(page, "trun_a") != NULL && strstr(page, "trun_b") != NULL);
    CHECK(strstr(page, "tgrp_&lt;b&gt;") != NULL);
    CHECK(strstr(page, "<b>") == NULL);
    CHECK(strstr(page, "req&lt;1&gt;") != NULL);
    CHECK_STR(resp.content_type, "text/html; charset=utf-8");
    CHECK(resp.status == 200);
    tg_buf_free(&resp.body);

    render(422, "{\"detail\":[{\"loc\":[\"body\",\"metadata\",\"<k>\"],\"msg\":\"too long\","
                "\"type\":\"x\"}]}", &resp);
    page = tg_buf_str(&resp.body);
    CHECK(strstr(page, "Metadata key “&lt;k&gt;”") != NULL);
    CHECK(strstr(page, "too long") != NULL);
    CHECK(resp.status == 422);
    CHECK(has_header(&resp, "Content-Security-Policy", "script-src 'self'"));
    CHECK(strstr(page, "<script>") == NULL && strstr(page, "style=") == NULL);
    tg_buf_free(&resp.body);

    render(502, "{\"type\":\"error\",\"error\":{\"ref_id\":\"r\",\"message\":\"upstream <down>\"}}",
           &resp);
    page = tg_buf_str(&resp.body);
    CHECK(strstr(page, "upstream &lt;down&gt;") != NULL);
    CHECK(strstr(page, "The upstream failed") != NULL);
    tg_buf_free(&resp.body);
    tg_pool_reset(pool);
}

/* A form that comes back keeps the person's values, each problem by its field. */
static void form_again(void)
{
    struct tg_response resp;
    const char *body = "token=tg_secret&inputs=a%0Ab%3Cx%3E%0Ac&metadata_key=longlonglonglonglong&"
                       "metadata_value=v&output=short";
    render_post(422, "{\"detail\":[{\"loc\":[\"body\",\"inputs\",1],\"msg\":\"bad input\","
                     "\"type\":\"x\"},{\"loc\":[\"body\",\"metadata\",\"longlonglonglonglong\"],"
                     "\"msg\":\"too long\",\"type\":\"x\"}]}", body, &resp);
    const char *page = tg_buf_str(&resp.body);
    CHECK(resp.status == 422);
    CHECK(strstr(page, ">a\nb&lt;x&gt;\nc</textarea>") != NULL);
    CHECK(strstr(page, "Input 2 (line 2): bad input") != NULL);
    CHECK(strstr(page, "value=\"longlonglonglonglong\"") != NULL);
    CHECK(strstr(page, "id=\"e-meta-0\"") != NULL);
    CHECK(strstr(page, "value=\"tg_secret\"") != NULL); /* a good token is kept */
    tg_buf_free(&resp.body);

    render_post(401, "{\"type\":\"error\",\"error\":{\"ref_id\":\"r\",\"message\":\"invalid, "
                     "expired or revoked team token\"}}", body, &resp);
    page = tg_buf_str(&resp.body);
    CHECK(resp.status == 401);
    CHECK(strstr(page, "id=\"e-token\"") != NULL);
    CHECK(strstr(page, "tg_secret") == NULL); /* a wrong one is not echoed */
    CHECK(strstr(page, ">short</textarea>") != NULL);
    tg_buf_free(&resp.body);
    tg_pool_reset(pool);
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"accept_q", test_accept_q},
        {"negotiation", negotiation},
        {"escaping", escaping},
        {"pages", pages},
        {"form_again", form_again},
        {NULL, NULL},
    };
    pool = tg_pool_create();
    int rc = tg_test_run(cases);
    tg_pool_destroy(pool);
    return rc;
}
