//! notary-signer's `private_keys` table (PROTOCOL.md §6.2), on PostgreSQL
//! or MySQL/MariaDB: the only SQL of `notarium signer`. Rows are written
//! as notary-signer's gorm model writes them (`signer/keydbstore/
//! sql_keydbstore.go`): times in UTC, `deleted_at` for a delete (gorm's
//! soft delete, so every read skips deleted rows), `last_used` set by each
//! signature, and an unused key of the same GUN, role and algorithm handed
//! out again instead of a new one.

use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::store::import::{SourceBackend, SourceDb};

/// How long a query waits for a connection. While the database is down,
/// sqlx keeps retrying the connect until then; a short wait makes a request
/// fail as unavailable soon, well inside the caller's deadline.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections per signer: signing is CPU-bound and a key is read once,
/// so few are needed.
const MAX_CONNECTIONS: u32 = 8;

/// One live row, as the signer needs it to open a key.
pub(super) struct StoredKey {
    pub key_id: String,
    /// The TUF key type (`ecdsa`, `ed25519`).
    pub algorithm: String,
    pub passphrase_alias: String,
    pub public: Vec<u8>,
    /// The compact JWE.
    pub private: Vec<u8>,
    pub role: String,
}

/// A new row's values (the times are the database's).
pub(super) struct NewRow<'a> {
    pub key_id: &'a str,
    pub encryption_alg: &'a str,
    pub keywrap_alg: &'a str,
    pub algorithm: &'a str,
    pub passphrase_alias: &'a str,
    pub public: &'a [u8],
    pub private: &'a [u8],
    pub gun: &'a str,
    pub role: &'a str,
}

/// The signer's database: one pool of either kind, the SQL picked per
/// dialect inside each method so handlers never see the difference.
#[derive(Debug, Clone)]
pub(super) enum KeyDb {
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Runs the same statement on either pool: `$body` is expanded once per
/// dialect with `$pool` bound to that pool and `$sql` to its SQL text.
macro_rules! on_either {
    ($db:expr, pg: $pg:literal, mysql: $my:literal, |$pool:ident, $sql:ident| $body:expr) => {
        match $db {
            KeyDb::Postgres($pool) => {
                let $sql = $pg;
                $body
            }
            KeyDb::MySql($pool) => {
                let $sql = $my;
                $body
            }
        }
    };
}

impl KeyDb {
    /// Connects (and so fails at start when the database is unreachable,
    /// as notary-signer does).
    pub async fn connect(db: &SourceDb) -> Result<Self, sqlx::Error> {
        match db.backend {
            SourceBackend::Postgres => PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(&db.url)
                .await
                .map(Self::Postgres),
            SourceBackend::Mysql => {
                let options: MySqlConnectOptions = db.url.parse()?;
                MySqlPoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map(Self::MySql)
            }
        }
    }

    /// The live row of `key_id`. MySQL's default collation compares
    /// case-insensitively, so the ID must match exactly here.
    pub async fn key(&self, key_id: &str) -> Result<Option<StoredKey>, sqlx::Error> {
        type Row = (String, String, String, Vec<u8>, Vec<u8>, String);
        let row: Option<Row> = on_either!(self,
            pg: "SELECT key_id, algorithm, passphrase_alias, public, private, role \
                 FROM private_keys WHERE key_id = $1 AND deleted_at IS NULL",
            mysql: "SELECT key_id, algorithm, passphrase_alias, public, private, role \
                    FROM private_keys WHERE key_id = ? AND deleted_at IS NULL",
            |pool, sql| sqlx::query_as(sql).bind(key_id).fetch_optional(pool).await)?;
        Ok(row.filter(|row| row.0 == key_id).map(
            |(key_id, algorithm, passphrase_alias, public, private, role)| StoredKey {
                key_id,
                algorithm,
                passphrase_alias,
                public,
                private,
                role,
            },
        ))
    }

    /// A live key of this GUN, role and algorithm that has never signed:
    /// (key ID, public key). notary-signer hands it out again rather than
    /// making another, so repeated key requests do not pile up keys.
    pub async fn unused_key(
        &self,
        gun: &str,
        role: &str,
        algorithm: &str,
    ) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
        on_either!(self,
            pg: "SELECT key_id, public FROM private_keys WHERE role = $1 AND gun = $2 \
                 AND algorithm = $3 AND last_used IS NULL AND deleted_at IS NULL \
                 ORDER BY key_id LIMIT 1",
            mysql: "SELECT key_id, public FROM private_keys WHERE role = ? AND gun = ? \
                    AND algorithm = ? AND last_used IS NULL AND deleted_at IS NULL \
                    ORDER BY key_id LIMIT 1",
            |pool, sql| sqlx::query_as(sql)
                .bind(role)
                .bind(gun)
                .bind(algorithm)
                .fetch_optional(pool)
                .await)
    }

    pub async fn insert(&self, row: &NewRow<'_>) -> Result<(), sqlx::Error> {
        on_either!(self,
            pg: "INSERT INTO private_keys (created_at, updated_at, key_id, encryption_alg, \
                 keywrap_alg, algorithm, passphrase_alias, public, private, gun, role) \
                 VALUES (now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', \
                 $1, $2, $3, $4, $5, $6, $7, $8, $9)",
            mysql: "INSERT INTO private_keys (created_at, updated_at, key_id, encryption_alg, \
                    keywrap_alg, algorithm, passphrase_alias, public, private, gun, role) \
                    VALUES (UTC_TIMESTAMP(), UTC_TIMESTAMP(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            |pool, sql| sqlx::query(sql)
                .bind(row.key_id)
                .bind(row.encryption_alg)
                .bind(row.keywrap_alg)
                .bind(row.algorithm)
                .bind(row.passphrase_alias)
                .bind(row.public)
                .bind(row.private)
                .bind(row.gun)
                .bind(row.role)
                .execute(pool)
                .await
                .map(|_| ()))
    }

    /// Soft delete; deleting an unknown key succeeds, as in notary-signer.
    pub async fn soft_delete(&self, key_id: &str) -> Result<(), sqlx::Error> {
        on_either!(self,
            pg: "UPDATE private_keys SET deleted_at = now() AT TIME ZONE 'UTC' \
                 WHERE key_id = $1 AND deleted_at IS NULL",
            mysql: "UPDATE private_keys SET deleted_at = UTC_TIMESTAMP() \
                    WHERE key_id = ? AND deleted_at IS NULL",
            |pool, sql| sqlx::query(sql).bind(key_id).execute(pool).await.map(|_| ()))
    }

    /// Records a signature: the key is active from now on, so it is never
    /// handed out again as a new key (by this signer or by notary-signer
    /// on the same table).
    pub async fn mark_used(&self, key_id: &str) -> Result<(), sqlx::Error> {
        on_either!(self,
            pg: "UPDATE private_keys SET last_used = now() AT TIME ZONE 'UTC', \
                 updated_at = now() AT TIME ZONE 'UTC' \
                 WHERE key_id = $1 AND deleted_at IS NULL",
            mysql: "UPDATE private_keys SET last_used = UTC_TIMESTAMP(), \
                    updated_at = UTC_TIMESTAMP() WHERE key_id = ? AND deleted_at IS NULL",
            |pool, sql| sqlx::query(sql).bind(key_id).execute(pool).await.map(|_| ()))
    }

    /// notary-signer's health check: the table can be queried.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        on_either!(self,
            pg: "SELECT 1 FROM private_keys LIMIT 1",
            mysql: "SELECT 1 FROM private_keys LIMIT 1",
            |pool, sql| sqlx::query(sql).fetch_optional(pool).await.map(|_| ()))
    }
}
