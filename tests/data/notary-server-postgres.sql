-- notary-server's tables on PostgreSQL, written from PROTOCOL.md §6.1 (the
-- state after upstream server migrations 0001-0005): Debian's notary
-- packages ship no migrations, and notary never creates SQL tables itself.
CREATE TABLE tuf_files (
    id         SERIAL PRIMARY KEY,
    created_at TIMESTAMP NULL DEFAULT NULL,
    updated_at TIMESTAMP NULL DEFAULT NULL,
    deleted_at TIMESTAMP NULL DEFAULT NULL,
    gun        VARCHAR(255) NOT NULL,
    role       VARCHAR(255) NOT NULL,
    version    INTEGER NOT NULL,
    data       BYTEA NOT NULL,
    sha256     CHAR(64) DEFAULT NULL,
    UNIQUE (gun, role, version)
);
CREATE INDEX tuf_files_sha256_idx ON tuf_files (sha256);

CREATE TABLE change_category (
    category VARCHAR(20) PRIMARY KEY
);
INSERT INTO change_category VALUES ('update'), ('deletion');

CREATE TABLE changefeed (
    id         SERIAL PRIMARY KEY,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    gun        VARCHAR(255) NOT NULL,
    version    INTEGER NOT NULL,
    sha256     CHAR(64) DEFAULT NULL,
    category   VARCHAR(20) NOT NULL DEFAULT 'update' REFERENCES change_category
);
CREATE INDEX idx_changefeed_gun ON changefeed (gun);
