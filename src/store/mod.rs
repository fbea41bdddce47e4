//! Persistence: TUF metadata rows, the changefeed and server-held sealed keys.
//! The only module that knows SQL.
//!
//! [`Store`] is the interface the upper layers are generic over; each backend
//! (SQLite, PostgreSQL) implements it with its own SQL dialect and
//! migrations, as atuin does (STYLE.md §1.1). No backend type appears in the
//! trait, so callers never see sqlx. What the backends do alike (row
//! decoding, bind order, audit and changefeed records, the import) is
//! written once in `shared`; each backend file holds its dialect.

mod expiry;
pub mod import;
mod postgres;
mod shared;
mod sqlite;

use std::future::Future;

use thiserror::Error;
use time::OffsetDateTime;

pub use expiry::{ExpiryCounts, RoleExpiry};
pub use postgres::{PoolSettings, PostgresStore};
pub use sqlite::SqliteStore;

/// Role name whose uploads are recorded in the changefeed (PROTOCOL.md §1.6).
const TIMESTAMP_ROLE: &str = "timestamp";

/// The one error type of the storage layer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not found")]
    NotFound,

    /// A row for (gun, role) with a version equal to or higher than
    /// `version` (the one being written) already exists: a stale upload, or
    /// the loser of a race between two publishers. Nothing was written.
    #[error("{role} of {gun} already has version {version} or newer")]
    Conflict {
        gun: String,
        role: String,
        version: i64,
    },

    /// An import met rows of `gun` that differ from the ones it brings
    /// (`what`: "metadata", "changefeed ID <n>", "key <id>"). Nothing was
    /// written.
    #[error("{gun} already holds other {what} than the import brings")]
    ImportConflict { gun: String, what: String },

    /// A server key with this ID is already stored.
    #[error("key {key_id} is already stored")]
    KeyExists { key_id: String },

    /// The database cannot be reached or did not answer in time (no
    /// connection within the pool's acquire timeout, a connection lost, a
    /// statement or lock timeout): retry later. A connection lost during a
    /// commit leaves the outcome unknown. The cause is boxed so that callers
    /// need not know the driver.
    #[error("storage backend unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),

    #[error("storage backend failed")]
    Backend(#[source] sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => Self::NotFound,
            other if is_unavailable(&other) => Self::Unavailable(Box::new(other)),
            other => Self::Backend(other),
        }
    }
}

/// Whether `err` says "the database is not there (right now)" rather than
/// "this operation is wrong": those become a 503 with Retry-After.
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // SQLSTATE class 08: connection exceptions; 57P01..57P03: the
            // server is shutting down or starting; 57014: statement timeout;
            // 55P03: lock timeout; 53300: too many connections.
            code.starts_with("08")
                || matches!(
                    &*code,
                    "57P01" | "57P02" | "57P03" | "57014" | "55P03" | "53300"
                )
        }),
        _ => false,
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Self::Backend(err.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One stored metadata file, bytes exactly as uploaded or generated.
/// How full a store's connection pool is (exported as metrics: a pool that
/// stays at `max` with no idle connection means requests queue for one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open now, idle or in use.
    pub open: u32,
    pub idle: usize,
    pub max: u32,
}

#[derive(Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub gun: String,
    pub role: String,
    pub version: i64,
    /// Lowercase hex SHA-256 of `data`.
    pub sha256: String,
    pub data: Vec<u8>,
    pub created_at: OffsetDateTime,
}

// By hand: the data can be large and is not useful in logs.
impl std::fmt::Debug for StoredFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredFile")
            .field("gun", &self.gun)
            .field("role", &self.role)
            .field("version", &self.version)
            .field("sha256", &self.sha256)
            .field("len", &self.data.len())
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A metadata file to publish. The store computes the checksum.
#[derive(Clone, PartialEq, Eq)]
pub struct NewFile {
    pub role: String,
    pub version: i64,
    pub data: Vec<u8>,
    /// Whether a publisher signed it (its expiry is then reported, see
    /// [`Store::expiring`]) rather than the server.
    pub client_signed: bool,
}

impl NewFile {
    /// Root, targets and delegations count as client-signed; snapshot and
    /// timestamp as server-signed unless [`NewFile::signed_by_client`].
    pub fn new(role: impl Into<String>, version: i64, data: Vec<u8>) -> Self {
        let role = role.into();
        let client_signed = role != "snapshot" && role != TIMESTAMP_ROLE;
        Self {
            role,
            version,
            data,
            client_signed,
        }
    }

    /// Marks the file as signed by the publisher (an uploaded snapshot).
    #[must_use]
    pub fn signed_by_client(mut self) -> Self {
        self.client_signed = true;
        self
    }
}

impl std::fmt::Debug for NewFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewFile")
            .field("role", &self.role)
            .field("version", &self.version)
            .field("len", &self.data.len())
            .field("client_signed", &self.client_signed)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeCategory {
    Update,
    Deletion,
}

impl ChangeCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::Deletion => "deletion",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "update" => Some(Self::Update),
            "deletion" => Some(Self::Deletion),
            _ => None,
        }
    }
}

/// One changefeed record (PROTOCOL.md §1.6). Deletions have version 0 and an
/// empty checksum, as in Notary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: i64,
    pub created_at: OffsetDateTime,
    pub gun: String,
    pub version: i64,
    pub sha256: String,
    pub category: ChangeCategory,
}

/// A server-held key as stored. The private half is only ever the sealed
/// (encrypted) form produced by `signer`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub key_id: String,
    pub gun: String,
    pub role: String,
    /// The TUF key type (`ecdsa`, `ed25519`), as notary-signer's column.
    pub algorithm: String,
    /// The raw `keyval.public` bytes (DER SPKI for ecdsa, 32 raw bytes for
    /// ed25519); with `algorithm` this rebuilds the public key and its ID.
    pub public: Vec<u8>,
    pub sealed_private: String,
    pub created_at: OffsetDateTime,
    /// Set by the first signature; a never-used key may be handed out again
    /// instead of minting another (PROTOCOL.md §5).
    pub last_used: Option<OffsetDateTime>,
    /// Set when the repository was deleted: the key never signs again.
    pub retired_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("key_id", &self.key_id)
            .field("gun", &self.gun)
            .field("role", &self.role)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .field("last_used", &self.last_used)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// A server key to store; the store stamps `created_at`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    pub key_id: String,
    pub gun: String,
    pub role: String,
    pub algorithm: String,
    pub public: Vec<u8>,
    pub sealed_private: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("key_id", &self.key_id)
            .field("gun", &self.gun)
            .field("role", &self.role)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Parameters of the key-encryption key (one per database): the salt and
