/* The PostgreSQL backend: the store's identities (tg_pg_int.h): teams and their keys, tokens,
 * presets, and the admin change log written with every change to them, in its transaction.
 * The twin of store/sqlite/tg_sqlite_ident.c: the same rows, messages and codes.
 *
 * Across daemons the server decides: a team's name and a token's id and hash are unique
 * keys (the second of two racing inserts fails: TG_EEXIST); a revoke updates only a token
 * not yet revoked (the second of two racing revokes waits for the first and finds it
 * revoked: TG_ENOTFOUND); a key change and a preset change lock the team's row first (FOR
 * NO KEY UPDATE, which the foreign-key checks of submissions do not wait for), so that the
 * "before" each logs is the value the other daemon's change left. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "tg_crypto.h"
#include "tg_json.h"
#include "tg_sha256.h"
#include "tg_pg_int.h"

/* ---- statements ----------------------------------------------------------------------- */

/* With the generation of the same snapshot: the rows this handle keeps that were read at
 * it answer for the request (tg_pg_cache.c). */
static const struct tg_pg_stmt ident_auth = {
    "ident_auth",
    "SELECT k.team_id, t.name, k.id, k.label, k.role, k.hash,"
    " (SELECT n FROM generation WHERE id = 1) FROM tokens k"
    " JOIN teams t ON t.id = k.team_id"
    " WHERE k.hash = $1 AND k.revoked_at IS NULL"
    " AND (k.expires_at IS NULL OR k.expires_at > $2)"};
/* The reads a handle keeps: one row always, the generation first, NULLs when there is no
 * such team or preset. */
static const struct tg_pg_stmt ident_team_key = {
    "ident_team_key",
    "SELECT g.n, t.name, t.upstream_key, t.key_id FROM generation g"
    " LEFT JOIN teams t ON t.id = $1 WHERE g.id = 1"};
static const struct tg_pg_stmt ident_team_id = {
    "ident_team_id", "SELECT id FROM teams WHERE name = $1"};
static const struct tg_pg_stmt ident_team_name = {
    "ident_team_name", "SELECT name FROM teams WHERE id = $1"};
static const struct tg_pg_stmt ident_team_lock = {
    "ident_team_lock", "SELECT name FROM teams WHERE id = $1 FOR NO KEY UPDATE"};
static const struct tg_pg_stmt ident_team_add = {
    "ident_team_add",
    "INSERT INTO teams (name, upstream_key, key_fingerprint, created_at, updated_at, key_id)"
    " VALUES ($1, $2, $3, $4, $4, $5) RETURNING id"};
static const struct tg_pg_stmt ident_team_fp_lock = {
    "ident_team_fp_lock",
    "SELECT key_fingerprint FROM teams WHERE name = $1 FOR NO KEY UPDATE"};
static const struct tg_pg_stmt ident_team_set_key = {
    "ident_team_set_key",
    "UPDATE teams SET upstream_key = $2, key_fingerprint = $3, updated_at = $4,"
    " key_id = $5 WHERE name = $1"};
static const struct tg_pg_stmt ident_team_list = {
    "ident_team_list",
    "SELECT t.id, t.name, t.key_fingerprint, t.created_at,"
    " (SELECT count(*) FROM tokens k WHERE k.team_id = t.id AND k.revoked_at IS NULL"
    "   AND (k.expires_at IS NULL OR k.expires_at > $1)),"
    " (SELECT count(*) FROM presets p WHERE p.team_id = t.id)"
    " FROM teams t ORDER BY t.name"};
static const struct tg_pg_stmt ident_token_add = {
    "ident_token_add",
    "INSERT INTO tokens (id, team_id, role, label, hash, created_at, expires_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"};
/* The team's name comes back with the row revoked (SQLite looks it up after). */
static const struct tg_pg_stmt ident_token_revoke = {
    "ident_token_revoke",
    "UPDATE tokens k SET revoked_at = $2 FROM teams t"
    " WHERE k.id = $1 AND k.revoked_at IS NULL AND t.id = k.team_id RETURNING t.name"};
/* Oldest first; SQLite breaks ties by rowid (insertion order), which PostgreSQL has no
 * equivalent of: the id breaks them here. */
