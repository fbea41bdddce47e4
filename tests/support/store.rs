//! The store in-process tests build their repository on: SQLite or
//! PostgreSQL as `NOTARIUM_TEST_STORAGE` says ([`super::backend`]), behind
//! one type so that a test's fixture names one `Repo<TestStore>` either way.
//!
//! Included by `tests/common/mod.rs` (it uses the shared PostgreSQL there).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use notarium::signer::{KeyService, Passphrase};
use notarium::store::{
    AuditEntry, Change, Deleted, ExpiryCounts, ImportOutcome, ImportedRepository, KekParams,
    Located, NewAuditEntry, NewFile, NewKey, PoolSettings, PoolStats, PostgresStore, Result,
    RoleExpiry, SqliteStore, Store, StoredFile, StoredKey, Which,
};
use notarium::tuf::KeyAlgorithm;
use time::OffsetDateTime;

use super::postgres::{PASSWORD, PgServer};
use super::{Backend, backend};

/// One of the two backends, chosen at run time; every call goes to it.
pub enum TestStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// A fresh store for one test: a SQLite file in `dir`, or a new, migrated
/// database of this binary's shared PostgreSQL.
pub async fn open(dir: &Path) -> TestStore {
    match backend() {
        Backend::Sqlite => TestStore::Sqlite(
            SqliteStore::open(&dir.join("db.sqlite").to_string_lossy())
                .await
                .unwrap(),
        ),
        Backend::Postgres => {
            let server = PgServer::shared();
            let options = server
                .url(&server.database())
                .parse::<sqlx::postgres::PgConnectOptions>()
                .unwrap()
                .password(PASSWORD);
            let store = PostgresStore::connect_lazy(options, PoolSettings::default());
            store.migrate().await.unwrap();
            TestStore::Postgres(store)
        }
    }
}

/// A fresh store (see [`open`]) and a key service over it, sealing keys
/// with a cheap key derivation (tests only): the setup every in-process
/// repository test starts from.
pub async fn temp_store(dir: &Path) -> (Arc<TestStore>, KeyService<TestStore>) {
    let store = Arc::new(open(dir).await);
    let keys = KeyService::new(
        store.clone(),
        Passphrase::new("test"),
        KeyAlgorithm::EcdsaP256,
    )
    .with_pbkdf2_iterations(1000)
    .unwrap();
    (store, keys)
}

/// `$call` on whichever backend `$store` holds.
macro_rules! each {
    ($store:expr, $inner:ident => $call:expr) => {
        match $store {
            TestStore::Sqlite($inner) => $call,
            TestStore::Postgres($inner) => $call,
        }
    };
}

impl Store for TestStore {
    fn shared(&self) -> bool {
        each!(self, s => s.shared())
    }

    async fn locate(&self, gun: &str, role: &str, which: Which<'_>) -> Result<Located> {
        each!(self, s => s.locate(gun, role, which).await)
    }

    async fn get_current(&self, gun: &str, role: &str) -> Result<StoredFile> {
        each!(self, s => s.get_current(gun, role).await)
    }

    async fn get_version(&self, gun: &str, role: &str, version: i64) -> Result<StoredFile> {
        each!(self, s => s.get_version(gun, role, version).await)
    }

    async fn get_checksum(&self, gun: &str, role: &str, sha256_hex: &str) -> Result<StoredFile> {
        each!(self, s => s.get_checksum(gun, role, sha256_hex).await)
    }

    async fn latest_versions(&self, gun: &str) -> Result<Vec<(String, i64)>> {
        each!(self, s => s.latest_versions(gun).await)
    }

    async fn publish(&self, gun: &str, files: Vec<NewFile>) -> Result<()> {
        each!(self, s => s.publish(gun, files).await)
    }

    async fn publish_as(
        &self,
        gun: &str,
        files: Vec<NewFile>,
        subject: Option<&str>,
        used_keys: &[String],
    ) -> Result<()> {
        each!(self, s => s.publish_as(gun, files, subject, used_keys).await)
    }

    async fn delete(&self, gun: &str, subject: &str) -> Result<Deleted> {
        each!(self, s => s.delete(gun, subject).await)
    }

    async fn record_audit(&self, entry: NewAuditEntry) -> Result<()> {
        each!(self, s => s.record_audit(entry).await)
    }

    async fn audit(&self, gun: &str, limit: i64, before: Option<i64>) -> Result<Vec<AuditEntry>> {
        each!(self, s => s.audit(gun, limit, before).await)
    }

    async fn changes(
        &self,
        gun: Option<&str>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>> {
        each!(self, s => s.changes(gun, change_id, records).await)
    }

    async fn import_repository(&self, repository: ImportedRepository) -> Result<ImportOutcome> {
        each!(self, s => s.import_repository(repository).await)
    }

    async fn ping(&self) -> Result<()> {
        each!(self, s => s.ping().await)
    }

    fn pool_stats(&self) -> PoolStats {
        each!(self, s => s.pool_stats())
    }

    async fn put_key(&self, key: NewKey) -> Result<()> {
        each!(self, s => s.put_key(key).await)
    }

    async fn put_key_once(&self, key: NewKey, skip: &[String]) -> Result<StoredKey> {
        each!(self, s => s.put_key_once(key, skip).await)
    }

    async fn get_key(&self, key_id: &str) -> Result<StoredKey> {
        each!(self, s => s.get_key(key_id).await)
    }

    async fn keys_for(&self, gun: &str, role: &str) -> Result<Vec<StoredKey>> {
        each!(self, s => s.keys_for(gun, role).await)
    }

    async fn newest_key(&self) -> Result<Option<StoredKey>> {
        each!(self, s => s.newest_key().await)
    }

    async fn kek_params(&self) -> Result<Option<KekParams>> {
        each!(self, s => s.kek_params().await)
    }

    async fn put_kek_params(&self, params: KekParams, replace: bool) -> Result<KekParams> {
        each!(self, s => s.put_kek_params(params, replace).await)
    }

    async fn mark_key_used(&self, key_id: &str) -> Result<()> {
        each!(self, s => s.mark_key_used(key_id).await)
    }

    async fn set_immutable(&self, gun: &str, immutable: bool) -> Result<bool> {
        each!(self, s => s.set_immutable(gun, immutable).await)
    }

    async fn is_immutable(&self, gun: &str) -> Result<bool> {
        each!(self, s => s.is_immutable(gun).await)
    }

    async fn immutable_repositories(&self) -> Result<Vec<String>> {
        each!(self, s => s.immutable_repositories().await)
    }

    async fn expiry_counts(&self, cutoffs: &[OffsetDateTime]) -> Result<ExpiryCounts> {
        each!(self, s => s.expiry_counts(cutoffs).await)
    }

    async fn expiring(&self, before: OffsetDateTime) -> Result<Vec<RoleExpiry>> {
        each!(self, s => s.expiring(before).await)
    }
}
