-- taskgate schema, version 4 (PostgreSQL): team upstream keys are stored encrypted.
--
-- The twin of sql/sqlite/004_key_encryption.sql (see 001_init.sql for how the dialects are
-- matched). Applied by `taskgate init` inside one transaction, after which schema_version
-- holds 4.
--
-- teams.upstream_key now holds sealed text, "tgk1.<key id>.<base64(nonce|ciphertext|tag)>":
-- AES-256-GCM under the key file named by the config's key_file, with a random 96-bit nonce
-- and the team's name as associated data (a value copied to another team's row does not
-- decrypt). teams.key_id names the key file's key (8 hex digits) that sealed it; NULL marks a
-- key an older taskgate stored in clear, which `taskgate init` and the daemon's start-up
-- encrypt (in one transaction, logged in admin_log as 'keys.encrypt'). `taskgate keys
-- rotate` re-encrypts every key under a new key file ('keys.rotate'). Only the C code can
-- encrypt, so this migration only adds the column. Every host sharing the database must hold
-- the same key file.

ALTER TABLE teams ADD COLUMN key_id TEXT COLLATE "C";  -- NULL: stored in clear by an older version
