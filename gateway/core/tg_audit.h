/* Reading the audit trail: GET /v1/audit/... and `taskgate audit ...`. Both describe a
 * read the same way (tg_audit_set checks query parameters and command-line options alike),
 * read through the store's audit calls, and write the rows with one formatter: JSON, CSV
 * (RFC 4180, header row first, CRLF) or an aligned text table for people. */
#ifndef TG_AUDIT_H
#define TG_AUDIT_H

#include <stddef.h>

#include "tg_core.h"
#include "tg_store.h"

struct tg_conf;
struct tg_request;
struct tg_response;
struct tg_worker;

enum tg_audit_what {
    TG_AUDIT_SUBMISSIONS, /* submissions, newest first */
    TG_AUDIT_RUNS,        /* runs, newest submission first, in input order within one */
    TG_AUDIT_OPEN,        /* submissions pending or unknown, oldest first */
    TG_AUDIT_SUBMISSION,  /* one submission with its upstream calls and runs */
    TG_AUDIT_RUN,         /* one run with its submission */
    TG_AUDIT_GROUP,       /* a task group's submissions and a page of its runs */
    TG_AUDIT_ADMIN        /* administrative changes (audit_admin), newest first */
};

enum tg_audit_format { TG_AUDIT_JSON, TG_AUDIT_CSV, TG_AUDIT_TABLE };

#define TG_AUDIT_LIMIT_DEFAULT 100 /* rows per page over HTTP when no limit is given */
#define TG_AUDIT_LIMIT_MAX 1000    /* the most rows per page over HTTP */
#define TG_AUDIT_CURSOR_MAX 640    /* bytes of a cursor, with its NUL */

/* One read, described by value; nothing in it is owned elsewhere but scope_team. */
struct tg_audit_read {
    enum tg_audit_what what;
    enum tg_audit_format format;
    int format_set;              /* the format was asked for explicitly */
    const char *scope_team;      /* the only team the reader may see (borrowed); NULL: all */
    char id[129];                /* the submission, run or group of a one-object read */
    char team[65];
    char state[16];
    char interface[32];
    char group[129];
    char since[TG_TIME_LEN];     /* normalised RFC 3339 UTC with milliseconds; "": none */
    char until[TG_TIME_LEN];
    char object[129];            /* the admin log's object_id, object_type and action */
    char object_type[16];
    char action[32];
    long limit;                  /* 0: TG_AUDIT_LIMIT_DEFAULT */
    struct tg_audit_key after;   /* from the cursor; time "": from the start */
};

/* An empty read of what, in JSON, seeing every team. */
void tg_audit_init(struct tg_audit_read *r, enum tg_audit_what what);

/* Sets one parameter from its text, under the names both interfaces use: team, state,
 * interface, taskgroup_id, since, until (RFC 3339 or YYYY-MM-DD), limit (1..max_limit),
 * cursor, format (json or csv), and for the admin log object, object_type, action. TG_OK; TG_ENOTFOUND when this kind of read takes no such
 * parameter; TG_EINVAL for a bad value. Either error puts a one-line reason in err. */
int tg_audit_set(struct tg_audit_read *r, const char *name, const char *value,
                 long max_limit, char *err, size_t errlen);

/* The bit that stands for parameter name when this kind of read takes it, 0 otherwise (so
 * that a caller can tell a parameter given twice). */
int tg_audit_param(const struct tg_audit_read *r, const char *name);

/* Sets the id of a one-object read (letters, digits, '_', '-'; 1 to 128). TG_OK or
 * TG_EINVAL with the reason in err. */
int tg_audit_set_id(struct tg_audit_read *r, const char *id, char *err, size_t errlen);

/* Whether the read pages (lists and a group's runs) and so takes limit and cursor. */
int tg_audit_pages(enum tg_audit_what what);

/* The opaque cursor that continues r after page's last row, into out (at least
 * TG_AUDIT_CURSOR_MAX bytes); "" when the page was the last one. */
