/* The fields of a form post: the decoding in progress (struct form) and what both body
 * decoders (tg_form_urlencoded.c, tg_form_multipart.c) call to turn one decoded name and
 * value into the submission. The lowest piece of the form decoder: it includes neither
 * decoder, and nothing outside the form decoder includes it. */
#ifndef TG_FORM_FIELD_H
#define TG_FORM_FIELD_H

#include <stddef.h>

#include <json-c/json.h>

/* A file part's name and type, as its headers gave them (both NUL-terminated, maybe ""). */
struct file_info {
    const char *filename;
    const char *type;
};

/* The decoding in progress. */
struct form {
    json_object *out;      /* the submission being built */
    json_object *inputs;   /* out's "inputs", once the first input arrived */
    json_object *problems; /* moved to the caller's detail on success */
    unsigned reported;     /* bit k: known[k] was already reported as given twice */
    int too_many;          /* the TG_FORM_MAX_INPUTS problem was reported */
    char *err;
    size_t errlen;
    json_object *meta_key; /* the last metadata_key field, waiting for its metadata_value */
};

/* Records a one-line reason in f's err buffer and returns TG_EINVAL. */
int tg_form_field_fail(struct form *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Removes leading and trailing white space from s[0..*n). */
void tg_form_field_trim(const char **s, size_t *n);

/* Whether s[0..n) equals the lowercase literal lit, ignoring ASCII case. */
int tg_form_field_ieq(const char *s, size_t n, const char *lit);

/* Whether the media type of the header value s[0..n) (the part before ';', trimmed) is
 * type, ignoring ASCII case. */
int tg_form_field_media_type_is(const char *s, size_t n, const char *type);

/* Checks a field's name and value are valid UTF-8 without NULs: TG_OK or tg_form_field_fail. */
int tg_form_field_check_text(struct form *f, const char *name, size_t nlen, const char *v,
                             size_t vlen);

/* Adds one decoded field to the submission: name is NUL-terminated UTF-8, v[0..n) UTF-8
 * without NULs; file is the part's file details, NULL unless the field is a multipart
 * file part. */
int tg_form_field_add(struct form *f, const char *name, const char *v, size_t n,
                      const struct file_info *file);

/* Appends the problems found so far to detail (new references). TG_OK or TG_ENOMEM. */
int tg_form_field_report(struct form *f, json_object *detail);

#endif
