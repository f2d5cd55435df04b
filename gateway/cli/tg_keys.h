/* The upstream keys' key file from the command line (tg_keys.c): `taskgate keys
 * rotate|status`, and the key setup `taskgate init` and `taskgate serve` do first. */
#ifndef TG_KEYS_H
#define TG_KEYS_H

#include <stddef.h>

struct tg_conf;
struct tg_store;

/* `taskgate keys ARGS`: 0, 1 on failure, 2 on a usage error. */
int tg_keys_cli(const struct tg_conf *conf, int argc, char **argv);

/* Loads the key ring for the database st: creates the key file when it is missing and the
 * database holds no sealed key yet, then encrypts (in one transaction, logged as
 * 'keys.encrypt') any key an older version stored in clear. What it did goes to note (may
 * be "" when nothing was done), a failure to err. TG_OK or an error. */
int tg_keys_prepare(struct tg_store *st, char *note, size_t notelen, char *err, size_t errlen);

/* The same for `serve`, before the daemon starts: opens the configured database itself and
 * logs what it did. A failure is logged and kept for /healthz (tg_crypto_check); the daemon
 * still starts, answering submissions with 503 until the key file is repaired. */
void tg_keys_serve_start(const struct tg_conf *conf);

#define TG_KEYS_USAGE                                                                       \
    "  keys status                  the key file, its key id, and how many team keys it seals\n" \
    "  keys rotate                  re-encrypt every team key under a new key file (the old\n" \
    "                               one is kept as KEY_FILE.old)\n"

#endif
