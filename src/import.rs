//! `notarium import`: copies a running notary-server + notary-signer
//! deployment into notarium's storage, one repository (GUN) at a time
//! (PROTOCOL.md §6.4).
//!
//! For each GUN: read its live rows; find what notary serves as current (the
//! newest timestamp, the snapshot it lists by checksum, the roles that
//! snapshot lists by checksum); verify that chain with the same validation
//! an upload goes through (`repo::validate`) plus the timestamp's signature
//! and snapshot hash; find every server-held key its root lists in the
//! signer's database and re-seal it; then write files, changefeed records
//! and keys in one transaction. A repository that fails any step is
//! reported and nothing of it is written, so an interrupted or partly
//! refused run leaves no half-imported repository and a re-run resumes.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;
use time::OffsetDateTime;

use crate::repo::validate::{StoredState, Upload, validate_update};
use crate::signer::{self, KeyService, Passphrase};
use crate::store::import::{ServerReader, SignerReader, SourceRepository, passphrase_variable};
use crate::store::{self, ImportOutcome, ImportedFile, ImportedKey, ImportedRepository, Store};
use crate::tuf::verify::{check_file_meta, verify_signatures};
use crate::tuf::{RoleName, Root, SignedFile, Snapshot, Timestamp};

/// A failure that stops the whole import (a database cannot be read or
/// written); per-repository problems are [`Outcome`]s instead.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("reading the notary databases failed")]
    Source(#[source] store::Error),
    #[error("writing notarium's database failed")]
    Target(#[source] store::Error),
    #[error("notarium's key store failed")]
    Keys(#[source] signer::Error),
}

/// What happened to one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Imported,
    /// An earlier run imported exactly this: nothing written.
    AlreadyImported,
    /// Deleted in the source: only its changefeed records were copied.
    DeletedInSource,
    /// Not imported; the source is fine but notarium cannot take it.
    Skipped(String),
    /// Not imported: the source itself is damaged or incomplete.
    Broken(String),
}

/// One report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GunReport {
    pub gun: String,
    pub outcome: Outcome,
    pub files: usize,
    pub changes: usize,
    pub keys: usize,
}

impl fmt::Display for GunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = format!(
            "{} files, {} changefeed records, {} server keys",
            self.files, self.changes, self.keys
        );
        match &self.outcome {
            Outcome::Imported => write!(f, "imported          {}: {counts}", self.gun),
            Outcome::AlreadyImported => write!(f, "already imported  {}: {counts}", self.gun),
            Outcome::DeletedInSource => write!(
                f,
                "deleted in source {}: {} changefeed records kept",
                self.gun, self.changes
            ),
            Outcome::Skipped(why) => write!(f, "skipped           {}: {why}", self.gun),
            Outcome::Broken(why) => write!(f, "broken in source  {}: {why}", self.gun),
        }
    }
}

/// Counts over all repositories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub imported: usize,
    pub already_imported: usize,
    pub deleted_in_source: usize,
    pub skipped: usize,
    pub broken: usize,
}

impl Summary {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Imported => self.imported += 1,
            Outcome::AlreadyImported => self.already_imported += 1,
            Outcome::DeletedInSource => self.deleted_in_source += 1,
            Outcome::Skipped(_) => self.skipped += 1,
            Outcome::Broken(_) => self.broken += 1,
        }
    }

    /// Whether every repository is in notarium now.
    pub fn complete(&self) -> bool {
        self.skipped == 0 && self.broken == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} imported, {} already imported, {} deleted in the source, {} skipped, {} broken \
             in the source",
            self.imported, self.already_imported, self.deleted_in_source, self.skipped, self.broken
        )
    }
}

/// GUN names read per query: bounded memory for any number of repositories.
const GUN_PAGE: i64 = 500;

