-- notary-signer's table on MySQL/MariaDB, written from PROTOCOL.md §6.2 and
-- §6.4 (the state after upstream signer migrations 0001-0002).
CREATE TABLE private_keys (
    id               INT(11) NOT NULL AUTO_INCREMENT,
    created_at       DATETIME NULL DEFAULT NULL,
    updated_at       DATETIME NULL DEFAULT NULL,
    deleted_at       DATETIME NULL DEFAULT NULL,
    key_id           VARCHAR(255) NOT NULL,
    encryption_alg   VARCHAR(255) NOT NULL,
    keywrap_alg      VARCHAR(255) NOT NULL,
    algorithm        VARCHAR(50) NOT NULL,
    passphrase_alias VARCHAR(50) NOT NULL,
    public           BLOB NOT NULL,
    private          BLOB NOT NULL,
    gun              VARCHAR(255) NOT NULL,
    role             VARCHAR(255) NOT NULL,
    last_used        DATETIME NULL DEFAULT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY key_id (key_id),
    UNIQUE KEY key_id_2 (key_id, algorithm)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;
