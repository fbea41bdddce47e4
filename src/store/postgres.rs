//! PostgreSQL backend, for any number of server processes (replicas) on one
//! database. Nothing here assumes it is the only writer: every
//! read-check-write runs in one transaction under a transaction-scoped
//! advisory lock, so the database, not the process, decides races.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use time::OffsetDateTime;

use super::expiry::{ExpiryChanges, ExpiryCounts, RoleExpiry};
use super::shared::{
    Bind, ChangePage, ImportWrites, Records, StoredTimes, audit_from_row, audit_limit,
    change_from_row, conflict, decode_all, expiry_from_row, file_from_row, finish,
    from_unix_seconds, import, is_unique_violation, kek_from_row, key_exists, key_from_row,
    located_from_row, pool_stats, publish_audit, record_delete, role_version_from_row,
};
use super::{
    AuditEntry, Change, ChangeCategory, Deleted, Error, ImportOutcome, ImportedFile, ImportedKey,
    ImportedRepository, KekParams, Located, NewAuditEntry, NewFile, NewKey, PoolStats, Result,
    Store, StoredFile, StoredKey, TIMESTAMP_ROLE, Which, sha256_hex,
};

/// The embedded migrations. Migrations applied by a newer notarium are
/// ignored rather than refused: during a rolling upgrade the first new
/// replica migrates forward (migrations only add), and the old replicas must
/// still start until they are replaced.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("migrations/postgres");
    migrator.set_ignore_missing(true);
    migrator
}

/// Advisory lock namespaces (the first key of `pg_advisory_xact_lock(int,
/// int)`); the second key is a hash of the locked name. A hash collision only
/// serialises two unrelated writers, it never lets two related ones overlap.
const LOCK_GUN: i32 = 0x6e74_0001;
const LOCK_CHANGEFEED: i32 = 0x6e74_0002;
const LOCK_KEY_CREATION: i32 = 0x6e74_0003;

