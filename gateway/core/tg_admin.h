/* Administration: teams and their upstream keys, presets and tokens, as ONE set of
 * operations that the `taskgate team|token|preset` commands (tg_cli.c) and /v1/admin/...
 * (tg_admin_http.c) both call. Each operation checks its arguments the same way for both,
 * then makes the change through the store, which writes the admin_log row (who, when,
 * before/after, keys as fingerprints) in the same transaction as the change. */
#ifndef TG_ADMIN_H
#define TG_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "tg_core.h"
#include "tg_store.h"
#include "tg_token.h"

/* The longest upstream key accepted, in bytes. */
#define TG_ADMIN_KEY_MAX 1023

/* The one grammar of team and preset names, for every interface (the CLI, /v1/admin/…,
 * the audit filters): ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$. Beginning with a letter or a digit
 * keeps out ".", ".." and names that read as options, so that every name can be addressed
 * as a path segment (/v1/admin/teams/{name}) and typed as an argument. */
#define TG_ADMIN_NAME_RULE                                                                 \
    "1 to 64 letters, digits, '.', '_' or '-', beginning with a letter or a digit"

/* Whether s (NULL: no) is a team or preset name under TG_ADMIN_NAME_RULE. */
int tg_admin_valid_name(const char *s);

/* Why key cannot be a team's upstream key (static text), or NULL when it can: 1 to
 * TG_ADMIN_KEY_MAX printable ASCII characters without spaces. */
const char *tg_admin_key_problem(const char *key);

/* An absolute time (RFC 3339 or YYYY-MM-DD) or a duration from now_ms such as 90d, 12h or
 * 30m, into *ms. TG_OK or TG_EINVAL. */
int tg_admin_parse_when(const char *s, int64_t now_ms, int64_t *ms);

/* The operations. Each returns TG_OK; TG_EINVAL when an argument is refused (the reason in
 * err, and for tg_admin_preset_set every problem appended to detail in the upstream's 422
 * shape, loc ["body", …]); TG_ENOTFOUND (no such team, preset or valid token) or
 * TG_EEXIST (the team exists) with err saying which; or a store error (TG_EBUSY, TG_EDB,
 * …) with the store's message in err. who names the actor for the admin log. err always
 * receives a NUL-terminated message (empty on success). */

/* Adds a team with its upstream key. */
int tg_admin_team_add(struct tg_store *st, const struct tg_actor *who, const char *name,
                      const char *key, char *err, size_t errlen);
/* Replaces a team's upstream key (the store keeps it; nothing returns it). */
int tg_admin_team_set_key(struct tg_store *st, const struct tg_actor *who, const char *name,
                          const char *key, char *err, size_t errlen);
/* The listed row of one team (name, fingerprint, counts), to fn. TG_ENOTFOUND as above. */
int tg_admin_team_show(struct tg_store *st, const char *name,
                       int (*fn)(void *arg, const struct tg_team_row *row), void *arg,
                       char *err, size_t errlen);

/* A token just issued: shown once, then only its hash exists. */
struct tg_admin_token {
    char token[TG_TOKEN_LEN];
    char id[TG_TOKEN_ID_LEN];
};
/* Issues a token of team with role, label (NULL: none; at most 128 characters) and expiry
 * (0: never). out receives the token; the caller shows it once and wipes it. */
int tg_admin_token_issue(struct tg_store *st, const struct tg_actor *who, const char *team,
                         enum tg_role role, const char *label, int64_t expires_ms,
                         struct tg_admin_token *out, char *err, size_t errlen);
/* Revokes a token by its id ("tok_…"). */
int tg_admin_token_revoke(struct tg_store *st, const struct tg_actor *who, const char *id,
                          char *err, size_t errlen);
/* Every token of team (NULL: of every team), oldest first, without secrets. */
int tg_admin_token_list(struct tg_store *st, const char *team,
                        int (*fn)(void *arg, const struct tg_token_row *row), void *arg,
                        char *err, size_t errlen);

/* Validates preset (borrowed) as tg_validate_preset does and, when it has no problem,
 * stores it as team's preset name. Problems go to detail (an array). */
int tg_admin_preset_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                        const char *name, json_object *preset, json_object *detail,
                        char *err, size_t errlen);
/* The preset's JSON text, copied into pool. */
int tg_admin_preset_get(struct tg_store *st, struct tg_pool *pool, const char *team,
                        const char *name, char **json, char *err, size_t errlen);
/* Calls fn for each of team's presets, by name. */
int tg_admin_preset_list(struct tg_store *st, const char *team,
                         int (*fn)(void *arg, const char *name, const char *updated_at),
                         void *arg, char *err, size_t errlen);

/* The actor of a command-line change or read: the operating-system user ("os:NAME", or
 * "os:uid-N"), written into id (80 bytes are enough), on interface "cli". */
struct tg_actor tg_admin_os_actor(char *id, size_t idlen);

#endif
