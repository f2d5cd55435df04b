/* Upstream keys at rest (contract in tg_crypto.h): the process's key ring, read from the key
 * file and its .new/.old companions, and AES-256-GCM sealing bound to a team. */
#include "tg_crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "tg_core.h"

#define PREFIX "tgk1."
#define PREFIX_LEN 5
#define NONCE_LEN 12 /* 96 bits, GCM's native nonce */
#define TAG_LEN 16
#define RING_MAX 3   /* the key file, .new and .old */
#define PATH_MAX_LEN 600
#define PLAIN_MAX 4096

struct ring_key {
    char kid[TG_CRYPTO_KID_LEN];
    unsigned char k[TG_CRYPTO_KEY_LEN];
};

/* Everything below is guarded by lock. ring[0] is always the key file's own key. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char key_path[PATH_MAX_LEN];
static struct ring_key ring[RING_MAX];
static int nring;
static int seal_idx;       /* the key new values are sealed under */
static int loaded;
static int made_new;       /* rotate_prepare wrote KEY_FILE.new itself */
static char load_why[400]; /* why the last load failed; "" after a good one */
static const char *problem; /* the same without a path, for anyone to read (see check) */

static void say(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void tg_crypto_configure(const char *key_file)
{
    pthread_mutex_lock(&lock);
    snprintf(key_path, sizeof(key_path), "%s", key_file != NULL ? key_file : "");
    OPENSSL_cleanse(ring, sizeof(ring));
    nring = 0;
    seal_idx = 0;
    loaded = 0;
    load_why[0] = '\0';
    pthread_mutex_unlock(&lock);
}

/* ---- files ----------------------------------------------------------------------------- */

static void kid_of(const unsigned char k[TG_CRYPTO_KEY_LEN], char kid[TG_CRYPTO_KID_LEN])
{
    static const char label[] = "taskgate key id";
    unsigned char in[sizeof(label) + TG_CRYPTO_KEY_LEN], digest[SHA256_DIGEST_LENGTH];
    memcpy(in, label, sizeof(label));
    memcpy(in + sizeof(label), k, TG_CRYPTO_KEY_LEN);
    SHA256(in, sizeof(in), digest);
    OPENSSL_cleanse(in, sizeof(in));
    tg_hex(digest, 4, kid);
}

static void companion(char *out, size_t outlen, const char *suffix)
{
    snprintf(out, outlen, "%s%s", key_path, suffix);
}

/* Makes a file's directory entry durable: a renamed or created key survives a power loss. */
static void sync_dir(const char *path)
{
    char copy[PATH_MAX_LEN + 8];
    int n = snprintf(copy, sizeof(copy), "%s", path);
    if (n < 0 || (size_t)n >= sizeof(copy))
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* What is wrong with a key file whose fstat is sb, or NULL when nothing is; the detail
 * (with the path) goes to err. */
static const char *file_problem(const char *path, const struct stat *sb, char *err,
                                size_t errlen)
{
    if (!S_ISREG(sb->st_mode)) {
        say(err, errlen, "key file %s: not a regular file", path);
        return "the key file is not a regular file";
    }
    if (sb->st_size != TG_CRYPTO_KEY_LEN) {
        say(err, errlen, "key file %s: %lld bytes; a key file holds exactly %d random bytes",
            path, (long long)sb->st_size, TG_CRYPTO_KEY_LEN);
        return "the key file does not hold a key";
    }
    if ((sb->st_mode & 077) != 0) {
        say(err, errlen, "key file %s: mode %04o lets group or others read it; chmod 600 it",
            path, (unsigned)(sb->st_mode & 07777));
        return "the key file has unsafe permissions";
    }
    return NULL;
}

/* Reads a key file. *missing is set when it does not exist (err says so too). A failure
 * also sets problem. */
static int read_key(const char *path, unsigned char k[TG_CRYPTO_KEY_LEN], int *missing,
                    char *err, size_t errlen)
{
    *missing = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *missing = errno == ENOENT;
        say(err, errlen, "key file %s: %s", path, *missing ? "missing" : strerror(errno));
        problem = *missing ? "the key file is missing" : "the key file cannot be read";
        return TG_ERR;
    }
    struct stat sb;
    int rc = TG_ERR;
    if (fstat(fd, &sb) != 0) {
        say(err, errlen, "key file %s: %s", path, strerror(errno));
        problem = "the key file cannot be read";
    } else {
        problem = file_problem(path, &sb, err, errlen);
        rc = problem == NULL ? TG_OK : TG_ERR;
    }
    size_t got = 0;
    while (rc == TG_OK && got < TG_CRYPTO_KEY_LEN) {
        ssize_t n = read(fd, k + got, TG_CRYPTO_KEY_LEN - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            say(err, errlen, "key file %s: %s", path, n < 0 ? strerror(errno) : "short read");
            problem = "the key file cannot be read";
            rc = TG_ERR;
        } else {
            got += (size_t)n;
        }
    }
    close(fd);
    if (rc != TG_OK)
        OPENSSL_cleanse(k, TG_CRYPTO_KEY_LEN);
    return rc;
}

/* The loaded ring is used only while the key file itself stays safe: a key file made
 * readable by others (or removed, or replaced by something else) stops every use of the
 * keys until it is repaired, as /healthz reports. One stat of path (the key file's) per
 * use. */
static int still_safe(const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        say(err, errlen, "key file %s: %s", path, strerror(errno));
        return TG_ERR;
    }
    return file_problem(path, &sb, err, errlen) == NULL ? TG_OK : TG_ERR;
}

