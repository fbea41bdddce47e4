#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Uploads the server must refuse although every signature is good: a
//! client-held snapshot that disagrees with what is stored, keys filed
//! under foreign key IDs, and JSON objects with duplicate keys. Each is a
//! real publish through the repository layer (SQLite store, server keys),
//! mapped to HTTP by `server::error` exactly as the routes do; each refusal
//! must be 400 INVALID_UPDATE with a detail the notary client prints, and
//! must leave every stored file as it was.

use std::collections::BTreeMap;
use std::sync::Arc;

use common::store::TestStore;
use notarium::repo::{Error, Repo};
use notarium::server::error::ApiError;
use notarium::tuf::encoding::format_time;
use notarium::tuf::envelope::write_envelope;
use notarium::tuf::sign::sign_metadata;
use notarium::tuf::{FileMeta, KeyAlgorithm, RoleName, SignedFile, SigningKey, canonical};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

#[path = "support/builder.rs"]
mod builder;
mod common;

use builder::ClientKeys;

const GUN: &str = "registry.test/team/consistency";

/// A repository whose owner holds the snapshot key, with `targets` (v1 or
/// later) delegating `targets/releases` and `targets/releases/beta`.
struct Fixture {
    repo: Repo<TestStore>,
    client: ClientKeys,
    snapshot_key: SigningKey,
    releases_key: SigningKey,
    beta_key: SigningKey,
    now: OffsetDateTime,
    root: Vec<u8>,
    /// The current bytes of each targets-like role, as published.
    files: BTreeMap<String, Vec<u8>>,
    snapshot_version: i64,
    _dir: tempfile::TempDir,
}

fn meta(bytes: &[u8]) -> Value {
    serde_json::to_value(FileMeta::for_bytes(bytes)).unwrap()
}

