//! SQLite backend: WAL, busy timeout, `BEGIN IMMEDIATE` for every
//! read-check-write transaction, migrations embedded and run at open.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{Row, Sqlite, Transaction};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

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

/// How long a writer waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite serialises writers anyway; a few connections let reads proceed
/// while a write transaction is open (WAL).
const MAX_CONNECTIONS: u32 = 8;

/// SQLite's page cache per connection (negative: KiB). The default 2 MiB
/// per connection mostly held copies of large metadata blobs that the
/// repository's own cache already keeps, eight times over.
const PAGE_CACHE: &str = "-256";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite-backed [`Store`]. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Serialises this process's write transactions. `BEGIN IMMEDIATE` alone
    /// is correct (and still guards against other processes), but a waiter
    /// there polls through SQLite's busy handler in sleeps of up to 100 ms;
    /// queueing on a mutex first hands the lock over at once.
    writer: Arc<Mutex<()>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing, parent directory included) the database at
    /// a file path or a `sqlite:` URL, and runs the migrations.
    /// `sqlite::memory:` / `:memory:` open a private in-memory database.
    pub async fn open(url_or_path: &str) -> Result<Self> {
        if is_memory(url_or_path) {
            return Self::open_in_memory().await;
        }
        let options = if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path)?
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        };
        let filename = options.get_filename().to_path_buf();
        if let Some(parent) = filename.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|err| Error::Backend(err.into()))?;
        }
        create_private(&filename)?;
        // synchronous stays at sqlx's FULL: losing a committed timestamp on
        // power loss would let the server serve an older version than
        // clients have already seen.
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("cache_size", PAGE_CACHE);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        let store = Self::migrated(pool).await?;
        // SQLite gives -wal and -shm the main file's mode; this also tightens
        // files left readable by older builds.
        restrict_modes(&filename)?;
        Ok(store)
    }

    /// A private in-memory database, for tests. One connection that is never
    /// recycled: the database lives exactly as long as that connection.
    pub async fn open_in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> Result<Self> {
        MIGRATOR.run(&pool).await?;
        let store = Self {
            pool,
            writer: Arc::new(Mutex::new(())),
        };
        store.backfill_expiry().await?;
        Ok(store)
    }

    /// Fills the expiry table from the files stored before it existed, once
    /// (the migration leaves a marker row; this removes it). One write
    /// transaction, so no publish interleaves; one GUN's files in memory
    /// at a time.
    async fn backfill_expiry(&self) -> Result<()> {
        let _writer = self.writer.lock().await;
        let mut tx = self.begin_write().await?;
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM role_expiry_backfill")
            .fetch_one(&mut *tx)
            .await?;
        if pending == 0 {
            return Ok(());
        }
        let guns: Vec<String> = sqlx::query_scalar("SELECT DISTINCT gun FROM tuf_files")
            .fetch_all(&mut *tx)
            .await?;
        for gun in guns {
            let changes = repository_expiry(&mut tx, &gun).await?;
            apply_expiry(&mut tx, &gun, &changes).await?;
        }
        sqlx::query("DELETE FROM role_expiry_backfill")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a consistent copy of the database to `dest`, a file that must
    /// not exist yet, while the database stays in use (`VACUUM INTO` reads
    /// one snapshot; a running server keeps serving and publishing). The
    /// copy is owner-only, like the database: it holds sealed keys.
    pub async fn backup_to(&self, dest: &std::path::Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // An empty private file first: SQLite fills it, keeping the mode.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_MODE)
            .open(dest)
            .map_err(|err| Error::Backend(err.into()))?;
        let copied = sqlx::query("VACUUM INTO ?")
            .bind(dest.to_string_lossy().into_owned())
            .execute(&self.pool)
            .await;
        if let Err(err) = copied {
            // No half-written copy left to be mistaken for a backup.
            let _ = std::fs::remove_file(dest);
            return Err(err.into());
        }
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Takes the write lock up front (`BEGIN IMMEDIATE`), so the version
    /// check and the insert see the same state. A deferred transaction would
    /// read under a snapshot and could only fail when upgrading to a write.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// The database holds sealed keys: create it readable by its owner only,
/// before SQLite creates it with the process umask.
fn create_private(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(Error::Backend(err.into())),
    }
}

/// Sets the database file and its -wal and -shm companions to owner-only.
fn restrict_modes(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut companions = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        companions.push(name.into());
    }
    for file in companions {
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o777 != PRIVATE_MODE => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(PRIVATE_MODE))
                    .map_err(|err| Error::Backend(err.into()))?;
            }
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::Backend(err.into())),
        }
    }
    Ok(())
}

