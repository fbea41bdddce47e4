//! Role names and role bodies (`signed`) as Notary writes them
//! (PROTOCOL.md §4.2, `tuf/data/{root,targets,snapshot,timestamp,roles}.go`).
//!
//! These are read-only views: files are stored and hashed as the exact bytes
//! received, and signatures are checked over the canonical re-encoding of
//! those bytes, so fields these types do not name are never lost.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use super::keys::PublicKey;
use super::{Error, encoding};

/// The largest version a role may have (Notary's SQL `int`).
pub const MAX_VERSION: i64 = i32::MAX as i64;

/// A validated role name: a base role or a delegation under `targets/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleName {
    Root,
    Targets,
    Snapshot,
    Timestamp,
    Delegation(String),
}

impl RoleName {
    /// Parses a role name with Notary's rules (`IsDelegation`): delegations
    /// start with `targets/`, use only `[-a-z0-9_/]`, are shorter than 256
    /// bytes and are path-clean (no empty segment, no trailing slash).
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "root" => Ok(Self::Root),
            "targets" => Ok(Self::Targets),
            "snapshot" => Ok(Self::Snapshot),
            "timestamp" => Ok(Self::Timestamp),
            _ if is_delegation_name(name) => Ok(Self::Delegation(name.to_string())),
            _ => Err(Error::InvalidRoleName {
                name: name.to_string(),
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Root => "root",
            Self::Targets => "targets",
            Self::Snapshot => "snapshot",
            Self::Timestamp => "timestamp",
            Self::Delegation(name) => name,
        }
    }

    /// Targets or a delegation: files of `_type` "Targets".
    pub fn is_targets_like(&self) -> bool {
        matches!(self, Self::Targets | Self::Delegation(_))
    }

    /// The role that delegates to this one (`targets/a/b` → `targets/a`).
    pub fn parent(&self) -> Option<RoleName> {
        let Self::Delegation(name) = self else {
            return None;
        };
        let (parent, _) = name.rsplit_once('/')?;
        RoleName::parse(parent).ok()
    }

    /// Number of path segments, the first key of Notary's upload ordering.
    pub fn depth(&self) -> usize {
        self.as_str().split('/').count()
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_delegation_name(name: &str) -> bool {
    name.len() < 256
        && name.starts_with("targets/")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_/".contains(&b))
        && !name.ends_with('/')
        && !name.contains("//")
}

/// An `expires` time, kept with the text it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub at: OffsetDateTime,
}

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        encoding::parse_time(&text)
            .map(|at| Self { at })
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Expiry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encoding::format_time(self.at))
    }
}

/// Go decodes JSON `null` into an empty map or slice; serde needs telling.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The keys and threshold of one role, as listed in root or a delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    #[serde(default, deserialize_with = "null_as_default")]
    pub keyids: Vec<String>,
    pub threshold: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    #[serde(rename = "_type")]
    pub type_name: String,
    pub version: i64,
    pub expires: Expiry,
    #[serde(default)]
    pub consistent_snapshot: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub keys: BTreeMap<String, PublicKey>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub roles: BTreeMap<String, RoleKeys>,
}

/// A target or a meta entry: length, hashes and optional `custom` data.
/// A targets file holds thousands, so each is kept small: the hashes in a
/// short vector and `custom` as its raw JSON text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileMeta {
    pub length: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub hashes: Hashes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Box<RawValue>>,
}

impl FileMeta {
    /// Meta for `bytes` with sha256 and sha512, as Notary's `NewFileMeta`.
    pub fn for_bytes(bytes: &[u8]) -> Self {
        let mut hashes = Hashes::default();
        hashes.insert("sha256", super::sha256(bytes).to_vec());
        hashes.insert("sha512", super::sha512(bytes).to_vec());
        Self {
            length: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            hashes,
            custom: None,
        }
    }

    pub fn sha256(&self) -> Option<&[u8]> {
        self.hashes.get("sha256")
    }

    /// `custom` as a JSON value, parsed on each call.
    pub fn custom_value(&self) -> Option<Value> {
        self.custom
            .as_deref()
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    }
}

/// Equal when length and hashes are, and `custom` holds the same JSON
/// (compared as values: spacing and member order do not count).
impl PartialEq for FileMeta {
    fn eq(&self, other: &Self) -> bool {
        self.length == other.length
            && self.hashes == other.hashes
            && match (&self.custom, &other.custom) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.get() == b.get() || self.custom_value() == other.custom_value()
                }
                _ => false,
            }
    }
}

impl Eq for FileMeta {}

