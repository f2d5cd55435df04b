/* libFuzzer target: form bodies. The first byte picks the encoding (urlencoded, or
 * multipart with a fixed boundary); the rest is the body. Any crash, leak or sanitizer
 * report is a bug. */
#include <stddef.h>
#include <stdint.h>

#include "tg_form.h"
#include "tg_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *type = (data[0] & 1) ? "multipart/form-data; boundary=XyZ"
                                     : "application/x-www-form-urlencoded";
    json_object *out = NULL;
    json_object *detail = json_object_new_array();
    char err[256];
    tg_form_decode(type, (const char *)data + 1, size - 1, &out, detail, err, sizeof(err));
    if (out != NULL)
        tg_json_str(out, NULL);
    json_object_put(out);
    json_object_put(detail);
    return 0;
}
