//! Validation of an upload against the stored state (PROTOCOL.md §3,
//! `server/handlers/validation.go`, `tuf/builder.go`,
//! `trustpinning/certs.go`). Pure: everything it needs is loaded first, and
//! the clock is a parameter.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::policy::names;
use crate::policy::names::NameError;
use crate::tuf::certs::{RootCertificates, common_name};
use crate::tuf::chain;
use crate::tuf::roles::path_allowed;
use crate::tuf::verify::{check_expiry, check_file_meta, check_hashes, verify_signatures};
use crate::tuf::{Error as TufError, RoleName, Root, SignedFile, Snapshot, Targets, TrustedRole};

use super::error::{Error, Refusal, Rejection};

/// One uploaded metadata file.
#[derive(Debug, Clone)]
pub struct Upload {
    pub role: RoleName,
    pub file: SignedFile,
}

/// What the server has for a GUN, as far as validating an upload needs.
#[derive(Debug, Default)]
pub struct StoredState {
    pub root: Option<SignedFile>,
    pub snapshot: Option<SignedFile>,
    /// Newest stored version of every role.
    pub versions: BTreeMap<String, i64>,
    /// Current stored targets and delegation files the upload builds on
    /// (parents of uploaded delegations) or replaces (the uploaded roles).
    pub targets: BTreeMap<RoleName, SignedFile>,
}

/// An upload that passed validation.
#[derive(Debug)]
pub struct ValidatedUpdate {
    /// The root in force after this update (new or stored).
    pub root: Root,
    pub root_file: SignedFile,
    pub new_root: bool,
    /// Uploaded targets and delegation files with their bodies, parents
    /// first.
    pub targets: Vec<(RoleName, SignedFile, Targets)>,
    /// Every targets-like file read for this update (uploaded or the stored
    /// parents), whose snapshot entries must be current.
    pub loaded: BTreeMap<RoleName, SignedFile>,
    /// The snapshot the client signed, if it sent one.
    pub snapshot: Option<SignedFile>,
}

/// A file failed a TUF check; `kind` names the file.
fn bad(kind: Rejection, error: TufError) -> Error {
    Error::rejected(kind, Refusal::Tuf(error))
}

/// A structure failure: a key under a foreign ID gets its own variant, the
/// rest Notary's `<role> type metadata invalid` text.
fn structure_error(kind: Rejection, error: TufError) -> Error {
    match error {
        TufError::ListedKeyIdMismatch {
            role,
            listed,
            computed,
        } => Error::KeyIdMismatch {
            role,
            listed,
            computed,
        },
        other => bad(kind, other),
    }
}

/// Root certificate common names go through the one GUN grammar
/// (`policy::names`) too: a wildcard CN must be the start of a name spelled
/// the way requests spell names. Returns the keys it drops, with why.
fn screen_common_names(certificates: &mut RootCertificates) -> Vec<(String, NameError)> {
    let mut misnamed = Vec::new();
    let trusted = std::mem::take(&mut certificates.trusted);
    for (keyid, key) in trusted {
        let cn = key
            .leaf_certificate()
            .ok()
            .and_then(|cert| common_name(&cert))
            .unwrap_or_default();
        match names::check_common_name(&cn) {
            Ok(()) => {
                certificates.trusted.insert(keyid, key);
            }
            Err(error) => misnamed.push((keyid, error)),
        }
    }
    misnamed
}

fn check_newer(role: &RoleName, version: i64, state: &StoredState) -> Result<(), Error> {
    if let Some(&current) = state.versions.get(role.as_str()) {
        if version <= current {
            return Err(Error::StaleVersion {
                role: role.to_string(),
                version,
                current,
            });
        }
    }
    Ok(())
}

