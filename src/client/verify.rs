//! The TUF client rules of PROTOCOL.md §9.1 over a [`Source`]: root from the
//! pinned or cached root through every rotation, timestamp, snapshot,
//! targets and the delegations that may sign the wanted name, each checked
//! for signatures, expiry, hashes and lengths, and versions against what
//! was verified before. Step numbers refer to §9.1.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use der::Encode;
use time::OffsetDateTime;

use super::cache::{Seen, TrustDir};
use super::fetch::Source;
use super::{Error, Verified};
use crate::policy::delegation_ca::TrustAnchors;
use crate::tuf::certs::{CertificateProblem, RootCertificates, root_certificates, short_id};
use crate::tuf::chain;
use crate::tuf::roles::path_allowed;
use crate::tuf::verify::{check_expiry, check_file_meta, check_hashes, verify_signatures};
use crate::tuf::{
    Error as TufError, FileMeta, PublicKey, RoleName, Root, SignedFile, Snapshot, Targets,
    Timestamp, TrustedRole,
};

/// notary's cap for a root whose checksum is not known
/// (`notary.MaxDownloadSize`).
const MAX_ROOT_BYTES: u64 = 100 << 20;
/// notary's cap for timestamp.json.
const MAX_TIMESTAMP_BYTES: u64 = 1 << 20;
/// Root versions followed in one run at most (a server claiming version
/// 2^31 must not buy two billion downloads).
const MAX_ROOT_ROTATIONS: i64 = 1000;
/// Delegation files read at most, whatever the snapshot lists.
const MAX_DELEGATIONS: usize = 1000;

/// What anchors trust in a root the cache does not already vouch for
/// (notary's `trust_pinning`).
#[derive(Debug, Clone)]
pub enum Anchor {
    /// Trust on first use (a root with valid certificates for the GUN).
    Tofu,
    /// notary's `disable_tofu`: only a root the cache already holds is
    /// trusted.
    CacheOnly,
    /// `certs`: the root must be signed by keys with these IDs (the ID in
    /// root.json or the key's canonical ID, as `notary key list` shows it).
    KeyIds(Vec<String>),
    /// The root must be signed by the keys of these certificates (DER).
    Certificates(Vec<Vec<u8>>),
    /// `ca`: the root certificates must be issued by one of these CAs.
    Ca(TrustAnchors),
}

/// The tag to resolve, or a digest to find among the targets.
#[derive(Debug, Clone)]
pub enum Wanted {
    Tag(String),
    Digest(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub gun: String,
    /// The server's URL, for messages.
    pub server: String,
    pub now: OffsetDateTime,
    pub anchor: Anchor,
}

fn describe(problem: &CertificateProblem) -> String {
    match problem {
        CertificateProblem::NotCertificate { keytype } => {
            format!("a plain {keytype} key, not a certificate")
        }
        CertificateProblem::Unreadable(e) => format!("unreadable certificate: {e}"),
        CertificateProblem::LeafCount => "not exactly one leaf certificate".into(),
        CertificateProblem::CommonNameMismatch { cn, gun } => {
            format!("certificate for {cn:?}, not for {gun:?}")
        }
        CertificateProblem::ValidityWindow { cn } => format!("{cn:?}: invalid validity window"),
        CertificateProblem::Sha1Signature { cn } => format!("{cn:?}: SHA-1 signature"),
        CertificateProblem::WeakRsa { cn, bits, .. } => format!("{cn:?}: {bits}-bit RSA"),
        CertificateProblem::NotYetValid { cn, .. } => format!("{cn:?}: not valid yet"),
        CertificateProblem::Expired { cn, not_after } => {
            format!("{cn:?}: certificate expired at {not_after}")
        }
    }
}

fn rejected_text(certs: &RootCertificates) -> String {
    certs
        .rejected
        .iter()
        .map(|r| format!("key {}: {}", short_id(&r.keyid), describe(&r.reason)))
        .collect::<Vec<_>>()
        .join("; ")
}

struct Run<'a, S: Source> {
    source: &'a S,
    options: &'a Options,
    /// Where files fetched by hash are kept between runs, if anywhere.
    files: Option<PathBuf>,
    /// Names of the kept files this run used (the rest are pruned).
    used: RefCell<BTreeSet<String>>,
    /// Signature checks recorded by earlier runs: kept file name →
    /// [`fingerprint`] of the role it met.
    checked_before: BTreeMap<String, String>,
    /// The checks that hold for this run's files (the next record).
    checked_now: RefCell<BTreeMap<String, String>>,
    /// Roles whose signature check was taken from the record.
    reused: RefCell<Vec<String>>,
}

/// The name a file fetched by hash is kept under.
fn kept_name(role: &str, sha256: &[u8]) -> String {
    format!("{role}.{}.json", hex::encode(sha256)).replace('/', "%")
}

/// What a signature check depended on besides the file's bytes: the role,
/// its threshold and its keys (by listed and computed key ID; a computed ID
/// is the SHA-256 of the key itself).
fn fingerprint(role: &TrustedRole) -> String {
    let mut text = format!("{}\n{}\n", role.name, role.threshold);
    for (listed, key) in &role.keys {
        text.push_str(&format!("{listed}={}\n", key.id()));
    }
    hex::encode(crate::tuf::sha256(text.as_bytes()))
}

