/* Reading the audit trail (contract in tg_audit.h): the parameters of a read and their
 * cursors, the one formatter of rows (JSON, CSV, table) that HTTP and the CLI share, and
 * the handlers of GET /v1/audit/.... */
#include "tg_audit.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tg_http.h"
#include "tg_json.h"
#include "tg_log.h"
#include "tg_validate.h"

/* ---- parameters -------------------------------------------------------------------------- */

enum { P_TEAM = 1, P_STATE = 2, P_INTERFACE = 4, P_GROUP = 8, P_SINCE = 16, P_UNTIL = 32,
       P_LIMIT = 64, P_CURSOR = 128, P_FORMAT = 256 };

static const struct {
    const char *name;
    int bit;
} params[] = {
    {"team", P_TEAM},   {"state", P_STATE}, {"interface", P_INTERFACE},
    {"taskgroup_id", P_GROUP}, {"since", P_SINCE}, {"until", P_UNTIL},
    {"limit", P_LIMIT}, {"cursor", P_CURSOR}, {"format", P_FORMAT},
};
#define NPARAMS (sizeof(params) / sizeof(params[0]))

static int accepted(enum tg_audit_what what)
{
    switch (what) {
    case TG_AUDIT_SUBMISSIONS:
        return P_TEAM | P_STATE | P_INTERFACE | P_GROUP | P_SINCE | P_UNTIL | P_LIMIT |
               P_CURSOR | P_FORMAT;
    case TG_AUDIT_RUNS:
        return P_TEAM | P_GROUP | P_SINCE | P_UNTIL | P_LIMIT | P_CURSOR | P_FORMAT;
    case TG_AUDIT_OPEN:
        return P_TEAM | P_SINCE | P_UNTIL | P_LIMIT | P_CURSOR | P_FORMAT;
    case TG_AUDIT_GROUP:
        return P_LIMIT | P_CURSOR | P_FORMAT;
    default:
        return P_FORMAT;
    }
}

int tg_audit_pages(enum tg_audit_what what)
{
    return (accepted(what) & P_CURSOR) != 0;
}

void tg_audit_init(struct tg_audit_read *r, enum tg_audit_what what)
{
    memset(r, 0, sizeof(*r));
    r->what = what;
    r->format = TG_AUDIT_JSON;
}

