/* Hex SHA-256 digests (see tg_sha256.h), with OpenSSL's EVP interface. */
#include "tg_sha256.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <string.h>

#include "tg_core.h"

/* OpenSSL 3's one-shot SHA256() looks the algorithm up by name on every call
 * (EVP_MD_fetch: half of the time the token check spent hashing, in a profile of the
 * daemon under load); it is fetched once for the process instead. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void digest(const void *s, size_t len, unsigned char out[SHA256_DIGEST_LENGTH])
{
    pthread_once(&sha256_once, fetch_sha256);
    if (sha256_md == NULL || EVP_Digest(s, len, out, NULL, sha256_md, NULL) != 1)
        SHA256(s, len, out); /* the fetch failed: the slow way still answers */
}

void tg_sha256_hex(const void *s, size_t len, char hash[TG_HASH_LEN])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    digest(s, len, d);
    tg_hex(d, sizeof(d), hash);
}

void tg_sha256_fingerprint(const void *s, size_t len, char out[TG_FINGERPRINT_LEN])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    digest(s, len, d);
    memcpy(out, "sha256:", 7);
    tg_hex(d, 6, out + 7);
}
