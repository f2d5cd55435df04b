/* Webhook signatures (see tg_webhook_sig.h), with OpenSSL's HMAC (EVP_MAC) and base64. */
#include "tg_webhook_sig.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tg_core.h"

#define MAC_LEN 32
#define MAC_B64_LEN 44 /* base64 of 32 bytes, with its padding */
#define ID_MAX 256     /* a webhook-id longer than this is not one the upstream sends */
#define TIMESTAMP_DIGITS_MAX 12
#define SECRETS_FILE_MAX 65536 /* a secrets file holds a few lines */

int tg_webhook_secret_parse(const char *text, struct tg_webhook_secret *s)
{
    memset(s, 0, sizeof(*s));
    if (text == NULL || text[0] == '\0')
        return TG_EINVAL;
    size_t n = strlen(text);
    if (strncmp(text, "whsec_", 6) != 0) {
        if (n > sizeof(s->key))
            return TG_EINVAL;
        memcpy(s->key, text, n);
        s->len = n;
        return TG_OK;
    }
    const char *b64 = text + 6;
    size_t blen = n - 6;
    if (blen == 0 || blen % 4 != 0 || blen / 4 * 3 > sizeof(s->key))
        return TG_EINVAL;
    int got = EVP_DecodeBlock(s->key, (const unsigned char *)b64, (int)blen);
    if (got < 0) {
        tg_memzero(s, sizeof(*s));
        return TG_EINVAL;
    }
    size_t pad = (b64[blen - 1] == '=') + (b64[blen - 2] == '=');
    s->len = (size_t)got - pad;
    return s->len > 0 ? TG_OK : TG_EINVAL;
}

/* Parses the words of text (spaces, tabs and line ends between them) into out after the
 * *n already there; where names the source in messages. */
static int parse_words(const char *text, const char *where, struct tg_webhook_secret *out,
                       size_t max, size_t *n, char *err, size_t errlen)
{
    int place = 0;
    for (const char *p = text; *p != '\0';) {
        size_t w = strcspn(p, " \t\r\n");
        if (w == 0) {
            p++;
            continue;
        }
        place++;
        char word[256];
        int rc = w < sizeof(word) ? TG_OK : TG_EINVAL;
        if (rc == TG_OK) {
            memcpy(word, p, w);
            word[w] = '\0';
            rc = *n < max ? tg_webhook_secret_parse(word, &out[*n]) : TG_ETOOBIG;
            tg_memzero(word, sizeof(word));
        }
        if (rc == TG_ETOOBIG) {
            snprintf(err, errlen, "%s: more than %zu webhook secrets", where, max);
            return TG_EINVAL;
        }
        if (rc != TG_OK) {
            snprintf(err, errlen, "%s: secret %d is not usable (whsec_ and base64, or text up "
                     "to %zu bytes)", where, place, sizeof(out->key));
            return TG_EINVAL;
        }
        (*n)++;
        p += w;
    }
    return TG_OK;
}

int tg_webhook_secrets_load(const char *list, const char *file, struct tg_webhook_secret *out,
                            size_t max, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    int rc = list != NULL ? parse_words(list, "webhook_secrets", out, max, n, err, errlen)
                          : TG_OK;
    if (rc != TG_OK || file == NULL || file[0] == '\0')
        return rc;
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "webhook_secrets_file %s: %s", file, strerror(errno));
        if (fd >= 0)
            close(fd);
        return TG_ERR;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size >= SECRETS_FILE_MAX || (sb.st_mode & 077) != 0) {
        snprintf(err, errlen, "webhook_secrets_file %s: %s", file,
                 !S_ISREG(sb.st_mode) ? "not a regular file"
                 : (sb.st_mode & 077) != 0 ? "group or others may read it; chmod 600 it"
                                           : "too large for a list of secrets");
        close(fd);
        return TG_EINVAL;
    }
    char *text = malloc(SECRETS_FILE_MAX);
    ssize_t got = text != NULL ? read(fd, text, SECRETS_FILE_MAX - 1) : -1;
    int why = errno;
    close(fd);
    if (got < 0) {
        snprintf(err, errlen, "webhook_secrets_file %s: %s", file,
                 text == NULL ? "out of memory" : strerror(why));
        free(text);
        return TG_ERR;
    }
    text[got] = '\0';
    char where[600];
    snprintf(where, sizeof(where), "webhook_secrets_file %.500s", file);
    rc = parse_words(text, where, out, max, n, err, errlen);
    tg_memzero(text, SECRETS_FILE_MAX);
    free(text);
    return rc;
}