/// Owner read/write only.
const PRIVATE_MODE: u32 = 0o600;

fn is_memory(url_or_path: &str) -> bool {
    let rest = url_or_path
        .strip_prefix("sqlite://")
        .or_else(|| url_or_path.strip_prefix("sqlite:"))
        .unwrap_or(url_or_path);
    rest == ":memory:" || rest.starts_with(":memory:?")
}

fn parse_time(text: &str) -> Result<OffsetDateTime, sqlx::Error> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

/// Times are stored as RFC 3339 text (what the schema's defaults stamp).
impl StoredTimes for Sqlite {
    fn time(row: &SqliteRow, column: &str) -> Result<OffsetDateTime, sqlx::Error> {
        parse_time(row.try_get(column)?)
    }

    fn optional_time(row: &SqliteRow, column: &str) -> Result<Option<OffsetDateTime>, sqlx::Error> {
        let text: Option<&str> = row.try_get(column)?;
        text.map(parse_time).transpose()
    }
}

/// The stored text form of a time: what the schema's default stamps.
fn format_stored_time(at: OffsetDateTime) -> Result<String> {
    at.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .map_err(|err| Error::Backend(sqlx::Error::Encode(Box::new(err))))
}

/// The expiry rows of `gun` from its stored files: the current version of
/// each role except the timestamp (server-signed whatever it says).
async fn repository_expiry(tx: &mut Transaction<'_, Sqlite>, gun: &str) -> Result<ExpiryChanges> {
    let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT f.role, f.version, f.data FROM tuf_files f \
         WHERE f.gun = ? AND f.role != 'timestamp' AND f.version = \
           (SELECT MAX(version) FROM tuf_files WHERE gun = f.gun AND role = f.role)",
    )
    .bind(gun)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ExpiryChanges::of_stored(&rows, server_keys(tx, gun).await?))
}

/// The IDs of the server keys of `gun`, retired or not.
async fn server_keys(tx: &mut Transaction<'_, Sqlite>, gun: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT key_id FROM server_keys WHERE gun = ?")
            .bind(gun)
            .fetch_all(&mut **tx)
            .await?,
    )
}