/// `hashes`: algorithm name to digest, sorted by name, each name once (the
/// last one read wins, as in a map). Usually one or two entries, so a
/// vector; the two usual names cost no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hashes(Vec<(Cow<'static, str>, Box<[u8]>)>);

impl Hashes {
    pub fn get(&self, algorithm: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(name, _)| name == algorithm)
            .map(|(_, digest)| &**digest)
    }

    /// Adds or replaces the digest for `algorithm`.
    pub fn insert(&mut self, algorithm: &str, digest: Vec<u8>) {
        let digest = digest.into_boxed_slice();
        match self
            .0
            .binary_search_by(|(name, _)| name.as_bytes().cmp(algorithm.as_bytes()))
        {
            Ok(found) => {
                if let Some(entry) = self.0.get_mut(found) {
                    entry.1 = digest;
                }
            }
            Err(at) => {
                let name = match algorithm {
                    "sha256" => Cow::Borrowed("sha256"),
                    "sha512" => Cow::Borrowed("sha512"),
                    other => Cow::Owned(other.to_string()),
                };
                // Grow one at a time: a vector's first growth would make
                // room for four, and there are thousands of these.
                self.0.reserve_exact(1);
                self.0.insert(at, (name, digest));
            }
        }
    }

    /// `(algorithm, digest)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(name, digest)| (&**name, &**digest))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Hashes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, digest) in &self.0 {
            map.serialize_entry(&**name, &Base64Ref(digest))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Hashes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HashesVisitor;
        impl<'de> Visitor<'de> for HashesVisitor {
            type Value = Hashes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of hash names to base64 digests")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Hashes, A::Error> {
                let mut hashes = Hashes::default();
                while let Some((name, digest)) = map.next_entry::<Cow<'de, str>, Base64Bytes>()? {
                    hashes.insert(&name, digest.0);
                }
                Ok(hashes)
            }
        }
        deserializer.deserialize_map(HashesVisitor)
    }
}

struct Base64Ref<'a>(&'a [u8]);

impl Serialize for Base64Ref<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::base64_bytes::serialize(self.0, serializer)
    }
}

/// Bytes written as padded standard base64 (Go's `[]byte`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base64Bytes(pub Vec<u8>);

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        encoding::base64_bytes::deserialize(deserializer).map(Self)
    }
}

impl Serialize for Base64Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::base64_bytes::serialize(&self.0, serializer)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub keyids: Vec<String>,
    pub threshold: i64,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegations {
    #[serde(default, deserialize_with = "null_as_default")]
    pub keys: BTreeMap<String, PublicKey>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub roles: Vec<DelegatedRole>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub type_name: String,
    pub version: i64,
    pub expires: Expiry,
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: BTreeMap<String, FileMeta>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub delegations: Delegations,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    pub type_name: String,
    pub version: i64,
    pub expires: Expiry,
    #[serde(default, deserialize_with = "null_as_default")]
    pub meta: BTreeMap<String, FileMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(rename = "_type")]
    pub type_name: String,
    pub version: i64,
    pub expires: Expiry,
    #[serde(default, deserialize_with = "null_as_default")]
    pub meta: BTreeMap<String, FileMeta>,
}

/// What every role body has; lets one envelope type serve all four.
pub trait RoleBody: DeserializeOwned {
    /// The `_type` Notary writes ("Root", "Targets", ...).
    const TYPE_NAME: &'static str;
    fn version(&self) -> i64;
    fn expires(&self) -> &Expiry;
}

macro_rules! role_body {
    ($ty:ty, $name:literal) => {
        impl RoleBody for $ty {
            const TYPE_NAME: &'static str = $name;
            fn version(&self) -> i64 {
                self.version
            }
            fn expires(&self) -> &Expiry {
                &self.expires
            }
        }
    };
}
role_body!(Root, "Root");
role_body!(Targets, "Targets");
role_body!(Snapshot, "Snapshot");
role_body!(Timestamp, "Timestamp");

/// Keys and threshold that a role's signatures are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRole {
    pub name: RoleName,
    pub threshold: i64,
    /// Keyed by the key ID as listed (which must match the computed ID).
    pub keys: BTreeMap<String, PublicKey>,
}

fn invalid(role: impl fmt::Display, reason: String) -> Error {
    Error::InvalidStructure {
        role: role.to_string(),
        reason,
    }
}

