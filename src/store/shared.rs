//! What both backends do alike: rows decoded into the store's types
//! ([`StoredRow`]) and values bound in one column order ([`Bind`]); the
//! records and checks around a write (audit entries, the deletion change,
//! version conflicts, the import's algorithm); changefeed paging bounds.
//! Each backend keeps only its SQL, its transactions and locking, its pool,
//! and how it stores a time ([`StoredTimes`]).

use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Transaction, Type};
use time::OffsetDateTime;

use super::expiry::{ExpiryChanges, RoleExpiry};
use super::{
    AuditAction, AuditEntry, Change, ChangeCategory, Deleted, Error, ImportOutcome, ImportedFile,
    ImportedKey, ImportedRepository, KekParams, Located, MAX_AUDIT_PAGE, NewAuditEntry, NewFile,
    NewKey, PoolStats, Result, RoleVersion, StoredFile, StoredKey,
};

/// How a backend stores times: SQLite as RFC 3339 text, PostgreSQL as
/// TIMESTAMPTZ selected as microseconds since the epoch.
pub(super) trait StoredTimes: Database {
    fn time(row: &Self::Row, column: &str) -> Result<OffsetDateTime, sqlx::Error>;
    /// A nullable time column; NULL is `None`.
    fn optional_time(row: &Self::Row, column: &str) -> Result<Option<OffsetDateTime>, sqlx::Error>;
}

/// The column reads the shared decoders need, for a row of either backend.
/// One blanket impl, so the driver's trait bounds are spelled out once
/// rather than on every decoder.
pub(super) trait StoredRow {
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn time(&self, column: &str) -> Result<OffsetDateTime, sqlx::Error>;
    fn optional_time(&self, column: &str) -> Result<Option<OffsetDateTime>, sqlx::Error>;
}

impl<R> StoredRow for R
where
    R: Row,
    R::Database: StoredTimes,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(column)
    }

    fn time(&self, column: &str) -> Result<OffsetDateTime, sqlx::Error> {
        R::Database::time(self, column)
    }

    fn optional_time(&self, column: &str) -> Result<Option<OffsetDateTime>, sqlx::Error> {
        R::Database::optional_time(self, column)
    }
}

/// Decodes every row of a result with `decode`.
pub(super) fn decode_all<R, T>(
    rows: &[R],
    decode: impl Fn(&R) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>> {
    Ok(rows.iter().map(decode).collect::<Result<_, _>>()?)
}

/// How full `pool` is, for metrics.
pub(super) fn pool_stats<DB: Database>(pool: &sqlx::Pool<DB>) -> PoolStats {
    PoolStats {
        open: pool.size(),
        idle: pool.num_idle(),
        max: pool.options().get_max_connections(),
    }
}

/// A value the database holds but this build cannot read back.
fn decode_error(err: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(err))
}

/// A value this build cannot write (it never happens with sane input, but
/// must not panic on a request path).
fn encode_error(err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Backend(sqlx::Error::Encode(Box::new(err)))
}

/// Unix seconds, the form `role_expiry.expires` holds, as a time.
pub(super) fn from_unix_seconds(seconds: i64) -> Result<OffsetDateTime, sqlx::Error> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(decode_error)
}

pub(super) fn file_from_row(row: &impl StoredRow) -> Result<StoredFile, sqlx::Error> {
    Ok(StoredFile {
        gun: row.text("gun")?,
        role: row.text("role")?,
        version: row.int("version")?,
        sha256: row.text("sha256")?,
        data: row.bytes("data")?,
        created_at: row.time("created_at")?,
    })
}

pub(super) fn located_from_row(row: &impl StoredRow) -> Result<Located, sqlx::Error> {
    Ok(Located {
        version: row.int("version")?,
        sha256: row.text("sha256")?,
    })
}

/// A `role, MAX(version) AS version` row.
pub(super) fn role_version_from_row(row: &impl StoredRow) -> Result<RoleVersion, sqlx::Error> {
    Ok(RoleVersion {
        role: row.text("role")?,
        version: row.int("version")?,
    })
}

pub(super) fn change_from_row(row: &impl StoredRow) -> Result<Change, sqlx::Error> {
    let category = row.text("category")?;
    let category = ChangeCategory::parse(&category).ok_or_else(|| {
        sqlx::Error::Decode(format!("unknown changefeed category {category:?}").into())
    })?;
    Ok(Change {
        id: row.int("id")?,
        created_at: row.time("created_at")?,
        gun: row.text("gun")?,
        version: row.int("version")?,
        sha256: row.text("sha256")?,
        category,
    })
}

