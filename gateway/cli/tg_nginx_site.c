/* `taskgate nginx-site`: the nginx site, rendered from the daemon's config so that nginx and
 * the daemon cannot disagree on the socket, the body limit, the timeouts or the upstream.
 * The template is nginx/taskgate-site.conf.in, compiled in; each word between two @ is a value
 * below, and a name the renderer does not know stops it (a template and a renderer out of
 * step fail the tests, not an operator's nginx). */
#include "tg_nginx_site.h"

#include <stdio.h>
#include <string.h>

#include "tg_core.h"

extern const char *const tg_nginx_site_template;

#define RESOLV_CONF "/etc/resolv.conf"
#define SITE_MAX (1024 * 1024)
#define VALUE_MAX 2048

/* The parts of upstream_url (T_URL: http:// or https://, a host, no trailing slash). */
struct upstream {
    int tls;
    char host[256];      /* as written, brackets of an IPv6 literal included */
    char port[8];        /* "" when the URL names none */
    const char *base;    /* the path after the authority, "" or "/..." */
    int literal;         /* the host is an IP address: no DNS */
};

static int split_url(const char *url, struct upstream *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    u->tls = strncmp(url, "https://", 8) == 0;
    const char *auth = url + (u->tls ? 8 : 7);
    size_t alen = strcspn(auth, "/?#");
    u->base = auth + alen;
    if (strpbrk(u->base, "?#;{}'\"\\$") != NULL || strpbrk(auth, "@") != NULL) {
        snprintf(err, errlen, "upstream_url: a base URL with a query, credentials or nginx "
                 "syntax in it cannot be proxied");
        return TG_EINVAL;
    }
    const char *colon = NULL;
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (close == NULL) {
            snprintf(err, errlen, "upstream_url: an unclosed IPv6 address");
            return TG_EINVAL;
        }
        colon = close + 1 < auth + alen && close[1] == ':' ? close + 1 : NULL;
        u->literal = 1;
    } else {
        colon = memchr(auth, ':', alen);
    }
    size_t hlen = colon != NULL ? (size_t)(colon - auth) : alen;
    size_t plen = colon != NULL ? alen - hlen - 1 : 0;
    if (hlen == 0 || hlen >= sizeof(u->host) || plen >= sizeof(u->port) ||
        (plen > 0 && strspn(colon + 1, "0123456789") < plen)) {
        snprintf(err, errlen, "upstream_url: the host or port cannot be read");
        return TG_EINVAL;
    }
    memcpy(u->host, auth, hlen);
    memcpy(u->port, colon != NULL ? colon + 1 : "", plen);
    if (!u->literal)
        u->literal = strspn(u->host, "0123456789.") == hlen;
    if (strspn(u->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]:") <
        hlen) {
        snprintf(err, errlen, "upstream_url: the host has characters a host name cannot have");
        return TG_EINVAL;
    }
    return TG_OK;
}

/* The DNS servers nginx asks for the upstream's address: the config's, else those of
 * /etc/resolv.conf (IPv6 ones bracketed, link-local ones left out). */
static int resolvers(const struct tg_conf *c, char *out, size_t outlen, char *err,
                     size_t errlen)
{
    out[0] = '\0';
    if (c->nginx_resolver[0] != '\0') {
        snprintf(out, outlen, "%s", c->nginx_resolver);
        return TG_OK;
    }
    FILE *f = fopen(RESOLV_CONF, "r");
    char line[512];
    size_t used = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        char addr[128];
        if (sscanf(line, " nameserver %127s", addr) != 1 || strchr(addr, '%') != NULL ||
            strspn(addr, "0123456789abcdefABCDEF.:") != strlen(addr))
            continue;
        int v6 = strchr(addr, ':') != NULL;
        int n = snprintf(out + used, outlen - used, "%s%s%s%s", used > 0 ? " " : "",
                         v6 ? "[" : "", addr, v6 ? "]" : "");
        if (n < 0 || (size_t)n >= outlen - used)
            break;
        used += (size_t)n;
    }
    if (f != NULL)
        fclose(f);
    if (used == 0) {
        snprintf(err, errlen, "nginx must resolve the upstream's host name, and %s names no "
                 "nameserver: set nginx_resolver", RESOLV_CONF);
        return TG_EINVAL;
    }
    return TG_OK;
}

