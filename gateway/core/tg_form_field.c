/* The fields of a form post (see tg_form_field.h): each decoded name and value becomes its
 * part of the JSON submission (inputs, CSV files, metadata, domains, ...), or a problem in
 * the upstream's 422 shape. Both body decoders feed it; it knows neither. */
#include "tg_form_field.h"

#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_core.h"
#include "tg_form_limits.h"
#include "tg_json.h"

/* Most problems one CSV file may add before the rest of its bad rows go unreported. */
#define MAX_CSV_PROBLEMS 100

enum kind { K_LINES, K_INPUT, K_FILE, K_STRING, K_SCHEMA, K_DOMAINS, K_EVENTS };

static const struct known {
    const char *name;
    enum kind kind;
} known[] = {
    {"inputs", K_LINES},          {"input", K_INPUT},
    {"inputs_file", K_FILE},      {"taskgroup_id", K_STRING},
    {"preset", K_STRING},         {"processor", K_STRING},
    {"output", K_SCHEMA},         {"input_schema", K_SCHEMA},
    {"webhook_url", K_STRING},    {"token", K_STRING},
    {"idempotency_key", K_STRING}, {"include_domains", K_DOMAINS},
    {"exclude_domains", K_DOMAINS}, {"enable_events", K_EVENTS},
};
#define NKNOWN (sizeof(known) / sizeof(known[0]))
_Static_assert(NKNOWN <= 32, "struct form's reported bits must cover every known field");


int tg_form_field_fail(struct form *f, const char *fmt, ...)
{
    if (f->err != NULL && f->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->err, f->errlen, fmt, ap);
        va_end(ap);
    }
    return TG_EINVAL;
}

/* ---- small text helpers ------------------------------------------------------------ */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

void tg_form_field_trim(const char **s, size_t *n)
{
    while (*n > 0 && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_space((*s)[*n - 1]))
        (*n)--;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

int tg_form_field_ieq(const char *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n && lit[i] != '\0'; i++)
        if (lower(s[i]) != lower(lit[i]))
            return 0;
    return i == n && lit[i] == '\0';
}

int tg_form_field_media_type_is(const char *s, size_t n, const char *type)
{
    const char *semi = memchr(s, ';', n);
    size_t len = semi != NULL ? (size_t)(semi - s) : n;
    tg_form_field_trim(&s, &len);
    return tg_form_field_ieq(s, len, type);
}

/* NULL when s[0..n) is valid UTF-8 without NUL bytes, else what is wrong with it. */
static const char *text_problem(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t need = 0;
        unsigned lo = 0x80, hi = 0xbf;
        if (c == 0)
            return "contains a NUL byte";
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else {
            return "is not valid UTF-8";
        }
        if (n - i <= need || p[i + 1] < lo || p[i + 1] > hi)
            return "is not valid UTF-8";
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return "is not valid UTF-8";
        i += need + 1;
    }
    return NULL;
}