impl<S: Source> Run<'_, S> {
    fn gun(&self) -> String {
        self.options.gun.clone()
    }

    fn invalid(&self, role: &str) -> impl Fn(TufError) -> Error + use<'_, S> {
        let role = role.to_string();
        move |source| Error::Invalid {
            gun: self.gun(),
            role: role.clone(),
            source,
        }
    }

    fn fetch(&self, file: &str, cap: u64) -> Result<Vec<u8>, Error> {
        self.source.get(file, cap)?.ok_or_else(|| Error::Missing {
            gun: self.gun(),
            file: file.to_string(),
        })
    }

    /// A file named by its sha256 in `meta`, checked against the meta.
    fn fetch_by_hash(&self, role: &str, meta: &FileMeta) -> Result<SignedFile, Error> {
        let hash = meta.sha256().ok_or_else(|| {
            self.invalid(role)(TufError::NoChecksums {
                role: role.to_string(),
            })
        })?;
        let cap = u64::try_from(meta.length).unwrap_or(0);
        let name = format!("{role}.{}.json", hex::encode(hash));
        // A kept copy is as good as a download: it must match the same
        // trusted hash and length.
        let kept = kept_name(role, hash);
        if let Some(dir) = &self.files {
            if let Ok(bytes) = std::fs::read(dir.join(&kept)) {
                if check_file_meta(role, &bytes, meta).is_ok() {
                    self.used.borrow_mut().insert(kept);
                    return SignedFile::parse_owned(bytes).map_err(self.invalid(role));
                }
            }
        }
        let bytes = self.fetch(&name, cap)?;
        check_file_meta(role, &bytes, meta).map_err(self.invalid(role))?;
        if let Some(dir) = &self.files {
            // Keeping a copy only saves a download later; failing to is
            // not an error.
            if std::fs::create_dir_all(dir).is_ok()
                && std::fs::write(dir.join(&kept), &bytes).is_ok()
            {
                self.used.borrow_mut().insert(kept);
            }
        }
        SignedFile::parse_owned(bytes).map_err(self.invalid(role))
    }

    /// [`Run::fetch_by_hash`], with signatures that meet `trusted`.
    ///
    /// The check is skipped when an earlier run recorded that the file with
    /// this sha256 met the threshold of the same role with the same keys:
    /// the bytes were just checked against that hash, which signed metadata
    /// verified in this run names, so the check could not come out
    /// differently. Expiry, versions and structure are still checked by the
    /// caller on every run, since they depend on the clock and on history.
    fn fetch_verified(
        &self,
        role: &str,
        meta: &FileMeta,
        trusted: &TrustedRole,
    ) -> Result<SignedFile, Error> {
        let file = self.fetch_by_hash(role, meta)?;
        let kept = kept_name(role, meta.sha256().unwrap_or_default());
        let print = fingerprint(trusted);
        if self.checked_before.get(&kept) == Some(&print) {
            self.reused.borrow_mut().push(role.to_string());
        } else {
            verify_signatures(&file, trusted).map_err(self.invalid(role))?;
        }
        self.checked_now.borrow_mut().insert(kept, print);
        Ok(file)
    }

    fn parse_root(&self, bytes: Vec<u8>, what: &str) -> Result<(SignedFile, Root), Error> {
        let file = SignedFile::parse_owned(bytes).map_err(self.invalid(what))?;
        let root: Root = file.body("root").map_err(self.invalid(what))?;
        root.validate_structure().map_err(self.invalid(what))?;
        Ok((file, root))
    }

    /// The root keys `anchor` accepts, and the root's threshold met with
    /// them.
    fn check_anchor(&self, file: &SignedFile, root: &Root, anchor: &Anchor) -> Result<(), Error> {
        let now = self.options.now;
        let certs = chain::own_root_certificates(root, &self.options.gun, now);
        let untrusted = |reason: String| Error::UntrustedRoot {
            gun: self.gun(),
            reason,
        };
        if certs.trusted.is_empty() {
            return Err(untrusted(format!(
                "no root key is a valid certificate for the repository ({})",
                rejected_text(&certs)
            )));
        }
        let keys: BTreeMap<String, PublicKey> = match anchor {
            Anchor::Tofu => certs.trusted,
            Anchor::CacheOnly => {
                return Err(untrusted(
                    "trust on first use is disabled, no root is pinned and none is cached"
                        .to_string(),
                ));
            }
            Anchor::KeyIds(ids) => certs
                .trusted
                .into_iter()
                .filter(|(id, key)| {
                    ids.iter().any(|pinned| {
                        pinned == id || key.canonical_id().is_ok_and(|c| &c == pinned)
                    })
                })
                .collect(),
            Anchor::Certificates(ders) => certs
                .trusted
                .into_iter()
                .filter(|(_, key)| {
                    key.leaf_certificate()
                        .ok()
                        .and_then(|cert| cert.to_der().ok())
                        .is_some_and(|der| ders.contains(&der))
                })
                .collect(),
            Anchor::Ca(anchors) => certs
                .trusted
                .into_iter()
                .filter(|(_, key)| anchors.check("root", key, now).is_ok())
                .collect(),
        };
        if keys.is_empty() {
            return Err(untrusted(format!(
                "none of its root keys ({}) matches the trust pin",
                root.roles
                    .get("root")
                    .map(|r| r.keyids.join(", "))
                    .unwrap_or_default()
            )));
        }
        verify_signatures(file, &chain::root_role(root, keys))
            .map_err(|e| untrusted(format!("not signed by the pinned keys: {e}")))
    }

    /// Steps 2 and 6: the root in force, from the cache (or the anchor on
    /// first use) through every rotation to the server's newest.
    fn trusted_root(
        &self,
        cached: Option<Vec<u8>>,
        seen: &Seen,
    ) -> Result<(SignedFile, Root), Error> {
        let gun = &self.options.gun;
        let bytes = self
            .source
            .get("root.json", MAX_ROOT_BYTES)?
            .ok_or_else(|| Error::NoTrustData {
                server: self.options.server.clone(),
                gun: self.gun(),
            })?;
        let (newest_file, newest) = self.parse_root(bytes, "root")?;
        let Some(cached) = cached else {
            self.check_anchor(&newest_file, &newest, &self.options.anchor)?;
            return self.final_root(newest_file, newest);
        };
        let (mut file, mut root) = self.parse_root(cached, "cached root")?;
        // An explicit pin must hold for the root the chain starts from.
        if !matches!(self.options.anchor, Anchor::Tofu | Anchor::CacheOnly) {
            self.check_anchor_cached(&file, &root)?;
        }
        let floor = seen.root.max(root.version);
        if newest.version < floor {
            return Err(Error::Rollback {
                gun: self.gun(),
                role: "root".into(),
                offered: newest.version,
                seen: floor,
            });
        }
        if newest.version == root.version {
            if newest_file.raw() != file.raw() {
                return Err(Error::Inconsistent {
                    gun: self.gun(),
                    what: format!(
                        "root version {} differs from the one verified before",
                        root.version
                    ),
                });
            }
            return self.final_root(newest_file, newest);
        }
        if newest.version - root.version > MAX_ROOT_ROTATIONS {
            return Err(Error::Inconsistent {
                gun: self.gun(),
                what: format!(
                    "root version {} is more than {MAX_ROOT_ROTATIONS} versions after the cached version {}",
                    newest.version, root.version
                ),
            });
        }
        // Every intermediate root, then the newest: each signed by the
        // previous root's threshold and by its own.
        let mut next_version = root.version + 1;
        let mut newest = Some((newest_file, newest));
        while let Some(target) = newest.as_ref().map(|(_, r)| r.version) {
            let (next_file, next) = if next_version == target {
                newest.take().ok_or_else(|| Error::Missing {
                    gun: self.gun(),
                    file: "root.json".into(),
                })?
            } else {
                let bytes = self.fetch(&format!("{next_version}.root.json"), MAX_ROOT_BYTES)?;
                self.parse_root(bytes, &format!("root version {next_version}"))?
            };
            if next.version != next_version {
                return Err(Error::Inconsistent {
                    gun: self.gun(),
                    what: format!(
                        "{next_version}.root.json holds root version {}",
                        next.version
                    ),
                });
            }
            chain::check_rotation(&root, gun, &next_file).map_err(|source| {
                Error::RotationUnsigned {
                    gun: self.gun(),
                    from: root.version,
                    to: next.version,
                    source,
                }
            })?;
            // Intermediate roots may hold certificates that have expired
            // since; the newest is checked against the clock below.
            let own = root_certificates(&next, gun, None);
            verify_signatures(&next_file, &chain::root_role(&next, own.trusted)).map_err(
                |source| Error::UntrustedRoot {
                    gun: self.gun(),
                    reason: format!(
                        "root version {} is not signed by its own keys: {source}",
                        next.version
                    ),
                },
            )?;
            file = next_file;
            root = next;
            next_version += 1;
        }
        self.final_root(file, root)
    }

    fn check_anchor_cached(&self, file: &SignedFile, root: &Root) -> Result<(), Error> {
        self.check_anchor(file, root, &self.options.anchor)
            .map_err(|e| Error::UntrustedRoot {
                gun: self.gun(),
                reason: format!(
                    "the cached root (version {}) does not satisfy the trust pin: {e}; \
                     remove the GUN's folder from the trust directory to start over",
                    root.version
                ),
            })
    }

    /// The root in force: signed by its own certificates valid now, and not
    /// expired.
    fn final_root(&self, file: SignedFile, root: Root) -> Result<(SignedFile, Root), Error> {
        let certs = chain::own_root_certificates(&root, &self.options.gun, self.options.now);
        if certs.trusted.is_empty() {
            return Err(Error::UntrustedRoot {
                gun: self.gun(),
                reason: format!(
                    "no root key is a valid certificate for the repository ({})",
                    rejected_text(&certs)
                ),
            });
        }
        verify_signatures(&file, &chain::root_role(&root, certs.trusted)).map_err(|e| {
            Error::UntrustedRoot {
                gun: self.gun(),
                reason: format!(
                    "root version {} is not signed by its own keys: {e}",
                    root.version
                ),
            }
        })?;
        check_expiry(&RoleName::Root, root.expires.at, self.options.now)
            .map_err(self.invalid("root"))?;
        Ok((file, root))
    }

    fn check_not_older(&self, role: &str, offered: i64, seen: i64) -> Result<(), Error> {
        if offered < seen {
            return Err(Error::Rollback {
                gun: self.gun(),
                role: role.to_string(),
                offered,
                seen,
            });
        }
        Ok(())
    }
}

