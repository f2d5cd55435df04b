/* The store's identities: teams and their keys, tokens, presets, and the admin change
 * log written with every change to them (see tg_store.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include "tg_crypto.h"
#include "tg_json.h"
#include "tg_sha256.h"
#include "tg_store.h"
#include "tg_sqlite_int.h"

/* The first column of a one-row lookup by a text or integer key, copied into out ("" and
 * TG_ENOTFOUND when there is no row). */
static int lookup_text(struct tg_store *st, enum stmt_id id, const char *key, int64_t ikey,
                       char *out, size_t outlen)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, id, &s);
    if (rc != TG_OK)
        return rc;
    if (key != NULL)
        tg_sqlite_bind_text(s, 1, key);
    else
        sqlite3_bind_int64(s, 1, ikey);
    out[0] = '\0';
    rc = tg_sqlite_one(st, s, "look up");
    if (rc == TG_OK) {
        const char *v = tg_sqlite_col_text(s, 0);
        snprintf(out, outlen, "%s", v != NULL ? v : "");
    }
    tg_sqlite_done(s);
    return rc;
}

/* A preset's JSON as the admin log may show it: MCP server header values fingerprinted.
 * malloc'd; NULL for NULL or unparsable text. */
static char *redacted(const char *json)
{
    if (json == NULL)
        return NULL;
    json_object *o = tg_json_parse_text(json);
    if (o == NULL)
        return NULL;
    if (tg_json_redact_mcp(o) != TG_OK) {
        json_object_put(o);
        return NULL;
    }
    char *copy = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return copy;
}

/* A JSON object from string pairs (name, value, …, NULL); a NULL value is JSON null. */
static char *json_pairs(const char *first, ...)
{
    json_object *o = json_object_new_object();
    va_list ap;
    va_start(ap, first);
    for (const char *k = first; k != NULL; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        json_object_object_add(o, k, v != NULL ? json_object_new_string(v) : NULL);
    }
    va_end(ap);
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE);
    char *copy = text != NULL ? strdup(text) : NULL;
    json_object_put(o);
    return copy;
}

/* Logs a change from its before and after (json_pairs' results: NULL means out of memory),
 * and frees both. */
static int log_change(struct tg_store *st, const struct tg_actor *who, const char *action,
                      const char *object_type, const char *object_id, const char *team,
                      char *before, char *after)
{
    int rc = before != NULL && after != NULL
                 ? tg_sqlite_admin_log(st, who, action, object_type, object_id, team, before,
                                       after)
                 : TG_ENOMEM;
    free(before);
    free(after);
    return rc;
}

/* ---- identities ------------------------------------------------------------------------ */

/* The row's stored token hash equals the one looked up, compared in constant time: the
 * index found the row, but the answer never depends on how many leading bytes agree. */
static int hash_matches(sqlite3_stmt *s, int col, const char *token_hash)
{
    const char *stored = tg_sqlite_col_text(s, col);
    size_t n = strlen(token_hash);
    return stored != NULL && (size_t)sqlite3_column_bytes(s, col) == n &&
           CRYPTO_memcmp(stored, token_hash, n) == 0;
}

/* ---- tokens kept ----
 * A worker checks the same few tokens request after request, and a read for each costs a
 * read transaction (its locks, and a page cache that every commit of the writer empties).
 * So each token a read found is kept with the generation that read saw. The generation
 * moves with every change of tokens, teams, presets and group ownership
 * (sql/sqlite/009_generation.sql, 013_token_generation.sql), whoever makes it: a kept
 * token that answers at the newest generation the handle has read is what the file held
 * then, and the handle's next write, in the writer's transaction, finds whether the
 * generation is still that one before it changes anything (tg_sqlite_write). So a
 * revocation, a new key or preset is exact at the commit of the record it would have
 * changed, not merely at a read before it. */