void tg_audit_cursor(const struct tg_audit_read *r, const struct tg_audit_page *page,
                     char *out, size_t outlen);

/* Moves r on to the page after page (the CLI's loop over pages). */
void tg_audit_continue(struct tg_audit_read *r, const struct tg_audit_page *page);

/* ---- the interfaces ------------------------------------------------------------------ */

/* GET (or HEAD) /v1/audit/...; always leaves an answer in resp.
 *   admin            ?team&object&object_type&action&since&until&limit&cursor
 *                    {"data":[rows of audit_admin],"next_cursor":…}; audit and admin
 *                    tokens only (a submit token gets 403)
 *   submissions      ?team&state&interface&taskgroup_id&since&until&limit&cursor
 *                    {"data":[rows of audit_submissions],"next_cursor":"…"|null}
 *   submissions/{id} {"submission":{…,"request":{…}},"calls":[…],"runs":[…]}
 *   runs             ?team&taskgroup_id&since&until&limit&cursor   (as submissions)
 *   runs/{id}        {"run":{…},"submission":{…,"request":{…}}}
 *   groups/{id}      ?limit&cursor   {"taskgroup_id","submissions":[…] (first page only,
 *                    at most TG_AUDIT_GROUP_SUBS),"runs":[a page],"submissions_truncated",
 *                    "next_cursor"}
 * limit: 1..TG_AUDIT_LIMIT_MAX rows (default TG_AUDIT_LIMIT_DEFAULT); cursor: the previous
 * page's next_cursor (also sent as the X-Next-Cursor header). CSV (RFC 4180, header row
 * first) with ?format=csv or an Accept that ranks text/csv above application/json: a list's
 * rows, a one-object read's first row, a group's runs. Any token may read; a submit token
 * sees its own team only: another team's ids answer 404 exactly as unknown ids do, and a
 * team filter naming another team gives an empty list. A bad parameter or id is a 422 with
 * loc ["query", name] or ["path", name]. Every read with a valid token (answered, 404 or
 * 422) is logged in audit_reads after its answer is built; one that cannot be logged is
 * answered 503 instead. */
void tg_audit_http(struct tg_worker *w, struct tg_request *req, struct tg_response *resp);

/* `taskgate audit ARGS` (argv starts after "audit"): returns the exit status (0, 1, or 2
 * for a usage error). Lives in tg_audit_cli.c, with the command-line programs. */
int tg_audit_cli(const struct tg_conf *conf, int argc, char **argv);

/* The audit part of `taskgate --help`. */
#define TG_AUDIT_USAGE                                                                       \
    "  audit submissions [--team T] [--state S] [--interface I] [--group G]\n"                \
    "                    [--since T] [--until T] [--limit N] [--cursor C]\n"                  \
    "                               submissions, newest first\n"                              \
    "  audit submission SUB_ID      one submission with its upstream calls and runs\n"        \
    "  audit runs [--team T] [--group G] [--since T] [--until T] [--limit N] [--cursor C]\n"  \
    "                               runs, newest first\n"                                     \
    "  audit run RUN_ID             one run and its submission\n"                             \
    "  audit group TGRP_ID [--limit N]\n"                                                     \
    "                               a task group's submissions and runs\n"                    \
    "  audit unknown [--team T] [--since T] [--until T] [--limit N]\n"                        \
    "                               submissions pending or unknown, oldest first\n"           \
    "  audit admin [--team T] [--object ID] [--object-type T] [--action A]\n"                \
    "              [--since T] [--until T] [--limit N] [--cursor C]\n"                       \
    "                               changes to teams, keys, presets, tokens; prunes\n"        \
    "  audit prune --before DATE [--dry-run]\n"                                               \
    "                               delete settled audit records older than DATE\n"           \
    "                               (audit: a table; --json or --csv for scripts; every\n"    \
    "                               read is logged in audit_reads)\n"

#endif
