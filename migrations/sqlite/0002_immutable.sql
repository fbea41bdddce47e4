-- Repositories whose signed tags may not be re-pointed, removed or deleted
-- (set with `notarium immutable set <gun>`; config prefixes add to these).
CREATE TABLE immutable_repositories (
    gun        TEXT PRIMARY KEY NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