/* Writes k to path as a new file (O_EXCL, mode 0600) and fsyncs it; removes it on failure. */
static int write_new_file(const char *path, const unsigned char k[TG_CRYPTO_KEY_LEN],
                          char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        say(err, errlen, "cannot create key file %s: %s", path, strerror(errno));
        return TG_ERR;
    }
    size_t put = 0;
    int ok = fchmod(fd, 0600) == 0;
    while (ok && put < TG_CRYPTO_KEY_LEN) {
        ssize_t n = write(fd, k + put, TG_CRYPTO_KEY_LEN - put);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        if (ok)
            put += (size_t)n;
    }
    ok = ok && fsync(fd) == 0;
    int saved = errno;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        say(err, errlen, "cannot write key file %s: %s", path, strerror(saved));
        unlink(path);
        return TG_ERR;
    }
    return TG_OK;
}

/* Writes k to path atomically: a fresh temporary file renamed over path, then the
 * directory synced. A crash leaves either the old file or the new one, never half. */
static int write_atomic(const char *path, const unsigned char k[TG_CRYPTO_KEY_LEN], char *err,
                        size_t errlen)
{
    char tmp[PATH_MAX_LEN + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
    int rc = write_new_file(tmp, k, err, errlen);
    if (rc == TG_OK && rename(tmp, path) != 0) {
        say(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        rc = TG_ERR;
    }
    if (rc == TG_OK)
        sync_dir(path);
    return rc;
}

/* ---- the ring ------------------------------------------------------------------------ */

static int find_kid(const char *kid)
{
    for (int i = 0; i < nring; i++)
        if (strcmp(ring[i].kid, kid) == 0)
            return i;
    return -1;
}

/* Loads the ring; on failure an earlier ring stays in use (a running daemon keeps serving
 * while /healthz reports the problem). */
static int load_locked(int create, int *created, char *err, size_t errlen)
{
    char why[sizeof(load_why)] = "";
    struct ring_key fresh[RING_MAX];
    int n = 0, missing = 0, rc = TG_OK;
    if (key_path[0] == '\0') {
        snprintf(why, sizeof(why), "no key_file is configured");
        problem = "no key file is configured";
        rc = TG_ERR;
    }
    if (rc == TG_OK)
        rc = read_key(key_path, fresh[0].k, &missing, why, sizeof(why));
    if (rc != TG_OK && missing && create) {
        unsigned char k[TG_CRYPTO_KEY_LEN];
        rc = RAND_bytes(k, sizeof(k)) == 1 ? TG_OK : TG_ERR;
        if (rc != TG_OK)
            snprintf(why, sizeof(why), "no randomness for a new key file");
        if (rc == TG_OK)
            rc = write_new_file(key_path, k, why, sizeof(why));
        if (rc != TG_OK)
            problem = "the key file cannot be created";
        if (rc == TG_OK) {
            sync_dir(key_path);
            memcpy(fresh[0].k, k, sizeof(k));
            if (created != NULL)
                *created = 1;
        }
        OPENSSL_cleanse(k, sizeof(k));
    } else if (rc != TG_OK && missing) {
        char more[sizeof(why)];
        snprintf(more, sizeof(more), "%.300s (`taskgate init` creates it, but only for a "
                 "database that holds no encrypted keys)", why);
        memcpy(why, more, sizeof(why));
    }
    if (rc == TG_OK) {
        kid_of(fresh[0].k, fresh[0].kid);
        n = 1;
        static const char *const extra[] = {".new", ".old"};
        for (size_t i = 0; rc == TG_OK && i < 2; i++) {
            char p[PATH_MAX_LEN + 8];
            companion(p, sizeof(p), extra[i]);
            rc = read_key(p, fresh[n].k, &missing, why, sizeof(why));
            if (rc != TG_OK && missing) {
                rc = TG_OK; /* companions are optional */
                continue;
            }
            if (rc == TG_OK) {
                kid_of(fresh[n].k, fresh[n].kid);
                int dup = 0;
                for (int j = 0; j < n; j++)
                    dup |= strcmp(fresh[j].kid, fresh[n].kid) == 0;
                if (!dup)
                    n++;
            }
        }
    }
    if (rc == TG_OK) {
        OPENSSL_cleanse(ring, sizeof(ring));
        memcpy(ring, fresh, sizeof(fresh[0]) * (size_t)n);
        nring = n;
        seal_idx = 0;
        loaded = 1;
        load_why[0] = '\0';
    } else {
        memcpy(load_why, why, sizeof(load_why));
        say(err, errlen, "%s", why);
    }
    OPENSSL_cleanse(fresh, sizeof(fresh));
    return rc;
}

/* A loaded ring whose key file is still safe (see still_safe). */
static int ensure_loaded(char *err, size_t errlen)
{
    if (!loaded && load_locked(0, NULL, err, errlen) != TG_OK)
        return TG_ERR;
    return still_safe(key_path, err, errlen);
}

int tg_crypto_usable(char *err, size_t errlen)
{
    /* Every worker asks this for every submission, so the stat is made after the lock is
     * let go, on a copy of the path: held under it, the stat had workers queue on the lock
     * and sleep. */
    char path[PATH_MAX_LEN];
    pthread_mutex_lock(&lock);
    int rc = loaded ? TG_OK : load_locked(0, NULL, err, errlen);
    memcpy(path, key_path, sizeof(path));
    pthread_mutex_unlock(&lock);
    return rc == TG_OK ? still_safe(path, err, errlen) : rc;
}

int tg_crypto_load(int create, int *created, char *err, size_t errlen)
{
    if (created != NULL)
        *created = 0;
    pthread_mutex_lock(&lock);
    int rc = load_locked(create, created, err, errlen);
    pthread_mutex_unlock(&lock);
    return rc;
}

int tg_crypto_check(char *why, size_t whylen, const char **public_why)
{
    pthread_mutex_lock(&lock);
    int rc = TG_ERR;
    problem = "the key file cannot be used";
    if (!loaded && load_locked(0, NULL, why, whylen) != TG_OK) {
        rc = TG_ERR;
    } else {
        struct ring_key now;
        int missing;
        rc = read_key(key_path, now.k, &missing, why, whylen);
        if (rc == TG_OK) {
            kid_of(now.k, now.kid);
            if (find_kid(now.kid) != 0) /* replaced since loaded: a rotation */
                rc = load_locked(0, NULL, why, whylen);
        }
        OPENSSL_cleanse(&now, sizeof(now));
    }
    if (public_why != NULL)
        *public_why = rc == TG_OK ? NULL : problem;
    pthread_mutex_unlock(&lock);
    return rc;
}

void tg_crypto_current_kid(char kid[TG_CRYPTO_KID_LEN])
{
    pthread_mutex_lock(&lock);
    snprintf(kid, TG_CRYPTO_KID_LEN, "%s", loaded ? ring[seal_idx].kid : "");
    pthread_mutex_unlock(&lock);
}

/* ---- sealing --------------------------------------------------------------------------- */

/* The associated data: the format, the key id and the team. */
static int aad_update(EVP_CIPHER_CTX *ctx, const char *kid, const char *team, int enc)
{
    char aad[PREFIX_LEN + TG_CRYPTO_KID_LEN + 1];
    snprintf(aad, sizeof(aad), PREFIX "%s.", kid);
    int n;
    int ok = enc ? EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad))
                 : EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad));
    if (ok == 1)
        ok = enc ? EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)team, (int)strlen(team))
                 : EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)team,
                                     (int)strlen(team));
    return ok == 1 ? TG_OK : TG_ERR;
}