/// Imports every repository of `server`, with keys from `signer`, into
/// `target` (whose keys `keys` seals). `passphrase_of(variable)` reads
/// notary-signer's passphrase environment variables. Each repository's line
/// goes to `report` as soon as it is done.
pub async fn import<S, R, K>(
    target: &S,
    keys: &KeyService<S>,
    server: &mut R,
    signer: &mut K,
    passphrase_of: &(dyn Fn(&str) -> Option<String> + Sync),
    now: OffsetDateTime,
    mut report: impl FnMut(&GunReport),
) -> Result<Summary, Error>
where
    S: Store,
    R: ServerReader,
    K: SignerReader,
{
    let mut summary = Summary::default();
    let mut after = String::new();
    loop {
        let page = server
            .guns_after(&after, GUN_PAGE)
            .await
            .map_err(Error::Source)?;
        let Some(last) = page.last() else {
            return Ok(summary);
        };
        after.clone_from(last);
        for gun in page {
            let source = server.repository(&gun).await.map_err(Error::Source)?;
            let line = import_one(target, keys, signer, passphrase_of, now, source).await?;
            summary.count(&line.outcome);
            report(&line);
        }
    }
}

/// Why a repository is not imported, decided before anything is written.
enum Refusal {
    Skipped(String),
    Broken(String),
}

async fn import_one<S: Store, K: SignerReader>(
    target: &S,
    keys: &KeyService<S>,
    signer: &mut K,
    passphrase_of: &(dyn Fn(&str) -> Option<String> + Sync),
    now: OffsetDateTime,
    source: SourceRepository,
) -> Result<GunReport, Error> {
    let mut line = GunReport {
        gun: source.gun.clone(),
        outcome: Outcome::Imported,
        files: source.files.len(),
        changes: source.changes.len(),
        keys: 0,
    };
    let prepared = prepare(keys, signer, passphrase_of, now, source).await?;
    let repository = match prepared {
        Ok(repository) => repository,
        Err(Refusal::Skipped(why)) => {
            line.outcome = Outcome::Skipped(why);
            return Ok(line);
        }
        Err(Refusal::Broken(why)) => {
            line.outcome = Outcome::Broken(why);
            return Ok(line);
        }
    };
    line.keys = repository.keys.len();
    let deleted = repository.files.is_empty();
    line.outcome = match target.import_repository(repository).await {
        Ok(ImportOutcome::Imported) if deleted => Outcome::DeletedInSource,
        Ok(ImportOutcome::AlreadyPresent) if deleted => Outcome::DeletedInSource,
        Ok(ImportOutcome::Imported) => Outcome::Imported,
        Ok(ImportOutcome::AlreadyPresent) => Outcome::AlreadyImported,
        Err(conflict @ store::Error::ImportConflict { .. }) => {
            Outcome::Skipped(format!("{conflict}; nothing of it was written"))
        }
        Err(other) => return Err(Error::Target(other)),
    };
    Ok(line)
}

/// Everything checked, keys re-sealed: the repository ready to write.
async fn prepare<S: Store, K: SignerReader>(
    keys: &KeyService<S>,
    signer: &mut K,
    passphrase_of: &(dyn Fn(&str) -> Option<String> + Sync),
    now: OffsetDateTime,
    source: SourceRepository,
) -> Result<Result<ImportedRepository, Refusal>, Error> {
    let gun = source.gun.clone();
    if let Err(error) = crate::repo::check_gun(&gun) {
        return Ok(Err(Refusal::Skipped(format!(
            "not a repository name notarium serves: {error}"
        ))));
    }
    if let Some(row) = source.corrupt.first() {
        return Ok(Err(Refusal::Broken(format!(
            "corrupted row: {} version {} is stored with sha256 {} but its data hashes to {}",
            row.role, row.version, row.stored_sha256, row.computed_sha256
        ))));
    }
    let mut repository = ImportedRepository {
        gun: gun.clone(),
        files: Vec::new(),
        changes: source.changes,
        keys: Vec::new(),
    };
    if source.files.is_empty() {
        return Ok(Ok(repository));
    }
    let root = match verify_current(&gun, &source.files, now) {
        Ok(root) => root,
        Err(why) => return Ok(Err(Refusal::Broken(why))),
    };
    // Server-held keys: the timestamp key always, the snapshot key when
    // the server holds it (PROTOCOL.md §6.4).
    for role in ["timestamp", "snapshot"] {
        let listed = root
            .roles
            .get(role)
            .map(|r| r.keyids.clone())
            .unwrap_or_default();
        let mut found = 0;
        for key_id in &listed {
            let Some(row) = signer.key(key_id).await.map_err(Error::Source)? else {
                continue;
            };
            let variable = passphrase_variable(&row.passphrase_alias);
            let Some(passphrase) = passphrase_of(&variable) else {
                return Ok(Err(Refusal::Skipped(format!(
                    "{role} key {key_id} is sealed under alias {:?}: set {variable} to its \
                     passphrase",
                    row.passphrase_alias
                ))));
            };
            match keys
                .reseal_notary_key(&row, &gun, Passphrase::new(passphrase))
                .await
            {
                Ok(mut key) => {
                    if key.role.is_empty() {
                        key.role = role.to_string();
                    }
                    repository.keys.push(ImportedKey {
                        key,
                        created_at: row.created_at,
                        last_used: row.last_used,
                    });
                    found += 1;
                }
                Err(signer::Error::WrongPassphrase) => {
                    return Ok(Err(Refusal::Skipped(format!(
                        "{role} key {key_id}: the passphrase in {variable} (alias {:?}) does not \
                         open it",
                        row.passphrase_alias
                    ))));
                }
                Err(signer::Error::Store(error)) => return Err(Error::Target(error)),
                Err(error @ signer::Error::Sealing { .. }) => return Err(Error::Keys(error)),
                Err(error) => {
                    return Ok(Err(Refusal::Broken(format!(
                        "{role} key {key_id}: {error}"
                    ))));
                }
            }
        }
        if role == "timestamp" && found == 0 {
            return Ok(Err(Refusal::Broken(format!(
                "no timestamp key its root lists ({}) is in notary-signer's database",
                listed.join(", ")
            ))));
        }
    }
    repository.files = source.files;
    Ok(Ok(repository))
}

