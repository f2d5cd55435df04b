/* multipart/form-data bodies of form posts (RFC 7578): the boundary, each part's headers
 * and its name, file name and type; every part becomes a field of the submission. */
#include "tg_form_multipart.h"

#include <string.h>

#include "tg_core.h"
#include "tg_form_limits.h"

/* ---- multipart/form-data ----------------------------------------------------------- */

/* A header value's parameters: "type; name=value; name="quoted \" value"". */
struct params {
    const char *s;
    size_t n;
    size_t i;
};

/* Reads the next parameter: its name as a span, its value unquoted into val. Returns 1
 * when one was read, 0 at the end, or TG_ETOOBIG / TG_ENOMEM from val. */
static int next_param(struct params *p, const char **name, size_t *nlen, struct tg_buf *val)
{
    const char *s = p->s;
    size_t n = p->n, i = p->i;
    while (i < n && s[i] != ';') /* the type, or junk after the last value */
        i++;
    if (i >= n)
        return 0;
    for (i++; i < n && (s[i] == ' ' || s[i] == '\t');)
        i++;
    size_t start = i;
    while (i < n && s[i] != '=' && s[i] != ';')
        i++;
    *name = s + start;
    *nlen = i - start;
    tg_form_field_trim(name, nlen);
    tg_buf_clear(val);
    int rc = tg_buf_add(val, "", 0);
    if (i < n && s[i] == '=') {
        for (i++; i < n && (s[i] == ' ' || s[i] == '\t');)
            i++;
        if (i < n && s[i] == '"') {
            for (i++; i < n && s[i] != '"' && rc == TG_OK; i++) {
                if (s[i] == '\\' && i + 1 < n)
                    i++;
                rc = tg_buf_add(val, s + i, 1);
            }
            i += i < n; /* the closing quote */
        } else {
            const char *v = s + i;
            while (i < n && s[i] != ';')
                i++;
            size_t vlen = (size_t)(s + i - v);
            tg_form_field_trim(&v, &vlen);
            rc = tg_buf_add(val, v, vlen);
        }
    }
    p->i = i;
    return rc == TG_OK ? 1 : rc;
}

/* The boundary parameter of the Content-Type into b. */
static int get_boundary(struct form *f, const char *ct, struct tg_buf *b)
{
    struct params p = {ct, strlen(ct), 0};
    const char *name = NULL;
    size_t nlen = 0;
    int rc = next_param(&p, &name, &nlen, b);
    while (rc == 1 && !tg_form_field_ieq(name, nlen, "boundary"))
        rc = next_param(&p, &name, &nlen, b);
    if (rc < 0)
        return rc;
    if (rc == 0 || b->len == 0)
        return tg_form_field_fail(f, "the multipart/form-data Content-Type has no boundary");
    if (b->len > TG_FORM_MAX_BOUNDARY)
        return tg_form_field_fail(f, "the multipart boundary is longer than %d characters",
                                  TG_FORM_MAX_BOUNDARY);
    return TG_OK;
}

/* What one part's headers say. */
struct part {
    struct tg_buf name, filename, type;
    struct tg_buf val; /* scratch for parameter values */
    int has_name, has_filename;
};

/* Content-Disposition: form-data; name="…"; filename="…". */
static int disposition(struct part *pt, const char *v, size_t n)
{
    struct params p = {v, n, 0};
    const char *name = NULL;
    size_t nlen = 0;
    int rc = next_param(&p, &name, &nlen, &pt->val);
    for (; rc == 1; rc = next_param(&p, &name, &nlen, &pt->val)) {
        struct tg_buf *dst = NULL;
        if (tg_form_field_ieq(name, nlen, "name")) {
            dst = &pt->name;
            pt->has_name = 1;
        } else if (tg_form_field_ieq(name, nlen, "filename")) {
            dst = &pt->filename;
            pt->has_filename = 1;
        }
        if (dst != NULL) {
            tg_buf_clear(dst);
            int added = tg_buf_add(dst, pt->val.data, pt->val.len);
            if (added != TG_OK)
                return added;
        }
    }
    return rc;
}

/* One header line; lines that are not headers are ignored. */
static int part_header(struct part *pt, const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    if (colon == NULL)
        return TG_OK;
    const char *name = s;
    size_t nlen = (size_t)(colon - s);
    const char *v = colon + 1;
    size_t vlen = n - nlen - 1;
    tg_form_field_trim(&name, &nlen);
    tg_form_field_trim(&v, &vlen);
    if (tg_form_field_ieq(name, nlen, "content-disposition"))
        return disposition(pt, v, vlen);
    if (tg_form_field_ieq(name, nlen, "content-type")) {
        tg_buf_clear(&pt->type);
        return tg_buf_add(&pt->type, v, vlen);
    }
    return TG_OK;
}

/* Reads the header block at the start of the part s[0..n); *body is where the content
 * starts (n when the headers run to the end of the part). */
static int part_headers(struct form *f, struct part *pt, const char *s, size_t n,
                        size_t *body)
{
    int rc = TG_OK;
    *body = n;
    for (size_t i = 0; i < n && rc == TG_OK;) { /* each round consumes a line */
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl != NULL ? (size_t)(nl - s) : n;
        if (end > TG_FORM_MAX_PART_HEADERS)
            return tg_form_field_fail(f, "a multipart part has more than %d bytes of headers",
                                      TG_FORM_MAX_PART_HEADERS);
        size_t stop = end > i && s[end - 1] == '\r' ? end - 1 : end;
        if (stop == i) {
            *body = end < n ? end + 1 : n;
            return TG_OK;
        }
        rc = part_header(pt, s + i, stop - i);
        i = end + 1;
    }
    return rc;
}