/* Team names as the CLI creates them: 1 to 64 letters, digits, '.', '_' or '-'. */
static int valid_team(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static const char *const interfaces[] = {"simplified", "upstream-compatible"};

/* The time as stored: RFC 3339 UTC with milliseconds. */
static int normal_time(const char *s, char out[TG_TIME_LEN])
{
    int64_t ms;
    if (tg_time_parse(s, &ms) != TG_OK || ms < 0)
        return TG_EINVAL;
    tg_time_format(ms, out);
    return TG_OK;
}

/* The letter that ties a cursor to the order it continues. */
static char cursor_kind(enum tg_audit_what what)
{
    return what == TG_AUDIT_SUBMISSIONS ? 's' : what == TG_AUDIT_OPEN ? 'o' : 'r';
}

/* A lowercase hex digit's value, or -1 (cursors are written in lowercase). */
static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* A hex digit of either case (percent escapes). */
static int hexval_ci(char c)
{
    return c >= 'A' && c <= 'F' ? c - 'A' + 10 : hexval(c);
}

/* A cursor is its kind's letter and the hex of "time|id|index". */
static int decode_cursor(struct tg_audit_read *r, const char *c)
{
    char payload[TG_AUDIT_CURSOR_MAX / 2];
    size_t n = strlen(c);
    if (n < 3 || n >= TG_AUDIT_CURSOR_MAX || (n - 1) % 2 != 0 || c[0] != cursor_kind(r->what))
        return TG_EINVAL;
    size_t len = (n - 1) / 2;
    for (size_t i = 0; i < len; i++) {
        int hi = hexval(c[1 + 2 * i]), lo = hexval(c[2 + 2 * i]);
        if (hi < 0 || lo < 0 || hi * 16 + lo < 0x20)
            return TG_EINVAL;
        payload[i] = (char)(hi * 16 + lo);
    }
    payload[len] = '\0';
    char *bar = strrchr(payload, '|');
    if (len < TG_TIME_LEN + 2 || payload[TG_TIME_LEN - 1] != '|' || bar == NULL ||
        bar <= payload + TG_TIME_LEN)
        return TG_EINVAL;
    *bar = '\0';
    payload[TG_TIME_LEN - 1] = '\0';
    char t[TG_TIME_LEN];
    const char *id = payload + TG_TIME_LEN;
    if (normal_time(payload, t) != TG_OK || strcmp(t, payload) != 0 ||
        strlen(id) > TG_AUDIT_KEY_ID_MAX ||
        tg_parse_long(bar + 1, 0, INT_MAX, &r->after.index) != TG_OK)
        return TG_EINVAL;
    memcpy(r->after.time, t, sizeof(t));
    snprintf(r->after.id, sizeof(r->after.id), "%s", id);
    return TG_OK;
}

void tg_audit_cursor(const struct tg_audit_read *r, const struct tg_audit_page *page,
                     char *out, size_t outlen)
{
    if (outlen > 0)
        out[0] = '\0';
    if (page == NULL || !page->more || outlen < TG_AUDIT_CURSOR_MAX)
        return;
    char payload[TG_AUDIT_CURSOR_MAX / 2];
    int n = snprintf(payload, sizeof(payload), "%s|%s|%ld", page->last.time, page->last.id,
                     page->last.index);
    if (n <= 0 || (size_t)n >= sizeof(payload))
        return;
    out[0] = cursor_kind(r->what);
    tg_hex((const unsigned char *)payload, (size_t)n, out + 1);
}

void tg_audit_continue(struct tg_audit_read *r, const struct tg_audit_page *page)
{
    r->after = page->last;
}

static int copy_checked(char *dst, size_t dstlen, const char *v, int ok, const char *why,
                        char *err, size_t errlen)
{
    if (!ok || strlen(v) >= dstlen) {
        snprintf(err, errlen, "%s", why);
        return TG_EINVAL;
    }
    memcpy(dst, v, strlen(v) + 1);
    return TG_OK;
}

int tg_audit_set(struct tg_audit_read *r, const char *name, const char *value,
                 long max_limit, char *err, size_t errlen)
{
    int bit = 0;
    for (size_t i = 0; i < NPARAMS && bit == 0; i++)
        if (strcmp(params[i].name, name) == 0)
            bit = params[i].bit;
    if ((accepted(r->what) & bit) == 0) {
        snprintf(err, errlen, "unknown parameter for this read");
        return TG_ENOTFOUND;
    }
    switch (bit) {
    case P_TEAM:
        return copy_checked(r->team, sizeof(r->team), value, valid_team(value),
                            "a team name is 1 to 64 letters, digits, '.', '_' or '-'", err, errlen);
    case P_STATE: {
        int ok = 0;
        for (int s = TG_STATE_PENDING; s <= TG_STATE_UNKNOWN; s++)
            ok |= strcmp(value, tg_state_name((enum tg_state)s)) == 0;
        return copy_checked(r->state, sizeof(r->state), value, ok,
                            "the state is one of pending, accepted, rejected, failed, unknown",
                            err, errlen);
    }
    case P_INTERFACE:
        return copy_checked(r->interface, sizeof(r->interface), value,
                            strcmp(value, interfaces[0]) == 0 || strcmp(value, interfaces[1]) == 0,
                            "the interface is simplified or upstream-compatible", err, errlen);
    case P_GROUP:
        return copy_checked(r->group, sizeof(r->group), value, tg_valid_id(value),
                            "a task group id is 1 to 128 letters, digits, '_' or '-'", err, errlen);
    case P_SINCE:
    case P_UNTIL:
        if (normal_time(value, bit == P_SINCE ? r->since : r->until) == TG_OK)
            return TG_OK;
        snprintf(err, errlen, "a time is RFC 3339 (2026-11-28T12:00:00Z, or with an offset: "
                 "+01:00) or a date (2026-11-28)");
        return TG_EINVAL;
    case P_LIMIT:
        if (tg_parse_long(value, 1, max_limit, &r->limit) == TG_OK)
            return TG_OK;
        snprintf(err, errlen, "the limit is a whole number from 1 to %ld", max_limit);
        return TG_EINVAL;
    case P_CURSOR:
        if (decode_cursor(r, value) == TG_OK)
            return TG_OK;
        snprintf(err, errlen, "not a cursor this list gave out (next_cursor)");
        return TG_EINVAL;
    default:
        if (strcmp(value, "json") == 0 || strcmp(value, "csv") == 0) {
            r->format = value[0] == 'j' ? TG_AUDIT_JSON : TG_AUDIT_CSV;
            r->format_set = 1;
            return TG_OK;
        }
        snprintf(err, errlen, "the format is json or csv");
        return TG_EINVAL;
    }
}

int tg_audit_set_id(struct tg_audit_read *r, const char *id, char *err, size_t errlen)
{
    return copy_checked(r->id, sizeof(r->id), id, tg_valid_id(id),
                        "an id is 1 to 128 letters, digits, '_' or '-'", err, errlen);
}

/* ---- the formatter ----------------------------------------------------------------------- */

/* Where rows of each kind go in an answer. A list section is a JSON array (a table for
 * people); an object section holds one row. CSV carries one section only: the csv one. */
struct section {
    const char *name;
    enum tg_audit_kind kind;
    int list;
    int csv;
};

static const struct section lay_subs[] = {{"data", TG_AUDIT_KIND_SUBMISSION, 1, 1},
                                          {NULL, 0, 0, 0}};
static const struct section lay_runs[] = {{"data", TG_AUDIT_KIND_RUN, 1, 1}, {NULL, 0, 0, 0}};
static const struct section lay_sub[] = {{"submission", TG_AUDIT_KIND_SUBMISSION, 0, 1},
                                         {"calls", TG_AUDIT_KIND_CALL, 1, 0},
                                         {"runs", TG_AUDIT_KIND_RUN, 1, 0},
                                         {NULL, 0, 0, 0}};
static const struct section lay_run[] = {{"run", TG_AUDIT_KIND_RUN, 0, 1},
                                         {"submission", TG_AUDIT_KIND_SUBMISSION, 0, 0},
                                         {NULL, 0, 0, 0}};
static const struct section lay_group[] = {{"submissions", TG_AUDIT_KIND_SUBMISSION, 1, 0},
                                           {"runs", TG_AUDIT_KIND_RUN, 1, 1},
                                           {NULL, 0, 0, 0}};

/* The columns a table for people shows of each kind (--json and --csv carry all). */
static const char *const table_sub[] = {"received_at", "submission_id", "team", "interface",
                                        "state", "num_inputs", "http_status", "taskgroup_id",
                                        "error", NULL};
static const char *const table_run[] = {"submitted_at", "run_id", "team", "submission_id",
                                        "taskgroup_id", "input_index", "processor", NULL};
static const char *const table_call[] = {"seq", "operation", "started_at", "duration_ms",
                                         "outcome", "http_status", "first_input", "num_inputs",
                                         "run_cursor", "event_cursor", "error", NULL};
#define TABLE_MAX_COLS 12
#define CELL_MAX 64        /* code points of a table cell; longer ones end in "..." */
#define FIELD_MAX 400      /* code points of a value in an object's "name  value" lines */
#define TABLE_BYTES_MAX ((size_t)64 * 1024 * 1024)

struct tg_audit_out {
    enum tg_audit_format format;
    struct tg_buf *dst;
    const struct section *layout;
    int cur;              /* the open section, -1 before the first */
    int members;          /* top-level JSON members written */
    long in_section;      /* rows in the open section */
    long rows;
    int csv_header;
    int rc;               /* the first failure, returned from then on */
    /* The table of the open list section, kept until it closes to align its columns. */
    struct tg_buf cells;  /* every cell NUL-terminated, row after row */
    int tcol[TABLE_MAX_COLS];
    int ntcols;
    const char *const *tnames;
};

struct tg_audit_out *tg_audit_out_new(enum tg_audit_format format, struct tg_buf *dst)
{
    struct tg_audit_out *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->format = format;
    o->dst = dst;
    o->cur = -1;
    tg_buf_init(&o->cells, TABLE_BYTES_MAX);
    return o;
}

void tg_audit_out_free(struct tg_audit_out *o)
{
    if (o == NULL)
        return;
    tg_buf_free(&o->cells);
    free(o);
}

long tg_audit_rows(const struct tg_audit_out *o)
{
    return o->rows;
}

static void put(struct tg_audit_out *o, const char *s, size_t n)
{
    if (o->rc == TG_OK)
        o->rc = tg_buf_add(o->dst, s, n);
}

static void puts_(struct tg_audit_out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_json_string(struct tg_audit_out *o, const char *s)
{
    if (o->rc == TG_OK)
        o->rc = tg_json_buf_string(o->dst, s);
}

static void json_member(struct tg_audit_out *o, const char *name)
{
    if (o->members++ > 0)
        puts_(o, ",");
    put_json_string(o, name);
    puts_(o, ":");
}

/* A stored JSON text as JSON, or as a string when it does not parse. */
static void put_json_text(struct tg_audit_out *o, const char *text)
{
    json_object *v = json_tokener_parse(text);
    if (v == NULL) {
        put_json_string(o, text);
        return;
    }
    size_t n;
    const char *s = tg_json_str(v, &n);
    put(o, s, n);
    json_object_put(v);
}

static void json_row(struct tg_audit_out *o, const struct tg_audit_row *row)
{
    puts_(o, "{");
    for (int i = 0; i < row->ncols; i++) {
        if (i > 0)
            puts_(o, ",");
        put_json_string(o, row->names[i]);
        puts_(o, ":");
        switch (row->types[i]) {
        case TG_AUDIT_VAL_NULL: puts_(o, "null"); break;
        case TG_AUDIT_VAL_INT: puts_(o, row->values[i]); break;
        case TG_AUDIT_VAL_JSON: put_json_text(o, row->values[i]); break;
        default: put_json_string(o, row->values[i]); break;
        }
    }
    puts_(o, "}");
}

/* RFC 4180: a field with a comma, quote, CR or LF is quoted, quotes doubled. */
static void csv_field(struct tg_audit_out *o, const char *v)
{
    if (v == NULL)
        return;
    if (strpbrk(v, ",\"\r\n") == NULL) {
        puts_(o, v);
        return;
    }
    puts_(o, "\"");
    for (const char *q = strchr(v, '"'); q != NULL; q = strchr(v, '"')) {
        put(o, v, (size_t)(q - v + 1));
        puts_(o, "\"");
        v = q + 1;
    }
    puts_(o, v);
    puts_(o, "\"");
}

static void csv_line(struct tg_audit_out *o, int n, const char *const *fields)
{
    for (int i = 0; i < n; i++) {
        if (i > 0)
            puts_(o, ",");
        csv_field(o, fields[i]);
    }
    puts_(o, "\r\n");
}

static void csv_header(struct tg_audit_out *o, int n, const char *const *names)
{
    if (!o->csv_header)
        csv_line(o, n, names);
    o->csv_header = 1;
}

/* ---- tables for people ---- */

static size_t codepoints(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* Appends v for a terminal: control characters become spaces (a stored value must not
 * drive the terminal), at most max code points, "-" for NULL. */
static int put_cell(struct tg_buf *b, const char *v, size_t max)
{
    if (v == NULL)
        return tg_buf_add(b, "-", 1);
    size_t cps = 0;
    int rc = TG_OK;
    for (const char *p = v; *p != '\0' && rc == TG_OK; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c & 0xc0) != 0x80 && ++cps > max) {
            rc = tg_buf_add(b, "...", 3);
            break;
        }
        char out = c < 0x20 || c == 0x7f ? ' ' : (char)c;
        rc = tg_buf_add(b, &out, 1);
    }
    return rc;
}

static void pad(struct tg_audit_out *o, size_t n)
{
    static const char spaces[] = "                                                                ";
    while (n > 0 && o->rc == TG_OK) {
        size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
        put(o, spaces, k);
        n -= k;
    }
}

static void table_start(struct tg_audit_out *o, enum tg_audit_kind kind)
{
    o->tnames = kind == TG_AUDIT_KIND_RUN ? table_run : kind == TG_AUDIT_KIND_CALL ? table_call
                                                                                  : table_sub;
    for (o->ntcols = 0; o->tnames[o->ntcols] != NULL; o->ntcols++)
        o->tcol[o->ntcols] = -1;
    tg_buf_clear(&o->cells);
}

static void table_row(struct tg_audit_out *o, const struct tg_audit_row *row)
{
    for (int c = 0; c < o->ntcols && o->rc == TG_OK; c++) {
        if (o->tcol[c] < 0 || o->tcol[c] >= row->ncols ||
            strcmp(row->names[o->tcol[c]], o->tnames[c]) != 0) {
            o->tcol[c] = -1;
            for (int i = 0; i < row->ncols; i++)
                if (strcmp(row->names[i], o->tnames[c]) == 0)
                    o->tcol[c] = i;
        }
        const char *v = o->tcol[c] >= 0 ? row->values[o->tcol[c]] : NULL;
        o->rc = put_cell(&o->cells, v, CELL_MAX);
        if (o->rc == TG_OK)
            o->rc = tg_buf_add(&o->cells, "", 1); /* the cell's NUL */
    }
}

static void table_line(struct tg_audit_out *o, const char *indent, const char *const *cells,
                       const size_t *width)
{
    puts_(o, indent);
    for (int c = 0; c < o->ntcols; c++) {
        puts_(o, cells[c]);
        if (c + 1 < o->ntcols)
            pad(o, width[c] - codepoints(cells[c]) + 2);
    }
    puts_(o, "\n");
}

/* Writes the kept rows with every column as wide as its widest cell. */
static void table_flush(struct tg_audit_out *o, const char *indent)
{
    size_t width[TABLE_MAX_COLS];
    const char *cells[TABLE_MAX_COLS];
    for (int c = 0; c < o->ntcols; c++)
        width[c] = codepoints(o->tnames[c]);
    const char *end = o->cells.data + o->cells.len;
    int c = 0;
    for (const char *p = o->cells.data; p != NULL && p < end; p += strlen(p) + 1) {
        size_t w = codepoints(p);
        if (w > width[c])
            width[c] = w;
        c = (c + 1) % o->ntcols;
    }
    table_line(o, indent, o->tnames, width);
    c = 0;
    for (const char *p = o->cells.data; p != NULL && p < end; p += strlen(p) + 1) {
        cells[c++] = p;
        if (c == o->ntcols) {
            table_line(o, indent, cells, width);
            c = 0;
        }
    }
    tg_buf_clear(&o->cells);
}

/* One row as "name  value" lines. */
static void table_object(struct tg_audit_out *o, const struct tg_audit_row *row)
{
    size_t w = 0;
    for (int i = 0; i < row->ncols; i++)
        if (strlen(row->names[i]) > w)
            w = strlen(row->names[i]);
    struct tg_buf cell;
    tg_buf_init(&cell, FIELD_MAX * 4 + 8);
    for (int i = 0; i < row->ncols && o->rc == TG_OK; i++) {
        puts_(o, "  ");
        puts_(o, row->names[i]);
        pad(o, w - strlen(row->names[i]) + 2);
        tg_buf_clear(&cell);
        o->rc = put_cell(&cell, row->values[i], FIELD_MAX);
        puts_(o, tg_buf_str(&cell));
        puts_(o, "\n");
    }
    tg_buf_free(&cell);
}

/* ---- sections ---- */

static int sections(const struct tg_audit_out *o)
{
    int n = 0;
    while (o->layout[n].name != NULL)
        n++;
    return n;
}

static void open_section(struct tg_audit_out *o)
{
    const struct section *s = &o->layout[o->cur];
    o->in_section = 0;
    if (o->format == TG_AUDIT_JSON) {
        json_member(o, s->name);
        if (s->list)
            puts_(o, "[");
    } else if (o->format == TG_AUDIT_TABLE && s->list) {
        table_start(o, s->kind);
    }
}

static void close_section(struct tg_audit_out *o)
{
    const struct section *s = &o->layout[o->cur];
    if (o->format == TG_AUDIT_JSON) {
        if (s->list)
            puts_(o, "]");
        else if (o->in_section == 0)
            puts_(o, "null");
    } else if (o->format == TG_AUDIT_CSV && s->csv && !o->csv_header) {
        int n;
        const char *const *names = tg_store_audit_columns(s->kind, &n);
        csv_header(o, n, names);
    } else if (o->format == TG_AUDIT_TABLE && s->list) {
        int titled = sections(o) > 1;
        if (titled) {
            char title[96];
            snprintf(title, sizeof(title), "%s: %ld\n", s->name, o->in_section);
            puts_(o, title);
        }
        if (o->in_section > 0)
            table_flush(o, titled ? "  " : "");
        else if (!titled)
            puts_(o, "(no rows)\n");
    }
}

/* Moves on to the section that holds rows of kind, closing the open one and opening (as
 * empty) any in between. TG_ERR when the layout has no place for such a row. */
static int enter(struct tg_audit_out *o, enum tg_audit_kind kind)
{
    if (o->cur >= 0 && o->layout[o->cur].kind == kind)
        return TG_OK;
    int next = o->cur + 1;
    while (o->layout[next].name != NULL && o->layout[next].kind != kind)
        next++;
    if (o->layout[next].name == NULL)
        return TG_ERR;
    while (o->cur < next) {
        if (o->cur >= 0)
            close_section(o);
        o->cur++;
        open_section(o);
    }
    return TG_OK;
}

static int take_row(void *arg, const struct tg_audit_row *row)
{
    struct tg_audit_out *o = arg;
    if (o->rc == TG_OK && enter(o, row->kind) != TG_OK)
        o->rc = TG_ERR;
    if (o->rc != TG_OK)
        return o->rc;
    const struct section *s = &o->layout[o->cur];
    if (o->format == TG_AUDIT_JSON) {
        if (s->list && o->in_section > 0)
            puts_(o, ",");
        json_row(o, row);
    } else if (o->format == TG_AUDIT_CSV) {
        if (s->csv) {
            csv_header(o, row->ncols, row->names);
            csv_line(o, row->ncols, row->values);
        }
    } else if (s->list) {
        table_row(o, row);
    } else {
        char title[96];
        snprintf(title, sizeof(title), "%s:\n", s->name);
        puts_(o, title);
        table_object(o, row);
    }
    o->in_section++;
    o->rows++;
    return o->rc;
}

int tg_audit_begin(struct tg_audit_out *o, const struct tg_audit_read *r)
{
    switch (r->what) {
    case TG_AUDIT_SUBMISSIONS:
    case TG_AUDIT_OPEN: o->layout = lay_subs; break;
    case TG_AUDIT_RUNS: o->layout = lay_runs; break;
    case TG_AUDIT_SUBMISSION: o->layout = lay_sub; break;
    case TG_AUDIT_RUN: o->layout = lay_run; break;
    default:
        /* A group's submissions come with its first page only. */
        o->layout = r->after.time[0] == '\0' ? lay_group : lay_group + 1;
        break;
    }
    if (o->format == TG_AUDIT_JSON) {
        puts_(o, "{");
        if (r->what == TG_AUDIT_GROUP) {
            json_member(o, "taskgroup_id");
            put_json_string(o, r->id);
        }
    } else if (o->format == TG_AUDIT_TABLE && r->what == TG_AUDIT_GROUP) {
        puts_(o, "taskgroup_id: ");
        if (o->rc == TG_OK)
            o->rc = put_cell(o->dst, r->id, CELL_MAX);
        puts_(o, "\n");
    }
    return o->rc;
}

int tg_audit_end(struct tg_audit_out *o, const struct tg_audit_page *page,
                 const char *next_cursor)
{
    int n = sections(o);
    if (o->cur < 0) {
        o->cur = 0;
        open_section(o);
    }
    close_section(o);
    while (o->cur + 1 < n) {
        o->cur++;
        open_section(o);
        close_section(o);
    }
    int is_list = o->layout == lay_subs || o->layout == lay_runs;
    int is_group = o->layout == lay_group || o->layout == lay_group + 1;
    if (o->format == TG_AUDIT_JSON) {
        if (o->layout == lay_group) {
            json_member(o, "submissions_truncated");
            puts_(o, page != NULL && page->truncated ? "true" : "false");
        }
        if (is_list || is_group) {
            json_member(o, "next_cursor");
            if (next_cursor != NULL && next_cursor[0] != '\0')
                put_json_string(o, next_cursor);
            else
                puts_(o, "null");
        }
        puts_(o, "}");
    }
    return o->rc;
}

static void query_of(const struct tg_audit_read *r, struct tg_audit_query *q)
{
    memset(q, 0, sizeof(*q));
    q->scope_team = r->scope_team;
    q->team = r->team[0] != '\0' ? r->team : NULL;
    q->state = r->state[0] != '\0' ? r->state : NULL;
    q->interface = r->interface[0] != '\0' ? r->interface : NULL;
    q->taskgroup_id = r->what == TG_AUDIT_GROUP ? r->id : r->group[0] != '\0' ? r->group : NULL;
    q->since = r->since[0] != '\0' ? r->since : NULL;
    q->until = r->until[0] != '\0' ? r->until : NULL;
    q->limit = r->limit > 0 ? r->limit : TG_AUDIT_LIMIT_DEFAULT;
    q->after = r->after;
}

int tg_audit_fetch(struct tg_store *st, const struct tg_audit_read *r, struct tg_audit_out *o,
                   struct tg_audit_page *page)
{
    struct tg_audit_query q;
    query_of(r, &q);
    memset(page, 0, sizeof(*page));
    int rc;
    switch (r->what) {
    case TG_AUDIT_SUBMISSIONS: rc = tg_store_audit_submissions(st, &q, take_row, o, page); break;
    case TG_AUDIT_OPEN: rc = tg_store_audit_open(st, &q, take_row, o, page); break;
    case TG_AUDIT_RUNS: rc = tg_store_audit_runs(st, &q, take_row, o, page); break;
    case TG_AUDIT_GROUP: rc = tg_store_audit_group(st, &q, take_row, o, page); break;
    case TG_AUDIT_SUBMISSION:
        rc = tg_store_audit_submission(st, r->scope_team, r->id, take_row, o, &page->rows);
        break;
    default:
        rc = tg_store_audit_run(st, r->scope_team, r->id, take_row, o, &page->rows);
        break;
    }
    return o->rc != TG_OK ? o->rc : rc;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

#define QUERY_MAX 4096
#define VALUE_MAX 1024

/* Percent-decodes s[0..n) into out (outlen bytes with the NUL). '+' stays '+', so that a
 * time's offset survives; a space is %20. TG_EINVAL for a bad escape, a NUL, invalid
 * UTF-8 or a value too long for out. */
static int url_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval_ci(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval_ci(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || hi * 16 + lo == 0)
                return TG_EINVAL;
            c = hi * 16 + lo;
            i += 2;
        }
        if (j + 1 >= outlen)
            return TG_EINVAL;
        out[j++] = (char)c;
    }
    out[j] = '\0';
    return tg_utf8_valid(out, j) ? TG_OK : TG_EINVAL;
}

