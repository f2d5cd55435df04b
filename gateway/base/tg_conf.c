/* Configuration: reads "key = value" lines and TASKGATE_<KEY> variables into struct tg_conf,
 * checking every value against one table of keys, once, at start-up. */
#include "tg_conf.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "tg_core.h"
#include "tg_webhook_sig.h"

#define MAX_LINE 4096           /* bytes in one line, not counting CR LF */
#define MAX_FILE (1024 * 1024)  /* a config file is a few kilobytes; this is a typo guard */
#define ENV_PREFIX "TASKGATE_"

/* Enum fields are written and read as int through memcpy, with the names in value order. */
_Static_assert(sizeof(enum tg_log_level) == sizeof(int), "enum tg_log_level is not int-sized");
_Static_assert(sizeof(enum tg_log_format) == sizeof(int), "enum tg_log_format is not int-sized");
_Static_assert(TG_LOG_ERROR == 0 && TG_LOG_DEBUG == 3, "log level names out of order");
_Static_assert(TG_LOG_LOGFMT == 0 && TG_LOG_JSON == 1, "log format names out of order");

enum type {
    T_LONG,   /* decimal integer in [min, max] */
    T_OCTAL,  /* octal integer in [min, max], written like 0660 */
    T_SIZE,   /* decimal integer with an optional k or M suffix (binary), in [min, max] */
    T_ENUM,   /* one of names[], stored as its index */
    T_PATH,   /* a file path; a relative one is resolved against the source's directory; a
               * URI (scheme://...) is kept as given */
    T_OPTPATH, /* a file path as T_PATH, or empty (the key's documented default applies) */
    T_LISTEN, /* "host:port" or ":port", or else a unix socket path (resolved like T_PATH) */
    T_URL,    /* http:// or https:// base URL; one trailing slash is dropped */
    T_NAME,   /* letters, digits, '-' and '_'; may be empty */
    T_ADDRS,  /* IP addresses (with an optional :port), separated by spaces; may be empty */
    T_OPTURL, /* a T_URL, or empty */
    T_SECRETS /* webhook secrets (tg_webhook_secret_parse) separated by spaces, at most
               * TG_WEBHOOK_SECRETS_MAX; may be empty; never shown */
};

struct key {
    const char *name;
    enum type type;
    size_t off;               /* where: offsetof the field in struct tg_conf */
    size_t size;              /* sizeof that field; for strings, the buffer size */
    long min, max;            /* numeric types only */
    const char *def;          /* the default, written as it would be in the file */
    const char *const *names; /* T_ENUM choices, NULL-terminated */
};

#define FIELD(f) offsetof(struct tg_conf, f), sizeof(((struct tg_conf *)0)->f)

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const format_names[] = {"logfmt", "json", NULL};