static const struct tg_pg_stmt ident_token_list = {
    "ident_token_list",
    "SELECT k.id, t.name, k.role, k.label, k.created_at, k.expires_at, k.revoked_at"
    " FROM tokens k JOIN teams t ON t.id = k.team_id"
    " WHERE $1::text IS NULL OR t.name = $1::text ORDER BY k.created_at, k.id"};
static const struct tg_pg_stmt ident_preset_set = {
    "ident_preset_set",
    "INSERT INTO presets (team_id, name, body, updated_at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (team_id, name)"
    " DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at"};
static const struct tg_pg_stmt ident_preset_get = {
    "ident_preset_get", "SELECT body FROM presets WHERE team_id = $1 AND name = $2"};
static const struct tg_pg_stmt ident_preset_kept = {
    "ident_preset_kept",
    "SELECT g.n, p.body FROM generation g"
    " LEFT JOIN presets p ON p.team_id = $1 AND p.name = $2 WHERE g.id = 1"};
static const struct tg_pg_stmt ident_preset_list = {
    "ident_preset_list",
    "SELECT name, updated_at FROM presets WHERE team_id = $1 ORDER BY name"};

/* ---- helpers -------------------------------------------------------------------------- */

/* The first column of a one-row lookup by one parameter, copied into out ("" and
 * TG_ENOTFOUND when there is no row). */
static int lookup_text(struct tg_store *st, const struct tg_pg_stmt *s, const char *key,
                       char *out, size_t outlen)
{
    PGresult *res;
    const char *p[] = {key};
    out[0] = '\0';
    int rc = tg_pg_one(st, s, 1, p, &res, "look up");
    if (rc == TG_OK)
        tg_pg_copy(out, outlen, res, 0, 0);
    PQclear(res);
    return rc;
}

/* The team's name by id into out; TG_ENOTFOUND with "no team with id N". lock: FOR NO KEY
 * UPDATE, inside the caller's transaction. */
static int team_name(struct tg_store *st, int64_t team_id, int lock, char *out, size_t outlen)
{
    char id[TG_PG_I64_LEN];
    int rc = lookup_text(st, lock ? &ident_team_lock : &ident_team_name,
                         tg_pg_i64(id, team_id), out, outlen);
    if (rc == TG_ENOTFOUND)
        tg_pg_set_err(st, "no team with id %lld", (long long)team_id);
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
                 ? tg_pg_admin_log(st, who, action, object_type, object_id, team, before, after)
                 : TG_ENOMEM;
    if (rc == TG_ENOMEM)
        tg_pg_set_err(st, "out of memory");
    free(before);
    free(after);
    return rc;
}

/* Logs a new object from its after (json_pairs' result: NULL means out of memory), and
 * frees it: the log's before is SQL NULL. */
static int log_new(struct tg_store *st, const struct tg_actor *who, const char *action,
                   const char *object_type, const char *object_id, const char *team,
                   char *after)
{
    int rc = after != NULL
                 ? tg_pg_admin_log(st, who, action, object_type, object_id, team, NULL, after)
                 : TG_ENOMEM;
    if (rc == TG_ENOMEM)
        tg_pg_set_err(st, "out of memory");
    free(after);
    return rc;
}

/* ---- identities ----------------------------------------------------------------------- */

/* The row's stored token hash equals the one looked up, compared in constant time: the
 * index found the row, but the answer never depends on how many leading bytes agree. */
static int hash_matches(const PGresult *res, int col, const char *token_hash)
{
    const char *stored = tg_pg_text(res, 0, col);
    size_t n = strlen(token_hash);
    return stored != NULL && (size_t)PQgetlength(res, 0, col) == n &&
           CRYPTO_memcmp(stored, token_hash, n) == 0;
}

