/* The application/x-www-form-urlencoded decoder of form posts (inside the form decoder:
 * only tg_form.c includes this). */
#ifndef TG_FORM_URLENCODED_H
#define TG_FORM_URLENCODED_H

#include <stddef.h>

#include "tg_form_field.h"

/* Decodes the '&'-separated pairs of body[0..len) into f ('+' is a space, %XX a byte; ';'
 * is data, empty pairs are skipped). TG_OK, TG_EINVAL (f's err says why) or TG_ENOMEM. */
int tg_form_urlencoded_decode(struct form *f, const char *body, size_t len);

#endif