static const struct key keys[] = {
    {"listen", T_LISTEN, FIELD(listen), 0, 0, "/run/taskgate/taskgate.sock", NULL},
    {"socket_mode", T_OCTAL, FIELD(socket_mode), 0, 0777, "0660", NULL},
    {"socket_group", T_NAME, FIELD(socket_group), 0, 0, "", NULL},
    {"threads", T_LONG, FIELD(threads), 1, 4096, "32", NULL},
    {"worker_reserve", T_LONG, FIELD(worker_reserve), 0, 4096, "0", NULL},
    {"backlog", T_LONG, FIELD(backlog), 1, 65535, "1024", NULL},
    {"database", T_PATH, FIELD(database), 0, 0, "/var/lib/taskgate/taskgate.db", NULL},
    {"db_busy_timeout_ms", T_LONG, FIELD(db_busy_timeout_ms), 0, 600000, "10000", NULL},
    {"key_file", T_OPTPATH, FIELD(key_file), 0, 0, "", NULL},
    {"db_max_pages", T_LONG, FIELD(db_max_pages), 0, 2147483647, "0", NULL},
    {"upstream_url", T_URL, FIELD(upstream_url), 0, 0, "https://api.parallel.ai", NULL},
    {"upstream_connect_timeout_ms", T_LONG, FIELD(upstream_connect_timeout_ms), 1, 600000,
     "5000", NULL},
    {"upstream_timeout_ms", T_LONG, FIELD(upstream_timeout_ms), 1, 3600000, "60000", NULL},
    {"max_body_bytes", T_SIZE, FIELD(max_body_bytes), 1024, 1073741824, "10M", NULL},
    {"max_answer_bytes", T_SIZE, FIELD(max_answer_bytes), 65536, 1073741824, "64M", NULL},
    {"chunk_size", T_LONG, FIELD(chunk_size), 1, 1000, "1000", NULL},
    {"max_inputs_per_submission", T_LONG, FIELD(max_inputs_per_submission), 1, 1000000,
     "10000", NULL},
    {"default_processor", T_NAME, FIELD(default_processor), 0, 0, "", NULL},
    {"upstream_retry_max_wait_ms", T_LONG, FIELD(upstream_retry_max_wait_ms), 0, 600000,
     "10000", NULL},
    {"idempotency_ttl_s", T_LONG, FIELD(idempotency_ttl_s), 1, 30L * 86400, "86400", NULL},
    {"retry_dedupe_window_s", T_LONG, FIELD(retry_dedupe_window_s), 0, 86400, "600", NULL},
    {"reconcile_on_start", T_LONG, FIELD(reconcile_on_start), 0, 1, "1", NULL},
    {"reconcile_after_s", T_LONG, FIELD(reconcile_after_s), 0, 86400, "300", NULL},
    {"reconcile_pass_s", T_LONG, FIELD(reconcile_pass_s), 1, 86400, "60", NULL},
    {"housekeeping_interval_s", T_LONG, FIELD(housekeeping_interval_s), 1, 86400, "60", NULL},
    {"long_reads_per_team", T_LONG, FIELD(long_reads_per_team), 1, 1000000, "1000", NULL},
    {"nginx_listen", T_LISTEN, FIELD(nginx_listen), 0, 0, "127.0.0.1:8080", NULL},
    {"nginx_resolver", T_ADDRS, FIELD(nginx_resolver), 0, 0, "", NULL},
    {"upstream_ca_file", T_PATH, FIELD(upstream_ca_file), 0, 0,
     "/etc/ssl/certs/ca-certificates.crt", NULL},
    {"user", T_NAME, FIELD(user), 0, 0, "", NULL},
    {"track_groups_max", T_LONG, FIELD(track_groups_max), 0, 100000, "500", NULL},
    {"webhook_secrets", T_SECRETS, FIELD(webhook_secrets), 0, 0, "", NULL},
    {"webhook_secrets_file", T_OPTPATH, FIELD(webhook_secrets_file), 0, 0, "", NULL},
    {"webhook_public_url", T_OPTURL, FIELD(webhook_public_url), 0, 0, "", NULL},
    {"log_level", T_ENUM, FIELD(log_level), 0, 0, "info", level_names},
    {"log_format", T_ENUM, FIELD(log_format), 0, 0, "logfmt", format_names},
    {"test_clock_file", T_OPTPATH, FIELD(test_clock_file), 0, 0, "", NULL},
};

#define NKEYS (sizeof keys / sizeof keys[0])

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes the message to err (when there is room) and returns rc. */
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* A printable excerpt of s for a message: at most 60 bytes, control bytes as '?'. Keeps a
 * stray newline or escape sequence in a value out of the start-up log. */
#define SHOW_LEN 64
static const char *show(const char *s, char out[SHOW_LEN])
{
    size_t i = 0;
    for (; s[i] != '\0' && i < 60; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (s[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

static const struct key *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    }
    return NULL;
}

/* The first n bytes of s are digits with an optional leading '-': what tg_parse_long then
 * judges the range of. Checked apart so "abc" and "99999999999999999999" read differently. */
static int is_decimal_n(const char *s, size_t n)
{
    size_t i = (n > 0 && s[0] == '-') ? 1 : 0;
    if (i == n)
        return 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return 1;
}

static int is_decimal(const char *s)
{
    return is_decimal_n(s, strlen(s));
}

/* Octal digits only; values past 07777777 are clamped there (out of any range we use). */
static int parse_octal(const char *s, long *out)
{
    long v = 0;
    if (*s == '\0')
        return TG_EINVAL;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '7')
            return TG_EINVAL;
        if (v <= 0777777)
            v = v * 8 + (*s - '0');
    }
    *out = v;
    return TG_OK;
}