/// `isValidRootRoleStructure`: threshold ≥ 1, every key ID present.
fn check_role_keys(
    container: &str,
    role: &str,
    listed: &RoleKeys,
    keys: &BTreeMap<String, PublicKey>,
) -> Result<(), Error> {
    if listed.threshold < 1 {
        return Err(invalid(
            container,
            format!(
                "invalid threshold specified for {role}: {} ",
                listed.threshold
            ),
        ));
    }
    for keyid in &listed.keyids {
        if !keys.contains_key(keyid) {
            return Err(invalid(
                container,
                format!("key ID {keyid} specified in {role} without corresponding key"),
            ));
        }
    }
    Ok(())
}

/// Every key sits under its own key ID, used or not: a key filed under
/// another key's ID would let its signatures count as that key's
/// (PROTOCOL.md §4.4, §4.5).
fn check_key_ids(container: &str, keys: &BTreeMap<String, PublicKey>) -> Result<(), Error> {
    for (listed, key) in keys {
        if key.id() != listed {
            return Err(Error::ListedKeyIdMismatch {
                role: container.to_string(),
                listed: listed.clone(),
                computed: key.id().to_string(),
            });
        }
    }
    Ok(())
}

fn check_type_and_version(
    role: &str,
    expected: &str,
    found: &str,
    version: i64,
) -> Result<(), Error> {
    if found != expected {
        return Err(invalid(
            role,
            format!("expected type {expected}, not {found}"),
        ));
    }
    if version < 1 {
        return Err(invalid(role, "version cannot be less than 1".to_string()));
    }
    // Notary stores versions in a 32-bit column; bounding them also keeps
    // the server's `version + 1` far from overflow.
    if version > MAX_VERSION {
        return Err(invalid(
            role,
            format!("version {version} is larger than the largest allowed, {MAX_VERSION}"),
        ));
    }
    Ok(())
}

impl Root {
    /// `isValidRootStructure`: the four base roles listed, thresholds ≥ 1,
    /// every listed key present.
    pub fn validate_structure(&self) -> Result<(), Error> {
        check_type_and_version("root", "Root", &self.type_name, self.version)?;
        check_key_ids("root", &self.keys)?;
        for base in ["root", "targets", "snapshot", "timestamp"] {
            let listed = self
                .roles
                .get(base)
                .ok_or_else(|| invalid("root", format!("missing {base} role specification")))?;
            check_role_keys("root", base, listed, &self.keys)?;
        }
        Ok(())
    }

    /// The keys and threshold root declares for a base role.
    pub fn trusted_role(&self, role: &RoleName) -> Result<TrustedRole, Error> {
        let listed = self
            .roles
            .get(role.as_str())
            .ok_or_else(|| Error::MissingRole {
                role: role.to_string(),
            })?;
        Ok(TrustedRole {
            name: role.clone(),
            threshold: listed.threshold,
            keys: pick_keys(&listed.keyids, &self.keys),
        })
    }
}

fn pick_keys(keyids: &[String], keys: &BTreeMap<String, PublicKey>) -> BTreeMap<String, PublicKey> {
    keyids
        .iter()
        .filter_map(|id| keys.get(id).map(|key| (id.clone(), key.clone())))
        .collect()
}

impl Targets {
    /// `isValidTargetsStructure`: type, version, and every delegation a valid
    /// direct child of `role` with threshold ≥ 1 and its keys present.
    pub fn validate_structure(&self, role: &RoleName) -> Result<(), Error> {
        if !role.is_targets_like() {
            return Err(Error::InvalidRoleName {
                name: role.to_string(),
            });
        }
        check_type_and_version(role.as_str(), "Targets", &self.type_name, self.version)?;
        check_key_ids(role.as_str(), &self.delegations.keys)?;
        for delegated in &self.delegations.roles {
            let child = RoleName::parse(&delegated.name).ok();
            if child.as_ref().and_then(RoleName::parent).as_ref() != Some(role) {
                return Err(invalid(
                    role,
                    format!("delegation role {} invalid", delegated.name),
                ));
            }
            let listed = RoleKeys {
                keyids: delegated.keyids.clone(),
                threshold: delegated.threshold,
            };
            check_role_keys(
                role.as_str(),
                &delegated.name,
                &listed,
                &self.delegations.keys,
            )?;
        }
        Ok(())
    }

    /// The delegation `child` as this file declares it.
    pub fn delegated_role(&self, child: &RoleName) -> Result<(TrustedRole, &DelegatedRole), Error> {
        let delegated = self
            .delegations
            .roles
            .iter()
            .find(|r| r.name == child.as_str())
            .ok_or_else(|| Error::UnknownDelegation {
                role: child.to_string(),
            })?;
        let trusted = TrustedRole {
            name: child.clone(),
            threshold: delegated.threshold,
            keys: pick_keys(&delegated.keyids, &self.delegations.keys),
        };
        Ok((trusted, delegated))
    }
}

