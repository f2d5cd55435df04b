/* Upstream keys at rest: AES-256-GCM (OpenSSL libcrypto) under the 32-byte key file named by
 * the config's key_file. One key ring per process, shared by every thread and guarded by a
 * mutex: the key file, plus KEY_FILE.new and KEY_FILE.old when they exist (a rotation in
 * progress or just done), each known by its key id. New values are sealed under KEY_FILE's
 * key (or, during `taskgate keys rotate`, the new one); any key of the ring opens a value.
 * No function here puts key material or plaintext into a message. */
#ifndef TG_CRYPTO_H
#define TG_CRYPTO_H

#include <stddef.h>

/* A key file holds exactly this many random bytes. */
#define TG_CRYPTO_KEY_LEN 32
/* A key id: 8 hex digits naming a key file's key (from its SHA-256), and the NUL. */
#define TG_CRYPTO_KID_LEN 9
/* The sealed text of a plaintext of n bytes: "tgk1.<kid>.<base64(nonce|ciphertext|tag)>"
 * and the NUL. */
#define TG_CRYPTO_SEALED_LEN(n) (5 + 8 + 1 + 4 * (((n) + 28 + 2) / 3) + 1)

/* Names the key file (copied; "" unsets). Loads nothing: the ring is loaded on first use or
 * by tg_crypto_load. Call once, before any thread uses the ring. */
void tg_crypto_configure(const char *key_file);

/* (Re)loads the ring from the key file and its .new and .old companions. create: when the
 * key file does not exist, make it (32 bytes from RAND_bytes, mode 0600, fsync'd). A key
 * file that is missing (and not to be created), unreadable, not a regular file, not exactly
 * 32 bytes, or readable by group or others is an error: TG_ERR with err saying which file
 * and why; the reason is also kept for tg_crypto_check (/healthz). *created (may be NULL)
 * says whether the key file was made. */
int tg_crypto_load(int create, int *created, char *err, size_t errlen);

/* For /healthz: TG_OK when a ring is loaded (a failed load is retried) and the key file
 * still reads as a valid key of it; otherwise TG_ERR and why (the load failure, or what is
 * wrong with the file now, naming the file), and *public_why (may be NULL) the same without
 * a path: static text that anyone may be shown. A key file that changed to a valid new key
 * (a rotation by the CLI) reloads the ring. */
int tg_crypto_check(char *why, size_t whylen, const char **public_why);

/* Seals len bytes of plain for team (bound as associated data: a value sealed for one team
 * does not open as another's). Like tg_crypto_open, it refuses (TG_ERR) while the key file
 * is missing, not a key file or readable by group or others, even with a ring loaded. out receives the sealed text (see TG_CRYPTO_SEALED_LEN),
 * kid (may be NULL) the sealing key's id. TG_OK, TG_ETOOBIG (out too small), TG_ERR (no
 * ring: err says why). */
int tg_crypto_seal(const char *team, const char *plain, size_t len, char *out, size_t outlen,
                   char kid[TG_CRYPTO_KID_LEN], char *err, size_t errlen);

/* Whether tg_crypto_open could use the ring now: loaded, and its key file still safe (see
 * tg_crypto_seal). For a value opened earlier and kept in memory, which must stop being
 * used when the key file stops being safe, as every opening does. TG_OK or TG_ERR (err
 * says why). */
int tg_crypto_usable(char *err, size_t errlen);

/* Opens sealed text made by tg_crypto_seal for the same team into out (NUL-terminated; the
 * length in *len, which may be NULL). While the key file is unsafe (see tg_crypto_seal)
 * nothing opens: TG_ERR. A key id the ring lacks reloads the ring once (another
 * process may have rotated). TG_OK, TG_ETOOBIG, TG_EINVAL (not sealed text), TG_ERR (no key
 * for its id, or it fails authentication: wrong key, another team's value, tampering). On
 * failure out holds no plaintext. The caller wipes out after use (OPENSSL_cleanse). */
int tg_crypto_open(const char *team, const char *sealed, char *out, size_t outlen,
                   size_t *len, char *err, size_t errlen);

/* The key id of sealed text into kid; TG_EINVAL when it is not sealed text. */
int tg_crypto_kid(const char *sealed, char kid[TG_CRYPTO_KID_LEN]);

/* The id of the key new values are sealed under; "" when no ring is loaded. */
void tg_crypto_current_kid(char kid[TG_CRYPTO_KID_LEN]);

/* ---- rotation (`taskgate keys rotate`, one process, no other thread sealing) ----------
 *
 * 1. tg_crypto_rotate_prepare: the new key is written to KEY_FILE.new (fsync'd) and becomes
 *    the sealing key of this process. A KEY_FILE.new left by an interrupted rotation is
 *    reused, never overwritten: values may already be sealed under it.
 * 2. the caller re-seals every value in ONE database transaction and commits it.
 * 3. tg_crypto_rotate_commit: KEY_FILE is copied to KEY_FILE.old, then KEY_FILE.new is
 *    renamed over KEY_FILE (each step atomic and fsync'd).
 * A crash anywhere leaves every value openable: the ring always reads all three files.
 * tg_crypto_rotate_abort (step 2 failed) removes a KEY_FILE.new that step 1 made. */
int tg_crypto_rotate_prepare(char newkid[TG_CRYPTO_KID_LEN], int *resumed, char *err,
                             size_t errlen);
int tg_crypto_rotate_commit(char *err, size_t errlen);
void tg_crypto_rotate_abort(void);

#endif