int tg_crypto_seal(const char *team, const char *plain, size_t len, char *out, size_t outlen,
                   char kid[TG_CRYPTO_KID_LEN], char *err, size_t errlen)
{
    if (team == NULL || plain == NULL || len > PLAIN_MAX) {
        say(err, errlen, "seal: no team, or the value is larger than %d bytes", PLAIN_MAX);
        return TG_EINVAL;
    }
    if (out == NULL || outlen < TG_CRYPTO_SEALED_LEN(len)) {
        say(err, errlen, "seal: the output buffer is too small");
        return TG_ETOOBIG;
    }
    unsigned char raw[NONCE_LEN + PLAIN_MAX + TAG_LEN];
    EVP_CIPHER_CTX *ctx = NULL;
    int rc, n = 0, fin = 0;
    pthread_mutex_lock(&lock);
    rc = ensure_loaded(err, errlen);
    const struct ring_key *key = &ring[seal_idx];
    if (rc == TG_OK && RAND_bytes(raw, NONCE_LEN) != 1) {
        say(err, errlen, "seal: no randomness for a nonce");
        rc = TG_ERR;
    }
    if (rc == TG_OK) {
        ctx = EVP_CIPHER_CTX_new();
        rc = ctx != NULL &&
                     EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
                     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
                     EVP_EncryptInit_ex(ctx, NULL, NULL, key->k, raw) == 1
                 ? aad_update(ctx, key->kid, team, 1)
                 : TG_ERR;
    }
    if (ctx != NULL && (rc != TG_OK ||
        EVP_EncryptUpdate(ctx, raw + NONCE_LEN, &n, (const unsigned char *)plain, (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, raw + NONCE_LEN + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, raw + NONCE_LEN + len) != 1)) {
        say(err, errlen, "seal: the cipher failed");
        rc = TG_ERR;
    }
    if (rc == TG_OK) {
        int w = snprintf(out, outlen, PREFIX "%s.", key->kid);
        EVP_EncodeBlock((unsigned char *)out + w, raw, (int)(NONCE_LEN + len + TAG_LEN));
        if (kid != NULL)
            memcpy(kid, key->kid, TG_CRYPTO_KID_LEN);
    }
    pthread_mutex_unlock(&lock);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int tg_crypto_kid(const char *sealed, char kid[TG_CRYPTO_KID_LEN])
{
    if (sealed == NULL || strncmp(sealed, PREFIX, PREFIX_LEN) != 0 ||
        strlen(sealed) < PREFIX_LEN + 9 || sealed[PREFIX_LEN + 8] != '.')
        return TG_EINVAL;
    for (int i = 0; i < 8; i++) {
        char c = sealed[PREFIX_LEN + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return TG_EINVAL;
    }
    memcpy(kid, sealed + PREFIX_LEN, 8);
    kid[8] = '\0';
    return TG_OK;
}

/* Decodes the base64 part into raw; its length (padding excluded) in *n. */
static int decode(const char *b64, unsigned char *raw, size_t rawlen, size_t *n)
{
    size_t len = strlen(b64);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > rawlen)
        return TG_EINVAL;
    int got = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
    if (got < 0)
        return TG_EINVAL;
    size_t pad = (b64[len - 1] == '=') + (b64[len - 2] == '=');
    *n = (size_t)got - pad;
    return TG_OK;
}

int tg_crypto_open(const char *team, const char *sealed, char *out, size_t outlen,
                   size_t *len, char *err, size_t errlen)
{
    char kid[TG_CRYPTO_KID_LEN];
    unsigned char raw[NONCE_LEN + PLAIN_MAX + TAG_LEN + 3];
    size_t rawn = 0;
    if (team == NULL || out == NULL || outlen == 0 || tg_crypto_kid(sealed, kid) != TG_OK ||
        decode(sealed + PREFIX_LEN + 9, raw, sizeof(raw), &rawn) != TG_OK ||
        rawn < NONCE_LEN + TAG_LEN) {
        say(err, errlen, "the stored value is not sealed text");
        return TG_EINVAL;
    }
    size_t plen = rawn - NONCE_LEN - TAG_LEN;
    if (plen + 1 > outlen) {
        say(err, errlen, "the opened value does not fit");
        return TG_ETOOBIG;
    }
    pthread_mutex_lock(&lock);
    int rc = ensure_loaded(err, errlen);
    int i = rc == TG_OK ? find_kid(kid) : -1;
    if (rc == TG_OK && i < 0 && load_locked(0, NULL, NULL, 0) == TG_OK)
        i = find_kid(kid); /* another process may have rotated the key file */
    if (rc == TG_OK && i < 0) {
        say(err, errlen, "no key file holds key %s (was %s replaced without "
            "`taskgate keys rotate`?)", kid, key_path);
        rc = TG_ERR;
    }
    EVP_CIPHER_CTX *ctx = NULL;
    int n = 0, fin = 0;
    if (rc == TG_OK) {
        ctx = EVP_CIPHER_CTX_new();
        rc = ctx != NULL &&
                     EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
                     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
                     EVP_DecryptInit_ex(ctx, NULL, NULL, ring[i].k, raw) == 1
                 ? aad_update(ctx, kid, team, 0)
                 : TG_ERR;
        if (rc == TG_OK &&
            (EVP_DecryptUpdate(ctx, (unsigned char *)out, &n, raw + NONCE_LEN, (int)plen) != 1 ||
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, raw + NONCE_LEN + plen) != 1 ||
             EVP_DecryptFinal_ex(ctx, (unsigned char *)out + n, &fin) != 1))
            rc = TG_ERR;
        if (rc != TG_OK)
            say(err, errlen, "the value sealed under key %s does not open for team '%.64s' "
                "(another team's value, or altered)", kid, team);
    }
    pthread_mutex_unlock(&lock);
    EVP_CIPHER_CTX_free(ctx);
    if (rc == TG_OK) {
        out[plen] = '\0';
        if (len != NULL)
            *len = plen;
    } else {
        OPENSSL_cleanse(out, plen + 1 <= outlen ? plen + 1 : outlen);
        out[0] = '\0';
    }
    return rc;
}

/* ---- rotation ---------------------------------------------------------------------------- */

int tg_crypto_rotate_prepare(char newkid[TG_CRYPTO_KID_LEN], int *resumed, char *err,
                             size_t errlen)
{
    char path[PATH_MAX_LEN + 8];
    pthread_mutex_lock(&lock);
    companion(path, sizeof(path), ".new");
    *resumed = 0;
    made_new = 0;
    int rc = load_locked(0, NULL, err, errlen);
    struct ring_key k;
    int missing = 0;
    if (rc == TG_OK) {
        rc = read_key(path, k.k, &missing, err, errlen);
        if (rc == TG_OK) {
            *resumed = 1;
        } else if (missing) {
            rc = RAND_bytes(k.k, sizeof(k.k)) == 1 ? TG_OK : TG_ERR;
            if (rc != TG_OK)
                say(err, errlen, "no randomness for a new key");
            if (rc == TG_OK)
                rc = write_atomic(path, k.k, err, errlen);
            made_new = rc == TG_OK;
        }
    }
    if (rc == TG_OK) {
        kid_of(k.k, k.kid);
        int i = find_kid(k.kid);
        if (i < 0 && nring < RING_MAX) {
            ring[nring] = k;
            i = nring++;
        }
        if (i < 0) {
            say(err, errlen, "the key ring is full");
            rc = TG_ERR;
        } else {
            seal_idx = i;
            memcpy(newkid, k.kid, TG_CRYPTO_KID_LEN);
        }
    }
    OPENSSL_cleanse(&k, sizeof(k));
    pthread_mutex_unlock(&lock);
    return rc;
}

int tg_crypto_rotate_commit(char *err, size_t errlen)
{
    char nw[PATH_MAX_LEN + 8], old[PATH_MAX_LEN + 8];
    pthread_mutex_lock(&lock);
    companion(nw, sizeof(nw), ".new");
    companion(old, sizeof(old), ".old");
    /* ring[0] is the key file's key as loaded by prepare. */
    int rc = loaded ? write_atomic(old, ring[0].k, err, errlen) : TG_ERR;
    if (rc == TG_OK && rename(nw, key_path) != 0) {
        say(err, errlen, "cannot rename %s to %s: %s", nw, key_path, strerror(errno));
        rc = TG_ERR;
    }
    if (rc == TG_OK) {
        sync_dir(key_path);
        rc = load_locked(0, NULL, err, errlen);
    }
    made_new = 0;
    pthread_mutex_unlock(&lock);
    return rc;
}

void tg_crypto_rotate_abort(void)
{
    pthread_mutex_lock(&lock);
    if (made_new) {
        char path[PATH_MAX_LEN + 8];
        companion(path, sizeof(path), ".new");
        unlink(path);
        sync_dir(path);
    }
    made_new = 0;
    load_locked(0, NULL, NULL, 0);
    pthread_mutex_unlock(&lock);
}
