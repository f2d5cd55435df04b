/* Reading the audit trail: GET /v1/audit/... and `taskgate audit ...`. Both describe a
 * read the same way (tg_audit_set checks query parameters and command-line options alike),
 * read through the store's audit calls, and write the rows with one formatter: JSON, CSV
 * (RFC 4180, header row first, CRLF) or an aligned text table for people. */
#ifndef TG_AUDIT_H
#define TG_AUDIT_H

#include <stddef.h>

#include "tg_core.h"
#include "tg_store.h"


enum tg_audit_what {
    TG_AUDIT_SUBMISSIONS, /* submissions, newest first */
    TG_AUDIT_RUNS,        /* runs, newest submission first, in input order within one */
    TG_AUDIT_OPEN,        /* submissions pending or unknown, oldest first */
    TG_AUDIT_SUBMISSION,  /* one submission with its upstream calls and runs */
    TG_AUDIT_RUN,         /* one run with its submission */
    TG_AUDIT_GROUP,       /* a task group's submissions and a page of its runs */
    TG_AUDIT_ADMIN,       /* administrative changes (audit_admin), newest first */
    TG_AUDIT_SUMMARY      /* counts by day, team, processor and state (audit_summary) */
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
    char status[24];             /* a run's status, for runs */
    int parts;                   /* the summary's parts (TG_AUDIT_PART_*); 0: every part */
    long limit;                  /* 0: TG_AUDIT_LIMIT_DEFAULT */
    struct tg_audit_key after;   /* from the cursor; time "": from the start */
};

/* An empty read of what, in JSON, seeing every team. */
void tg_audit_init(struct tg_audit_read *r, enum tg_audit_what what);

/* Sets one parameter from its text, under the names both interfaces use: team, state,
 * interface, taskgroup_id, since, until (RFC 3339 or YYYY-MM-DD), limit (1..max_limit),
 * cursor, format (json or csv), for the admin log object, object_type, action, for runs
 * status, and for the summary part (counts or durations). TG_OK; TG_ENOTFOUND when this
 * kind of read takes no such parameter; TG_EINVAL for a bad value. Either error puts a
 * one-line reason in err. */
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


#endif
