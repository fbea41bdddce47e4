-- Keys at rest, retired keys and the audit trail. Plain SQL that ports to
-- PostgreSQL as is, except the AUTOINCREMENT key and the time default.

-- The key-encryption key's parameters: one row per database. The KEK is
-- PBKDF2(passphrase, salt, iterations), derived once per process;
-- `check_value` is a known answer sealed under it, so a wrong passphrase is
-- caught at start-up.
CREATE TABLE key_encryption (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    salt        BLOB    NOT NULL,
    iterations  INTEGER NOT NULL,
    check_value TEXT    NOT NULL,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Set when the repository the key served was deleted: a retired key never
-- signs again, and a root that lists it is refused.
ALTER TABLE server_keys ADD COLUMN retired_at TEXT;

-- Who published, deleted or rotated what, newest last. `roles` is a JSON
-- array of [role, version] pairs; `key_ids` a JSON array of key IDs (the
-- new key of a rotation, the keys a delete retired).
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    gun        TEXT    NOT NULL,
    action     TEXT    NOT NULL CHECK (action IN ('publish', 'delete', 'rotate_key')),
    subject    TEXT    NOT NULL,
    roles      TEXT    NOT NULL DEFAULT '[]',
    key_ids    TEXT    NOT NULL DEFAULT '[]'
);

CREATE INDEX audit_log_gun ON audit_log (gun, id);