static struct tg_sqlite_token *token_find(struct tg_store *st, const char *token_hash)
{
    size_t n = strlen(token_hash);
    if (n >= TG_HASH_LEN || st->seen < 0)
        return NULL;
    for (int i = 0; i < KEPT_TOKENS; i++) {
        struct tg_sqlite_token *t = &st->tokens[i];
        if (t->used && t->generation == st->seen && strlen(t->hash) == n &&
            CRYPTO_memcmp(t->hash, token_hash, n) == 0)
            return t;
    }
    return NULL;
}

static void token_keep(struct tg_store *st, const char *token_hash, sqlite3_stmt *s,
                       const struct tg_auth *a)
{
    size_t n = strlen(token_hash);
    if (n >= TG_HASH_LEN)
        return;
    struct tg_sqlite_token *t = token_find(st, token_hash);
    for (int i = 0; t == NULL && i < KEPT_TOKENS; i++)
        if (!st->tokens[i].used || st->tokens[i].generation != st->seen)
            t = &st->tokens[i];
    if (t == NULL) {
        st->tokens_next = (st->tokens_next + 1) % KEPT_TOKENS;
        t = &st->tokens[st->tokens_next];
    }
    memcpy(t->hash, token_hash, n + 1);
    tg_sqlite_col_copy(t->expires, sizeof(t->expires), s, 7);
    t->auth = *a;
    t->generation = st->seen;
    t->used = 1;
}

/* Forgets the kept token of this hash, if any (the read found none). */
static void token_forget(struct tg_store *st, const char *token_hash)
{
    size_t n = strlen(token_hash);
    for (int i = 0; i < KEPT_TOKENS; i++) {
        struct tg_sqlite_token *t = &st->tokens[i];
        if (t->used && strlen(t->hash) == n && CRYPTO_memcmp(t->hash, token_hash, n) == 0)
            memset(t, 0, sizeof(*t));
    }
}

int tg_sqlite_auth_kept(struct tg_store *st, const char *token_hash, int64_t now_ms,
                        struct tg_auth *out)
{
    if (token_hash == NULL || out == NULL)
        return tg_sqlite_invalid(st, "auth: no token hash");
    const struct tg_sqlite_token *t = token_find(st, token_hash);
    char now[TG_TIME_LEN];
    tg_time_format(now_ms, now);
    if (t == NULL || (t->expires[0] != '\0' && strcmp(t->expires, now) <= 0))
        return tg_sqlite_auth(st, token_hash, now_ms, out);
    *out = t->auth;
    st->generation = t->generation;
    st->unconfirmed = t->generation;
    memcpy(st->unconfirmed_hash, t->hash, sizeof(st->unconfirmed_hash));
    return TG_OK;
}

int tg_sqlite_auth_confirm(struct tg_store *st, int64_t now_ms)
{
    if (st->unconfirmed < 0)
        return TG_OK;
    int64_t want = st->unconfirmed;
    char hash[TG_HASH_LEN];
    memcpy(hash, st->unconfirmed_hash, sizeof(hash));
    struct tg_auth a;
    int rc = tg_sqlite_auth(st, hash, now_ms, &a);
    if (rc == TG_ENOTFOUND)
        return TG_ESTALE;
    if (rc != TG_OK)
        return rc;
    return st->generation == want ? TG_OK : TG_ESTALE;
}

int tg_sqlite_generation_is(struct tg_store *st, int64_t want)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_GENERATION, &s);
    if (rc != TG_OK)
        return rc;
    rc = tg_sqlite_one(st, s, "generation");
    if (rc == TG_OK && sqlite3_column_int64(s, 0) != want) {
        tg_sqlite_set_err(st, "a token, team, preset or group changed since the token was "
                              "checked");
        rc = TG_ESTALE;
    }
    tg_sqlite_done(s);
    return rc;
}

