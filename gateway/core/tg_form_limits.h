/* Limits on what one form body may hold: part of tg_form.h's contract, and below every
 * piece of the form decoder so that each can check its own. */
#ifndef TG_FORM_LIMITS_H
#define TG_FORM_LIMITS_H

#define TG_FORM_MAX_PARTS 10000          /* multipart parts */
#define TG_FORM_MAX_BOUNDARY 70          /* bytes of the multipart boundary (RFC 2046) */
#define TG_FORM_MAX_PART_HEADERS 16384   /* bytes of one part's header block */
#define TG_FORM_MAX_INPUTS 1000000       /* inputs decoded; more is a problem */

#endif
