/* Unit tests of webhook signatures (tg_webhook_sig.c): the Standard Webhooks example, a
 * plain secret, rotation (several signatures, several secrets), and every refusal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tg_core.h"
#include "tg_test.h"
#include "tg_webhook_sig.h"

/* The example of the Standard Webhooks specification. */
static const char spec_secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
static const char spec_id[] = "msg_p5jXN8AQM9LWM0D4loKWxJek";
static const char spec_ts[] = "1614265330";
static const char spec_body[] = "{\"test\": 2432232314}";
static const char spec_sig[] = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
#define SPEC_NOW 1614265330

/* A plain secret (as Parallel's dashboard shows one), signed by Python's hmac. */
static const char plain_secret[] = "parallel-secret-1";
static const char plain_id[] = "whevent_abc";
static const char plain_ts[] = "1751498975";
static const char plain_body[] = "{\"type\":\"task_run.status\"}";
static const char plain_sig[] = "v1,cJSdCRVgsp3dmYG9zx6zW6vl1+XvoU/tiwn4irOt198=";

static enum tg_webhook_verdict verify(const struct tg_webhook_secret *s, size_t n,
                                      const char *id, const char *ts, const char *sig,
                                      const char *body, int64_t now)
{
    const char *why = NULL;
    enum tg_webhook_verdict v = tg_webhook_verify(s, n, id, ts, sig, body, strlen(body), now,
                                                  &why);
    CHECK(why != NULL);
    return v;
}