/// Finds what notary serves as current and verifies it; returns its root.
fn verify_current(gun: &str, files: &[ImportedFile], now: OffsetDateTime) -> Result<Root, String> {
    let by_checksum = |role: &str, sha256: &str| {
        files
            .iter()
            .find(|f| f.role == role && f.sha256 == sha256)
            .ok_or_else(|| format!("{role} with sha256 {sha256} is listed but not stored"))
    };
    let parse = |file: &ImportedFile| {
        SignedFile::parse(&file.data)
            .map_err(|e| format!("{} version {} does not parse: {e}", file.role, file.version))
    };
    let timestamp_row = files
        .iter()
        .filter(|f| f.role == "timestamp")
        .max_by_key(|f| f.version)
        .ok_or("no timestamp is stored")?;
    let timestamp_file = parse(timestamp_row)?;
    let timestamp: Timestamp = timestamp_file
        .body("timestamp")
        .map_err(|e| format!("timestamp: {e}"))?;
    let snapshot_meta = timestamp
        .meta
        .get("snapshot")
        .ok_or("the newest timestamp lists no snapshot")?;
    let snapshot_sha = hex::encode(
        snapshot_meta
            .sha256()
            .ok_or("timestamp: no snapshot sha256")?,
    );
    let snapshot_row = by_checksum("snapshot", &snapshot_sha)?;
    if let Some(newer) = files
        .iter()
        .filter(|f| f.role == "snapshot" && f.version > snapshot_row.version)
        .max_by_key(|f| f.version)
    {
        return Err(format!(
            "snapshot version {} is stored but the newest timestamp points to version {}",
            newer.version, snapshot_row.version
        ));
    }
    let snapshot_file = parse(snapshot_row)?;
    let snapshot: Snapshot = snapshot_file
        .body("snapshot")
        .map_err(|e| format!("snapshot: {e}"))?;

    let mut uploads = vec![Upload {
        role: RoleName::Snapshot,
        file: snapshot_file.clone(),
    }];
    let mut listed: BTreeMap<String, ()> = BTreeMap::new();
    for (role, meta) in &snapshot.meta {
        let sha = hex::encode(
            meta.sha256()
                .ok_or_else(|| format!("snapshot: no sha256 for {role}"))?,
        );
        let row = by_checksum(role, &sha)?;
        // notarium serves each role's highest version as current; notary
        // what the timestamp points to. They must agree.
        if let Some(newer) = files
            .iter()
            .filter(|f| f.role == *role && f.version > row.version)
            .max_by_key(|f| f.version)
        {
            return Err(format!(
                "{role} version {} is stored but the newest timestamp points to version {}",
                newer.version, row.version
            ));
        }
        let role_name = RoleName::parse(role).map_err(|e| format!("{role}: {e}"))?;
        uploads.push(Upload {
            role: role_name,
            file: parse(row)?,
        });
        listed.insert(role.clone(), ());
    }
    if !listed.contains_key("root") || !listed.contains_key("targets") {
        return Err("the current snapshot does not list root and targets".into());
    }
    // The same checks an upload of the whole repository gets (root
    // certificates and signatures, targets and delegations, snapshot). A
    // rotated root is checked as the rotation it was: against the root
    // before it (PROTOCOL.md §3.2), which notary keeps.
    let mut state = StoredState::default();
    let current_root = uploads
        .iter()
        .find(|u| u.role == RoleName::Root)
        .map(|u| u.file.body::<Root>("root"))
        .transpose()
        .map_err(|e| format!("root: {e}"))?;
    if let Some(version) = current_root.map(|r| r.version).filter(|v| *v > 1) {
        let previous = files
            .iter()
            .find(|f| f.role == "root" && f.version == version - 1)
            .ok_or_else(|| format!("root version {} is not stored", version - 1))?;
        state.root = Some(parse(previous)?);
    }
    let validated = validate_update(gun, &state, uploads, now)
        .map_err(|e| format!("the current metadata does not verify: {e}"))?;
    let root = validated.root;
    let timestamp_role = root
        .trusted_role(&RoleName::Timestamp)
        .map_err(|e| format!("root: {e}"))?;
    verify_signatures(&timestamp_file, &timestamp_role)
        .map_err(|e| format!("the newest timestamp does not verify: {e}"))?;
    check_file_meta("snapshot", snapshot_file.raw(), snapshot_meta)
        .map_err(|e| format!("the newest timestamp: {e}"))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "fixtures/notary-0.7/notary-cli";
    const GUN: &str = "notary.test/fixtures/app";

    fn file(role: &str, version: i64, name: &str) -> ImportedFile {
        let data = std::fs::read(format!("{}/{DIR}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        ImportedFile {
            role: role.into(),
            version,
            sha256: hex::encode(crate::tuf::sha256(&data)),
            data,
            created_at: time::macros::datetime!(2026-11-23 07:31:28 UTC),
        }
    }

    fn repository() -> Vec<ImportedFile> {
        vec![
            file("root", 1, "1.root.json"),
            file("root", 2, "2.root.json"),
            file("targets", 4, "targets.json"),
            file("targets/releases", 1, "targets/releases.json"),
            file("snapshot", 6, "snapshot.json"),
            file("timestamp", 5, "timestamp.json"),
        ]
    }

    const NOW: OffsetDateTime = time::macros::datetime!(2026-11-24 00:00 UTC);

    #[test]
    fn the_current_chain_of_a_real_notary_repository_verifies() {
        let root = verify_current(GUN, &repository(), NOW).unwrap();
        assert_eq!(root.version, 2);
        // The same files under another GUN: the root certificate's CN no
        // longer matches.
        let error = verify_current("notary.test/other/app", &repository(), NOW).unwrap_err();
        assert!(error.contains("does not verify"), "{error}");
    }

    #[test]
    fn a_stored_version_newer_than_the_current_one_is_refused() {
        let mut files = repository();
        let mut newer = file("targets", 5, "targets.json");
        newer.data.push(b' ');
        newer.sha256 = hex::encode(crate::tuf::sha256(&newer.data));
        files.push(newer);
        let error = verify_current(GUN, &files, NOW).unwrap_err();
        assert!(
            error.contains(
                "targets version 5 is stored but the newest timestamp points to version 4"
            ),
            "{error}"
        );
    }

    #[test]
    fn missing_or_altered_current_files_are_named() {
        let mut files = repository();
        files.retain(|f| f.role != "snapshot");
        let error = verify_current(GUN, &files, NOW).unwrap_err();
        assert!(error.starts_with("snapshot with sha256"), "{error}");

        let mut files = repository();
        files.retain(|f| f.role != "timestamp");
        assert_eq!(
            verify_current(GUN, &files, NOW).unwrap_err(),
            "no timestamp is stored"
        );

        // A timestamp signed by a key its root does not list.
        let mut files = repository();
        let stamp = files.iter_mut().find(|f| f.role == "timestamp").unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&stamp.data).unwrap();
        json["signatures"][0]["keyid"] = serde_json::json!("0".repeat(64));
        stamp.data = serde_json::to_vec(&json).unwrap();
        let error = verify_current(GUN, &files, NOW).unwrap_err();
        assert!(
            error.contains("the newest timestamp does not verify"),
            "{error}"
        );
    }
}
