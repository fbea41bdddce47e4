-- notarium SQLite schema, modelled on notary-server's (PROTOCOL.md §6.1) and
-- notary-signer's (§6.2) tables. Times are RFC 3339 UTC text with
-- milliseconds, stamped by the database clock.

-- Every uploaded or server-generated metadata file, kept verbatim.
CREATE TABLE tuf_files (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    gun        TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    data       BLOB    NOT NULL,
    -- Second guard behind the version check in publish (§3.6).
    UNIQUE (gun, role, version)
);

-- Lookups by checksum are always scoped to (gun, role) (§11.3).
CREATE INDEX tuf_files_gun_role_sha256 ON tuf_files (gun, role, sha256);

-- AUTOINCREMENT so IDs are never reused: clients page with them (§1.6).
CREATE TABLE changefeed (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    gun        TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    sha256     TEXT    NOT NULL DEFAULT '',
    category   TEXT    NOT NULL DEFAULT 'update' CHECK (category IN ('update', 'deletion'))
);

CREATE INDEX changefeed_gun ON changefeed (gun, id);

-- Server-held timestamp/snapshot keys. `sealed_private` is only ever the
-- encrypted (JWE) form; `public` is the raw `keyval.public` bytes and
-- `algorithm` the TUF key type, enough to rebuild the public key.
CREATE TABLE server_keys (
    key_id         TEXT NOT NULL PRIMARY KEY,
    gun            TEXT NOT NULL,
    role           TEXT NOT NULL,
    algorithm      TEXT NOT NULL,
    public         BLOB NOT NULL,
    sealed_private TEXT NOT NULL,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_used      TEXT
);

CREATE INDEX server_keys_gun_role ON server_keys (gun, role);