/// Writes the expiry rows a write of `gun` implies, inside its transaction.
async fn apply_expiry(
    tx: &mut Transaction<'_, Sqlite>,
    gun: &str,
    changes: &ExpiryChanges,
) -> Result<()> {
    for (role, version, expires) in &changes.upsert {
        sqlx::query(
            "INSERT INTO role_expiry (gun, role, version, expires) VALUES (?, ?, ?, ?) \
             ON CONFLICT (gun, role) DO UPDATE SET version = excluded.version, \
             expires = excluded.expires WHERE excluded.version >= role_expiry.version",
        )
        .bind(gun)
        .bind(role)
        .bind(version)
        .bind(expires)
        .execute(&mut **tx)
        .await?;
    }
    let held: Vec<String> = sqlx::query_scalar("SELECT role FROM role_expiry WHERE gun = ?")
        .bind(gun)
        .fetch_all(&mut **tx)
        .await?;
    for role in changes.stale(held.iter().map(String::as_str)) {
        sqlx::query("DELETE FROM role_expiry WHERE gun = ? AND role = ?")
            .bind(gun)
            .bind(role)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Records for Transaction<'_, Sqlite> {
    async fn insert_change(
        &mut self,
        gun: &str,
        version: i64,
        sha256: &str,
        category: ChangeCategory,
    ) -> Result<()> {
        sqlx::query("INSERT INTO changefeed (gun, version, sha256, category) VALUES (?, ?, ?, ?)")
            .bind_change(gun, version, sha256, category)
            .execute(&mut **self)
            .await?;
        Ok(())
    }

    async fn insert_audit(&mut self, entry: &NewAuditEntry) -> Result<()> {
        insert_audit(&mut **self, entry).await
    }
}

/// An import's statements; imported times are stored in the schema's text
/// form.
impl ImportWrites for Transaction<'_, Sqlite> {
    async fn count_files(&mut self, gun: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM tuf_files WHERE gun = ?")
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
            "SELECT sha256 FROM tuf_files WHERE gun = ? AND role = ? AND version = ?",
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
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind_file(gun, &file.role, file.version, &file.sha256, &file.data)
        .bind(format_stored_time(file.created_at)?)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    // The transaction holds SQLite's one write lock already.
    async fn lock_changefeed(&mut self) -> Result<()> {
        Ok(())
    }

    async fn stored_change(&mut self, id: i64) -> Result<Option<Change>> {
        let row = sqlx::query(
            "SELECT id, created_at, gun, version, sha256, category FROM changefeed WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&mut **self)
        .await?;
        Ok(row.as_ref().map(change_from_row).transpose()?)
    }

    async fn insert_imported_change(&mut self, change: &Change) -> Result<()> {
        sqlx::query(
            "INSERT INTO changefeed (id, gun, version, sha256, category, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(change.id)
        .bind_change(&change.gun, change.version, &change.sha256, change.category)
        .bind(format_stored_time(change.created_at)?)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    // An explicit ID also moves AUTOINCREMENT's counter past it, so later
    // records continue after the imported ones.
    async fn continue_changefeed(&mut self) -> Result<()> {
        Ok(())
    }

    async fn stored_key(&mut self, key_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        Ok(
            sqlx::query_as("SELECT gun, public FROM server_keys WHERE key_id = ?")
                .bind(key_id)
                .fetch_optional(&mut **self)
                .await?,
        )
    }

    async fn insert_key(&mut self, imported: &ImportedKey) -> Result<()> {
        let key = &imported.key;
        insert_key(&mut **self, key).await?;
        // The times it had in notary-signer, not the import's.
        let created_at = imported.created_at.map(format_stored_time).transpose()?;
        let last_used = imported.last_used.map(format_stored_time).transpose()?;
        sqlx::query(
            "UPDATE server_keys SET created_at = COALESCE(?, created_at), last_used = ? \
             WHERE key_id = ?",
        )
        .bind(created_at)
        .bind(last_used)
        .bind(&key.key_id)
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

async fn insert_audit<'e, E: sqlx::SqliteExecutor<'e>>(
    executor: E,
    entry: &NewAuditEntry,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (gun, action, subject, roles, key_ids) VALUES (?, ?, ?, ?, ?)",
    )
    .bind_audit(entry)?
    .execute(executor)
    .await?;
    Ok(())
}

const KEY_COLUMNS: &str =
    "key_id, gun, role, algorithm, public, sealed_private, created_at, last_used, retired_at";

async fn insert_key<'e, E: sqlx::SqliteExecutor<'e>>(executor: E, key: &NewKey) -> Result<()> {
    sqlx::query(
        "INSERT INTO server_keys (key_id, gun, role, algorithm, public, sealed_private) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind_key(key)
    .execute(executor)
    .await
    .map_err(|err| key_exists(err, key))?;
    Ok(())
}

/// The checks and inserts of one publish, inside its transaction.
async fn insert_files(
    tx: &mut Transaction<'_, Sqlite>,
    gun: &str,
    files: &[NewFile],
) -> Result<()> {
    for file in files {
        // Inside the transaction, unlike Notary (PROTOCOL.md §3.6), so a
        // concurrent publisher cannot slip in between check and insert.
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM tuf_files WHERE gun = ? AND role = ?")
                .bind(gun)
                .bind(&file.role)
                .fetch_one(&mut **tx)
                .await?;
        if newest.is_some_and(|newest| newest >= file.version) {
            return Err(conflict(gun, file));
        }
        let sha256 = sha256_hex(&file.data);
        sqlx::query(
            "INSERT INTO tuf_files (gun, role, version, sha256, data) VALUES (?, ?, ?, ?, ?)",
        )
        .bind_file(gun, &file.role, file.version, &sha256, &file.data)
        .execute(&mut **tx)
        .await
        .map_err(|err| {
            // The UNIQUE (gun, role, version) constraint is the second guard.
            if is_unique_violation(&err) {
                conflict(gun, file)
            } else {
                err.into()
            }
        })?;
        if file.role == TIMESTAMP_ROLE {
            tx.insert_change(gun, file.version, &sha256, ChangeCategory::Update)
                .await?;
        }
    }
    Ok(())
}

/// The writes of one publish, inside its transaction.
async fn publish_in(
    tx: &mut Transaction<'_, Sqlite>,
    gun: &str,
    files: &[NewFile],
    subject: Option<&str>,
    used_keys: &[String],
) -> Result<()> {
    insert_files(tx, gun, files).await?;
    apply_expiry(tx, gun, &ExpiryChanges::of_publish(files)).await?;
    for key_id in used_keys {
        sqlx::query(
            "UPDATE server_keys SET last_used = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE key_id = ? AND last_used IS NULL",
        )
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
    }
    if let Some(subject) = subject {
        insert_audit(&mut **tx, &publish_audit(gun, subject, files)).await?;
    }
    Ok(())
}

/// The writes of one delete, inside its transaction.
async fn delete_in(tx: &mut Transaction<'_, Sqlite>, gun: &str, subject: &str) -> Result<Deleted> {
    let rows = sqlx::query(
        "SELECT role, MAX(version) AS version FROM tuf_files WHERE gun = ? \
         GROUP BY role ORDER BY role",
    )
    .bind(gun)
    .fetch_all(&mut **tx)
    .await?;
    let roles = decode_all(&rows, role_version_from_row)?;
    let retired_keys: Vec<String> = sqlx::query_scalar(
        "SELECT key_id FROM server_keys WHERE gun = ? AND retired_at IS NULL ORDER BY key_id",
    )
    .bind(gun)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM tuf_files WHERE gun = ?")
        .bind(gun)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM role_expiry WHERE gun = ?")
        .bind(gun)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE server_keys SET retired_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
         WHERE gun = ? AND retired_at IS NULL",
    )
    .bind(gun)
    .execute(&mut **tx)
    .await?;
    let deleted = Deleted {
        roles,
        retired_keys,
    };
    record_delete(tx, gun, subject, deleted).await
}

impl Store for SqliteStore {
    // One server process owns a SQLite database.
    fn shared(&self) -> bool {
        false
    }

    async fn locate(&self, gun: &str, role: &str, which: Which<'_>) -> Result<Located> {
        let base = "SELECT version, sha256 FROM tuf_files WHERE gun = ? AND role = ?";
        let query = match which {
            Which::Current => sqlx::query(sqlx::AssertSqlSafe(format!(
                "{base} ORDER BY version DESC LIMIT 1"
            )))
            .bind(gun)
            .bind(role),
            Which::Version(version) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{base} AND version = ?")))
                    .bind(gun)
                    .bind(role)
                    .bind(version)
            }
            Which::Checksum(sha256) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "{base} AND sha256 = ? ORDER BY version DESC LIMIT 1"
            )))
            .bind(gun)
            .bind(role)
            .bind(sha256.to_ascii_lowercase()),
        };
        let row = query.fetch_one(&self.pool).await?;
        Ok(located_from_row(&row)?)
    }

    async fn get_current(&self, gun: &str, role: &str) -> Result<StoredFile> {
        let row = sqlx::query(
            "SELECT gun, role, version, sha256, data, created_at FROM tuf_files \
             WHERE gun = ? AND role = ? ORDER BY version DESC LIMIT 1",
        )
        .bind(gun)
        .bind(role)
        .fetch_one(&self.pool)
        .await?;
        Ok(file_from_row(&row)?)
    }

    async fn get_version(&self, gun: &str, role: &str, version: i64) -> Result<StoredFile> {
        let row = sqlx::query(
            "SELECT gun, role, version, sha256, data, created_at FROM tuf_files \
             WHERE gun = ? AND role = ? AND version = ?",
        )
        .bind(gun)
        .bind(role)
        .bind(version)
        .fetch_one(&self.pool)
        .await?;
        Ok(file_from_row(&row)?)
    }

    async fn get_checksum(&self, gun: &str, role: &str, sha256_hex: &str) -> Result<StoredFile> {
        // The same bytes may in principle be stored under two versions; any
        // of them is the requested content, take the newest.
        let row = sqlx::query(
            "SELECT gun, role, version, sha256, data, created_at FROM tuf_files \
             WHERE gun = ? AND role = ? AND sha256 = ? ORDER BY version DESC LIMIT 1",
        )
        .bind(gun)
        .bind(role)
        .bind(sha256_hex.to_ascii_lowercase())
        .fetch_one(&self.pool)
        .await?;
        Ok(file_from_row(&row)?)
    }

    async fn latest_versions(&self, gun: &str) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT role, MAX(version) AS version FROM tuf_files WHERE gun = ? \
             GROUP BY role ORDER BY role",
        )
        .bind(gun)
        .fetch_all(&self.pool)
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
        let _writer = self.writer.lock().await;
        let mut tx = self.begin_write().await?;
        let outcome = publish_in(&mut tx, gun, &files, subject, used_keys).await;
        // Rolled back at once on failure, so the write lock is released
        // before the next writer asks for it.
        finish(tx, outcome).await
    }

    async fn delete(&self, gun: &str, subject: &str) -> Result<Deleted> {
        let _writer = self.writer.lock().await;
        let mut tx = self.begin_write().await?;
        let outcome = delete_in(&mut tx, gun, subject).await;
        finish(tx, outcome).await
    }

    async fn import_repository(&self, repository: ImportedRepository) -> Result<ImportOutcome> {
        let _writer = self.writer.lock().await;
        let mut tx = self.begin_write().await?;
        let outcome = import(&mut tx, &repository).await;
        finish(tx, outcome).await
    }

    async fn record_audit(&self, entry: NewAuditEntry) -> Result<()> {
        insert_audit(&self.pool, &entry).await
    }

    async fn audit(&self, gun: &str, limit: i64, before: Option<i64>) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, created_at, gun, action, subject, roles, key_ids FROM audit_log \
             WHERE gun = ? AND id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(gun)
        .bind(before.unwrap_or(i64::MAX))
        .bind(audit_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        decode_all(&rows, audit_from_row)
    }

    async fn newest_key(&self) -> Result<Option<StoredKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM server_keys ORDER BY created_at DESC, rowid DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(key_from_row).transpose()?)
    }

    async fn kek_params(&self) -> Result<Option<KekParams>> {
        let row =
            sqlx::query("SELECT salt, iterations, check_value FROM key_encryption WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(kek_from_row).transpose()?)
    }

    async fn put_kek_params(&self, params: KekParams, replace: bool) -> Result<KekParams> {
        let verb = if replace {
            "INSERT OR REPLACE"
        } else {
            "INSERT OR IGNORE"
        };
        let sql = format!(
            "{verb} INTO key_encryption (id, salt, iterations, check_value) VALUES (1, ?, ?, ?)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&params.salt)
            .bind(i64::from(params.iterations))
            .bind(&params.check_value)
            .execute(&self.pool)
            .await?;
        self.kek_params().await?.ok_or(Error::NotFound)
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
        let mut clauses = Vec::with_capacity(2);
        if gun.is_some() {
            clauses.push("gun = ?");
        }
        if page.after.is_some() {
            clauses.push("id > ?");
        }
        if page.before.is_some() {
            clauses.push("id < ?");
        }
        let mut sql =
            String::from("SELECT id, created_at, gun, version, sha256, category FROM changefeed");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(if page.backwards {
            " ORDER BY id DESC LIMIT ?"
        } else {
            " ORDER BY id ASC LIMIT ?"
        });
        // Binds in the order the clauses were added.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(gun) = gun {
            query = query.bind(gun);
        }
        if let Some(id) = page.after.or(page.before) {
            query = query.bind(id);
        }
        let rows = query.bind(page.limit).fetch_all(&self.pool).await?;
        Ok(page.in_order(decode_all(&rows, change_from_row)?))
    }

    async fn set_immutable(&self, gun: &str, immutable: bool) -> Result<bool> {
        let query = if immutable {
            "INSERT OR IGNORE INTO immutable_repositories (gun) VALUES (?)"
        } else {
            "DELETE FROM immutable_repositories WHERE gun = ?"
        };
        let changed = sqlx::query(query)
            .bind(gun)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed > 0)
    }

    async fn is_immutable(&self, gun: &str) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM immutable_repositories WHERE gun = ?")
                .bind(gun)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn immutable_repositories(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT gun FROM immutable_repositories ORDER BY gun")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn expiry_counts(&self, cutoffs: &[OffsetDateTime]) -> Result<ExpiryCounts> {
        let mut before = Vec::with_capacity(cutoffs.len());
        for cutoff in cutoffs {
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(DISTINCT gun) FROM role_expiry WHERE expires < ?")
                    .bind(cutoff.unix_timestamp())
                    .fetch_one(&self.pool)
                    .await?;
            before.push(u64::try_from(count).unwrap_or_default());
        }
        let soonest: Option<i64> = sqlx::query_scalar("SELECT MIN(expires) FROM role_expiry")
            .fetch_one(&self.pool)
            .await?;
        let soonest = soonest.map(from_unix_seconds).transpose()?;
        Ok(ExpiryCounts { before, soonest })
    }

    async fn expiring(&self, before: OffsetDateTime) -> Result<Vec<RoleExpiry>> {
        let rows = sqlx::query(
            "SELECT gun, role, version, expires FROM role_expiry WHERE expires < ? \
             ORDER BY expires, gun, role",
        )
        .bind(before.unix_timestamp())
        .fetch_all(&self.pool)
        .await?;
        decode_all(&rows, expiry_from_row)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1 FROM tuf_files LIMIT 1")
            .fetch_optional(&self.pool)
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
        let _writer = self.writer.lock().await;
        // BEGIN IMMEDIATE: another process's check-then-insert waits.
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM server_keys \
             WHERE gun = ? AND role = ? AND algorithm = ? \
               AND last_used IS NULL AND retired_at IS NULL \
             ORDER BY created_at DESC, rowid DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&key.gun)
            .bind(&key.role)
            .bind(&key.algorithm)
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            let held = key_from_row(row)?;
            if !skip.contains(&held.key_id) {
                return Ok(held);
            }
        }
        insert_key(&mut *tx, &key).await?;
        let sql = format!("SELECT {KEY_COLUMNS} FROM server_keys WHERE key_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&key.key_id)
            .fetch_one(&mut *tx)
            .await?;
        let kept = key_from_row(&row)?;
        tx.commit().await?;
        Ok(kept)
    }

    async fn get_key(&self, key_id: &str) -> Result<StoredKey> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM server_keys WHERE key_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(key_from_row(&row)?)
    }

    async fn keys_for(&self, gun: &str, role: &str) -> Result<Vec<StoredKey>> {
        // rowid breaks ties between keys created in the same millisecond.
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM server_keys \
             WHERE gun = ? AND role = ? AND retired_at IS NULL \
             ORDER BY created_at DESC, rowid DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(gun)
            .bind(role)
            .fetch_all(&self.pool)
            .await?;
        decode_all(&rows, key_from_row)
    }

    async fn mark_key_used(&self, key_id: &str) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE server_keys SET last_used = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE key_id = ?",
        )
        .bind(key_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::{audit_story, key_once, race, story, temp_db};
    use super::*;

    #[tokio::test]
    async fn story_on_a_temp_file() {
        let (_dir, db) = temp_db();
        let store = SqliteStore::open(&db).await.unwrap();
        story(&store).await;
    }

    #[tokio::test]
    async fn expiry_story_on_a_temp_file() {
        let (_dir, db) = temp_db();
        let store = SqliteStore::open(&db).await.unwrap();
        crate::store::tests::expiry_story(&store).await;
    }

    /// A database from before the expiry table: opening it fills the
    /// table from the stored files, once.
    #[tokio::test]
    async fn opening_backfills_the_expiry_table_once() {
        use crate::store::tests::envelope;
        let (_dir, db) = temp_db();
        let gun = "example.com/old";
        let store = SqliteStore::open(&db).await.unwrap();
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
        // As the migration leaves a database written by an older notarium.
        sqlx::query("DELETE FROM role_expiry")
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO role_expiry_backfill (id) VALUES (1)")
            .execute(&store.pool)
            .await
            .unwrap();
        store.close().await;
        let store = SqliteStore::open(&db).await.unwrap();
        let far = time::macros::datetime!(2100-01-01 00:00 UTC);
        let rows: Vec<(String, i64)> = store
            .expiring(far)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.role, r.version))
            .collect();
        assert_eq!(rows, [("targets".to_string(), 2), ("root".to_string(), 1)]);
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM role_expiry_backfill")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(pending, 0);
    }

    #[tokio::test]
    async fn import_story_on_a_temp_file() {
        let (_dir, db) = temp_db();
        let store = SqliteStore::open(&db).await.unwrap();
        crate::store::tests::import_story(&store).await;
    }

    #[tokio::test]
    async fn a_backup_is_a_private_consistent_copy_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, db) = temp_db();
        let store = SqliteStore::open(&db).await.unwrap();
        let gun = "example.com/backup/app";
        let files = vec![
            NewFile::new("root", 1, b"root one".to_vec()),
            NewFile::new("timestamp", 1, b"timestamp one".to_vec()),
        ];
        store.publish(gun, files).await.unwrap();
        let copy = dir.path().join("backup.db");
        store.backup_to(&copy).await.unwrap();
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, PRIVATE_MODE);
        // The original moves on; the copy keeps the state it was taken at.
        let next = vec![NewFile::new("timestamp", 2, b"timestamp two".to_vec())];
        store.publish(gun, next).await.unwrap();
        let restored = SqliteStore::open(&copy.to_string_lossy()).await.unwrap();
        let timestamp = restored.get_current(gun, "timestamp").await.unwrap();
        assert_eq!(
            (timestamp.version, timestamp.data),
            (1, b"timestamp one".to_vec())
        );
        assert_eq!(restored.get_current(gun, "root").await.unwrap().version, 1);
        assert_eq!(restored.changes(None, 0, 10).await.unwrap().len(), 1);
        // An existing file is never overwritten.
        let before = std::fs::read(&copy).unwrap();
        assert!(store.backup_to(&copy).await.is_err());
        assert_eq!(std::fs::read(&copy).unwrap(), before);
    }

    #[tokio::test]
    async fn audit_story_on_a_temp_file() {
        let (_dir, db) = temp_db();
        let store = SqliteStore::open(&db).await.unwrap();
        audit_story(&store).await;
    }

    #[tokio::test]
    async fn audit_story_in_memory() {
        audit_story(&SqliteStore::open_in_memory().await.unwrap()).await;
    }

    /// The database, its WAL and shared-memory files hold sealed keys:
    /// owner-only, whatever the umask, and tightened on reopen.
    #[tokio::test]
    async fn database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, db) = temp_db();
        let store = SqliteStore::open(&db).await.unwrap();
        store
            .publish("gun", vec![NewFile::new("timestamp", 1, b"ts".to_vec())])
            .await
            .unwrap();
        let mode = |suffix: &str| {
            let path = format!("{db}{suffix}");
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777
        };
        for suffix in ["", "-wal", "-shm"] {
            assert_eq!(mode(suffix), 0o600, "{db}{suffix}");
        }
        store.close().await;

        let loose = dir.path().join("loose.db");
        std::fs::write(&loose, b"").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = SqliteStore::open(loose.to_str().unwrap()).await.unwrap();
        store.ping().await.unwrap();
        let mode = std::fs::metadata(&loose).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn immutable_marks_are_exact_and_persist() {
        let (_dir, db) = temp_db();
        let store = SqliteStore::open(&db).await.unwrap();
        assert!(!store.is_immutable("r/team/app").await.unwrap());
        assert!(store.set_immutable("r/team/app", true).await.unwrap());
        assert!(!store.set_immutable("r/team/app", true).await.unwrap());
        assert!(store.is_immutable("r/team/app").await.unwrap());
        assert!(!store.is_immutable("r/team/app2").await.unwrap());
        assert!(!store.is_immutable("r/team").await.unwrap());
        store.close().await;
        let store = SqliteStore::open(&db).await.unwrap();
        assert_eq!(
            store.immutable_repositories().await.unwrap(),
            vec!["r/team/app".to_string()]
        );
        assert!(store.set_immutable("r/team/app", false).await.unwrap());
        assert!(!store.is_immutable("r/team/app").await.unwrap());
    }

    #[tokio::test]
    async fn story_in_memory() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        story(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishers_in_one_process_never_both_win() {
        let (_dir, db) = temp_db();
        let store = Arc::new(SqliteStore::open(&db).await.unwrap());
        race(Arc::clone(&store), store, "example.com/race", 20).await;
    }

    /// Two pools on one file stand in for two server processes: only
    /// `BEGIN IMMEDIATE` and the busy timeout keep them apart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishers_in_two_processes_never_both_win() {
        let (_dir, db) = temp_db();
        let first = Arc::new(SqliteStore::open(&db).await.unwrap());
        let second = Arc::new(SqliteStore::open(&db).await.unwrap());
        race(first, second, "example.com/race", 20).await;
    }

    /// Two pools on one file: one unused key per role, whoever creates it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_unused_key_per_role_across_processes() {
        let (_dir, db) = temp_db();
        let first = Arc::new(SqliteStore::open(&db).await.unwrap());
        let second = Arc::new(SqliteStore::open(&db).await.unwrap());
        key_once(first, second).await;
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let (dir, _) = temp_db();
        let url = format!(
            "sqlite://{}",
            dir.path().join("nested/dir/db.sqlite").display()
        );
        let store = SqliteStore::open(&url).await.unwrap();
        store
            .publish("gun", vec![NewFile::new("timestamp", 4, b"ts".to_vec())])
            .await
            .unwrap();
        store.close().await;

        // Migrations are recorded, so running them again is a no-op.
        let store = SqliteStore::open(&url).await.unwrap();
        let stored = store.get_current("gun", "timestamp").await.unwrap();
        assert_eq!((stored.version, stored.data.as_slice()), (4, &b"ts"[..]));
        assert_eq!(store.changes(None, 0, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn file_is_in_wal_mode() {
        let (_dir, db) = temp_db();
        let store = SqliteStore::open(&db).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(cache.to_string(), PAGE_CACHE);
    }

    #[test]
    fn memory_urls_are_recognised() {
        assert!(is_memory("sqlite::memory:"));
        assert!(is_memory(":memory:"));
        assert!(is_memory("sqlite://:memory:"));
        assert!(!is_memory("sqlite://memory.db"));
        assert!(!is_memory("/var/lib/notarium/db.sqlite"));
    }
}
