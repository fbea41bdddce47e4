//! The TUF client rules of PROTOCOL.md §9.1 over a [`Source`]: root from the
//! pinned or cached root through every rotation, timestamp, snapshot,
//! targets and the delegations that may sign the wanted name, each checked
//! for signatures, expiry, hashes and lengths, and versions against what
//! was verified before. Step numbers refer to §9.1.

use std::collections::BTreeMap;

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
    Timestamp,
};

/// notary's cap for a root whose checksum is not known
/// (`notary.MaxDownloadSize`).
const MAX_ROOT_BYTES: u64 = 100 << 20;
/// notary's cap for timestamp.json.
const MAX_TIMESTAMP_BYTES: u64 = 1 << 20;
/// Delegation files read at most, whatever the snapshot lists.
const MAX_DELEGATIONS: usize = 1000;

/// What anchors trust in a root the cache does not already vouch for
/// (notary's `trust_pinning`).
#[derive(Debug, Clone)]
pub enum Anchor {
    /// Trust on first use (a root with valid certificates for the GUN).
    Tofu,
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
        let bytes = self.fetch(&format!("{role}.{}.json", hex::encode(hash)), cap)?;
        check_file_meta(role, &bytes, meta).map_err(self.invalid(role))?;
        SignedFile::parse_owned(bytes).map_err(self.invalid(role))
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
        if !matches!(self.options.anchor, Anchor::Tofu) {
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
    let run = Run { source, options };
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
    let snapshot_file = run.fetch_by_hash("snapshot", snapshot_meta)?;
    let snapshot: Snapshot = snapshot_file
        .body("snapshot")
        .map_err(run.invalid("snapshot"))?;
    snapshot
        .validate_structure()
        .map_err(run.invalid("snapshot"))?;
    verify_signatures(&snapshot_file, &trusted(&RoleName::Snapshot)?)
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
    let targets_file = run.fetch_by_hash("targets", targets_meta)?;
    let targets: Targets = targets_file
        .body("targets")
        .map_err(run.invalid("targets"))?;
    targets
        .validate_structure(&RoleName::Targets)
        .map_err(run.invalid("targets"))?;
    verify_signatures(&targets_file, &trusted(&RoleName::Targets)?)
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
            let checked = run.fetch_by_hash(&name, meta).and_then(|file| {
                let body: Targets = file.body(&name).map_err(run.invalid(&name))?;
                body.validate_structure(&child)
                    .map_err(run.invalid(&name))?;
                verify_signatures(&file, &role).map_err(run.invalid(&name))?;
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

    resolve(&options.gun, wanted, &order, expires, warnings)
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
    })
}