/* A field name made safe for a one-line message: printable ASCII, at most 64 bytes. */
static const char *printable(const char *s, size_t n, char out[68])
{
    size_t k = 0;
    for (; k < n && k < 64; k++)
        out[k] = s[k] >= 0x20 && s[k] < 0x7f ? s[k] : '?';
    if (k < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

/* TG_EINVAL naming the field when name or value is not UTF-8 text, else TG_OK. */
int tg_form_field_check_text(struct form *f, const char *name, size_t nlen, const char *v,
                      size_t vlen)
{
    char shown[68];
    const char *what = text_problem(name, nlen);
    if (what != NULL)
        return tg_form_field_fail(f, "a field name %s (\"%s\")", what,
                                  printable(name, nlen, shown));
    what = text_problem(v, vlen);
    if (what != NULL)
        return tg_form_field_fail(f, "the value of field \"%s\" %s",
                                  printable(name, nlen, shown), what);
    return TG_OK;
}

/* ---- building the submission ------------------------------------------------------- */

/* Adds a problem at loc (consumed); TG_ENOMEM when it could not be added. */
static int problem(struct form *f, json_object *loc, const char *msg, const char *type)
{
    if (loc == NULL)
        return TG_ENOMEM;
    size_t before = json_object_array_length(f->problems);
    tg_json_problem(f->problems, loc, msg, type);
    return json_object_array_length(f->problems) > before ? TG_OK : TG_ENOMEM;
}

static int field_problem(struct form *f, const char *name, const char *msg, const char *type)
{
    return problem(f, tg_json_loc("body", name, NULL), msg, type);
}

/* Appends val (consumed; NULL means out of memory) to the list. */
static int append(json_object *list, json_object *val)
{
    if (val == NULL)
        return TG_ENOMEM;
    if (json_object_array_add(list, val) != 0) {
        json_object_put(val);
        return TG_ENOMEM;
    }
    return TG_OK;
}

/* Sets obj[key] to val (consumed; NULL means out of memory), in place when present. */
static int put(json_object *obj, const char *key, json_object *val)
{
    if (val == NULL)
        return TG_ENOMEM;
    if (json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        return TG_ENOMEM;
    }
    return TG_OK;
}

/* obj[key] as a container of the given type, created empty (at the end) when absent. */
static json_object *container(json_object *obj, const char *key, json_type type)
{
    json_object *c = tg_json_get(obj, key);
    if (c != NULL)
        return c;
    c = type == json_type_array ? json_object_new_array() : json_object_new_object();
    return put(obj, key, c) == TG_OK ? c : NULL;
}

static json_object *new_string(const char *s, size_t n)
{
    return json_object_new_string_len(s, (int)n);
}

/* A text as a JSON client would have written it: the object when the text is a JSON
 * object as a JSON submission would take it (RFC 8259, numbers forwarded as written, at a
 * depth that would still parse inside one), else the string. */
static json_object *text_value(const char *s, size_t n)
{
    if (n >= 2 && s[0] == '{' && s[n - 1] == '}') {
        char err[128];
        json_object *o = tg_json_parse_input(s, n, TG_JSON_MAX_DEPTH - 2, err, sizeof(err),
                                             NULL);
        if (json_object_is_type(o, json_type_object))
            return o;
        json_object_put(o);
    }
    return new_string(s, n);
}

/* Appends one input (consumed); name is the field it came from. */
static int push_input(struct form *f, const char *name, json_object *val)
{
    if (val == NULL)
        return TG_ENOMEM;
    if (f->inputs == NULL) {
        f->inputs = container(f->out, "inputs", json_type_array);
        if (f->inputs == NULL) {
            json_object_put(val);
            return TG_ENOMEM;
        }
    }
    if (json_object_array_length(f->inputs) >= TG_FORM_MAX_INPUTS) {
        json_object_put(val);
        if (f->too_many)
            return TG_OK;
        f->too_many = 1;
        char msg[64];
        snprintf(msg, sizeof(msg), "a submission holds at most %d inputs", TG_FORM_MAX_INPUTS);
        return field_problem(f, name, msg, "too_long");
    }
    return append(f->inputs, val);
}

/* One input per non-blank line, trimmed. */
static int add_lines(struct form *f, const char *name, const char *s, size_t n)
{
    int rc = TG_OK;
    for (size_t i = 0; i < n && rc == TG_OK;) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl != NULL ? (size_t)(nl - s) : n;
        const char *line = s + i;
        size_t len = end - i;
        tg_form_field_trim(&line, &len);
        if (len > 0)
            rc = push_input(f, name, text_value(line, len));
        i = end + 1;
    }
    return rc;
}

/* A single-valued field; a second, different value is a problem. */
static int set_single(struct form *f, size_t k, const char *v, size_t n)
{
    const char *name = known[k].name;
    tg_form_field_trim(&v, &n);
    if (n == 0)
        return TG_OK;
    json_object *val = known[k].kind == K_SCHEMA ? text_value(v, n) : new_string(v, n);
    json_object *cur = tg_json_get(f->out, name);
    if (val == NULL || cur == NULL)
        return put(f->out, name, val);
    int same = json_object_equal(cur, val);
    json_object_put(val);
    if (same || (f->reported & (1u << k)) != 0)
        return TG_OK;
    f->reported |= 1u << k;
    return field_problem(f, name, "given more than once with different values", "value_error");
}

/* Domains separated by commas or newlines; repeated fields append. */
static int add_domains(struct form *f, const char *name, const char *v, size_t n)
{
    int rc = TG_OK;
    for (size_t i = 0; i < n && rc == TG_OK;) {
        size_t end = i;
        while (end < n && v[end] != ',' && v[end] != '\n')
            end++;
        const char *d = v + i;
        size_t len = end - i;
        tg_form_field_trim(&d, &len);
        if (len > 0) {
            json_object *list = container(f->out, name, json_type_array);
            rc = list != NULL ? append(list, new_string(d, len)) : TG_ENOMEM;
        }
        i = end + 1;
    }
    return rc;
}

/* metadata.KEY=value → "metadata": {"KEY": "value"}. */
static int add_metadata(struct form *f, const char *name, const char *v, size_t n)
{
    const char *key = name + strlen("metadata.");
    tg_form_field_trim(&v, &n);
    if (n == 0)
        return TG_OK;
    if (*key == '\0')
        return field_problem(f, name, "a metadata field is named metadata.KEY with a "
                             "non-empty KEY", "value_error");
    json_object *md = container(f->out, "metadata", json_type_object);
    if (md == NULL)
        return TG_ENOMEM;
    json_object *cur = tg_json_get(md, key);
    if (cur == NULL)
        return put(md, key, new_string(v, n));
    if ((size_t)json_object_get_string_len(cur) == n &&
        memcmp(json_object_get_string(cur), v, n) == 0)
        return TG_OK;
    return field_problem(f, name, "given more than once with different values", "value_error");
}

/* A checkbox: true or false; with a hidden fallback field before it, the last wins. */
static int set_events(struct form *f, const char *name, const char *v, size_t n)
{
    static const char *const yes[] = {"on", "true", "1", "yes"};
    static const char *const no[] = {"off", "false", "0", "no"};
    tg_form_field_trim(&v, &n);
    if (n == 0)
        return TG_OK; /* an empty field is an absent one */
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (tg_form_field_ieq(v, n, yes[i]))
            return put(f->out, name, json_object_new_boolean(1));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (tg_form_field_ieq(v, n, no[i]))
            return put(f->out, name, json_object_new_boolean(0));
    return field_problem(f, name, "Input should be a valid boolean, unable to interpret input",
                         "bool_parsing");
}

/* ---- CSV (RFC 4180) ---------------------------------------------------------------- */

/* Reads the record at s[*pos] into cells (strings) and moves *pos past its line end.
 * TG_EINVAL when a quoted field is not closed. Text after a closing quote is kept. */
static int csv_record(const char *s, size_t n, size_t *pos, json_object *cells,
                      struct tg_buf *cell)
{
    size_t i = *pos;
    int rc = TG_OK;
    for (int more = 1; more && rc == TG_OK;) { /* each round consumes a field */
        tg_buf_clear(cell);
        if (i < n && s[i] == '"') {
            for (i++; rc == TG_OK;) { /* each round consumes up to a quote */
                const char *q = memchr(s + i, '"', n - i);
                if (q == NULL)
                    return TG_EINVAL;
                size_t k = (size_t)(q - s);
                int escaped = k + 1 < n && s[k + 1] == '"';
                rc = tg_buf_add(cell, s + i, k - i + (size_t)escaped);
                i = k + 1 + (size_t)escaped;
                if (!escaped)
                    break;
            }
        }
        size_t k = i;
        while (k < n && s[k] != ',' && s[k] != '\n' && s[k] != '\r')
            k++;
        if (rc == TG_OK)
            rc = tg_buf_add(cell, s + i, k - i);
        if (rc == TG_OK)
            rc = append(cells, new_string(cell->data, cell->len));
        i = k;
        more = i < n && s[i] == ',';
        if (more)
            i++;
    }
    if (i < n && s[i] == '\r')
        i++;
    if (i < n && s[i] == '\n')
        i++;
    *pos = i;
    return rc;
}

static int row_problem(struct form *f, const char *name, long row, const char *msg)
{
    json_object *loc = tg_json_loc("body", name, NULL);
    if (loc != NULL && append(loc, json_object_new_int64(row)) != TG_OK) {
        json_object_put(loc);
        loc = NULL;
    }
    return problem(f, loc, msg, "value_error");
}

/* Header names must be non-empty and distinct: they become the inputs' keys. TG_OK with
 * *bad set when they are not. */
static int csv_header(struct form *f, const char *name, long row, json_object *header,
                      int *bad)
{
    json_object *seen = json_object_new_object();
    int rc = seen != NULL ? TG_OK : TG_ENOMEM;
    size_t cols = json_object_array_length(header);
    for (size_t i = 0; i < cols && rc == TG_OK && !*bad; i++) {
        json_object *h = json_object_array_get_idx(header, i);
        const char *key = json_object_get_string(h);
        char msg[160];
        if (json_object_get_string_len(h) == 0) {
            snprintf(msg, sizeof(msg), "column %zu of the CSV header has no name", i + 1);
            *bad = 1;
        } else if (tg_json_has(seen, key)) {
            snprintf(msg, sizeof(msg), "the CSV header names a column \"%.64s\" twice", key);
            *bad = 1;
        } else {
            rc = json_object_object_add(seen, key, NULL) == 0 ? TG_OK : TG_ENOMEM;
        }
        if (*bad)
            rc = row_problem(f, name, row, msg);
    }
    json_object_put(seen);
    return rc;
}

/* One data row: an object input keyed by the header, or a problem. */
static int csv_row(struct form *f, const char *name, long row, json_object *header,
                   json_object *cells, int *problems)
{
    size_t cols = json_object_array_length(header);
    size_t have = json_object_array_length(cells);
    if (have != cols) {
        char msg[160];
        snprintf(msg, sizeof(msg), "row %ld of the CSV has %zu fields but the header has %zu",
                 row, have, cols);
        return ++*problems <= MAX_CSV_PROBLEMS ? row_problem(f, name, row, msg) : TG_OK;
    }
    json_object *obj = json_object_new_object();
    int rc = obj != NULL ? TG_OK : TG_ENOMEM;
    for (size_t i = 0; i < cols && rc == TG_OK; i++)
        rc = put(obj, json_object_get_string(json_object_array_get_idx(header, i)),
                 json_object_get(json_object_array_get_idx(cells, i)));
    if (rc != TG_OK) {
        json_object_put(obj);
        return rc;
    }
    return push_input(f, name, obj);
}

/* A CSV whose header row names the keys of the object inputs its other rows become. Rows
 * are counted from 1 (the header), empty ones included, as a spreadsheet shows them. */
static int add_csv(struct form *f, const char *name, const char *s, size_t n)
{
    struct tg_buf cell;
    tg_buf_init(&cell, n);
    json_object *header = NULL;
    int rc = TG_OK, bad = 0, problems = 0;
    long row = 0;
    for (size_t pos = 0; pos < n && rc == TG_OK && !bad;) { /* each round consumes a row */
        row++;
        if (s[pos] == '\r' || s[pos] == '\n') {
            pos += s[pos] == '\r' && pos + 1 < n && s[pos + 1] == '\n' ? 2 : 1;
            continue;
        }
        json_object *cells = json_object_new_array();
        rc = cells != NULL ? csv_record(s, n, &pos, cells, &cell) : TG_ENOMEM;
        if (rc == TG_EINVAL) {
            bad = 1;
            rc = row_problem(f, name, row, "a quoted CSV field is not closed");
        } else if (rc == TG_OK && header == NULL) {
            header = json_object_get(cells);
            rc = csv_header(f, name, row, header, &bad);
        } else if (rc == TG_OK) {
            rc = csv_row(f, name, row, header, cells, &problems);
        }
        json_object_put(cells);
    }
    json_object_put(header);
    tg_buf_free(&cell);
    return rc;
}

/* ---- fields ------------------------------------------------------------------------ */

static int is_csv(const struct file_info *file)
{
    size_t n = strlen(file->filename);
    return (n >= 4 && tg_form_field_ieq(file->filename + n - 4, 4, ".csv")) ||
           tg_form_field_media_type_is(file->type, strlen(file->type), "text/csv");
}

/* A browser's key/value rows: each metadata_value pairs with the metadata_key before it
 * and is taken as the field metadata.KEY; a row whose key or value is empty is absent. */
static int add_metadata_row(struct form *f, const char *name, const char *v, size_t n)
{
    tg_form_field_trim(&v, &n);
    if (strcmp(name, "metadata_key") == 0) {
        json_object_put(f->meta_key);
        f->meta_key = n > 0 ? new_string(v, n) : NULL;
        return n > 0 && f->meta_key == NULL ? TG_ENOMEM : TG_OK;
    }
    json_object *key = f->meta_key;
    f->meta_key = NULL;
    int rc = TG_OK;
    if (key != NULL && n > 0) {
        char *field = malloc(strlen("metadata.") + (size_t)json_object_get_string_len(key) + 1);
        if (field == NULL) {
            rc = TG_ENOMEM;
        } else {
            memcpy(field, "metadata.", strlen("metadata."));
            memcpy(field + strlen("metadata."), json_object_get_string(key),
                   (size_t)json_object_get_string_len(key) + 1);
            rc = add_metadata(f, field, v, n);
            free(field);
        }
    }
    json_object_put(key);
    return rc;
}

int tg_form_field_add(struct form *f, const char *name, const char *v, size_t n,
                      const struct file_info *file)
{
    if (strncmp(name, "metadata.", strlen("metadata.")) == 0)
        return add_metadata(f, name, v, n);
    if (strcmp(name, "metadata_key") == 0 || strcmp(name, "metadata_value") == 0)
        return add_metadata_row(f, name, v, n);
    size_t k = 0;
    while (k < NKNOWN && strcmp(known[k].name, name) != 0)
        k++;
    if (k == NKNOWN)
        return TG_OK; /* buttons, "remember me" boxes, … */
    switch (known[k].kind) {
    case K_LINES:
        return add_lines(f, name, v, n);
    case K_INPUT:
        tg_form_field_trim(&v, &n);
        return n > 0 ? push_input(f, name, text_value(v, n)) : TG_OK;
    case K_FILE:
        if (n >= 3 && memcmp(v, "\xef\xbb\xbf", 3) == 0) { /* a spreadsheet's BOM */
            v += 3;
            n -= 3;
        }
        return file != NULL && is_csv(file) ? add_csv(f, name, v, n) : add_lines(f, name, v, n);
    case K_STRING:
    case K_SCHEMA:
        return set_single(f, k, v, n);
    case K_DOMAINS:
        return add_domains(f, name, v, n);
    case K_EVENTS:
        return set_events(f, name, v, n);
    }
    return TG_OK;
}

int tg_form_field_report(struct form *f, json_object *detail)
{
    int rc = TG_OK;
    for (size_t i = 0; rc == TG_OK && i < json_object_array_length(f->problems); i++)
        rc = append(detail, json_object_get(json_object_array_get_idx(f->problems, i)));
    return rc;
}