static void problem(json_object *detail, const char *name, const char *msg, const char *type)
{
    tg_json_problem(detail, tg_json_loc("query", name, NULL), msg, type);
}

/* Sets one name=value pair of the query string; a problem goes to detail. */
static void query_pair(const char *p, size_t len, struct tg_audit_read *r, int *seen,
                       json_object *detail)
{
    const char *eq = memchr(p, '=', len);
    size_t nlen = eq != NULL ? (size_t)(eq - p) : len;
    const char *v = eq != NULL ? eq + 1 : p + len;
    char name[32], value[VALUE_MAX], err[200];
    if (url_decode(p, nlen, name, sizeof(name)) != TG_OK ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz_") != strlen(name)) {
        problem(detail, NULL, "unknown query parameter", "extra_forbidden");
        return;
    }
    int bit = 0;
    for (size_t i = 0; i < NPARAMS; i++)
        if (strcmp(params[i].name, name) == 0)
            bit = params[i].bit;
    if ((accepted(r->what) & bit) == 0) {
        problem(detail, name, "unknown query parameter for this path", "extra_forbidden");
        return;
    }
    if (url_decode(v, (size_t)(p + len - v), value, sizeof(value)) != TG_OK) {
        problem(detail, name, "too long, a bad percent escape, or not UTF-8", "value_error");
        return;
    }
    if (value[0] == '\0')
        return; /* an empty value is no filter (what an empty form field sends) */
    if (*seen & bit) {
        problem(detail, name, "given more than once", "value_error");
        return;
    }
    *seen |= bit;
    if (tg_audit_set(r, name, value, TG_AUDIT_LIMIT_MAX, err, sizeof(err)) != TG_OK)
        problem(detail, name, err, "value_error");
}

