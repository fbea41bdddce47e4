-- The expiry report (`notarium expiring`, the notarium_repositories_expiring
-- metrics): the `expires` of the current version of each client-signed role
-- (root, targets, delegations, a client-signed snapshot), written in the
-- transaction of every publish, delete and import. Unix seconds: compared
-- and sorted as numbers, whatever offset the client wrote.
CREATE TABLE role_expiry (
    gun     TEXT    NOT NULL,
    role    TEXT    NOT NULL,
    version INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (gun, role)
);

-- Counts of repositories expiring before a time read this index only.
CREATE INDEX role_expiry_expires ON role_expiry (expires, gun);

-- Present until the store has filled role_expiry from the files already
-- stored (the parsing is done by notarium when it opens the database).
CREATE TABLE role_expiry_backfill (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1)
);
INSERT INTO role_expiry_backfill (id) VALUES (1);