static int set_number(struct tg_conf *c, const struct key *k, const char *value,
                      const char *where, char *err, size_t errlen)
{
    char sv[SHOW_LEN];
    long v = 0;

    if (k->type == T_OCTAL) {
        if (parse_octal(value, &v) != TG_OK)
            return fail(err, errlen, TG_EINVAL, "%s: %s: '%s' is not an octal number", where,
                        k->name, show(value, sv));
        if (v < k->min || v > k->max)
            return fail(err, errlen, TG_EINVAL, "%s: %s: must be between %#lo and %#lo",
                        where, k->name, k->min, k->max);
    } else if (k->type == T_SIZE) {
        char num[32];
        size_t len = strlen(value);
        long mult = 1;
        if (len > 0 && (value[len - 1] == 'k' || value[len - 1] == 'K')) {
            mult = 1024;
            len--;
        } else if (len > 0 && value[len - 1] == 'M') {
            mult = 1024L * 1024;
            len--;
        }
        if (!is_decimal_n(value, len))
            return fail(err, errlen, TG_EINVAL,
                        "%s: %s: '%s' is not a size (a number, optionally followed by k or M)",
                        where, k->name, show(value, sv));
        if (len >= sizeof num) /* more digits than any long has: out of range */
            len = sizeof num - 1;
        memcpy(num, value, len);
        num[len] = '\0';
        if (tg_parse_long(num, -(LONG_MAX / mult), LONG_MAX / mult, &v) != TG_OK ||
            v * mult < k->min || v * mult > k->max)
            return fail(err, errlen, TG_EINVAL, "%s: %s: must be between %ld and %ld", where,
                        k->name, k->min, k->max);
        v *= mult;
    } else {
        if (!is_decimal(value))
            return fail(err, errlen, TG_EINVAL, "%s: %s: '%s' is not a number", where,
                        k->name, show(value, sv));
        if (tg_parse_long(value, k->min, k->max, &v) != TG_OK)
            return fail(err, errlen, TG_EINVAL, "%s: %s: must be between %ld and %ld", where,
                        k->name, k->min, k->max);
    }
    memcpy((char *)c + k->off, &v, sizeof v);
    return TG_OK;
}

static int set_enum(struct tg_conf *c, const struct key *k, const char *value,
                    const char *where, char *err, size_t errlen)
{
    char choices[128];
    size_t used = 0;

    for (int i = 0; k->names[i] != NULL; i++) {
        if (strcmp(k->names[i], value) == 0) {
            memcpy((char *)c + k->off, &i, sizeof i);
            return TG_OK;
        }
    }
    choices[0] = '\0';
    for (int i = 0; k->names[i] != NULL; i++) {
        int n = snprintf(choices + used, sizeof choices - used, "%s%s", i > 0 ? ", " : "",
                         k->names[i]);
        if (n < 0 || (size_t)n >= sizeof choices - used)
            break;
        used += (size_t)n;
    }
    return fail(err, errlen, TG_EINVAL, "%s: %s: must be one of %s", where, k->name, choices);
}

/* "host:port", "[v6]:port" or ":port" with a port in 1..65535. Anything with a '/' in it,
 * or without a ':', is a unix socket path instead. */
static int is_tcp(const char *value)
{
    return strchr(value, '/') == NULL && strchr(value, ':') != NULL;
}

