/* `taskgate keys rotate|status` and the key file setup of `init` and `serve` (tg_keys.h):
 * the command-line side of upstream keys at rest (tg_crypto.c, store/sqlite/tg_sqlite_keys.c). */
#include "tg_keys.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tg_admin.h"
#include "tg_cli_common.h"
#include "tg_conf.h"
#include "tg_core.h"
#include "tg_crypto.h"
#include "tg_log.h"
#include "tg_store.h"


int tg_keys_prepare(struct tg_store *st, char *note, size_t notelen, char *err, size_t errlen)
{
    long sealed = 0, clear = 0, n = 0;
    int created = 0;
    note[0] = '\0';
    int rc = tg_store_keys_summary(st, &sealed, &clear);
    if (rc != TG_OK) {
        snprintf(err, errlen, "%s", tg_store_errmsg(st));
        return rc;
    }
    /* A missing key file is made only for a database it cannot orphan. */
    rc = tg_crypto_load(sealed == 0, &created, err, errlen);
    if (rc != TG_OK)
        return rc;
    char id[80];
    struct tg_actor who = tg_admin_os_actor(id, sizeof(id));
    long presets = 0;
    rc = tg_store_presets_clear(st, &presets);
    if (rc != TG_OK) {
        snprintf(err, errlen, "%s", tg_store_errmsg(st));
        return rc;
    }
    if (clear > 0 || presets > 0) {
        rc = tg_store_keys_reseal(st, &who, 0, "keys.encrypt", &n);
        if (rc != TG_OK) {
            snprintf(err, errlen, "cannot encrypt the stored keys: %s", tg_store_errmsg(st));
            return rc;
        }
    }
    char kid[TG_CRYPTO_KID_LEN];
    tg_crypto_current_kid(kid);
    if (presets > 0)
        snprintf(note, notelen, "%ld upstream key(s) and the MCP header values of %ld "
                 "preset(s) stored in clear are now encrypted (key %s)", n, presets, kid);
    else if (created && n == 0)
        snprintf(note, notelen, "created the key file (key %s)", kid);
    else if (n > 0)
        snprintf(note, notelen, "%s%s%s%ld upstream key(s) stored in clear are now encrypted "
                 "(key %s)", created ? "created the key file (key " : "", created ? kid : "",
                 created ? "); " : "", n, kid);
    return TG_OK;
}

void tg_keys_serve_start(const struct tg_conf *conf)
{
    char err[512], note[512];
    struct tg_store *st = NULL;
    /* A database that cannot be opened is the server's to report, a moment later. */
    if (tg_store_open(&st, conf->database, 0, (int)conf->db_busy_timeout_ms, err,
                      sizeof(err)) != TG_OK)
        return;
    if (tg_keys_prepare(st, note, sizeof(note), err, sizeof(err)) != TG_OK)
        tg_log(TG_LOG_ERROR, "the upstream keys cannot be used: %s; submissions get 503 and "
               "/healthz says why until this is repaired", err);
    else if (note[0] != '\0')
        tg_log(TG_LOG_WARN, "%s", note);
    tg_store_close(st);
}

static int keys_status(struct tg_store *st, const struct tg_conf *conf)
{
    long sealed = 0, clear = 0;
    char err[512], kid[TG_CRYPTO_KID_LEN];
    int rc = tg_store_keys_summary(st, &sealed, &clear);
    if (rc != TG_OK) {
        fprintf(stderr, "taskgate: %s\n", tg_store_errmsg(st));
        return 1;
    }
    rc = tg_crypto_load(0, NULL, err, sizeof(err));
    tg_crypto_current_kid(kid);
    char file[4096 * 4], why[sizeof(err) * 6];
    printf("key_file=%s key_id=%s encrypted=%ld clear=%ld%s%s\n",
           tg_shown(conf->key_file, 4096, file, sizeof(file)), rc == TG_OK ? kid : "-", sealed,
           clear, rc == TG_OK ? "" : " error=",
           rc == TG_OK ? "" : tg_shown(err, sizeof(err), why, sizeof(why)));
    return rc == TG_OK && clear == 0 ? 0 : 1;
}

static int keys_rotate(struct tg_store *st, const struct tg_conf *conf)
{
    char err[512], kid[TG_CRYPTO_KID_LEN], id[80];
    int resumed = 0;
    long n = 0;
    struct tg_actor who = tg_admin_os_actor(id, sizeof(id));
    int rc = tg_crypto_rotate_prepare(kid, &resumed, err, sizeof(err));
    if (rc != TG_OK) {
        fprintf(stderr, "taskgate: cannot rotate: %s\n", err);
        return 1;
    }
    if (resumed)
        fprintf(stderr, "taskgate: finishing an interrupted rotation to key %s (%s.new)\n", kid,
                conf->key_file);
    rc = tg_store_keys_reseal(st, &who, 1, "keys.rotate", &n);
    if (rc != TG_OK) {
        tg_crypto_rotate_abort();
        fprintf(stderr, "taskgate: cannot rotate: %s; nothing changed\n", tg_store_errmsg(st));
        return 1;
    }
    rc = tg_crypto_rotate_commit(err, sizeof(err));
    if (rc != TG_OK) {
        fprintf(stderr, "taskgate: the keys are re-encrypted under %s.new, but %s; every key "
                "still decrypts: fix that and run `taskgate keys rotate` again\n",
                conf->key_file, err);
        return 1;
    }
    fprintf(stderr, "taskgate: re-encrypted %ld team key(s) under key %s in %s; the previous "
            "key file is kept as %s.old\n", n, kid, conf->key_file, conf->key_file);
    return 0;
}

int tg_keys_cli(const struct tg_conf *conf, int argc, char **argv)
{
    int is_rotate = argc == 1 && strcmp(argv[0], "rotate") == 0;
    int is_status = argc == 1 && strcmp(argv[0], "status") == 0;
    if (!is_rotate && !is_status) {
        fputs("taskgate: usage: taskgate keys rotate | keys status\n", stderr);
        return 2;
    }
    struct tg_store *st = tg_cli_common_store(conf, 0);
    if (st == NULL)
        return 1;
    int status = is_rotate ? keys_rotate(st, conf) : keys_status(st, conf);
    tg_store_close(st);
    return status;
}