/* base64(HMAC-SHA256(key, id "." timestamp "." body)) into out[MAC_B64_LEN + 1]. */
static int mac_b64(const struct tg_webhook_secret *s, const char *id, const char *timestamp,
                   const void *body, size_t len, char out[MAC_B64_LEN + 1])
{
    unsigned char mac[MAC_LEN];
    size_t maclen = 0;
    int ok = 0;
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    if (ctx != NULL) {
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end(),
        };
        ok = EVP_MAC_init(ctx, s->key, s->len, params) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)timestamp, strlen(timestamp)) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
             (len == 0 || EVP_MAC_update(ctx, body, len) == 1) &&
             EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) == 1 && maclen == MAC_LEN;
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    if (ok)
        EVP_EncodeBlock((unsigned char *)out, mac, MAC_LEN);
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok ? TG_OK : TG_ERR;
}

int tg_webhook_sign(const struct tg_webhook_secret *s, const char *id, const char *timestamp,
                    const void *body, size_t len, char *out, size_t outlen)
{
    char b64[MAC_B64_LEN + 1];
    if (outlen < 3 + MAC_B64_LEN + 1)
        return TG_ETOOBIG;
    if (mac_b64(s, id, timestamp, body, len, b64) != TG_OK)
        return TG_ERR;
    memcpy(out, "v1,", 3);
    memcpy(out + 3, b64, MAC_B64_LEN + 1);
    return TG_OK;
}

static int parse_timestamp(const char *s, int64_t *out)
{
    int64_t v = 0;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '9' || n == TIMESTAMP_DIGITS_MAX)
            return TG_EINVAL;
        v = v * 10 + (s[n] - '0');
    }
    if (n == 0)
        return TG_EINVAL;
    *out = v;
    return TG_OK;
}

/* Whether an id is one the upstream could have sent: printable ASCII without spaces. It is
 * signed as written, so this only keeps odd bytes out of the records. */
static int id_ok(const char *id)
{
    size_t n = 0;
    for (; id[n] != '\0'; n++)
        if (n == ID_MAX || id[n] <= ' ' || id[n] > '~')
            return 0;
    return n > 0;
}

enum tg_webhook_verdict tg_webhook_verify(const struct tg_webhook_secret *secrets,
                                          size_t nsecrets, const char *id,
                                          const char *timestamp, const char *signatures,
                                          const void *body, size_t len, int64_t now_s,
                                          const char **why)
{
    const char *unused;
    if (why == NULL)
        why = &unused;
    if (id == NULL || id[0] == '\0' || timestamp == NULL || timestamp[0] == '\0' ||
        signatures == NULL || signatures[0] == '\0') {
        *why = "webhook-id, webhook-timestamp and webhook-signature are required";
        return TG_WEBHOOK_MISSING;
    }
    int64_t at;
    if (!id_ok(id) || parse_timestamp(timestamp, &at) != TG_OK) {
        *why = "webhook-id or webhook-timestamp is not well formed";
        return TG_WEBHOOK_MALFORMED;
    }
    if (at < now_s - TG_WEBHOOK_TOLERANCE_S || at > now_s + TG_WEBHOOK_TOLERANCE_S) {
        *why = "webhook-timestamp is more than 5 minutes from now";
        return TG_WEBHOOK_STALE;
    }
    if (nsecrets > TG_WEBHOOK_SECRETS_MAX)
        nsecrets = TG_WEBHOOK_SECRETS_MAX;
    /* Every secret's MAC first, then every v1 signature against every MAC, each compared
     * whole: the time taken depends on how many there are, never on which bytes match. */
    char macs[TG_WEBHOOK_SECRETS_MAX][MAC_B64_LEN + 1];
    size_t nmacs = 0;
    for (size_t i = 0; i < nsecrets; i++)
        if (mac_b64(&secrets[i], id, timestamp, body, len, macs[nmacs]) == TG_OK)
            nmacs++;
    int match = 0, seen = 0;
    const char *p = signatures;
    while (*p != '\0' && seen < TG_WEBHOOK_SIGNATURES_MAX) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        seen++;
        if (n == 3 + MAC_B64_LEN && memcmp(p, "v1,", 3) == 0)
            for (size_t i = 0; i < nmacs; i++)
                match |= CRYPTO_memcmp(p + 3, macs[i], MAC_B64_LEN) == 0;
        p += n;
    }
    OPENSSL_cleanse(macs, sizeof(macs));
    if (!match) {
        *why = "no webhook-signature matches a configured secret";
        return TG_WEBHOOK_FORGED;
    }
    *why = "";
    return TG_WEBHOOK_GENUINE;
}
