//! The expiry report's table (`role_expiry`): for each GUN, the `expires` of
//! the current version of every client-signed role (root, targets,
//! delegations, and a snapshot the client signed). The server re-signs the
//! timestamp (and a snapshot it holds the key of) by itself; client-signed
//! roles only change when a publisher re-signs them, so those are the ones
//! that can silently run out.
//!
//! Kept by the store in the transaction of each write, so the metrics count
//! with one indexed query instead of reading every file. This module holds
//! what both backends share: which rows a write implies.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Deserialize;
use time::OffsetDateTime;

use super::{ImportedRepository, NewFile};
use crate::tuf::roles::Expiry;

/// A client-signed role's current expiry, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoleExpiry {
    pub gun: String,
    pub role: String,
    /// The version whose `expires` this is.
    pub version: i64,
    #[serde(serialize_with = "super::rfc3339")]
    pub expires: OffsetDateTime,
}

/// Per cutoff, how many repositories have a client-signed role expiring
/// before it; and the soonest such expiry of all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiryCounts {
    /// In the order the cutoffs were given.
    pub before: Vec<u64>,
    pub soonest: Option<OffsetDateTime>,
}

/// Which `role_expiry` rows of one GUN a write changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExpiryChanges {
    /// (role, version, expires as Unix seconds): insert, or replace an older
    /// version's row.
    pub upsert: Vec<(String, i64, i64)>,
    /// Roles whose row goes: now server-signed, unreadable, or a delegation
    /// its parent no longer lists.
    pub remove: BTreeSet<String>,
    /// Targets-like roles written, with the child roles each delegates to
    /// now: rows of other children (and their descendants) are removed.
    pub delegators: Vec<(String, BTreeSet<String>)>,
}

impl ExpiryChanges {
    /// The rows implied by writing `files` (role, version, bytes, whether
    /// the client signed it), the newest version of each role.
    pub fn of<'a>(files: impl IntoIterator<Item = (&'a str, i64, &'a [u8], bool)>) -> Self {
        let mut changes = Self::default();
        for (role, version, data, client_signed) in files {
            // One pass over the bytes, skipping the targets: what matters
            // here was verified when the file was accepted.
            let fields = serde_json::from_slice::<Envelope>(data).ok();
            match &fields {
                Some(envelope) if client_signed => changes.upsert.push((
                    role.to_string(),
                    version,
                    envelope.signed.expires.at.unix_timestamp(),
                )),
                _ => {
                    changes.remove.insert(role.to_string());
                }
            }
            if is_targets_like(role)
                && let Some(envelope) = fields
            {
                let children = envelope
                    .signed
                    .delegations
                    .and_then(|d| d.roles)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.name)
                    .collect();
                changes.delegators.push((role.to_string(), children));
            }
        }
        changes
    }

    /// The rows implied by a publish of `files`.
    pub fn of_publish(files: &[NewFile]) -> Self {
        Self::of(files.iter().map(|f| {
            (
                f.role.as_str(),
                f.version,
                f.data.as_slice(),
                f.client_signed,
            )
        }))
    }

    /// The rows of an imported repository, its keys and the server keys
    /// of its GUN already `held` counting as server keys: an imported
    /// snapshot signed by an imported server key is server-signed.
    pub fn of_import(repository: &ImportedRepository, held: Vec<String>) -> Self {
        let mut server_keys: HashSet<String> = held.into_iter().collect();
        server_keys.extend(repository.keys.iter().map(|k| k.key.key_id.clone()));
        Self::of_repository(
            repository
                .files
                .iter()
                .map(|f| (f.role.as_str(), f.version, f.data.as_slice())),
            &server_keys,
        )
    }

    /// For the backfill: the rows of a repository from the current version
    /// of each of its roles (role, version, bytes) and its server keys.
    pub fn of_stored(rows: &[(String, i64, Vec<u8>)], server_keys: Vec<String>) -> Self {
        let server_keys: HashSet<String> = server_keys.into_iter().collect();
        Self::of_repository(
            rows.iter()
                .map(|(role, version, data)| (role.as_str(), *version, data.as_slice())),
            &server_keys,
        )
    }

    /// For imports and the backfill: the rows of a whole repository from
    /// its files (role, version, bytes; any versions), the snapshot counted
    /// as client-signed unless a server key of the GUN signed it.
    pub fn of_repository<'a>(
        files: impl IntoIterator<Item = (&'a str, i64, &'a [u8])>,
        server_keys: &HashSet<String>,
    ) -> Self {
        let mut newest: BTreeMap<&str, (i64, &[u8])> = BTreeMap::new();
        for (role, version, data) in files {
            let entry = newest.entry(role).or_insert((version, data));
            if version > entry.0 {
                *entry = (version, data);
            }
        }
        Self::of(newest.into_iter().map(|(role, (version, data))| {
            let client_signed = match role {
                "timestamp" => false,
                "snapshot" => serde_json::from_slice::<Signers>(data).is_ok_and(|file| {
                    !file
                        .signatures
                        .unwrap_or_default()
                        .iter()
                        .any(|s| server_keys.contains(&s.keyid))
                }),
                _ => true,
            };
            (role, version, data, client_signed)
        }))
    }

    /// Of `held` (the roles with a row now), those to remove: listed in
    /// `remove`, or under a delegator written here without being one of
    /// the children it lists.
    pub fn stale<'a>(&self, held: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        held.into_iter()
            .filter(|role| {
                self.remove.contains(*role)
                    || self.delegators.iter().any(|(parent, children)| {
                        role.strip_prefix(parent.as_str())
                            .and_then(|rest| rest.strip_prefix('/'))
                            .is_some_and(|rest| {
                                let child = rest.split('/').next().unwrap_or(rest);
                                !children.contains(&format!("{parent}/{child}"))
                            })
                    })
            })
            .map(str::to_string)
            .collect()
    }
}

