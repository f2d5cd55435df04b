/* Unit tests of the merge rules (global ← preset ← submission), the add-runs body builder
 * and the validation of what goes upstream. */
#include <string.h>

#include "tg_json.h"
#include "tg_merge.h"
#include "tg_test.h"
#include "tg_validate.h"

static json_object *J(const char *text)
{
    char err[128];
    json_object *o = tg_json_parse(text, strlen(text), TG_JSON_MAX_DEPTH, err, sizeof(err));
    if (o == NULL)
        fprintf(stderr, "bad test JSON %s: %s\n", text, err);
    return o;
}

/* Runs the whole chain the handler runs and returns the merged template's JSON text. */
static char *merged(const char *global, const char *preset, const char *sub)
{
    static char out[4096];
    json_object *g = J(global), *p = J(preset), *s = J(sub);
    json_object *pt = tg_merge_template_from_preset(p);
    json_object *st = tg_merge_template_from_submission(s);
    json_object *base = tg_merge(g, pt);
    json_object *m = tg_merge(base, st);
    tg_merge_template_finish(m);
    snprintf(out, sizeof(out), "%s", tg_json_str(m, NULL));
    json_object_put(g);
    json_object_put(p);
    json_object_put(s);
    json_object_put(pt);
    json_object_put(st);
    json_object_put(base);
    json_object_put(m);
    return out;
}

static void objects_merge_key_by_key(void)
{
    CHECK_STR(merged("{}", "{\"processor\":\"core\",\"metadata\":{\"a\":1,\"b\":2}}",
                     "{\"metadata\":{\"b\":3,\"c\":4}}"),
              "{\"processor\":\"core\",\"metadata\":{\"a\":1,\"b\":3,\"c\":4}}");
}

static void lists_are_replaced(void)
{
    CHECK_STR(merged("{}", "{\"processor\":\"core\",\"source_policy\":{\"include_domains\":"
                           "[\"a.com\",\"b.com\"]}}",
                     "{\"include_domains\":[\"c.com\"]}"),
              "{\"processor\":\"core\",\"source_policy\":{\"include_domains\":[\"c.com\"]}}");
}

static void null_removes(void)
{
    CHECK_STR(merged("{}", "{\"processor\":\"core\",\"metadata\":{\"a\":1,\"b\":2},"
                           "\"source_policy\":{\"exclude_domains\":[\"x.com\"]}}",
                     "{\"metadata\":{\"a\":null},\"exclude_domains\":null}"),
              "{\"processor\":\"core\",\"metadata\":{\"b\":2}}");
    CHECK_STR(merged("{}", "{\"processor\":\"core\",\"metadata\":{\"a\":1}}",
                     "{\"metadata\":null}"),
              "{\"processor\":\"core\"}");
}

static void layers_in_order(void)
{
    /* The submission beats the preset, which beats the global default. */
    CHECK_STR(merged("{\"processor\":\"base\"}", "{}", "{}"), "{\"processor\":\"base\"}");
    CHECK_STR(merged("{\"processor\":\"base\"}", "{\"processor\":\"core\"}", "{}"),
              "{\"processor\":\"core\"}");
    CHECK_STR(merged("{\"processor\":\"base\"}", "{\"processor\":\"core\"}",
                     "{\"processor\":\"pro\"}"),
              "{\"processor\":\"pro\"}");
}

static void simplified_fields_map_upstream(void)
{
    CHECK_STR(merged("{}", "{}",
                     "{\"processor\":\"lite\",\"output\":\"the GDP\",\"inputs\":[\"x\"],"
                     "\"taskgroup_id\":\"tgrp_1\",\"preset\":\"default\"}"),
              "{\"processor\":\"lite\",\"task_spec\":{\"output_schema\":\"the GDP\"}}");
    CHECK_STR(merged("{}", "{}",
                     "{\"processor\":\"lite\",\"output\":{\"type\":\"object\",\"properties\":{}}}"),
              "{\"processor\":\"lite\",\"task_spec\":{\"output_schema\":{\"type\":\"json\","
              "\"json_schema\":{\"type\":\"object\",\"properties\":{}}}}}");
    CHECK_STR(merged("{}", "{}", "{\"processor\":\"lite\",\"output\":{\"type\":\"auto\"}}"),
              "{\"processor\":\"lite\",\"task_spec\":{\"output_schema\":{\"type\":\"auto\"}}}");
    CHECK_STR(merged("{}", "{}", "{\"processor\":\"lite\",\"output\":{\"type\":\"weird\"}}"),
              "{\"processor\":\"lite\",\"task_spec\":{\"output_schema\":{\"type\":\"weird\"}}}");
    CHECK_STR(merged("{}", "{}",
                     "{\"processor\":\"lite\",\"output\":{\"properties\":{\"gdp\":{}}}}"),
              "{\"processor\":\"lite\",\"task_spec\":{\"output_schema\":{\"type\":\"json\","
              "\"json_schema\":{\"properties\":{\"gdp\":{}}}}}}");
    CHECK_STR(merged("{}", "{}",
                     "{\"processor\":\"lite\",\"webhook_url\":\"https://h.example/x\","
                     "\"enable_events\":true}"),
              "{\"processor\":\"lite\",\"webhook\":{\"url\":\"https://h.example/x\","
              "\"event_types\":[\"task_run.status\"]},\"enable_events\":true}");
}

