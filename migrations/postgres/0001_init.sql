-- notarium PostgreSQL schema: the tables migrations/sqlite/ creates, in
-- PostgreSQL's native types. Times are TIMESTAMPTZ stamped by the database
-- clock; identity columns come from sequences, which never hand out a value
-- twice (clients page the changefeed and the audit log by ID).

-- Every uploaded or server-generated metadata file, kept verbatim.
CREATE TABLE tuf_files (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    gun        TEXT        NOT NULL,
    role       TEXT        NOT NULL,
    version    BIGINT      NOT NULL,
    sha256     TEXT        NOT NULL,
    data       BYTEA       NOT NULL,
    -- Second guard behind the version check in publish (PROTOCOL.md §3.6).
    CONSTRAINT tuf_files_gun_role_version UNIQUE (gun, role, version)
);

-- Lookups by checksum are always scoped to (gun, role) (§11.3).
CREATE INDEX tuf_files_gun_role_sha256 ON tuf_files (gun, role, sha256);

CREATE TABLE changefeed (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    gun        TEXT        NOT NULL,
    version    BIGINT      NOT NULL,
    sha256     TEXT        NOT NULL DEFAULT '',
    category   TEXT        NOT NULL DEFAULT 'update' CHECK (category IN ('update', 'deletion'))
);

CREATE INDEX changefeed_gun ON changefeed (gun, id);

-- Server-held timestamp/snapshot keys. `sealed_private` is only ever the
-- encrypted (JWE) form; `public` is the raw `keyval.public` bytes and
-- `algorithm` the TUF key type, enough to rebuild the public key. `seq`
-- orders keys created in the same microsecond (SQLite uses its rowid).
CREATE TABLE server_keys (
    key_id         TEXT        NOT NULL PRIMARY KEY,
    gun            TEXT        NOT NULL,
    role           TEXT        NOT NULL,
    algorithm      TEXT        NOT NULL,
    public         BYTEA       NOT NULL,
    sealed_private TEXT        NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    last_used      TIMESTAMPTZ,
    -- Set when the repository the key served was deleted: a retired key
    -- never signs again, and a root that lists it is refused.
    retired_at     TIMESTAMPTZ,
    seq            BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE
);

CREATE INDEX server_keys_gun_role ON server_keys (gun, role);

-- Repositories whose signed tags may not be re-pointed, removed or deleted.
CREATE TABLE immutable_repositories (
    gun        TEXT        NOT NULL PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- The key-encryption key's parameters: one row per database (see the SQLite
-- migration 0003 for what they are).
CREATE TABLE key_encryption (
    id          INTEGER     NOT NULL PRIMARY KEY CHECK (id = 1),
    salt        BYTEA       NOT NULL,
    iterations  BIGINT      NOT NULL,
    check_value TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Who published, deleted or rotated what. `roles` is a JSON array of
-- [role, version] pairs; `key_ids` a JSON array of key IDs. Stored as text,
-- as in SQLite: only notarium reads them, and the bytes stay as written.
CREATE TABLE audit_log (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    gun        TEXT        NOT NULL,
    action     TEXT        NOT NULL CHECK (action IN ('publish', 'delete', 'rotate_key')),
    subject    TEXT        NOT NULL,
    roles      TEXT        NOT NULL DEFAULT '[]',
    key_ids    TEXT        NOT NULL DEFAULT '[]'
);

CREATE INDEX audit_log_gun ON audit_log (gun, id);
