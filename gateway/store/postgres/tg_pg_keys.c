/* The PostgreSQL backend: the store's secrets at rest as a whole (tg_pg_int.h): how many
 * upstream keys are encrypted, re-sealing every one of them in one transaction (keys an older
 * version stored in clear, and `taskgate keys rotate`), and the sealing of the MCP server
 * header values in presets, which go through the same transaction. The twin of
 * store/sqlite/tg_sqlite_keys.c; single keys are sealed and opened in tg_pg_ident.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "tg_crypto.h"
#include "tg_json.h"
#include "tg_pg_int.h"

#define KEY_MAX 1024
#define SEALED_MAX TG_CRYPTO_SEALED_LEN(KEY_MAX)
/* The most distinct key ids a re-sealing names as replaced (as SQLite's). */
#define KIDS_MAX 8

/* ---- MCP server header values in presets ----------------------------------------------- */

struct mcp_walk {
    struct tg_store *st;
    const char *team;
    enum tg_pg_mcp_mode mode;
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
        tg_pg_set_err(w->st, "an MCP header value of a preset of team '%.64s' cannot be "
                      "decrypted: %s", w->team, why);
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
    if (w->mode == TG_PG_MCP_COUNT || (w->mode == TG_PG_MCP_SEAL && sealed != NULL) ||
        (w->mode == TG_PG_MCP_OPEN && sealed == NULL)) {
        w->changed += w->mode == TG_PG_MCP_COUNT && sealed == NULL;
        return TG_OK;
    }
    char *plain = NULL, *out = NULL;
    size_t len = 0;
    json_object *v = NULL;
    int rc = clear_text(w, value, sealed, &plain, &len);
    if (rc == TG_OK && w->mode == TG_PG_MCP_OPEN) {
        v = tg_json_parse(plain, len, TG_JSON_MAX_DEPTH, why, sizeof(why));
        if (v == NULL) {
            tg_pg_set_err(w->st,
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
            tg_pg_set_err(w->st, "cannot encrypt an MCP header value of a preset of team "
                          "'%.64s': %s", w->team, why);
        v = rc == TG_OK ? json_object_new_string(out) : NULL;
        if (rc == TG_OK && v == NULL)
            rc = TG_ENOMEM;
    }
    if (rc == TG_ENOMEM)
        tg_pg_set_err(w->st, "out of memory");
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

int tg_pg_preset_mcp(struct tg_store *st, const char *team, const char *body,
                     enum tg_pg_mcp_mode mode, char **out, long *changed)
{
    if (out != NULL)
        *out = NULL;
    if (changed != NULL)
        *changed = 0;
    if (body == NULL || strstr(body, "mcp_servers") == NULL)
        return TG_OK;
    char err[256];
    json_object *o = tg_json_parse(body, strlen(body), 2 * TG_JSON_MAX_DEPTH, err, sizeof(err));
    if (o == NULL) {
        tg_pg_set_err(st, "a preset of team '%.64s' does not parse: %s", team, err);
        return TG_EINVAL;
    }
    struct mcp_walk w = {st, team, mode, 0};
    int rc = tg_json_mcp_headers(o, mcp_value, &w);
    if (rc == TG_EINVAL)
        tg_pg_set_err(st, "a preset of team '%.64s' is nested too deeply", team);
    if (rc == TG_OK && w.changed > 0 && mode != TG_PG_MCP_COUNT && out != NULL) {
        const char *text = tg_json_str(o, NULL);
        *out = text != NULL ? strdup(text) : NULL;
        if (*out == NULL) {
            tg_pg_set_err(st, "out of memory");
            rc = TG_ENOMEM;
        }
    }
    if (changed != NULL)
        *changed = w.changed;
    json_object_put(o);
    return rc;
}

/* ---- statements ---------------------------------------------------------------------------
 * The re-sealing takes its rows FOR NO KEY UPDATE: a team's key change, a preset's change or
 * a second re-sealing on another daemon waits for this one's commit, then sees its result
 * (READ COMMITTED re-reads a locked row that changed: a key sealed meanwhile no longer
 * matches "key_id IS NULL" and is skipped), while the foreign-key checks of submissions,
 * which only share the key, go on. */

static const struct tg_pg_stmt keys_count = {
    "keys_count", "SELECT count(key_id), count(*) - count(key_id) FROM teams"};
static const struct tg_pg_stmt keys_presets_mcp = {
    "keys_presets_mcp",
    "SELECT t.name, p.body FROM presets p JOIN teams t ON t.id = p.team_id"
    " WHERE p.body LIKE '%mcp_servers%'"};
static const struct tg_pg_stmt keys_teams_lock = {
    "keys_teams_lock",
    "SELECT id, name, upstream_key, key_id IS NULL FROM teams"
    " WHERE $1::boolean OR key_id IS NULL ORDER BY id FOR NO KEY UPDATE"};
static const struct tg_pg_stmt keys_team_store = {
    "keys_team_store", "UPDATE teams SET upstream_key = $2, key_id = $3 WHERE id = $1"};
static const struct tg_pg_stmt keys_presets_lock = {
    "keys_presets_lock",
    "SELECT p.team_id, p.name, p.body, t.name FROM presets p JOIN teams t ON t.id = p.team_id"
    " WHERE p.body LIKE '%mcp_servers%' ORDER BY p.team_id, p.name FOR NO KEY UPDATE OF p"};
static const struct tg_pg_stmt keys_preset_store = {
    "keys_preset_store", "UPDATE presets SET body = $3 WHERE team_id = $1 AND name = $2"};

/* A re-sealing's state: the mode and what it counts, set afresh each time tg_pg_write runs
 * the transaction. */
struct reseal {
    struct tg_store *st;
    const struct tg_actor *who;
    const char *action;
    int every;
    long done;    /* keys sealed */
    long presets; /* presets rewritten (or, for presets_clear, holding clear values) */
    char kids[KIDS_MAX][TG_CRYPTO_KID_LEN];
    int nkids;
};

/* ---- presets ----------------------------------------------------------------------------- */

static int reseal_preset_row(void *arg, PGresult *res, int i)
{
    struct reseal *r = arg;
    struct tg_store *st = r->st;
    const char *name = tg_pg_text(res, i, 1), *body = tg_pg_text(res, i, 2);
    const char *team = tg_pg_text(res, i, 3);
    char *sealed = NULL;
    int rc = name != NULL && body != NULL && team != NULL
                 ? tg_pg_preset_mcp(st, team, body, r->every ? TG_PG_MCP_RESEAL : TG_PG_MCP_SEAL,
                                    &sealed, NULL)
                 : tg_pg_invalid(st, "a preset row without a name or body");
    if (rc == TG_OK && sealed != NULL) {
        const char *p[] = {tg_pg_text(res, i, 0), name, sealed};
        rc = tg_pg_run(st, &keys_preset_store, 3, p, "store the re-encrypted preset");
        r->presets += rc == TG_OK;
    }
    free(sealed);
    return rc;
}

static int clear_preset_row(void *arg, PGresult *res, int i)
{
    struct reseal *r = arg;
    struct tg_store *st = r->st;
    long clear = 0;
    const char *team = tg_pg_text(res, i, 0);
    int rc = tg_pg_preset_mcp(st, team != NULL ? team : "", tg_pg_text(res, i, 1),
                              TG_PG_MCP_COUNT, NULL, &clear);
    r->presets += clear > 0;
    return rc;
}

int tg_pg_presets_clear(struct tg_store *st, long *n)
{
    struct reseal r = {.st = st};
    *n = 0;
    int rc = tg_pg_each(st, &keys_presets_mcp, 0, NULL, "read presets", clear_preset_row, &r);
    if (rc == TG_OK)
        *n = r.presets;
    return rc;
}

/* ---- upstream keys ----------------------------------------------------------------------- */

int tg_pg_keys_summary(struct tg_store *st, long *sealed, long *clear)
{
    PGresult *res;
    int rc = tg_pg_one(st, &keys_count, 0, NULL, &res, "count keys");
    if (rc == TG_OK) {
        *sealed = (long)tg_pg_int(res, 0, 0);
        *clear = (long)tg_pg_int(res, 0, 1);
        PQclear(res);
    }
    return rc;
}

/* Notes the key id that sealed stored, among at most KIDS_MAX. */
static void note_kid(struct reseal *r, const char *stored)
{
    char kid[TG_CRYPTO_KID_LEN];
    if (tg_crypto_kid(stored, kid) != TG_OK || r->nkids >= KIDS_MAX)
        return;
    for (int i = 0; i < r->nkids; i++)
        if (strcmp(r->kids[i], kid) == 0)
            return;
    memcpy(r->kids[r->nkids++], kid, sizeof(kid));
}

/* One team's key re-sealed under the ring's sealing key, inside the transaction. The clear
 * value lives in a buffer wiped before return. */
static int reseal_one(struct tg_store *st, struct reseal *r, const char *id, const char *name,
                      const char *stored, int is_clear)
{
    char plain[KEY_MAX + 1], sealed[SEALED_MAX], kid[TG_CRYPTO_KID_LEN], why[300] = "";
    int rc = TG_OK;
    if (is_clear) {
        if (strlen(stored) > KEY_MAX)
            rc = tg_pg_invalid(st, "a clear-text key is longer than 1024 characters");
        else
            snprintf(plain, sizeof(plain), "%s", stored);
    } else {
        note_kid(r, stored);
        rc = tg_crypto_open(name, stored, plain, sizeof(plain), NULL, why, sizeof(why));
        if (rc != TG_OK) {
            tg_pg_set_err(st, "the key of team '%.64s' cannot be decrypted: %s", name, why);
            rc = TG_ERR;
        }
    }
    if (rc == TG_OK) {
        rc = tg_crypto_seal(name, plain, strlen(plain), sealed, sizeof(sealed), kid, why,
                            sizeof(why));
        if (rc != TG_OK)
            tg_pg_set_err(st, "cannot encrypt the key of team '%.64s': %s", name, why);
    }
    OPENSSL_cleanse(plain, sizeof(plain));
    if (rc != TG_OK)
        return rc;
    const char *p[] = {id, sealed, kid};
    return tg_pg_run(st, &keys_team_store, 3, p, "store the re-encrypted key");
}

static int reseal_key_row(void *arg, PGresult *res, int i)
{
    struct reseal *r = arg;
    struct tg_store *st = r->st;
    const char *id = tg_pg_text(res, i, 0), *name = tg_pg_text(res, i, 1);
    const char *stored = tg_pg_text(res, i, 2), *is_clear = tg_pg_text(res, i, 3);
    if (id == NULL || name == NULL || stored == NULL || is_clear == NULL)
        return tg_pg_invalid(st, "a team row without a name or key");
    int rc = reseal_one(st, r, id, name, stored, strcmp(is_clear, "t") == 0);
    r->done += rc == TG_OK;
    return rc;
}

/* The admin_log row of a re-sealing: which keys were replaced, which key seals them now. */
static int log_reseal(struct tg_store *st, const struct reseal *r)
{
    char now_kid[TG_CRYPTO_KID_LEN];
    tg_crypto_current_kid(now_kid);
    json_object *before = json_object_new_object(), *after = json_object_new_object();
    json_object *olds = json_object_new_array();
    for (int i = 0; olds != NULL && i < r->nkids; i++)
        json_object_array_add(olds, json_object_new_string(r->kids[i]));
    if (before == NULL || after == NULL || olds == NULL) {
        json_object_put(before);
        json_object_put(after);
        json_object_put(olds);
        tg_pg_set_err(st, "out of memory");
        return TG_ENOMEM;
    }
    json_object_object_add(before, "key_ids", olds);
    json_object_object_add(after, "key_id", json_object_new_string(now_kid));
    json_object_object_add(after, "teams", json_object_new_int64(r->done));
    if (r->presets > 0)
        json_object_object_add(after, "presets", json_object_new_int64(r->presets));
    int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
    int rc = tg_pg_admin_log(st, r->who, r->action, "keys", "upstream_keys", NULL,
                             json_object_to_json_string_ext(before, flags),
                             json_object_to_json_string_ext(after, flags));
    json_object_put(before);
    json_object_put(after);
    return rc;
}

/* The whole re-sealing, as one transaction (tg_pg_write may run it again: it starts from
 * nothing each time). */
static int reseal_w(struct tg_store *st, void *arg)
{
    struct reseal *r = arg;
    r->done = 0;
    r->presets = 0;
    r->nkids = 0;
    r->st = st;
    const char *p[] = {r->every ? "true" : "false"};
    int rc = tg_pg_each(st, &keys_teams_lock, 1, p, "read keys", reseal_key_row, r);
    if (rc == TG_OK)
        rc = tg_pg_each(st, &keys_presets_lock, 0, NULL, "read presets", reseal_preset_row, r);
    /* A rotation is logged even when there is no team: the key file changed. */
    if (rc == TG_OK && (r->done > 0 || r->presets > 0 || r->every))
        rc = log_reseal(st, r);
    return rc;
}

int tg_pg_keys_reseal(struct tg_store *st, const struct tg_actor *who, int every,
                      const char *action, long *n)
{
    struct reseal r = {.st = st, .who = who, .action = action, .every = every != 0};
    *n = 0;
    int rc = tg_pg_write(st, reseal_w, &r);
    if (rc == TG_OK)
        *n = r.done;
    return rc;
}