static int check_tcp(const struct key *k, const char *value, const char *where, char *err,
                     size_t errlen)
{
    char sv[SHOW_LEN];
    const char *colon = strrchr(value, ':');
    size_t hostlen = (size_t)(colon - value);
    long port;

    if (memchr(value, ':', hostlen) != NULL &&
        (value[0] != '[' || hostlen < 2 || value[hostlen - 1] != ']'))
        return fail(err, errlen, TG_EINVAL,
                    "%s: %s: '%s': write an IPv6 address in brackets, as [::1]:9000", where,
                    k->name, show(value, sv));
    if (memchr(value, ' ', hostlen) != NULL)
        return fail(err, errlen, TG_EINVAL, "%s: %s: '%s' is not a valid host", where,
                    k->name, show(value, sv));
    if (!is_decimal(colon + 1) || tg_parse_long(colon + 1, 1, 65535, &port) != TG_OK)
        return fail(err, errlen, TG_EINVAL,
                    "%s: %s: '%s' needs a port between 1 and 65535 after the ':'", where,
                    k->name, show(value, sv));
    return TG_OK;
}

/* Whether value starts with a URI scheme and "://" (RFC 3986: a letter, then letters,
 * digits, '+', '-', '.'). */
static int has_scheme(const char *value)
{
    const char *p = value;
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        return 0;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    return strncmp(p, "://", 3) == 0;
}

/* Copies value into the field, joined to basedir first when it is a relative path and
 * basedir is not NULL. */
static int set_path(struct tg_conf *c, const struct key *k, const char *value,
                    const char *basedir, const char *where, char *err, size_t errlen)
{
    char sv[SHOW_LEN];
    char *dst = (char *)c + k->off;
    int n;

    if (value[0] == '/' || basedir == NULL) {
        n = snprintf(dst, k->size, "%s", value);
        if (n < 0 || (size_t)n >= k->size)
            return fail(err, errlen, TG_EINVAL, "%s: %s: longer than %zu characters", where,
                        k->name, k->size - 1);
        return TG_OK;
    }
    while (value[0] == '.' && value[1] == '/')
        value += 2;
    size_t blen = strlen(basedir);
    const char *sep = (blen > 0 && basedir[blen - 1] == '/') ? "" : "/";
    n = snprintf(dst, k->size, "%s%s%s", basedir, sep, value);
    if (n < 0 || (size_t)n >= k->size)
        return fail(err, errlen, TG_EINVAL,
                    "%s: %s: longer than %zu characters once joined to '%s'", where, k->name,
                    k->size - 1, show(basedir, sv));
    return TG_OK;
}

/* http:// or https://, a host, no spaces; one trailing slash is dropped so callers can
 * append "/v1/...". len is strlen(value), already known to fit. */
static int set_url(const struct key *k, const char *value, size_t len, char *dst,
                   const char *where, char *err, size_t errlen)
{
    char sv[SHOW_LEN];
    size_t scheme = strncmp(value, "https://", 8) == 0  ? 8
                    : strncmp(value, "http://", 7) == 0 ? 7
                                                        : 0;
    if (scheme == 0)
        return fail(err, errlen, TG_EINVAL, "%s: %s: '%s' must start with http:// or https://",
                    where, k->name, show(value, sv));
    if (value[scheme] == '\0' || value[scheme] == '/')
        return fail(err, errlen, TG_EINVAL, "%s: %s: '%s' has no host", where, k->name,
                    show(value, sv));
    if (strchr(value, ' ') != NULL)
        return fail(err, errlen, TG_EINVAL, "%s: %s: must not contain spaces", where, k->name);
    if (value[len - 1] == '/')
        len--;
    memcpy(dst, value, len);
    dst[len] = '\0';
    return TG_OK;
}

/* Each space-separated word must be a usable secret. A message names the word's place,
 * never the word: the config's secrets stay out of the log. */
