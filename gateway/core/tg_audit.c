/* Reading the audit trail (contract in tg_audit.h): the parameters of a read, as query
 * parameters and command-line options alike, and the cursors that continue a list. The
 * formatter is in tg_audit_format.c, the HTTP handler in tg_audit_http.c. */
#include "tg_audit.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "tg_admin.h"
#include "tg_validate.h"

/* ---- parameters -------------------------------------------------------------------------- */

enum { P_TEAM = 1, P_STATE = 2, P_INTERFACE = 4, P_GROUP = 8, P_SINCE = 16, P_UNTIL = 32,
       P_LIMIT = 64, P_CURSOR = 128, P_FORMAT = 256, P_OBJECT = 512, P_OBJECT_TYPE = 1024,
       P_ACTION = 2048, P_STATUS = 4096, P_PART = 8192 };

static const struct {
    const char *name;
    int bit;
} params[] = {
    {"team", P_TEAM},   {"state", P_STATE}, {"interface", P_INTERFACE},
    {"taskgroup_id", P_GROUP}, {"since", P_SINCE}, {"until", P_UNTIL},
    {"limit", P_LIMIT}, {"cursor", P_CURSOR}, {"format", P_FORMAT},
    {"object", P_OBJECT}, {"object_type", P_OBJECT_TYPE}, {"action", P_ACTION},
    {"status", P_STATUS}, {"part", P_PART},
};
#define NPARAMS (sizeof(params) / sizeof(params[0]))

static int accepted(enum tg_audit_what what)
{
    switch (what) {
    case TG_AUDIT_SUBMISSIONS:
        return P_TEAM | P_STATE | P_INTERFACE | P_GROUP | P_SINCE | P_UNTIL | P_LIMIT |
               P_CURSOR | P_FORMAT;
    case TG_AUDIT_RUNS:
        return P_TEAM | P_GROUP | P_STATUS | P_SINCE | P_UNTIL | P_LIMIT | P_CURSOR |
               P_FORMAT;
    case TG_AUDIT_OPEN:
        return P_TEAM | P_SINCE | P_UNTIL | P_LIMIT | P_CURSOR | P_FORMAT;
    case TG_AUDIT_GROUP:
        return P_LIMIT | P_CURSOR | P_FORMAT;
    case TG_AUDIT_ADMIN:
        return P_TEAM | P_OBJECT | P_OBJECT_TYPE | P_ACTION | P_SINCE | P_UNTIL | P_LIMIT |
               P_CURSOR | P_FORMAT;
    case TG_AUDIT_SUMMARY:
        return P_TEAM | P_SINCE | P_UNTIL | P_PART | P_FORMAT;
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

/* Text a person typed as an id: non-empty, no control characters. */
static int printable(const char *s)
{
    if (s[0] == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
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
    return what == TG_AUDIT_SUBMISSIONS ? 's' : what == TG_AUDIT_OPEN ? 'o'
           : what == TG_AUDIT_ADMIN     ? 'a' : 'r';
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
        return copy_checked(r->team, sizeof(r->team), value, tg_admin_valid_name(value),
                            "a team name is " TG_ADMIN_NAME_RULE, err, errlen);
    case P_STATE: {
        int ok = 0;
        for (int s = TG_STATE_PENDING; s <= TG_STATE_UNKNOWN; s++)
            ok |= strcmp(value, tg_domain_state_name((enum tg_state)s)) == 0;
        return copy_checked(r->state, sizeof(r->state), value, ok,
                            "the state is one of pending, accepted, rejected, failed, unknown",
                            err, errlen);
    }
    case P_STATUS:
        return copy_checked(r->status, sizeof(r->status), value,
                            tg_domain_run_status_known(value),
                            "the status is one of queued, action_required, running, "
                            "completed, failed, cancelling, cancelled", err, errlen);
    case P_INTERFACE:
        return copy_checked(r->interface, sizeof(r->interface), value,
                            strcmp(value, interfaces[0]) == 0 || strcmp(value, interfaces[1]) == 0,
                            "the interface is simplified or upstream-compatible", err, errlen);
    case P_GROUP:
        return copy_checked(r->group, sizeof(r->group), value, tg_validate_id(value),
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
    case P_OBJECT:
        return copy_checked(r->object, sizeof(r->object), value, printable(value),
                            "an object id is 1 to 128 characters without control characters",
                            err, errlen);
    case P_OBJECT_TYPE:
        return copy_checked(r->object_type, sizeof(r->object_type), value,
                            strcmp(value, "team") == 0 || strcmp(value, "token") == 0 ||
                                strcmp(value, "preset") == 0 || strcmp(value, "audit") == 0,
                            "the object type is team, token, preset or audit", err, errlen);
    case P_ACTION:
        return copy_checked(r->action, sizeof(r->action), value,
                            value[0] != '\0' &&
                                strspn(value, "abcdefghijklmnopqrstuvwxyz._") == strlen(value),
                            "an action is like team.set_key: lowercase letters, '.' and '_'",
                            err, errlen);
    case P_PART:
        if (strcmp(value, "counts") == 0 || strcmp(value, "durations") == 0) {
            r->parts = value[0] == 'c' ? TG_AUDIT_PART_COUNTS : TG_AUDIT_PART_DURATIONS;
            return TG_OK;
        }
        snprintf(err, errlen, "the part is counts or durations");
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
    return copy_checked(r->id, sizeof(r->id), id, tg_validate_id(id),
                        "an id is 1 to 128 letters, digits, '_' or '-'", err, errlen);
}

int tg_audit_param(const struct tg_audit_read *r, const char *name)
{
    for (size_t i = 0; i < NPARAMS; i++)
        if (strcmp(params[i].name, name) == 0)
            return accepted(r->what) & params[i].bit;
    return 0;
}
