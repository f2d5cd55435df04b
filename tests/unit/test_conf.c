/* Unit tests for tg_conf: defaults, the file syntax, every error class with its file:line,
 * environment overrides, relative paths, and the shipped conf/taskgate.conf. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tg_conf.h"
#include "tg_core.h"
#include "tg_test.h"

static const char *const env_vars[] = {
    "TASKGATE_LISTEN", "TASKGATE_SOCKET_MODE", "TASKGATE_THREADS", "TASKGATE_BACKLOG",
    "TASKGATE_DATABASE", "TASKGATE_DB_BUSY_TIMEOUT_MS", "TASKGATE_UPSTREAM_URL",
    "TASKGATE_UPSTREAM_CONNECT_TIMEOUT_MS", "TASKGATE_UPSTREAM_TIMEOUT_MS",
    "TASKGATE_MAX_BODY_BYTES", "TASKGATE_CHUNK_SIZE", "TASKGATE_MAX_INPUTS_PER_SUBMISSION",
    "TASKGATE_DEFAULT_PROCESSOR", "TASKGATE_LOG_LEVEL", "TASKGATE_LOG_FORMAT", NULL};

static void clear_env(void)
{
    for (int i = 0; env_vars[i] != NULL; i++)
        unsetenv(env_vars[i]);
}

static char err[2048];

/* Defaults, then text as the file "t.conf". */
static int parse(struct tg_conf *c, const char *text)
{
    tg_conf_defaults(c);
    err[0] = '\0';
    return tg_conf_parse(c, text, strlen(text), "t.conf", err, sizeof err);
}