int tg_sqlite_auth(struct tg_store *st, const char *token_hash, int64_t now_ms,
                   struct tg_auth *out)
{
    if (token_hash == NULL || out == NULL)
        return tg_sqlite_invalid(st, "auth: no token hash");
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_AUTH, &s);
    if (rc != TG_OK)
        return rc;
    char now[TG_TIME_LEN];
    tg_time_format(now_ms, now);
    if (tg_sqlite_bind_text(s, 1, token_hash) != SQLITE_OK || tg_sqlite_bind_text(s, 2, now) != SQLITE_OK) {
        rc = tg_sqlite_db_err(st, sqlite3_errcode(st->db), "auth");
        goto out;
    }
    st->generation = -1;
    st->unconfirmed = -1;
    rc = tg_sqlite_one(st, s, "auth");
    if (rc == TG_OK && !hash_matches(s, 5, token_hash))
        rc = TG_ENOTFOUND;
    if (rc == TG_ENOTFOUND) {
        tg_sqlite_set_err(st, "no such token, or it is revoked or expired");
        token_forget(st, token_hash);
    } else if (rc == TG_OK) {
        memset(out, 0, sizeof(*out));
        out->team_id = sqlite3_column_int64(s, 0);
        tg_sqlite_col_copy(out->team, sizeof(out->team), s, 1);
        tg_sqlite_col_copy(out->token_id, sizeof(out->token_id), s, 2);
        tg_sqlite_col_copy(out->label, sizeof(out->label), s, 3);
        if (tg_domain_role_parse(tg_sqlite_col_text(s, 4), &out->role) != TG_OK)
            out->role = TG_ROLE_SUBMIT; /* the schema's CHECK makes this unreachable */
        st->generation = sqlite3_column_int64(s, 6);
        st->seen = st->generation;
        token_keep(st, token_hash, s, out);
    }
out:
    tg_sqlite_done(s);
    return rc;
}

/* Reads the team's key and opens it into buf; kept on success. */
static int team_key_read(struct tg_store *st, int64_t team_id, char *buf, size_t buflen)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_TEAM_KEY, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, team_id);
    rc = tg_sqlite_one(st, s, "team key");
    if (rc == TG_OK && sqlite3_column_type(s, 1) == SQLITE_NULL)
        rc = TG_ENOTFOUND;
    if (rc == TG_ENOTFOUND) {
        tg_sqlite_set_err(st, "no team with id %lld", (long long)team_id);
    } else if (rc == TG_OK) {
        const char *name = tg_sqlite_col_text(s, 1), *sealed = tg_sqlite_col_text(s, 2);
        char why[300] = "";
        size_t len = 0;
        if (name == NULL || sealed == NULL) {
            tg_sqlite_set_err(st, "out of memory");
            rc = TG_ENOMEM;
        } else if (sqlite3_column_type(s, 3) == SQLITE_NULL) {
            tg_sqlite_set_err(st,
                              "the upstream key of team '%.64s' is still stored in clear: run "
                              "`taskgate init` to encrypt it", name);
            rc = TG_ERR;
        } else {
            rc = tg_crypto_open(name, sealed, buf, buflen, &len, why, sizeof(why));
            struct tg_sqlite_kept *k = NULL;
            if (rc == TG_OK)
                k = tg_sqlite_kept_keep(st, KEPT_KEY, team_id, NULL,
                                        sqlite3_column_int64(s, 0), 1, buf, len);
            if (k != NULL)
                k->opened = 1;
            else if (rc == TG_ETOOBIG)
                tg_sqlite_set_err(st, "the upstream key of team %lld does not fit",
                                  (long long)team_id);
            else
                tg_sqlite_set_err(st,
                                  "the upstream key of team '%.64s' cannot be decrypted: %s",
                                  name, why);
            if (rc == TG_EINVAL)
                rc = TG_ERR;
        }
    }
    tg_sqlite_done(s);
    return rc;
}

int tg_sqlite_team_key(struct tg_store *st, int64_t team_id, char *buf, size_t buflen)
{
    if (buf == NULL || buflen == 0)
        return tg_sqlite_invalid(st, "team key: no buffer");
    buf[0] = '\0';
    const struct tg_sqlite_kept *k = tg_sqlite_kept_find(st, KEPT_KEY, team_id, NULL);
    if (k == NULL)
        return team_key_read(st, team_id, buf, buflen);
    char why[300] = "";
    if (tg_crypto_usable(why, sizeof(why)) != TG_OK) {
        tg_sqlite_set_err(st, "the upstream key of team %lld cannot be decrypted: %s",
                          (long long)team_id, why);
        return TG_ERR;
    }
    if (k->len + 1 > buflen) {
        tg_sqlite_set_err(st, "the upstream key of team %lld does not fit", (long long)team_id);
        return TG_ETOOBIG;
    }
    memcpy(buf, k->value, k->len + 1);
    return TG_OK;
}

