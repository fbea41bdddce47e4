//! Caps on what one publish may cost, checked on the parsed envelopes
//! before any signature is verified or any registry is asked: a file of
//! 10⁶ keys, signatures or delegations is refused for its size, not
//! processed. Defaults are generous for real repositories; each cap is a
//! `limits.*` setting, which the refusal names.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::Error;
use super::validate::Upload;

/// Which cap an upload hit; `setting` is its configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// Key IDs a role lists (in root or in a delegation), and keys in a
    /// file's key map per role it defines.
    KeysPerRole,
    SignaturesPerFile,
    /// Delegated roles in one targets file.
    DelegationsPerFile,
    TargetsPerFile,
    PartsPerUpload,
    /// Digests asked of the registry for one publish.
    RegistryLookupsPerPublish,
}

impl Cap {
    /// The setting that raises it.
    pub fn setting(self) -> &'static str {
        match self {
            Self::KeysPerRole => "limits.keys_per_role",
            Self::SignaturesPerFile => "limits.signatures_per_file",
            Self::DelegationsPerFile => "limits.delegations_per_file",
            Self::TargetsPerFile => "limits.targets_per_file",
            Self::PartsPerUpload => "limits.parts_per_upload",
            Self::RegistryLookupsPerPublish => "limits.registry_lookups_per_publish",
        }
    }
}

/// The caps in force. See the `DEFAULT_*` constants for the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub keys_per_role: usize,
    pub signatures_per_file: usize,
    pub delegations_per_file: usize,
    pub targets_per_file: usize,
    pub parts_per_upload: usize,
    pub registry_lookups_per_publish: usize,
}

/// Notary's own roots list one to a few keys per role; 32 leaves room for
/// large teams and rotations.
pub const DEFAULT_KEYS_PER_ROLE: usize = 32;
/// A signature per listed key of the four top roles, and some to spare.
pub const DEFAULT_SIGNATURES_PER_FILE: usize = 64;
pub const DEFAULT_DELEGATIONS_PER_FILE: usize = 1_000;
pub const DEFAULT_TARGETS_PER_FILE: usize = 100_000;
/// Root, targets, snapshot, timestamp and the delegations one client
/// publish may carry.
pub const DEFAULT_PARTS_PER_UPLOAD: usize = 1_000;
pub const DEFAULT_REGISTRY_LOOKUPS_PER_PUBLISH: usize = 100;

impl Default for Limits {
    fn default() -> Self {
        Self {
            keys_per_role: DEFAULT_KEYS_PER_ROLE,
            signatures_per_file: DEFAULT_SIGNATURES_PER_FILE,
            delegations_per_file: DEFAULT_DELEGATIONS_PER_FILE,
            targets_per_file: DEFAULT_TARGETS_PER_FILE,
            parts_per_upload: DEFAULT_PARTS_PER_UPLOAD,
            registry_lookups_per_publish: DEFAULT_REGISTRY_LOOKUPS_PER_PUBLISH,
        }
    }
}

fn over(cap: Cap, role: Option<&str>, count: usize, limit: usize) -> Result<(), Error> {
    if count > limit {
        return Err(Error::LimitExceeded {
            cap,
            role: role.map(|r| r.chars().take(80).collect()),
            count,
            limit,
        });
    }
    Ok(())
}

/// The counts the caps look at, read from a file's `signed` text: members
/// and elements are counted and skipped, never stored, so a huge file
/// costs no memory here. A member of an unexpected JSON type counts as
/// empty, as for a generic value.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Shape {
    /// Root's `roles`: per listed role, its number of key IDs (when an object).
    roles: Roles,
    keys: Count,
    targets: Count,
    delegations: Option<DelegationShape>,
}

/// Implements the visitor methods for JSON scalars, giving the default.
macro_rules! scalars_are_empty {
    () => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
    };
}

/// Counts the elements of an array or the members of an object.
#[derive(Default, Clone, Copy)]
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Count;
            scalars_are_empty!();
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
                skip_seq(seq).map(Count)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Count, A::Error> {
                skip_map(map).map(Count)
            }
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

/// The number of `keyids` of an object (a role listing); 0 otherwise.
#[derive(Default)]
struct KeyIds(usize);

