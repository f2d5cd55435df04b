/* Inside the form decoder: what tg_form.c (fields, urlencoded bodies, CSV) and
 * tg_form_multipart.c (multipart bodies) share. Nothing else includes this. */
#ifndef TG_FORM_INT_H
#define TG_FORM_INT_H

#include <stddef.h>

#include <json-c/json.h>

/* A file part's name and type, as its headers gave them (NULL when absent). */
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
int tg_form_fail(struct form *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Removes leading and trailing white space from s[0..*n). */
void tg_form_trim(const char **s, size_t *n);

/* Whether s[0..n) equals the lowercase literal lit, ignoring ASCII case. */
int tg_form_ieq(const char *s, size_t n, const char *lit);

/* Checks a field's name and value are valid UTF-8 without NULs: TG_OK or tg_form_fail. */
int tg_form_check_text(struct form *f, const char *name, size_t nlen, const char *v,
                       size_t vlen);

/* Adds one decoded field (file: the part's file details, or NULL) to the submission. */
int tg_form_add_field(struct form *f, const char *name, const char *v, size_t n,
                      const struct file_info *file);

/* Decodes a multipart/form-data body sent with content type ct into f. */
int tg_form_decode_multipart(struct form *f, const char *ct, const char *body, size_t len);

#endif