/* What the template's words stand for. */
struct values {
    char config[VALUE_MAX];
    char daemon[VALUE_MAX];
    char listen[VALUE_MAX];
    char max_body[32];
    char submit_timeout[32];
    char max_answer[32];
    char long_reads[32];
    char upstream_block[VALUE_MAX];
    char proxy_pass[VALUE_MAX];
    char upstream_host[VALUE_MAX];
    char proxy_tls[VALUE_MAX];
};

static int is_unix(const char *address)
{
    return strchr(address, ':') == NULL || address[0] == '/' || address[0] == '.';
}

/* How long nginx waits for a submission's answer: every call it may make (a group, one
 * per chunk), each with its connect time, its timeout and its retries, plus a margin. */
static long submit_timeout_s(const struct tg_conf *c)
{
    long calls = 1 + (c->max_inputs_per_submission + c->chunk_size - 1) / c->chunk_size;
    long per_call_ms = c->upstream_connect_timeout_ms + c->upstream_timeout_ms +
                       c->upstream_retry_max_wait_ms;
    return calls * per_call_ms / 1000 + 30;
}

static int fill(const struct tg_conf *c, struct values *v, char *err, size_t errlen)
{
    struct upstream u;
    memset(v, 0, sizeof(*v));
    if (split_url(c->upstream_url, &u, err, errlen) != TG_OK)
        return TG_EINVAL;
    snprintf(v->config, sizeof(v->config), "%s", c->path[0] != '\0' ? c->path : "defaults");
    snprintf(v->daemon, sizeof(v->daemon), "%s%s", is_unix(c->listen) ? "unix:" : "",
             c->listen);
    snprintf(v->listen, sizeof(v->listen), "%s%s", is_unix(c->nginx_listen) ? "unix:" : "",
             c->nginx_listen);
    snprintf(v->max_body, sizeof(v->max_body), "%ld", c->max_body_bytes);
    snprintf(v->submit_timeout, sizeof(v->submit_timeout), "%lds", submit_timeout_s(c));
    snprintf(v->max_answer, sizeof(v->max_answer), "%ld", c->max_answer_bytes);
    snprintf(v->long_reads, sizeof(v->long_reads), "%ld", c->long_reads_per_team);
    const char *port = u.port[0] != '\0' ? u.port : u.tls ? "443" : "80";
    /* Host: the port only when it is not the scheme's. */
    snprintf(v->upstream_host, sizeof(v->upstream_host), "%s%s%s", u.host,
             u.port[0] != '\0' ? ":" : "", u.port);
    const char *scheme = u.tls ? "https" : "http";
    if (u.literal) {
        /* An address: one upstream block, with connections kept open between reads. */
        snprintf(v->upstream_block, sizeof(v->upstream_block),
                 "\n# The upstream (`upstream_url`), an address: connections are kept for the "
                 "next read.\nupstream taskgate_parallel {\n    server %s:%s;\n    keepalive "
                 "32;\n}\n",
                 u.host, port);
        snprintf(v->proxy_pass, sizeof(v->proxy_pass), "%s://taskgate_parallel%s", scheme,
                 u.base);
    } else {
        /* A name: proxy_pass has a variable (the path), so nginx resolves the name when it
         * reads, with the resolver below, and follows the upstream's address changes. */
        v->upstream_block[0] = '\0';
        snprintf(v->proxy_pass, sizeof(v->proxy_pass), "%s://%s:%s%s", scheme, u.host, port,
                 u.base);
    }
    size_t used = 0;
    if (!u.literal) {
        char dns[TG_CONF_STR];
        if (resolvers(c, dns, sizeof(dns), err, errlen) != TG_OK)
            return TG_EINVAL;
        used += (size_t)snprintf(v->proxy_tls + used, sizeof(v->proxy_tls) - used,
                                 "        # The upstream is a name, looked up when a read "
                                 "needs it (`nginx_resolver`).\n"
                                 "        resolver %s valid=60s;\n"
                                 "        resolver_timeout 5s;\n",
                                 dns);
    }
    if (u.tls && used < sizeof(v->proxy_tls)) {
        /* Verified against the system's CAs, with the name sent (SNI) and checked. */
        char host[256];
        snprintf(host, sizeof(host), "%s", u.host);
        if (host[0] == '[') {
            memmove(host, host + 1, strlen(host));
            host[strcspn(host, "]")] = '\0';
        }
        used += (size_t)snprintf(v->proxy_tls + used, sizeof(v->proxy_tls) - used,
                                 "        # TLS to the upstream, verified against `upstream_ca_file`.\n"
                                 "        proxy_ssl_server_name on;\n"
                                 "        proxy_ssl_name %s;\n"
                                 "        proxy_ssl_verify on;\n"
                                 "        proxy_ssl_verify_depth 4;\n"
                                 "        proxy_ssl_trusted_certificate %s;\n"
                                 "        proxy_ssl_protocols TLSv1.2 TLSv1.3;\n"
                                 "        proxy_ssl_session_reuse on;\n",
                                 host, c->upstream_ca_file);
    }
    if (used >= sizeof(v->proxy_tls)) {
        snprintf(err, errlen, "the upstream's TLS settings are too long to render");
        return TG_EINVAL;
    }
    return TG_OK;
}