int tg_sqlite_team_id(struct tg_store *st, const char *name, int64_t *team_id)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_TEAM_ID, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, name);
    rc = tg_sqlite_one(st, s, "team id");
    if (rc == TG_OK)
        *team_id = sqlite3_column_int64(s, 0);
    else if (rc == TG_ENOTFOUND)
        tg_sqlite_set_err(st, "no team named '%.64s'", name != NULL ? name : "");
    tg_sqlite_done(s);
    return rc;
}

/* Upstream keys: at most this long in clear, and the size of their sealed text. */
#define UPSTREAM_KEY_MAX 1024
#define SEALED_KEY_LEN TG_CRYPTO_SEALED_LEN(UPSTREAM_KEY_MAX)

static int check_team_args(struct tg_store *st, const char *name, const char *key)
{
    if (name == NULL || name[0] == '\0' || strlen(name) > TEAM_NAME_MAX)
        return tg_sqlite_invalid(st, "a team name is 1 to 64 characters");
    if (key == NULL || key[0] == '\0')
        return tg_sqlite_invalid(st, "the upstream key is empty");
    if (strlen(key) > UPSTREAM_KEY_MAX)
        return tg_sqlite_invalid(st, "the upstream key is longer than 1024 characters");
    return TG_OK;
}

/* The key sealed for team name (tg_crypto.h) into out, and the sealing key's id. */
static int seal_key(struct tg_store *st, const char *name, const char *key,
                    char out[SEALED_KEY_LEN], char kid[TG_CRYPTO_KID_LEN])
{
    char why[300] = "";
    int rc = tg_crypto_seal(name, key, strlen(key), out, SEALED_KEY_LEN, kid, why, sizeof(why));
    if (rc != TG_OK)
        tg_sqlite_set_err(st, "cannot encrypt the upstream key: %s", why);
    return rc;
}

/* A team's key as stored: sealed, with the sealing key's id and the key's fingerprint, and
 * the time of the change. */
struct team_key {
    char fp[TG_FINGERPRINT_LEN], now[TG_TIME_LEN], sealed[SEALED_KEY_LEN], kid[TG_CRYPTO_KID_LEN];
};

/* Checks a team's name and key and makes what is stored of them. */
static int team_key_make(struct tg_store *st, const char *name, const char *key,
                         struct team_key *k)
{
    int rc = check_team_args(st, name, key);
    if (rc != TG_OK)
        return rc;
    tg_sha256_fingerprint(key, strlen(key), k->fp);
    tg_sqlite_now_text(k->now);
    return seal_key(st, name, key, k->sealed, k->kid);
}

/* S_TEAM_ADD and S_TEAM_SET_KEY take the team and its key as ?1-?5. */
static void team_key_bind(sqlite3_stmt *s, const char *name, const struct team_key *k)
{
    tg_sqlite_bind_text(s, 1, name);
    tg_sqlite_bind_text(s, 2, k->sealed);
    tg_sqlite_bind_text(s, 3, k->fp);
    tg_sqlite_bind_text(s, 4, k->now);
    tg_sqlite_bind_text(s, 5, k->kid);
}

int tg_sqlite_team_add(struct tg_store *st, const struct tg_actor *who, const char *name,
                       const char *key, int64_t *team_id)
{
    sqlite3_stmt *s;
    struct team_key k;
    int rc = team_key_make(st, name, key, &k);
    if (rc == TG_OK)
        rc = tg_sqlite_prep(st, S_TEAM_ADD, &s);
    if (rc == TG_OK)
        rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    team_key_bind(s, name, &k);
    rc = tg_sqlite_run(st, s, "add team");
    if (rc == TG_EEXIST)
        tg_sqlite_set_err(st, "team '%s' already exists", name);
    if (rc == TG_OK && team_id != NULL)
        *team_id = sqlite3_last_insert_rowid(st->db);
    if (rc == TG_OK) {
        char *after = json_pairs("name", name, "key_fingerprint", k.fp, NULL);
        rc = after != NULL
                 ? tg_sqlite_admin_log(st, who, "team.add", "team", name, name, NULL, after)
                 : TG_ENOMEM;
        free(after);
    }
    return tg_sqlite_tx_end(st, rc);
}