int tg_pg_auth(struct tg_store *st, const char *token_hash, int64_t now_ms,
               struct tg_auth *out)
{
    if (token_hash == NULL || out == NULL)
        return tg_pg_invalid(st, "auth: no token hash");
    char now[TG_TIME_LEN];
    tg_time_format(now_ms, now);
    const char *p[] = {token_hash, now};
    PGresult *res;
    st->generation = -1;
    int rc = tg_pg_one(st, &ident_auth, 2, p, &res, "auth");
    if (rc == TG_OK && !hash_matches(res, 5, token_hash))
        rc = TG_ENOTFOUND;
    if (rc == TG_ENOTFOUND) {
        tg_pg_set_err(st, "no such token, or it is revoked or expired");
    } else if (rc == TG_OK) {
        memset(out, 0, sizeof(*out));
        out->team_id = tg_pg_int(res, 0, 0);
        tg_pg_copy(out->team, sizeof(out->team), res, 0, 1);
        tg_pg_copy(out->token_id, sizeof(out->token_id), res, 0, 2);
        tg_pg_copy(out->label, sizeof(out->label), res, 0, 3);
        if (tg_domain_role_parse(tg_pg_text(res, 0, 4), &out->role) != TG_OK)
            out->role = TG_ROLE_SUBMIT; /* the schema's CHECK makes this unreachable */
        st->generation = tg_pg_int(res, 0, 6);
    }
    PQclear(res);
    return rc;
}

/* The team's name, sealed key and key id, kept (name NULL: no such team) or read and kept;
 * *res holds what was read (PQclear it; NULL when kept). */
static int key_row(struct tg_store *st, int64_t team_id, const char *col[3], PGresult **res)
{
    *res = NULL;
    const struct tg_pg_cached *c = tg_pg_cache_find(st, TG_PG_CACHE_KEY, team_id, NULL);
    if (c != NULL) {
        memcpy(col, c->col, 3 * sizeof(*col));
        return TG_OK;
    }
    char id[TG_PG_I64_LEN];
    const char *p[] = {tg_pg_i64(id, team_id)};
    int rc = tg_pg_one(st, &ident_team_key, 1, p, res, "team key");
    if (rc != TG_OK)
        return rc;
    tg_pg_cache_keep(st, TG_PG_CACHE_KEY, team_id, NULL, tg_pg_int(*res, 0, 0), *res, 1, 3);
    for (int i = 0; i < 3; i++)
        col[i] = tg_pg_text(*res, 0, 1 + i);
    return TG_OK;
}

int tg_pg_team_key(struct tg_store *st, int64_t team_id, char *buf, size_t buflen)
{
    if (buf == NULL || buflen == 0)
        return tg_pg_invalid(st, "team key: no buffer");
    buf[0] = '\0';
    const char *col[3];
    PGresult *res;
    int rc = key_row(st, team_id, col, &res);
    const char *name = col[0], *sealed = col[1];
    if (rc == TG_OK && name == NULL) {
        tg_pg_set_err(st, "no team with id %lld", (long long)team_id);
        rc = TG_ENOTFOUND;
    } else if (rc == TG_OK) {
        char why[300] = "";
        if (sealed == NULL) {
            rc = tg_pg_invalid(st, "a team row without a key");
        } else if (col[2] == NULL) {
            tg_pg_set_err(st,
                          "the upstream key of team '%.64s' is still stored in clear: run "
                          "`taskgate init` to encrypt it", name);
            rc = TG_ERR;
        } else {
            rc = tg_crypto_open(name, sealed, buf, buflen, NULL, why, sizeof(why));
            if (rc == TG_ETOOBIG)
                tg_pg_set_err(st, "the upstream key of team %lld does not fit",
                              (long long)team_id);
            else if (rc != TG_OK)
                tg_pg_set_err(st, "the upstream key of team '%.64s' cannot be decrypted: %s",
                              name, why);
            if (rc == TG_EINVAL)
                rc = TG_ERR;
        }
    }
    PQclear(res);
    return rc;
}

int tg_pg_team_id(struct tg_store *st, const char *name, int64_t *team_id)
{
    const char *p[] = {name};
    PGresult *res;
    int rc = tg_pg_one(st, &ident_team_id, 1, p, &res, "team id");
    if (rc == TG_OK)
        *team_id = tg_pg_int(res, 0, 0);
    else if (rc == TG_ENOTFOUND)
        tg_pg_set_err(st, "no team named '%.64s'", name != NULL ? name : "");
    PQclear(res);
    return rc;
}

/* Upstream keys: at most this long in clear, and the size of their sealed text. */
#define UPSTREAM_KEY_MAX 1024
#define SEALED_KEY_LEN TG_CRYPTO_SEALED_LEN(UPSTREAM_KEY_MAX)