int tg_nginx_site_render(const struct tg_conf *c, struct tg_buf *out, char *err, size_t errlen)
{
    struct values v;
    if (fill(c, &v, err, errlen) != TG_OK)
        return TG_EINVAL;
    const struct {
        const char *name;
        const char *value;
    } words[] = {
        {"config", v.config},
        {"daemon", v.daemon},
        {"listen", v.listen},
        {"max_body", v.max_body},
        {"submit_timeout", v.submit_timeout},
        {"max_answer", v.max_answer},
        {"long_reads_per_team", v.long_reads},
        {"upstream_block", v.upstream_block},
        {"proxy_pass", v.proxy_pass},
        {"upstream_host", v.upstream_host},
        {"proxy_tls", v.proxy_tls},
    };
    const char *p = tg_nginx_site_template;
    int rc = TG_OK;
    while (rc == TG_OK && *p != '\0') {
        const char *at = strchr(p, '@');
        size_t n = at != NULL ? (size_t)(at - p) : strlen(p);
        rc = tg_buf_add(out, p, n);
        if (at == NULL || rc != TG_OK)
            break;
        /* "@name@" is a word when name is letters and '_'; any other '@' is nginx's own
         * (a named location, "@taskgate_read"). */
        size_t len = strspn(at + 1, "abcdefghijklmnopqrstuvwxyz_");
        if (at[1 + len] != '@' || len == 0) {
            rc = tg_buf_add(out, "@", 1);
            p = at + 1;
            continue;
        }
        size_t i = 0;
        while (i < sizeof(words) / sizeof(words[0]) &&
               (strlen(words[i].name) != len || strncmp(words[i].name, at + 1, len) != 0))
            i++;
        if (i == sizeof(words) / sizeof(words[0])) {
            snprintf(err, errlen, "the nginx site template names @%.*s@, which this taskgate "
                     "does not fill in", (int)len, at + 1);
            return TG_ERR;
        }
        rc = tg_buf_adds(out, words[i].value);
        p = at + len + 2;
    }
    if (rc != TG_OK) {
        snprintf(err, errlen, "the nginx site does not fit in %d bytes", SITE_MAX);
        return TG_ENOMEM;
    }
    return TG_OK;
}

int tg_nginx_site_cli(const struct tg_conf *conf, int argc, char **argv)
{
    (void)argc; /* none: the command table says so */
    (void)argv;
    struct tg_buf out;
    tg_buf_init(&out, SITE_MAX);
    char err[512];
    int rc = tg_nginx_site_render(conf, &out, err, sizeof(err));
    if (rc == TG_OK)
        fwrite(out.data, 1, out.len, stdout);
    else
        fprintf(stderr, "taskgate: nginx-site: %s\n", err);
    tg_buf_free(&out);
    return rc == TG_OK ? 0 : 1;
}