static void unknown_fields_pass_through(void)
{
    CHECK_STR(merged("{}", "{\"processor\":\"core\",\"memory_scope_key\":\"p\"}",
                     "{\"advanced_settings\":{\"x\":[1,null]}}"),
              "{\"processor\":\"core\",\"memory_scope_key\":\"p\","
              "\"advanced_settings\":{\"x\":[1,null]}}");
}

static void preset_default_task_spec(void)
{
    CHECK_STR(merged("{}", "{\"processor\":\"core\",\"default_task_spec\":{\"output_schema\":"
                           "\"a\"},\"enforced\":[\"processor\"]}",
                     "{\"input_schema\":\"a city\"}"),
              "{\"processor\":\"core\",\"task_spec\":{\"output_schema\":\"a\","
              "\"input_schema\":\"a city\"}}");
    /* Removing the output schema leaves an auto one, not an invalid task spec. */
    CHECK_STR(merged("{}", "{\"processor\":\"core\",\"default_task_spec\":{\"output_schema\":"
                           "\"a\",\"input_schema\":\"b\"}}",
                     "{\"output\":null}"),
              "{\"processor\":\"core\",\"task_spec\":{\"input_schema\":\"b\",\"output_schema\":"
              "{\"type\":\"auto\"}}}");
}

static void build_body_exactly(void)
{
    json_object *tmpl = J("{\"processor\":\"core\",\"task_spec\":{\"output_schema\":\"x\"},"
                          "\"metadata\":{\"k\":\"v\"}}");
    json_object *inputs = J("[\"a\",{\"city\":\"Paris\"},\"c\"]");
    struct tg_buf b;
    tg_buf_init(&b, 1 << 20);
    CHECK(tg_merge_add_runs(&b, tmpl, inputs, 1, 2) == TG_OK);
    CHECK_STR(tg_buf_str(&b),
              "{\"default_task_spec\":{\"output_schema\":\"x\"},\"inputs\":["
              "{\"input\":{\"city\":\"Paris\"},\"processor\":\"core\",\"metadata\":{\"k\":\"v\"}},"
              "{\"input\":\"c\",\"processor\":\"core\",\"metadata\":{\"k\":\"v\"}}]}");
    tg_buf_free(&b);

    /* The buffer's limit is an error, not a crash. */
    tg_buf_init(&b, 40);
    CHECK(tg_merge_add_runs(&b, tmpl, inputs, 0, 3) == TG_ETOOBIG);
    tg_buf_free(&b);
    json_object_put(tmpl);
    json_object_put(inputs);
}

static const char *first_loc(json_object *detail)
{
    static char out[256];
    json_object *p = json_object_array_get_idx(detail, 0);
    snprintf(out, sizeof(out), "%s", p != NULL ? tg_json_str(tg_json_get(p, "loc"), NULL) : "");
    return out;
}

static void validation(void)
{
    json_object *detail = json_object_new_array();
    json_object *at = tg_json_loc("body", NULL);
    json_object *t = J("{\"metadata\":{\"a_key_longer_than_16\":1,\"ok\":[1]}}");
    struct tg_locator where = {tg_validate_loc_simplified, t, at};
    tg_validate_template(t, &where, detail);
    CHECK(json_object_array_length(detail) == 3); /* no processor, long key, list value */
    CHECK_STR(first_loc(detail), "[\"body\",\"processor\"]");
    json_object_put(t);
    json_object_put(detail);

    detail = json_object_new_array();
    json_object *in = J("[\"ok\",3]");
    tg_validate_inputs(in, 10, 0, detail);
    CHECK(json_object_array_length(detail) == 1);
    CHECK_STR(first_loc(detail), "[\"body\",\"inputs\",1]");
    json_object_put(in);
    json_object_put(detail);

    detail = json_object_new_array();
    in = J("[]");
    tg_validate_inputs(in, 10, 0, detail);
    tg_validate_inputs(NULL, 10, 0, detail);
    CHECK(json_object_array_length(detail) == 2);
    json_object_put(in);
    json_object_put(detail);
    json_object_put(at);

    CHECK(tg_validate_id("tgrp_0123abc-Z"));
    CHECK(!tg_validate_id(""));
    CHECK(!tg_validate_id("../x"));
    CHECK(!tg_validate_id("a b"));
    CHECK(tg_validate_domain("example.com"));
    CHECK(tg_validate_domain("sub.example.gov"));
    CHECK(tg_validate_domain(".gov"));
    CHECK(tg_validate_domain(".co.uk"));
    CHECK(!tg_validate_domain("localhost"));
    CHECK(!tg_validate_domain("."));
    CHECK(!tg_validate_domain("a..b"));
    CHECK(!tg_validate_domain("-a.com"));
    CHECK(!tg_validate_domain("http://a.com"));
    CHECK(!tg_validate_domain("a.com/x"));
}