fn with_targets(mut body: Value, tags: &[&str]) -> Value {
    for tag in tags {
        body["targets"][*tag] = meta(tag.as_bytes());
    }
    body
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, keys) = common::store::temp_store(dir.path()).await;
        let now = OffsetDateTime::now_utc();
        let repo = Repo::new(store, keys, Arc::new(move || now));
        let client = ClientKeys::new(GUN, now);
        let snapshot_key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let timestamp = repo.public_key(GUN, &RoleName::Timestamp).await.unwrap();
        let root = client.root(1, snapshot_key.public_key(), &timestamp, now);
        let mut fixture = Self {
            repo,
            client,
            snapshot_key,
            releases_key: SigningKey::generate(KeyAlgorithm::Ed25519).unwrap(),
            beta_key: SigningKey::generate(KeyAlgorithm::Ed25519).unwrap(),
            now,
            root,
            files: BTreeMap::new(),
            snapshot_version: 0,
            _dir: dir,
        };
        let targets = fixture.targets(1, &["v1"], true);
        let releases = fixture.releases(1, &["r1"], true);
        let beta = fixture.beta(1, &["b1"]);
        fixture
            .publish_ok(&[
                ("root", fixture.root.clone()),
                ("targets", targets),
                ("targets/releases", releases),
                ("targets/releases/beta", beta),
            ])
            .await;
        fixture
    }

    fn delegation(key: &SigningKey, name: &str) -> (Value, Value) {
        let public = key.public_key();
        (
            json!({public.id(): public.to_json()}),
            json!([{"name": name, "keyids": [public.id()], "threshold": 1, "paths": [""]}]),
        )
    }

    fn targets_body(&self, version: i64, tags: &[&str], delegate: bool) -> Value {
        let mut body = with_targets(self.client.targets_body(version, &[], self.now), tags);
        if delegate {
            let (keys, roles) = Self::delegation(&self.releases_key, "targets/releases");
            body["delegations"] = json!({"keys": keys, "roles": roles});
        }
        body
    }

    fn targets(&self, version: i64, tags: &[&str], delegate: bool) -> Vec<u8> {
        sign_metadata(
            &self.targets_body(version, tags, delegate),
            &[&self.client.targets_key],
        )
        .unwrap()
    }

    fn releases(&self, version: i64, tags: &[&str], delegate_beta: bool) -> Vec<u8> {
        let mut body = with_targets(self.client.targets_body(version, &[], self.now), tags);
        if delegate_beta {
            let (keys, roles) = Self::delegation(&self.beta_key, "targets/releases/beta");
            body["delegations"] = json!({"keys": keys, "roles": roles});
        }
        sign_metadata(&body, &[&self.releases_key]).unwrap()
    }

    fn beta(&self, version: i64, tags: &[&str]) -> Vec<u8> {
        let body = with_targets(self.client.targets_body(version, &[], self.now), tags);
        sign_metadata(&body, &[&self.beta_key]).unwrap()
    }

    /// A snapshot signed by the owner's snapshot key listing `entries`.
    fn snapshot_of(&self, version: i64, entries: &[(&str, &[u8])]) -> Vec<u8> {
        let meta: serde_json::Map<String, Value> = entries
            .iter()
            .map(|(role, bytes)| (role.to_string(), meta(bytes)))
            .collect();
        let body = json!({
            "_type": "Snapshot",
            "expires": format_time(self.now + Duration::days(1095)),
            "meta": meta,
            "version": version,
        });
        sign_metadata(&body, &[&self.snapshot_key]).unwrap()
    }

    /// The snapshot an honest client would send with `changed` files.
    fn honest_snapshot(&self, changed: &[(&str, &[u8])]) -> Vec<u8> {
        let mut files: BTreeMap<String, Vec<u8>> = self.files.clone();
        for (role, bytes) in changed {
            files.insert(role.to_string(), bytes.to_vec());
        }
        let mut entries: Vec<(&str, &[u8])> = vec![("root", &self.root)];
        entries.extend(files.iter().map(|(r, b)| (r.as_str(), b.as_slice())));
        self.snapshot_of(self.snapshot_version + 1, &entries)
    }

    async fn publish(&self, parts: &[(&str, Vec<u8>)]) -> Result<(), Error> {
        let parts = parts
            .iter()
            .map(|(role, bytes)| (role.to_string(), bytes.clone()))
            .collect();
        self.repo
            .publish(GUN, parts, notarium::repo::ANONYMOUS)
            .await
    }

    /// Publishes `parts` with an honest client snapshot and remembers them.
    async fn publish_ok(&mut self, parts: &[(&str, Vec<u8>)]) {
        let changed: Vec<(&str, &[u8])> = parts
            .iter()
            .filter(|(role, _)| *role != "root")
            .map(|(role, bytes)| (*role, bytes.as_slice()))
            .collect();
        let snapshot = self.honest_snapshot(&changed);
        let mut all = parts.to_vec();
        all.push(("snapshot", snapshot));
        self.publish(&all).await.unwrap();
        for (role, bytes) in parts {
            if *role != "root" {
                self.files.insert(role.to_string(), bytes.clone());
            }
        }
        self.snapshot_version += 1;
    }

    /// Every stored role's current bytes.
    async fn stored(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for role in [
            "root",
            "targets",
            "targets/releases",
            "targets/releases/beta",
            "snapshot",
            "timestamp",
        ] {
            let served = self
                .repo
                .current(GUN, &RoleName::parse(role).unwrap())
                .await
                .unwrap();
            out.insert(role.to_string(), served.data.to_vec());
        }
        out
    }

    /// Publishes `parts`, expects a refusal matching `expected`, checks its
    /// HTTP form, and that nothing stored changed. Returns the message the
    /// client prints.
    async fn refused(
        &self,
        parts: &[(&str, Vec<u8>)],
        expected: impl Fn(&Error) -> bool,
        detail_name: &str,
        words: &[&str],
    ) -> String {
        let before = self.stored().await;
        let error = self
            .publish(parts)
            .await
            .expect_err("the upload was accepted");
        assert!(expected(&error), "unexpected refusal: {error:?}");
        let api = ApiError::from_repo(&error, true);
        assert_eq!(api.code.status().as_u16(), 400, "{error:?}");
        let body: Value = serde_json::from_slice(&api.body()).unwrap();
        let entry = &body["errors"][0];
        assert_eq!(entry["code"], "INVALID_UPDATE", "{body}");
        assert_eq!(entry["detail"]["Name"], detail_name, "{body}");
        let message = entry["detail"]["Error"]["Msg"]
            .as_str()
            .unwrap()
            .to_string();
        for word in words {
            assert!(message.contains(word), "{word:?} not in {message:?}");
        }
        assert_eq!(
            self.stored().await,
            before,
            "a refused upload changed stored data"
        );
        message
    }
}

// Snapshot consistency --------------------------------------------------

