/* Unit tests of upstream keys at rest (tg_crypto.c): sealing round trips, the team binding,
 * tampering, buffers too small, and key files that are missing, short or too open; and the
 * SHA-256 digests tokens are stored by (tg_sha256.c). */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tg_core.h"
#include "tg_crypto.h"
#include "tg_sha256.h"
#include "tg_test.h"

static char key_file[512];
static char err[512];

static void path_for(const char *suffix, char *out, size_t len)
{
    snprintf(out, len, "%s%s", key_file, suffix);
}

static void remove_keys(void)
{
    char p[600];
    const char *const suffixes[] = {"", ".new", ".old", ".new.tmp", ".old.tmp"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        path_for(suffixes[i], p, sizeof(p));
        unlink(p);
    }
}

static void test_round_trip_and_binding(void)
{
    char sealed[TG_CRYPTO_SEALED_LEN(64)], again[sizeof(sealed)], out[128], kid[TG_CRYPTO_KID_LEN];
    const char *key = "par-live-0123456789abcdef";
    size_t n = 0;
    CHECK(tg_crypto_seal("alpha", key, strlen(key), sealed, sizeof(sealed), kid, err,
                         sizeof(err)) == TG_OK);
    CHECK(strncmp(sealed, "tgk1.", 5) == 0 && strstr(sealed, key) == NULL);
    CHECK(strncmp(sealed + 5, kid, 8) == 0);
    CHECK(tg_crypto_open("alpha", sealed, out, sizeof(out), &n, err, sizeof(err)) == TG_OK);
    CHECK_STR(out, key);
    CHECK(n == strlen(key));
    /* A fresh nonce each time. */
    CHECK(tg_crypto_seal("alpha", key, strlen(key), again, sizeof(again), NULL, err,
                         sizeof(err)) == TG_OK);
    CHECK(strcmp(sealed, again) != 0);

    /* Another team's row, a flipped character, a cut text: refused, no plaintext out. */
    CHECK(tg_crypto_open("beta", sealed, out, sizeof(out), NULL, err, sizeof(err)) == TG_ERR);
    CHECK_STR(out, "");
    CHECK(strstr(err, key) == NULL);
    size_t len = strlen(again);
    again[len - 6] = again[len - 6] == 'A' ? 'B' : 'A';
    CHECK(tg_crypto_open("alpha", again, out, sizeof(out), NULL, err, sizeof(err)) == TG_ERR);
    again[len - 4] = '\0';
    CHECK(tg_crypto_open("alpha", again, out, sizeof(out), NULL, err, sizeof(err)) != TG_OK);
    CHECK(tg_crypto_open("alpha", key, out, sizeof(out), NULL, err, sizeof(err)) == TG_EINVAL);
    char small[8];
    CHECK(tg_crypto_open("alpha", sealed, small, sizeof(small), NULL, err, sizeof(err)) ==
          TG_ETOOBIG);
    CHECK(tg_crypto_seal("alpha", key, strlen(key), small, sizeof(small), NULL, err,
                         sizeof(err)) == TG_ETOOBIG);
}

static int write_bytes(const char *path, const void *data, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        return -1;
    int ok = write(fd, data, n) == (ssize_t)n && fchmod(fd, mode) == 0;
    close(fd);
    return ok ? 0 : -1;
}

static void test_key_file_trouble(void)
{
    char why[512];
    unsigned char k[33] = {0};
    remove_keys();
    tg_crypto_configure(key_file);
    CHECK(tg_crypto_load(0, NULL, err, sizeof(err)) == TG_ERR);
    CHECK(strstr(err, "missing") != NULL);
    CHECK(tg_crypto_check(why, sizeof(why), NULL) == TG_ERR && strstr(why, "missing") != NULL);
    CHECK(write_bytes(key_file, k, 31, 0600) == 0);
    CHECK(tg_crypto_load(0, NULL, err, sizeof(err)) == TG_ERR);
    CHECK(strstr(err, "31 bytes") != NULL);
    CHECK(write_bytes(key_file, k, 32, 0644) == 0);
    CHECK(tg_crypto_load(0, NULL, err, sizeof(err)) == TG_ERR);
    CHECK(strstr(err, "chmod 600") != NULL);
    CHECK(write_bytes(key_file, k, 32, 0600) == 0);
    CHECK(tg_crypto_load(0, NULL, err, sizeof(err)) == TG_OK);
    CHECK(tg_crypto_check(why, sizeof(why), NULL) == TG_OK);

    /* A loaded ring is not used while the key file is unsafe, and the public reason names
     * no path. */
    char sealed[TG_CRYPTO_SEALED_LEN(8)], plain[16];
    const char *pub = NULL;
    CHECK(tg_crypto_seal("t", "par-key1", 8, sealed, sizeof(sealed), NULL, err, sizeof(err)) ==
          TG_OK);
    CHECK(tg_crypto_usable(err, sizeof(err)) == TG_OK);
    CHECK(chmod(key_file, 0644) == 0);
    err[0] = '\0';
    CHECK(tg_crypto_usable(err, sizeof(err)) == TG_ERR); /* a kept value stops too */
    CHECK(strstr(err, "chmod 600") != NULL && strstr(err, key_file) != NULL);
    CHECK(tg_crypto_seal("t", "par-key1", 8, sealed, sizeof(sealed), NULL, err, sizeof(err)) ==
          TG_ERR);
    CHECK(tg_crypto_open("t", sealed, plain, sizeof(plain), NULL, err, sizeof(err)) == TG_ERR);
    CHECK(strstr(err, "chmod 600") != NULL && plain[0] == '\0');
    CHECK(tg_crypto_check(why, sizeof(why), &pub) == TG_ERR && strstr(why, key_file) != NULL);
    CHECK(pub != NULL && strstr(pub, "unsafe permissions") != NULL && strchr(pub, '/') == NULL);
    CHECK(chmod(key_file, 0600) == 0);
    CHECK(tg_crypto_usable(err, sizeof(err)) == TG_OK);
    CHECK(tg_crypto_open("t", sealed, plain, sizeof(plain), NULL, err, sizeof(err)) == TG_OK);
    CHECK(strcmp(plain, "par-key1") == 0);
    CHECK(tg_crypto_check(why, sizeof(why), &pub) == TG_OK && pub == NULL);

    /* create makes a 0600 file of 32 bytes only when there is none. */
    remove_keys();
    int created = 0;
    CHECK(tg_crypto_load(1, &created, err, sizeof(err)) == TG_OK && created == 1);
    struct stat sb;
    CHECK(stat(key_file, &sb) == 0 && sb.st_size == 32 && (sb.st_mode & 0777) == 0600);
    CHECK(tg_crypto_load(1, &created, err, sizeof(err)) == TG_OK && created == 0);
}