int tg_sqlite_team_set_key(struct tg_store *st, const struct tg_actor *who, const char *name,
                           const char *key)
{
    sqlite3_stmt *s;
    struct team_key k;
    int rc = team_key_make(st, name, key, &k);
    if (rc == TG_OK)
        rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    char old_fp[TG_FINGERPRINT_LEN + 8];
    rc = lookup_text(st, S_TEAM_FP, name, 0, old_fp, sizeof(old_fp));
    if (rc == TG_ENOTFOUND)
        tg_sqlite_set_err(st, "no team named '%s'", name);
    if (rc == TG_OK)
        rc = tg_sqlite_prep(st, S_TEAM_SET_KEY, &s);
    if (rc == TG_OK) {
        team_key_bind(s, name, &k);
        rc = tg_sqlite_run(st, s, "set team key");
    }
    if (rc == TG_OK)
        rc = log_change(st, who, "team.set_key", "team", name, name,
                        json_pairs("name", name, "key_fingerprint", old_fp, NULL),
                        json_pairs("name", name, "key_fingerprint", k.fp, NULL));
    return tg_sqlite_tx_end(st, rc);
}

/* A caller's walk over listed rows (tg_sqlite_each passes each to the kind's row function
 * below): the caller's function and its argument. */
struct walk {
    union {
        int (*team)(void *arg, const struct tg_team_row *row);
        int (*token)(void *arg, const struct tg_token_row *row);
        int (*preset)(void *arg, const char *name, const char *updated_at);
    } fn;
    void *arg;
};

static int team_row(void *arg, sqlite3_stmt *s)
{
    const struct walk *w = arg;
    struct tg_team_row row = {
        .id = sqlite3_column_int64(s, 0),
        .name = tg_sqlite_col_text(s, 1),
        .key_fingerprint = tg_sqlite_col_text(s, 2),
        .created_at = tg_sqlite_col_text(s, 3),
        .tokens = sqlite3_column_int(s, 4),
        .presets = sqlite3_column_int(s, 5),
    };
    return w->fn.team(w->arg, &row);
}

/* A token row is text throughout, in the statement's column order. */
static int token_row(void *arg, sqlite3_stmt *s)
{
    const struct walk *w = arg;
    struct tg_token_row row;
    const char **col[] = {&row.id,         &row.team,       &row.role,      &row.label,
                          &row.created_at, &row.expires_at, &row.revoked_at};
    for (size_t i = 0; i < sizeof(col) / sizeof(col[0]); i++)
        *col[i] = tg_sqlite_col_text(s, (int)i);
    return w->fn.token(w->arg, &row);
}

static int preset_row(void *arg, sqlite3_stmt *s)
{
    const struct walk *w = arg;
    return w->fn.preset(w->arg, tg_sqlite_col_text(s, 0), tg_sqlite_col_text(s, 1));
}

int tg_sqlite_team_list(struct tg_store *st,
                        int (*fn)(void *arg, const struct tg_team_row *row), void *arg)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_TEAM_LIST, &s);
    if (rc != TG_OK)
        return rc;
    char now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    tg_sqlite_bind_text(s, 1, now);
    struct walk w = {.fn.team = fn, .arg = arg};
    return tg_sqlite_each(st, s, "list teams", team_row, &w);
}

