/* The audit formatter: writes audit rows as JSON, CSV (RFC 4180) or aligned tables into a
 * bounded buffer, page by page, for GET /v1/audit/... and `taskgate audit` alike. */
#ifndef TG_AUDIT_FORMAT_H
#define TG_AUDIT_FORMAT_H

#include "tg_audit.h"

/* Writes one answer into dst (borrowed; it must outlive the writer). Appends that do not
 * fit dst's maximum make the calls below return TG_ETOOBIG. */
struct tg_audit_formatter;
/* A new writer, or NULL when out of memory. */
struct tg_audit_formatter *tg_audit_format_new(enum tg_audit_format format, struct tg_buf *dst);
/* NULL is accepted. */
void tg_audit_format_free(struct tg_audit_formatter *o);

/* Opens the answer to r (JSON: the object and its first member; CSV: nothing yet). */
int tg_audit_format_begin(struct tg_audit_formatter *o, const struct tg_audit_read *r);
/* Reads one page of r from the store and writes its rows. TG_OK, TG_ENOTFOUND (no such
 * object, or none that r->scope_team may see), TG_ETOOBIG, or a store error (the store's
 * message says why). May be called again for the next page after tg_audit_continue. */
int tg_audit_format_fetch(struct tg_store *st, const struct tg_audit_read *r,
                          struct tg_audit_formatter *o, struct tg_audit_page *page);
/* Closes the answer; next_cursor ("" or NULL: none) and page (the last page read, may be
 * NULL) give a list's next_cursor and a group's submissions_truncated. */
int tg_audit_format_end(struct tg_audit_formatter *o, const struct tg_audit_page *page,
                        const char *next_cursor);
/* Rows written so far. */
long tg_audit_format_rows(const struct tg_audit_formatter *o);

#endif
