/* Signatures of Parallel's webhooks (the Standard Webhooks scheme): a delivery carries
 * webhook-id, webhook-timestamp (unix seconds) and webhook-signature, one or more
 * space-separated "v1,<base64 of HMAC-SHA256(secret, id "." timestamp "." body)>" (several
 * during a secret rotation). A delivery is genuine when one of its v1 signatures matches one
 * of the configured secrets, compared in constant time, and its timestamp is within the
 * tolerance of now: a replay of an old delivery is refused even with a good signature. */
#ifndef TG_WEBHOOK_SIG_H
#define TG_WEBHOOK_SIG_H

#include <stddef.h>
#include <stdint.h>

/* How far a delivery's timestamp may be from now, either way (Standard Webhooks: 5 min). */
#define TG_WEBHOOK_TOLERANCE_S 300
/* At most this many secrets are tried, and this many signatures read from one header. */
#define TG_WEBHOOK_SECRETS_MAX 8
#define TG_WEBHOOK_SIGNATURES_MAX 16

enum tg_webhook_verdict {
    TG_WEBHOOK_GENUINE = 0,
    TG_WEBHOOK_MISSING,   /* a header is missing or empty */
    TG_WEBHOOK_MALFORMED, /* a timestamp that is not a number, an id too long or odd */
    TG_WEBHOOK_STALE,     /* the timestamp is too far from now */
    TG_WEBHOOK_FORGED,    /* no v1 signature matches any secret */
};

/* A secret as configured: the bytes HMAC is keyed with. "whsec_<base64>" (the Standard
 * Webhooks form) is the base64's bytes; anything else is used as written. */
struct tg_webhook_secret {
    unsigned char key[128];
    size_t len;
};

/* Reads the configured secret text into s. TG_OK, or TG_EINVAL (empty, a whsec_ value
 * that is not base64, longer than s->key). */
int tg_webhook_secret_parse(const char *text, struct tg_webhook_secret *s);

/* The secrets configured: the space-separated list (may be NULL or "") and then the words
 * of file (NULL or "": none; spaces or lines between them), which must be a regular file
 * that neither group nor others may read. At most max go to out; *n says how many. TG_OK,
 * or TG_EINVAL/TG_ERR with err naming the file or the secret's place (never a secret). A
 * caller wipes out (tg_memzero) when done with it. */
int tg_webhook_secrets_load(const char *list, const char *file, struct tg_webhook_secret *out,
                            size_t max, size_t *n, char *err, size_t errlen);

/* Judges one delivery: id, timestamp and signatures are the three headers (NULL when
 * absent), body the raw request body. *why (may be NULL) receives a short static text
 * that names what was wrong without echoing anything sent. */
enum tg_webhook_verdict tg_webhook_verify(const struct tg_webhook_secret *secrets,
                                          size_t nsecrets, const char *id,
                                          const char *timestamp, const char *signatures,
                                          const void *body, size_t len, int64_t now_s,
                                          const char **why);

/* The signature header value ("v1,<base64>") of a delivery under secret s into out (at
 * least 52 bytes): what the simulator and the tests sign with. TG_OK or TG_ETOOBIG. */
int tg_webhook_sign(const struct tg_webhook_secret *s, const char *id, const char *timestamp,
                    const void *body, size_t len, char *out, size_t outlen);

#endif