/* Decodes one part s[0..n) (between its delimiter line and the next delimiter). */
static int do_part(struct form *f, struct part *pt, const char *s, size_t n)
{
    tg_buf_clear(&pt->name);
    tg_buf_clear(&pt->filename);
    tg_buf_clear(&pt->type);
    pt->has_name = 0;
    pt->has_filename = 0;
    size_t at = n;
    int rc = part_headers(f, pt, s, n, &at);
    if (rc != TG_OK || !pt->has_name || pt->name.len == 0)
        return rc; /* a part without a name is ignored */
    const char *name = pt->name.data;
    size_t nlen = pt->name.len;
    int is_file = pt->has_filename;
    int is_inputs = nlen == strlen("inputs_file") && memcmp(name, "inputs_file", nlen) == 0;
    if (is_file && !is_inputs)
        return tg_form_field_check_text(f, name, nlen, "", 0); /* other uploads are ignored */
    rc = tg_form_field_check_text(f, name, nlen, s + at, n - at);
    if (rc != TG_OK)
        return rc;
    struct file_info file = {tg_buf_str(&pt->filename), tg_buf_str(&pt->type)};
    return tg_form_field_add(f, name, s + at, n - at, is_file ? &file : NULL);
}

/* Whether a delimiter "--boundary" starts at s[i]; *close tells the closing one, and
 * *next is where the part after it starts. */
static int delimiter_at(const char *s, size_t n, size_t i, const struct tg_buf *b, int *close,
                        size_t *next)
{
    if (n - i < b->len + 2 || s[i] != '-' || s[i + 1] != '-' ||
        memcmp(s + i + 2, b->data, b->len) != 0)
        return 0;
    size_t j = i + 2 + b->len;
    if (n - j >= 2 && s[j] == '-' && s[j + 1] == '-') {
        *close = 1;
        *next = n;
        return 1;
    }
    while (j < n && (s[j] == ' ' || s[j] == '\t'))
        j++;
    if (j < n && s[j] == '\r')
        j++;
    if (j >= n || s[j] != '\n')
        return 0;
    *close = 0;
    *next = j + 1;
    return 1;
}

/* The first delimiter at s[from] (from 0 only) or after a line feed at or after from;
 * n when there is none. */
static size_t find_delimiter(const char *s, size_t n, size_t from, const struct tg_buf *b,
                             int *close, size_t *next)
{
    if (from == 0 && delimiter_at(s, n, 0, b, close, next))
        return 0;
    for (size_t i = from; i < n;) { /* each round moves past a line feed */
        const char *nl = memchr(s + i, '\n', n - i);
        if (nl == NULL)
            return n;
        i = (size_t)(nl - s) + 1;
        if (delimiter_at(s, n, i, b, close, next))
            return i;
    }
    return n;
}

/* Parts between "--boundary" lines, up to "--boundary--"; preamble and epilogue are
 * ignored. The CRLF (or LF) before a delimiter belongs to the delimiter. */
static int multipart_parts(struct form *f, const char *body, size_t len, const struct tg_buf *b,
                           struct part *pt)
{
    int close = 0, rc = TG_OK;
    size_t next = 0, parts = 0;
    if (find_delimiter(body, len, 0, b, &close, &next) >= len)
        return tg_form_field_fail(f, "the multipart body does not contain its boundary");
    while (!close && rc == TG_OK) { /* each round moves next forward */
        size_t start = next;
        size_t e = find_delimiter(body, len, start - 1, b, &close, &next);
        if (e >= len)
            return tg_form_field_fail(f, "the multipart body does not end with its closing "
                                         "boundary");
        if (++parts > TG_FORM_MAX_PARTS)
            return tg_form_field_fail(f, "the multipart body has more than %d parts",
                                      TG_FORM_MAX_PARTS);
        size_t end = e - 1; /* the line feed before the delimiter */
        if (end > start && body[end - 1] == '\r')
            end--;
        rc = do_part(f, pt, body + start, end > start ? end - start : 0);
    }
    return rc;
}

int tg_form_multipart_decode(struct form *f, const char *ct, const char *body, size_t len)
{
    struct tg_buf boundary;
    struct part pt;
    tg_buf_init(&boundary, strlen(ct));
    tg_buf_init(&pt.name, TG_FORM_MAX_PART_HEADERS);
    tg_buf_init(&pt.filename, TG_FORM_MAX_PART_HEADERS);
    tg_buf_init(&pt.type, TG_FORM_MAX_PART_HEADERS);
    tg_buf_init(&pt.val, TG_FORM_MAX_PART_HEADERS);
    int rc = get_boundary(f, ct, &boundary);
    if (rc == TG_OK)
        rc = multipart_parts(f, body, len, &boundary, &pt);
    tg_buf_free(&boundary);
    tg_buf_free(&pt.name);
    tg_buf_free(&pt.filename);
    tg_buf_free(&pt.type);
    tg_buf_free(&pt.val);
    return rc;
}
