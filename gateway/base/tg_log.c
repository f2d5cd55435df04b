/* Logging to stderr in logfmt or JSON. Each line is formatted into a local buffer and
 * written with one write(2), so lines from different threads never interleave; stdio's
 * stream lock, which made every thread queue for the log, is not taken. */
#include "tg_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tg_core.h"

static enum tg_log_level log_level = TG_LOG_INFO;
static enum tg_log_format log_format = TG_LOG_LOGFMT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void tg_log_setup(enum tg_log_level level, enum tg_log_format format)
{
    log_level = level;
    log_format = format;
}

int tg_log_enabled(enum tg_log_level level)
{
    return level <= log_level;
}

/* A line under construction; truncation keeps the line well-formed but short. */
struct line {
    char buf[2048];
    size_t len;
    int fields;
};

static void put_raw(struct line *l, const char *s, size_t n)
{
    size_t room = sizeof(l->buf) - 2 - l->len; /* keep space for "}\n" */
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_char(struct line *l, char c)
{
    put_raw(l, &c, 1);
}

/* Escapes a value: JSON string escaping in JSON mode, logfmt quoting otherwise. */
static void put_value(struct line *l, const char *v)
{
    int quote = log_format == TG_LOG_JSON || *v == '\0' || strpbrk(v, " =\"\\") != NULL;
    for (const char *p = v; *p != '\0' && !quote; p++)
        quote = (unsigned char)*p < 0x20;
    if (quote)
        put_char(l, '"');
    for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            put_char(l, '\\');
            put_char(l, (char)*p);
        } else if (*p < 0x20) {
            char esc[8];
            int n = snprintf(esc, sizeof(esc), "\\u%04x", *p);
            put_raw(l, esc, (size_t)n);
        } else {
            put_char(l, (char)*p);
        }
    }
    if (quote)
        put_char(l, '"');
}

/* Writes what goes before a field's value: its separator and key ("{\"key\":" or
 * ",\"key\":" in JSON, " key=" in logfmt), and counts the field. */
static void field_key(struct line *l, const char *key)
{
    if (log_format == TG_LOG_JSON) {
        put_raw(l, l->fields ? ",\"" : "{\"", 2);
        put_raw(l, key, strlen(key));
        put_raw(l, "\":", 2);
    } else {
        if (l->fields)
            put_char(l, ' ');
        put_raw(l, key, strlen(key));
        put_char(l, '=');
    }
    l->fields++;
}

static void field_str(struct line *l, const char *key, const char *v)
{
    if (v == NULL)
        return;
    field_key(l, key);
    put_value(l, v);
}

static void field_num(struct line *l, const char *key, long long v)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", v);
    field_key(l, key);
    put_raw(l, num, (size_t)n);
}

static void line_begin(struct line *l, enum tg_log_level level)
{
    char ts[TG_TIME_LEN];
    l->len = 0;
    l->fields = 0;
    tg_time_format(tg_now_ms(), ts);
    field_str(l, "ts", ts);
    field_str(l, "level", level_names[level]);
}

static void line_end(struct line *l)
{
    if (log_format == TG_LOG_JSON)
        l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    const char *p = l->buf;
    size_t n = l->len;
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to say it */
        p += w;
        n -= (size_t)w;
    }
}

void tg_log(enum tg_log_level level, const char *fmt, ...)
{
    if (!tg_log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct line l;
    line_begin(&l, level);
    field_str(&l, "msg", msg);
    line_end(&l);
}

void tg_log_fields(enum tg_log_level level, const struct tg_log_field *fields, size_t n)
{
    if (!tg_log_enabled(level))
        return;
    struct line l;
    line_begin(&l, level);
    for (size_t i = 0; i < n; i++) {
        if (fields[i].is_num)
            field_num(&l, fields[i].key, fields[i].num);
        else
            field_str(&l, fields[i].key, fields[i].str);
    }
    line_end(&l);
}