#[tokio::test]
async fn an_honest_snapshot_alone_and_with_a_dropped_delegation_is_accepted() {
    let mut f = Fixture::new().await;
    // Re-signing the snapshot alone (nothing else changed) is fine.
    let snapshot = f.honest_snapshot(&[]);
    f.publish(&[("snapshot", snapshot)]).await.unwrap();
    f.snapshot_version += 1;
    // Removing the delegation from targets lets the snapshot leave it out
    // (notary's DeleteDelegation removes its meta); its child goes too.
    let targets = f.targets(2, &["v1"], false);
    let root = f.root.clone();
    let snapshot = f.snapshot_of(
        f.snapshot_version + 1,
        &[("root", &root), ("targets", &targets)],
    );
    f.publish(&[("targets", targets.clone()), ("snapshot", snapshot)])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_snapshot_alone_cannot_point_back_at_superseded_targets() {
    let mut f = Fixture::new().await;
    let old_targets = f.files["targets"].clone();
    let new_targets = f.targets(2, &["v1", "v2"], true);
    f.publish_ok(&[("targets", new_targets)]).await;
    // Same signer, next version, but naming targets v1 again.
    let mut entries: Vec<(&str, &[u8])> = vec![("root", &f.root)];
    entries.extend(f.files.iter().map(|(r, b)| (r.as_str(), b.as_slice())));
    entries.retain(|(role, _)| *role != "targets");
    entries.push(("targets", &old_targets));
    let snapshot = f.snapshot_of(f.snapshot_version + 1, &entries);
    f.refused(
        &[("snapshot", snapshot)],
        |e| matches!(e, Error::SnapshotStale { role, current: 2 } if role == "targets"),
        "ErrBadSnapshot",
        &["targets", "not its current version", "version 2"],
    )
    .await;
}

#[tokio::test]
async fn a_snapshot_alone_cannot_point_back_at_a_superseded_delegation() {
    let mut f = Fixture::new().await;
    let old_beta = f.files["targets/releases/beta"].clone();
    let new_beta = f.beta(2, &["b1", "b2"]);
    f.publish_ok(&[("targets/releases/beta", new_beta)]).await;
    let mut entries: Vec<(&str, &[u8])> = vec![("root", &f.root)];
    entries.extend(
        f.files
            .iter()
            .filter(|(r, _)| r.as_str() != "targets/releases/beta")
            .map(|(r, b)| (r.as_str(), b.as_slice())),
    );
    entries.push(("targets/releases/beta", &old_beta));
    let snapshot = f.snapshot_of(f.snapshot_version + 1, &entries);
    f.refused(
        &[("snapshot", snapshot)],
        |e| matches!(e, Error::SnapshotStale { role, .. } if role == "targets/releases/beta"),
        "ErrBadSnapshot",
        &["targets/releases/beta"],
    )
    .await;
}

#[tokio::test]
async fn a_snapshot_cannot_name_files_the_server_does_not_have() {
    let f = Fixture::new().await;
    for (name, words) in [
        ("targets/ghost", vec!["targets/ghost", "does not have"]),
        // Delegated by releases? No: and never published either.
        ("targets/releases/gamma", vec!["targets/releases/gamma"]),
        ("timestamp", vec!["timestamp"]),
        ("../targets", vec!["../targets"]),
    ] {
        let mut entries: Vec<(&str, &[u8])> = vec![("root", &f.root)];
        entries.extend(f.files.iter().map(|(r, b)| (r.as_str(), b.as_slice())));
        entries.push((name, b"{}"));
        let snapshot = f.snapshot_of(f.snapshot_version + 1, &entries);
        f.refused(
            &[("snapshot", snapshot)],
            |e| matches!(e, Error::SnapshotUnknownRole { role } if role == name),
            "ErrBadSnapshot",
            &words,
        )
        .await;
    }
}

#[tokio::test]
async fn a_snapshot_cannot_drop_a_delegation_that_exists() {
    let f = Fixture::new().await;
    for dropped in ["targets/releases", "targets/releases/beta"] {
        let mut entries: Vec<(&str, &[u8])> = vec![("root", &f.root)];
        entries.extend(
            f.files
                .iter()
                .filter(|(r, _)| r.as_str() != dropped)
                .map(|(r, b)| (r.as_str(), b.as_slice())),
        );
        let snapshot = f.snapshot_of(f.snapshot_version + 1, &entries);
        f.refused(
            &[("snapshot", snapshot)],
            |e| matches!(e, Error::SnapshotDropsRole { role, .. } if role == dropped),
            "ErrBadSnapshot",
            &[dropped, "still delegates"],
        )
        .await;
    }
}

// Key IDs -----------------------------------------------------------------

#[tokio::test]
async fn a_delegation_key_must_sit_under_its_own_key_id() {
    let f = Fixture::new().await;
    // The releases key ID now holds another key: its signatures would count
    // as the listed key's.
    let intruder = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let listed = f.releases_key.public_key().id().to_string();
    let mut body = f.targets_body(2, &["v1"], true);
    body["delegations"]["keys"] = json!({listed.clone(): intruder.public_key().to_json()});
    let targets = sign_metadata(&body, &[&f.client.targets_key]).unwrap();
    let snapshot = f.honest_snapshot(&[("targets", &targets)]);
    let computed = intruder.public_key().id().to_string();
    f.refused(
        &[("targets", targets), ("snapshot", snapshot)],
        |e| {
            matches!(e, Error::KeyIdMismatch { role, listed: l, computed: c }
                if role == "targets" && *l == listed && *c == computed)
        },
        "ErrBadTargets",
        &["targets", &listed, &computed, "its own key ID"],
    )
    .await;

    // An unused key under a wrong ID is refused as well.
    let mut body = f.targets_body(2, &["v1"], true);
    body["delegations"]["keys"]["0".repeat(64)] = intruder.public_key().to_json();
    let targets = sign_metadata(&body, &[&f.client.targets_key]).unwrap();
    let snapshot = f.honest_snapshot(&[("targets", &targets)]);
    f.refused(
        &[("targets", targets), ("snapshot", snapshot)],
        |e| matches!(e, Error::KeyIdMismatch { listed, .. } if *listed == "0".repeat(64)),
        "ErrBadTargets",
        &["targets"],
    )
    .await;
}

#[tokio::test]
async fn a_root_key_must_sit_under_its_own_key_id() {
    let f = Fixture::new().await;
    let mut body = SignedFile::parse(&f.root).unwrap().signed_value().unwrap();
    body["version"] = json!(2);
    let stray = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    body["keys"]["f".repeat(64)] = stray.public_key().to_json();
    let message = canonical::to_canonical(&body).unwrap();
    let mut signature = f.client.root_key.sign(&message).unwrap();
    signature.keyid = f.client.root_public.id().to_string();
    let root = write_envelope(&message, &[signature]);
    f.refused(
        &[("root", root)],
        |e| matches!(e, Error::KeyIdMismatch { role, .. } if role == "root"),
        "ErrBadRoot",
        &["root", &"f".repeat(64)],
    )
    .await;
}

// Duplicate keys ------------------------------------------------------------

/// Inserts `,"<key>":<value>` right after the first occurrence of
/// `anchor` (which must end just inside an object).
fn duplicate_after(bytes: &[u8], anchor: &str, member: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let at = text
        .find(anchor)
        .unwrap_or_else(|| panic!("{anchor} not in {text}"))
        + anchor.len();
    format!("{}{member},{}", &text[..at], &text[at..]).into_bytes()
}

#[tokio::test]
async fn duplicate_keys_are_refused_at_every_depth_of_every_document() {
    let f = Fixture::new().await;
    let targets = f.targets(2, &["v1"], true);
    let snapshot = f.honest_snapshot(&[("targets", &targets)]);
    // (role, file, anchor, duplicate member, expected path)
    let releases_id = f.releases_key.public_key().id().to_string();
    let cases: Vec<(&str, Vec<u8>, String, String, &str)> = vec![
        // The envelope itself.
        (
            "targets",
            targets.clone(),
            "{".into(),
            r#""signatures":[]"#.into(),
            "$",
        ),
        // Inside `signed`, top level: a second version.
        (
            "targets",
            targets.clone(),
            r#"{"signed":{"#.into(),
            r#""version":9"#.into(),
            "$.signed",
        ),
        // Deep: a target's hashes.
        (
            "targets",
            targets.clone(),
            r#""hashes":{"#.into(),
            r#""sha256":"AAAA""#.into(),
            "$.signed.targets.v1.hashes",
        ),
        // Deep: a delegation key's keyval.
        (
            "targets",
            targets.clone(),
            format!(r#""{releases_id}":{{"keytype":"ed25519","keyval":{{"#),
            r#""public":"AAAA""#.into(),
            "keyval",
        ),
        // A signature object.
        (
            "targets",
            targets.clone(),
            r#""signatures":[{"#.into(),
            r#""keyid":"x""#.into(),
            "$.signatures[0]",
        ),
        // The snapshot's meta and the root.
        (
            "snapshot",
            snapshot.clone(),
            r#""meta":{"#.into(),
            r#""root":{}"#.into(),
            "$.signed.meta",
        ),
        (
            "root",
            f.root.clone(),
            r#""roles":{"#.into(),
            r#""root":{}"#.into(),
            "$.signed.roles",
        ),
    ];
    for (role, bytes, anchor, member, path) in cases {
        let tampered = duplicate_after(&bytes, &anchor, &member);
        let mut parts = vec![(role, tampered)];
        if role == "targets" {
            parts.push(("snapshot", snapshot.clone()));
        }
        let detail = match role {
            "root" => "ErrBadRoot",
            "snapshot" => "ErrBadSnapshot",
            _ => "ErrBadTargets",
        };
        f.refused(
            &parts,
            |e| matches!(e, Error::DuplicateJsonKey { role: r, path: p, .. } if r == role && p.contains(path)),
            detail,
            &[role, "repeats the JSON key"],
        )
        .await;
    }
}
