-- notary-server's tables on MySQL/MariaDB, written from PROTOCOL.md §6.1 and
-- §6.4 (the state after upstream server migrations 0001-0005: int(11)
-- AUTO_INCREMENT ids, longblob data, InnoDB, utf8).
CREATE TABLE tuf_files (
    id         INT(11) NOT NULL AUTO_INCREMENT,
    created_at DATETIME NULL DEFAULT NULL,
    updated_at DATETIME NULL DEFAULT NULL,
    deleted_at DATETIME NULL DEFAULT NULL,
    gun        VARCHAR(255) NOT NULL,
    role       VARCHAR(255) NOT NULL,
    version    INT(11) NOT NULL,
    data       LONGBLOB NOT NULL,
    sha256     CHAR(64) DEFAULT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY gun (gun, role, version),
    INDEX (sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE TABLE change_category (
    category VARCHAR(20) PRIMARY KEY
) ENGINE=InnoDB DEFAULT CHARSET=utf8;
INSERT INTO change_category VALUES ('update'), ('deletion');

CREATE TABLE changefeed (
    id         INT(11) NOT NULL AUTO_INCREMENT,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    gun        VARCHAR(255) NOT NULL,
    version    INT(11) NOT NULL,
    sha256     CHAR(64) DEFAULT NULL,
    category   VARCHAR(20) NOT NULL DEFAULT 'update',
    PRIMARY KEY (id),
    FOREIGN KEY (category) REFERENCES change_category (category),
    INDEX idx_changefeed_gun (gun)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;