static void test_rotation_keeps_old_values_open(void)
{
    char sealed[TG_CRYPTO_SEALED_LEN(64)], out[128], old_kid[TG_CRYPTO_KID_LEN],
        new_kid[TG_CRYPTO_KID_LEN];
    remove_keys();
    tg_crypto_configure(key_file);
    CHECK(tg_crypto_load(1, NULL, err, sizeof(err)) == TG_OK);
    CHECK(tg_crypto_seal("t", "secret-value", 12, sealed, sizeof(sealed), old_kid, err,
                         sizeof(err)) == TG_OK);
    int resumed = -1;
    CHECK(tg_crypto_rotate_prepare(new_kid, &resumed, err, sizeof(err)) == TG_OK);
    CHECK(resumed == 0 && strcmp(new_kid, old_kid) != 0);
    tg_crypto_rotate_abort();
    char p[600];
    path_for(".new", p, sizeof(p));
    CHECK(access(p, F_OK) != 0); /* an aborted rotation leaves no .new */
    CHECK(tg_crypto_rotate_prepare(new_kid, &resumed, err, sizeof(err)) == TG_OK);
    CHECK(tg_crypto_rotate_commit(err, sizeof(err)) == TG_OK);
    char kid[TG_CRYPTO_KID_LEN];
    tg_crypto_current_kid(kid);
    CHECK_STR(kid, new_kid);
    /* A fresh process (configure + load) still opens what the old key sealed (.old). */
    tg_crypto_configure(key_file);
    CHECK(tg_crypto_open("t", sealed, out, sizeof(out), NULL, err, sizeof(err)) == TG_OK);
    CHECK_STR(out, "secret-value");
}

/* FIPS 180-2's vectors, from several threads at once (the algorithm is fetched once). */
static void *hash_many(void *arg)
{
    int *ok = arg;
    for (int i = 0; i < 200; i++) {
        char h[TG_HASH_LEN];
        tg_sha256_hex("abc", 3, h);
        *ok += strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0;
    }
    return NULL;
}

static void test_sha256(void)
{
    char h[TG_HASH_LEN];
    tg_sha256_hex("", 0, h);
    CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    tg_sha256_hex(two, strlen(two), h);
    CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char fp[TG_FINGERPRINT_LEN];
    tg_sha256_fingerprint("abc", 3, fp);
    CHECK_STR(fp, "sha256:ba7816bf8f01");
    pthread_t t[4];
    int ok[4] = {0};
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, hash_many, &ok[i]) == 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(ok[i] == 200);
    }
}

int main(void)
{
    const char *dir = getenv("TG_TEST_TMP");
    snprintf(key_file, sizeof(key_file), "%s/test_crypto_%ld.key",
             dir != NULL && dir[0] != '\0' ? dir : "/tmp", (long)getpid());
    remove_keys();
    tg_crypto_configure(key_file);
    if (tg_crypto_load(1, NULL, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "key file: %s\n", err);
        return 1;
    }
    static const struct tg_test_case cases[] = {
        {"round_trip_and_binding", test_round_trip_and_binding},
        {"key_file_trouble", test_key_file_trouble},
        {"rotation_keeps_old_values_open", test_rotation_keeps_old_values_open},
        {"sha256", test_sha256},
        {NULL, NULL},
    };
    int rc = tg_test_run(cases);
    remove_keys();
    return rc;
}
