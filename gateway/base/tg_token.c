/* Team tokens: generation, hashing, and extraction from request headers. */
#include "tg_token.h"

#include <string.h>
#include <strings.h>

#include "tg_core.h"
#include "tg_sha256.h"

int tg_token_new(char token[TG_TOKEN_LEN], char id[TG_TOKEN_ID_LEN],
                 char hash[TG_HASH_LEN])
{
    if (tg_random_id(token, TG_TOKEN_LEN, "tg_", 24) != TG_OK)
        return TG_ERR;
    if (tg_random_id(id, TG_TOKEN_ID_LEN, "tok_", 8) != TG_OK)
        return TG_ERR;
    tg_sha256_hex(token, strlen(token), hash);
    return TG_OK;
}

static const char *trim(const char *s, size_t *len)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    *len = n;
    return s;
}

const char *tg_token_from_headers(const char *authorization, const char *api_key,
                                  size_t *len)
{
    if (authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *t = trim(authorization + 7, len);
        if (*len > 0 && *len < 256)
            return t;
    }
    if (api_key != NULL) {
        const char *t = trim(api_key, len);
        if (*len > 0 && *len < 256)
            return t;
    }
    *len = 0;
    return NULL;
}