/// A verified targets-like file on the walk.
struct Visited {
    role: RoleName,
    body: Targets,
    paths: Vec<String>,
}

/// Runs §9.1 and resolves `wanted`. The cache, if given, supplies the root
/// to start from and the versions already verified, and is updated once the
/// metadata has verified (before the name is resolved).
pub fn verify<S: Source>(
    source: &S,
    cache: Option<&TrustDir>,
    options: &Options,
    wanted: &Wanted,
) -> Result<Verified, Error> {
    let run = Run {
        source,
        options,
        files: cache.map(|cache| cache.files_dir(&options.gun)),
        used: RefCell::default(),
        checked_before: cache
            .map(|cache| cache.load_checked(&options.gun))
            .unwrap_or_default(),
        checked_now: RefCell::default(),
        reused: RefCell::default(),
    };
    let now = options.now;
    let cached = match cache {
        Some(cache) => cache.load(&options.gun)?,
        None => super::Cached::default(),
    };
    let seen = cached.seen.clone();
    let mut expires = BTreeMap::new();

    let (root_file, root) = run.trusted_root(cached.root, &seen)?;
    expires.insert("root".to_string(), root.expires.at);
    let trusted = |role: &RoleName| root.trusted_role(role).map_err(run.invalid("root"));

    // Step 3: timestamp.
    let bytes = run.fetch("timestamp.json", MAX_TIMESTAMP_BYTES)?;
    let timestamp_file = SignedFile::parse_owned(bytes).map_err(run.invalid("timestamp"))?;
    let timestamp: Timestamp = timestamp_file
        .body("timestamp")
        .map_err(run.invalid("timestamp"))?;
    timestamp
        .validate_structure()
        .map_err(run.invalid("timestamp"))?;
    verify_signatures(&timestamp_file, &trusted(&RoleName::Timestamp)?)
        .map_err(run.invalid("timestamp"))?;
    check_expiry(&RoleName::Timestamp, timestamp.expires.at, now)
        .map_err(run.invalid("timestamp"))?;
    run.check_not_older("timestamp", timestamp.version, seen.timestamp)?;
    expires.insert("timestamp".to_string(), timestamp.expires.at);

    // Step 4: the snapshot the timestamp names.
    let snapshot_meta = timestamp.meta.get("snapshot").ok_or_else(|| {
        run.invalid("timestamp")(TufError::NoChecksums {
            role: "snapshot".into(),
        })
    })?;
    let snapshot_file =
        run.fetch_verified("snapshot", snapshot_meta, &trusted(&RoleName::Snapshot)?)?;
    let snapshot: Snapshot = snapshot_file
        .body("snapshot")
        .map_err(run.invalid("snapshot"))?;
    snapshot
        .validate_structure()
        .map_err(run.invalid("snapshot"))?;
    check_expiry(&RoleName::Snapshot, snapshot.expires.at, now).map_err(run.invalid("snapshot"))?;
    run.check_not_older("snapshot", snapshot.version, seen.snapshot)?;
    expires.insert("snapshot".to_string(), snapshot.expires.at);
    // The snapshot must describe the root in force (validate_structure
    // guarantees the entry).
    if let Some(meta) = snapshot.meta.get("root") {
        check_hashes("root", root_file.raw(), meta).map_err(|_| Error::Inconsistent {
            gun: options.gun.clone(),
            what: format!(
                "the snapshot (version {}) lists another root than root version {}",
                snapshot.version, root.version
            ),
        })?;
    }

    // Step 5: targets, which must verify.
    let targets_meta = snapshot.meta.get("targets").ok_or_else(|| {
        run.invalid("snapshot")(TufError::NoChecksums {
            role: "targets".into(),
        })
    })?;
    let targets_file =
        run.fetch_verified("targets", targets_meta, &trusted(&RoleName::Targets)?)?;
    let targets: Targets = targets_file
        .body("targets")
        .map_err(run.invalid("targets"))?;
    targets
        .validate_structure(&RoleName::Targets)
        .map_err(run.invalid("targets"))?;
    check_expiry(&RoleName::Targets, targets.expires.at, now).map_err(run.invalid("targets"))?;
    run.check_not_older("targets", targets.version, seen.targets)?;
    expires.insert("targets".to_string(), targets.expires.at);

    if let Some(cache) = cache {
        let newer = Seen {
            root: root.version,
            timestamp: timestamp.version,
            snapshot: snapshot.version,
            targets: targets.version,
        };
        cache.store(&options.gun, root_file.raw(), &newer)?;
    }

    // Delegations, pre-order, only those that may sign the wanted tag;
    // an invalid one is skipped with a warning, as notary does.
    let mut warnings = Vec::new();
    let mut order: Vec<Visited> = Vec::new();
    let mut stack = vec![Visited {
        role: RoleName::Targets,
        body: targets,
        paths: chain::top_level_paths(),
    }];
    while let Some(visited) = stack.pop() {
        let mut children = Vec::new();
        for delegated in &visited.body.delegations.roles {
            let Ok(child) = RoleName::parse(&delegated.name) else {
                continue;
            };
            let Ok((role, paths)) =
                chain::delegation_authority(&visited.body, &visited.paths, &child)
            else {
                continue;
            };
            if let Wanted::Tag(tag) = wanted {
                if !path_allowed(tag, &paths) {
                    continue;
                }
            }
            let Some(meta) = snapshot.meta.get(child.as_str()) else {
                continue; // delegated but never published
            };
            if order.len() + stack.len() + children.len() >= MAX_DELEGATIONS {
                warnings.push(format!(
                    "more than {MAX_DELEGATIONS} delegations: the rest are not read"
                ));
                break;
            }
            let name = child.to_string();
            let checked = run.fetch_verified(&name, meta, &role).and_then(|file| {
                let body: Targets = file.body(&name).map_err(run.invalid(&name))?;
                body.validate_structure(&child)
                    .map_err(run.invalid(&name))?;
                check_expiry(&child, body.expires.at, now).map_err(run.invalid(&name))?;
                Ok(body)
            });
            match checked {
                Ok(body) => {
                    expires.insert(name, body.expires.at);
                    children.push(Visited {
                        role: child,
                        body,
                        paths,
                    });
                }
                // A server that cannot serve what its snapshot lists has
                // no usable answer.
                Err(e @ (Error::Fetch(_) | Error::Missing { .. })) => return Err(e),
                Err(e) => warnings.push(format!("skipped {name}: {e}")),
            }
        }
        // Pre-order: the first child is visited next.
        stack.extend(children.into_iter().rev());
        order.push(visited);
    }

    if let (Some(dir), Some(cache)) = (&run.files, cache) {
        cache.prune_files(dir, &run.used.borrow());
        // The record only saves work later; failing to write it is not an
        // error (the next run checks every signature again).
        let _ = cache.store_checked(&options.gun, &run.checked_now.borrow());
    }
    let mut verified = resolve(&options.gun, wanted, &order, expires, warnings)?;
    verified.reused = run.reused.take();
    Ok(verified)
}