/// `CheckValidHashStructures`: any sha256/sha512 present has the right size.
fn check_hash_sizes(container: &str, meta: &BTreeMap<String, FileMeta>) -> Result<(), Error> {
    for (name, entry) in meta {
        for (algorithm, size) in [("sha256", 32), ("sha512", 64)] {
            if entry.hashes.get(algorithm).is_some_and(|h| h.len() != size) {
                return Err(invalid(
                    container,
                    format!("invalid {algorithm} checksum for {name}"),
                ));
            }
        }
    }
    Ok(())
}

fn require_sha256(
    container: &str,
    meta: &BTreeMap<String, FileMeta>,
    file: &str,
) -> Result<(), Error> {
    let valid = meta
        .get(file)
        .and_then(FileMeta::sha256)
        .is_some_and(|h| h.len() == 32);
    if valid {
        Ok(())
    } else {
        Err(invalid(
            container,
            format!("missing or invalid {file} sha256 checksum information"),
        ))
    }
}

impl Snapshot {
    /// `isValidSnapshotStructure`: sha256 for root and targets.
    pub fn validate_structure(&self) -> Result<(), Error> {
        check_type_and_version("snapshot", "Snapshot", &self.type_name, self.version)?;
        require_sha256("snapshot", &self.meta, "root")?;
        require_sha256("snapshot", &self.meta, "targets")?;
        check_hash_sizes("snapshot", &self.meta)
    }
}

impl Timestamp {
    /// `isValidTimestampStructure`: sha256 for the snapshot.
    pub fn validate_structure(&self) -> Result<(), Error> {
        check_type_and_version("timestamp", "Timestamp", &self.type_name, self.version)?;
        require_sha256("timestamp", &self.meta, "snapshot")?;
        check_hash_sizes("timestamp", &self.meta)
    }
}

/// Whether `target` falls under one of `paths` (string prefixes; `""`
/// matches everything).
pub fn path_allowed(target: &str, paths: &[String]) -> bool {
    paths
        .iter()
        .any(|prefix| target.starts_with(prefix.as_str()))
}

/// `RestrictDelegationPathPrefixes`: the child's paths that some parent path
/// prefixes.
pub fn restrict_paths(parent_paths: &[String], child_paths: &[String]) -> Vec<String> {
    child_paths
        .iter()
        .filter(|child| parent_paths.iter().any(|p| child.starts_with(p.as_str())))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_follow_notary_rules() {
        for good in [
            "root",
            "targets",
            "targets/releases",
            "targets/a/b-c_1",
            "snapshot",
        ] {
            assert!(RoleName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "targets/",
            "targets//a",
            "targets/A",
            "targets/a.b",
            "releases",
            "",
            "targets/../root",
        ] {
            assert!(
                matches!(RoleName::parse(bad), Err(Error::InvalidRoleName { .. })),
                "{bad}"
            );
        }
        let long = format!("targets/{}", "a".repeat(247));
        assert!(RoleName::parse(&long).is_ok());
        assert!(RoleName::parse(&format!("{long}a")).is_err());
    }

    #[test]
    fn versions_are_bounded() {
        check_type_and_version("targets", "Targets", "Targets", MAX_VERSION).unwrap();
        let too_big = check_type_and_version("targets", "Targets", "Targets", MAX_VERSION + 1);
        assert!(matches!(too_big, Err(Error::InvalidStructure { .. })));
        assert!(check_type_and_version("targets", "Targets", "Targets", 0).is_err());
    }

    #[test]
    fn parents_and_depth() {
        let role = RoleName::parse("targets/a/b").unwrap();
        assert_eq!(role.parent(), Some(RoleName::parse("targets/a").unwrap()));
        assert_eq!(
            RoleName::parse("targets/a").unwrap().parent(),
            Some(RoleName::Targets)
        );
        assert_eq!(RoleName::Targets.parent(), None);
        assert_eq!(role.depth(), 3);
    }

    #[test]
    fn delegation_paths_are_prefixes() {
        let paths = vec!["lib/".to_string(), "bin".to_string()];
        assert!(path_allowed("lib/x", &paths));
        assert!(path_allowed("binary", &paths));
        assert!(!path_allowed("etc", &paths));
        assert!(path_allowed("anything", &[String::new()]));
        assert!(!path_allowed("anything", &[]));
        assert_eq!(
            restrict_paths(&["lib/".into()], &["lib/a".into(), "x".into()]),
            vec!["lib/a".to_string()]
        );
    }
}