pub(super) fn key_from_row(row: &impl StoredRow) -> Result<StoredKey, sqlx::Error> {
    Ok(StoredKey {
        key_id: row.text("key_id")?,
        gun: row.text("gun")?,
        role: row.text("role")?,
        algorithm: row.text("algorithm")?,
        public: row.bytes("public")?,
        sealed_private: row.text("sealed_private")?,
        created_at: row.time("created_at")?,
        last_used: row.optional_time("last_used")?,
        retired_at: row.optional_time("retired_at")?,
    })
}

pub(super) fn kek_from_row(row: &impl StoredRow) -> Result<KekParams, sqlx::Error> {
    Ok(KekParams {
        salt: row.bytes("salt")?,
        iterations: u32::try_from(row.int("iterations")?).map_err(decode_error)?,
        check_value: row.text("check_value")?,
    })
}

pub(super) fn expiry_from_row(row: &impl StoredRow) -> Result<RoleExpiry, sqlx::Error> {
    Ok(RoleExpiry {
        gun: row.text("gun")?,
        role: row.text("role")?,
        version: row.int("version")?,
        expires: from_unix_seconds(row.int("expires")?)?,
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(decode_error)
}

pub(super) fn audit_from_row(row: &impl StoredRow) -> Result<AuditEntry, sqlx::Error> {
    let action = row.text("action")?;
    let action = AuditAction::parse(&action)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown audit action {action:?}").into()))?;
    let roles: Vec<(String, i64)> = decode_json(&row.text("roles")?)?;
    Ok(AuditEntry {
        id: row.int("id")?,
        created_at: row.time("created_at")?,
        gun: row.text("gun")?,
        action,
        subject: row.text("subject")?,
        roles: roles
            .into_iter()
            .map(|(role, version)| RoleVersion { role, version })
            .collect(),
        key_ids: decode_json(&row.text("key_ids")?)?,
    })
}

/// Binds the shared column lists, in one order for both backends, on a
/// query of either. Each backend's SQL names the columns in the order
/// given here. One blanket impl, so the driver's bounds are spelled out once.
pub(super) trait Bind: Sized {
    fn text(self, value: &str) -> Self;
    fn int(self, value: i64) -> Self;
    fn bytes(self, value: &[u8]) -> Self;

    /// `(gun, role, version, sha256, data)` of `tuf_files`.
    fn bind_file(self, gun: &str, role: &str, version: i64, sha256: &str, data: &[u8]) -> Self {
        self.text(gun)
            .text(role)
            .int(version)
            .text(sha256)
            .bytes(data)
    }

    /// `(gun, version, sha256, category)` of `changefeed`.
    fn bind_change(self, gun: &str, version: i64, sha256: &str, category: ChangeCategory) -> Self {
        self.text(gun)
            .int(version)
            .text(sha256)
            .text(category.as_str())
    }

    /// `(key_id, gun, role, algorithm, public, sealed_private)` of
    /// `server_keys`.
    fn bind_key(self, key: &NewKey) -> Self {
        self.text(&key.key_id)
            .text(&key.gun)
            .text(&key.role)
            .text(&key.algorithm)
            .bytes(&key.public)
            .text(&key.sealed_private)
    }

    /// `(gun, action, subject, roles, key_ids)` of `audit_log`; the lists
    /// are stored as JSON text.
    fn bind_audit(self, entry: &NewAuditEntry) -> Result<Self> {
        // Pairs rather than objects: compact, and the order is the record's.
        let roles: Vec<(&str, i64)> = entry
            .roles
            .iter()
            .map(|r| (r.role.as_str(), r.version))
            .collect();
        let roles = serde_json::to_string(&roles).map_err(encode_error)?;
        let key_ids = serde_json::to_string(&entry.key_ids).map_err(encode_error)?;
        Ok(self
            .text(&entry.gun)
            .text(entry.action.as_str())
            .text(&entry.subject)
            .text(&roles)
            .text(&key_ids))
    }
}

impl<DB: Database> Bind for sqlx::query::Query<'_, DB, DB::Arguments>
where
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
{
    fn text(self, value: &str) -> Self {
        self.bind(value)
    }

    fn int(self, value: i64) -> Self {
        self.bind(value)
    }

    fn bytes(self, value: &[u8]) -> Self {
        self.bind(value)
    }
}

/// The audit record of a publish by `subject`: every file written.
pub(super) fn publish_audit(gun: &str, subject: &str, files: &[NewFile]) -> NewAuditEntry {
    NewAuditEntry {
        gun: gun.to_string(),
        action: AuditAction::Publish,
        subject: subject.to_string(),
        roles: files
            .iter()
            .map(|f| RoleVersion {
                role: f.role.clone(),
                version: f.version,
            })
            .collect(),
        key_ids: Vec::new(),
    }
}

/// A backend's changefeed and audit inserts, inside a write transaction.
pub(super) trait Records {
    async fn insert_change(
        &mut self,
        gun: &str,
        version: i64,
        sha256: &str,
        category: ChangeCategory,
    ) -> Result<()>;
    async fn insert_audit(&mut self, entry: &NewAuditEntry) -> Result<()>;
}

/// Records what a delete by `subject` did and returns it: a `deletion`
/// change if metadata went, and an audit record if anything went or was
/// retired.
pub(super) async fn record_delete(
    tx: &mut impl Records,
    gun: &str,
    subject: &str,
    deleted: Deleted,
) -> Result<Deleted> {
    if deleted.any() {
        tx.insert_change(gun, 0, "", ChangeCategory::Deletion)
            .await?;
    }
    if deleted.any() || !deleted.retired_keys.is_empty() {
        let entry = NewAuditEntry {
            gun: gun.to_string(),
            action: AuditAction::Delete,
            subject: subject.to_string(),
            roles: deleted.roles.clone(),
            key_ids: deleted.retired_keys.clone(),
        };
        tx.insert_audit(&entry).await?;
    }
    Ok(deleted)
}

/// The audit page size asked for, within 1..=[`MAX_AUDIT_PAGE`].
pub(super) fn audit_limit(limit: i64) -> i64 {
    limit.clamp(1, MAX_AUDIT_PAGE)
}

/// The refusal of `file` for `gun`: a version equal to or below one stored.
pub(super) fn conflict(gun: &str, file: &NewFile) -> Error {
    Error::Conflict {
        gun: gun.to_string(),
        role: file.role.clone(),
        version: file.version,
    }
}

pub(super) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The error of an insert of `key`: the primary key taken is
/// [`Error::KeyExists`].
pub(super) fn key_exists(err: sqlx::Error, key: &NewKey) -> Error {
    if is_unique_violation(&err) {
        Error::KeyExists {
            key_id: key.key_id.clone(),
        }
    } else {
        err.into()
    }
}

/// Commits `tx` if `outcome` is Ok, else rolls it back now (releasing its
/// locks before the next writer asks for them) and returns the error.
pub(super) async fn finish<DB: Database, T>(
    tx: Transaction<'static, DB>,
    outcome: Result<T>,
) -> Result<T> {
    match outcome {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            // A failed rollback is moot: the connection discards the
            // transaction when it goes back to the pool.
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

/// The bounds of one changefeed page (PROTOCOL.md §1.6), as Notary's
/// `GetChanges`: a negative ID means "from the newest", which only makes
/// sense backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChangePage {
    /// Newest first in the query; [`ChangePage::in_order`] turns it round.
    pub backwards: bool,
    pub limit: i64,
    /// Only IDs above this (forward).
    pub after: Option<i64>,
    /// Only IDs below this (backwards from a cursor; none from the newest).
    pub before: Option<i64>,
}

impl ChangePage {
    /// `None` for an empty page (`records == 0`).
    pub fn new(change_id: i64, records: i64) -> Option<Self> {
        let backwards = change_id < 0 || records < 0;
        let limit = i64::try_from(records.unsigned_abs()).unwrap_or(i64::MAX);
        if limit == 0 {
            return None;
        }
        let (after, before) = match (backwards, change_id > 0) {
            (false, _) => (Some(change_id), None),
            (true, true) => (None, Some(change_id)),
            (true, false) => (None, None),
        };
        Some(Self {
            backwards,
            limit,
            after,
            before,
        })
    }

    /// The page's rows, as selected, oldest first.
    pub fn in_order(self, mut changes: Vec<Change>) -> Vec<Change> {
        if self.backwards {
            changes.reverse();
        }
        changes
    }
}

/// The statements of one import, in a backend's SQL, inside the
/// transaction the backend opened (and locked as it needs); [`import`]
/// decides what is checked and written, and in which order.
pub(super) trait ImportWrites {
    /// How many metadata rows `gun` holds.
    async fn count_files(&mut self, gun: &str) -> Result<i64>;
    /// The checksum of the stored (gun, role, version), if any.
    async fn file_checksum(
        &mut self,
        gun: &str,
        role: &str,
        version: i64,
    ) -> Result<Option<String>>;
    /// Inserts `file` with its own checksum and creation time.
    async fn insert_file(&mut self, gun: &str, file: &ImportedFile) -> Result<()>;
    /// Called before changefeed records are read or written.
    async fn lock_changefeed(&mut self) -> Result<()>;
    async fn stored_change(&mut self, id: i64) -> Result<Option<Change>>;
    /// Inserts `change` with its own ID and time.
    async fn insert_imported_change(&mut self, change: &Change) -> Result<()>;
    /// Called after records were inserted with explicit IDs: later records
    /// must continue after the highest.
    async fn continue_changefeed(&mut self) -> Result<()>;
    /// The GUN and public key bytes of the stored key `key_id`, if any.
    async fn stored_key(&mut self, key_id: &str) -> Result<Option<(String, Vec<u8>)>>;
    /// Inserts the key with the times it had where it came from.
    async fn insert_key(&mut self, key: &ImportedKey) -> Result<()>;
    /// The IDs of the server keys of `gun`, retired or not.
    async fn server_keys(&mut self, gun: &str) -> Result<Vec<String>>;
    async fn apply_expiry(&mut self, gun: &str, changes: &ExpiryChanges) -> Result<()>;
}

/// The writes of one import (`Store::import_repository`): its files unless
/// the GUN already holds exactly these, then its changefeed records and
/// keys, each unless already stored identically. Anything stored that
/// differs is [`Error::ImportConflict`].
pub(super) async fn import(
    tx: &mut impl ImportWrites,
    repository: &ImportedRepository,
) -> Result<ImportOutcome> {
    let gun = repository.gun.as_str();
    let conflict = |what: String| Error::ImportConflict {
        gun: gun.to_string(),
        what,
    };
    let held = tx.count_files(gun).await?;
    let mut present = 0_i64;
    for file in &repository.files {
        match tx.file_checksum(gun, &file.role, file.version).await? {
            Some(sha256) if sha256 == file.sha256 => present += 1,
            Some(_) => return Err(conflict("metadata".into())),
            None => {}
        }
    }
    let files_present = files_already_imported(held, present, repository.files.len())
        .ok_or_else(|| conflict("metadata".into()))?;
    let mut wrote = false;
    if !files_present {
        for file in &repository.files {
            tx.insert_file(gun, file).await?;
            wrote = true;
        }
    }
    if !repository.changes.is_empty() {
        tx.lock_changefeed().await?;
    }
    for change in &repository.changes {
        match tx.stored_change(change.id).await? {
            Some(stored) => {
                if (&stored.gun, stored.version, &stored.sha256, stored.category)
                    != (&change.gun, change.version, &change.sha256, change.category)
                {
                    return Err(conflict(format!("changefeed ID {}", change.id)));
                }
            }
            None => {
                tx.insert_imported_change(change).await?;
                wrote = true;
            }
        }
    }
    if wrote && !repository.changes.is_empty() {
        tx.continue_changefeed().await?;
    }
    for imported in &repository.keys {
        let key = &imported.key;
        match tx.stored_key(&key.key_id).await? {
            Some((held_gun, public)) => {
                if held_gun != key.gun || public != key.public {
                    return Err(conflict(format!("key {}", key.key_id)));
                }
            }
            None => {
                tx.insert_key(imported).await?;
                wrote = true;
            }
        }
    }
    // After the keys: an imported snapshot signed by an imported server key
    // is server-signed.
    if !files_present {
        let changes = ExpiryChanges::of_import(repository, tx.server_keys(gun).await?);
        tx.apply_expiry(gun, &changes).await?;
    }
    Ok(if wrote {
        ImportOutcome::Imported
    } else {
        ImportOutcome::AlreadyPresent
    })
}

/// Whether an import finds the metadata it brings already stored (a
/// re-run), given `held` rows of the GUN, `present` of them identical to
/// imported ones, and `brought` imported files. `Some(false)`: nothing is
/// stored yet. `None`: other metadata is stored, a conflict.
fn files_already_imported(held: i64, present: i64, brought: usize) -> Option<bool> {
    if held == 0 {
        return Some(false);
    }
    let brought = i64::try_from(brought).unwrap_or(i64::MAX);
    (present == held && present == brought).then_some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_pages_follow_notary() {
        let page = |id, records| {
            ChangePage::new(id, records).map(|p| (p.backwards, p.after, p.before, p.limit))
        };
        assert_eq!(page(0, 0), None);
        assert_eq!(page(5, 0), None);
        assert_eq!(page(0, 3), Some((false, Some(0), None, 3)));
        assert_eq!(page(7, 3), Some((false, Some(7), None, 3)));
        assert_eq!(page(-1, 3), Some((true, None, None, 3)));
        assert_eq!(page(0, -3), Some((true, None, None, 3)));
        assert_eq!(page(7, -3), Some((true, None, Some(7), 3)));
        assert_eq!(page(0, i64::MIN), Some((true, None, None, i64::MAX)));
    }

    #[test]
    fn an_import_is_a_rerun_only_if_everything_matches() {
        assert_eq!(files_already_imported(0, 0, 3), Some(false));
        assert_eq!(files_already_imported(3, 3, 3), Some(true));
        assert_eq!(files_already_imported(4, 3, 3), None);
        assert_eq!(files_already_imported(3, 3, 4), None);
        assert_eq!(files_already_imported(3, 2, 3), None);
    }
}
