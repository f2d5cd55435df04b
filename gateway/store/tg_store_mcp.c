/* The MCP server header values of a preset at rest, the same for every backend (see
 * tg_store_backend.h): sealed like the team's key (tg_crypto.h, bound to the team's name),
 * since they must be forwarded and so cannot be kept as fingerprints. Each value is sealed
 * as its JSON text, so a number stays a number. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "tg_crypto.h"
#include "tg_json.h"
#include "tg_store_backend.h"

struct mcp_walk {
    char *err;
    size_t errlen;
    const char *team;
    enum tg_store_mcp_mode mode;
    long changed;
};

/* The value's clear JSON text into a malloc'd *plain: opened when sealed, else as it is. */
static int clear_text(struct mcp_walk *w, json_object *value, const char *sealed, char **plain,
                      size_t *len)
{
    char why[300] = "";
    if (sealed == NULL) {
        size_t n = 4;
        const char *text = value != NULL ? tg_json_str(value, &n) : "null";
        *plain = text != NULL ? strndup(text, n) : NULL;
        *len = n;
        return *plain != NULL ? TG_OK : TG_ENOMEM;
    }
    size_t cap = strlen(sealed) + 1; /* the plaintext is shorter than its base64 */
    *plain = malloc(cap);
    if (*plain == NULL)
        return TG_ENOMEM;
    int rc = tg_crypto_open(w->team, sealed, *plain, cap, len, why, sizeof(why));
    if (rc != TG_OK) {
        snprintf(w->err, w->errlen, "an MCP header value of a preset of team '%.64s' cannot "
                 "be decrypted: %s", w->team, why);
        free(*plain);
        *plain = NULL;
        return TG_ERR;
    }
    return TG_OK;
}

static int mcp_value(void *arg, json_object *headers, const char *name, json_object *value)
{
    struct mcp_walk *w = arg;
    char kid[TG_CRYPTO_KID_LEN], why[300] = "";
    const char *sealed = json_object_is_type(value, json_type_string) &&
                                 tg_crypto_kid(json_object_get_string(value), kid) == TG_OK
                             ? json_object_get_string(value)
                             : NULL;
    if (w->mode == TG_STORE_MCP_COUNT || (w->mode == TG_STORE_MCP_SEAL && sealed != NULL) ||
        (w->mode == TG_STORE_MCP_OPEN && sealed == NULL)) {
        w->changed += w->mode == TG_STORE_MCP_COUNT && sealed == NULL;
        return TG_OK;
    }
    char *plain = NULL, *out = NULL;
    size_t len = 0;
    json_object *v = NULL;
    int rc = clear_text(w, value, sealed, &plain, &len);
    if (rc == TG_OK && w->mode == TG_STORE_MCP_OPEN) {
        v = tg_json_parse(plain, len, TG_JSON_MAX_DEPTH, why, sizeof(why));
        if (v == NULL) {
            snprintf(w->err, w->errlen,
                     "an MCP header value of a preset of team '%.64s' does not "
                     "read back: %s", w->team, why);
            rc = TG_ERR;
        }
    } else if (rc == TG_OK) {
        size_t cap = TG_CRYPTO_SEALED_LEN(len);
        out = malloc(cap);
        rc = out != NULL ? tg_crypto_seal(w->team, plain, len, out, cap, NULL, why, sizeof(why))
                         : TG_ENOMEM;
        if (rc != TG_OK && rc != TG_ENOMEM)
            snprintf(w->err, w->errlen, "cannot encrypt an MCP header value of a preset of "
                     "team '%.64s': %s", w->team, why);
        v = rc == TG_OK ? json_object_new_string(out) : NULL;
        if (rc == TG_OK && v == NULL)
            rc = TG_ENOMEM;
    }
    if (rc == TG_ENOMEM)
        snprintf(w->err, w->errlen, "out of memory");
    if (plain != NULL) {
        OPENSSL_cleanse(plain, len);
        free(plain);
    }
    free(out);
    if (rc != TG_OK) {
        json_object_put(v);
        return rc;
    }
    json_object_object_add(headers, name, v);
    w->changed++;
    return TG_OK;
}

int tg_store_preset_mcp(const char *team, const char *body, enum tg_store_mcp_mode mode,
                        char **out, long *changed, char *err, size_t errlen)
{
    if (out != NULL)
        *out = NULL;
    if (changed != NULL)
        *changed = 0;
    if (body == NULL || strstr(body, "mcp_servers") == NULL)
        return TG_OK;
    char why[256];
    json_object *o = tg_json_parse(body, strlen(body), 2 * TG_JSON_MAX_DEPTH, why, sizeof(why));
    if (o == NULL) {
        snprintf(err, errlen, "a preset of team '%.64s' does not parse: %s", team, why);
        return TG_EINVAL;
    }
    struct mcp_walk w = {err, errlen, team, mode, 0};
    int rc = tg_json_mcp_headers(o, mcp_value, &w);
    if (rc == TG_EINVAL)
        snprintf(err, errlen, "a preset of team '%.64s' is nested too deeply", team);
    if (rc == TG_OK && w.changed > 0 && mode != TG_STORE_MCP_COUNT && out != NULL) {
        const char *text = tg_json_str(o, NULL);
        *out = text != NULL ? strdup(text) : NULL;
        if (*out == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = TG_ENOMEM;
        }
    }
    if (changed != NULL)
        *changed = w.changed;
    json_object_put(o);
    return rc;
}