/// iteration count it is derived with, and a known answer sealed under it.
#[derive(Clone, PartialEq, Eq)]
pub struct KekParams {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub check_value: String,
}

impl std::fmt::Debug for KekParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KekParams")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Publish,
    Delete,
    RotateKey,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Delete => "delete",
            Self::RotateKey => "rotate_key",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "publish" => Some(Self::Publish),
            "delete" => Some(Self::Delete),
            "rotate_key" => Some(Self::RotateKey),
            _ => None,
        }
    }
}

/// A role and its version, as recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleVersion {
    pub role: String,
    pub version: i64,
}

/// An audit record to append; the store stamps the time and ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub gun: String,
    pub action: AuditAction,
    /// Who: the token's `sub`, or "anonymous" without auth.
    pub subject: String,
    pub roles: Vec<RoleVersion>,
    pub key_ids: Vec<String>,
}

/// One audit record: when, which GUN, what, which roles and versions, who.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: OffsetDateTime,
    pub gun: String,
    pub action: AuditAction,
    pub subject: String,
    /// What was stored (publish: every file written, generated snapshot and
    /// timestamp included; delete: the newest version of each role removed;
    /// rotation: the role).
    pub roles: Vec<RoleVersion>,
    /// Rotation: the new key. Delete: the keys it retired.
    pub key_ids: Vec<String>,
}

fn rfc3339<S: serde::Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

/// Which file of a (gun, role) [`Store::locate`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which<'a> {
    /// The highest version.
    Current,
    Version(i64),
    /// Lowercase or uppercase hex SHA-256.
    Checksum(&'a str),
}

/// Where a stored file is: its version and checksum, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub version: i64,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
}

/// What a delete removed and retired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The newest version of each role that was deleted, by role name.
    pub roles: Vec<RoleVersion>,
    /// Server keys of the GUN retired by this delete.
    pub retired_keys: Vec<String>,
}

impl Deleted {
    /// Whether any metadata was deleted.
    pub fn any(&self) -> bool {
        !self.roles.is_empty()
    }
}

/// A metadata row copied from another server (`notarium import`), with the
/// checksum and creation time it had there, so history stays reachable by
/// version and checksum with the same `Last-Modified` (PROTOCOL.md §6.4).
#[derive(Clone, PartialEq, Eq)]
pub struct ImportedFile {
    pub role: String,
    pub version: i64,
    /// Lowercase hex SHA-256 of `data`.
    pub sha256: String,
    pub data: Vec<u8>,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for ImportedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedFile")
            .field("role", &self.role)
            .field("version", &self.version)
            .field("sha256", &self.sha256)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// A server key copied from another deployment, already sealed by `signer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedKey {
    pub key: NewKey,
    /// When it was created there; `None` (a row without the time): now.
    pub created_at: Option<OffsetDateTime>,
    /// When it last signed there (notary-signer's `last_used`): a key that
    /// has signed is never handed out again as "the unused key".
    pub last_used: Option<OffsetDateTime>,
}

/// Everything of one GUN that an import writes, as one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportedRepository {
    pub gun: String,
    pub files: Vec<ImportedFile>,
    /// Changefeed records with their IDs (the clients' paging cursor).
    pub changes: Vec<Change>,
    pub keys: Vec<ImportedKey>,
}

/// What [`Store::import_repository`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Everything was written.
    Imported,
    /// Every row was already there (an earlier run): nothing was written.
    AlreadyPresent,
}

/// At most this many audit records are returned per page.
pub const MAX_AUDIT_PAGE: i64 = 1000;

