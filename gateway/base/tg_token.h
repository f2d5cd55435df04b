/* Team tokens: how they are made, hashed and found in a request. Only the SHA-256 of a
 * token is ever stored; the token itself is shown once, when issued. */
#ifndef TG_TOKEN_H
#define TG_TOKEN_H

#include <stddef.h>

#include "tg_sha256.h" /* TG_HASH_LEN and the hash itself */

/* "tg_" and 48 hex digits (192 random bits), with the NUL. */
#define TG_TOKEN_LEN 52
/* "tok_" and 16 hex digits: the public id used to list and revoke. */
#define TG_TOKEN_ID_LEN 21

/* Makes a new token, its public id and its hash. TG_OK or TG_ERR (no randomness). */
int tg_token_new(char token[TG_TOKEN_LEN], char id[TG_TOKEN_ID_LEN],
                 char hash[TG_HASH_LEN]);

/* The token a request carries: "Authorization: Bearer T" wins over "x-api-key: T". Returns
 * a pointer into one of the given strings (which may be NULL), or NULL when neither holds
 * a plausible token. The length is in *len. */
const char *tg_token_from_headers(const char *authorization, const char *api_key,
                                  size_t *len);

#endif
