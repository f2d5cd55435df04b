/* Form posts of the simplified submission (see tg_form.h): picks the body's decoder by its
 * content type and hands the problems found to the caller. The decoders are below it
 * (tg_form_urlencoded.c, tg_form_multipart.c), the fields below them (tg_form_field.c). */
#include "tg_form.h"

#include <assert.h>
#include <limits.h>
#include <string.h>

#include "tg_form_field.h"
#include "tg_form_multipart.h"
#include "tg_form_urlencoded.h"

int tg_form_is_form(const char *content_type)
{
    if (content_type == NULL)
        return 0;
    size_t n = strlen(content_type);
    return tg_form_field_media_type_is(content_type, n, "application/x-www-form-urlencoded") ||
           tg_form_field_media_type_is(content_type, n, "multipart/form-data");
}

int tg_form_decode(const char *content_type, const char *body, size_t len,
                   json_object **out, json_object *detail, char *err, size_t errlen)
{
    struct form f = {NULL, NULL, NULL, 0, 0, err, errlen, NULL};
    int rc = TG_OK;
    assert(detail != NULL);
    *out = NULL;
    if (!tg_form_is_form(content_type))
        return tg_form_field_fail(&f, "the body is not a form "
                                      "(application/x-www-form-urlencoded or "
                                      "multipart/form-data)");
    if (body == NULL && len > 0)
        return tg_form_field_fail(&f, "the form body is missing");
    if (body == NULL)
        body = "";
    if (len > INT_MAX)
        return tg_form_field_fail(&f, "the form body is too large to decode");
    f.out = json_object_new_object();
    f.problems = json_object_new_array();
    if (f.out == NULL || f.problems == NULL)
        rc = TG_ENOMEM;
    else if (tg_form_field_media_type_is(content_type, strlen(content_type), "multipart/form-data"))
        rc = tg_form_multipart_decode(&f, content_type, body, len);
    else
        rc = tg_form_urlencoded_decode(&f, body, len);
    if (rc == TG_OK)
        rc = tg_form_field_report(&f, detail);
    if (rc == TG_OK) {
        *out = f.out;
        f.out = NULL;
    } else if (rc == TG_ENOMEM) {
        tg_form_field_fail(&f, "out of memory");
    }
    json_object_put(f.out);
    json_object_put(f.problems);
    json_object_put(f.meta_key);
    return rc;
}