fn is_targets_like(role: &str) -> bool {
    role == "targets" || role.starts_with("targets/")
}

/// The members of a stored file the expiry table needs; the rest (the
/// targets of a 10,000-target file) is skipped, not built.
#[derive(Deserialize)]
struct Envelope {
    signed: Fields,
}

#[derive(Deserialize)]
struct Fields {
    expires: Expiry,
    #[serde(default)]
    delegations: Option<NamesOnly>,
}

#[derive(Deserialize)]
struct NamesOnly {
    #[serde(default)]
    roles: Option<Vec<NameOnly>>,
}

#[derive(Deserialize)]
struct NameOnly {
    name: String,
}

/// Who signed a stored file, by key ID.
#[derive(Deserialize)]
struct Signers {
    #[serde(default)]
    signatures: Option<Vec<KeyIdOnly>>,
}

#[derive(Deserialize)]
struct KeyIdOnly {
    keyid: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(type_name: &str, expires: &str, extra: &str, keyid: &str) -> Vec<u8> {
        format!(
            r#"{{"signed":{{"_type":"{type_name}","expires":"{expires}","version":1{extra}}},"signatures":[{{"keyid":"{keyid}","method":"ecdsa","sig":"AAAA"}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn client_signed_roles_are_kept_and_the_rest_removed() {
        let root = envelope("Root", "2030-01-02T03:04:05Z", "", "k");
        let ts = envelope("Timestamp", "2030-01-02T03:04:05Z", "", "k");
        let junk = b"not json".to_vec();
        let changes = ExpiryChanges::of([
            ("root", 1, root.as_slice(), true),
            ("timestamp", 4, ts.as_slice(), false),
            ("targets", 2, junk.as_slice(), true),
        ]);
        assert_eq!(changes.upsert, vec![("root".to_string(), 1, 1_893_553_445)]);
        assert_eq!(
            changes.remove,
            BTreeSet::from(["timestamp".to_string(), "targets".to_string()])
        );
    }

    #[test]
    fn a_delegator_drops_the_children_it_no_longer_lists() {
        let targets = envelope(
            "Targets",
            "2030-01-01T00:00:00Z",
            r#","targets":{},"delegations":{"keys":{},"roles":[{"name":"targets/keep","keyids":[],"threshold":1}]}"#,
            "k",
        );
        let changes = ExpiryChanges::of([("targets", 3, targets.as_slice(), true)]);
        let stale = changes.stale([
            "root",
            "targets",
            "targets/keep",
            "targets/keep/deeper",
            "targets/gone",
            "targets/gone/deeper",
            "targetsx",
        ]);
        assert_eq!(stale, vec!["targets/gone", "targets/gone/deeper"]);
    }

    #[test]
    fn a_repository_snapshot_is_client_signed_unless_a_server_key_signed_it() {
        let by_client = envelope("Snapshot", "2030-01-01T00:00:00Z", "", "client");
        let by_server = envelope("Snapshot", "2031-01-01T00:00:00Z", "", "server");
        let server = HashSet::from(["server".to_string()]);
        let changes = ExpiryChanges::of_repository(
            [
                ("snapshot", 1, by_server.as_slice()),
                ("snapshot", 2, by_client.as_slice()),
            ],
            &server,
        );
        assert_eq!(changes.upsert.len(), 1);
        assert_eq!(changes.upsert[0].1, 2);
        let changes =
            ExpiryChanges::of_repository([("snapshot", 3, by_server.as_slice())], &server);
        assert!(changes.upsert.is_empty());
        assert!(changes.remove.contains("snapshot"));
    }
}