/* A fresh directory for files; the caller removes it. */
static int make_tmpdir(char *out, size_t outlen)
{
    const char *base = getenv("TG_TEST_TMP");
    int n = snprintf(out, outlen, "%s/tgconfXXXXXX", base != NULL ? base : "/tmp");
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    return mkdtemp(out) != NULL ? 0 : -1;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static void test_defaults(void)
{
    struct tg_conf c;
    tg_conf_defaults(&c);
    CHECK_STR(c.listen, "/run/taskgate/taskgate.sock");
    CHECK(c.socket_mode == 0660);
    CHECK(c.threads == 32);
    CHECK(c.backlog == 1024);
    CHECK_STR(c.database, "/var/lib/taskgate/taskgate.db");
    CHECK(c.db_busy_timeout_ms == 10000);
    CHECK_STR(c.upstream_url, "https://api.parallel.ai");
    CHECK(c.upstream_connect_timeout_ms == 5000);
    CHECK(c.upstream_timeout_ms == 60000);
    CHECK(c.max_body_bytes == 10485760);
    CHECK(c.max_answer_bytes == 67108864);
    CHECK(c.chunk_size == 1000);
    CHECK(c.max_inputs_per_submission == 10000);
    CHECK_STR(c.default_processor, "");
    CHECK(c.log_level == TG_LOG_INFO);
    CHECK(c.log_format == TG_LOG_LOGFMT);
    CHECK_STR(c.path, "");
}

static void test_full_file(void)
{
    struct tg_conf c;
    int rc = parse(&c, "# every key, none at its default\n"
                       "listen = 127.0.0.1:9000\n"
                       "socket_mode = 0600\n"
                       "threads = 4\n"
                       "backlog = 65535\n"
                       "database = /srv/tg/tg.db\n"
                       "db_busy_timeout_ms = 0\n"
                       "key_file = /etc/tg/tg.key\n"
                       "upstream_url = http://127.0.0.1:8080/\n"
                       "upstream_connect_timeout_ms = 1\n"
                       "upstream_timeout_ms = 3600000\n"
                       "max_body_bytes = 64k\n"
                       "chunk_size = 1\n"
                       "max_inputs_per_submission = 1000000\n"
                       "default_processor = core-fast_2\n"
                       "log_level = debug\n"
                       "log_format = json\n");
    CHECK(rc == TG_OK);
    CHECK_STR(err, "");
    CHECK_STR(c.listen, "127.0.0.1:9000");
    CHECK(c.socket_mode == 0600);
    CHECK(c.threads == 4);
    CHECK(c.backlog == 65535);
    CHECK_STR(c.database, "/srv/tg/tg.db");
    CHECK(c.db_busy_timeout_ms == 0);
    CHECK_STR(c.key_file, "/etc/tg/tg.key");
    CHECK_STR(c.upstream_url, "http://127.0.0.1:8080");
    CHECK(c.upstream_connect_timeout_ms == 1);
    CHECK(c.upstream_timeout_ms == 3600000);
    CHECK(c.max_body_bytes == 65536);
    CHECK(c.chunk_size == 1);
    CHECK(c.max_inputs_per_submission == 1000000);
    CHECK_STR(c.default_processor, "core-fast_2");
    CHECK(c.log_level == TG_LOG_DEBUG);
    CHECK(c.log_format == TG_LOG_JSON);
}

static void test_values(void)
{
    struct tg_conf c;

    CHECK(parse(&c, "max_body_bytes = 10M\n") == TG_OK && c.max_body_bytes == 10485760);
    CHECK(parse(&c, "max_body_bytes = 1K\n") == TG_OK && c.max_body_bytes == 1024);
    CHECK(parse(&c, "max_body_bytes = 1024M\n") == TG_OK && c.max_body_bytes == 1073741824);
    CHECK(parse(&c, "max_body_bytes = 2048\n") == TG_OK && c.max_body_bytes == 2048);
    CHECK(parse(&c, "max_answer_bytes = 64k\n") == TG_OK && c.max_answer_bytes == 65536);
    CHECK(parse(&c, "max_answer_bytes = 1024M\n") == TG_OK &&
          c.max_answer_bytes == 1073741824);
    CHECK(parse(&c, "socket_mode = 660\n") == TG_OK && c.socket_mode == 0660);
    CHECK(parse(&c, "socket_mode = 0\n") == TG_OK && c.socket_mode == 0);
    CHECK(parse(&c, "socket_mode = 0777\n") == TG_OK && c.socket_mode == 0777);
    CHECK(parse(&c, "listen = :9000\n") == TG_OK);
    CHECK_STR(c.listen, ":9000");
    CHECK(parse(&c, "listen = [::1]:65535\n") == TG_OK);
    CHECK_STR(c.listen, "[::1]:65535");
    CHECK(parse(&c, "listen = localhost:1\n") == TG_OK);
    CHECK(parse(&c, "upstream_url = https://api.example.com/v1\n") == TG_OK);
    CHECK_STR(c.upstream_url, "https://api.example.com/v1");
    /* Only one trailing slash is dropped. */
    CHECK(parse(&c, "upstream_url = https://h//\n") == TG_OK);
    CHECK_STR(c.upstream_url, "https://h/");
    CHECK(parse(&c, "default_processor =\n") == TG_OK);
    CHECK_STR(c.default_processor, "");
    CHECK(parse(&c, "default_processor = "
                    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-\n") ==
          TG_OK);
    CHECK(strlen(c.default_processor) == 63);
}

static void test_syntax(void)
{
    struct tg_conf c;
    int rc = parse(&c, "\xEF\xBB\xBF# a BOM, CRLF, comments and quotes\r\n"
                       "\r\n"
                       "   # indented comment\n"
                       "\t threads\t=\t7   # trailing comment\r\n"
                       "database = \"/data/with # hash.db\"  # comment after quotes\n"
                       "listen = \" /tmp/lead space.sock\"\n"
                       "upstream_url = http://h/#frag\n"
                       "default_processor = \"\"\n"
                       "log_level=warn\n"
                       "log_format = \"json\"");
    CHECK(rc == TG_OK);
    CHECK_STR(err, "");
    CHECK(c.threads == 7);
    CHECK_STR(c.database, "/data/with # hash.db");
    CHECK_STR(c.upstream_url, "http://h/#frag");
    CHECK_STR(c.default_processor, "");
    CHECK(c.log_level == TG_LOG_WARN);
    CHECK(c.log_format == TG_LOG_JSON);
    /* Quoted, so the leading space is kept; relative to the current directory since
     * "t.conf" names no directory. */
    CHECK_STR(c.listen, " /tmp/lead space.sock");

    /* A line of exactly 4096 bytes is fine. */
    char big[4096 + 3];
    memset(big, '#', 4096);
    memcpy(big + 4096, "\r\n", 3);
    CHECK(parse(&c, big) == TG_OK);
    CHECK(parse(&c, "") == TG_OK);
}

struct err_case {
    const char *text;
    const char *want;
};

static void test_errors(void)
{
    static const struct err_case cases[] = {
        {"# c\n\nbogus = 1\n", "t.conf:3: unknown key 'bogus'"},
        {"threads = 2\n# x\nthreads = 3\n", "t.conf:3: threads: set twice (first on line 1)"},
        {"threads 2\n", "t.conf:1: missing '=' (expected key = value)"},
        {" = 2\n", "t.conf:1: missing key before '='"},
        {"threads = abc\n", "t.conf:1: threads: 'abc' is not a number"},
        {"threads = +5\n", "t.conf:1: threads: '+5' is not a number"},
        {"threads = 1.5\n", "t.conf:1: threads: '1.5' is not a number"},
        {"threads =\n", "t.conf:1: threads: '' is not a number"},
        {"threads = 0\n", "t.conf:1: threads: must be between 1 and 4096"},
        {"threads = 4097\n", "t.conf:1: threads: must be between 1 and 4096"},
        {"threads = -1\n", "t.conf:1: threads: must be between 1 and 4096"},
        {"threads = 99999999999999999999999\n", "t.conf:1: threads: must be between 1 and 4096"},
        {"backlog = 65536\n", "t.conf:1: backlog: must be between 1 and 65535"},
        {"db_busy_timeout_ms = 600001\n",
         "t.conf:1: db_busy_timeout_ms: must be between 0 and 600000"},
        {"upstream_connect_timeout_ms = 0\n",
         "t.conf:1: upstream_connect_timeout_ms: must be between 1 and 600000"},
        {"upstream_timeout_ms = 3600001\n",
         "t.conf:1: upstream_timeout_ms: must be between 1 and 3600000"},
        {"chunk_size = 1001\n", "t.conf:1: chunk_size: must be between 1 and 1000"},
        {"max_inputs_per_submission = 1000001\n",
         "t.conf:1: max_inputs_per_submission: must be between 1 and 1000000"},
        {"max_body_bytes = 1023\n", "t.conf:1: max_body_bytes: must be between 1024 and 1073741824"},
        {"max_answer_bytes = 65535\n",
         "t.conf:1: max_answer_bytes: must be between 65536 and 1073741824"},
        {"max_body_bytes = 1025M\n", "t.conf:1: max_body_bytes: must be between 1024 and 1073741824"},
        {"max_body_bytes = 99999999999999999k\n",
         "t.conf:1: max_body_bytes: must be between 1024 and 1073741824"},
        {"max_body_bytes = 10G\n",
         "t.conf:1: max_body_bytes: '10G' is not a size (a number, optionally followed by k or M)"},
        {"max_body_bytes = M\n",
         "t.conf:1: max_body_bytes: 'M' is not a size (a number, optionally followed by k or M)"},
        {"socket_mode = 0689\n", "t.conf:1: socket_mode: '0689' is not an octal number"},
        {"socket_mode = 01000\n", "t.conf:1: socket_mode: must be between 0 and 0777"},
        {"log_level = verbose\n", "t.conf:1: log_level: must be one of error, warn, info, debug"},
        {"log_level = INFO\n", "t.conf:1: log_level: must be one of error, warn, info, debug"},
        {"log_format = text\n", "t.conf:1: log_format: must be one of logfmt, json"},
        {"upstream_url = ftp://x\n",
         "t.conf:1: upstream_url: 'ftp://x' must start with http:// or https://"},
        {"upstream_url = https://\n", "t.conf:1: upstream_url: 'https://' has no host"},
        {"upstream_url = \"https://a b\"\n", "t.conf:1: upstream_url: must not contain spaces"},
        {"listen = :0\n", "t.conf:1: listen: ':0' needs a port between 1 and 65535 after the ':'"},
        {"listen = host:65536\n",
         "t.conf:1: listen: 'host:65536' needs a port between 1 and 65535 after the ':'"},
        {"listen = host:\n", "t.conf:1: listen: 'host:' needs a port between 1 and 65535 after the ':'"},
        {"listen = ::1:80\n",
         "t.conf:1: listen: '::1:80': write an IPv6 address in brackets, as [::1]:9000"},
        {"listen =\n", "t.conf:1: listen: must not be empty"},
        {"database = \"\"\n", "t.conf:1: database: must not be empty"},
        {"default_processor = a.b\n",
         "t.conf:1: default_processor: 'a.b' may contain only letters, digits, '-' and '_'"},
        {"default_processor = "
         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_\n",
         "t.conf:1: default_processor: longer than 63 characters"},
        {"database = /a\tb\n", "t.conf:1: database: contains a control character"},
        {"database = \"/a\n", "t.conf:1: database: missing closing '\"'"},
        {"database = \"/a\" b\n", "t.conf:1: database: unexpected text after closing '\"'"},
        {"database = /a\"b\n", "t.conf:1: database: must not contain '\"'"},
        {NULL, NULL}};
    struct tg_conf c;

    for (const struct err_case *e = cases; e->text != NULL; e++) {
        int rc = parse(&c, e->text);
        CHECK(rc == TG_EINVAL);
        CHECK_STR(err, e->want);
    }

    /* Overlong strings, after a comment so the line number is 2. */
    char text[TG_CONF_STR + 64];
    int n = snprintf(text, sizeof text, "#\ndatabase = /%0*d\n", TG_CONF_STR - 1, 0);
    CHECK(n > 0 && (size_t)n < sizeof text);
    CHECK(parse(&c, text) == TG_EINVAL);
    CHECK_STR(err, "t.conf:2: database: longer than 511 characters");
    n = snprintf(text, sizeof text, "#\ndatabase = /%0*d\n", TG_CONF_STR - 2, 0);
    CHECK(parse(&c, text) == TG_OK && strlen(c.database) == TG_CONF_STR - 1);
    n = snprintf(text, sizeof text, "database = %0*d\n", TG_CONF_STR - 7, 0);
    tg_conf_defaults(&c);
    CHECK(tg_conf_parse(&c, text, (size_t)n, "etc/tg/t.conf", err, sizeof err) == TG_EINVAL);
    CHECK_STR(err, "etc/tg/t.conf:1: database: longer than 511 characters once joined to "
                   "'etc/tg'");
    n = snprintf(text, sizeof text, "listen = /%0*d\n", 107, 0);
    CHECK(parse(&c, text) == TG_EINVAL);
    CHECK_STR(err, "t.conf:1: listen: a unix socket path must be shorter than 108 characters");
    n = snprintf(text, sizeof text, "listen = /%0*d\n", 106, 0);
    CHECK(parse(&c, text) == TG_OK);

    /* A NUL byte: the length is passed explicitly. */
    static const char nul[] = "threads = 2\nlog_level = in\0fo\n";
    tg_conf_defaults(&c);
    CHECK(tg_conf_parse(&c, nul, sizeof nul - 1, "t.conf", err, sizeof err) == TG_EINVAL);
    CHECK_STR(err, "t.conf:2: NUL byte in the file");

    /* A line of 4097 bytes. */
    char big[4097 + 16];
    memcpy(big, "threads = 1\n", 12);
    memset(big + 12, '#', 4097);
    big[12 + 4097] = '\0';
    CHECK(parse(&c, big) == TG_EINVAL);
    CHECK_STR(err, "t.conf:2: line longer than 4096 bytes");

    /* Control characters in a value are not echoed back. */
    CHECK(parse(&c, "threads = \x1b[31m\n") == TG_EINVAL);
    CHECK_STR(err, "t.conf:1: threads: '?[31m' is not a number");

    /* tg_conf_set names its where. */
    tg_conf_defaults(&c);
    CHECK(tg_conf_set(&c, "threads", "8", "x", err, sizeof err) == TG_OK && c.threads == 8);
    CHECK(tg_conf_set(&c, "nope", "8", "x:9", err, sizeof err) == TG_EINVAL);
    CHECK_STR(err, "x:9: unknown key 'nope'");
    CHECK(tg_conf_set(&c, "threads", "0", "x:9", NULL, 0) == TG_EINVAL);
}

static void test_missing_file(void)
{
    struct tg_conf c;
    tg_conf_defaults(&c);
    c.threads = 77;
    CHECK(tg_conf_load(&c, "/nonexistent/taskgate.conf", err, sizeof err) == TG_ERR);
    CHECK_STR(err, "/nonexistent/taskgate.conf: No such file or directory");
    CHECK(c.threads == 77); /* untouched on failure */
    CHECK(tg_conf_load(&c, "/", err, sizeof err) == TG_ERR);
    CHECK_STR(err, "/: Is a directory");
}

static void test_relative_paths(void)
{
    char dir[PATH_MAX], file[PATH_MAX + 32], cwd[PATH_MAX], want[PATH_MAX + 32];
    struct tg_conf c;

    /* tg_conf_parse: against the directory of the name as written. */
    tg_conf_defaults(&c);
    static const char rel[] = "database = ./data/x.db\nlisten = gw.sock\n";
    CHECK(tg_conf_parse(&c, rel, sizeof rel - 1, "etc/tg/t.conf", err, sizeof err) == TG_OK);
    CHECK_STR(c.database, "etc/tg/data/x.db");
    CHECK_STR(c.listen, "etc/tg/gw.sock");
    static const char abs[] = "database = /abs/x.db\nlisten = h:1\n";
    CHECK(tg_conf_parse(&c, abs, sizeof abs - 1, "etc/tg/t.conf", err, sizeof err) == TG_OK);
    CHECK_STR(c.database, "/abs/x.db");
    CHECK_STR(c.listen, "h:1");

    /* tg_conf_load: against the file's real directory, made absolute. */
    CHECK(make_tmpdir(dir, sizeof dir) == 0);
    char *real = realpath(dir, NULL);
    CHECK(real != NULL);
    if (real == NULL)
        return;
    snprintf(file, sizeof file, "%s/t.conf", dir);
    CHECK(write_file(file, "database = data/x.db\nlisten = gw.sock\n") == 0);
    err[0] = '\0';
    CHECK(tg_conf_load(&c, file, err, sizeof err) == TG_OK);
    CHECK_STR(err, "");
    CHECK_STR(c.path, file);
    snprintf(want, sizeof want, "%s/data/x.db", real);
    CHECK_STR(c.database, want);
    snprintf(want, sizeof want, "%s/gw.sock", real);
    CHECK_STR(c.listen, want);
    /* key_file: by default the database's path with ".key"; relative like any path. */
    snprintf(want, sizeof want, "%s/data/x.db.key", real);
    CHECK_STR(c.key_file, want);
    CHECK(write_file(file, "database = data/x.db\nkey_file = keys/k\n") == 0);
    CHECK(tg_conf_load(&c, file, err, sizeof err) == TG_OK);
    snprintf(want, sizeof want, "%s/keys/k", real);
    CHECK_STR(c.key_file, want);
    CHECK(write_file(file, "database = data/x.db\nlisten = gw.sock\n") == 0);

    /* Loaded by a relative name from inside the directory: the same absolute result. */
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(dir) == 0);
    CHECK(tg_conf_load(&c, "t.conf", err, sizeof err) == TG_OK);
    CHECK_STR(c.path, "t.conf");
    snprintf(want, sizeof want, "%s/data/x.db", real);
    CHECK_STR(c.database, want);

    /* From the environment: against the current directory, not the file's. */
    CHECK(chdir("/") == 0);
    setenv("TASKGATE_DATABASE", "env.db", 1);
    CHECK(tg_conf_load(&c, file, err, sizeof err) == TG_OK);
    CHECK_STR(c.database, "/env.db");
    /* A URI names a server, not a file: kept as given, from the file or the environment
     * (the store says whether this build has a backend for it). */
    setenv("TASKGATE_DATABASE", "postgresql://tg@db.example/taskgate", 1);
    /* No file of the gateway's holds a server's records: the key file must be named. */
    CHECK(tg_conf_load(&c, file, err, sizeof err) == TG_EINVAL);
    CHECK(strstr(err, "key_file: must be set when database is a URI") != NULL);
    setenv("TASKGATE_KEY_FILE", "/etc/taskgate/records.key", 1);
    CHECK(tg_conf_load(&c, file, err, sizeof err) == TG_OK);
    CHECK_STR(c.database, "postgresql://tg@db.example/taskgate");
    CHECK_STR(c.key_file, "/etc/taskgate/records.key");
    unsetenv("TASKGATE_KEY_FILE");
    unsetenv("TASKGATE_DATABASE");
    static const char uri[] = "database = postgres://tg@db.example/taskgate\n";
    CHECK(tg_conf_parse(&c, uri, sizeof uri - 1, "etc/tg/t.conf", err, sizeof err) == TG_OK);
    CHECK_STR(c.database, "postgres://tg@db.example/taskgate");
    static const char notscheme[] = "database = 1x://y\n";
    CHECK(tg_conf_parse(&c, notscheme, sizeof notscheme - 1, "etc/tg/t.conf", err,
                        sizeof err) == TG_OK);
    CHECK_STR(c.database, "etc/tg/1x://y");
    CHECK(chdir(cwd) == 0);

    unlink(file);
    rmdir(dir);
    free(real);
}

static void test_env(void)
{
    char dir[PATH_MAX], file[PATH_MAX + 32];
    struct tg_conf c;

    CHECK(make_tmpdir(dir, sizeof dir) == 0);
    snprintf(file, sizeof file, "%s/t.conf", dir);
    CHECK(write_file(file, "threads = 4\nupstream_url = https://file.example\n") == 0);

    setenv("TASKGATE_THREADS", "12", 1);
    setenv("TASKGATE_UPSTREAM_URL", "http://127.0.0.1:8080/", 1);
    setenv("TASKGATE_LOG_FORMAT", "json", 1);
    setenv("TASKGATE_DEFAULT_PROCESSOR", "", 1);
    CHECK(tg_conf_load(&c, file, err, sizeof err) == TG_OK);
    CHECK(c.threads == 12);
    CHECK_STR(c.upstream_url, "http://127.0.0.1:8080");
    CHECK(c.log_format == TG_LOG_JSON);
    CHECK_STR(c.default_processor, "");

    /* Without a file, only defaults and environment. */
    CHECK(tg_conf_load(&c, NULL, err, sizeof err) == TG_OK);
    CHECK(c.threads == 12);
    CHECK_STR(c.path, "");
    CHECK_STR(c.database, "/var/lib/taskgate/taskgate.db");

    /* A bad value names the variable, and c stays as it was. */
    setenv("TASKGATE_THREADS", "abc", 1);
    CHECK(tg_conf_load(&c, file, err, sizeof err) == TG_EINVAL);
    CHECK_STR(err, "TASKGATE_THREADS: threads: 'abc' is not a number");
    CHECK(c.threads == 12);
    setenv("TASKGATE_THREADS", "5000", 1);
    CHECK(tg_conf_load(&c, file, err, sizeof err) == TG_EINVAL);
    CHECK_STR(err, "TASKGATE_THREADS: threads: must be between 1 and 4096");
    unsetenv("TASKGATE_THREADS");
    setenv("TASKGATE_LOG_LEVEL", "loud", 1);
    CHECK(tg_conf_load(&c, file, err, sizeof err) == TG_EINVAL);
    CHECK_STR(err, "TASKGATE_LOG_LEVEL: log_level: must be one of error, warn, info, debug");

    /* Errors in the file come first, with their line. */
    CHECK(write_file(file, "threads = 4\nthreads = 5\n") == 0);
    CHECK(tg_conf_load(&c, file, err, sizeof err) == TG_EINVAL);
    char want[sizeof file + 64];
    snprintf(want, sizeof want, "%s:2: threads: set twice (first on line 1)", file);
    CHECK_STR(err, want);

    clear_env();
    unlink(file);
    rmdir(dir);
}

static void test_dump(void)
{
    struct tg_conf c, d;
    char a[4096], b[4096];

    tg_conf_defaults(&c);
    CHECK(tg_conf_dump(&c, a, sizeof a) == TG_OK);
    CHECK_STR(a, "listen = /run/taskgate/taskgate.sock\n"
                 "socket_mode = 0660\n"
                 "socket_group = \"\"\n"
                 "threads = 32\n"
                 "worker_reserve = 0\n"
                 "backlog = 1024\n"
                 "database = /var/lib/taskgate/taskgate.db\n"
                 "db_busy_timeout_ms = 10000\n"
                 "key_file = \"\"\n"
                 "db_max_pages = 0\n"
                 "upstream_url = https://api.parallel.ai\n"
                 "upstream_connect_timeout_ms = 5000\n"
                 "upstream_timeout_ms = 60000\n"
                 "max_body_bytes = 10485760\n"
                 "max_answer_bytes = 67108864\n"
                 "chunk_size = 1000\n"
                 "max_inputs_per_submission = 10000\n"
                 "default_processor = \"\"\n"
                 "upstream_retry_max_wait_ms = 10000\n"
                 "idempotency_ttl_s = 86400\n"
                 "retry_dedupe_window_s = 600\n"
                 "reconcile_on_start = 1\n"
                 "reconcile_after_s = 300\n"
                 "reconcile_pass_s = 60\n"
                 "housekeeping_interval_s = 60\n"
                 "long_reads_per_team = 1000\n"
                 "nginx_listen = 127.0.0.1:8080\n"
                 "nginx_resolver = \"\"\n"
                 "upstream_ca_file = /etc/ssl/certs/ca-certificates.crt\n"
                 "user = \"\"\n"
                 "track_groups_max = 500\n"
                 "webhook_secrets = \"\"\n"
                 "webhook_secrets_file = \"\"\n"
                 "webhook_public_url = \"\"\n"
                 "log_level = info\n"
                 "log_format = logfmt\n"
                 "test_clock_file = \"\"\n");

    /* What it writes reads back to the same values. */
    CHECK(parse(&c, "listen = \"/tmp/a #b.sock\"\nsocket_mode = 0\nlog_level = error\n"
                    "default_processor = p1\nmax_body_bytes = 3k\n") == TG_OK);
    CHECK(tg_conf_dump(&c, a, sizeof a) == TG_OK);
    CHECK(strstr(a, "listen = \"/tmp/a #b.sock\"\n") != NULL);
    CHECK(strstr(a, "socket_mode = 0\n") != NULL);
    CHECK(parse(&d, a) == TG_OK);
    CHECK_STR(err, "");
    CHECK(tg_conf_dump(&d, b, sizeof b) == TG_OK);
    CHECK_STR(a, b);

    /* Too small a buffer: TG_ETOOBIG, still a string. */
    CHECK(tg_conf_dump(&c, a, 40) == TG_ETOOBIG);
    CHECK(strlen(a) < 40);
    CHECK(tg_conf_dump(&c, a, 0) == TG_ETOOBIG);
}

/* Webhook secrets are checked one by one at start-up and never shown: not in the dump,
 * not in a message about a bad one. */
static void test_webhook_keys(void)
{
    struct tg_conf c;
    char a[4096];
    tg_conf_defaults(&c);
    CHECK(parse(&c, "webhook_secrets = whsec_c2VjcmV0LW9uZQ== secret-two-plain\n"
                    "webhook_public_url = https://gw.example.com/\ntrack_groups_max = 0\n") ==
          TG_OK);
    CHECK_STR(c.webhook_secrets, "whsec_c2VjcmV0LW9uZQ== secret-two-plain");
    CHECK_STR(c.webhook_public_url, "https://gw.example.com");
    CHECK(c.track_groups_max == 0);
    CHECK(tg_conf_dump(&c, a, sizeof a) == TG_OK);
    CHECK(strstr(a, "webhook_secrets = \"\" # 2 set, not shown\n") != NULL);
    CHECK(strstr(a, "c2VjcmV0") == NULL && strstr(a, "secret-two") == NULL);
    tg_conf_defaults(&c);
    CHECK(parse(&c, "webhook_secrets = whsec_c2VjcmV0LW9uZQ== whsec_no*base64!!\n") ==
          TG_EINVAL);
    CHECK_STR(err, "t.conf:1: webhook_secrets: secret 2 is not usable (whsec_ and base64, or "
                   "text up to 128 bytes)");
    CHECK(strstr(err, "no*base64") == NULL);
    CHECK(parse(&c, "webhook_secrets = a b c d e f g h i\n") == TG_EINVAL);
    CHECK_STR(err, "t.conf:1: webhook_secrets: at most 8 secrets");
    CHECK(parse(&c, "webhook_public_url = gw.example.com\n") == TG_EINVAL);
    CHECK(parse(&c, "track_groups_max = 100001\n") == TG_EINVAL);
}

static void test_shipped_conf(void)
{
    const char *src = getenv("TG_SOURCE_DIR");
    char path[PATH_MAX];
    struct tg_conf c, d;
    char a[4096], b[4096];

    if (src == NULL) {
        fprintf(stderr, "note: TG_SOURCE_DIR unset, not checking conf/taskgate.conf\n");
        return;
    }
    snprintf(path, sizeof path, "%s/conf/taskgate.conf", src);
    err[0] = '\0';
    CHECK(tg_conf_load(&c, path, err, sizeof err) == TG_OK);
    CHECK_STR(err, "");
    /* It documents the defaults, so it must set exactly them. */
    tg_conf_defaults(&d);
    /* ... with key_file's empty default resolved, as every load does. */
    snprintf(d.key_file, sizeof d.key_file, "%.400s.key", d.database);
    CHECK(tg_conf_dump(&c, a, sizeof a) == TG_OK);
    CHECK(tg_conf_dump(&d, b, sizeof b) == TG_OK);
    CHECK_STR(a, b);

    /* And it names every key, rather than leaving some to the defaults. */
    static char text[65536];
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    size_t n = fread(text + 1, 1, sizeof text - 2, f);
    fclose(f);
    text[0] = '\n';
    text[n + 1] = '\0';
    for (char *line = b; *line != '\0';) {
        char *eq = strstr(line, " = ");
        char *nl = strchr(line, '\n');
        if (eq == NULL || nl == NULL)
            break;
        char want[128];
        snprintf(want, sizeof want, "\n%.*s = ", (int)(eq - line), line);
        if (strstr(text, want) == NULL)
            fprintf(stderr, "conf/taskgate.conf does not set %s\n", want + 1);
        CHECK(strstr(text, want) != NULL);
        line = nl + 1;
    }
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"defaults", test_defaults},
        {"full_file", test_full_file},
        {"values", test_values},
        {"syntax", test_syntax},
        {"errors", test_errors},
        {"missing_file", test_missing_file},
        {"relative_paths", test_relative_paths},
        {"env", test_env},
        {"dump", test_dump},
        {"webhook_keys", test_webhook_keys},
        {"shipped_conf", test_shipped_conf},
        {NULL, NULL}};

    clear_env(); /* a developer's own TASKGATE_* must not change the results */
    return tg_test_run(cases);
}