impl<'de> Deserialize<'de> for KeyIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyIdsVisitor;
        impl<'de> Visitor<'de> for KeyIdsVisitor {
            type Value = KeyIds;
            scalars_are_empty!();
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<KeyIds, A::Error> {
                skip_seq(seq).map(|_| KeyIds(0))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyIds, A::Error> {
                let mut count = 0;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "keyids" {
                        count = map.next_value::<Count>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(KeyIds(count))
            }
        }
        deserializer.deserialize_any(KeyIdsVisitor)
    }
}

/// Skips an array's elements, counting them.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<usize, A::Error> {
    let mut count = 0;
    while seq.next_element::<IgnoredAny>()?.is_some() {
        count += 1;
    }
    Ok(count)
}

/// Skips an object's members, counting them.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<usize, A::Error> {
    let mut count = 0;
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
        count += 1;
    }
    Ok(count)
}

/// Root's `roles` when it is an object: each role's number of key IDs.
#[derive(Default)]
struct Roles(Option<Vec<usize>>);

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RolesVisitor;
        impl<'de> Visitor<'de> for RolesVisitor {
            type Value = Roles;
            scalars_are_empty!();
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Roles, A::Error> {
                skip_seq(seq).map(|_| Roles(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Roles, A::Error> {
                let mut listed = Vec::new();
                while let Some((_, keyids)) = map.next_entry::<IgnoredAny, KeyIds>()? {
                    listed.push(keyids.0);
                }
                Ok(Roles(Some(listed)))
            }
        }
        deserializer.deserialize_any(RolesVisitor)
    }
}

/// A targets file's `delegations`: how many roles, each role's number of
/// key IDs (when `roles` is an array), and how many keys.
#[derive(Default)]
struct DelegationShape {
    roles: usize,
    keyids: Vec<usize>,
    keys: usize,
}

impl<'de> Deserialize<'de> for DelegationShape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DelegationsVisitor;
        impl<'de> Visitor<'de> for DelegationsVisitor {
            type Value = DelegationShape;
            scalars_are_empty!();
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<DelegationShape, A::Error> {
                skip_seq(seq).map(|_| DelegationShape::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DelegationShape, A::Error> {
                let mut shape = DelegationShape::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match &*key {
                        "roles" => {
                            let roles = map.next_value::<DelegatedRoles>()?;
                            shape.roles = roles.count;
                            shape.keyids = roles.keyids;
                        }
                        "keys" => shape.keys = map.next_value::<Count>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(shape)
            }
        }
        deserializer.deserialize_any(DelegationsVisitor)
    }
}

/// `delegations.roles`: its length, and for an array each role's number of
/// key IDs.
#[derive(Default)]
struct DelegatedRoles {
    count: usize,
    keyids: Vec<usize>,
}

impl<'de> Deserialize<'de> for DelegatedRoles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DelegatedRolesVisitor;
        impl<'de> Visitor<'de> for DelegatedRolesVisitor {
            type Value = DelegatedRoles;
            scalars_are_empty!();
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DelegatedRoles, A::Error> {
                let mut keyids = Vec::new();
                while let Some(role) = seq.next_element::<KeyIds>()? {
                    keyids.push(role.0);
                }
                Ok(DelegatedRoles {
                    count: keyids.len(),
                    keyids,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DelegatedRoles, A::Error> {
                let count = skip_map(map)?;
                Ok(DelegatedRoles {
                    count,
                    keyids: Vec::new(),
                })
            }
        }
        deserializer.deserialize_any(DelegatedRolesVisitor)
    }
}

impl Limits {
    /// The number of multipart parts, before they are parsed.
    pub fn check_parts(&self, parts: usize) -> Result<(), Error> {
        over(Cap::PartsPerUpload, None, parts, self.parts_per_upload)
    }

    /// Registry lookups one publish needs.
    pub fn check_lookups(&self, lookups: usize) -> Result<(), Error> {
        over(
            Cap::RegistryLookupsPerPublish,
            None,
            lookups,
            self.registry_lookups_per_publish,
        )
    }

    /// Counts in every uploaded file, read from its `signed` text (no role
    /// body is built yet).
    pub fn check_uploads(&self, uploads: &[Upload]) -> Result<(), Error> {
        for upload in uploads {
            let role = upload.role.as_str();
            over(
                Cap::SignaturesPerFile,
                Some(role),
                upload.file.signatures().len(),
                self.signatures_per_file,
            )?;
            // The text parsed once already, as a whole file.
            let shape: Shape = serde_json::from_slice(upload.file.signed_bytes()).map_err(|e| {
                Error::MalformedJson {
                    role: role.to_string(),
                    error: crate::tuf::Error::MalformedJson(e),
                }
            })?;
            // Root: `roles.<name>.keyids` and the `keys` map.
            if let Some(roles) = &shape.roles.0 {
                for &keyids in roles {
                    over(Cap::KeysPerRole, Some(role), keyids, self.keys_per_role)?;
                }
                let defined = roles.len().max(4);
                over(
                    Cap::KeysPerRole,
                    Some(role),
                    shape.keys.0,
                    self.keys_per_role.saturating_mul(defined),
                )?;
            }
            // Targets and delegations.
            over(
                Cap::TargetsPerFile,
                Some(role),
                shape.targets.0,
                self.targets_per_file,
            )?;
            if let Some(delegations) = &shape.delegations {
                over(
                    Cap::DelegationsPerFile,
                    Some(role),
                    delegations.roles,
                    self.delegations_per_file,
                )?;
                for &keyids in &delegations.keyids {
                    over(Cap::KeysPerRole, Some(role), keyids, self.keys_per_role)?;
                }
                over(
                    Cap::KeysPerRole,
                    Some(role),
                    delegations.keys,
                    self.keys_per_role.saturating_mul(delegations.roles.max(1)),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuf::{RoleName, SignedFile};
    use serde_json::{Value, json};

    fn upload(role: &str, signed: &Value, signatures: usize) -> Upload {
        let sigs: Vec<Value> = (0..signatures)
            .map(|i| json!({"keyid": format!("{i:064x}"), "method": "ecdsa", "sig": "AA=="}))
            .collect();
        let raw = serde_json::to_vec(&json!({"signed": signed, "signatures": sigs})).unwrap();
        Upload {
            role: RoleName::parse(role).unwrap(),
            file: SignedFile::parse(&raw).unwrap(),
        }
    }

    fn common() -> serde_json::Map<String, Value> {
        json!({"_type": "Targets", "expires": "2030-01-01T00:00:00Z", "version": 2})
            .as_object()
            .unwrap()
            .clone()
    }

    fn targets(n: usize) -> Value {
        let mut body = common();
        let entries: serde_json::Map<String, Value> = (0..n)
            .map(|i| (format!("t{i}"), json!({"hashes": {}, "length": 1})))
            .collect();
        body.insert("targets".into(), Value::Object(entries));
        Value::Object(body)
    }

    fn delegations(roles: usize, keyids: usize, keys: usize) -> Value {
        let mut body = common();
        let ids: Vec<String> = (0..keyids).map(|i| format!("{i:064x}")).collect();
        let key_map: serde_json::Map<String, Value> = (0..keys)
            .map(|i| (format!("{i:064x}"), json!({})))
            .collect();
        let list: Vec<Value> = (0..roles)
            .map(|i| json!({"name": format!("targets/r{i}"), "keyids": ids, "paths": [""], "threshold": 1}))
            .collect();
        body.insert("targets".into(), json!({}));
        body.insert(
            "delegations".into(),
            json!({"keys": key_map, "roles": list}),
        );
        Value::Object(body)
    }

    fn root(keyids: usize, keys: usize) -> Value {
        let ids: Vec<String> = (0..keyids).map(|i| format!("{i:064x}")).collect();
        let key_map: serde_json::Map<String, Value> = (0..keys)
            .map(|i| (format!("{i:064x}"), json!({})))
            .collect();
        let role = json!({"keyids": ids, "threshold": 1});
        json!({"_type": "Root", "expires": "2030-01-01T00:00:00Z", "version": 1,
               "consistent_snapshot": false, "keys": key_map,
               "roles": {"root": role, "targets": role, "snapshot": role, "timestamp": role}})
    }

    fn cap_of(result: Result<(), Error>) -> Option<(Cap, usize, usize)> {
        match result {
            Ok(()) => None,
            Err(Error::LimitExceeded {
                cap, count, limit, ..
            }) => Some((cap, count, limit)),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    fn small() -> Limits {
        Limits {
            keys_per_role: 3,
            signatures_per_file: 2,
            delegations_per_file: 4,
            targets_per_file: 5,
            parts_per_upload: 6,
            registry_lookups_per_publish: 7,
        }
    }

    #[test]
    fn each_cap_is_accepted_at_the_limit_and_refused_above_it() {
        let l = small();
        assert_eq!(cap_of(l.check_parts(6)), None);
        assert_eq!(cap_of(l.check_parts(7)), Some((Cap::PartsPerUpload, 7, 6)));
        assert_eq!(cap_of(l.check_lookups(7)), None);
        assert_eq!(
            cap_of(l.check_lookups(8)),
            Some((Cap::RegistryLookupsPerPublish, 8, 7))
        );

        let check = |u: Upload| cap_of(l.check_uploads(&[u]));
        assert_eq!(check(upload("targets", &targets(5), 2)), None);
        assert_eq!(
            check(upload("targets", &targets(6), 2)),
            Some((Cap::TargetsPerFile, 6, 5))
        );
        assert_eq!(
            check(upload("targets", &targets(1), 3)),
            Some((Cap::SignaturesPerFile, 3, 2))
        );
        assert_eq!(check(upload("targets", &delegations(4, 3, 3), 1)), None);
        assert_eq!(
            check(upload("targets", &delegations(5, 1, 1), 1)),
            Some((Cap::DelegationsPerFile, 5, 4))
        );
        assert_eq!(
            check(upload("targets", &delegations(1, 4, 1), 1)),
            Some((Cap::KeysPerRole, 4, 3))
        );
        // The key map may hold keys_per_role per delegated role.
        assert_eq!(check(upload("targets", &delegations(2, 1, 6), 1)), None);
        assert_eq!(
            check(upload("targets", &delegations(2, 1, 7), 1)),
            Some((Cap::KeysPerRole, 7, 6))
        );
        assert_eq!(check(upload("root", &root(3, 12), 1)), None);
        assert_eq!(
            check(upload("root", &root(4, 4), 1)),
            Some((Cap::KeysPerRole, 4, 3))
        );
        assert_eq!(
            check(upload("root", &root(1, 13), 1)),
            Some((Cap::KeysPerRole, 13, 12))
        );
    }

    #[test]
    fn members_of_other_types_count_as_empty_and_escaped_names_count() {
        let l = small();
        let check = |signed: Value| cap_of(l.check_uploads(&[upload("targets", &signed, 0)]));
        let mut body = common();
        body.insert("targets".into(), json!("not a map"));
        body.insert("roles".into(), json!([1, 2, 3, 4, 5, 6]));
        body.insert("keys".into(), json!(7));
        body.insert("delegations".into(), Value::Null);
        assert_eq!(check(Value::Object(body.clone())), None);
        body.insert(
            "delegations".into(),
            json!({"roles": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}}),
        );
        assert_eq!(
            check(Value::Object(body.clone())),
            Some((Cap::DelegationsPerFile, 5, 4))
        );
        // A member name is compared decoded: `keyid\u0073` is `keyids`.
        let raw = br#"{"signed":{"_type":"Root","roles":{"root":{"keyid\u0073":[1,2,3,4]}}},"signatures":[]}"#;
        let upload = Upload {
            role: RoleName::Root,
            file: SignedFile::parse(raw).unwrap(),
        };
        assert_eq!(
            cap_of(l.check_uploads(&[upload])),
            Some((Cap::KeysPerRole, 4, 3))
        );
    }

    #[test]
    fn settings_are_named() {
        assert_eq!(Cap::TargetsPerFile.setting(), "limits.targets_per_file");
        assert_eq!(
            Cap::RegistryLookupsPerPublish.setting(),
            "limits.registry_lookups_per_publish"
        );
    }
}
