/* The store's upstream keys as a whole: how many are encrypted, and re-sealing every one
 * of them in one transaction (the encryption of keys an older version stored in clear, and
 * `taskgate keys rotate`). Single keys are sealed and opened in tg_store_ident.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include "tg_crypto.h"
#include "tg_store.h"
#include "tg_store_int.h"

#define KEY_MAX 1024
#define SEALED_MAX TG_CRYPTO_SEALED_LEN(KEY_MAX)

int tg_store_keys_summary(struct tg_store *st, long *sealed, long *clear)
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
        rc = store_db_err(st, src, "count keys");
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
            rc = store_invalid(st, "a clear-text key is longer than 1024 characters");
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
            store_set_err(st, "the key of team '%.64s' cannot be decrypted: %s", name, why);
            rc = TG_ERR;
        }
    }
    if (rc == TG_OK) {
        rc = tg_crypto_seal(name, plain, strlen(plain), sealed, sizeof(sealed), kid, why,
                            sizeof(why));
        if (rc != TG_OK)
            store_set_err(st, "cannot encrypt the key of team '%.64s': %s", name, why);
    }
    OPENSSL_cleanse(plain, sizeof(plain));
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(upd, 1, id);
    store_bind_text(upd, 2, sealed);
    store_bind_text(upd, 3, kid);
    return store_run(st, upd, "store the re-encrypted key");
}

/* The admin_log row of a re-sealing: which keys were replaced, which key seals them now. */
static int log_reseal(struct tg_store *st, const struct tg_actor *who, const char *action,
                      char kids[][TG_CRYPTO_KID_LEN], int nkids, long n)
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
        store_set_err(st, "out of memory");
        return TG_ENOMEM;
    }
    json_object_object_add(before, "key_ids", olds);
    json_object_object_add(after, "key_id", json_object_new_string(now_kid));
    json_object_object_add(after, "teams", json_object_new_int64(n));
    int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
    int rc = store_admin_log(st, who, action, "keys", "upstream_keys", NULL,
                             json_object_to_json_string_ext(before, flags),
                             json_object_to_json_string_ext(after, flags));
    json_object_put(before);
    json_object_put(after);
    return rc;
}

int tg_store_keys_reseal(struct tg_store *st, const struct tg_actor *who, int every,
                         const char *action, long *n)
{
    sqlite3_stmt *sel = NULL, *upd = NULL;
    char kids[8][TG_CRYPTO_KID_LEN];
    int nkids = 0;
    long done = 0;
    *n = 0;
    int rc = store_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    int src = sqlite3_prepare_v2(st->db,
                                 "SELECT id, name, upstream_key, key_id IS NULL FROM teams"
                                 " WHERE ?1 OR key_id IS NULL ORDER BY id",
                                 -1, &sel, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_prepare_v2(st->db,
                                 "UPDATE teams SET upstream_key = ?2, key_id = ?3 WHERE id = ?1",
                                 -1, &upd, NULL);
    if (src != SQLITE_OK)
        rc = store_db_err(st, src, "prepare");
    if (rc == TG_OK)
        sqlite3_bind_int(sel, 1, every != 0);
    while (rc == TG_OK) {
        src = sqlite3_step(sel);
        if (src == SQLITE_DONE)
            break;
        if (src != SQLITE_ROW) {
            rc = store_db_err(st, src, "read keys");
            break;
        }
        const char *name = store_col_text(sel, 1), *stored = store_col_text(sel, 2);
        if (name == NULL || stored == NULL) {
            store_set_err(st, "out of memory");
            rc = TG_ENOMEM;
            break;
        }
        rc = reseal_one(st, upd, sqlite3_column_int64(sel, 0), name, stored,
                        sqlite3_column_int(sel, 3), kids, &nkids);
        done += rc == TG_OK;
    }
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    /* A rotation is logged even when there is no team: the key file changed. */
    if (rc == TG_OK && (done > 0 || every))
        rc = log_reseal(st, who, action, kids, nkids, done);
    rc = store_tx_end(st, rc);
    if (rc == TG_OK) {
        *n = done;
        /* Move the committed pages into the database file and empty the WAL, so clear
         * text an older version wrote does not linger there (secure_delete zeroed it on
         * its pages). Best effort: a reader may hold the WAL. */
        sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    }
    return rc;
}
