//! Caps on what one publish may cost, checked on the parsed envelopes
//! before any signature is verified or any registry is asked: a file of
//! 10⁶ keys, signatures or delegations is refused for its size, not
//! processed. Defaults are generous for real repositories; each cap is a
//! `limits.*` setting, which the refusal names.

use serde_json::Value;

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

fn len(value: Option<&Value>) -> usize {
    match value {
        Some(Value::Object(map)) => map.len(),
        Some(Value::Array(list)) => list.len(),
        _ => 0,
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

    /// Counts in every uploaded file, read from the generic JSON (no role
    /// body is built yet).
    pub fn check_uploads(&self, uploads: &[Upload]) -> Result<(), Error> {
        for upload in uploads {
            let role = upload.role.as_str();
            let signed = upload.file.signed_value();
            over(
                Cap::SignaturesPerFile,
                Some(role),
                upload.file.signatures().len(),
                self.signatures_per_file,
            )?;
            // Root: `roles.<name>.keyids` and the `keys` map.
            if let Some(Value::Object(roles)) = signed.get("roles") {
                for listed in roles.values() {
                    over(
                        Cap::KeysPerRole,
                        Some(role),
                        len(listed.get("keyids")),
                        self.keys_per_role,
                    )?;
                }
                let defined = roles.len().max(4);
                over(
                    Cap::KeysPerRole,
                    Some(role),
                    len(signed.get("keys")),
                    self.keys_per_role.saturating_mul(defined),
                )?;
            }
            // Targets and delegations.
            over(
                Cap::TargetsPerFile,
                Some(role),
                len(signed.get("targets")),
                self.targets_per_file,
            )?;
            if let Some(delegations) = signed.get("delegations") {
                let roles = delegations.get("roles");
                let count = len(roles);
                over(
                    Cap::DelegationsPerFile,
                    Some(role),
                    count,
                    self.delegations_per_file,
                )?;
                if let Some(Value::Array(roles)) = roles {
                    for delegated in roles {
                        over(
                            Cap::KeysPerRole,
                            Some(role),
                            len(delegated.get("keyids")),
                            self.keys_per_role,
                        )?;
                    }
                }
                over(
                    Cap::KeysPerRole,
                    Some(role),
                    len(delegations.get("keys")),
                    self.keys_per_role.saturating_mul(count.max(1)),
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
    use serde_json::json;

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
    fn settings_are_named() {
        assert_eq!(Cap::TargetsPerFile.setting(), "limits.targets_per_file");
        assert_eq!(
            Cap::RegistryLookupsPerPublish.setting(),
            "limits.registry_lookups_per_publish"
        );
    }
}
