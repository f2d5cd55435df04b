/* Decoding urlencoded and multipart form posts of the simplified submission into the JSON
 * object a JSON client would have sent (see tg_form.h for the mapping). */
#include "tg_form.h"

#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* What a multipart file part says about itself (both NUL-terminated, maybe ""). */
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

static int fail(struct form *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct form *f, const char *fmt, ...)
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

static void trim(const char **s, size_t *n)
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

/* Whether s[0..n) equals lit, ignoring ASCII case. */
static int ieq(const char *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n && lit[i] != '\0'; i++)
        if (lower(s[i]) != lower(lit[i]))
            return 0;
    return i == n && lit[i] == '\0';
}

/* The media type of a header value: the part before ';', trimmed. */
static int media_type_is(const char *s, size_t n, const char *type)
{
    const char *semi = memchr(s, ';', n);
    size_t len = semi != NULL ? (size_t)(semi - s) : n;
    trim(&s, &len);
    return ieq(s, len, type);
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
static int check_text(struct form *f, const char *name, size_t nlen, const char *v,
                      size_t vlen)
{
    char shown[68];
    const char *what = text_problem(name, nlen);
    if (what != NULL)
        return fail(f, "a field name %s (\"%s\")", what, printable(name, nlen, shown));
    what = text_problem(v, vlen);
    if (what != NULL)
        return fail(f, "the value of field \"%s\" %s", printable(name, nlen, shown), what);
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
 * object (at a depth that would still parse inside a JSON submission), else the string. */
static json_object *text_value(const char *s, size_t n)
{
    if (n >= 2 && s[0] == '{' && s[n - 1] == '}') {
        char err[128];
        json_object *o = tg_json_parse(s, n, TG_JSON_MAX_DEPTH - 2, err, sizeof(err));
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
        trim(&line, &len);
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
    trim(&v, &n);
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
        trim(&d, &len);
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
    trim(&v, &n);
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
    trim(&v, &n);
    if (n == 0)
        return TG_OK; /* an empty field is an absent one */
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (ieq(v, n, yes[i]))
            return put(f->out, name, json_object_new_boolean(1));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (ieq(v, n, no[i]))
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
    return (n >= 4 && ieq(file->filename + n - 4, 4, ".csv")) ||
           media_type_is(file->type, strlen(file->type), "text/csv");
}

/* One decoded field: name is NUL-terminated UTF-8, v[0..n) UTF-8 without NULs; file is
 * NULL unless the field is a multipart file part. */
/* A browser's key/value rows: each metadata_value pairs with the metadata_key before it
 * and is taken as the field metadata.KEY; a row whose key or value is empty is absent. */
static int add_metadata_row(struct form *f, const char *name, const char *v, size_t n)
{
    trim(&v, &n);
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

static int add_field(struct form *f, const char *name, const char *v, size_t n,
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
        trim(&v, &n);
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

/* ---- application/x-www-form-urlencoded --------------------------------------------- */

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes s[0..n) into dst (n bytes suffice): '+' is a space, %XX a byte. Returns the
 * decoded length, or SIZE_MAX with *bad at the offending '%'. */
static size_t unescape(const char *s, size_t n, char *dst, size_t *bad)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = n - i >= 3 ? hex(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex(s[i + 2]) : -1;
            if (lo < 0) {
                *bad = i;
                return SIZE_MAX;
            }
            dst[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dst[k++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    return k;
}

/* One name[=value] pair at body[at..at+n); scratch holds n + 1 bytes. */
static int url_pair(struct form *f, const char *body, size_t at, size_t n, char *scratch)
{
    const char *s = body + at;
    const char *eq = memchr(s, '=', n);
    size_t raw = eq != NULL ? (size_t)(eq - s) : n;
    size_t bad = 0;
    size_t nlen = unescape(s, raw, scratch, &bad);
    if (nlen == SIZE_MAX)
        return fail(f, "bad percent escape at byte %zu of the body", at + bad);
    char *v = scratch + nlen + 1;
    size_t vlen = eq != NULL ? unescape(eq + 1, n - raw - 1, v, &bad) : 0;
    if (vlen == SIZE_MAX)
        return fail(f, "bad percent escape at byte %zu of the body", at + raw + 1 + bad);
    int rc = check_text(f, scratch, nlen, v, vlen);
    if (rc != TG_OK)
        return rc;
    scratch[nlen] = '\0';
    return add_field(f, scratch, v, vlen, NULL);
}

/* '&'-separated pairs; ';' is data, empty pairs are skipped. */
static int decode_urlencoded(struct form *f, const char *body, size_t len)
{
    char *scratch = malloc(len + 1);
    if (scratch == NULL)
        return TG_ENOMEM;
    int rc = TG_OK;
    for (size_t i = 0; i < len && rc == TG_OK;) {
        const char *amp = memchr(body + i, '&', len - i);
        size_t end = amp != NULL ? (size_t)(amp - body) : len;
        if (end > i)
            rc = url_pair(f, body, i, end - i, scratch);
        i = end + 1;
    }
    free(scratch);
    return rc;
}

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
    trim(name, nlen);
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
            trim(&v, &vlen);
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
    while (rc == 1 && !ieq(name, nlen, "boundary"))
        rc = next_param(&p, &name, &nlen, b);
    if (rc < 0)
        return rc;
    if (rc == 0 || b->len == 0)
        return fail(f, "the multipart/form-data Content-Type has no boundary");
    if (b->len > TG_FORM_MAX_BOUNDARY)
        return fail(f, "the multipart boundary is longer than %d characters",
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
        if (ieq(name, nlen, "name")) {
            dst = &pt->name;
            pt->has_name = 1;
        } else if (ieq(name, nlen, "filename")) {
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
    trim(&name, &nlen);
    trim(&v, &vlen);
    if (ieq(name, nlen, "content-disposition"))
        return disposition(pt, v, vlen);
    if (ieq(name, nlen, "content-type")) {
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
            return fail(f, "a multipart part has more than %d bytes of headers",
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
        return check_text(f, name, nlen, "", 0); /* other uploads are ignored */
    rc = check_text(f, name, nlen, s + at, n - at);
    if (rc != TG_OK)
        return rc;
    struct file_info file = {tg_buf_str(&pt->filename), tg_buf_str(&pt->type)};
    return add_field(f, name, s + at, n - at, is_file ? &file : NULL);
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
        return fail(f, "the multipart body does not contain its boundary");
    while (!close && rc == TG_OK) { /* each round moves next forward */
        size_t start = next;
        size_t e = find_delimiter(body, len, start - 1, b, &close, &next);
        if (e >= len)
            return fail(f, "the multipart body does not end with its closing boundary");
        if (++parts > TG_FORM_MAX_PARTS)
            return fail(f, "the multipart body has more than %d parts", TG_FORM_MAX_PARTS);
        size_t end = e - 1; /* the line feed before the delimiter */
        if (end > start && body[end - 1] == '\r')
            end--;
        rc = do_part(f, pt, body + start, end > start ? end - start : 0);
    }
    return rc;
}

static int decode_multipart(struct form *f, const char *ct, const char *body, size_t len)
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

/* ---- entry points ------------------------------------------------------------------ */

int tg_form_is_form(const char *content_type)
{
    if (content_type == NULL)
        return 0;
    size_t n = strlen(content_type);
    return media_type_is(content_type, n, "application/x-www-form-urlencoded") ||
           media_type_is(content_type, n, "multipart/form-data");
}

int tg_form_decode(const char *content_type, const char *body, size_t len,
                   json_object **out, json_object *detail, char *err, size_t errlen)
{
    struct form f = {NULL, NULL, NULL, 0, 0, err, errlen, NULL};
    int rc = TG_OK;
    assert(detail != NULL);
    *out = NULL;
    if (!tg_form_is_form(content_type))
        return fail(&f, "the body is not a form (application/x-www-form-urlencoded or "
                    "multipart/form-data)");
    if (body == NULL && len > 0)
        return fail(&f, "the form body is missing");
    if (body == NULL)
        body = "";
    if (len > INT_MAX)
        return fail(&f, "the form body is too large to decode");
    f.out = json_object_new_object();
    f.problems = json_object_new_array();
    if (f.out == NULL || f.problems == NULL)
        rc = TG_ENOMEM;
    else if (media_type_is(content_type, strlen(content_type), "multipart/form-data"))
        rc = decode_multipart(&f, content_type, body, len);
    else
        rc = decode_urlencoded(&f, body, len);
    for (size_t i = 0; rc == TG_OK && i < json_object_array_length(f.problems); i++)
        rc = append(detail, json_object_get(json_object_array_get_idx(f.problems, i)));
    if (rc == TG_OK) {
        *out = f.out;
        f.out = NULL;
    } else if (rc == TG_ENOMEM) {
        fail(&f, "out of memory");
    }
    json_object_put(f.out);
    json_object_put(f.problems);
    json_object_put(f.meta_key);
    return rc;
}