/* Sets r from the query string; every problem goes to detail. */
static void parse_query(const char *query, struct tg_audit_read *r, json_object *detail)
{
    if (strlen(query) > QUERY_MAX) {
        problem(detail, NULL, "the query string is too long", "value_error");
        return;
    }
    int seen = 0;
    for (const char *p = query; *p != '\0';) {
        size_t len = strcspn(p, "&");
        if (len > 0)
            query_pair(p, len, r, &seen, detail);
        p += len;
        if (*p == '&')
            p++;
    }
}

/* The q of media type mt in an Accept header; -1 when it is not named. */
static double accept_q(const char *accept, const char *mt)
{
    size_t mlen = strlen(mt);
    for (const char *p = accept; p != NULL && *p != '\0';) {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, ",");
        size_t tlen = strcspn(p, ";, \t");
        if (tlen == mlen && strncasecmp(p, mt, mlen) == 0) {
            const char *qp = strstr(p, ";q=");
            if (qp == NULL || qp > p + len)
                qp = strstr(p, "; q=");
            if (qp == NULL || qp > p + len)
                return 1.0;
            return strtod(strchr(qp, '=') + 1, NULL);
        }
        p += len;
    }
    return -1.0;
}

/* CSV when the Accept header names text/csv above application/json. */
static int wants_csv(const char *accept)
{
    if (accept == NULL)
        return 0;
    double csv = accept_q(accept, "text/csv"), json = accept_q(accept, "application/json");
    return csv > 0 && csv > json;
}

