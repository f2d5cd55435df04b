/* The store's secrets at rest as a whole: how many upstream keys are encrypted, re-sealing
 * every one of them in one transaction (the encryption of keys an older version stored in
 * clear, and `taskgate keys rotate`), and the sealing of the MCP server header values in
 * presets, which go through the same transaction. Single keys are sealed and opened in
 * tg_sqlite_ident.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include "tg_crypto.h"
#include "tg_json.h"
#include "tg_store.h"
#include "tg_sqlite_int.h"

#define KEY_MAX 1024
#define SEALED_MAX TG_CRYPTO_SEALED_LEN(KEY_MAX)

/* ---- MCP server header values in presets ----------------------------------------------- */

/* The walk is the store's, the same for every backend (tg_store_mcp.c). */
int tg_sqlite_preset_mcp(struct tg_store *st, const char *team, const char *body,
                         enum tg_store_mcp_mode mode, char **out, long *changed)
{
    return tg_store_preset_mcp(team, body, mode, out, changed, st->err, sizeof(st->err));
}

/* The two statements of a re-sealing walk: the SELECT of the rows and the UPDATE of each
 * (rare operations: prepared for the call, finalized by the caller, NULL accepted). */
static int prepare_walk(struct tg_store *st, const char *sel_sql, const char *upd_sql,
                        sqlite3_stmt **sel, sqlite3_stmt **upd)
{
    int src = sqlite3_prepare_v2(st->db, sel_sql, -1, sel, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_prepare_v2(st->db, upd_sql, -1, upd, NULL);
    return src == SQLITE_OK ? TG_OK : tg_sqlite_db_err(st, src, "prepare");
}

/* A re-sealing walk's state: the handle, the UPDATE, the mode and what it counts. */
struct reseal {
    struct tg_store *st;
    sqlite3_stmt *upd;
    int every;
    long *n;
    char (*kids)[TG_CRYPTO_KID_LEN];
    int *nkids;
};

static int reseal_preset_row(void *arg, sqlite3_stmt *sel)
{
    const struct reseal *r = arg;
    const char *name = tg_sqlite_col_text(sel, 1), *body = tg_sqlite_col_text(sel, 2);
    const char *team = tg_sqlite_col_text(sel, 3);
    char *sealed = NULL;
    int rc = name != NULL && body != NULL && team != NULL
                 ? tg_sqlite_preset_mcp(r->st, team, body,
                                        r->every ? TG_STORE_MCP_RESEAL : TG_STORE_MCP_SEAL, &sealed, NULL)
                 : tg_sqlite_invalid(r->st, "a preset row without a name or body");
    if (rc == TG_OK && sealed != NULL) {
        sqlite3_bind_int64(r->upd, 1, sqlite3_column_int64(sel, 0));
        tg_sqlite_bind_text(r->upd, 2, name);
        tg_sqlite_bind_text(r->upd, 3, sealed);
        rc = tg_sqlite_run(r->st, r->upd, "store the re-encrypted preset");
        *r->n += rc == TG_OK;
    }
    free(sealed);
    return rc;
}

/* Seals (every: re-seals) the MCP header values of every preset, inside the caller's
 * transaction; *n counts the presets rewritten. */
static int reseal_presets(struct tg_store *st, int every, long *n)
{
    sqlite3_stmt *sel = NULL, *upd = NULL;
    int rc = prepare_walk(st,
                          "SELECT p.team_id, p.name, p.body, t.name FROM presets p"
                          " JOIN teams t ON t.id = p.team_id"
                          " WHERE p.body LIKE '%mcp_servers%' ORDER BY p.team_id, p.name",
                          "UPDATE presets SET body = ?3 WHERE team_id = ?1 AND name = ?2",
                          &sel, &upd);
    *n = 0;
    struct reseal r = {st, upd, every, n, NULL, NULL};
    if (rc == TG_OK)
        rc = tg_sqlite_each(st, sel, "read presets", reseal_preset_row, &r);
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    return rc;
}

static int clear_preset_row(void *arg, sqlite3_stmt *s)
{
    const struct reseal *r = arg;
    long clear = 0;
    const char *team = tg_sqlite_col_text(s, 0), *body = tg_sqlite_col_text(s, 1);
    int rc = tg_sqlite_preset_mcp(r->st, team != NULL ? team : "", body, TG_STORE_MCP_COUNT, NULL,
                                  &clear);
    *r->n += clear > 0;
    return rc;
}

int tg_sqlite_presets_clear(struct tg_store *st, long *n)
{
    sqlite3_stmt *s = NULL;
    *n = 0;
    int src = sqlite3_prepare_v2(st->db,
                                 "SELECT t.name, p.body FROM presets p JOIN teams t"
                                 " ON t.id = p.team_id WHERE p.body LIKE '%mcp_servers%'",
                                 -1, &s, NULL);
    int rc = src == SQLITE_OK ? TG_OK : tg_sqlite_db_err(st, src, "prepare");
    struct reseal r = {st, NULL, 0, n, NULL, NULL};
    if (rc == TG_OK)
        rc = tg_sqlite_each(st, s, "read presets", clear_preset_row, &r);
    sqlite3_finalize(s);
    return rc;
}

/* ---- upstream keys ----------------------------------------------------------------------- */

int tg_sqlite_keys_summary(struct tg_store *st, long *sealed, long *clear)
{
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(st->db,
                                 "SELECT count(key_id), count(*) - count(key_id) FROM teams",
                                 -1, &s, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    int rc = TG_OK;
    if (src == SQLITE_ROW) {
        *sealed = (long)sqlite3_column_int64(s, 0);
        *clear = (long)sqlite3_column_int64(s, 1);
    } else {
        rc = tg_sqlite_db_err(st, src, "count keys");
    }
    sqlite3_finalize(s);
    return rc;
}

/* One team's key re-sealed under the ring's sealing key, inside the transaction. The clear
 * value lives in a buffer wiped before return. */
static int reseal_one(struct tg_store *st, sqlite3_stmt *upd, int64_t id, const char *name,
                      const char *stored, int is_clear, char kids[][TG_CRYPTO_KID_LEN],
                      int *nkids)
{
    char plain[KEY_MAX + 1], sealed[SEALED_MAX], kid[TG_CRYPTO_KID_LEN], why[300] = "";
    int rc = TG_OK;
    if (is_clear) {
        if (strlen(stored) > KEY_MAX)
            rc = tg_sqlite_invalid(st, "a clear-text key is longer than 1024 characters");
        else
            snprintf(plain, sizeof(plain), "%s", stored);
    } else {
        if (tg_crypto_kid(stored, kid) == TG_OK && *nkids < 8) {
            int seen = 0;
            for (int i = 0; i < *nkids; i++)
                seen |= strcmp(kids[i], kid) == 0;
            if (!seen)
                memcpy(kids[(*nkids)++], kid, sizeof(kid));
        }
        rc = tg_crypto_open(name, stored, plain, sizeof(plain), NULL, why, sizeof(why));
        if (rc != TG_OK) {
            tg_sqlite_set_err(st, "the key of team '%.64s' cannot be decrypted: %s", name,
                              why);
            rc = TG_ERR;
        }
    }
    if (rc == TG_OK) {
        rc = tg_crypto_seal(name, plain, strlen(plain), sealed, sizeof(sealed), kid, why,
                            sizeof(why));
        if (rc != TG_OK)
            tg_sqlite_set_err(st, "cannot encrypt the key of team '%.64s': %s", name, why);
    }
    OPENSSL_cleanse(plain, sizeof(plain));
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(upd, 1, id);
    tg_sqlite_bind_text(upd, 2, sealed);
    tg_sqlite_bind_text(upd, 3, kid);
    return tg_sqlite_run(st, upd, "store the re-encrypted key");
}

/* The admin_log row of a re-sealing: which keys were replaced, which key seals them now. */
static int log_reseal(struct tg_store *st, const struct tg_actor *who, const char *action,
                      char kids[][TG_CRYPTO_KID_LEN], int nkids, long n, long presets)
{
    char now_kid[TG_CRYPTO_KID_LEN];
    tg_crypto_current_kid(now_kid);
    json_object *before = json_object_new_object(), *after = json_object_new_object();
    json_object *olds = json_object_new_array();
    for (int i = 0; olds != NULL && i < nkids; i++)
        json_object_array_add(olds, json_object_new_string(kids[i]));
    if (before == NULL || after == NULL || olds == NULL) {
        json_object_put(before);
        json_object_put(after);
        json_object_put(olds);
        tg_sqlite_set_err(st, "out of memory");
        return TG_ENOMEM;
    }
    json_object_object_add(before, "key_ids", olds);
    json_object_object_add(after, "key_id", json_object_new_string(now_kid));
    json_object_object_add(after, "teams", json_object_new_int64(n));
    if (presets > 0)
        json_object_object_add(after, "presets", json_object_new_int64(presets));
    int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
    int rc = tg_sqlite_admin_log(st, who, action, "keys", "upstream_keys", NULL,
                                 json_object_to_json_string_ext(before, flags),
                                 json_object_to_json_string_ext(after, flags));
    json_object_put(before);
    json_object_put(after);
    return rc;
}

static int reseal_key_row(void *arg, sqlite3_stmt *sel)
{
    const struct reseal *r = arg;
    const char *name = tg_sqlite_col_text(sel, 1), *stored = tg_sqlite_col_text(sel, 2);
    if (name == NULL || stored == NULL) {
        tg_sqlite_set_err(r->st, "out of memory");
        return TG_ENOMEM;
    }
    int rc = reseal_one(r->st, r->upd, sqlite3_column_int64(sel, 0), name, stored,
                        sqlite3_column_int(sel, 3), r->kids, r->nkids);
    *r->n += rc == TG_OK;
    return rc;
}

int tg_sqlite_keys_reseal(struct tg_store *st, const struct tg_actor *who, int every,
                          const char *action, long *n)
{
    sqlite3_stmt *sel = NULL, *upd = NULL;
    char kids[8][TG_CRYPTO_KID_LEN];
    int nkids = 0;
    long done = 0;
    *n = 0;
    int rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    rc = prepare_walk(st,
                      "SELECT id, name, upstream_key, key_id IS NULL FROM teams"
                      " WHERE ?1 OR key_id IS NULL ORDER BY id",
                      "UPDATE teams SET upstream_key = ?2, key_id = ?3 WHERE id = ?1", &sel,
                      &upd);
    struct reseal r = {st, upd, every, &done, kids, &nkids};
    if (rc == TG_OK) {
        sqlite3_bind_int(sel, 1, every != 0);
        rc = tg_sqlite_each(st, sel, "read keys", reseal_key_row, &r);
    }
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    long presets = 0;
    if (rc == TG_OK)
        rc = reseal_presets(st, every, &presets);
    /* A rotation is logged even when there is no team: the key file changed. */
    if (rc == TG_OK && (done > 0 || presets > 0 || every))
        rc = log_reseal(st, who, action, kids, nkids, done, presets);
    rc = tg_sqlite_tx_end(st, rc);
    if (rc == TG_OK) {
        *n = done;
        /* Move the committed pages into the database file and empty the WAL, so clear
         * text an older version wrote does not linger there (secure_delete zeroed it on
         * its pages). Best effort: a reader may hold the WAL. */
        sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    }
    return rc;
}