static void strict_parsing(void)
{
    char err[128];
    CHECK(tg_json_parse("{\"a\":1} x", 9, 8, err, sizeof(err)) == NULL);
    CHECK(tg_json_parse("{\"a\":1}\0", 8, 8, err, sizeof(err)) == NULL);
    CHECK(tg_json_parse("\"\xff\"", 3, 8, err, sizeof(err)) == NULL);
    CHECK(tg_json_parse("[[[[1]]]]", 9, 3, err, sizeof(err)) == NULL);
    CHECK(tg_json_parse("{\"a\":", 5, 8, err, sizeof(err)) == NULL);
    const char *dup = "{\"a\":1,\"b\":{\"a\":2,\"c\":[{\"x\":1},{\"x\":2}]},\"a\":3}";
    CHECK(tg_json_parse(dup, strlen(dup), 8, err, sizeof(err)) == NULL);
    CHECK_STR(err, "body has the key \"a\" twice in one object");
    const char *nodup = "{\"a\":\"a\",\"b\":{\"a\":2,\"c\":[{\"x\":1},{\"x\":\"x\\\"\"}]},\"d\":[\"a\"]}";
    json_object *ok = tg_json_parse(nodup, strlen(nodup), 8, err, sizeof(err));
    CHECK(ok != NULL);
    json_object_put(ok);
    json_object *o = tg_json_parse(" {\"a\":1}\n", 9, 8, err, sizeof(err));
    CHECK(o != NULL);
    json_object_put(o);
}

static void beta_names(void)
{
    struct tg_pool *pool = tg_pool_create();
    json_object *run = J("{\"processor\":\"core\",\"enable_events\":true,"
                         "\"webhook\":{\"url\":\"https://x\"},\"mcp_servers\":[]}");
    CHECK_STR(tg_merge_beta_header(pool, run, NULL),
              "mcp-server-2025-07-17,events-sse-2025-07-24,webhook-2025-08-12");
    json_object_put(run);
    run = J("{\"processor\":\"core\",\"enable_events\":false}");
    CHECK_STR(tg_merge_beta_header(pool, run, NULL), "");
    /* The client's names are kept, deduplicated, unknown ones included. */
    CHECK_STR(tg_merge_beta_header(pool, run, " field-basis-2025-11-25, ,events-sse-2025-07-24,"
                                              "field-basis-2025-11-25"),
              "field-basis-2025-11-25,events-sse-2025-07-24");
    json_object_put(run);
    run = J("{\"webhook\":{}}");
    CHECK_STR(tg_merge_beta_header(pool, run, "events-sse-2025-07-24"),
              "webhook-2025-08-12,events-sse-2025-07-24");
    json_object_put(run);
    tg_pool_destroy(pool);
}

static size_t policy_problems(const char *preset, const char *sub, char *loc, size_t loclen)
{
    json_object *p = J(preset), *b = J(sub);
    json_object *own = tg_merge_template_from_submission(b);
    json_object *pt = tg_merge_template_from_preset(p);
    json_object *m = tg_merge(pt, own);
    json_object *detail = json_object_new_array();
    tg_merge_check_policy(p, own, b, m, detail);
    size_t n = json_object_array_length(detail);
    snprintf(loc, loclen, "%s", first_loc(detail));
    json_object_put(p);
    json_object_put(b);
    json_object_put(own);
    json_object_put(pt);
    json_object_put(m);
    json_object_put(detail);
    return n;
}