static int check_team_args(struct tg_store *st, const char *name, const char *key)
{
    if (name == NULL || name[0] == '\0' || strlen(name) > PG_TEAM_NAME_MAX)
        return tg_pg_invalid(st, "a team name is 1 to 64 characters");
    if (key == NULL || key[0] == '\0')
        return tg_pg_invalid(st, "the upstream key is empty");
    if (strlen(key) > UPSTREAM_KEY_MAX)
        return tg_pg_invalid(st, "the upstream key is longer than 1024 characters");
    return TG_OK;
}

/* A team's key change as stored: the team and actor, the key sealed with the sealing key's
 * id and the key's fingerprint, and the time of the change; id receives a new team's. */
struct team_key {
    const struct tg_actor *who;
    const char *name;
    char fp[TG_FINGERPRINT_LEN], now[TG_TIME_LEN], sealed[SEALED_KEY_LEN], kid[TG_CRYPTO_KID_LEN];
    int64_t id;
};

/* Checks a team's name and key and makes what is stored of them (sealed once, before the
 * transaction, which may run more than once). */
static int team_key_make(struct tg_store *st, const struct tg_actor *who, const char *name,
                         const char *key, struct team_key *k)
{
    int rc = check_team_args(st, name, key);
    if (rc != TG_OK)
        return rc;
    k->who = who;
    k->name = name;
    k->id = 0;
    tg_sha256_fingerprint(key, strlen(key), k->fp);
    tg_pg_now_text(k->now);
    char why[300] = "";
    rc = tg_crypto_seal(name, key, strlen(key), k->sealed, sizeof(k->sealed), k->kid, why,
                        sizeof(why));
    if (rc != TG_OK)
        tg_pg_set_err(st, "cannot encrypt the upstream key: %s", why);
    return rc;
}

static int team_add_w(struct tg_store *st, void *arg)
{
    struct team_key *k = arg;
    const char *p[] = {k->name, k->sealed, k->fp, k->now, k->kid};
    PGresult *res;
    int rc = tg_pg_one(st, &ident_team_add, 5, p, &res, "add team");
    if (rc == TG_EEXIST)
        tg_pg_set_err(st, "team '%s' already exists", k->name);
    if (rc == TG_OK)
        k->id = tg_pg_int(res, 0, 0);
    PQclear(res);
    if (rc == TG_OK)
        rc = log_new(st, k->who, "team.add", "team", k->name, k->name,
                     json_pairs("name", k->name, "key_fingerprint", k->fp, NULL));
    return rc;
}

