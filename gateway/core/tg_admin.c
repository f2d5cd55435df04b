/* The administrative operations shared by the CLI and /v1/admin/... (contract in
 * tg_admin.h): argument checks, token generation, and the store calls that make each
 * change together with its admin_log row. */
#include "tg_admin.h"

#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tg_json.h"
#include "tg_validate.h"

#define LABEL_MAX 128

int tg_admin_valid_name(const char *s)
{
    if (s == NULL)
        return 0;
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t n = strlen(s);
    if (n == 0 || n > 64 || strchr(alnum, s[0]) == NULL)
        return 0;
    return strspn(s + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
           n - 1;
}

const char *tg_admin_key_problem(const char *key)
{
    if (key == NULL || key[0] == '\0')
        return "the key is empty";
    size_t n = strlen(key);
    if (n > TG_ADMIN_KEY_MAX)
        return "the key is too long";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c <= 0x20 || c >= 0x7f)
            return "the key must be printable ASCII without spaces";
    }
    return NULL;
}

int tg_admin_parse_when(const char *s, int64_t now_ms, int64_t *ms)
{
    if (s == NULL)
        return TG_EINVAL;
    if (tg_time_parse(s, ms) == TG_OK)
        return TG_OK;
    size_t n = strlen(s);
    if (n < 2 || n > 12)
        return TG_EINVAL;
    char num[16];
    memcpy(num, s, n - 1);
    num[n - 1] = '\0';
    long v;
    if (tg_parse_long(num, 1, 100000, &v) != TG_OK)
        return TG_EINVAL;
    int64_t unit;
    switch (s[n - 1]) {
    case 'd': unit = 86400000; break;
    case 'h': unit = 3600000; break;
    case 'm': unit = 60000; break;
    default: return TG_EINVAL;
    }
    *ms = now_ms + v * unit;
    return TG_OK;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void say(char *err, size_t errlen, const char *msg)
{
    if (errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* The store's outcome, with its message in err. */
static int store_said(struct tg_store *st, int rc, char *err, size_t errlen)
{
    if (rc == TG_OK)
        say(err, errlen, "");
    else
        say(err, errlen, tg_store_errmsg(st));
    return rc;
}

static int check_name(const char *what, const char *name, char *err, size_t errlen)
{
    if (tg_admin_valid_name(name))
        return TG_OK;
    snprintf(err, errlen, "a %s name is " TG_ADMIN_NAME_RULE, what);
    return TG_EINVAL;
}

/* The team's id, TG_ENOTFOUND with "no team 'x'" in err. */
static int team_id(struct tg_store *st, const char *team, int64_t *id, char *err,
                   size_t errlen)
{
    int rc = check_name("team", team, err, errlen);
    if (rc != TG_OK)
        return rc;
    rc = tg_store_team_id(st, team, id);
    if (rc == TG_ENOTFOUND) {
        snprintf(err, errlen, "no team '%s'", team);
        return rc;
    }
    return store_said(st, rc, err, errlen);
}

/* ---- teams ---------------------------------------------------------------------------- */

static int team_args(const char *name, const char *key, char *err, size_t errlen)
{
    int rc = check_name("team", name, err, errlen);
    if (rc != TG_OK)
        return rc;
    const char *why = tg_admin_key_problem(key);
    if (why != NULL) {
        say(err, errlen, why);
        return TG_EINVAL;
    }
    return TG_OK;
}

int tg_admin_team_add(struct tg_store *st, const struct tg_actor *who, const char *name,
                      const char *key, char *err, size_t errlen)
{
    int rc = team_args(name, key, err, errlen);
    if (rc != TG_OK)
        return rc;
    int64_t id;
    rc = tg_store_team_add(st, who, name, key, &id);
    if (rc == TG_EEXIST) {
        snprintf(err, errlen, "team '%s' already exists", name);
        return rc;
    }
    return store_said(st, rc, err, errlen);
}

int tg_admin_team_set_key(struct tg_store *st, const struct tg_actor *who, const char *name,
                          const char *key, char *err, size_t errlen)
{
    int rc = team_args(name, key, err, errlen);
    if (rc != TG_OK)
        return rc;
    rc = tg_store_team_set_key(st, who, name, key);
    if (rc == TG_ENOTFOUND) {
        snprintf(err, errlen, "no team '%s'", name);
        return rc;
    }
    return store_said(st, rc, err, errlen);
}

struct team_pick {
    const char *name;
    int (*fn)(void *arg, const struct tg_team_row *row);
    void *arg;
    int found;
};

static int pick_team(void *arg, const struct tg_team_row *row)
{
    struct team_pick *p = arg;
    if (row->name == NULL || strcmp(row->name, p->name) != 0)
        return 0;
    p->found = 1;
    return p->fn(p->arg, row);
}

int tg_admin_team_show(struct tg_store *st, const char *name,
                       int (*fn)(void *arg, const struct tg_team_row *row), void *arg,
                       char *err, size_t errlen)
{
    int rc = check_name("team", name, err, errlen);
    if (rc != TG_OK)
        return rc;
    struct team_pick p = {name, fn, arg, 0};
    rc = tg_store_team_list(st, pick_team, &p);
    if (rc == TG_OK && !p.found) {
        snprintf(err, errlen, "no team '%s'", name);
        return TG_ENOTFOUND;
    }
    return store_said(st, rc, err, errlen);
}

/* ---- tokens ------------------------------------------------------------------------------ */

int tg_admin_token_issue(struct tg_store *st, const struct tg_actor *who, const char *team,
                         enum tg_role role, const char *label, int64_t expires_ms,
                         struct tg_admin_token *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if ((unsigned)role > TG_ROLE_ADMIN) {
        say(err, errlen, "the role is submit, audit or admin");
        return TG_EINVAL;
    }
    if (label != NULL && (strlen(label) > LABEL_MAX || !tg_utf8_valid(label, strlen(label)))) {
        say(err, errlen, "a label is at most 128 characters of UTF-8");
        return TG_EINVAL;
    }
    if (expires_ms < 0) {
        say(err, errlen, "the expiry is before 1970");
        return TG_EINVAL;
    }
    int64_t id;
    int rc = team_id(st, team, &id, err, errlen);
    if (rc != TG_OK)
        return rc;
    char hash[TG_HASH_LEN];
    if (tg_token_new(out->token, out->id, hash) != TG_OK) {
        say(err, errlen, "no randomness for a token");
        return TG_ERR;
    }
    rc = tg_store_token_add(st, who, id, out->id, hash, role, label, expires_ms);
    if (rc != TG_OK)
        memset(out, 0, sizeof(*out));
    return store_said(st, rc, err, errlen);
}

int tg_admin_token_revoke(struct tg_store *st, const struct tg_actor *who, const char *id,
                          char *err, size_t errlen)
{
    if (id == NULL || strncmp(id, "tok_", 4) != 0 || strlen(id) < 5 || strlen(id) > 39 ||
        strspn(id + 4, "0123456789abcdef") != strlen(id + 4)) {
        say(err, errlen, "a token id is tok_ followed by hex digits");
        return TG_EINVAL;
    }
    int rc = tg_store_token_revoke(st, who, id);
    if (rc == TG_ENOTFOUND) {
        snprintf(err, errlen, "no valid token with id '%s'", id);
        return rc;
    }
    return store_said(st, rc, err, errlen);
}

int tg_admin_token_list(struct tg_store *st, const char *team,
                        int (*fn)(void *arg, const struct tg_token_row *row), void *arg,
                        char *err, size_t errlen)
{
    int64_t id;
    int rc = team != NULL ? team_id(st, team, &id, err, errlen) : TG_OK;
    if (rc != TG_OK)
        return rc;
    return store_said(st, tg_store_token_list(st, team, fn, arg), err, errlen);
}

/* ---- presets ----------------------------------------------------------------------------- */

/* Checks a preset's name and finds its team's id: TG_OK, or an error with err set. */
static int preset_team(struct tg_store *st, const char *team, const char *name, int64_t *id,
                       char *err, size_t errlen)
{
    int rc = check_name("preset", name, err, errlen);
    if (rc == TG_OK)
        rc = team_id(st, team, id, err, errlen);
    return rc;
}

int tg_admin_preset_set(struct tg_store *st, const struct tg_actor *who, const char *team,
                        const char *name, json_object *preset, json_object *detail,
                        char *err, size_t errlen)
{
    int64_t id;
    int rc = preset_team(st, team, name, &id, err, errlen);
    if (rc != TG_OK)
        return rc;
    size_t before = json_object_array_length(detail);
    tg_validate_preset(preset, detail);
    if (json_object_array_length(detail) > before) {
        say(err, errlen, "the preset is invalid");
        return TG_EINVAL;
    }
    const char *text = tg_json_str(preset, NULL);
    if (text == NULL) {
        say(err, errlen, "out of memory");
        return TG_ENOMEM;
    }
    return store_said(st, tg_store_preset_set(st, who, id, name, text), err, errlen);
}

int tg_admin_preset_get(struct tg_store *st, struct tg_pool *pool, const char *team,
                        const char *name, char **json, char *err, size_t errlen)
{
    int64_t id;
    int rc = preset_team(st, team, name, &id, err, errlen);
    if (rc != TG_OK)
        return rc;
    rc = tg_store_preset_get(st, pool, id, name, json);
    if (rc == TG_ENOTFOUND) {
        snprintf(err, errlen, "team '%s' has no preset '%s'", team, name);
        return rc;
    }
    return store_said(st, rc, err, errlen);
}

int tg_admin_preset_list(struct tg_store *st, const char *team,
                         int (*fn)(void *arg, const char *name, const char *updated_at),
                         void *arg, char *err, size_t errlen)
{
    int64_t id;
    int rc = team_id(st, team, &id, err, errlen);
    if (rc != TG_OK)
        return rc;
    return store_said(st, tg_store_preset_list(st, id, fn, arg), err, errlen);
}

struct tg_actor tg_admin_os_actor(char *id, size_t idlen)
{
    struct passwd pw, *found = NULL;
    char buf[2048];
    if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &found) == 0 && found != NULL)
        snprintf(id, idlen, "os:%.64s", pw.pw_name);
    else
        snprintf(id, idlen, "os:uid-%ld", (long)geteuid());
    struct tg_actor who = {id, NULL, "cli", NULL};
    return who;
}