static int set_secrets(const struct key *k, const char *value, size_t len, char *dst,
                       const char *where, char *err, size_t errlen)
{
    int n = 0;
    for (const char *p = value; *p != '\0';) {
        size_t w = strcspn(p, " ");
        if (w == 0) {
            p++;
            continue;
        }
        char word[TG_CONF_STR];
        struct tg_webhook_secret sec;
        memcpy(word, p, w);
        word[w] = '\0';
        int rc = tg_webhook_secret_parse(word, &sec);
        tg_memzero(word, sizeof(word));
        tg_memzero(&sec, sizeof(sec));
        if (rc != TG_OK)
            return fail(err, errlen, TG_EINVAL, "%s: %s: secret %d is not usable (whsec_ and "
                        "base64, or text up to %zu bytes)", where, k->name, n + 1,
                        sizeof(sec.key));
        if (++n > TG_WEBHOOK_SECRETS_MAX)
            return fail(err, errlen, TG_EINVAL, "%s: %s: at most %d secrets", where, k->name,
                        TG_WEBHOOK_SECRETS_MAX);
        p += w;
    }
    memcpy(dst, value, len + 1);
    return TG_OK;
}

static int set_string(struct tg_conf *c, const struct key *k, const char *value,
                      const char *basedir, const char *where, char *err, size_t errlen)
{
    char sv[SHOW_LEN];
    size_t len = strlen(value);
    char *dst = (char *)c + k->off;

    for (const char *p = value; *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch == 0x7f)
            return fail(err, errlen, TG_EINVAL, "%s: %s: contains a control character", where,
                        k->name);
        if (ch == '"')
            return fail(err, errlen, TG_EINVAL, "%s: %s: must not contain '\"'", where,
                        k->name);
    }
    if (len >= k->size)
        return fail(err, errlen, TG_EINVAL, "%s: %s: longer than %zu characters", where,
                    k->name, k->size - 1);

    switch (k->type) {
    case T_NAME:
        for (const char *p = value; *p != '\0'; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
                return fail(err, errlen, TG_EINVAL,
                            "%s: %s: '%s' may contain only letters, digits, '-' and '_'",
                            where, k->name, show(value, sv));
        }
        memcpy(dst, value, len + 1);
        return TG_OK;

    case T_URL:
        return set_url(k, value, len, dst, where, err, errlen);

    case T_OPTURL:
        if (len == 0) {
            dst[0] = '\0';
            return TG_OK;
        }
        return set_url(k, value, len, dst, where, err, errlen);

    case T_SECRETS:
        return set_secrets(k, value, len, dst, where, err, errlen);

    case T_ADDRS:
        /* Written into the nginx site as they are: nothing but address characters. */
        if (strspn(value, "0123456789abcdefABCDEF.:[] ") != len)
            return fail(err, errlen, TG_EINVAL,
                        "%s: %s: '%s' must be IP addresses separated by spaces", where,
                        k->name, show(value, sv));
        memcpy(dst, value, len + 1);
        return TG_OK;

    case T_LISTEN:
        if (len == 0)
            return fail(err, errlen, TG_EINVAL, "%s: %s: must not be empty", where, k->name);
        if (is_tcp(value)) {
            if (check_tcp(k, value, where, err, errlen) != TG_OK)
                return TG_EINVAL;
            memcpy(dst, value, len + 1);
            return TG_OK;
        }
        if (set_path(c, k, value, basedir, where, err, errlen) != TG_OK)
            return TG_EINVAL;
        /* Checked here rather than at bind() so a long path stops start-up with a line. */
        if (strlen(dst) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return fail(err, errlen, TG_EINVAL,
                        "%s: %s: a unix socket path must be shorter than %zu characters",
                        where, k->name, sizeof(((struct sockaddr_un *)0)->sun_path));
        return TG_OK;

    case T_PATH:
        if (len == 0)
            return fail(err, errlen, TG_EINVAL, "%s: %s: must not be empty", where, k->name);
        /* A URI ("postgresql://...") names a server, not a file: kept as given, for the
         * store to say whether this build has a backend for it. */
        if (has_scheme(value))
            return set_path(c, k, value, NULL, where, err, errlen);
        return set_path(c, k, value, basedir, where, err, errlen);

    case T_OPTPATH:
        if (len == 0) {
            dst[0] = '\0';
            return TG_OK;
        }
        return set_path(c, k, value, basedir, where, err, errlen);

    default:
        assert(0 && "not a string type");
        return TG_ERR;
    }
}

/* Sets one key; basedir (NULL: keep relative paths as given) is what relative paths are
 * taken against. On error the field may hold a partial value; callers discard c. */