int tg_pg_team_add(struct tg_store *st, const struct tg_actor *who, const char *name,
                   const char *key, int64_t *team_id)
{
    struct team_key k;
    int rc = team_key_make(st, who, name, key, &k);
    if (rc == TG_OK)
        rc = tg_pg_write(st, team_add_w, &k);
    if (rc == TG_OK && team_id != NULL)
        *team_id = k.id;
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

static int team_set_key_w(struct tg_store *st, void *arg)
{
    struct team_key *k = arg;
    char old_fp[TG_FINGERPRINT_LEN + 8];
    int rc = lookup_text(st, &ident_team_fp_lock, k->name, old_fp, sizeof(old_fp));
    if (rc == TG_ENOTFOUND)
        tg_pg_set_err(st, "no team named '%s'", k->name);
    if (rc == TG_OK) {
        const char *p[] = {k->name, k->sealed, k->fp, k->now, k->kid};
        rc = tg_pg_run(st, &ident_team_set_key, 5, p, "set team key");
    }
    if (rc == TG_OK)
        rc = log_change(st, k->who, "team.set_key", "team", k->name, k->name,
                        json_pairs("name", k->name, "key_fingerprint", old_fp, NULL),
                        json_pairs("name", k->name, "key_fingerprint", k->fp, NULL));
    return rc;
}

int tg_pg_team_set_key(struct tg_store *st, const struct tg_actor *who, const char *name,
                       const char *key)
{
    struct team_key k;
    int rc = team_key_make(st, who, name, key, &k);
    if (rc == TG_OK)
        rc = tg_pg_write(st, team_set_key_w, &k);
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* A caller's walk over listed rows (tg_pg_each passes each to the kind's row function
 * below): the caller's function and its argument. */
struct walk {
    union {
        int (*team)(void *arg, const struct tg_team_row *row);
        int (*token)(void *arg, const struct tg_token_row *row);
        int (*preset)(void *arg, const char *name, const char *updated_at);
    } fn;
    void *arg;
};

static int team_row(void *arg, PGresult *res, int i)
{
    const struct walk *w = arg;
    struct tg_team_row row = {
        .id = tg_pg_int(res, i, 0),
        .name = tg_pg_text(res, i, 1),
        .key_fingerprint = tg_pg_text(res, i, 2),
        .created_at = tg_pg_text(res, i, 3),
        .tokens = (int)tg_pg_int(res, i, 4),
        .presets = (int)tg_pg_int(res, i, 5),
    };
    return w->fn.team(w->arg, &row);
}

/* A token row is text throughout, in the statement's column order. */
static int token_row(void *arg, PGresult *res, int i)
{
    const struct walk *w = arg;
    struct tg_token_row row;
    const char **col[] = {&row.id,         &row.team,       &row.role,      &row.label,
                          &row.created_at, &row.expires_at, &row.revoked_at};
    for (size_t c = 0; c < sizeof(col) / sizeof(col[0]); c++)
        *col[c] = tg_pg_text(res, i, (int)c);
    return w->fn.token(w->arg, &row);
}

static int preset_row(void *arg, PGresult *res, int i)
{
    const struct walk *w = arg;
    return w->fn.preset(w->arg, tg_pg_text(res, i, 0), tg_pg_text(res, i, 1));
}

int tg_pg_team_list(struct tg_store *st, int (*fn)(void *arg, const struct tg_team_row *row),
                    void *arg)
{
    char now[TG_TIME_LEN];
    tg_pg_now_text(now);
    const char *p[] = {now};
    struct walk w = {.fn.team = fn, .arg = arg};
    return tg_pg_each(st, &ident_team_list, 1, p, "list teams", team_row, &w);
}

/* A token being issued. */
struct token_add {
    const struct tg_actor *who;
    const char *id, *hash, *label;
    int64_t team_id;
    enum tg_role role;
    char now[TG_TIME_LEN], expires[TG_TIME_LEN];
    int expires_set;
};

static int token_add_w(struct tg_store *st, void *arg)
{
    const struct token_add *t = arg;
    char team_id[TG_PG_I64_LEN], team[PG_TEAM_NAME_MAX + 1];
    const char *role = tg_domain_role_name(t->role);
    const char *expires = t->expires_set ? t->expires : NULL;
    const char *p[] = {t->id,    tg_pg_i64(team_id, t->team_id), role, t->label, t->hash,
                       t->now, expires};
    int rc = tg_pg_run(st, &ident_token_add, 7, p, "add token");
    if (rc == TG_ENOTFOUND)
        tg_pg_set_err(st, "no team with id %lld", (long long)t->team_id);
    else if (rc == TG_EEXIST)
        tg_pg_set_err(st, "a token with this id or hash already exists");
    if (rc == TG_OK)
        rc = team_name(st, t->team_id, 0, team, sizeof(team));
    if (rc == TG_OK)
        rc = log_new(st, t->who, "token.issue", "token", t->id, team,
                     json_pairs("id", t->id, "team", team, "role", role, "label", t->label,
                                "expires_at", expires, NULL));
    return rc;
}

int tg_pg_token_add(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
                    const char *token_id, const char *hash, enum tg_role role,
                    const char *label, int64_t expires_ms)
{
    if (token_id == NULL || token_id[0] == '\0' || strlen(token_id) > PG_TOKEN_ID_MAX)
        return tg_pg_invalid(st, "a token id is 1 to 39 characters");
    if (hash == NULL || hash[0] == '\0')
        return tg_pg_invalid(st, "the token hash is empty");
    if ((unsigned)role > TG_ROLE_ADMIN)
        return tg_pg_invalid(st, "unknown role");
    if (label != NULL && strlen(label) > PG_LABEL_MAX)
        return tg_pg_invalid(st, "a token label is at most 128 characters");
    struct token_add t = {.who = who, .id = token_id, .hash = hash, .label = label,
                          .team_id = team_id, .role = role, .expires_set = expires_ms != 0};
    tg_pg_now_text(t.now);
    tg_time_format(expires_ms, t.expires);
    return tg_pg_write(st, token_add_w, &t);
}

/* A token being revoked. */
struct token_revoke {
    const struct tg_actor *who;
    const char *id;
    char now[TG_TIME_LEN];
};

static int token_revoke_w(struct tg_store *st, void *arg)
{
    const struct token_revoke *t = arg;
    const char *p[] = {t->id, t->now};
    char team[PG_TEAM_NAME_MAX + 1] = "";
    PGresult *res;
    int rc = tg_pg_one(st, &ident_token_revoke, 2, p, &res, "revoke token");
    if (rc == TG_ENOTFOUND)
        tg_pg_set_err(st, "no token '%.40s', or it is already revoked", t->id);
    if (rc == TG_OK)
        tg_pg_copy(team, sizeof(team), res, 0, 0);
    PQclear(res);
    if (rc == TG_OK)
        rc = log_change(st, t->who, "token.revoke", "token", t->id, team,
                        json_pairs("id", t->id, "revoked_at", NULL, NULL),
                        json_pairs("id", t->id, "revoked_at", t->now, NULL));
    return rc;
}

int tg_pg_token_revoke(struct tg_store *st, const struct tg_actor *who, const char *token_id)
{
    if (token_id == NULL)
        return tg_pg_invalid(st, "no token id");
    struct token_revoke t = {.who = who, .id = token_id};
    tg_pg_now_text(t.now);
    return tg_pg_write(st, token_revoke_w, &t);
}

int tg_pg_token_list(struct tg_store *st, const char *team,
                     int (*fn)(void *arg, const struct tg_token_row *row), void *arg)
{
    /* Naming a team that does not exist is a mistake worth reporting, not an empty list. */
    int64_t team_id;
    int rc = team != NULL ? tg_pg_team_id(st, team, &team_id) : TG_OK;
    if (rc != TG_OK)
        return rc;
    const char *p[] = {team};
    struct walk w = {.fn.token = fn, .arg = arg};
    return tg_pg_each(st, &ident_token_list, 1, p, "list tokens", token_row, &w);
}

/* The team's preset by name: tg_pg_one's answer, with the row in *res (PQclear it). */
static int preset_row_of(struct tg_store *st, int64_t team_id, const char *name,
                         const char *what, PGresult **res)
{
    char id[TG_PG_I64_LEN];
    const char *p[] = {tg_pg_i64(id, team_id), name};
    return tg_pg_one(st, &ident_preset_get, 2, p, res, what);
}

/* The preset's current body, malloc'd (NULL when there is none). */
static int preset_body(struct tg_store *st, int64_t team_id, const char *name, char **body)
{
    PGresult *res;
    *body = NULL;
    int rc = preset_row_of(st, team_id, name, "read preset", &res);
    if (rc == TG_OK) {
        const char *v = tg_pg_text(res, 0, 0);
        *body = strdup(v != NULL ? v : "null");
        rc = *body != NULL ? TG_OK : TG_ENOMEM;
        if (rc == TG_ENOMEM)
            tg_pg_set_err(st, "out of memory");
    }
    PQclear(res);
    if (rc == TG_ENOTFOUND)
        rc = TG_OK;
    return rc;
}

/* A preset being stored. */
struct preset_set {
    const struct tg_actor *who;
    int64_t team_id;
    const char *name, *json;
    char now[TG_TIME_LEN];
};

static int preset_set_w(struct tg_store *st, void *arg)
{
    const struct preset_set *ps = arg;
    char team[PG_TEAM_NAME_MAX + 1];
    /* The team's row locked: two daemons storing the team's presets take turns, and each
     * reads the body the other left. */
    int rc = team_name(st, ps->team_id, 1, team, sizeof(team));
    /* The clear text of the values is only in memory: sealed in the row, fingerprints in
     * the log (the replaced body's opened first, so that equal values log alike). */
    char *before = NULL, *opened = NULL, *sealed = NULL;
    if (rc == TG_OK)
        rc = preset_body(st, ps->team_id, ps->name, &before);
    if (rc == TG_OK)
        rc = tg_pg_preset_mcp(st, team, before, TG_STORE_MCP_OPEN, &opened, NULL);
    if (rc == TG_OK)
        rc = tg_pg_preset_mcp(st, team, ps->json, TG_STORE_MCP_SEAL, &sealed, NULL);
    if (rc == TG_OK) {
        char id[TG_PG_I64_LEN];
        const char *p[] = {tg_pg_i64(id, ps->team_id), ps->name,
                           sealed != NULL ? sealed : ps->json, ps->now};
        rc = tg_pg_run(st, &ident_preset_set, 4, p, "set preset");
    }
    if (rc == TG_OK) {
        char object_id[2 * PG_TEAM_NAME_MAX + 2];
        snprintf(object_id, sizeof(object_id), "%s/%s", team, ps->name);
        char *shown = redacted(ps->json), *was = redacted(opened != NULL ? opened : before);
        rc = tg_pg_admin_log(st, ps->who, "preset.set", "preset", object_id, team,
                             before != NULL ? (was != NULL ? was : "null") : NULL,
                             shown != NULL ? shown : "null");
        free(shown);
        free(was);
    }
    free(before);
    if (opened != NULL) {
        OPENSSL_cleanse(opened, strlen(opened));
        free(opened);
    }
    free(sealed);
    return rc;
}

int tg_pg_preset_set(struct tg_store *st, const struct tg_actor *who, int64_t team_id,
                     const char *name, const char *json)
{
    if (name == NULL || name[0] == '\0' || json == NULL)
        return tg_pg_invalid(st, "a preset needs a name and a body");
    struct preset_set ps = {.who = who, .team_id = team_id, .name = name, .json = json};
    tg_pg_now_text(ps.now);
    return tg_pg_write(st, preset_set_w, &ps);
}

/* *json (pool text) with its sealed MCP header values opened, for team_id. */
static int open_preset(struct tg_store *st, struct tg_pool *pool, int64_t team_id, char **json)
{
    char team[PG_TEAM_NAME_MAX + 1], *opened = NULL;
    int rc = team_name(st, team_id, 0, team, sizeof(team));
    if (rc == TG_OK)
        rc = tg_pg_preset_mcp(st, team, *json, TG_STORE_MCP_OPEN, &opened, NULL);
    if (rc == TG_OK && opened != NULL) {
        *json = tg_pool_strdup(pool, opened);
        if (*json == NULL) {
            tg_pg_set_err(st, "out of memory");
            rc = TG_ENOMEM;
        }
    }
    if (opened != NULL) {
        OPENSSL_cleanse(opened, strlen(opened));
        free(opened);
    }
    return rc;
}

int tg_pg_preset_get(struct tg_store *st, struct tg_pool *pool, int64_t team_id,
                     const char *name, char **json)
{
    if (name == NULL || pool == NULL || json == NULL)
        return tg_pg_invalid(st, "preset get: missing argument");
    PGresult *res = NULL;
    const char *body;
    int rc = TG_OK;
    const struct tg_pg_cached *c = tg_pg_cache_find(st, TG_PG_CACHE_PRESET, team_id, name);
    if (c != NULL) {
        body = c->col[0];
    } else {
        char id[TG_PG_I64_LEN];
        const char *p[] = {tg_pg_i64(id, team_id), name};
        rc = tg_pg_one(st, &ident_preset_kept, 2, p, &res, "get preset");
        if (rc != TG_OK)
            return rc;
        tg_pg_cache_keep(st, TG_PG_CACHE_PRESET, team_id, name, tg_pg_int(res, 0, 0), res,
                         1, 1);
        body = tg_pg_text(res, 0, 1);
    }
    if (body == NULL) {
        tg_pg_set_err(st, "no preset '%.64s'", name);
        rc = TG_ENOTFOUND;
    } else {
        *json = tg_pool_strdup(pool, body);
        rc = *json != NULL ? TG_OK : TG_ENOMEM;
        if (rc != TG_OK)
            tg_pg_set_err(st, "out of memory");
    }
    PQclear(res);
    if (rc == TG_OK && strstr(*json, "mcp_servers") != NULL)
        rc = open_preset(st, pool, team_id, json);
    return rc;
}

int tg_pg_preset_list(struct tg_store *st, int64_t team_id,
                      int (*fn)(void *arg, const char *name, const char *updated_at),
                      void *arg)
{
    char id[TG_PG_I64_LEN];
    const char *p[] = {tg_pg_i64(id, team_id)};
    struct walk w = {.fn.preset = fn, .arg = arg};
    return tg_pg_each(st, &ident_preset_list, 1, p, "list presets", preset_row, &w);
}