static void enforced_fields(void)
{
    char loc[256];
    const char *preset = "{\"processor\":\"core\",\"source_policy\":{\"exclude_domains\":"
                         "[\"x.com\"]},\"metadata\":{\"cc\":\"rd\"},\"enforced\":"
                         "[\"source_policy.exclude_domains\",\"metadata.cc\"],"
                         "\"allowed_processors\":[\"core\",\"pro\"]}";
    CHECK(policy_problems(preset, "{\"inputs\":[\"a\"]}", loc, sizeof(loc)) == 0);
    /* Restating the enforced value is fine; changing or removing it is not. */
    CHECK(policy_problems(preset, "{\"exclude_domains\":[\"x.com\"]}", loc, sizeof(loc)) == 0);
    CHECK(policy_problems(preset, "{\"exclude_domains\":[]}", loc, sizeof(loc)) == 1);
    CHECK_STR(loc, "[\"body\",\"exclude_domains\"]");
    CHECK(policy_problems(preset, "{\"exclude_domains\":null}", loc, sizeof(loc)) == 1);
    CHECK(policy_problems(preset, "{\"source_policy\":{\"exclude_domains\":[\"y.com\"]}}", loc,
                          sizeof(loc)) == 1);
    CHECK_STR(loc, "[\"body\",\"source_policy\",\"exclude_domains\"]");
    CHECK(policy_problems(preset, "{\"metadata\":{\"cc\":\"ops\"}}", loc, sizeof(loc)) == 1);
    CHECK_STR(loc, "[\"body\",\"metadata\",\"cc\"]");
    CHECK(policy_problems(preset, "{\"metadata\":null}", loc, sizeof(loc)) == 1);
    CHECK(policy_problems(preset, "{\"metadata\":{\"other\":\"ok\"}}", loc, sizeof(loc)) == 0);
    CHECK(policy_problems(preset, "{\"processor\":\"pro\"}", loc, sizeof(loc)) == 0);
    CHECK(policy_problems(preset, "{\"processor\":\"ultra\"}", loc, sizeof(loc)) == 1);
    CHECK_STR(loc, "[\"body\",\"processor\"]");
}

/* A preset asking for the gateway's webhook gets it on every run when the public URL is
 * set; a submission's own still overrides it; gateway_webhook never goes upstream. */
static void gateway_webhook(void)
{
    json_object *p = J("{\"processor\":\"base\",\"gateway_webhook\":true,"
                       "\"webhook\":{\"url\":\"https://team.example/h\"}}");
    json_object *t = tg_merge_template_from_preset(p);
    CHECK(tg_merge_gateway_webhook(t, p, "https://gw.example") == TG_OK);
    CHECK_STR(tg_json_str(t, NULL), "{\"processor\":\"base\",\"webhook\":{\"url\":"
              "\"https://gw.example/v1/webhooks/parallel\",\"event_types\":"
              "[\"task_run.status\"]}}");
    json_object *s = J("{\"webhook_url\":\"https://mine.example/x\"}");
    json_object *own = tg_merge_template_from_submission(s);
    json_object *m = tg_merge(t, own);
    CHECK_STR(tg_json_get_str(tg_json_get(m, "webhook"), "url"), "https://mine.example/x");
    json_object_put(m);
    json_object_put(own);
    json_object_put(s);
    json_object_put(t);
    /* Without a public URL, or without the preset asking: the preset's own, if any. */
    t = tg_merge_template_from_preset(p);
    CHECK(tg_merge_gateway_webhook(t, p, "") == TG_OK);
    CHECK_STR(tg_json_get_str(tg_json_get(t, "webhook"), "url"), "https://team.example/h");
    CHECK(!tg_json_has(t, "gateway_webhook"));
    json_object_put(t);
    json_object *q = J("{\"processor\":\"base\",\"gateway_webhook\":false}");
    t = tg_merge_template_from_preset(q);
    CHECK(tg_merge_gateway_webhook(t, q, "https://gw.example") == TG_OK);
    CHECK(!tg_json_has(t, "webhook"));
    json_object_put(t);
    json_object_put(q);
    json_object_put(p);
    /* A preset's gateway_webhook must be a boolean. */
    json_object *bad = J("{\"gateway_webhook\":\"yes\"}");
    json_object *detail = json_object_new_array();
    tg_validate_preset(bad, detail);
    CHECK(json_object_array_length(detail) == 1);
    CHECK(strstr(tg_json_str(detail, NULL), "gateway_webhook") != NULL);
    json_object_put(detail);
    json_object_put(bad);
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"gateway_webhook", gateway_webhook},
        {"objects_merge_key_by_key", objects_merge_key_by_key},
        {"lists_are_replaced", lists_are_replaced},
        {"null_removes", null_removes},
        {"layers_in_order", layers_in_order},
        {"simplified_fields_map_upstream", simplified_fields_map_upstream},
        {"unknown_fields_pass_through", unknown_fields_pass_through},
        {"preset_default_task_spec", preset_default_task_spec},
        {"build_body_exactly", build_body_exactly},
        {"validation", validation},
        {"strict_parsing", strict_parsing},
        {"beta_names", beta_names},
        {"enforced_fields", enforced_fields},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