static int set_value(struct tg_conf *c, const struct key *k, const char *value,
                     const char *basedir, const char *where, char *err, size_t errlen)
{
    switch (k->type) {
    case T_LONG:
    case T_OCTAL:
    case T_SIZE:
        return set_number(c, k, value, where, err, errlen);
    case T_ENUM:
        return set_enum(c, k, value, where, err, errlen);
    default:
        return set_string(c, k, value, basedir, where, err, errlen);
    }
}

void tg_conf_defaults(struct tg_conf *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NKEYS; i++) {
        int rc = set_value(c, &keys[i], keys[i].def, NULL, "default", NULL, 0);
        assert(rc == TG_OK && "a default in the key table is invalid");
        (void)rc;
    }
}

int tg_conf_set(struct tg_conf *c, const char *key, const char *value, const char *where,
                char *err, size_t errlen)
{
    char sv[SHOW_LEN];
    const struct key *k = find_key(key);
    if (k == NULL)
        return fail(err, errlen, TG_EINVAL, "%s: unknown key '%s'", where, show(key, sv));
    return set_value(c, k, value, NULL, where, err, errlen);
}

static char *trim_right(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

static char *skip_space(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* One line, NUL-terminated and without its line end. seen[i] holds the line key i was set
 * on, 0 for not yet. */
static int parse_line(struct tg_conf *c, char *line, const char *name, unsigned long lineno,
                      const char *basedir, unsigned long seen[NKEYS], char *err,
                      size_t errlen)
{
    char where[TG_CONF_STR + 32];
    char sv[SHOW_LEN];
    char *s = skip_space(line);

    if (*s == '\0' || *s == '#')
        return TG_OK;
    snprintf(where, sizeof where, "%s:%lu", name, lineno);

    char *eq = strchr(s, '=');
    if (eq == NULL)
        return fail(err, errlen, TG_EINVAL, "%s: missing '=' (expected key = value)", where);
    *eq = '\0';
    char *key = trim_right(s);
    if (*key == '\0')
        return fail(err, errlen, TG_EINVAL, "%s: missing key before '='", where);

    char *value = skip_space(eq + 1);
    if (*value == '"') {
        char *close = strchr(value + 1, '"');
        if (close == NULL)
            return fail(err, errlen, TG_EINVAL, "%s: %s: missing closing '\"'", where,
                        show(key, sv));
        char *rest = skip_space(close + 1);
        if (*rest != '\0' && *rest != '#')
            return fail(err, errlen, TG_EINVAL, "%s: %s: unexpected text after closing '\"'",
                        where, show(key, sv));
        *close = '\0';
        value++;
    } else {
        /* A '#' starts a comment only after whitespace, so "http://h/#x" keeps its '#'. */
        for (char *p = value; *p != '\0'; p++) {
            if (*p == '#' && (p[-1] == ' ' || p[-1] == '\t')) {
                *p = '\0';
                break;
            }
        }
        trim_right(value);
    }

    const struct key *k = find_key(key);
    if (k == NULL)
        return fail(err, errlen, TG_EINVAL, "%s: unknown key '%s'", where, show(key, sv));
    size_t i = (size_t)(k - keys);
    if (seen[i] != 0)
        return fail(err, errlen, TG_EINVAL, "%s: %s: set twice (first on line %lu)", where,
                    k->name, seen[i]);
    seen[i] = lineno;
    return set_value(c, k, value, basedir, where, err, errlen);
}

static int parse_text(struct tg_conf *c, const char *text, size_t len, const char *name,
                      const char *basedir, char *err, size_t errlen)
{
    unsigned long seen[NKEYS] = {0};
    unsigned long lineno = 0;
    size_t pos = 0;
    char line[MAX_LINE + 1];

    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) /* a UTF-8 BOM some editors add */
        pos = 3;
    while (pos < len) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - start) : len - pos;

        lineno++;
        pos += n + (nl != NULL ? 1 : 0);
        if (memchr(start, '\0', n) != NULL)
            return fail(err, errlen, TG_EINVAL, "%s:%lu: NUL byte in the file", name, lineno);
        if (n > 0 && start[n - 1] == '\r')
            n--;
        if (n > MAX_LINE)
            return fail(err, errlen, TG_EINVAL, "%s:%lu: line longer than %d bytes", name,
                        lineno, MAX_LINE);
        memcpy(line, start, n);
        line[n] = '\0';
        int rc = parse_line(c, line, name, lineno, basedir, seen, err, errlen);
        if (rc != TG_OK)
            return rc;
    }
    return TG_OK;
}