int tg_sqlite_token_add(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
                        const char *token_id, const char *hash, enum tg_role role,
                        const char *label, int64_t expires_ms)
{
    if (token_id == NULL || token_id[0] == '\0' || strlen(token_id) > TOKEN_ID_MAX)
        return tg_sqlite_invalid(st, "a token id is 1 to 39 characters");
    if (hash == NULL || hash[0] == '\0')
        return tg_sqlite_invalid(st, "the token hash is empty");
    if ((unsigned)role > TG_ROLE_ADMIN)
        return tg_sqlite_invalid(st, "unknown role");
    if (label != NULL && strlen(label) > LABEL_MAX)
        return tg_sqlite_invalid(st, "a token label is at most 128 characters");
    sqlite3_stmt *s;
    char now[TG_TIME_LEN], expires[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    tg_time_format(expires_ms, expires);
    int rc = tg_sqlite_prep(st, S_TOKEN_ADD, &s);
    if (rc == TG_OK)
        rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, token_id);
    sqlite3_bind_int64(s, 2, team_id);
    tg_sqlite_bind_text(s, 3, tg_domain_role_name(role));
    tg_sqlite_bind_text(s, 4, label);
    tg_sqlite_bind_text(s, 5, hash);
    tg_sqlite_bind_text(s, 6, now);
    tg_sqlite_bind_text(s, 7, expires_ms != 0 ? expires : NULL);
    rc = tg_sqlite_run(st, s, "add token");
    if (rc == TG_ENOTFOUND)
        tg_sqlite_set_err(st, "no team with id %lld", (long long)team_id);
    else if (rc == TG_EEXIST)
        tg_sqlite_set_err(st, "a token with this id or hash already exists");
    char team[TEAM_NAME_MAX + 1];
    if (rc == TG_OK)
        rc = lookup_text(st, S_TEAM_NAME, NULL, team_id, team, sizeof(team));
    if (rc == TG_OK) {
        char *after = json_pairs("id", token_id, "team", team, "role", tg_domain_role_name(role),
                                 "label", label, "expires_at", expires_ms != 0 ? expires : NULL,
                                 NULL);
        rc = after != NULL ? tg_sqlite_admin_log(st, who, "token.issue", "token", token_id, team,
                                                 NULL, after)
                           : TG_ENOMEM;
        free(after);
    }
    return tg_sqlite_tx_end(st, rc);
}

int tg_sqlite_token_revoke(struct tg_store *st, const struct tg_actor *who,
                           const char *token_id)
{
    if (token_id == NULL)
        return tg_sqlite_invalid(st, "no token id");
    sqlite3_stmt *s;
    char now[TG_TIME_LEN];
    tg_sqlite_now_text(now);
    int rc = tg_sqlite_prep(st, S_TOKEN_REVOKE, &s);
    if (rc == TG_OK)
        rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, token_id);
    tg_sqlite_bind_text(s, 2, now);
    rc = tg_sqlite_run(st, s, "revoke token");
    if (rc == TG_OK && sqlite3_changes(st->db) == 0) {
        tg_sqlite_set_err(st, "no token '%.40s', or it is already revoked", token_id);
        rc = TG_ENOTFOUND;
    }
    char team[TEAM_NAME_MAX + 1];
    if (rc == TG_OK)
        rc = lookup_text(st, S_TOKEN_INFO, token_id, 0, team, sizeof(team));
    if (rc == TG_OK)
        rc = log_change(st, who, "token.revoke", "token", token_id, team,
                        json_pairs("id", token_id, "revoked_at", NULL, NULL),
                        json_pairs("id", token_id, "revoked_at", now, NULL));
    return tg_sqlite_tx_end(st, rc);
}

int tg_sqlite_token_list(struct tg_store *st, const char *team,
                         int (*fn)(void *arg, const struct tg_token_row *row), void *arg)
{
    /* Naming a team that does not exist is a mistake worth reporting, not an empty list. */
    int64_t team_id;
    int rc = team != NULL ? tg_sqlite_team_id(st, team, &team_id) : TG_OK;
    sqlite3_stmt *s;
    if (rc == TG_OK)
        rc = tg_sqlite_prep(st, S_TOKEN_LIST, &s);
    if (rc != TG_OK)
        return rc;
    tg_sqlite_bind_text(s, 1, team);
    struct walk w = {.fn.token = fn, .arg = arg};
    return tg_sqlite_each(st, s, "list tokens", token_row, &w);
}