/* Maps the path to a read; TG_ENOTFOUND when it names none. *id_name is the id's name for
 * a loc, NULL for lists. */
static int route(const char *path, struct tg_audit_read *r, const char **id, const char **id_name)
{
    static const struct {
        const char *prefix;
        enum tg_audit_what list, one;
        const char *id_name;
    } routes[] = {
        {"/v1/audit/submissions", TG_AUDIT_SUBMISSIONS, TG_AUDIT_SUBMISSION, "submission_id"},
        {"/v1/audit/runs", TG_AUDIT_RUNS, TG_AUDIT_RUN, "run_id"},
        {"/v1/audit/groups", TG_AUDIT_GROUP, TG_AUDIT_GROUP, "taskgroup_id"},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        size_t n = strlen(routes[i].prefix);
        if (strncmp(path, routes[i].prefix, n) != 0)
            continue;
        const char *rest = path + n;
        if (*rest == '\0' && routes[i].list != TG_AUDIT_GROUP) {
            tg_audit_init(r, routes[i].list);
            *id = NULL;
            *id_name = NULL;
            return TG_OK;
        }
        if (rest[0] == '/' && rest[1] != '\0' && strchr(rest + 1, '/') == NULL) {
            tg_audit_init(r, routes[i].one);
            *id = rest + 1;
            *id_name = routes[i].id_name;
            return TG_OK;
        }
    }
    return TG_ENOTFOUND;
}