/// The first role in walk order that lists the name decides the digest;
/// every role listing the same bytes signed it.
fn resolve(
    gun: &str,
    wanted: &Wanted,
    order: &[Visited],
    expires: BTreeMap<String, OffsetDateTime>,
    warnings: Vec<String>,
) -> Result<Verified, Error> {
    let listed = |visited: &Visited, name: &str| {
        visited
            .body
            .targets
            .get(name)
            .filter(|_| path_allowed(name, &visited.paths))
            .cloned()
    };
    let found = order.iter().find_map(|visited| match wanted {
        Wanted::Tag(tag) => listed(visited, tag).map(|meta| (tag.clone(), meta)),
        Wanted::Digest(digest) => visited.body.targets.iter().find_map(|(name, meta)| {
            let hex = meta.sha256().map(hex::encode)?;
            (format!("sha256:{hex}") == *digest && path_allowed(name, &visited.paths))
                .then(|| (name.clone(), meta.clone()))
        }),
    });
    let Some((tag, meta)) = found else {
        let what = match wanted {
            Wanted::Tag(tag) => format!("tag {tag}"),
            Wanted::Digest(digest) => format!("digest {digest}"),
        };
        return Err(Error::NotSigned {
            gun: gun.to_string(),
            what,
        });
    };
    let Some(sha256) = meta.sha256().filter(|h| h.len() == 32) else {
        return Err(Error::Inconsistent {
            gun: gun.to_string(),
            what: format!("the target {tag} has no valid sha256 hash"),
        });
    };
    let mut signed_by = Vec::new();
    let mut disagreeing = Vec::new();
    for visited in order {
        if let Some(other) = listed(visited, &tag) {
            if other.sha256() == Some(sha256) && other.length == meta.length {
                signed_by.push(visited.role.to_string());
            } else {
                disagreeing.push(visited.role.to_string());
            }
        }
    }
    Ok(Verified {
        gun: gun.to_string(),
        tag,
        digest: format!("sha256:{}", hex::encode(sha256)),
        size: meta.length,
        signed_by,
        disagreeing,
        expires,
        warnings,
        reused: Vec::new(),
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_pass_by_value
)]
mod tests {
    use super::*;
    use crate::tuf::encoding::format_time;
    use crate::tuf::envelope::write_envelope;
    use crate::tuf::{KeyAlgorithm, KeyType, SigningKey, canonical};
    use serde_json::{Value, json};
    use time::Duration;

    const GUN: &str = "example.com/app";

    /// Files by name, as a server would serve them.
    struct Mem(BTreeMap<String, Vec<u8>>);

    impl Source for Mem {
        fn get(&self, file: &str, cap: u64) -> Result<Option<Vec<u8>>, super::super::FetchError> {
            Ok(self.0.get(file).filter(|b| b.len() as u64 <= cap).cloned())
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn cert_key(key: &SigningKey) -> PublicKey {
        let pkcs8 = key.to_pkcs8().unwrap();
        let pair = rcgen::KeyPair::try_from(pkcs8.as_slice()).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, GUN);
        params.not_before = now() - Duration::hours(1);
        params.not_after = now() + Duration::days(3650);
        let cert = params.self_signed(&pair).unwrap();
        PublicKey::new(KeyType::EcdsaX509, cert.pem().into_bytes())
    }

    fn sign(body: &Value, signers: &[(&SigningKey, &PublicKey)]) -> Vec<u8> {
        let message = canonical::to_canonical(body).unwrap();
        let signatures: Vec<_> = signers
            .iter()
            .map(|(key, public)| {
                let mut signature = key.sign(&message).unwrap();
                signature.keyid = public.id().to_string();
                signature
            })
            .collect();
        write_envelope(&message, &signatures)
    }

    fn meta(bytes: &[u8]) -> Value {
        serde_json::to_value(FileMeta::for_bytes(bytes)).unwrap()
    }

    struct Keys {
        root: Vec<(SigningKey, PublicKey)>,
        targets: SigningKey,
        snapshot: SigningKey,
        timestamp: SigningKey,
        alice: SigningKey,
        bob: SigningKey,
    }

    fn ed() -> SigningKey {
        SigningKey::generate(KeyAlgorithm::Ed25519).unwrap()
    }

    fn root_pair() -> (SigningKey, PublicKey) {
        let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let public = cert_key(&key);
        (key, public)
    }

    impl Keys {
        fn new() -> Self {
            Self {
                root: vec![root_pair()],
                targets: ed(),
                snapshot: ed(),
                timestamp: ed(),
                alice: ed(),
                bob: ed(),
            }
        }

        /// Root `version` listing `self.root[listed]`, signed by
        /// `self.root[signers]`.
        fn root(&self, version: i64, listed: usize, signers: &[usize]) -> Vec<u8> {
            let (_, root_public) = &self.root[listed];
            let mut keys = serde_json::Map::new();
            for key in [
                root_public,
                self.targets.public_key(),
                self.snapshot.public_key(),
                self.timestamp.public_key(),
            ] {
                keys.insert(key.id().to_string(), key.to_json());
            }
            let role = |key: &PublicKey| json!({"keyids": [key.id()], "threshold": 1});
            let body = json!({
                "_type": "Root", "consistent_snapshot": false, "version": version,
                "expires": format_time(now() + Duration::days(3650)),
                "keys": keys,
                "roles": {
                    "root": role(root_public),
                    "targets": role(self.targets.public_key()),
                    "snapshot": role(self.snapshot.public_key()),
                    "timestamp": role(self.timestamp.public_key()),
                },
            });
            let signers: Vec<_> = signers
                .iter()
                .map(|&i| (&self.root[i].0, &self.root[i].1))
                .collect();
            sign(&body, &signers)
        }
    }

    fn targets_body(version: i64, targets: &[(&str, &[u8])], delegations: Value) -> Value {
        let targets: serde_json::Map<String, Value> = targets
            .iter()
            .map(|(name, bytes)| (name.to_string(), meta(bytes)))
            .collect();
        json!({
            "_type": "Targets", "version": version, "targets": targets,
            "expires": format_time(now() + Duration::days(1095)),
            "delegations": delegations,
        })
    }

    fn delegation(key: &SigningKey, name: &str, paths: &[&str]) -> Value {
        json!({"name": name, "keyids": [key.public_key().id()], "threshold": 1, "paths": paths})
    }

    /// Serves `root` (and `old_roots` by version), the targets-like files,
    /// and a snapshot and timestamp over them.
    fn serve(
        keys: &Keys,
        roots: &[Vec<u8>],
        files: &[(&str, Vec<u8>)],
        version: i64,
        timestamp_expires: OffsetDateTime,
    ) -> Mem {
        serve_versions(keys, roots, files, (version, version), timestamp_expires)
    }

    /// `serve` with separate (snapshot, timestamp) versions.
    fn serve_versions(
        keys: &Keys,
        roots: &[Vec<u8>],
        files: &[(&str, Vec<u8>)],
        (snapshot_version, version): (i64, i64),
        timestamp_expires: OffsetDateTime,
    ) -> Mem {
        let mut served = BTreeMap::new();
        for (i, root) in roots.iter().enumerate() {
            served.insert(format!("{}.root.json", i + 1), root.clone());
        }
        let root = roots.last().unwrap();
        served.insert("root.json".into(), root.clone());
        served.insert(
            format!("root.{}.json", hex::encode(crate::tuf::sha256(root))),
            root.clone(),
        );
        let mut snapshot_meta = serde_json::Map::new();
        snapshot_meta.insert("root".into(), meta(root));
        for (role, bytes) in files {
            snapshot_meta.insert(role.to_string(), meta(bytes));
            served.insert(
                format!("{role}.{}.json", hex::encode(crate::tuf::sha256(bytes))),
                bytes.clone(),
            );
        }
        let snapshot = crate::tuf::sign::sign_metadata(
            &json!({"_type": "Snapshot", "version": snapshot_version, "meta": snapshot_meta,
                    "expires": format_time(now() + Duration::days(1095))}),
            &[&keys.snapshot],
        )
        .unwrap();
        served.insert(
            format!(
                "snapshot.{}.json",
                hex::encode(crate::tuf::sha256(&snapshot))
            ),
            snapshot.clone(),
        );
        let timestamp = crate::tuf::sign::sign_metadata(
            &json!({"_type": "Timestamp", "version": version, "meta": {"snapshot": meta(&snapshot)},
                    "expires": format_time(timestamp_expires)}),
            &[&keys.timestamp],
        )
        .unwrap();
        served.insert("timestamp.json".into(), timestamp);
        Mem(served)
    }

    fn options() -> Options {
        Options {
            gun: GUN.into(),
            server: "https://notary.example.com".into(),
            now: now(),
            anchor: Anchor::Tofu,
        }
    }

    fn tag(name: &str) -> Wanted {
        Wanted::Tag(name.into())
    }

    /// targets → targets/a (paths "a") → targets/a/b, and targets/c: the
    /// walk is pre-order and the first listing decides.
    fn delegated_repo(keys: &Keys, bob_signs: &[u8]) -> Mem {
        let a = sign(
            &targets_body(
                1,
                &[("a1", b"from a")],
                json!({
                    "keys": {keys.bob.public_key().id(): keys.bob.public_key().to_json()},
                    "roles": [delegation(&keys.bob, "targets/a/b", &["a"])],
                }),
            ),
            &[(&keys.alice, keys.alice.public_key())],
        );
        let b = sign(
            &targets_body(
                1,
                &[("a1", bob_signs), ("zzz", b"outside paths")],
                json!({}),
            ),
            &[(&keys.bob, keys.bob.public_key())],
        );
        let c = sign(
            &targets_body(1, &[("a1", b"from c")], json!({})),
            &[(&keys.bob, keys.bob.public_key())],
        );
        let targets = crate::tuf::sign::sign_metadata(
            &targets_body(
                1,
                &[("top", b"top")],
                json!({
                    "keys": {
                        keys.alice.public_key().id(): keys.alice.public_key().to_json(),
                        keys.bob.public_key().id(): keys.bob.public_key().to_json(),
                    },
                    "roles": [delegation(&keys.alice, "targets/a", &["a"]),
                              delegation(&keys.bob, "targets/c", &[""])],
                }),
            ),
            &[&keys.targets],
        )
        .unwrap();
        serve(
            keys,
            &[keys.root(1, 0, &[0])],
            &[
                ("targets", targets),
                ("targets/a", a),
                ("targets/a/b", b),
                ("targets/c", c),
            ],
            1,
            now() + Duration::days(14),
        )
    }

    #[test]
    fn delegations_resolve_pre_order_first_match_within_paths() {
        let keys = Keys::new();
        let server = delegated_repo(&keys, b"from a");
        let verified = verify(&server, None, &options(), &tag("a1")).unwrap();
        assert_eq!(
            verified.digest,
            format!("sha256:{}", hex::encode(crate::tuf::sha256(b"from a")))
        );
        assert_eq!(verified.signed_by, ["targets/a", "targets/a/b"]);
        assert_eq!(verified.disagreeing, ["targets/c"]);
        assert!(verified.expires.contains_key("targets/a/b"));
        // b lists zzz, but its paths ("a") do not allow it.
        let error = verify(&server, None, &options(), &tag("zzz")).unwrap_err();
        assert!(matches!(error, Error::NotSigned { .. }), "{error}");
        assert_eq!(error.exit_code(), super::super::exit::NOT_SIGNED);
    }

    #[test]
    fn a_delegation_signed_by_the_wrong_key_is_skipped() {
        let keys = Keys::new();
        let server = delegated_repo(&keys, b"from b");
        // Re-sign targets/c with alice's key, which c does not list.
        let c = sign(
            &targets_body(1, &[("a1", b"from c")], json!({})),
            &[(&keys.alice, keys.alice.public_key())],
        );
        let targets_file = server
            .0
            .iter()
            .find(|(k, _)| k.starts_with("targets."))
            .map(|(_, v)| v.clone())
            .unwrap();
        let a = server
            .0
            .iter()
            .find(|(k, _)| k.starts_with("targets/a."))
            .map(|(_, v)| v.clone())
            .unwrap();
        let b = server
            .0
            .iter()
            .find(|(k, _)| k.starts_with("targets/a/b."))
            .map(|(_, v)| v.clone())
            .unwrap();
        let server = serve(
            &keys,
            &[keys.root(1, 0, &[0])],
            &[
                ("targets", targets_file),
                ("targets/a", a),
                ("targets/a/b", b),
                ("targets/c", c),
            ],
            1,
            now() + Duration::days(14),
        );
        let verified = verify(&server, None, &options(), &tag("a1")).unwrap();
        assert_eq!(verified.signed_by, ["targets/a"]);
        assert_eq!(verified.disagreeing, ["targets/a/b"]);
        assert!(
            verified
                .warnings
                .iter()
                .any(|w| w.starts_with("skipped targets/c") && w.contains("threshold")),
            "{:?}",
            verified.warnings
        );
    }

    fn simple_targets(keys: &Keys) -> Vec<u8> {
        crate::tuf::sign::sign_metadata(
            &targets_body(1, &[("v1", b"one")], json!({})),
            &[&keys.targets],
        )
        .unwrap()
    }

    #[test]
    fn rotations_are_followed_through_intermediate_roots_and_need_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TrustDir::new(dir.path().to_path_buf());
        let mut keys = Keys::new();
        keys.root.push(root_pair());
        keys.root.push(root_pair());
        let v1 = keys.root(1, 0, &[0]);
        let first = serve(
            &keys,
            std::slice::from_ref(&v1),
            &[("targets", simple_targets(&keys))],
            1,
            now() + Duration::days(14),
        );
        verify(&first, Some(&cache), &options(), &tag("v1")).unwrap();

        // 1 → 2 (signed by keys 0 and 1) → 3 (signed by 1 and 2).
        let chain = [
            v1.clone(),
            keys.root(2, 1, &[0, 1]),
            keys.root(3, 2, &[1, 2]),
        ];
        let rotated = serve(
            &keys,
            &chain,
            &[("targets", simple_targets(&keys))],
            2,
            now() + Duration::days(14),
        );
        verify(&rotated, Some(&cache), &options(), &tag("v1")).unwrap();
        assert_eq!(cache.load(GUN).unwrap().seen.root, 3);

        // A fresh cache at root 1, and a version 2 signed only by the new key.
        let dir = tempfile::tempdir().unwrap();
        let cache = TrustDir::new(dir.path().to_path_buf());
        verify(&first, Some(&cache), &options(), &tag("v1")).unwrap();
        let unsigned = serve(
            &keys,
            &[v1, keys.root(2, 1, &[1])],
            &[("targets", simple_targets(&keys))],
            2,
            now() + Duration::days(14),
        );
        let error = verify(&unsigned, Some(&cache), &options(), &tag("v1")).unwrap_err();
        assert!(
            matches!(error, Error::RotationUnsigned { from: 1, to: 2, .. }),
            "{error}"
        );
        // Trust on first use accepts it: nothing was seen before.
        verify(&unsigned, None, &options(), &tag("v1")).unwrap();
    }

    #[test]
    fn rollbacks_expiry_and_pins() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TrustDir::new(dir.path().to_path_buf());
        let keys = Keys::new();
        let root = keys.root(1, 0, &[0]);
        let at = |version| {
            serve(
                &keys,
                std::slice::from_ref(&root),
                &[("targets", simple_targets(&keys))],
                version,
                now() + Duration::days(14),
            )
        };
        let five = at(5);
        verify(&five, Some(&cache), &options(), &tag("v1")).unwrap();
        // A warm cache: snapshot and targets come from the kept copies.
        let kept = std::fs::read_dir(cache.files_dir(GUN)).unwrap().count();
        assert_eq!(kept, 2);
        let mut timestamp_only = five;
        timestamp_only
            .0
            .retain(|name, _| !name.starts_with("snapshot.") && !name.starts_with("targets."));
        verify(&timestamp_only, Some(&cache), &options(), &tag("v1")).unwrap();
        let error = verify(&at(4), Some(&cache), &options(), &tag("v1")).unwrap_err();
        assert!(
            matches!(&error, Error::Rollback { role, offered: 4, seen: 5, .. } if role == "timestamp"),
            "{error}"
        );

        // A fresh timestamp (the server holds its key) naming an older
        // snapshot than one already verified.
        let old_snapshot = serve_versions(
            &keys,
            std::slice::from_ref(&root),
            &[("targets", simple_targets(&keys))],
            (3, 9),
            now() + Duration::days(14),
        );
        let error = verify(&old_snapshot, Some(&cache), &options(), &tag("v1")).unwrap_err();
        assert!(
            matches!(&error, Error::Rollback { role, offered: 3, seen: 5, .. } if role == "snapshot"),
            "{error}"
        );
        assert_eq!(error.exit_code(), super::super::exit::FAILED);

        let mut later = options();
        later.now = now() + Duration::days(15);
        let error = verify(&at(5), None, &later, &tag("v1")).unwrap_err();
        assert!(
            matches!(&error, Error::Invalid { role, source: TufError::Expired { .. }, .. } if role == "timestamp"),
            "{error}"
        );

        let mut pinned = options();
        pinned.anchor = Anchor::KeyIds(vec![keys.root[0].1.canonical_id().unwrap()]);
        verify(&at(5), None, &pinned, &tag("v1")).unwrap();
        pinned.anchor = Anchor::CacheOnly;
        let error = verify(&at(5), None, &pinned, &tag("v1")).unwrap_err();
        assert!(
            error.to_string().contains("trust on first use is disabled"),
            "{error}"
        );
        // With the root cached (above), no first use is needed.
        verify(&at(6), Some(&cache), &pinned, &tag("v1")).unwrap();
        pinned.anchor = Anchor::KeyIds(vec!["00".repeat(32)]);
        let error = verify(&at(5), None, &pinned, &tag("v1")).unwrap_err();
        assert!(matches!(error, Error::UntrustedRoot { .. }), "{error}");
    }
    /// targets (version `version`, listing "top") delegating targets/a (all
    /// paths) to `keys` with `threshold`; targets/a is the same bytes every
    /// time, signed by alice, listing "a1".
    fn delegated_to(
        keys: &Keys,
        root: &[u8],
        a: &[u8],
        signers: &[&SigningKey],
        threshold: i64,
        version: i64,
    ) -> Mem {
        let listed: serde_json::Map<String, Value> = signers
            .iter()
            .map(|key| {
                (
                    key.public_key().id().to_string(),
                    key.public_key().to_json(),
                )
            })
            .collect();
        let ids: Vec<&str> = signers.iter().map(|key| key.public_key().id()).collect();
        let targets = crate::tuf::sign::sign_metadata(
            &targets_body(
                version,
                &[("top", b"top")],
                json!({
                    "keys": listed,
                    "roles": [{"name": "targets/a", "keyids": ids, "threshold": threshold,
                               "paths": [""]}],
                }),
            ),
            &[&keys.targets],
        )
        .unwrap();
        serve(
            keys,
            &[root.to_vec()],
            &[("targets", targets), ("targets/a", a.to_vec())],
            version,
            now() + Duration::days(14),
        )
    }

    #[test]
    fn a_warm_run_reuses_signature_checks_of_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TrustDir::new(dir.path().to_path_buf());
        let keys = Keys::new();
        let server = delegated_repo(&keys, b"from a");
        let cold = verify(&server, Some(&cache), &options(), &tag("a1")).unwrap();
        assert!(cold.reused.is_empty(), "{:?}", cold.reused);
        let warm = verify(&server, Some(&cache), &options(), &tag("a1")).unwrap();
        assert_eq!(
            warm.reused,
            [
                "snapshot",
                "targets",
                "targets/a",
                "targets/c",
                "targets/a/b"
            ]
        );
        assert_eq!(warm.digest, cold.digest);
        assert_eq!(warm.signed_by, cold.signed_by);
        assert_eq!(warm.disagreeing, cold.disagreeing);
        // Without a cache nothing is reused.
        let uncached = verify(&server, None, &options(), &tag("a1")).unwrap();
        assert!(uncached.reused.is_empty());
    }

    #[test]
    fn changed_delegation_keys_or_threshold_force_a_new_check() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TrustDir::new(dir.path().to_path_buf());
        let keys = Keys::new();
        let root = keys.root(1, 0, &[0]);
        let a = sign(
            &targets_body(1, &[("a1", b"from a")], json!({})),
            &[(&keys.alice, keys.alice.public_key())],
        );
        let alice_only = delegated_to(&keys, &root, &a, &[&keys.alice], 1, 1);
        verify(&alice_only, Some(&cache), &options(), &tag("a1")).unwrap();
        let warm = verify(&alice_only, Some(&cache), &options(), &tag("a1")).unwrap();
        assert!(warm.reused.contains(&"targets/a".to_string()));
        assert_eq!(warm.signed_by, ["targets/a"]);

        let skipped = |server: &Mem| {
            let error = verify(server, Some(&cache), &options(), &tag("a1")).unwrap_err();
            assert!(matches!(error, Error::NotSigned { .. }), "{error}");
            let top = verify(server, Some(&cache), &options(), &tag("top")).unwrap();
            assert!(!top.reused.contains(&"targets/a".to_string()));
            assert!(
                top.warnings
                    .iter()
                    .any(|w| w.starts_with("skipped targets/a") && w.contains("threshold")),
                "{:?}",
                top.warnings
            );
        };
        // Same bytes, same key, but a threshold alice alone cannot meet.
        skipped(&delegated_to(
            &keys,
            &root,
            &a,
            &[&keys.alice, &keys.bob],
            2,
            2,
        ));
        // Same bytes, threshold 1, but the key is now bob's.
        skipped(&delegated_to(&keys, &root, &a, &[&keys.bob], 1, 3));
        // A changed key set that alice's signature still meets: checked
        // again (not reused), then reused on the next run.
        let either = delegated_to(&keys, &root, &a, &[&keys.alice, &keys.bob], 1, 4);
        let checked = verify(&either, Some(&cache), &options(), &tag("a1")).unwrap();
        assert!(!checked.reused.contains(&"targets/a".to_string()));
        assert_eq!(checked.signed_by, ["targets/a"]);
        let warm = verify(&either, Some(&cache), &options(), &tag("a1")).unwrap();
        assert!(warm.reused.contains(&"targets/a".to_string()));
    }

    #[test]
    fn expiry_is_checked_on_every_run_when_signatures_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TrustDir::new(dir.path().to_path_buf());
        let keys = Keys::new();
        let mut a_body = targets_body(1, &[("a1", b"from a")], json!({}));
        a_body["expires"] = json!(format_time(now() + Duration::days(5)));
        let a = sign(&a_body, &[(&keys.alice, keys.alice.public_key())]);
        let mut top = targets_body(
            1,
            &[("top", b"top")],
            json!({
                "keys": {keys.alice.public_key().id(): keys.alice.public_key().to_json()},
                "roles": [delegation(&keys.alice, "targets/a", &[""])],
            }),
        );
        top["expires"] = json!(format_time(now() + Duration::days(10)));
        let targets = crate::tuf::sign::sign_metadata(&top, &[&keys.targets]).unwrap();
        let server = serve(
            &keys,
            &[keys.root(1, 0, &[0])],
            &[("targets", targets), ("targets/a", a)],
            1,
            now() + Duration::days(30),
        );
        let at = |days| {
            let mut options = options();
            options.now = now() + Duration::days(days);
            options
        };
        verify(&server, Some(&cache), &at(0), &tag("a1")).unwrap();
        let warm = verify(&server, Some(&cache), &at(1), &tag("a1")).unwrap();
        assert_eq!(warm.reused, ["snapshot", "targets", "targets/a"]);

        // targets/a expired: skipped although its signatures were reused.
        let error = verify(&server, Some(&cache), &at(6), &tag("a1")).unwrap_err();
        assert!(matches!(error, Error::NotSigned { .. }), "{error}");
        let late = verify(&server, Some(&cache), &at(6), &tag("top")).unwrap();
        assert!(late.reused.contains(&"targets".to_string()));
        assert!(
            late.warnings
                .iter()
                .any(|w| w.starts_with("skipped targets/a") && w.contains("expired")),
            "{:?}",
            late.warnings
        );
        // targets expired: the whole verification fails.
        let error = verify(&server, Some(&cache), &at(11), &tag("top")).unwrap_err();
        assert!(
            matches!(&error, Error::Invalid { role, source: TufError::Expired { .. }, .. } if role == "targets"),
            "{error}"
        );
    }
}