/// Storage backend. GUNs and roles are compared exactly (no prefixes, no case
/// folding). Times are stamped by the backend, like Notary's
/// `DEFAULT CURRENT_TIMESTAMP`.
pub trait Store: Send + Sync + 'static {
    /// Whether processes other than this one may write the database (a
    /// server database shared by replicas). Then no process may trust what
    /// it remembers of "current" files: the upper layers ask [`Store::locate`]
    /// on every read and cache only bytes by checksum. A method rather than
    /// a constant so that a store choosing its backend at run time (the
    /// tests' either-backend store) answers for the backend it holds.
    fn shared(&self) -> bool;

    /// The version and checksum of one file of (gun, role), without reading
    /// its bytes: one indexed lookup. [`Error::NotFound`] if there is none.
    fn locate(
        &self,
        gun: &str,
        role: &str,
        which: Which<'_>,
    ) -> impl Future<Output = Result<Located>> + Send;

    /// The highest version of (gun, role).
    fn get_current(&self, gun: &str, role: &str)
    -> impl Future<Output = Result<StoredFile>> + Send;

    fn get_version(
        &self,
        gun: &str,
        role: &str,
        version: i64,
    ) -> impl Future<Output = Result<StoredFile>> + Send;

    /// The file of (gun, role) whose SHA-256 is `sha256_hex`. Never looked up
    /// by checksum alone: that would serve one GUN's file to another
    /// (PROTOCOL.md §11.3).
    fn get_checksum(
        &self,
        gun: &str,
        role: &str,
        sha256_hex: &str,
    ) -> impl Future<Output = Result<StoredFile>> + Send;

    /// (role, highest version) for every role stored for `gun`, by role name.
    fn latest_versions(&self, gun: &str)
    -> impl Future<Output = Result<Vec<(String, i64)>>> + Send;

    /// Stores `files` all or nothing. Fails with [`Error::Conflict`] if any
    /// (gun, role) already has an equal or higher version; of two concurrent
    /// publishers of the same version exactly one succeeds. A timestamp file
    /// also writes an `update` changefeed record.
    fn publish(&self, gun: &str, files: Vec<NewFile>) -> impl Future<Output = Result<()>> + Send {
        self.publish_as(gun, files, None, &[])
    }

    /// [`Store::publish`], plus, in the same transaction (a refused publish
    /// records nothing): an audit record of every file written when
    /// `subject` is given, and the first use of the server keys in
    /// `used_keys` (as [`Store::mark_key_used`]; already-marked keys keep
    /// their time). One durable commit instead of two for a new repository.
    fn publish_as(
        &self,
        gun: &str,
        files: Vec<NewFile>,
        subject: Option<&str>,
        used_keys: &[String],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Hard-deletes every metadata row of exactly `gun`, records a `deletion`
    /// change if anything was deleted, and retires the GUN's server keys so
    /// a later repository of that name gets new ones (unlike Notary, which
    /// keeps them: PROTOCOL.md §1.5). If anything was deleted or retired, an
    /// audit record by `subject` is written, all in one transaction.
    fn delete(&self, gun: &str, subject: &str) -> impl Future<Output = Result<Deleted>> + Send;

    /// Appends an audit record on its own (key rotations).
    fn record_audit(&self, entry: NewAuditEntry) -> impl Future<Output = Result<()>> + Send;

    /// Audit records of exactly `gun`, newest first: at most `limit`
    /// (clamped to 1..=[`MAX_AUDIT_PAGE`]), with IDs below `before` if given.
    fn audit(
        &self,
        gun: &str,
        limit: i64,
        before: Option<i64>,
    ) -> impl Future<Output = Result<Vec<AuditEntry>>> + Send;

    /// A changefeed page (PROTOCOL.md §1.6), always oldest→newest. Forward
    /// (`records > 0`, `change_id >= 0`): IDs after `change_id`. Backwards
    /// (`records < 0` or `change_id < 0`): the `|records|` changes before
    /// `change_id`, or the newest ones when `change_id <= 0`. `records == 0`
    /// gives an empty page: the HTTP layer applies the default page size.
    fn changes(
        &self,
        gun: Option<&str>,
        change_id: i64,
        records: i64,
    ) -> impl Future<Output = Result<Vec<Change>>> + Send;

    /// Writes one imported repository all or nothing (`notarium import`):
    /// its files with their given checksums and times, its changefeed
    /// records with their IDs, its server keys. If the GUN already holds
    /// exactly these files (a re-run), writes nothing and says so; if it
    /// holds anything else, fails with [`Error::Conflict`]. A changefeed ID
    /// or key ID already stored with other content is a conflict too.
    /// Later changefeed IDs continue after the highest imported one.
    fn import_repository(
        &self,
        repository: ImportedRepository,
    ) -> impl Future<Output = Result<ImportOutcome>> + Send;

    /// Health check: the metadata table can be queried.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    /// The connection pool's state, for metrics.
    fn pool_stats(&self) -> PoolStats;

    /// Fails with [`Error::KeyExists`] if the key ID is already stored.
    fn put_key(&self, key: NewKey) -> impl Future<Output = Result<()>> + Send;

    /// Stores `key` unless (gun, role) already holds a key of the same
    /// algorithm that has never signed, is not retired and is not in `skip`;
    /// returns the key kept (the existing one, or `key`). Atomic across
    /// processes: of several servers creating "the" key of a role at once,
    /// all get the same one.
    fn put_key_once(
        &self,
        key: NewKey,
        skip: &[String],
    ) -> impl Future<Output = Result<StoredKey>> + Send;

    fn get_key(&self, key_id: &str) -> impl Future<Output = Result<StoredKey>> + Send;

    /// Every key held for (gun, role) and not retired, newest first.
    fn keys_for(
        &self,
        gun: &str,
        role: &str,
    ) -> impl Future<Output = Result<Vec<StoredKey>>> + Send;

    /// The most recently created key of any GUN, retired or not: a sample to
    /// check the passphrase against, and whether sealed keys exist at all.
    fn newest_key(&self) -> impl Future<Output = Result<Option<StoredKey>>> + Send;

    /// The key-encryption key's parameters, if set.
    fn kek_params(&self) -> impl Future<Output = Result<Option<KekParams>>> + Send;

    /// Stores `params` unless parameters are already stored; returns the
    /// stored ones (of two processes starting at once, both use the
    /// winner's). With `replace`, overwrites them: only for a database that
    /// holds no sealed keys.
    fn put_kek_params(
        &self,
        params: KekParams,
        replace: bool,
    ) -> impl Future<Output = Result<KekParams>> + Send;

    /// Records that the key has signed (sets `last_used` to now).
    fn mark_key_used(&self, key_id: &str) -> impl Future<Output = Result<()>> + Send;

    /// Marks `gun` immutable (`true`) or not; returns whether it changed.
    fn set_immutable(
        &self,
        gun: &str,
        immutable: bool,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Whether `gun` was marked immutable.
    fn is_immutable(&self, gun: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Every GUN marked immutable, sorted.
    fn immutable_repositories(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// For each of `cutoffs`, how many repositories have a client-signed
    /// role (root, targets, a delegation, a snapshot the client signed)
    /// whose current version expires before it; and the soonest such
    /// expiry. Indexed counts over the expiry table, never a file scan.
    fn expiry_counts(
        &self,
        cutoffs: &[OffsetDateTime],
    ) -> impl Future<Output = Result<ExpiryCounts>> + Send;

    /// Every client-signed role whose current version expires before
    /// `before`, soonest first (then by GUN and role).
    fn expiring(
        &self,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<RoleExpiry>>> + Send;
}

/// Lowercase hex SHA-256, the form stored and served.
fn sha256_hex(data: &[u8]) -> String {
    hex::encode(crate::tuf::sha256(data))
}

/// Backend-independent checks, run by each backend's tests (STYLE.md §3:
/// one story test, generic over `Store`).
#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;

    /// A fresh temporary directory and the path of a database file in it.
    pub(crate) fn temp_db() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("notarium.db").to_str().unwrap().to_string();
        (dir, db)
    }

    fn file(role: &str, version: i64) -> NewFile {
        NewFile::new(role, version, format!("{role} v{version}").into_bytes())
    }

    fn key(key_id: &str, gun: &str, role: &str) -> NewKey {
        NewKey {
            key_id: key_id.into(),
            gun: gun.into(),
            role: role.into(),
            algorithm: "ecdsa".into(),
            public: vec![1, 2, 3],
            sealed_private: format!("sealed-{key_id}"),
        }
    }

    fn assert_conflict(result: Result<()>, gun: &str, role: &str, version: i64) {
        match result {
            Err(Error::Conflict {
                gun: g,
                role: r,
                version: v,
            }) => assert_eq!((g.as_str(), r.as_str(), v), (gun, role, version)),
            other => panic!("expected conflict on {role} v{version}, got {other:?}"),
        }
    }

    /// A signed envelope with `expires` at `days` after 2030-01-01, signed
    /// by `keyid`, with `extra` members in `signed`.
    pub(crate) fn envelope(type_name: &str, days: i64, extra: &str, keyid: &str) -> Vec<u8> {
        let expires = time::macros::datetime!(2030-01-01 00:00 UTC) + time::Duration::days(days);
        let expires = expires
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        format!(
            r#"{{"signed":{{"_type":"{type_name}","expires":"{expires}","version":1{extra}}},"signatures":[{{"keyid":"{keyid}","method":"ecdsa","sig":"AAAA"}}]}}"#
        )
        .into_bytes()
    }

    /// A targets envelope delegating to `children`.
    fn delegating(days: i64, children: &[&str]) -> Vec<u8> {
        let roles: Vec<String> = children
            .iter()
            .map(|c| format!(r#"{{"name":"{c}","keyids":[],"threshold":1}}"#))
            .collect();
        let extra = format!(
            r#","targets":{{}},"delegations":{{"keys":{{}},"roles":[{}]}}"#,
            roles.join(",")
        );
        envelope("Targets", days, &extra, "client")
    }

    fn day(days: i64) -> OffsetDateTime {
        time::macros::datetime!(2030-01-01 00:00 UTC) + time::Duration::days(days)
    }

    /// (gun, role, version, days) of every row expiring before `before`.
    async fn expiry_rows<S: Store>(store: &S, before: i64) -> Vec<(String, String, i64, i64)> {
        store
            .expiring(day(before))
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                let days = (r.expires - day(0)).whole_days();
                (r.gun, r.role, r.version, days)
            })
            .collect()
    }

    fn row(gun: &str, role: &str, version: i64, days: i64) -> (String, String, i64, i64) {
        (gun.into(), role.into(), version, days)
    }

    /// The expiry table: written with each publish (client-signed roles
    /// only), pruned of delegations their parent drops, cleared by delete,
    /// filled by import; counts are per repository, not per role.
    pub(crate) async fn expiry_story<S: Store>(store: &S) {
        let (a, b, c) = (
            "example.com/exp-a",
            "example.com/exp-b",
            "example.com/exp-c",
        );
        assert_eq!(
            store.expiry_counts(&[day(0)]).await.unwrap(),
            ExpiryCounts {
                before: vec![0],
                soonest: None
            }
        );
        store
            .publish(
                a,
                vec![
                    NewFile::new("root", 1, envelope("Root", 3650, "", "client")),
                    NewFile::new("targets", 1, delegating(40, &["targets/rel"])),
                    NewFile::new("targets/rel", 1, delegating(10, &[])),
                    // Server-made: never reported, whatever it says.
                    NewFile::new("snapshot", 1, envelope("Snapshot", 1, "", "server")),
                    NewFile::new("timestamp", 1, envelope("Timestamp", 1, "", "server")),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            expiry_rows(store, 100_000).await,
            vec![
                row(a, "targets/rel", 1, 10),
                row(a, "targets", 1, 40),
                row(a, "root", 1, 3650)
            ]
        );
        assert_eq!(expiry_rows(store, 10).await, vec![]);

        // A snapshot the client signed is reported; the next one, made by
        // the server, takes it off the report again.
        store
            .publish(
                b,
                vec![
                    NewFile::new("root", 1, envelope("Root", 3650, "", "client")),
                    NewFile::new("targets", 1, delegating(400, &[])),
                    NewFile::new("snapshot", 1, envelope("Snapshot", 5, "", "client"))
                        .signed_by_client(),
                ],
            )
            .await
            .unwrap();
        assert_eq!(expiry_rows(store, 6).await, vec![row(b, "snapshot", 1, 5)]);
        let counts = store
            .expiry_counts(&[day(5), day(6), day(11), day(50), day(100_000)])
            .await
            .unwrap();
        assert_eq!(counts.before, vec![0, 1, 2, 2, 2]);
        assert_eq!(counts.soonest, Some(day(5)));
        store
            .publish(
                b,
                vec![NewFile::new(
                    "snapshot",
                    2,
                    envelope("Snapshot", 1, "", "server"),
                )],
            )
            .await
            .unwrap();
        assert_eq!(
            expiry_rows(store, 11).await,
            vec![row(a, "targets/rel", 1, 10)]
        );

        // Re-signing moves the expiry; a targets file that no longer
        // delegates to targets/rel takes it (and what it delegated) away.
        store
            .publish(a, vec![NewFile::new("targets/rel", 2, delegating(20, &[]))])
            .await
            .unwrap();
        assert_eq!(
            expiry_rows(store, 30).await,
            vec![row(a, "targets/rel", 2, 20)]
        );
        store
            .publish(a, vec![NewFile::new("targets", 2, delegating(60, &[]))])
            .await
            .unwrap();
        assert_eq!(
            expiry_rows(store, 100_000).await,
            vec![
                row(a, "targets", 2, 60),
                row(b, "targets", 1, 400),
                row(a, "root", 1, 3650),
                row(b, "root", 1, 3650)
            ]
        );
        // A refused publish changes nothing.
        assert_conflict(
            store
                .publish(a, vec![NewFile::new("targets", 2, delegating(1, &[]))])
                .await,
            a,
            "targets",
            2,
        );
        assert_eq!(
            expiry_rows(store, 100).await,
            vec![row(a, "targets", 2, 60)]
        );

        // Counts are of repositories: two roles of `a` count once.
        let counts = store.expiry_counts(&[day(100_000)]).await.unwrap();
        assert_eq!(counts.before, vec![2]);
        assert_eq!(counts.soonest, Some(day(60)));

        store.delete(a, "tester").await.unwrap();
        assert_eq!(
            expiry_rows(store, 100_000).await,
            vec![row(b, "targets", 1, 400), row(b, "root", 1, 3650)]
        );

        // An import reports the newest version of each role; its snapshot,
        // signed by an imported server key, is not reported.
        let imported = |role: &str, version: i64, data: Vec<u8>| ImportedFile {
            role: role.into(),
            version,
            sha256: sha256_hex(&data),
            data,
            created_at: day(-1000),
        };
        let outcome = store
            .import_repository(ImportedRepository {
                gun: c.into(),
                files: vec![
                    imported("root", 1, envelope("Root", 3000, "", "client")),
                    imported("targets", 1, delegating(3, &[])),
                    imported("targets", 2, delegating(30, &[])),
                    imported("snapshot", 2, envelope("Snapshot", 2, "", "c-snap")),
                    imported("timestamp", 2, envelope("Timestamp", 1, "", "c-ts")),
                ],
                changes: Vec::new(),
                keys: vec![ImportedKey {
                    key: key("c-snap", c, "snapshot"),
                    created_at: None,
                    last_used: Some(day(-1000)),
                }],
            })
            .await
            .unwrap();
        assert_eq!(outcome, ImportOutcome::Imported);
        assert_eq!(
            expiry_rows(store, 3001).await,
            vec![
                row(c, "targets", 2, 30),
                row(b, "targets", 1, 400),
                row(c, "root", 1, 3000)
            ]
        );
        store.delete(b, "tester").await.unwrap();
        store.delete(c, "tester").await.unwrap();
        assert_eq!(
            store.expiry_counts(&[day(100_000)]).await.unwrap(),
            ExpiryCounts {
                before: vec![0],
                soonest: None
            }
        );
    }

    /// `import_repository`: given IDs and times kept, all or nothing, a
    /// re-run writes nothing, other content conflicts, IDs continue after.
    pub(crate) async fn import_story<S: Store>(store: &S) {
        let gun = "example.com/imported";
        let at = time::macros::datetime!(2019-03-04 05:06:07.123 UTC);
        let imported_file = |role: &str, version: i64| {
            let data = format!("{role} v{version}").into_bytes();
            ImportedFile {
                role: role.into(),
                version,
                sha256: sha256_hex(&data),
                data,
                created_at: at,
            }
        };
        let change = |id: i64, gun: &str, version: i64, category| Change {
            id,
            created_at: at,
            gun: gun.into(),
            version,
            sha256: if category == ChangeCategory::Update {
                sha256_hex(format!("timestamp v{version}").as_bytes())
            } else {
                String::new()
            },
            category,
        };
        let repository = ImportedRepository {
            gun: gun.into(),
            files: vec![
                imported_file("root", 1),
                imported_file("targets", 1),
                imported_file("snapshot", 1),
                imported_file("timestamp", 1),
                imported_file("timestamp", 2),
            ],
            changes: vec![
                change(5, gun, 1, ChangeCategory::Update),
                change(9, gun, 2, ChangeCategory::Update),
            ],
            keys: vec![ImportedKey {
                key: key("imported-ts", gun, "timestamp"),
                created_at: Some(at),
                last_used: Some(at + time::Duration::days(1)),
            }],
        };
        assert_eq!(
            store.import_repository(repository.clone()).await.unwrap(),
            ImportOutcome::Imported
        );
        let v1 = store.get_version(gun, "timestamp", 1).await.unwrap();
        assert_eq!(v1.created_at, at);
        assert_eq!(v1.sha256, repository.files[3].sha256);
        assert_eq!(
            store.get_current(gun, "timestamp").await.unwrap().version,
            2
        );
        // The key keeps the times it had in the source.
        let key = store.get_key("imported-ts").await.unwrap();
        assert_eq!(key.created_at, at);
        assert_eq!(key.last_used, Some(at + time::Duration::days(1)));
        let ids: Vec<i64> = store
            .changes(None, 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, [5, 9]);
        assert_eq!(store.changes(None, 0, 100).await.unwrap()[0].created_at, at);

        // A re-run writes nothing.
        assert_eq!(
            store.import_repository(repository.clone()).await.unwrap(),
            ImportOutcome::AlreadyPresent
        );
        // Other content under the same GUN, or a taken changefeed ID, is
        // refused and writes nothing at all.
        let mut other = repository.clone();
        other.files[4] = imported_file("timestamp", 3);
        other
            .changes
            .push(change(12, gun, 3, ChangeCategory::Update));
        assert!(matches!(
            store.import_repository(other).await,
            Err(Error::ImportConflict { .. })
        ));
        let mut taken = ImportedRepository {
            gun: "example.com/gone".into(),
            changes: vec![
                change(11, "example.com/gone", 0, ChangeCategory::Deletion),
                change(9, "example.com/gone", 0, ChangeCategory::Deletion),
            ],
            ..ImportedRepository::default()
        };
        assert!(matches!(
            store.import_repository(taken.clone()).await,
            Err(Error::ImportConflict { .. })
        ));
        assert_eq!(store.changes(None, 0, 100).await.unwrap().len(), 2);
        taken.changes.pop();
        assert_eq!(
            store.import_repository(taken).await.unwrap(),
            ImportOutcome::Imported
        );

        // New records continue after the imported IDs.
        store
            .publish(
                "example.com/new",
                vec![file("root", 1), file("timestamp", 1)],
            )
            .await
            .unwrap();
        let last = store.changes(None, -1, -1).await.unwrap();
        assert!(last[0].id > 11, "{last:?}");
    }

    /// Walks every method of the API.
    pub(crate) async fn story<S: Store>(store: &S) {
        let gun = "example.com/team/app";
        store.ping().await.unwrap();

        // Empty.
        assert!(matches!(
            store.get_current(gun, "root").await,
            Err(Error::NotFound)
        ));
        assert!(store.latest_versions(gun).await.unwrap().is_empty());
        assert!(store.changes(None, 0, 100).await.unwrap().is_empty());
        assert_eq!(
            store.delete(gun, "alice").await.unwrap(),
            Deleted::default()
        );
        assert!(store.audit(gun, 10, None).await.unwrap().is_empty());

        // First publish.
        let v1 = vec![
            file("root", 1),
            file("targets", 1),
            file("snapshot", 1),
            file("timestamp", 1),
        ];
        store.publish(gun, v1.clone()).await.unwrap();
        let root = store.get_current(gun, "root").await.unwrap();
        assert_eq!((root.gun.as_str(), root.role.as_str()), (gun, "root"));
        assert_eq!(root.version, 1);
        assert_eq!(root.data, v1[0].data);
        assert_eq!(root.sha256, hex::encode(crate::tuf::sha256(&v1[0].data)));
        assert!(root.created_at.year() >= 2024);

        // By version and by checksum, scoped to (gun, role).
        let targets1 = store.get_version(gun, "targets", 1).await.unwrap();
        assert_eq!(targets1.data, v1[1].data);
        assert!(matches!(
            store.get_version(gun, "targets", 2).await,
            Err(Error::NotFound)
        ));
        let by_sum = store.get_checksum(gun, "root", &root.sha256).await.unwrap();
        assert_eq!(by_sum, root);
        let upper = root.sha256.to_ascii_uppercase();
        assert_eq!(store.get_checksum(gun, "root", &upper).await.unwrap(), root);
        assert!(matches!(
            store.get_checksum(gun, "targets", &root.sha256).await,
            Err(Error::NotFound)
        ));
        assert!(matches!(
            store.get_checksum("other/gun", "root", &root.sha256).await,
            Err(Error::NotFound)
        ));

        // A newer version; the old one stays addressable.
        store
            .publish(
                gun,
                vec![
                    file("targets", 2),
                    file("snapshot", 2),
                    file("timestamp", 2),
                ],
            )
            .await
            .unwrap();
        assert_eq!(store.get_current(gun, "targets").await.unwrap().version, 2);
        assert_eq!(
            store.get_version(gun, "targets", 1).await.unwrap(),
            targets1
        );
        // Located without the bytes: current, by version, by checksum.
        let current = store.get_current(gun, "targets").await.unwrap();
        let located = |version, sha256: &str| Located {
            version,
            sha256: sha256.to_string(),
        };
        assert_eq!(
            store.locate(gun, "targets", Which::Current).await.unwrap(),
            located(2, &current.sha256)
        );
        assert_eq!(
            store
                .locate(gun, "targets", Which::Version(1))
                .await
                .unwrap(),
            located(1, &targets1.sha256)
        );
        let upper = targets1.sha256.to_ascii_uppercase();
        assert_eq!(
            store
                .locate(gun, "targets", Which::Checksum(&upper))
                .await
                .unwrap(),
            located(1, &targets1.sha256)
        );
        for (g, r, which) in [
            (gun, "targets", Which::Version(3)),
            (gun, "root", Which::Checksum(&targets1.sha256)),
            ("other/gun", "targets", Which::Current),
        ] {
            assert!(matches!(
                store.locate(g, r, which).await,
                Err(Error::NotFound)
            ));
        }
        assert_eq!(
            store.latest_versions(gun).await.unwrap(),
            vec![
                ("root".to_string(), 1),
                ("snapshot".to_string(), 2),
                ("targets".to_string(), 2),
                ("timestamp".to_string(), 2),
            ]
        );

        // Stale uploads conflict and write nothing, not even the valid part.
        assert_conflict(
            store
                .publish(gun, vec![file("targets", 3), file("timestamp", 2)])
                .await,
            gun,
            "timestamp",
            2,
        );
        assert_conflict(
            store.publish(gun, vec![file("snapshot", 1)]).await,
            gun,
            "snapshot",
            1,
        );
        assert_eq!(store.get_current(gun, "targets").await.unwrap().version, 2);
        assert!(matches!(
            store.get_version(gun, "targets", 3).await,
            Err(Error::NotFound)
        ));

        // Neighbouring GUNs: a child, a longer name, a prefix.
        let neighbours = [
            "example.com/team/app/sub",
            "example.com/team/appx",
            "example.com/team/ap",
        ];
        for other in neighbours {
            store
                .publish(other, vec![file("root", 1), file("timestamp", 1)])
                .await
                .unwrap();
        }

        // Server keys (retired by a GUN delete, unlike Notary).
        store.put_key(key("k1", gun, "timestamp")).await.unwrap();
        store.put_key(key("k2", gun, "timestamp")).await.unwrap();
        store.put_key(key("k3", gun, "snapshot")).await.unwrap();
        assert!(matches!(
            store.put_key(key("k1", gun, "timestamp")).await,
            Err(Error::KeyExists { key_id }) if key_id == "k1"
        ));
        let held: Vec<String> = store
            .keys_for(gun, "timestamp")
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        assert_eq!(held, ["k2", "k1"]);
        assert!(store.keys_for(gun, "targets").await.unwrap().is_empty());
        let k1 = store.get_key("k1").await.unwrap();
        assert_eq!(k1.algorithm, "ecdsa");
        assert_eq!(k1.public, [1, 2, 3]);
        assert_eq!(k1.sealed_private, "sealed-k1");
        assert_eq!(k1.last_used, None);
        store.mark_key_used("k1").await.unwrap();
        assert!(store.get_key("k1").await.unwrap().last_used.is_some());
        assert!(matches!(
            store.mark_key_used("nope").await,
            Err(Error::NotFound)
        ));
        assert!(matches!(store.get_key("nope").await, Err(Error::NotFound)));

        // A neighbour's key is not retired with this GUN.
        store
            .put_key(key("n1", neighbours[0], "timestamp"))
            .await
            .unwrap();

        // Delete exactly this GUN: its metadata goes, its keys retire.
        let deleted = store.delete(gun, "alice").await.unwrap();
        assert_eq!(
            deleted.roles,
            [
                ("root", 1),
                ("snapshot", 2),
                ("targets", 2),
                ("timestamp", 2)
            ]
            .map(|(role, version)| RoleVersion {
                role: role.into(),
                version
            })
        );
        assert_eq!(deleted.retired_keys, ["k1", "k2", "k3"]);
        assert_eq!(
            store.delete(gun, "alice").await.unwrap(),
            Deleted::default()
        );
        assert!(store.keys_for(gun, "timestamp").await.unwrap().is_empty());
        assert!(store.keys_for(gun, "snapshot").await.unwrap().is_empty());
        let retired = store.get_key("k1").await.unwrap();
        assert!(retired.retired_at.is_some());
        assert!(retired.last_used.is_some());
        assert_eq!(
            store
                .keys_for(neighbours[0], "timestamp")
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(store.get_key("n1").await.unwrap().retired_at, None);
        assert_eq!(store.newest_key().await.unwrap().unwrap().key_id, "n1");
        assert!(store.latest_versions(gun).await.unwrap().is_empty());
        assert!(matches!(
            store.get_current(gun, "root").await,
            Err(Error::NotFound)
        ));
        for other in neighbours {
            assert_eq!(store.get_current(other, "root").await.unwrap().version, 1);
        }
        // A deleted GUN starts again from version 1.
        store.publish(gun, vec![file("root", 1)]).await.unwrap();

        // Changefeed: ts v1, ts v2, three neighbours, the deletion.
        let all = store.changes(None, 0, 100).await.unwrap();
        let summary: Vec<(&str, i64, ChangeCategory)> = all
            .iter()
            .map(|c| (c.gun.as_str(), c.version, c.category))
            .collect();
        assert_eq!(
            summary,
            [
                (gun, 1, ChangeCategory::Update),
                (gun, 2, ChangeCategory::Update),
                (neighbours[0], 1, ChangeCategory::Update),
                (neighbours[1], 1, ChangeCategory::Update),
                (neighbours[2], 1, ChangeCategory::Update),
                (gun, 0, ChangeCategory::Deletion),
            ]
        );
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(all[0].sha256, sha256_hex(&v1[3].data));
        assert_eq!(all[5].sha256, "");
        let ids: Vec<i64> = all.iter().map(|c| c.id).collect();
        let page_ids = |page: Vec<Change>| page.iter().map(|c| c.id).collect::<Vec<_>>();

        // Forward paging, exclusive of the cursor.
        assert_eq!(page_ids(store.changes(None, 0, 2).await.unwrap()), ids[..2]);
        assert_eq!(
            page_ids(store.changes(None, ids[1], 3).await.unwrap()),
            ids[2..5]
        );
        assert!(store.changes(None, ids[5], 10).await.unwrap().is_empty());
        assert!(store.changes(None, 0, 0).await.unwrap().is_empty());

        // Backwards: from the newest (-1), or before a cursor; oldest first.
        assert_eq!(
            page_ids(store.changes(None, -1, 2).await.unwrap()),
            ids[4..]
        );
        assert_eq!(
            page_ids(store.changes(None, -1, -2).await.unwrap()),
            ids[4..]
        );
        assert_eq!(
            page_ids(store.changes(None, 0, -2).await.unwrap()),
            ids[4..]
        );
        assert_eq!(
            page_ids(store.changes(None, ids[3], -2).await.unwrap()),
            ids[1..3]
        );
        assert_eq!(
            page_ids(store.changes(None, ids[1], -10).await.unwrap()),
            ids[..1]
        );

        // Per-GUN feed filters exactly.
        let mine = store.changes(Some(gun), 0, 100).await.unwrap();
        assert_eq!(page_ids(mine), [ids[0], ids[1], ids[5]]);
        let newest_mine = store.changes(Some(gun), -1, 1).await.unwrap();
        assert_eq!(page_ids(newest_mine), [ids[5]]);
        assert!(
            store
                .changes(Some("example.com/team"), 0, 100)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// The audit trail and the KEK parameters.
    pub(crate) async fn audit_story<S: Store>(store: &S) {
        let gun = "example.com/audited";
        // Timestamp refreshes (no subject) are not audited.
        store
            .publish(gun, vec![file("timestamp", 1)])
            .await
            .unwrap();
        assert!(store.audit(gun, 10, None).await.unwrap().is_empty());
        store
            .publish_as(
                gun,
                vec![file("root", 1), file("targets", 1)],
                Some("alice"),
                &[],
            )
            .await
            .unwrap();
        // A refused publish records nothing.
        assert!(matches!(
            store
                .publish_as(gun, vec![file("targets", 1)], Some("mallory"), &[])
                .await,
            Err(Error::Conflict { .. })
        ));
        store
            .record_audit(NewAuditEntry {
                gun: gun.into(),
                action: AuditAction::RotateKey,
                subject: "bob".into(),
                roles: vec![RoleVersion {
                    role: "snapshot".into(),
                    version: 0,
                }],
                key_ids: vec!["k9".into()],
            })
            .await
            .unwrap();
        store.put_key(key("a1", gun, "timestamp")).await.unwrap();
        // First uses are recorded with the publish, and only if it stores.
        let used = ["a1".to_string()];
        assert!(matches!(
            store
                .publish_as(gun, vec![file("targets", 1)], None, &used)
                .await,
            Err(Error::Conflict { .. })
        ));
        assert_eq!(store.get_key("a1").await.unwrap().last_used, None);
        store
            .publish_as(gun, vec![file("timestamp", 2)], None, &used)
            .await
            .unwrap();
        assert!(store.get_key("a1").await.unwrap().last_used.is_some());
        store.delete(gun, "carol").await.unwrap();
        // Another GUN's records stay apart.
        store
            .publish_as(
                "example.com/other",
                vec![file("root", 1)],
                Some("dave"),
                &[],
            )
            .await
            .unwrap();

        let all = store.audit(gun, 10, None).await.unwrap();
        let summary: Vec<(AuditAction, &str)> =
            all.iter().map(|e| (e.action, e.subject.as_str())).collect();
        assert_eq!(
            summary,
            [
                (AuditAction::Delete, "carol"),
                (AuditAction::RotateKey, "bob"),
                (AuditAction::Publish, "alice"),
            ]
        );
        assert!(all.windows(2).all(|w| w[0].id > w[1].id));
        assert_eq!(
            all[2].roles,
            [("root", 1), ("targets", 1)].map(|(role, version)| RoleVersion {
                role: role.into(),
                version
            })
        );
        assert_eq!(all[0].key_ids, ["a1"]);
        assert_eq!(all[0].roles.len(), 3);
        assert_eq!(all[1].key_ids, ["k9"]);
        assert!(all.iter().all(|e| e.gun == gun));
        // Paging: newest first, then older than a cursor.
        let first = store.audit(gun, 1, None).await.unwrap();
        assert_eq!(first, all[..1]);
        let next = store.audit(gun, 5, Some(first[0].id)).await.unwrap();
        assert_eq!(next, all[1..]);
        assert_eq!(store.audit(gun, 0, None).await.unwrap().len(), 1);
        let json = serde_json::to_value(&all[1]).unwrap();
        assert_eq!(json["action"], "rotate_key");
        assert!(json["created_at"].as_str().unwrap().ends_with('Z'));

        // KEK parameters: the first writer wins unless replacing.
        assert_eq!(store.kek_params().await.unwrap(), None);
        let params = |salt: u8| KekParams {
            salt: vec![salt; 16],
            iterations: 1000,
            check_value: format!("check-{salt}"),
        };
        assert_eq!(
            store.put_kek_params(params(1), false).await.unwrap(),
            params(1)
        );
        assert_eq!(
            store.put_kek_params(params(2), false).await.unwrap(),
            params(1)
        );
        assert_eq!(store.kek_params().await.unwrap(), Some(params(1)));
        assert_eq!(
            store.put_kek_params(params(3), true).await.unwrap(),
            params(3)
        );
    }

    /// Several servers creating "the" key of one role at once all get one
    /// key; a skipped, used or other-algorithm key does not count.
    pub(crate) async fn key_once<S: Store>(first: Arc<S>, second: Arc<S>) {
        let gun = "example.com/once";
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = Arc::clone(if i % 2 == 0 { &first } else { &second });
            tasks.push(tokio::spawn(async move {
                store
                    .put_key_once(key(&format!("c{i}"), gun, "timestamp"), &[])
                    .await
                    .unwrap()
                    .key_id
            }));
        }
        let mut kept = Vec::new();
        for task in tasks {
            kept.push(task.await.unwrap());
        }
        assert!(kept.iter().all(|id| *id == kept[0]), "{kept:?}");
        assert_eq!(first.keys_for(gun, "timestamp").await.unwrap().len(), 1);
        let stored = second.get_key(&kept[0]).await.unwrap();
        assert_eq!(stored.sealed_private, format!("sealed-{}", kept[0]));

        // Skipped (signed, use not yet recorded): a new key is stored.
        let skipped = first
            .put_key_once(key("s1", gun, "timestamp"), std::slice::from_ref(&kept[0]))
            .await
            .unwrap();
        assert_eq!(skipped.key_id, "s1");
        // Both used: a new key again.
        first.mark_key_used(&kept[0]).await.unwrap();
        first.mark_key_used("s1").await.unwrap();
        let fresh = second
            .put_key_once(key("s2", gun, "timestamp"), &[])
            .await
            .unwrap();
        assert_eq!(fresh.key_id, "s2");
        // Another algorithm's unused key is not handed out for this one.
        let mut ed = key("e1", gun, "timestamp");
        ed.algorithm = "ed25519".into();
        assert_eq!(first.put_key_once(ed, &[]).await.unwrap().key_id, "e1");
        assert_eq!(
            first
                .put_key_once(key("s3", gun, "timestamp"), &[])
                .await
                .unwrap()
                .key_id,
            "s2"
        );
        // Another role is separate.
        assert_eq!(
            first
                .put_key_once(key("n1", gun, "snapshot"), &[])
                .await
                .unwrap()
                .key_id,
            "n1"
        );
    }

    /// Two publishers of the same next version: exactly one wins, and the
    /// loser leaves nothing behind.
    pub(crate) async fn race<S: Store>(first: Arc<S>, second: Arc<S>, gun: &str, rounds: i64) {
        first
            .publish(gun, vec![file("snapshot", 1), file("timestamp", 1)])
            .await
            .unwrap();
        for round in 0..rounds {
            let version = round + 2;
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let racer = |store: Arc<S>, who: &'static str| {
                let barrier = Arc::clone(&barrier);
                let gun = gun.to_string();
                let files = ["snapshot", "timestamp"]
                    .map(|role| {
                        NewFile::new(role, version, format!("{role} v{version} by {who}").into())
                    })
                    .to_vec();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.publish(&gun, files).await
                })
            };
            let a = racer(Arc::clone(&first), "a");
            let b = racer(Arc::clone(&second), "b");
            let (a, b) = (a.await.unwrap(), b.await.unwrap());
            let winner = match (&a, &b) {
                (Ok(()), Err(Error::Conflict { version: v, .. })) if *v == version => "a",
                (Err(Error::Conflict { version: v, .. }), Ok(())) if *v == version => "b",
                other => panic!("round {round}: expected one Ok and one Conflict, got {other:?}"),
            };
            for role in ["snapshot", "timestamp"] {
                let stored = first.get_current(gun, role).await.unwrap();
                assert_eq!(stored.version, version);
                assert_eq!(
                    stored.data,
                    format!("{role} v{version} by {winner}").into_bytes()
                );
            }
        }
        // One changefeed row per stored timestamp, none for the losers.
        let feed = first.changes(Some(gun), 0, 1000).await.unwrap();
        let versions: Vec<i64> = feed.iter().map(|c| c.version).collect();
        assert_eq!(versions, (1..=rounds + 1).collect::<Vec<_>>());
    }
}
