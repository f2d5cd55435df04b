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

/* The walk is the store's, the same for every backend (tg_store_mcp.c). */
int tg_pg_preset_mcp(struct tg_store *st, const char *team, const char *body,
                     enum tg_store_mcp_mode mode, char **out, long *changed)
{
    return tg_store_preset_mcp(team, body, mode, out, changed, st->err, sizeof(st->err));
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
                 ? tg_pg_preset_mcp(st, team, body, r->every ? TG_STORE_MCP_RESEAL : TG_STORE_MCP_SEAL,
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
                              TG_STORE_MCP_COUNT, NULL, &clear);
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
