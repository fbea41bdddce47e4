-- The expiry report: see migrations/sqlite/0004_role_expiry.sql. Unix
-- seconds, as in SQLite, so both backends run the same comparisons.
CREATE TABLE role_expiry (
    gun     TEXT   NOT NULL,
    role    TEXT   NOT NULL,
    version BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    PRIMARY KEY (gun, role)
);

CREATE INDEX role_expiry_expires ON role_expiry (expires, gun);

-- Present until `notarium migrate` (or a replica's start-up migration) has
-- filled role_expiry from the files already stored.
CREATE TABLE role_expiry_backfill (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1)
);
INSERT INTO role_expiry_backfill (id) VALUES (1);
