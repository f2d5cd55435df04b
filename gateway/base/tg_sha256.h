/* Hex SHA-256 digests: how the gateway fingerprints tokens and request bodies. */
#ifndef TG_SHA256_H
#define TG_SHA256_H

#include <stddef.h>

/* Hex SHA-256 and the NUL. */
#define TG_HASH_LEN 65

/* Writes the hex SHA-256 of the len bytes at s into hash (lowercase, NUL-terminated). */
void tg_sha256_hex(const void *s, size_t len, char hash[TG_HASH_LEN]);

#endif