/// Runs the whole validation pipeline of §3.1 except snapshot and timestamp
/// generation, which need the signer.
pub fn validate_update(
    gun: &str,
    state: &StoredState,
    uploads: Vec<Upload>,
    now: OffsetDateTime,
) -> Result<ValidatedUpdate, Error> {
    let mut root_upload = None;
    let mut snapshot_upload = None;
    let mut targets_uploads = Vec::new();
    for upload in uploads {
        match upload.role {
            RoleName::Root => root_upload = Some(upload.file),
            RoleName::Snapshot => snapshot_upload = Some(upload.file),
            // The server always makes the timestamp itself.
            RoleName::Timestamp => {}
            RoleName::Targets | RoleName::Delegation(_) => targets_uploads.push(upload),
        }
    }

    let stored_root = match &state.root {
        Some(file) => Some(file.body::<Root>("root").map_err(|error| {
            Error::rejected(
                Rejection::BadRoot,
                Refusal::StoredUnreadable {
                    role: "root".into(),
                    error,
                },
            )
        })?),
        None => None,
    };
    let (root, root_file, new_root) = match (root_upload, &state.root, stored_root) {
        (Some(file), _, stored) => {
            let root = validate_root(gun, stored.as_ref(), &file, now)?;
            (root, file, true)
        }
        (None, Some(stored), Some(root)) => (root, stored.clone(), false),
        // A stored root always parsed above, so this is the first publish.
        (None, _, _) => return Err(Error::rejected(Rejection::Validation, Refusal::NoRoot)),
    };

    // Parents before children, as Notary's builder loads them.
    targets_uploads
        .sort_by(|a, b| (a.role.depth(), a.role.as_str()).cmp(&(b.role.depth(), b.role.as_str())));
    let mut loaded: BTreeMap<RoleName, SignedFile> = BTreeMap::new();
    let mut bodies: BTreeMap<RoleName, Targets> = BTreeMap::new();
    // Each body lives once, in `bodies`, until the result takes it: a
    // 10,000-target body is several MiB.
    let mut validated: Vec<(RoleName, SignedFile)> = Vec::new();
    for upload in targets_uploads {
        let body = validate_targets(&upload, &root, state, &mut loaded, &mut bodies, now)?;
        bodies.insert(upload.role.clone(), body);
        loaded.insert(upload.role.clone(), upload.file.clone());
        validated.push((upload.role, upload.file));
    }

    if new_root {
        check_targets_follow_root(&root, state, &loaded)?;
    }

    let snapshot = match snapshot_upload {
        Some(file) => {
            validate_snapshot(&file, &root, &root_file, &loaded, state, now)?;
            check_snapshot_consistency(&file, &bodies, &validated, state)?;
            Some(file)
        }
        None => None,
    };

    let targets = validated
        .into_iter()
        .filter_map(|(role, file)| bodies.remove(&role).map(|body| (role, file, body)))
        .collect();
    Ok(ValidatedUpdate {
        root,
        root_file,
        new_root,
        targets,
        loaded,
        snapshot,
    })
}

fn validate_root(
    gun: &str,
    stored: Option<&Root>,
    file: &SignedFile,
    now: OffsetDateTime,
) -> Result<Root, Error> {
    let root: Root = file.body("root").map_err(|e| bad(Rejection::BadRoot, e))?;
    let current = stored.map_or(1, |r| r.version);
    if root.version != current && root.version != current + 1 {
        return Err(Error::rejected(
            Rejection::BadRoot,
            Refusal::RootVersionNotIncremented {
                current,
                new: root.version,
            },
        ));
    }
    if let Some(stored) = stored {
        if root.version == stored.version {
            return Err(Error::StaleVersion {
                role: "root".into(),
                version: root.version,
                current: stored.version,
            });
        }
    }
    root.validate_structure()
        .map_err(|e| structure_error(Rejection::BadRoot, e))?;

    let mut certificates = chain::own_root_certificates(&root, gun, now);
    let misnamed = screen_common_names(&mut certificates);
    if certificates.trusted.is_empty() {
        return Err(Error::rejected(
            Rejection::BadRoot,
            Refusal::NoTrustedRootCertificate {
                rejected: certificates.rejected,
                misnamed,
            },
        ));
    }
    if let Some(previous) = stored {
        // A rotation must satisfy the previous root's threshold with the
        // previous root's certificates (expired ones included).
        let threshold = previous.roles.get("root").map_or(1, |r| r.threshold);
        chain::check_rotation(previous, gun, file).map_err(|error| {
            Error::rejected(
                Rejection::BadRoot,
                Refusal::RootRotationUnsigned {
                    version: root.version,
                    previous: previous.version,
                    threshold,
                    error,
                },
            )
        })?;
    }
    let own_role = chain::root_role(&root, certificates.trusted);
    verify_signatures(file, &own_role).map_err(|error| {
        Error::rejected(Rejection::BadRoot, Refusal::RootNotSelfSigned { error })
    })?;
    check_expiry(&RoleName::Root, root.expires.at, now).map_err(|e| bad(Rejection::BadRoot, e))?;
    Ok(root)
}

