//! Readers of an existing notary deployment's databases, for
//! `notarium import` (PROTOCOL.md §6.4): notary-server's `tuf_files` and
//! `changefeed`, notary-signer's `private_keys`.
//!
//! Each source is read on one connection inside one read-only transaction
//! (a consistent snapshot, and the source cannot be modified by mistake),
//! one GUN at a time: only the list of GUN names and one repository's rows
//! are in memory at once. Soft-deleted rows (gorm's `deleted_at`) are
//! invisible, as they are to notary.

pub mod config;
mod mysql;
mod postgres;

use time::OffsetDateTime;

pub use config::{
    ConfigError, SignerSource, SourceBackend, SourceDb, passphrase_variable, read_server_config,
    read_signer_config, redact,
};
pub use mysql::{MySqlServerReader, MySqlSignerReader};
pub use postgres::{PgServerReader, PgSignerReader};

use super::{Change, ImportedFile, Result};

/// A `tuf_files` row whose stored checksum disagrees with its data: the
/// source is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRow {
    pub role: String,
    pub version: i64,
    pub stored_sha256: String,
    pub computed_sha256: String,
}

/// One GUN's rows in notary-server's database.
#[derive(Debug, Default)]
pub struct SourceRepository {
    pub gun: String,
    /// Every live version of every role, oldest first per role.
    pub files: Vec<ImportedFile>,
    /// Its changefeed records, by ID.
    pub changes: Vec<Change>,
    /// Rows whose checksum does not match their data.
    pub corrupt: Vec<CorruptRow>,
}

/// One live `private_keys` row of notary-signer.
#[derive(Clone, PartialEq, Eq)]
pub struct NotaryPrivateKey {
    pub key_id: String,
    /// The TUF key type (`ecdsa`, `ed25519`).
    pub algorithm: String,
    pub passphrase_alias: String,
    /// PKIX DER (ecdsa) or the raw 32 bytes (ed25519).
    pub public: Vec<u8>,
    /// The compact JWE (PBES2-HS256+A128KW / A256GCM).
    pub private: Vec<u8>,
    /// Empty in rows older than signer migration 0002.
    pub gun: String,
    pub role: String,
    /// When notary-signer created it; kept so key history reads the same.
    pub created_at: Option<OffsetDateTime>,
    /// When it last signed there (None: never).
    pub last_used: Option<OffsetDateTime>,
}

impl std::fmt::Debug for NotaryPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotaryPrivateKey")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field("passphrase_alias", &self.passphrase_alias)
            .field("gun", &self.gun)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A source of notary-server data.
pub trait ServerReader {
    /// The next at most `limit` GUNs (sorted) after `after` that have live
    /// metadata or changefeed records: the import pages through them so
    /// its memory does not grow with the number of repositories.
    fn guns_after(
        &mut self,
        after: &str,
        limit: i64,
    ) -> impl std::future::Future<Output = Result<Vec<String>>> + Send;
    /// One GUN's live rows.
    fn repository(
        &mut self,
        gun: &str,
    ) -> impl std::future::Future<Output = Result<SourceRepository>> + Send;
}

/// A source of notary-signer keys.
pub trait SignerReader {
    /// The live key with this ID, if any.
    fn key(
        &mut self,
        key_id: &str,
    ) -> impl std::future::Future<Output = Result<Option<NotaryPrivateKey>>> + Send;
}

/// `tuf_files` times: the row's creation time, which notary serves as
/// `Last-Modified` for by-version and by-checksum reads.
fn time_from_micros(micros: i64) -> Result<OffsetDateTime, sqlx::Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

fn optional_time(micros: Option<i64>) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    micros.map(time_from_micros).transpose()
}

/// Checks (or, when NULL, computes) a row's checksum.
fn checked_file(
    role: String,
    version: i64,
    stored: Option<String>,
    data: Vec<u8>,
    created_at: OffsetDateTime,
    corrupt: &mut Vec<CorruptRow>,
) -> ImportedFile {
    let computed = super::sha256_hex(&data);
    if let Some(stored) = stored.filter(|s| !s.is_empty()) {
        if !stored.eq_ignore_ascii_case(&computed) {
            corrupt.push(CorruptRow {
                role: role.clone(),
                version,
                stored_sha256: stored,
                computed_sha256: computed.clone(),
            });
        }
    }
    ImportedFile {
        role,
        version,
        sha256: computed,
        data,
        created_at,
    }
}

/// notary-server's database on either backend.
#[derive(Debug)]
pub enum AnyServerReader {
    Postgres(PgServerReader),
    Mysql(MySqlServerReader),
}

impl AnyServerReader {
    pub async fn connect(db: &SourceDb) -> Result<Self> {
        Ok(match db.backend {
            SourceBackend::Postgres => Self::Postgres(PgServerReader::connect(&db.url).await?),
            SourceBackend::Mysql => Self::Mysql(MySqlServerReader::connect(&db.url).await?),
        })
    }
}

impl ServerReader for AnyServerReader {
    async fn guns_after(&mut self, after: &str, limit: i64) -> Result<Vec<String>> {
        match self {
            Self::Postgres(reader) => reader.guns_after(after, limit).await,
            Self::Mysql(reader) => reader.guns_after(after, limit).await,
        }
    }

    async fn repository(&mut self, gun: &str) -> Result<SourceRepository> {
        match self {
            Self::Postgres(reader) => reader.repository(gun).await,
            Self::Mysql(reader) => reader.repository(gun).await,
        }
    }
}

/// notary-signer's database on either backend.
#[derive(Debug)]
pub enum AnySignerReader {
    Postgres(PgSignerReader),
    Mysql(MySqlSignerReader),
}

impl AnySignerReader {
    pub async fn connect(db: &SourceDb) -> Result<Self> {
        Ok(match db.backend {
            SourceBackend::Postgres => Self::Postgres(PgSignerReader::connect(&db.url).await?),
            SourceBackend::Mysql => Self::Mysql(MySqlSignerReader::connect(&db.url).await?),
        })
    }
}

impl SignerReader for AnySignerReader {
    async fn key(&mut self, key_id: &str) -> Result<Option<NotaryPrivateKey>> {
        match self {
            Self::Postgres(reader) => reader.key(key_id).await,
            Self::Mysql(reader) => reader.key(key_id).await,
        }
    }
}
