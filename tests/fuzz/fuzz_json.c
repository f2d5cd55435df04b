/* libFuzzer target: a JSON submission body through everything /v1/runs does with it before
 * the upstream: strict parsing (RFC 8259, with the place of a problem), the merge under a
 * preset, policy, validation and the add-runs body. Any crash, leak or sanitizer report is
 * a bug. */
#include <stddef.h>
#include <stdint.h>

#include "tg_json.h"
#include "tg_merge.h"
#include "tg_validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char preset_text[] =
    "{\"processor\":\"core\",\"metadata\":{\"cc\":\"rd\"},\"source_policy\":{\"exclude_domains\":"
    "[\"x.com\"]},\"enforced\":[\"source_policy.exclude_domains\",\"metadata.cc\"],"
    "\"allowed_processors\":[\"core\",\"pro\"],\"default_task_spec\":{\"output_schema\":\"a\"}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    json_object *place = NULL;
    json_object *body = tg_json_parse_input((const char *)data, size, TG_JSON_MAX_DEPTH, err,
                                            sizeof(err), &place);
    json_object_put(place);
    if (body == NULL)
        return 0;
    json_object *preset = tg_json_parse(preset_text, sizeof(preset_text) - 1, 8, err,
                                        sizeof(err));
    json_object *ptmpl = tg_merge_template_from_preset(preset);
    json_object *own = tg_merge_template_from_submission(body);
    json_object *tmpl = tg_merge(ptmpl, own);
    json_object *detail = json_object_new_array();
    if (tmpl != NULL) {
        tg_merge_template_finish(tmpl);
        tg_merge_check_policy(preset, own, body, tmpl, detail);
        json_object *at = tg_json_loc("body", NULL);
        struct tg_locator where = {tg_validate_loc_simplified, body, at};
        tg_validate_template(tmpl, &where, detail);
        json_object_put(at);
        json_object *inputs = tg_json_get(body, "inputs");
        tg_validate_inputs(inputs, 10000, tg_validate_task_spec_chars(tmpl), detail);
        if (json_object_is_type(inputs, json_type_array)) {
            struct tg_buf b;
            tg_buf_init(&b, 1 << 20);
            size_t n = json_object_array_length(inputs);
            tg_merge_add_runs(&b, tmpl, inputs, 0, n < 1000 ? n : 1000);
            tg_buf_free(&b);
        }
        struct tg_pool *pool = tg_pool_create();
        if (pool != NULL)
            tg_merge_beta_header(pool, tmpl, "a, b,,a");
        tg_pool_destroy(pool);
        tg_json_redact_mcp(body);
    }
    json_object_put(detail);
    json_object_put(tmpl);
    json_object_put(own);
    json_object_put(ptmpl);
    json_object_put(preset);
    json_object_put(body);
    return 0;
}