/// The metadata of `role` this update sees: uploaded earlier in this
/// request, or stored.
fn targets_body(
    role: &RoleName,
    state: &StoredState,
    loaded: &mut BTreeMap<RoleName, SignedFile>,
    bodies: &mut BTreeMap<RoleName, Targets>,
) -> Result<Option<Targets>, Error> {
    if let Some(body) = bodies.get(role) {
        return Ok(Some(body.clone()));
    }
    let Some(file) = state.targets.get(role) else {
        return Ok(None);
    };
    let body: Targets = file.body(role.as_str()).map_err(|error| {
        Error::rejected(
            Rejection::BadTargets,
            Refusal::StoredUnreadable {
                role: role.to_string(),
                error,
            },
        )
    })?;
    loaded.insert(role.clone(), file.clone());
    bodies.insert(role.clone(), body.clone());
    Ok(Some(body))
}

/// Keys, threshold and effective paths (`RestrictDelegationPathPrefixes`
/// down the chain) for a targets-like role.
fn authority(
    role: &RoleName,
    root: &Root,
    state: &StoredState,
    loaded: &mut BTreeMap<RoleName, SignedFile>,
    bodies: &mut BTreeMap<RoleName, Targets>,
) -> Result<(TrustedRole, Vec<String>), Error> {
    let Some(parent) = role.parent() else {
        let trusted = root
            .trusted_role(&RoleName::Targets)
            .map_err(|e| bad(Rejection::BadRoot, e))?;
        return Ok((trusted, chain::top_level_paths()));
    };
    let (_, parent_paths) = authority(&parent, root, state, loaded, bodies)?;
    let parent_body = targets_body(&parent, state, loaded, bodies)?.ok_or_else(|| {
        Error::rejected(
            Rejection::BadTargets,
            Refusal::ParentUnpublished {
                role: role.clone(),
                parent: parent.clone(),
            },
        )
    })?;
    chain::delegation_authority(&parent_body, &parent_paths, role).map_err(|_| {
        Error::rejected(
            Rejection::BadTargets,
            Refusal::NotDelegated {
                role: role.clone(),
                parent: parent.clone(),
            },
        )
    })
}

fn validate_targets(
    upload: &Upload,
    root: &Root,
    state: &StoredState,
    loaded: &mut BTreeMap<RoleName, SignedFile>,
    bodies: &mut BTreeMap<RoleName, Targets>,
    now: OffsetDateTime,
) -> Result<Targets, Error> {
    let role = &upload.role;
    let body: Targets = upload
        .file
        .body(role.as_str())
        .map_err(|e| bad(Rejection::BadTargets, e))?;
    body.validate_structure(role)
        .map_err(|e| structure_error(Rejection::BadTargets, e))?;
    let (trusted, paths) = authority(role, root, state, loaded, bodies)?;
    verify_signatures(&upload.file, &trusted).map_err(|e| bad(Rejection::BadTargets, e))?;
    check_expiry(role, body.expires.at, now).map_err(|e| bad(Rejection::BadTargets, e))?;
    check_newer(role, body.version, state)?;
    if let Some(outside) = body.targets.keys().find(|name| !path_allowed(name, &paths)) {
        return Err(Error::rejected(
            Rejection::BadTargets,
            Refusal::TargetOutsidePaths {
                target: outside.clone(),
                role: role.clone(),
                paths,
            },
        ));
    }
    Ok(body)
}

/// A root that changes the targets keys must come with targets signed by
/// them, or clients could no longer verify the repository.
fn check_targets_follow_root(
    root: &Root,
    state: &StoredState,
    loaded: &BTreeMap<RoleName, SignedFile>,
) -> Result<(), Error> {
    let current = loaded
        .get(&RoleName::Targets)
        .or_else(|| state.targets.get(&RoleName::Targets));
    let Some(targets) = current else {
        return Err(Error::rejected(
            Rejection::BadHierarchy { missing: "targets" },
            Refusal::TargetsMissing,
        ));
    };
    let trusted = root
        .trusted_role(&RoleName::Targets)
        .map_err(|e| bad(Rejection::BadRoot, e))?;
    verify_signatures(targets, &trusted).map_err(|error| {
        Error::rejected(
            Rejection::BadRoot,
            Refusal::TargetsNotSignedByNewKeys {
                root_version: root.version,
                error,
            },
        )
    })
}