/* Steps S_PRESET_GET to the team's preset by name: tg_sqlite_one's answer, and the
 * statement in *s to read and then hand to tg_sqlite_done (NULL when it could not be
 * prepared). */
static int preset_row_of(struct tg_store *st, int64_t team_id, const char *name,
                         const char *what, sqlite3_stmt **s)
{
    int rc = tg_sqlite_prep(st, S_PRESET_GET, s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(*s, 1, team_id);
    tg_sqlite_bind_text(*s, 2, name);
    return tg_sqlite_one(st, *s, what);
}

/* The preset's current body, malloc'd (NULL when there is none). */
static int preset_body(struct tg_store *st, int64_t team_id, const char *name, char **body)
{
    sqlite3_stmt *s;
    *body = NULL;
    int rc = preset_row_of(st, team_id, name, "read preset", &s);
    if (rc == TG_OK) {
        const char *v = tg_sqlite_col_text(s, 0);
        *body = strdup(v != NULL ? v : "null");
        rc = *body != NULL ? TG_OK : TG_ENOMEM;
    }
    tg_sqlite_done(s);
    if (rc == TG_ENOTFOUND)
        rc = TG_OK;
    return rc;
}

int tg_sqlite_preset_set(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
                         const char *name, const char *json)
{
    if (name == NULL || name[0] == '\0' || json == NULL)
        return tg_sqlite_invalid(st, "a preset needs a name and a body");
    sqlite3_stmt *s;
    char now[TG_TIME_LEN], team[TEAM_NAME_MAX + 1];
    tg_sqlite_now_text(now);
    int rc = tg_sqlite_tx_begin(st);
    if (rc != TG_OK)
        return rc;
    rc = lookup_text(st, S_TEAM_NAME, NULL, team_id, team, sizeof(team));
    if (rc == TG_ENOTFOUND)
        tg_sqlite_set_err(st, "no team with id %lld", (long long)team_id);
    /* The clear text of the values is only in memory: sealed in the row, fingerprints in
     * the log (the replaced body's opened first, so that equal values log alike). */
    char *before = NULL, *opened = NULL, *sealed = NULL;
    if (rc == TG_OK)
        rc = preset_body(st, team_id, name, &before);
    if (rc == TG_OK)
        rc = tg_sqlite_preset_mcp(st, team, before, TG_STORE_MCP_OPEN, &opened, NULL);
    if (rc == TG_OK)
        rc = tg_sqlite_preset_mcp(st, team, json, TG_STORE_MCP_SEAL, &sealed, NULL);
    if (rc == TG_OK)
        rc = tg_sqlite_prep(st, S_PRESET_SET, &s);
    if (rc == TG_OK) {
        sqlite3_bind_int64(s, 1, team_id);
        tg_sqlite_bind_text(s, 2, name);
        tg_sqlite_bind_text(s, 3, sealed != NULL ? sealed : json);
        tg_sqlite_bind_text(s, 4, now);
        rc = tg_sqlite_run(st, s, "set preset");
    }
    if (rc == TG_OK) {
        char object_id[2 * TEAM_NAME_MAX + 2];
        snprintf(object_id, sizeof(object_id), "%s/%s", team, name);
        char *shown = redacted(json), *was = redacted(opened != NULL ? opened : before);
        rc = tg_sqlite_admin_log(st, who, "preset.set", "preset", object_id, team,
                                 before != NULL ? (was != NULL ? was : "null") : NULL,
                                 shown != NULL ? shown : "null");
        free(shown);
        free(was);
    }
    free(before);
    free(opened);
    free(sealed);
    return tg_sqlite_tx_end(st, rc);
}

/* *json (pool text) with its sealed MCP header values opened, for team_id. */
static int open_preset(struct tg_store *st, struct tg_pool *pool, int64_t team_id, char **json)
{
    char team[TEAM_NAME_MAX + 1], *opened = NULL;
    int rc = lookup_text(st, S_TEAM_NAME, NULL, team_id, team, sizeof(team));
    if (rc == TG_ENOTFOUND)
        tg_sqlite_set_err(st, "no team with id %lld", (long long)team_id);
    if (rc == TG_OK)
        rc = tg_sqlite_preset_mcp(st, team, *json, TG_STORE_MCP_OPEN, &opened, NULL);
    if (rc == TG_OK && opened != NULL) {
        *json = tg_pool_strdup(pool, opened);
        if (*json == NULL) {
            tg_sqlite_set_err(st, "out of memory");
            rc = TG_ENOMEM;
        }
    }
    if (opened != NULL) {
        OPENSSL_cleanse(opened, strlen(opened));
        free(opened);
    }
    return rc;
}

/* A kept preset's answer: its body (a copy in pool) or TG_ENOTFOUND. */
static int kept_preset(struct tg_store *st, struct tg_pool *pool, const struct tg_sqlite_kept *k,
                       const char *name, char **json)
{
    char why[300] = "";
    if (!k->found) {
        tg_sqlite_set_err(st, "no preset '%.64s'", name);
        return TG_ENOTFOUND;
    }
    if (k->opened && tg_crypto_usable(why, sizeof(why)) != TG_OK) {
        tg_sqlite_set_err(st, "preset '%.64s' cannot be opened: %s", name, why);
        return TG_ERR;
    }
    *json = tg_pool_strndup(pool, k->value, k->len);
    if (*json == NULL) {
        tg_sqlite_set_err(st, "out of memory");
        return TG_ENOMEM;
    }
    return TG_OK;
}

int tg_sqlite_preset_get(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
                         const char *name, char **json)
{
    if (name == NULL || pool == NULL || json == NULL)
        return tg_sqlite_invalid(st, "preset get: missing argument");
    const struct tg_sqlite_kept *k = tg_sqlite_kept_find(st, KEPT_PRESET, team_id, name);
    if (k != NULL)
        return kept_preset(st, pool, k, name, json);
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_PRESET_KEPT, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, team_id);
    tg_sqlite_bind_text(s, 2, name);
    rc = tg_sqlite_one(st, s, "get preset");
    int64_t generation = rc == TG_OK ? sqlite3_column_int64(s, 0) : -1;
    if (rc == TG_OK && sqlite3_column_type(s, 1) == SQLITE_NULL)
        rc = TG_ENOTFOUND;
    if (rc == TG_ENOTFOUND) {
        tg_sqlite_set_err(st, "no preset '%.64s'", name);
    } else if (rc == TG_OK) {
        const char *body = tg_sqlite_col_text(s, 1);
        *json = body != NULL ? tg_pool_strndup(pool, body, (size_t)sqlite3_column_bytes(s, 1))
                             : NULL;
        rc = *json != NULL ? TG_OK : TG_ENOMEM;
        if (rc != TG_OK)
            tg_sqlite_set_err(st, "out of memory");
    }
    tg_sqlite_done(s);
    int opened = rc == TG_OK && strstr(*json, "mcp_servers") != NULL;
    if (opened)
        rc = open_preset(st, pool, team_id, json);
    if (generation >= 0 && (rc == TG_OK || rc == TG_ENOTFOUND)) {
        struct tg_sqlite_kept *kept =
            tg_sqlite_kept_keep(st, KEPT_PRESET, team_id, name, generation, rc == TG_OK,
                                rc == TG_OK ? *json : NULL, rc == TG_OK ? strlen(*json) : 0);
        if (kept != NULL)
            kept->opened = opened;
    }
    return rc;
}

int tg_sqlite_preset_list(struct tg_store *st, int64_t team_id,
                          int (*fn)(void *arg, const char *name, const char *updated_at),
                          void *arg)
{
    sqlite3_stmt *s;
    int rc = tg_sqlite_prep(st, S_PRESET_LIST, &s);
    if (rc != TG_OK)
        return rc;
    sqlite3_bind_int64(s, 1, team_id);
    struct walk w = {.fn.preset = fn, .arg = arg};
    return tg_sqlite_each(st, s, "list presets", preset_row, &w);
}