static void test_secrets_parse(void)
{
    struct tg_webhook_secret s;
    CHECK(tg_webhook_secret_parse(spec_secret, &s) == TG_OK);
    CHECK(s.len == 24);
    CHECK(tg_webhook_secret_parse(plain_secret, &s) == TG_OK);
    CHECK(s.len == strlen(plain_secret) && memcmp(s.key, plain_secret, s.len) == 0);
    CHECK(tg_webhook_secret_parse("", &s) == TG_EINVAL);
    CHECK(tg_webhook_secret_parse(NULL, &s) == TG_EINVAL);
    CHECK(tg_webhook_secret_parse("whsec_", &s) == TG_EINVAL);
    CHECK(tg_webhook_secret_parse("whsec_abc", &s) == TG_EINVAL);   /* not a multiple of 4 */
    CHECK(tg_webhook_secret_parse("whsec_ab!?", &s) == TG_EINVAL);  /* not base64 */
    char long_text[200];
    memset(long_text, 'k', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    CHECK(tg_webhook_secret_parse(long_text, &s) == TG_EINVAL);
}

static void test_genuine(void)
{
    struct tg_webhook_secret s[2];
    CHECK(tg_webhook_secret_parse(spec_secret, &s[0]) == TG_OK);
    CHECK(tg_webhook_secret_parse(plain_secret, &s[1]) == TG_OK);
    CHECK(verify(s, 1, spec_id, spec_ts, spec_sig, spec_body, SPEC_NOW) == TG_WEBHOOK_GENUINE);
    CHECK(verify(s + 1, 1, plain_id, plain_ts, plain_sig, plain_body, 1751498975 + 299) ==
          TG_WEBHOOK_GENUINE);
    /* Either secret of a rotation, and a good signature among others. */
    CHECK(verify(s, 2, plain_id, plain_ts, plain_sig, plain_body, 1751498975) ==
          TG_WEBHOOK_GENUINE);
    char several[300];
    snprintf(several, sizeof(several), "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v2,xyz %s",
             spec_sig);
    CHECK(verify(s, 2, spec_id, spec_ts, several, spec_body, SPEC_NOW) == TG_WEBHOOK_GENUINE);
    char sig[80];
    CHECK(tg_webhook_sign(&s[0], spec_id, spec_ts, spec_body, strlen(spec_body), sig,
                          sizeof(sig)) == TG_OK);
    CHECK_STR(sig, spec_sig);
    CHECK(tg_webhook_sign(&s[0], spec_id, spec_ts, spec_body, strlen(spec_body), sig, 20) ==
          TG_ETOOBIG);
}

static void test_refused(void)
{
    struct tg_webhook_secret s, old;
    CHECK(tg_webhook_secret_parse(spec_secret, &s) == TG_OK);
    CHECK(tg_webhook_secret_parse("rotated-out", &old) == TG_OK);
    /* Missing headers. */
    CHECK(verify(&s, 1, NULL, spec_ts, spec_sig, spec_body, SPEC_NOW) == TG_WEBHOOK_MISSING);
    CHECK(verify(&s, 1, spec_id, "", spec_sig, spec_body, SPEC_NOW) == TG_WEBHOOK_MISSING);
    CHECK(verify(&s, 1, spec_id, spec_ts, NULL, spec_body, SPEC_NOW) == TG_WEBHOOK_MISSING);
    /* Malformed. */
    CHECK(verify(&s, 1, spec_id, "16142x5330", spec_sig, spec_body, SPEC_NOW) ==
          TG_WEBHOOK_MALFORMED);
    CHECK(verify(&s, 1, "msg with space", spec_ts, spec_sig, spec_body, SPEC_NOW) ==
          TG_WEBHOOK_MALFORMED);
    CHECK(verify(&s, 1, spec_id, "99999999999999", spec_sig, spec_body, SPEC_NOW) ==
          TG_WEBHOOK_MALFORMED);
    /* Stale: 10 minutes old, and from the future. */
    CHECK(verify(&s, 1, spec_id, spec_ts, spec_sig, spec_body, SPEC_NOW + 600) ==
          TG_WEBHOOK_STALE);
    CHECK(verify(&s, 1, spec_id, spec_ts, spec_sig, spec_body, SPEC_NOW - 301) ==
          TG_WEBHOOK_STALE);
    /* Forged: another body, another id, a wrong or truncated signature, an old secret. */
    CHECK(verify(&s, 1, spec_id, spec_ts, spec_sig, "{\"test\": 2432232315}", SPEC_NOW) ==
          TG_WEBHOOK_FORGED);
    CHECK(verify(&s, 1, "msg_other", spec_ts, spec_sig, spec_body, SPEC_NOW) ==
          TG_WEBHOOK_FORGED);
    CHECK(verify(&s, 1, spec_id, spec_ts, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
                 spec_body, SPEC_NOW) == TG_WEBHOOK_FORGED);
    CHECK(verify(&s, 1, spec_id, spec_ts, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                 spec_body, SPEC_NOW) == TG_WEBHOOK_FORGED);
    CHECK(verify(&old, 1, spec_id, spec_ts, spec_sig, spec_body, SPEC_NOW) ==
          TG_WEBHOOK_FORGED);
    CHECK(verify(&s, 0, spec_id, spec_ts, spec_sig, spec_body, SPEC_NOW) == TG_WEBHOOK_FORGED);
    CHECK(verify(&s, 1, spec_id, spec_ts, "    ", spec_body, SPEC_NOW) == TG_WEBHOOK_FORGED);
}

/* The configured list and file: both read, a file others may read refused, a bad secret
 * named by its place, never echoed. */
static void test_secrets_load(void)
{
    struct tg_webhook_secret s[TG_WEBHOOK_SECRETS_MAX];
    size_t n = 99;
    char err[700] = "", path[512];
    const char *dir = getenv("TG_TEST_TMP");
    snprintf(path, sizeof(path), "%s/test_webhook_secrets_%ld", dir != NULL ? dir : "/tmp",
             (long)getpid());
    CHECK(tg_webhook_secrets_load(NULL, NULL, s, TG_WEBHOOK_SECRETS_MAX, &n, err,
                                  sizeof(err)) == TG_OK && n == 0);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fprintf(f, "%s\n\n  other-secret\r\n", spec_secret);
    fclose(f);
    chmod(path, 0644);
    CHECK(tg_webhook_secrets_load(plain_secret, path, s, TG_WEBHOOK_SECRETS_MAX, &n, err,
                                  sizeof(err)) == TG_EINVAL);
    CHECK(strstr(err, "group or others may read it") != NULL);
    chmod(path, 0600);
    CHECK(tg_webhook_secrets_load(plain_secret, path, s, TG_WEBHOOK_SECRETS_MAX, &n, err,
                                  sizeof(err)) == TG_OK);
    CHECK(n == 3);
    CHECK(verify(s, n, spec_id, spec_ts, spec_sig, spec_body, SPEC_NOW) == TG_WEBHOOK_GENUINE);
    CHECK(verify(s, n, plain_id, plain_ts, plain_sig, plain_body, 1751498975) ==
          TG_WEBHOOK_GENUINE);
    CHECK(tg_webhook_secrets_load("a-secret whsec_not*base64", NULL, s, TG_WEBHOOK_SECRETS_MAX,
                                  &n, err, sizeof(err)) == TG_EINVAL);
    CHECK_STR(err, "webhook_secrets: secret 2 is not usable (whsec_ and base64, or text up to "
                   "128 bytes)");
    CHECK(tg_webhook_secrets_load("one two three", NULL, s, 2, &n, err, sizeof(err)) ==
          TG_EINVAL);
    CHECK(strstr(err, "more than 2") != NULL);
    unlink(path);
    CHECK(tg_webhook_secrets_load(NULL, path, s, TG_WEBHOOK_SECRETS_MAX, &n, err,
                                  sizeof(err)) == TG_ERR);
    tg_memzero(s, sizeof(s));
}

int main(void)
{
    static const struct tg_test_case cases[] = {
        {"secrets_parse", test_secrets_parse},
        {"secrets_load", test_secrets_load},
        {"genuine", test_genuine},
        {"refused", test_refused},
        {NULL, NULL},
    };
    return tg_test_run(cases);
}