/* Builds the answer in resp; returns the rows it carries, or -1 when it is an error. */
static long answer(struct tg_worker *w, struct tg_request *req, struct tg_response *resp,
                   struct tg_audit_read *r)
{
    long rows = -1;
    char cursor[TG_AUDIT_CURSOR_MAX];
    struct tg_audit_page page;
    memset(&page, 0, sizeof(page));
    struct tg_audit_out *o = tg_audit_out_new(r->format, &resp->body);
    if (o == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        goto out;
    }
    tg_buf_clear(&resp->body);
    int rc = tg_audit_begin(o, r);
    if (rc == TG_OK)
        rc = tg_audit_fetch(w->store, r, o, &page);
    tg_audit_cursor(r, &page, cursor, sizeof(cursor));
    if (rc == TG_OK)
        rc = tg_audit_end(o, &page, cursor);
    if (rc == TG_ENOTFOUND) {
        const char *what = r->what == TG_AUDIT_SUBMISSION ? "submission"
                           : r->what == TG_AUDIT_RUN      ? "run"
                                                          : "task group";
        char msg[200];
        snprintf(msg, sizeof(msg), "no %s %s in the audit trail", what, r->id);
        tg_resp_error(resp, req, 404, msg, NULL);
    } else if (rc == TG_ETOOBIG) {
        tg_resp_error(resp, req, 500, "the answer is larger than the gateway sends: ask for a "
                                      "smaller limit", NULL);
    } else if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "audit read failed: %s (%s)", tg_rc_str(rc),
               tg_store_errmsg(w->store));
        tg_resp_error(resp, req, 503, "the audit database cannot be read; try again later", NULL);
    } else {
        resp->status = 200;
        resp->content_type = r->format == TG_AUDIT_CSV ? "text/csv; charset=utf-8"
                                                       : "application/json";
        if (cursor[0] != '\0')
            tg_resp_header(resp, "X-Next-Cursor", tg_pool_strdup(req->pool, cursor));
        rows = tg_audit_rows(o);
    }