/// Pool and session bounds (storage.* in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections per process; N replicas open up to N times this many.
    pub max_connections: u32,
    /// How long a query waits for a connection (or for a new one to be
    /// established) before failing with [`Error::Unavailable`]: with the
    /// database down, requests fail after this rather than hang.
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout` for every session.
    pub statement_timeout: Duration,
    /// PostgreSQL `lock_timeout` for every session (row and advisory locks).
    pub lock_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
        }
    }
}

/// PostgreSQL-backed [`Store`]. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// When a connection was last found dead (see [`LostConnections`]).
    lost: std::sync::Arc<LostConnections>,
    /// The connection options without the session timeouts, for `migrate`.
    /// Shared: the options are large and the store is cloned freely.
    migrate_options: std::sync::Arc<PgConnectOptions>,
    acquire_timeout: Duration,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A pool over `options` (already holding the password and TLS files);
    /// connects lazily, so a server can start while the database is down
    /// and recover when it comes up. Does not run migrations.
    pub fn connect_lazy(options: PgConnectOptions, settings: PoolSettings) -> Self {
        let session = [
            ("statement_timeout", millis(settings.statement_timeout)),
            ("lock_timeout", millis(settings.lock_timeout)),
        ];
        let migrate_options = std::sync::Arc::new(options.clone());
        let options = options.options(session);
        let lost = std::sync::Arc::new(LostConnections::new());
        let check = lost.clone();
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // Pinging every connection before use would cost each query a
            // second round trip. Only connections idle since before the
            // last lost connection (a database restart breaks them all) are
            // pinged, and the dead ones are replaced.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let suspect = check.idle_since_before_loss(meta.idle_for);
                Box::pin(async move {
                    if suspect {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Self {
            pool,
            lost,
            migrate_options,
            acquire_timeout: settings.acquire_timeout,
        }
    }

    /// Runs the embedded migrations. sqlx holds a PostgreSQL advisory lock
    /// while it migrates, so replicas starting together take turns and all
    /// but the first find nothing to do.
    ///
    /// Runs on a connection of its own without the session timeouts: a
    /// replica waiting for another's migration, or a long index build, must
    /// not fail at `lock_timeout` or `statement_timeout`.
    pub async fn migrate(&self) -> Result<()> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.acquire_timeout)
            .connect_with((*self.migrate_options).clone())
            .await?;
        let applied = migrator().run(&pool).await;
        pool.close().await;
        applied?;
        self.backfill_expiry().await
    }

    /// Fills the expiry table from the files stored before it existed
    /// (the migration leaves a marker row; this removes it when done). One
    /// transaction per GUN under the GUN's lock, as a publish takes it, so a
    /// publish or delete meanwhile is never overwritten with older data.
    /// Replicas migrating at once may both fill: the rows come out the same.
    async fn backfill_expiry(&self) -> Result<()> {
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM role_expiry_backfill")
            .fetch_one(&self.pool)
            .await?;
        if pending == 0 {
            return Ok(());
        }
        let guns: Vec<String> = sqlx::query_scalar("SELECT DISTINCT gun FROM tuf_files")
            .fetch_all(&self.pool)
            .await?;
        for gun in guns {
            let mut tx = self.begin().await?;
            let outcome = async {
                lock(&mut tx, LOCK_GUN, &gun).await?;
                let changes = repository_expiry(&mut tx, &gun).await?;
                apply_expiry(&mut tx, &gun, &changes).await
            }
            .await;
            finish(tx, outcome).await?;
        }
        sqlx::query("DELETE FROM role_expiry_backfill")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Versions of this binary's migrations not yet applied to the database
    /// (all of them for an empty database).
    pub async fn pending_migrations(&self) -> Result<Vec<i64>> {
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::TEXT")
                .fetch_one(&self.pool)
                .await?;
        let applied: Vec<i64> = if table.is_some() {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        Ok(migrator()
            .iter()
            .map(|m| m.version)
            .filter(|version| !applied.contains(version))
            .collect())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction. A pooled connection the database dropped
    /// fails at BEGIN, before anything is written, so that one is retried
    /// (on a connection checked or opened afresh).
    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        match self.pool.begin().await {
            Err(err) if self.lost.noted(&err) => Ok(self
                .pool
                .begin()
                .await
                .inspect_err(|err| _ = self.lost.noted(err))?),
            begun => Ok(begun?),
        }
    }

    /// Runs the read `query` (on the pool), once more if it met a
    /// connection the database had dropped: a read is safe to repeat, and
    /// without the retry the first request after a database restart would
    /// fail on the stale connection.
    async fn read<'a, T, F>(&'a self, query: impl Fn(&'a PgPool) -> F) -> Result<T, sqlx::Error>
    where
        F: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        match query(&self.pool).await {
            Err(err) if self.lost.noted(&err) => query(&self.pool)
                .await
                .inspect_err(|err| _ = self.lost.noted(err)),
            done => done,
        }
    }

    /// Notes a failure of a write outside [`Self::begin`]: not retried (it
    /// may have committed), but it marks the pool's idle connections for a
    /// check.
    fn wrote<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        result.inspect_err(|err| _ = self.lost.noted(err))
    }
}

/// The time a connection was last found dead, so that the pool checks the
/// connections idle since before then instead of all of them always.
#[derive(Debug)]
struct LostConnections {
    start: std::time::Instant,
    /// Microseconds after `start`; 0: never.
    at: std::sync::atomic::AtomicU64,
}

impl LostConnections {
    fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            at: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether `err` says the connection is gone (then noted): the socket
    /// failed, or the server ended the session (shutdown, restart).
    fn noted(&self, err: &sqlx::Error) -> bool {
        let lost = match err {
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
            }),
            _ => false,
        };
        if lost {
            self.at
                .fetch_max(self.now(), std::sync::atomic::Ordering::Relaxed);
        }
        lost
    }

    /// Whether a connection idle for `idle_for` went idle no later than the
    /// last loss (and may have been broken by it).
    fn idle_since_before_loss(&self, idle_for: Duration) -> bool {
        let at = self.at.load(std::sync::atomic::Ordering::Relaxed);
        if at == 0 {
            return false;
        }
        let idle_for = u64::try_from(idle_for.as_micros()).unwrap_or(u64::MAX);
        self.now().saturating_sub(idle_for) <= at
    }
}

fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// Waits for the transaction-scoped advisory lock `(space, hash(name))`;
/// released at commit or rollback.
async fn lock(tx: &mut Transaction<'_, Postgres>, space: i32, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(space)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// TIMESTAMPTZ columns are selected as microseconds since the epoch (see
/// `KEY_COLUMNS`), so no date-time crate feature of sqlx is needed.
impl StoredTimes for Postgres {
    fn time(row: &PgRow, column: &str) -> Result<OffsetDateTime, sqlx::Error> {
        at(row.try_get(column)?)
    }

    fn optional_time(row: &PgRow, column: &str) -> Result<Option<OffsetDateTime>, sqlx::Error> {
        let micros: Option<i64> = row.try_get(column)?;
        micros.map(at).transpose()
    }
}

fn at(micros: i64) -> Result<OffsetDateTime, sqlx::Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

async fn insert_audit<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    entry: &NewAuditEntry,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (gun, action, subject, roles, key_ids) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind_audit(entry)?
    .execute(executor)
    .await?;
    Ok(())
}

// Times leave the database as microseconds since the epoch (see
// `StoredTimes for Postgres`), so no date-time crate feature of sqlx is needed.
const KEY_COLUMNS: &str = "key_id, gun, role, algorithm, public, sealed_private, \
     (extract(epoch FROM created_at) * 1000000)::BIGINT AS created_at, \
     (extract(epoch FROM last_used) * 1000000)::BIGINT AS last_used, \
     (extract(epoch FROM retired_at) * 1000000)::BIGINT AS retired_at";

const FILE_COLUMNS: &str = "gun, role, version, sha256, data, \
     (extract(epoch FROM created_at) * 1000000)::BIGINT AS created_at";

const CHANGE_COLUMNS: &str = "id, gun, version, sha256, category, \
     (extract(epoch FROM created_at) * 1000000)::BIGINT AS created_at";

/// The checks and inserts of one publish (its roles distinct), inside its
/// transaction, which holds the GUN's lock: the version check and the insert
/// see one state. One statement for all files: each is inserted only if it
/// is newer than every stored version of its role; the roles it returns are
/// those inserted, and any other is the conflict. Returns the timestamps'
/// (version, sha256), for the changefeed.
async fn insert_files(
    tx: &mut Transaction<'_, Postgres>,
    gun: &str,
    files: &[NewFile],
) -> Result<Vec<(i64, String)>> {
    // Timestamps last, as the conflict to report is the first in this order.
    let mut files: Vec<&NewFile> = files.iter().collect();
    files.sort_by_key(|file| file.role == TIMESTAMP_ROLE);
    let conflict = |file: &NewFile| conflict(gun, file);
    // The statement does not see its own rows: a role given twice must
    // still grow from one file to the next, as if inserted one by one.
    for (i, file) in files.iter().enumerate() {
        if files[..i]
            .iter()
            .any(|earlier| earlier.role == file.role && earlier.version >= file.version)
        {
            return Err(conflict(file));
        }
    }
    let roles: Vec<&str> = files.iter().map(|file| file.role.as_str()).collect();
    let versions: Vec<i64> = files.iter().map(|file| file.version).collect();
    let sums: Vec<String> = files.iter().map(|file| sha256_hex(&file.data)).collect();
    let data: Vec<&[u8]> = files.iter().map(|file| file.data.as_slice()).collect();
    let inserted: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO tuf_files (gun, role, version, sha256, data) \
         SELECT $1, f.role, f.version, f.sha256, f.data \
         FROM unnest($2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::BYTEA[]) \
           AS f(role, version, sha256, data) \
         WHERE NOT EXISTS (SELECT 1 FROM tuf_files t \
           WHERE t.gun = $1 AND t.role = f.role AND t.version >= f.version) \
         RETURNING role, version",
    )
    .bind(gun)
    .bind(&roles)
    .bind(&versions)
    .bind(&sums)
    .bind(&data)
    .fetch_all(&mut **tx)
    .await
    .map_err(|err| match files.first() {
        // UNIQUE (gun, role, version) is the second guard.
        Some(file) if is_unique_violation(&err) => conflict(file),
        _ => err.into(),
    })?;
    if let Some(file) = files
        .iter()
        .find(|file| !inserted.contains(&(file.role.clone(), file.version)))
    {
        return Err(conflict(file));
    }
    Ok(files
        .iter()
        .zip(sums)
        .filter(|(file, _)| file.role == TIMESTAMP_ROLE)
        .map(|(file, sha256)| (file.version, sha256))
        .collect())
}

/// The expiry rows of `gun` from its stored files: the current version of
/// each role except the timestamp (server-signed whatever it says).
async fn repository_expiry(tx: &mut Transaction<'_, Postgres>, gun: &str) -> Result<ExpiryChanges> {
    let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT DISTINCT ON (role) role, version, data FROM tuf_files \
         WHERE gun = $1 AND role <> 'timestamp' ORDER BY role, version DESC",
    )
    .bind(gun)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ExpiryChanges::of_stored(&rows, server_keys(tx, gun).await?))
}

/// The IDs of the server keys of `gun`, retired or not.
async fn server_keys(tx: &mut Transaction<'_, Postgres>, gun: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT key_id FROM server_keys WHERE gun = $1")
            .bind(gun)
            .fetch_all(&mut **tx)
            .await?,
    )
}

/// Writes the expiry rows a write of `gun` implies, inside its transaction
/// (which holds the GUN's lock).
async fn apply_expiry(
    tx: &mut Transaction<'_, Postgres>,
    gun: &str,
    changes: &ExpiryChanges,
) -> Result<()> {
    if !changes.upsert.is_empty() {
        // One statement may not upsert a row twice: of a role given twice,
        // the row the upserts one by one would leave.
        let mut newest: std::collections::BTreeMap<&str, (i64, i64)> = Default::default();
        for (role, version, expires) in &changes.upsert {
            let entry = newest.entry(role).or_insert((*version, *expires));
            if *version >= entry.0 {
                *entry = (*version, *expires);
            }
        }
        let roles: Vec<&str> = newest.keys().copied().collect();
        let versions: Vec<i64> = newest.values().map(|(version, _)| *version).collect();
        let expires: Vec<i64> = newest.values().map(|(_, expires)| *expires).collect();
        sqlx::query(
            "INSERT INTO role_expiry (gun, role, version, expires) \
             SELECT $1, * FROM unnest($2::TEXT[], $3::BIGINT[], $4::BIGINT[]) \
             ON CONFLICT (gun, role) DO UPDATE SET version = excluded.version, \
             expires = excluded.expires WHERE excluded.version >= role_expiry.version",
        )
        .bind(gun)
        .bind(&roles)
        .bind(&versions)
        .bind(&expires)
        .execute(&mut **tx)
        .await?;
    }
    // Only removals need the roles held now.
    if changes.remove.is_empty() && changes.delegators.is_empty() {
        return Ok(());
    }
    let held: Vec<String> = sqlx::query_scalar("SELECT role FROM role_expiry WHERE gun = $1")
        .bind(gun)
        .fetch_all(&mut **tx)
        .await?;
    let stale = changes.stale(held.iter().map(String::as_str));
    if !stale.is_empty() {
        sqlx::query("DELETE FROM role_expiry WHERE gun = $1 AND role = ANY($2)")
            .bind(gun)
            .bind(&stale)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Microseconds since the epoch, the form times are bound in.
fn to_micros(at: OffsetDateTime) -> Result<i64> {
    i64::try_from(at.unix_timestamp_nanos() / 1000)
        .map_err(|err| Error::Backend(sqlx::Error::Encode(Box::new(err))))
}

impl Records for Transaction<'_, Postgres> {
    /// Appends a changefeed record. Identity values are handed out at insert,
    /// not at commit, so two concurrent transactions could commit IDs out of
    /// order and a reader paging past the higher one would never see the lower.
    /// Holding one lock from here to commit makes ID order commit order; the
    /// lock is taken in the same statement (in a CTE, evaluated before the row
    /// and so before its ID), one round trip for both. Call it last before the
    /// commit, so the lock is held briefly.
    async fn insert_change(
        &mut self,
        gun: &str,
        version: i64,
        sha256: &str,
        category: ChangeCategory,
    ) -> Result<()> {
        sqlx::query(
            "WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock($5, hashtext($6))) \
             INSERT INTO changefeed (gun, version, sha256, category) \
             SELECT $1, $2, $3, $4 FROM locked",
        )
        .bind_change(gun, version, sha256, category)
        .bind(LOCK_CHANGEFEED)
        .bind("")
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn insert_audit(&mut self, entry: &NewAuditEntry) -> Result<()> {
        insert_audit(&mut **self, entry).await
    }
}

/// An import's statements. The import holds the GUN's lock (taken before
/// [`import`]) and, for its changefeed records, the changefeed's, which keeps
/// ID order commit order (see `insert_change`).
impl ImportWrites for Transaction<'_, Postgres> {
    async fn count_files(&mut self, gun: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM tuf_files WHERE gun = $1")
                .bind(gun)
                .fetch_one(&mut **self)
                .await?,
        )
    }

    async fn file_checksum(
        &mut self,
        gun: &str,
        role: &str,
        version: i64,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT sha256 FROM tuf_files WHERE gun = $1 AND role = $2 AND version = $3",
        )
        .bind(gun)
        .bind(role)
        .bind(version)
        .fetch_optional(&mut **self)
        .await?)
    }

    async fn insert_file(&mut self, gun: &str, file: &ImportedFile) -> Result<()> {
        sqlx::query(
            "INSERT INTO tuf_files (gun, role, version, sha256, data, created_at) \
             VALUES ($1, $2, $3, $4, $5, TIMESTAMPTZ 'epoch' + $6 * INTERVAL '1 microsecond')",
        )
        .bind_file(gun, &file.role, file.version, &file.sha256, &file.data)
        .bind(to_micros(file.created_at)?)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn lock_changefeed(&mut self) -> Result<()> {
        lock(self, LOCK_CHANGEFEED, "").await
    }

    async fn stored_change(&mut self, id: i64) -> Result<Option<Change>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHANGE_COLUMNS} FROM changefeed WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut **self)
        .await?;
        Ok(row.as_ref().map(change_from_row).transpose()?)
    }

    async fn insert_imported_change(&mut self, change: &Change) -> Result<()> {
        sqlx::query(
            "INSERT INTO changefeed (id, gun, version, sha256, category, created_at) \
             OVERRIDING SYSTEM VALUE VALUES \
             ($1, $2, $3, $4, $5, TIMESTAMPTZ 'epoch' + $6 * INTERVAL '1 microsecond')",
        )
        .bind(change.id)
        .bind_change(&change.gun, change.version, &change.sha256, change.category)
        .bind(to_micros(change.created_at)?)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    // Explicit IDs do not move the identity sequence: move it past them.
    async fn continue_changefeed(&mut self) -> Result<()> {
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('changefeed', 'id'), \
             GREATEST((SELECT MAX(id) FROM changefeed), \
             (SELECT last_value FROM changefeed_id_seq)))",
        )
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn stored_key(&mut self, key_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        Ok(
            sqlx::query_as("SELECT gun, public FROM server_keys WHERE key_id = $1")
                .bind(key_id)
                .fetch_optional(&mut **self)
                .await?,
        )
    }

    async fn insert_key(&mut self, imported: &ImportedKey) -> Result<()> {
        let key = &imported.key;
        insert_key(&mut **self, key).await?;
        // The times it had in notary-signer, not the import's.
        let created_at = imported.created_at.map(to_micros).transpose()?;
        let last_used = imported.last_used.map(to_micros).transpose()?;
        sqlx::query(
            "UPDATE server_keys SET \
             created_at = COALESCE(TIMESTAMPTZ 'epoch' + $2 * INTERVAL '1 microsecond', \
             created_at), \
             last_used = TIMESTAMPTZ 'epoch' + $3 * INTERVAL '1 microsecond' \
             WHERE key_id = $1",
        )
        .bind(&key.key_id)
        .bind(created_at)
        .bind(last_used)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn server_keys(&mut self, gun: &str) -> Result<Vec<String>> {
        server_keys(self, gun).await
    }

    async fn apply_expiry(&mut self, gun: &str, changes: &ExpiryChanges) -> Result<()> {
        apply_expiry(self, gun, changes).await
    }
}

impl PostgresStore {
    async fn publish_in(
        tx: &mut Transaction<'_, Postgres>,
        gun: &str,
        files: &[NewFile],
        subject: Option<&str>,
        used_keys: &[String],
    ) -> Result<()> {
        lock(tx, LOCK_GUN, gun).await?;
        let timestamps = insert_files(tx, gun, files).await?;
        apply_expiry(tx, gun, &ExpiryChanges::of_publish(files)).await?;
        if !used_keys.is_empty() {
            sqlx::query(
                "UPDATE server_keys SET last_used = clock_timestamp() \
                 WHERE key_id = ANY($1) AND last_used IS NULL",
            )
            .bind(used_keys)
            .execute(&mut **tx)
            .await?;
        }
        if let Some(subject) = subject {
            insert_audit(&mut **tx, &publish_audit(gun, subject, files)).await?;
        }
        for (version, sha256) in timestamps {
            tx.insert_change(gun, version, &sha256, ChangeCategory::Update)
                .await?;
        }
        Ok(())
    }

    async fn delete_in(
        tx: &mut Transaction<'_, Postgres>,
        gun: &str,
        subject: &str,
    ) -> Result<Deleted> {
        lock(tx, LOCK_GUN, gun).await?;
        let rows = sqlx::query(
            "SELECT role, MAX(version) AS version FROM tuf_files WHERE gun = $1 \
             GROUP BY role ORDER BY role COLLATE \"C\"",
        )
        .bind(gun)
        .fetch_all(&mut **tx)
        .await?;
        let roles = decode_all(&rows, role_version_from_row)?;
        let retired_keys: Vec<String> = sqlx::query_scalar(
            "UPDATE server_keys SET retired_at = clock_timestamp() \
             WHERE gun = $1 AND retired_at IS NULL RETURNING key_id",
        )
        .bind(gun)
        .fetch_all(&mut **tx)
        .await?;
        let mut retired_keys = retired_keys;
        retired_keys.sort();
        sqlx::query("DELETE FROM tuf_files WHERE gun = $1")
            .bind(gun)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM role_expiry WHERE gun = $1")
            .bind(gun)
            .execute(&mut **tx)
            .await?;
        let deleted = Deleted {
            roles,
            retired_keys,
        };
        record_delete(tx, gun, subject, deleted).await
    }

    async fn put_key_once_in(
        tx: &mut Transaction<'_, Postgres>,
        key: &NewKey,
        skip: &[String],
    ) -> Result<StoredKey> {
        lock(tx, LOCK_KEY_CREATION, &format!("{}\n{}", key.gun, key.role)).await?;
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM server_keys \
             WHERE gun = $1 AND role = $2 AND algorithm = $3 \
               AND last_used IS NULL AND retired_at IS NULL AND NOT (key_id = ANY($4)) \
             ORDER BY created_at DESC, seq DESC LIMIT 1"
        );
        let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&key.gun)
            .bind(&key.role)
            .bind(&key.algorithm)
            .bind(skip)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(row) = existing {
            return Ok(key_from_row(&row)?);
        }
        // The stored row comes back from the insert: one round trip.
        let sql = format!(
            "INSERT INTO server_keys (key_id, gun, role, algorithm, public, sealed_private) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {KEY_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind_key(key)
            .fetch_one(&mut **tx)
            .await
            .map_err(|err| key_exists(err, key))?;
        Ok(key_from_row(&row)?)
    }
}

async fn insert_key<'e, E: sqlx::PgExecutor<'e>>(executor: E, key: &NewKey) -> Result<()> {
    sqlx::query(
        "INSERT INTO server_keys (key_id, gun, role, algorithm, public, sealed_private) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind_key(key)
    .execute(executor)
    .await
    .map_err(|err| key_exists(err, key))?;
    Ok(())
}

impl Store for PostgresStore {
    // Replicas share the database.
    fn shared(&self) -> bool {
        true
    }

    async fn locate(&self, gun: &str, role: &str, which: Which<'_>) -> Result<Located> {
        let base = "SELECT version, sha256 FROM tuf_files WHERE gun = $1 AND role = $2";
        let sha256 = match which {
            Which::Checksum(sha256) => sha256.to_ascii_lowercase(),
            _ => String::new(),
        };
        let row = self
            .read(|pool| {
                let query = match which {
                    Which::Current => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "{base} ORDER BY version DESC LIMIT 1"
                    )))
                    .bind(gun)
                    .bind(role),
                    Which::Version(version) => {
                        sqlx::query(sqlx::AssertSqlSafe(format!("{base} AND version = $3")))
                            .bind(gun)
                            .bind(role)
                            .bind(version)
                    }
                    Which::Checksum(_) => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "{base} AND sha256 = $3 ORDER BY version DESC LIMIT 1"
                    )))
                    .bind(gun)
                    .bind(role)
                    .bind(sha256.as_str()),
                };
                query.fetch_one(pool)
            })
            .await?;
        Ok(located_from_row(&row)?)
    }

    async fn get_current(&self, gun: &str, role: &str) -> Result<StoredFile> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM tuf_files \
             WHERE gun = $1 AND role = $2 ORDER BY version DESC LIMIT 1"
        );
        let row = self
            .read(|pool| {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(gun)
                    .bind(role)
                    .fetch_one(pool)
            })
            .await?;
        Ok(file_from_row(&row)?)
    }

    async fn get_version(&self, gun: &str, role: &str, version: i64) -> Result<StoredFile> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM tuf_files WHERE gun = $1 AND role = $2 AND version = $3"
        );
        let row = self
            .read(|pool| {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(gun)
                    .bind(role)
                    .bind(version)
                    .fetch_one(pool)
            })
            .await?;
        Ok(file_from_row(&row)?)
    }

    async fn get_checksum(&self, gun: &str, role: &str, sha256_hex: &str) -> Result<StoredFile> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM tuf_files \
             WHERE gun = $1 AND role = $2 AND sha256 = $3 ORDER BY version DESC LIMIT 1"
        );
        let row = self
            .read(|pool| {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(gun)
                    .bind(role)
                    .bind(sha256_hex.to_ascii_lowercase())
                    .fetch_one(pool)
            })
            .await?;
        Ok(file_from_row(&row)?)
    }

    async fn latest_versions(&self, gun: &str) -> Result<Vec<(String, i64)>> {
        let rows = self
            .read(|pool| {
                sqlx::query(
                    "SELECT role, MAX(version) AS version FROM tuf_files WHERE gun = $1 \
             GROUP BY role ORDER BY role COLLATE \"C\"",
                )
                .bind(gun)
                .fetch_all(pool)
            })
            .await?;
        let versions = decode_all(&rows, role_version_from_row)?;
        Ok(versions.into_iter().map(|r| (r.role, r.version)).collect())
    }

    async fn publish_as(
        &self,
        gun: &str,
        files: Vec<NewFile>,
        subject: Option<&str>,
        used_keys: &[String],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let outcome = Self::publish_in(&mut tx, gun, &files, subject, used_keys).await;
        finish(tx, outcome).await
    }

    async fn delete(&self, gun: &str, subject: &str) -> Result<Deleted> {
        let mut tx = self.begin().await?;
        let outcome = Self::delete_in(&mut tx, gun, subject).await;
        finish(tx, outcome).await
    }

    async fn import_repository(&self, repository: ImportedRepository) -> Result<ImportOutcome> {
        let mut tx = self.begin().await?;
        let outcome = async {
            lock(&mut tx, LOCK_GUN, &repository.gun).await?;
            import(&mut tx, &repository).await
        }
        .await;
        finish(tx, outcome).await
    }

    async fn record_audit(&self, entry: NewAuditEntry) -> Result<()> {
        insert_audit(&self.pool, &entry).await
    }

    async fn audit(&self, gun: &str, limit: i64, before: Option<i64>) -> Result<Vec<AuditEntry>> {
        let limit = audit_limit(limit);
        let rows = self
            .read(|pool| {
                sqlx::query(
                    "SELECT id, (extract(epoch FROM created_at) * 1000000)::BIGINT AS created_at, \
             gun, action, subject, roles, key_ids FROM audit_log \
             WHERE gun = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .bind(gun)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(pool)
            })
            .await?;
        decode_all(&rows, audit_from_row)
    }

    async fn changes(
        &self,
        gun: Option<&str>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>> {
        let Some(page) = ChangePage::new(change_id, records) else {
            return Ok(Vec::new());
        };
        // NULL parameters switch a condition off, so one statement serves
        // every case (and is prepared once per connection).
        let sql = if page.backwards {
            format!(
                "SELECT {CHANGE_COLUMNS} FROM changefeed \
             WHERE ($1::TEXT IS NULL OR gun = $1) AND ($2::BIGINT IS NULL OR id > $2) \
               AND ($3::BIGINT IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
            )
        } else {
            format!(
                "SELECT {CHANGE_COLUMNS} FROM changefeed \
             WHERE ($1::TEXT IS NULL OR gun = $1) AND ($2::BIGINT IS NULL OR id > $2) \
               AND ($3::BIGINT IS NULL OR id < $3) ORDER BY id ASC LIMIT $4"
            )
        };
        let rows = self
            .read(|pool| {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(gun)
                    .bind(page.after)
                    .bind(page.before)
                    .bind(page.limit)
                    .fetch_all(pool)
            })
            .await?;
        Ok(page.in_order(decode_all(&rows, change_from_row)?))
    }

    async fn expiry_counts(&self, cutoffs: &[OffsetDateTime]) -> Result<ExpiryCounts> {
        let mut before = Vec::with_capacity(cutoffs.len());
        for cutoff in cutoffs {
            let count: i64 = self
                .read(|pool| {
                    sqlx::query_scalar(
                        "SELECT COUNT(DISTINCT gun) FROM role_expiry WHERE expires < $1",
                    )
                    .bind(cutoff.unix_timestamp())
                    .fetch_one(pool)
                })
                .await?;
            before.push(u64::try_from(count).unwrap_or_default());
        }
        let soonest: Option<i64> = self
            .read(|pool| sqlx::query_scalar("SELECT MIN(expires) FROM role_expiry").fetch_one(pool))
            .await?;
        let soonest = soonest.map(from_unix_seconds).transpose()?;
        Ok(ExpiryCounts { before, soonest })
    }

    async fn expiring(&self, before: OffsetDateTime) -> Result<Vec<RoleExpiry>> {
        let rows = self
            .read(|pool| {
                sqlx::query(
                    "SELECT gun, role, version, expires FROM role_expiry WHERE expires < $1 \
             ORDER BY expires, gun COLLATE \"C\", role COLLATE \"C\"",
                )
                .bind(before.unix_timestamp())
                .fetch_all(pool)
            })
            .await?;
        decode_all(&rows, expiry_from_row)
    }

    async fn ping(&self) -> Result<()> {
        self.read(|pool| sqlx::query("SELECT 1 FROM tuf_files LIMIT 1").fetch_optional(pool))
            .await?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        pool_stats(&self.pool)
    }

    async fn put_key(&self, key: NewKey) -> Result<()> {
        insert_key(&self.pool, &key).await
    }

    async fn put_key_once(&self, key: NewKey, skip: &[String]) -> Result<StoredKey> {
        let mut tx = self.begin().await?;
        let outcome = Self::put_key_once_in(&mut tx, &key, skip).await;
        finish(tx, outcome).await
    }

    async fn get_key(&self, key_id: &str) -> Result<StoredKey> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM server_keys WHERE key_id = $1");
        let row = self
            .read(|pool| {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(key_id)
                    .fetch_one(pool)
            })
            .await?;
        Ok(key_from_row(&row)?)
    }

    async fn keys_for(&self, gun: &str, role: &str) -> Result<Vec<StoredKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM server_keys \
             WHERE gun = $1 AND role = $2 AND retired_at IS NULL \
             ORDER BY created_at DESC, seq DESC"
        );
        let rows = self
            .read(|pool| {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(gun)
                    .bind(role)
                    .fetch_all(pool)
            })
            .await?;
        decode_all(&rows, key_from_row)
    }

    async fn newest_key(&self) -> Result<Option<StoredKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM server_keys ORDER BY created_at DESC, seq DESC LIMIT 1"
        );
        let row = self
            .read(|pool| sqlx::query(sqlx::AssertSqlSafe(sql.clone())).fetch_optional(pool))
            .await?;
        Ok(row.as_ref().map(key_from_row).transpose()?)
    }

    async fn kek_params(&self) -> Result<Option<KekParams>> {
        let row = self
            .read(|pool| {
                sqlx::query("SELECT salt, iterations, check_value FROM key_encryption WHERE id = 1")
                    .fetch_optional(pool)
            })
            .await?;
        Ok(row.as_ref().map(kek_from_row).transpose()?)
    }

    async fn put_kek_params(&self, params: KekParams, replace: bool) -> Result<KekParams> {
        // ON CONFLICT on the one-row key: of several processes starting at
        // once, the first insert wins and the others read it back.
        let sql = if replace {
            "INSERT INTO key_encryption (id, salt, iterations, check_value) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET salt = EXCLUDED.salt, \
               iterations = EXCLUDED.iterations, check_value = EXCLUDED.check_value, \
               created_at = clock_timestamp()"
        } else {
            "INSERT INTO key_encryption (id, salt, iterations, check_value) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING"
        };
        self.wrote(
            sqlx::query(sql)
                .bind(&params.salt)
                .bind(i64::from(params.iterations))
                .bind(&params.check_value)
                .execute(&self.pool)
                .await,
        )?;
        self.kek_params().await?.ok_or(Error::NotFound)
    }

    async fn mark_key_used(&self, key_id: &str) -> Result<()> {
        let updated = self
            .wrote(
                sqlx::query(
                    "UPDATE server_keys SET last_used = clock_timestamp() WHERE key_id = $1",
                )
                .bind(key_id)
                .execute(&self.pool)
                .await,
            )?
            .rows_affected();
        if updated == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    async fn set_immutable(&self, gun: &str, immutable: bool) -> Result<bool> {
        let query = if immutable {
            "INSERT INTO immutable_repositories (gun) VALUES ($1) ON CONFLICT (gun) DO NOTHING"
        } else {
            "DELETE FROM immutable_repositories WHERE gun = $1"
        };
        let changed = self
            .wrote(sqlx::query(query).bind(gun).execute(&self.pool).await)?
            .rows_affected();
        Ok(changed > 0)
    }

    async fn is_immutable(&self, gun: &str) -> Result<bool> {
        let found: Option<i32> = self
            .read(|pool| {
                sqlx::query_scalar("SELECT 1 FROM immutable_repositories WHERE gun = $1")
                    .bind(gun)
                    .fetch_optional(pool)
            })
            .await?;
        Ok(found.is_some())
    }

    async fn immutable_repositories(&self) -> Result<Vec<String>> {
        Ok(self
            .read(|pool| {
                sqlx::query_scalar(
                    "SELECT gun FROM immutable_repositories ORDER BY gun COLLATE \"C\"",
                )
                .fetch_all(pool)
            })
            .await?)
    }
}

#[cfg(test)]
#[path = "../../tests/support/postgres.rs"]
mod pg_server;

/// The store contract on a real PostgreSQL (tests/support/postgres.rs): the
/// same generic tests as SQLite's, plus what only several processes on one
/// database can show. Two pools on one database stand in for two replicas.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::{audit_story, key_once, race, story};
    use super::pg_server::{PASSWORD, PgServer};
    use super::*;

    fn options(server: &PgServer, database: &str) -> PgConnectOptions {
        server
            .url(database)
            .parse::<PgConnectOptions>()
            .unwrap()
            .password(PASSWORD)
    }

    #[tokio::test]
    async fn an_empty_database_has_every_migration_pending() {
        let server = PgServer::shared();
        let database = server.database();
        let store =
            PostgresStore::connect_lazy(options(server, &database), PoolSettings::default());
        let all: Vec<i64> = migrator().iter().map(|m| m.version).collect();
        assert!(!all.is_empty());
        assert_eq!(store.pending_migrations().await.unwrap(), all);
        store.migrate().await.unwrap();
        assert!(store.pending_migrations().await.unwrap().is_empty());
    }

    /// A store on a fresh database of the shared server, migrated.
    async fn fresh() -> (PostgresStore, String) {
        let server = PgServer::shared();
        let database = server.database();
        let store =
            PostgresStore::connect_lazy(options(server, &database), PoolSettings::default());
        store.migrate().await.unwrap();
        (store, database)
    }

    /// Another pool (another "replica") on the same database.
    fn replica(database: &str) -> PostgresStore {
        PostgresStore::connect_lazy(
            options(PgServer::shared(), database),
            PoolSettings::default(),
        )
    }

    #[tokio::test]
    async fn story_on_postgres() {
        story(&fresh().await.0).await;
    }

    #[tokio::test]
    async fn expiry_story_on_postgres() {
        crate::store::tests::expiry_story(&fresh().await.0).await;
    }

    /// A database migrated by an older notarium: `migrate` fills the
    /// expiry table from the stored files, and a replica reads the same.
    #[tokio::test]
    async fn migrate_backfills_the_expiry_table_for_every_replica() {
        use crate::store::tests::envelope;
        let (store, database) = fresh().await;
        let gun = "example.com/old";
        store
            .publish(
                gun,
                vec![
                    NewFile::new("root", 1, envelope("Root", 100, "", "client")),
                    NewFile::new("targets", 1, envelope("Targets", 7, "", "client")),
                    NewFile::new("targets", 2, envelope("Targets", 9, "", "client")),
                ],
            )
            .await
            .unwrap();
        sqlx::query("DELETE FROM role_expiry")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO role_expiry_backfill (id) VALUES (1)")
            .execute(&store.pool)
            .await
            .unwrap();
        let far = time::macros::datetime!(2100-01-01 00:00 UTC);
        assert!(store.expiring(far).await.unwrap().is_empty());
        let other = replica(&database);
        other.migrate().await.unwrap();
        for reader in [&store, &other] {
            let rows: Vec<(String, i64)> = reader
                .expiring(far)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.role, r.version))
                .collect();
            assert_eq!(rows, [("targets".to_string(), 2), ("root".to_string(), 1)]);
        }
        let counts = store
            .expiry_counts(&[time::macros::datetime!(2030-01-09 00:00 UTC)])
            .await
            .unwrap();
        assert_eq!(counts.before, vec![0]);
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM role_expiry_backfill")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(pending, 0);
    }

    #[tokio::test]
    async fn import_story_on_postgres() {
        crate::store::tests::import_story(&fresh().await.0).await;
    }

    #[tokio::test]
    async fn audit_story_on_postgres() {
        audit_story(&fresh().await.0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishers_in_one_process_never_both_win() {
        let store = Arc::new(fresh().await.0);
        race(Arc::clone(&store), store, "example.com/race", 20).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishers_on_two_replicas_never_both_win() {
        let (first, database) = fresh().await;
        let second = replica(&database);
        race(Arc::new(first), Arc::new(second), "example.com/race", 20).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_unused_key_per_role_across_replicas() {
        let (first, database) = fresh().await;
        key_once(Arc::new(first), Arc::new(replica(&database))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kek_params_are_created_once_by_replicas_starting_together() {
        let (first, database) = fresh().await;
        let stores = [Arc::new(first), Arc::new(replica(&database))];
        let mut tasks = Vec::new();
        for i in 0..6u8 {
            let store = Arc::clone(&stores[usize::from(i) % 2]);
            tasks.push(tokio::spawn(async move {
                let params = KekParams {
                    salt: vec![i; 16],
                    iterations: 1000,
                    check_value: format!("check-{i}"),
                };
                store.put_kek_params(params, false).await.unwrap()
            }));
        }
        let mut kept = Vec::new();
        for task in tasks {
            kept.push(task.await.unwrap());
        }
        assert!(kept.iter().all(|params| *params == kept[0]));
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM key_encryption")
            .fetch_one(&stores[0].pool)
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }

    /// Replicas starting together all migrate; sqlx's advisory lock lets
    /// one apply the schema and the others find it applied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_migrators_apply_the_schema_once() {
        let server = PgServer::shared();
        let database = server.database();
        // A lock_timeout no waiting migrator could meet: migrations must
        // not run under the session timeouts.
        let impatient = PoolSettings {
            lock_timeout: Duration::from_millis(1),
            ..PoolSettings::default()
        };
        let stores: Vec<PostgresStore> = (0..4)
            .map(|_| PostgresStore::connect_lazy(options(server, &database), impatient))
            .collect();
        let mut tasks = Vec::new();
        for store in &stores {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.migrate().await }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&stores[0].pool)
                .await
                .unwrap();
        let expected: Vec<i64> = migrator().iter().map(|m| m.version).collect();
        assert_eq!(applied, expected);
        stores[3].ping().await.unwrap();
        assert!(stores[2].pending_migrations().await.unwrap().is_empty());
        // Once more, as a restarted replica would: nothing to do.
        stores[1].migrate().await.unwrap();
        // A newer notarium migrated further (rolling upgrade): this one
        // still starts.
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (99990101000000, 'from a newer notarium', TRUE, '\\x00', 0)",
        )
        .execute(&stores[0].pool)
        .await
        .unwrap();
        stores[1].migrate().await.unwrap();
    }

    /// Timestamps published on two replicas at once: changefeed IDs follow
    /// commit order, so a reader paging forward while they are written
    /// (as a client polling the feed does) sees every change exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changefeed_ids_grow_across_replicas_and_paging_loses_nothing() {
        let (first, database) = fresh().await;
        let stores = [Arc::new(first), Arc::new(replica(&database))];
        const WRITERS: usize = 6;
        const VERSIONS: i64 = 15;
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let store = Arc::clone(&stores[writer % 2]);
            writers.push(tokio::spawn(async move {
                let gun = format!("example.com/feed{writer}");
                for version in 1..=VERSIONS {
                    let files = vec![
                        NewFile::new("snapshot", version, vec![b's'; 64]),
                        NewFile::new("timestamp", version, format!("{gun} {version}").into()),
                    ];
                    store.publish(&gun, files).await.unwrap();
                }
            }));
        }
        let reader = Arc::clone(&stores[1]);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finished = Arc::clone(&done);
        let pager = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = 0;
            loop {
                // Read the flag before the page: the last page then sees
                // everything committed.
                let last = finished.load(std::sync::atomic::Ordering::SeqCst);
                let page = reader.changes(None, cursor, 7).await.unwrap();
                if let Some(change) = page.last() {
                    cursor = change.id;
                }
                let empty = page.is_empty();
                seen.extend(page.into_iter().map(|c| c.id));
                if last && empty {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        });
        for writer in writers {
            writer.await.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let seen = pager.await.unwrap();
        let all: Vec<i64> = stores[0]
            .changes(None, 0, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(all.len(), WRITERS * usize::try_from(VERSIONS).unwrap());
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seen, all, "the paging reader missed or repeated changes");
        // Per GUN, the feed lists versions in order.
        let mine = stores[0]
            .changes(Some("example.com/feed0"), 0, 100)
            .await
            .unwrap();
        let versions: Vec<i64> = mine.iter().map(|c| c.version).collect();
        assert_eq!(versions, (1..=VERSIONS).collect::<Vec<_>>());
    }

    /// The database stops: queries fail with `Unavailable` (a 503 upstairs)
    /// within the acquire timeout instead of hanging; when it is back, the
    /// same pool serves again without being rebuilt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_database_fails_fast_and_the_pool_recovers() {
        let server = PgServer::start();
        let database = server.database();
        let settings = PoolSettings {
            acquire_timeout: Duration::from_secs(1),
            ..PoolSettings::default()
        };
        let store = PostgresStore::connect_lazy(options(&server, &database), settings);
        store.migrate().await.unwrap();
        let gun = "example.com/outage";
        store
            .publish(gun, vec![NewFile::new("timestamp", 1, b"ts1".to_vec())])
            .await
            .unwrap();

        server.stop();
        for _ in 0..3 {
            assert!(
                matches!(store.ping().await, Err(Error::Unavailable(_))),
                "ping while stopped"
            );
            assert!(matches!(
                store.get_current(gun, "timestamp").await,
                Err(Error::Unavailable(_))
            ));
            assert!(matches!(
                store
                    .publish(gun, vec![NewFile::new("timestamp", 2, b"ts2".to_vec())])
                    .await,
                Err(Error::Unavailable(_))
            ));
        }

        server.restart();
        store.ping().await.unwrap();
        assert_eq!(
            store.get_current(gun, "timestamp").await.unwrap().data,
            b"ts1"
        );
        store
            .publish(gun, vec![NewFile::new("timestamp", 2, b"ts2".to_vec())])
            .await
            .unwrap();
        assert_eq!(
            store.get_current(gun, "timestamp").await.unwrap().version,
            2
        );
    }

    /// The database restarts while the pool is idle: every pooled
    /// connection is dead, yet the first requests after it (a write and
    /// reads, each meeting a dead connection first) succeed, without a
    /// ping before every query.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_while_idle_fails_no_request_after_it() {
        let server = PgServer::start();
        let database = server.database();
        let store =
            PostgresStore::connect_lazy(options(&server, &database), PoolSettings::default());
        store.migrate().await.unwrap();
        let gun = "example.com/restart";
        store
            .publish(gun, vec![NewFile::new("timestamp", 1, b"ts1".to_vec())])
            .await
            .unwrap();
        // Several open connections, all idle.
        let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| store.pool.acquire()))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        drop(held);
        while store.pool.num_idle() < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        server.stop();
        server.restart();
        store
            .publish(gun, vec![NewFile::new("timestamp", 2, b"ts2".to_vec())])
            .await
            .unwrap();
        for _ in 0..6 {
            assert_eq!(
                store.get_current(gun, "timestamp").await.unwrap().version,
                2
            );
            store.ping().await.unwrap();
        }
    }

    #[tokio::test]
    async fn immutable_marks_are_exact() {
        let (store, _) = fresh().await;
        assert!(store.set_immutable("r/team/app", true).await.unwrap());
        assert!(!store.set_immutable("r/team/app", true).await.unwrap());
        assert!(store.is_immutable("r/team/app").await.unwrap());
        assert!(!store.is_immutable("r/team/app2").await.unwrap());
        assert!(store.set_immutable("r/B", true).await.unwrap());
        // Bytewise order whatever the database's collation.
        assert_eq!(
            store.immutable_repositories().await.unwrap(),
            ["r/B", "r/team/app"]
        );
        assert!(store.set_immutable("r/team/app", false).await.unwrap());
        assert!(!store.is_immutable("r/team/app").await.unwrap());
    }

    /// TLS to the database (sqlx over rustls) with notary's URL parameters:
    /// `verify-full` against the right CA connects encrypted; another CA is
    /// refused.
    #[tokio::test]
    async fn tls_to_the_database_is_verified() {
        let mut ca = std::path::PathBuf::new();
        let server = PgServer::start_with(|dir| {
            let tls = test_pki(&dir.join("tls"));
            ca = tls.0;
            format!(
                "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                tls.1.display(),
                tls.2.display()
            )
        });
        let database = server.database();
        let url = |ca: &std::path::Path| {
            format!(
                "postgres://postgres@127.0.0.1:{}/{database}?sslmode=verify-full&sslrootcert={}",
                server.port,
                ca.display()
            )
        };
        let connect = |url: String| {
            PostgresStore::connect_lazy(
                url.parse::<PgConnectOptions>().unwrap().password(PASSWORD),
                PoolSettings {
                    acquire_timeout: Duration::from_secs(2),
                    ..PoolSettings::default()
                },
            )
        };
        let store = connect(url(&ca));
        store.migrate().await.unwrap();
        let encrypted: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert!(encrypted);
        story(&store).await;

        let other = tempfile::tempdir().unwrap();
        let (stranger, _, _) = test_pki(other.path());
        let refused = connect(url(&stranger));
        assert!(refused.ping().await.is_err(), "a CA that did not sign it");
    }

    /// A CA and a server certificate for 127.0.0.1 it issued, written into
    /// `dir`: (CA certificate, server certificate, server key), PEM.
    fn test_pki(
        dir: &std::path::Path,
    ) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &Issuer::new(ca_params, ca_key))
            .unwrap();
        let paths = (
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        );
        std::fs::write(&paths.0, ca_cert.pem()).unwrap();
        std::fs::write(&paths.1, cert.pem()).unwrap();
        std::fs::write(&paths.2, key.serialize_pem()).unwrap();
        // PostgreSQL refuses a key file others can read.
        std::fs::set_permissions(&paths.2, std::fs::Permissions::from_mode(0o600)).unwrap();
        paths
    }

    /// Session bounds reach the server.
    #[tokio::test]
    async fn sessions_carry_the_configured_timeouts() {
        let server = PgServer::shared();
        let database = server.database();
        let settings = PoolSettings {
            statement_timeout: Duration::from_secs(7),
            lock_timeout: Duration::from_secs(3),
            ..PoolSettings::default()
        };
        let store = PostgresStore::connect_lazy(options(server, &database), settings);
        let statement: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        let lock: String = sqlx::query_scalar("SHOW lock_timeout")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!((statement.as_str(), lock.as_str()), ("7s", "3s"));
        // A statement past its timeout is "unavailable", not a server bug.
        let short = PostgresStore::connect_lazy(
            options(server, &database),
            PoolSettings {
                statement_timeout: Duration::from_millis(100),
                ..PoolSettings::default()
            },
        );
        let slow = sqlx::query("SELECT pg_sleep(2)")
            .execute(&short.pool)
            .await
            .map(drop)
            .map_err(Error::from);
        assert!(matches!(slow, Err(Error::Unavailable(_))), "{slow:?}");
    }
}
