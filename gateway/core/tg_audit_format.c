/* The one formatter of audit rows (contract in tg_audit_format.h): JSON, CSV (RFC 4180) and
 * aligned tables for people, shared by GET /v1/audit/... and `taskgate audit`; and the
 * fetch that reads a page of a read from the store into it. */
#include "tg_audit_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_json.h"

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
static const struct section lay_admin[] = {{"data", TG_AUDIT_KIND_ADMIN, 1, 1},
                                           {NULL, 0, 0, 0}};
/* The summary's counts, then its durations; CSV carries the one part asked for, the
 * counts when none was (part=durations: a layout of its own). */
static const struct section lay_summary[] = {{"data", TG_AUDIT_KIND_SUMMARY, 1, 1},
                                             {"durations", TG_AUDIT_KIND_DURATION, 1, 0},
                                             {NULL, 0, 0, 0}};
static const struct section lay_counts[] = {{"data", TG_AUDIT_KIND_SUMMARY, 1, 1},
                                            {NULL, 0, 0, 0}};
static const struct section lay_durations[] = {{"durations", TG_AUDIT_KIND_DURATION, 1, 1},
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
static const char *const table_admin[] = {"at", "actor", "interface", "action", "object_id",
                                          "before", "after", NULL};
static const char *const table_summary[] = {"day", "team", "processor", "state", "submissions",
                                            "runs", NULL};
static const char *const table_duration[] = {"team", "processor", "runs", "mean_ms", "p50_ms",
                                             "p90_ms", "max_ms", NULL};
#define TABLE_MAX_COLS 12
#define CELL_MAX 64        /* code points of a table cell; longer ones end in "..." */
#define FIELD_MAX 400      /* code points of a value in an object's "name  value" lines */
#define TABLE_BYTES_MAX ((size_t)64 * 1024 * 1024)

struct tg_audit_formatter {
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

struct tg_audit_formatter *tg_audit_format_new(enum tg_audit_format format, struct tg_buf *dst)
{
    struct tg_audit_formatter *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->format = format;
    o->dst = dst;
    o->cur = -1;
    tg_buf_init(&o->cells, TABLE_BYTES_MAX);
    return o;
}

void tg_audit_format_free(struct tg_audit_formatter *o)
{
    if (o == NULL)
        return;
    tg_buf_free(&o->cells);
    free(o);
}

long tg_audit_format_rows(const struct tg_audit_formatter *o)
{
    return o->rows;
}

static void put(struct tg_audit_formatter *o, const char *s, size_t n)
{
    if (o->rc == TG_OK)
        o->rc = tg_buf_add(o->dst, s, n);
}

static void puts_(struct tg_audit_formatter *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_json_string(struct tg_audit_formatter *o, const char *s)
{
    if (o->rc == TG_OK)
        o->rc = tg_json_buf_string(o->dst, s);
}

static void json_member(struct tg_audit_formatter *o, const char *name)
{
    if (o->members++ > 0)
        puts_(o, ",");
    put_json_string(o, name);
    puts_(o, ":");
}

/* A stored JSON text as JSON, or as a string when it does not parse. */
static void put_json_text(struct tg_audit_formatter *o, const char *text)
{
    json_object *v = tg_json_parse_text(text);
    if (v == NULL) {
        put_json_string(o, text);
        return;
    }
    size_t n;
    const char *s = tg_json_str(v, &n);
    put(o, s, n);
    json_object_put(v);
}

static void json_row(struct tg_audit_formatter *o, const struct tg_audit_row *row)
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

/* RFC 4180: a field with a comma, quote, CR or LF is quoted, quotes doubled. A text field
 * a spreadsheet would run as a formula (one that begins with '=', '+', '-', '@', a tab or
 * a CR: OWASP's CSV injection rule) is written as text instead: a single quote in front,
 * and quoted. Integer columns are written as they are: digits and a sign are a number,
 * never a formula. */
static void csv_field(struct tg_audit_formatter *o, const char *v, int is_text)
{
    if (v == NULL)
        return;
    int formula = is_text && v[0] != '\0' && strchr("=+-@\t\r", v[0]) != NULL;
    if (!formula && strpbrk(v, ",\"\r\n") == NULL) {
        puts_(o, v);
        return;
    }
    puts_(o, formula ? "\"'" : "\"");
    for (const char *q = strchr(v, '"'); q != NULL; q = strchr(v, '"')) {
        put(o, v, (size_t)(q - v + 1));
        puts_(o, "\"");
        v = q + 1;
    }
    puts_(o, v);
    puts_(o, "\"");
}

/* One line; types (NULL for the header) tells text from integer columns. */
static void csv_line(struct tg_audit_formatter *o, int n, const char *const *fields,
                     const enum tg_audit_type *types)
{
    for (int i = 0; i < n; i++) {
        if (i > 0)
            puts_(o, ",");
        csv_field(o, fields[i], types == NULL || types[i] != TG_AUDIT_VAL_INT);
    }
    puts_(o, "\r\n");
}

static void csv_header(struct tg_audit_formatter *o, int n, const char *const *names)
{
    if (!o->csv_header)
        csv_line(o, n, names, NULL);
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

/* Appends v for a terminal (tg_buf_add_shown: control characters written visibly), at most
 * max code points, "-" for NULL. */
static int put_cell(struct tg_buf *b, const char *v, size_t max)
{
    return tg_buf_add_shown(b, v, max);
}

static void pad(struct tg_audit_formatter *o, size_t n)
{
    static const char spaces[] = "                                                                ";
    while (n > 0 && o->rc == TG_OK) {
        size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
        put(o, spaces, k);
        n -= k;
    }
}

static void table_start(struct tg_audit_formatter *o, enum tg_audit_kind kind)
{
    o->tnames = kind == TG_AUDIT_KIND_RUN       ? table_run
                : kind == TG_AUDIT_KIND_CALL     ? table_call
                : kind == TG_AUDIT_KIND_ADMIN    ? table_admin
                : kind == TG_AUDIT_KIND_SUMMARY  ? table_summary
                : kind == TG_AUDIT_KIND_DURATION ? table_duration
                                                 : table_sub;
    for (o->ntcols = 0; o->tnames[o->ntcols] != NULL; o->ntcols++)
        o->tcol[o->ntcols] = -1;
    tg_buf_clear(&o->cells);
}

static void table_row(struct tg_audit_formatter *o, const struct tg_audit_row *row)
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

static void table_line(struct tg_audit_formatter *o, const char *indent, const char *const *cells,
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
static void table_flush(struct tg_audit_formatter *o, const char *indent)
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
static void table_object(struct tg_audit_formatter *o, const struct tg_audit_row *row)
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

static int sections(const struct tg_audit_formatter *o)
{
    int n = 0;
    while (o->layout[n].name != NULL)
        n++;
    return n;
}

static void open_section(struct tg_audit_formatter *o)
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

static void close_section(struct tg_audit_formatter *o)
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
static int enter(struct tg_audit_formatter *o, enum tg_audit_kind kind)
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
    struct tg_audit_formatter *o = arg;
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
            csv_line(o, row->ncols, row->values, row->types);
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

int tg_audit_format_begin(struct tg_audit_formatter *o, const struct tg_audit_read *r)
{
    switch (r->what) {
    case TG_AUDIT_SUBMISSIONS:
    case TG_AUDIT_OPEN: o->layout = lay_subs; break;
    case TG_AUDIT_RUNS: o->layout = lay_runs; break;
    case TG_AUDIT_SUBMISSION: o->layout = lay_sub; break;
    case TG_AUDIT_RUN: o->layout = lay_run; break;
    case TG_AUDIT_ADMIN: o->layout = lay_admin; break;
    case TG_AUDIT_SUMMARY:
        o->layout = r->parts == TG_AUDIT_PART_COUNTS      ? lay_counts
                    : r->parts == TG_AUDIT_PART_DURATIONS ? lay_durations
                                                          : lay_summary;
        break;
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

int tg_audit_format_end(struct tg_audit_formatter *o, const struct tg_audit_page *page,
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
    int is_list = o->layout == lay_subs || o->layout == lay_runs || o->layout == lay_admin;
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
    q->object = r->object[0] != '\0' ? r->object : NULL;
    q->object_type = r->object_type[0] != '\0' ? r->object_type : NULL;
    q->action = r->action[0] != '\0' ? r->action : NULL;
    q->run_status = r->status[0] != '\0' ? r->status : NULL;
    q->parts = r->parts;
    q->limit = r->limit > 0 ? r->limit : TG_AUDIT_LIMIT_DEFAULT;
    q->after = r->after;
}

int tg_audit_format_fetch(struct tg_store *st, const struct tg_audit_read *r,
                          struct tg_audit_formatter *o, struct tg_audit_page *page)
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
    case TG_AUDIT_ADMIN: rc = tg_store_audit_admin(st, &q, take_row, o, page); break;
    case TG_AUDIT_SUMMARY: rc = tg_store_audit_summary(st, &q, take_row, o, page); break;
    case TG_AUDIT_SUBMISSION:
        rc = tg_store_audit_submission(st, r->scope_team, r->id, take_row, o, &page->rows);
        break;
    default:
        rc = tg_store_audit_run(st, r->scope_team, r->id, take_row, o, &page->rows);
        break;
    }
    return o->rc != TG_OK ? o->rc : rc;
}