fn validate_snapshot(
    file: &SignedFile,
    root: &Root,
    root_file: &SignedFile,
    loaded: &BTreeMap<RoleName, SignedFile>,
    state: &StoredState,
    now: OffsetDateTime,
) -> Result<(), Error> {
    let body: Snapshot = file
        .body("snapshot")
        .map_err(|e| bad(Rejection::BadSnapshot, e))?;
    body.validate_structure()
        .map_err(|e| bad(Rejection::BadSnapshot, e))?;
    let trusted = root
        .trusted_role(&RoleName::Snapshot)
        .map_err(|e| bad(Rejection::BadRoot, e))?;
    verify_signatures(file, &trusted).map_err(|e| bad(Rejection::BadSnapshot, e))?;
    check_expiry(&RoleName::Snapshot, body.expires.at, now)
        .map_err(|e| bad(Rejection::BadSnapshot, e))?;
    check_newer(&RoleName::Snapshot, body.version, state)?;
    // The snapshot must name the exact bytes of root and of every targets
    // file this update loaded (`loadedNotChecksummed` in the builder).
    let mut checked: Vec<(&str, &SignedFile)> = vec![("root", root_file)];
    checked.extend(loaded.iter().map(|(role, file)| (role.as_str(), file)));
    for (role, file) in checked {
        let missing = || TufError::NoChecksums {
            role: role.to_string(),
        };
        let result = match body.meta.get(role) {
            Some(meta) => check_hashes(role, file.raw(), meta),
            None => Err(missing()),
        };
        result.map_err(|e| bad(Rejection::BadSnapshot, e))?;
    }
    Ok(())
}

/// A client snapshot must describe the repository as it will stand after
/// this update, not only the files the update touched: every targets-like
/// entry names the current bytes of a role the server has (uploaded now or
/// stored), and no role that is still delegated and published is left out.
/// Otherwise a client holding the snapshot key could point clients back at
/// superseded targets or delegation files, at files that do not exist, or
/// hide a delegation, while the server's own checks pass.
fn check_snapshot_consistency(
    file: &SignedFile,
    bodies: &BTreeMap<RoleName, Targets>,
    validated: &[(RoleName, SignedFile)],
    state: &StoredState,
) -> Result<(), Error> {
    let body: Snapshot = file
        .body("snapshot")
        .map_err(|e| bad(Rejection::BadSnapshot, e))?;
    // The current file and version of every targets-like role after this
    // update.
    let mut current: BTreeMap<RoleName, (&SignedFile, i64)> = BTreeMap::new();
    for (role, stored) in &state.targets {
        let version = state.versions.get(role.as_str()).copied().unwrap_or(0);
        current.insert(role.clone(), (stored, version));
    }
    for (role, file) in validated {
        let version = bodies.get(role).map_or(0, |body| body.version);
        current.insert(role.clone(), (file, version));
    }

    for (name, meta) in &body.meta {
        if name == "root" {
            continue; // checked against the root in force by validate_snapshot
        }
        let role = RoleName::parse(name)
            .ok()
            .filter(RoleName::is_targets_like)
            .ok_or_else(|| Error::SnapshotUnknownRole {
                role: name.chars().take(256).collect(),
            })?;
        match current.get(&role) {
            Some((bytes, version)) => {
                check_file_meta(name, bytes.raw(), meta).map_err(|_| Error::SnapshotStale {
                    role: name.clone(),
                    current: *version,
                })?;
            }
            // Stored, but its bytes were not loaded: it cannot be shown to
            // be current, so it is not taken on trust.
            None if state.versions.contains_key(name.as_str()) => {
                return Err(Error::SnapshotStale {
                    role: name.clone(),
                    current: state.versions.get(name.as_str()).copied().unwrap_or(0),
                });
            }
            None => {
                return Err(Error::SnapshotUnknownRole { role: name.clone() });
            }
        }
    }

    // Walk the delegation tree from targets through the current bodies:
    // every delegated role with a published file must be listed.
    let mut pending = vec![RoleName::Targets];
    let mut visited = std::collections::BTreeSet::new();
    while let Some(parent) = pending.pop() {
        if !visited.insert(parent.clone()) {
            continue;
        }
        // Borrowed when already parsed: a large targets body is not copied.
        let parent_body = match bodies.get(&parent) {
            Some(body) => Some(std::borrow::Cow::Borrowed(body)),
            None => current
                .get(&parent)
                .and_then(|(file, _)| file.body::<Targets>(parent.as_str()).ok())
                .map(std::borrow::Cow::Owned),
        };
        let Some(parent_body) = parent_body else {
            continue;
        };
        for delegated in &parent_body.delegations.roles {
            let Ok(child) = RoleName::parse(&delegated.name) else {
                continue;
            };
            if !current.contains_key(&child) {
                continue; // delegated, never published: nothing to list
            }
            if !body.meta.contains_key(child.as_str()) {
                return Err(Error::SnapshotDropsRole {
                    role: child.to_string(),
                    parent: parent.to_string(),
                });
            }
            pending.push(child);
        }
    }
    Ok(())
}
