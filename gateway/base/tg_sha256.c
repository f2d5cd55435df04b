/* Hex SHA-256 digests (see tg_sha256.h), with OpenSSL's one-shot SHA256. */
#include "tg_sha256.h"

#include <openssl/sha.h>
#include <string.h>

#include "tg_core.h"

void tg_sha256_hex(const void *s, size_t len, char hash[TG_HASH_LEN])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(s, len, digest);
    tg_hex(digest, sizeof(digest), hash);
}

void tg_sha256_fingerprint(const void *s, size_t len, char out[TG_FINGERPRINT_LEN])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(s, len, digest);
    memcpy(out, "sha256:", 7);
    tg_hex(digest, 6, out + 7);
}