/* The directory part of path as written: "conf/a.conf" gives "conf", "a.conf" gives ".",
 * "/a.conf" gives "/". TG_EINVAL when it does not fit. */
static int dir_of(const char *path, char *out, size_t outlen)
{
    const char *slash = strrchr(path, '/');
    int n;
    if (slash == NULL)
        n = snprintf(out, outlen, ".");
    else if (slash == path)
        n = snprintf(out, outlen, "/");
    else
        n = snprintf(out, outlen, "%.*s", (int)(slash - path), path);
    return (n < 0 || (size_t)n >= outlen) ? TG_EINVAL : TG_OK;
}

/* Relative paths in text resolve against the directory of name as written (none when it
 * has no '/', which means the current directory just the same). */
int tg_conf_parse(struct tg_conf *c, const char *text, size_t len, const char *name,
                  char *err, size_t errlen)
{
    char dir[TG_CONF_STR];
    const char *basedir = NULL;
    if (strchr(name, '/') != NULL) {
        if (dir_of(name, dir, sizeof dir) != TG_OK)
            return fail(err, errlen, TG_EINVAL, "%s: path too long", name);
        basedir = dir;
    }
    return parse_text(c, text, len, name, basedir, err, errlen);
}

static int read_file(const char *path, struct tg_buf *b, char *err, size_t errlen)
{
    char chunk[8192];
    int rc = TG_OK;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return fail(err, errlen, TG_ERR, "%s: %s", path, strerror(errno));
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, f);
        if (n > 0) {
            rc = tg_buf_add(b, chunk, n);
            if (rc == TG_ETOOBIG) {
                rc = fail(err, errlen, TG_EINVAL, "%s: larger than %d bytes", path, MAX_FILE);
                break;
            }
            if (rc != TG_OK) {
                rc = fail(err, errlen, TG_ERR, "%s: out of memory", path);
                break;
            }
        }
        if (n < sizeof chunk) {
            if (ferror(f))
                rc = fail(err, errlen, TG_ERR, "%s: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    return rc;
}

/* Each TASKGATE_<KEY> that is set (even to "") replaces the key's value. Relative paths
 * are made absolute against the current directory, so a later chdir cannot move them. */
static int apply_env(struct tg_conf *c, char *err, size_t errlen)
{
    char cwd[4096];
    const char *basedir = getcwd(cwd, sizeof cwd);

    for (size_t i = 0; i < NKEYS; i++) {
        char var[64];
        int n = snprintf(var, sizeof var, ENV_PREFIX "%s", keys[i].name);
        assert(n > 0 && (size_t)n < sizeof var);
        (void)n;
        for (char *p = var; *p != '\0'; p++) {
            if (*p >= 'a' && *p <= 'z')
                *p = (char)(*p - 'a' + 'A');
        }
        const char *value = getenv(var);
        if (value == NULL)
            continue;
        int rc = set_value(c, &keys[i], value, basedir, var, err, errlen);
        if (rc != TG_OK)
            return rc;
    }
    return TG_OK;
}

/* Builds the whole configuration in a local copy, so c changes only on success. Relative
 * paths in the file become absolute against the file's real directory. */
int tg_conf_load(struct tg_conf *c, const char *path, char *err, size_t errlen)
{
    struct tg_conf tmp;
    struct tg_buf text;
    char *absdir = NULL;
    int rc = TG_OK;

    tg_conf_defaults(&tmp);
    tg_buf_init(&text, MAX_FILE);
    if (path != NULL) {
        char dir[TG_CONF_STR];
        int n = snprintf(tmp.path, sizeof tmp.path, "%s", path);
        if (n < 0 || (size_t)n >= sizeof tmp.path || dir_of(path, dir, sizeof dir) != TG_OK) {
            rc = fail(err, errlen, TG_EINVAL, "%s: path longer than %zu characters", path,
                      sizeof tmp.path - 1);
            goto out;
        }
        rc = read_file(path, &text, err, errlen);
        if (rc != TG_OK)
            goto out;
        absdir = realpath(dir, NULL);
        if (absdir == NULL) {
            rc = fail(err, errlen, TG_ERR, "%s: %s", dir, strerror(errno));
            goto out;
        }
        rc = parse_text(&tmp, text.data != NULL ? text.data : "", text.len, path, absdir, err,
                        errlen);
        if (rc != TG_OK)
            goto out;
    }
    rc = apply_env(&tmp, err, errlen);
    /* The key file defaults to the database's path with ".key" appended; a database
     * server (a URI) has no path of the gateway's to put it beside. */
    if (rc == TG_OK && tmp.key_file[0] == '\0' && has_scheme(tmp.database))
        rc = fail(err, errlen, TG_EINVAL, "key_file: must be set when database is a URI "
                  "(a database server): the same key file on every gateway host");
    if (rc == TG_OK && tmp.key_file[0] == '\0') {
        int n = snprintf(tmp.key_file, sizeof tmp.key_file, "%s.key", tmp.database);
        if (n < 0 || (size_t)n >= sizeof tmp.key_file)
            rc = fail(err, errlen, TG_EINVAL, "key_file: the database path is too long to "
                      "append .key to; set key_file");
    }
    if (rc == TG_OK)
        *c = tmp;
out:
    free(absdir);
    tg_buf_free(&text);
    return rc;
}

/* Strings are quoted when the file syntax would otherwise lose something: empty, a '#',
 * or space at either end. Values never contain '"' or control bytes (set_string). */
static void format_value(const struct tg_conf *c, const struct key *k, char *out,
                         size_t outlen)
{
    const char *p = (const char *)c + k->off;
    long v;
    int e;

    switch (k->type) {
    case T_LONG:
    case T_SIZE:
        memcpy(&v, p, sizeof v);
        snprintf(out, outlen, "%ld", v);
        break;
    case T_OCTAL:
        memcpy(&v, p, sizeof v);
        snprintf(out, outlen, "%#lo", v);
        break;
    case T_ENUM: {
        int count = 0;
        memcpy(&e, p, sizeof e);
        while (k->names[count] != NULL)
            count++;
        snprintf(out, outlen, "%s", (e >= 0 && e < count) ? k->names[e] : "?");
        break;
    }
    case T_SECRETS: {
        int n = 0;
        for (const char *q = p; *q != '\0'; q += strspn(q, " ")) {
            size_t w = strcspn(q, " ");
            n += w > 0;
            q += w;
        }
        snprintf(out, outlen, n > 0 ? "\"\" # %d set, not shown" : "\"\"", n);
        break;
    }
    default: {
        size_t len = strlen(p);
        int quote = len == 0 || strchr(p, '#') != NULL || p[0] == ' ' || p[len - 1] == ' ';
        snprintf(out, outlen, quote ? "\"%s\"" : "%s", p);
        break;
    }
    }
}

int tg_conf_dump(const struct tg_conf *c, char *buf, size_t buflen)
{
    size_t used = 0;

    if (buf == NULL || buflen == 0)
        return TG_ETOOBIG;
    buf[0] = '\0';
    for (size_t i = 0; i < NKEYS; i++) {
        char value[TG_CONF_STR + 3];
        format_value(c, &keys[i], value, sizeof value);
        int n = snprintf(buf + used, buflen - used, "%s = %s\n", keys[i].name, value);
        if (n < 0 || (size_t)n >= buflen - used) {
            buf[used] = '\0';
            return TG_ETOOBIG;
        }
        used += (size_t)n;
    }
    return TG_OK;
}
