/* The multipart/form-data decoder of form posts (inside the form decoder: only tg_form.c
 * includes this). */
#ifndef TG_FORM_MULTIPART_H
#define TG_FORM_MULTIPART_H

#include <stddef.h>

#include "tg_form_field.h"

/* Decodes the multipart/form-data body[0..len) sent with content type ct into f, every
 * part a field. TG_OK, TG_EINVAL (f's err says why), TG_ETOOBIG or TG_ENOMEM. */
int tg_form_multipart_decode(struct form *f, const char *ct, const char *body, size_t len);

#endif
