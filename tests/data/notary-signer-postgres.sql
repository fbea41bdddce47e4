-- notary-signer's table on PostgreSQL, written from PROTOCOL.md §6.2 (the
-- state after upstream signer migrations 0001-0002).
CREATE TABLE private_keys (
    id               SERIAL PRIMARY KEY,
    created_at       TIMESTAMP NULL DEFAULT NULL,
    updated_at       TIMESTAMP NULL DEFAULT NULL,
    deleted_at       TIMESTAMP NULL DEFAULT NULL,
    key_id           VARCHAR(255) NOT NULL,
    encryption_alg   VARCHAR(255) NOT NULL,
    keywrap_alg      VARCHAR(255) NOT NULL,
    algorithm        VARCHAR(50) NOT NULL,
    passphrase_alias VARCHAR(50) NOT NULL,
    public           BYTEA NOT NULL,
    private          BYTEA NOT NULL,
    gun              VARCHAR(255) NOT NULL,
    role             VARCHAR(255) NOT NULL,
    last_used        TIMESTAMP NULL DEFAULT NULL,
    CONSTRAINT key_id UNIQUE (key_id),
    CONSTRAINT key_id_2 UNIQUE (key_id, algorithm)
);