out:
    tg_audit_out_free(o);
    return rows;
}

/* Every audit read is logged, answered or not; a read that cannot be logged is not
 * answered. */
static void log_read(struct tg_worker *w, struct tg_request *req, struct tg_response *resp,
                     const struct tg_auth *auth, long rows)
{
    char actor[64];
    snprintf(actor, sizeof(actor), "token:%s", auth->token_id);
    struct tg_actor who = {actor, auth->team, "http", req->remote_addr};
    const char *q = req->query != NULL ? req->query : "";
    const char *query = tg_pool_printf(req->pool, "%s %s%s%s", req->method, req->path,
                                       q[0] != '\0' ? "?" : "", q);
    int rc = query != NULL ? tg_store_audit_read_log(w->store, &who, query, rows) : TG_ENOMEM;
    if (rc != TG_OK) {
        tg_log(TG_LOG_ERROR, "audit read not logged: %s (%s)", tg_rc_str(rc),
               tg_store_errmsg(w->store));
        resp->nheaders = 0;
        tg_resp_error(resp, req, 503, "this audit read could not be logged, so it is not "
                                      "answered; try again later", NULL);
    }
}

void tg_audit_http(struct tg_worker *w, struct tg_request *req, struct tg_response *resp)
{
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        tg_resp_header(resp, "Allow", "GET, HEAD");
        tg_resp_error(resp, req, 405, "the audit trail is read with GET", NULL);
        return;
    }
    struct tg_audit_read r;
    const char *id, *id_name;
    if (route(req->path, &r, &id, &id_name) != TG_OK) {
        tg_resp_error(resp, req, 404, "Not Found", NULL);
        return;
    }
    struct tg_auth auth;
    if (tg_http_auth(w, req, resp, NULL, &auth) != TG_OK)
        return;
    r.scope_team = auth.role == TG_ROLE_SUBMIT ? auth.team : NULL;

    long rows = -1;
    char err[200];
    json_object *detail = tg_json_pool(req->pool, json_object_new_array());
    if (detail == NULL) {
        tg_resp_error(resp, req, 500, "out of memory", NULL);
        goto log;
    }
    if (id != NULL && tg_audit_set_id(&r, id, err, sizeof(err)) != TG_OK)
        tg_json_problem(detail, tg_json_loc("path", id_name, NULL), err, "value_error");
    parse_query(req->query != NULL ? req->query : "", &r, detail);
    if (!r.format_set && wants_csv(req->accept))
        r.format = TG_AUDIT_CSV;
    if (json_object_array_length(detail) > 0)
        tg_resp_validation(resp, detail);
    else
        rows = answer(w, req, resp, &r);
log:
    log_read(w, req, resp, &auth, rows);
}
