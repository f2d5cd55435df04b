/* Hex SHA-256 digests: how the gateway hashes tokens and request bodies, and the short
 * fingerprints it shows for secrets (upstream keys, MCP header values). */
#ifndef TG_SHA256_H
#define TG_SHA256_H

#include <stddef.h>

/* Hex SHA-256 and the NUL. */
#define TG_HASH_LEN 65

/* Writes the hex SHA-256 of the len bytes at s into hash (lowercase, NUL-terminated). */
void tg_sha256_hex(const void *s, size_t len, char hash[TG_HASH_LEN]);

/* "sha256:", the first 12 hex digits of the SHA-256 and the NUL: enough to tell secrets
 * apart, far too little to recover one. */
#define TG_FINGERPRINT_LEN 20

/* Writes the fingerprint of the len bytes at s into out. */
void tg_sha256_fingerprint(const void *s, size_t len, char out[TG_FINGERPRINT_LEN]);

#endif
