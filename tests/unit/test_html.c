/* Unit tests of the HTML answers: content negotiation, escaping, and the pages rendered
 * from JSON answers. */
#include <string.h>

#include "tg_html.h"
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

static void escaping(void)
{
    struct tg_buf b;
    tg_buf_init(&b, 1024);
    tg_html_escape(&b, "<script>alert('x')</script> & \"q\"");
    CHECK_STR(tg_buf_str(&b),
              "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
    tg_buf_free(&b);
}

static void render(int status, const char *json, struct tg_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    tg_buf_init(&resp->body, 1 << 20);
    tg_buf_adds(&resp->body, json);
    resp->status = status;
    struct tg_request req = {.request_id = "req<1>"};
    tg_html_render(&req, resp);
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
    CHECK(strstr(page, "metadata.&lt;k&gt;") != NULL);
    CHECK(strstr(page, "too long") != NULL);
    CHECK(resp.status == 422);
    tg_buf_free(&resp.body);

    render(502, "{\"type\":\"error\",\"error\":{\"ref_id\":\"r\",\"message\":\"upstream <down>\"}}",
           &resp);
    page = tg_buf_str(&resp.body);
    CHECK(strstr(page, "upstream &lt;down&gt;") != NULL);
    CHECK(strstr(page, "Bad Gateway") != NULL);
    tg_buf_free(&resp.body);
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"negotiation", negotiation},
        {"escaping", escaping},
        {"pages", pages},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
