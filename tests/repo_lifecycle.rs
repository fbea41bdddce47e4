#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The repository layer in-process, with a pinned clock: a repository built
//! by our own client-side code is published, read, kept fresh, and guarded
//! against rollback.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use common::store::TestStore;
use notarium::policy::{IndexKind, Lookup, LookupError, ManifestKind, ManifestSource, Violation};
use notarium::repo::{Clock, Error, Policy, Refusal, Rejection, Repo};
use notarium::tuf::encoding::format_time;
use notarium::tuf::sign::sign_metadata;
use notarium::tuf::{KeyAlgorithm, PublicKey, RoleName, SignedFile, SigningKey};
use serde_json::json;
use time::{Duration, OffsetDateTime};

#[path = "support/builder.rs"]
mod builder;
mod common;

use builder::ClientKeys;

const GUN: &str = "registry.test/team/app";

/// A clock the test moves forward.
struct TestClock(AtomicI64);

impl TestClock {
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.whole_seconds(), Ordering::SeqCst);
    }
}

struct Fixture {
    repo: Repo<TestStore>,
    clock: Arc<TestClock>,
    client: ClientKeys,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    fixture_with(Policy::default()).await
}

async fn fixture_with(policy: Policy) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = common::store::temp_store(dir.path()).await;
    let clock = Arc::new(TestClock(AtomicI64::new(
        OffsetDateTime::now_utc().unix_timestamp(),
    )));
    let reader = clock.clone();
    let clock_fn: Clock = Arc::new(move || {
        OffsetDateTime::from_unix_timestamp(reader.0.load(Ordering::SeqCst)).unwrap()
    });
    let now = clock_fn();
    let repo = Repo::new(store, keys, clock_fn).with_policy(policy);
    Fixture {
        repo,
        clock,
        client: ClientKeys::new(GUN, now),
        _dir: dir,
    }
}

fn now(f: &Fixture) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(f.clock.0.load(Ordering::SeqCst)).unwrap()
}

async fn root_bytes(f: &Fixture, version: i64) -> Vec<u8> {
    let timestamp = f.repo.public_key(GUN, &RoleName::Timestamp).await.unwrap();
    let snapshot = f.repo.public_key(GUN, &RoleName::Snapshot).await.unwrap();
    f.client.root(version, &snapshot, &timestamp, now(f))
}

fn targets_bytes(f: &Fixture, version: i64, names: &[&str]) -> Vec<u8> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    f.client.targets(version, &names, now(f))
}

async fn current_version(f: &Fixture, role: RoleName) -> i64 {
    let served = f.repo.current(GUN, &role).await.unwrap();
    SignedFile::parse(&served.data)
        .unwrap()
        .common()
        .unwrap()
        .version
}

#[tokio::test]
async fn publish_serve_refresh_and_refuse_rollback() {
    let f = fixture().await;
    let root = root_bytes(&f, 1).await;
    f.repo
        .publish(
            GUN,
            vec![
                ("root".into(), root),
                ("targets".into(), targets_bytes(&f, 1, &["v1"])),
            ],
            "tester",
        )
        .await
        .unwrap();
    assert_eq!(current_version(&f, RoleName::Timestamp).await, 1);
    assert_eq!(current_version(&f, RoleName::Snapshot).await, 1);

    // Reads within the timestamp's first week change nothing.
    f.clock.advance(Duration::days(6));
    assert_eq!(current_version(&f, RoleName::Timestamp).await, 1);
    // Less than a week left: the next read re-signs it.
    f.clock.advance(Duration::days(2));
    assert_eq!(current_version(&f, RoleName::Timestamp).await, 2);
    assert_eq!(current_version(&f, RoleName::Timestamp).await, 2);
    assert_eq!(current_version(&f, RoleName::Snapshot).await, 1);
    // Near the snapshot's expiry the server re-signs it too (it holds the key).
    f.clock.advance(Duration::days(1095 - 20));
    assert_eq!(current_version(&f, RoleName::Snapshot).await, 2);
    assert_eq!(current_version(&f, RoleName::Timestamp).await, 3);

    // A new targets version is accepted; replaying the old one is not.
    f.repo
        .publish(
            GUN,
            vec![("targets".into(), targets_bytes(&f, 2, &["v1", "v2"]))],
            "tester",
        )
        .await
        .unwrap();
    let replay = f
        .repo
        .publish(
            GUN,
            vec![("targets".into(), targets_bytes(&f, 2, &["evil"]))],
            "tester",
        )
        .await;
    assert!(
        matches!(replay, Err(Error::StaleVersion { ref role, version: 2, current: 2 }) if role == "targets"),
        "{replay:?}"
    );
    let served = f.repo.current(GUN, &RoleName::Targets).await.unwrap();
    let body: notarium::tuf::Targets = SignedFile::parse(&served.data)
        .unwrap()
        .body("targets")
        .unwrap();
    assert!(body.targets.contains_key("v2") && !body.targets.contains_key("evil"));

    // Consistent reads by version and by checksum.
    let v1 = f.repo.by_version(GUN, &RoleName::Targets, 1).await.unwrap();
    let hash = hex::encode(notarium::tuf::sha256(&v1.data));
    let same = f
        .repo
        .by_checksum(GUN, &RoleName::Targets, &hash)
        .await
        .unwrap();
    assert_eq!(same.data, v1.data);
    assert!(matches!(
        f.repo
            .by_checksum("registry.test/other", &RoleName::Targets, &hash)
            .await,
        Err(Error::NotFound { .. })
    ));

    // Delete removes exactly this GUN.
    assert!(f.repo.delete(GUN, "tester").await.unwrap());
    assert!(matches!(
        f.repo.current(GUN, &RoleName::Root).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn expired_uploads_and_unheld_keys_are_refused() {
    let f = fixture().await;
    // Targets that expired yesterday.
    let body = json!({
        "_type": "Targets", "delegations": {"keys": {}, "roles": []},
        "expires": format_time(now(&f) - Duration::days(1)), "targets": {}, "version": 1,
    });
    let expired = sign_metadata(&body, &[&f.client.targets_key]).unwrap();
    let result = f
        .repo
        .publish(
            GUN,
            vec![
                ("root".into(), root_bytes(&f, 1).await),
                ("targets".into(), expired),
            ],
            "tester",
        )
        .await;
    match result {
        Err(Error::Rejected {
            kind: Rejection::BadTargets,
            reason,
        }) => assert!(
            matches!(&*reason, Refusal::Tuf(notarium::tuf::Error::Expired { role, .. }) if role == "targets"),
            "{reason:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        f.repo.current(GUN, &RoleName::Root).await,
        Err(Error::NotFound { .. })
    ));

    // A root listing a snapshot key the server does not hold, and no
    // snapshot in the upload: the hierarchy is incomplete.
    let other = fixture().await;
    let foreign = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let timestamp = other
        .repo
        .public_key(GUN, &RoleName::Timestamp)
        .await
        .unwrap();
    let mut keys = serde_json::Map::new();
    for key in [
        &other.client.root_public,
        other.client.targets_key.public_key(),
        &timestamp,
        foreign.public_key(),
    ] {
        keys.insert(key.id().to_string(), key.to_json());
    }
    let role = |key: &PublicKey| json!({"keyids": [key.id()], "threshold": 1});
    let body = json!({
        "_type": "Root", "consistent_snapshot": false,
        "expires": format_time(now(&other) + Duration::days(3650)), "keys": keys,
        "roles": {"root": role(&other.client.root_public), "targets": role(other.client.targets_key.public_key()),
                  "snapshot": role(foreign.public_key()), "timestamp": role(&timestamp)},
        "version": 1,
    });
    let message = notarium::tuf::canonical::to_canonical(&body).unwrap();
    let mut signature = other.client.root_key.sign(&message).unwrap();
    signature.keyid = other.client.root_public.id().to_string();
    let root = notarium::tuf::envelope::write_envelope(&message, &[signature]);
    let result = other
        .repo
        .publish(
            GUN,
            vec![
                ("root".into(), root),
                ("targets".into(), targets_bytes(&other, 1, &[])),
            ],
            "tester",
        )
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Rejected {
                kind: Rejection::BadHierarchy {
                    missing: "snapshot"
                },
                ..
            })
        ),
        "{result:?}"
    );
    assert!(matches!(
        other.repo.current(GUN, &RoleName::Root).await,
        Err(Error::NotFound { .. })
    ));
}

/// Targets listing `tags` (name → content) and, optionally, a delegation
/// `targets/releases` to `delegate`.
fn targets_with(
    f: &Fixture,
    version: i64,
    tags: &[(&str, &str)],
    delegate: Option<&SigningKey>,
) -> Vec<u8> {
    let mut body = f.client.targets_body(version, &[], now(f));
    for (tag, content) in tags {
        body["targets"][*tag] =
            serde_json::to_value(notarium::tuf::FileMeta::for_bytes(content.as_bytes())).unwrap();
    }
    if let Some(key) = delegate {
        let public = key.public_key();
        body["delegations"] = json!({
            "keys": {public.id(): public.to_json()},
            "roles": [{"name": "targets/releases", "keyids": [public.id()], "threshold": 1, "paths": [""]}],
        });
    }
    sign_metadata(&body, &[&f.client.targets_key]).unwrap()
}

fn releases_with(f: &Fixture, key: &SigningKey, version: i64, tags: &[(&str, &str)]) -> Vec<u8> {
    let mut body = f.client.targets_body(version, &[], now(f));
    for (tag, content) in tags {
        body["targets"][*tag] =
            serde_json::to_value(notarium::tuf::FileMeta::for_bytes(content.as_bytes())).unwrap();
    }
    sign_metadata(&body, &[key]).unwrap()
}

#[tokio::test]
async fn immutable_tags_hold_across_roles_and_delegation_removal() {
    let f = fixture_with(Policy {
        immutable: vec![GUN.to_string()],
        ..Policy::default()
    })
    .await;
    let delegate = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let root = root_bytes(&f, 1).await;
    f.repo
        .publish(
            GUN,
            vec![
                ("root".into(), root),
                (
                    "targets".into(),
                    targets_with(&f, 1, &[("v1", "one")], Some(&delegate)),
                ),
            ],
            "tester",
        )
        .await
        .unwrap();
    // The same tag in another role with another digest: refused.
    let moved = f
        .repo
        .publish(
            GUN,
            vec![(
                "targets/releases".into(),
                releases_with(&f, &delegate, 1, &[("v1", "evil")]),
            )],
            "tester",
        )
        .await;
    assert!(
        matches!(moved, Err(Error::Policy(Violation::ImmutableTagChanged { ref tag, .. })) if tag == "v1"),
        "{moved:?}"
    );
    // The same digest there, and a new tag: fine.
    f.repo
        .publish(
            GUN,
            vec![(
                "targets/releases".into(),
                releases_with(&f, &delegate, 1, &[("v1", "one"), ("v2", "two")]),
            )],
            "tester",
        )
        .await
        .unwrap();
    // Dropping the delegation would drop its signed tags: refused.
    let dropped = f
        .repo
        .publish(
            GUN,
            vec![(
                "targets".into(),
                targets_with(&f, 2, &[("v1", "one")], None),
            )],
            "tester",
        )
        .await;
    assert!(
        matches!(
            dropped,
            Err(Error::Policy(Violation::ImmutableTagRemoved { .. }))
        ),
        "{dropped:?}"
    );
}

/// A registry that calls every digest a multi-platform index.
struct EverythingIsAnIndex;

impl ManifestSource for EverythingIsAnIndex {
    fn covers(&self, _gun: &str) -> bool {
        true
    }
    fn requires_image_manifests(&self, _gun: &str) -> bool {
        false
    }
    fn lookup<'a>(
        &'a self,
        _gun: &'a str,
        _digest: &'a str,
        _length: i64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Lookup, LookupError>> + Send + 'a>>
    {
        Box::pin(async { Ok(Lookup::Found(ManifestKind::Index(IndexKind::OciIndex))) })
    }
}

#[tokio::test]
async fn a_declared_image_media_type_does_not_bypass_the_registry() {
    let f = fixture_with(Policy {
        manifests: Arc::new(EverythingIsAnIndex),
        ..Policy::default()
    })
    .await;
    let mut body = f.client.targets_body(1, &["1.0".to_string()], now(&f));
    body["targets"]["1.0"]["custom"] =
        json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json"});
    let targets = sign_metadata(&body, &[&f.client.targets_key]).unwrap();
    let root = root_bytes(&f, 1).await;
    let result = f
        .repo
        .publish(
            GUN,
            vec![("root".into(), root), ("targets".into(), targets)],
            "tester",
        )
        .await;
    assert!(
        matches!(result, Err(Error::Policy(Violation::Index { ref tag, .. })) if tag == "1.0"),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_client_held_snapshot_near_expiry_does_not_make_reads_re_sign() {
    let f = fixture().await;
    let snapshot_key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let timestamp = f.repo.public_key(GUN, &RoleName::Timestamp).await.unwrap();
    let root = f
        .client
        .root(1, snapshot_key.public_key(), &timestamp, now(&f));
    let targets = targets_bytes(&f, 1, &["v1"]);
    let snapshot = json!({
        "_type": "Snapshot",
        "expires": format_time(now(&f) + Duration::days(40)),
        "meta": {
            "root": notarium::tuf::FileMeta::for_bytes(&root),
            "targets": notarium::tuf::FileMeta::for_bytes(&targets),
        },
        "version": 1,
    });
    let snapshot = sign_metadata(&snapshot, &[&snapshot_key]).unwrap();
    f.repo
        .publish(
            GUN,
            vec![
                ("root".into(), root),
                ("targets".into(), targets),
                ("snapshot".into(), snapshot),
            ],
            "tester",
        )
        .await
        .unwrap();
    // The server now also holds a snapshot key root does not list.
    f.repo.public_key(GUN, &RoleName::Snapshot).await.unwrap();
    // Twelve days on: the timestamp is due (re-signed once), the client's
    // snapshot is within 30 days of expiry but is not the server's to sign.
    f.clock.advance(Duration::days(12));
    assert_eq!(current_version(&f, RoleName::Timestamp).await, 2);
    for _ in 0..3 {
        assert_eq!(current_version(&f, RoleName::Timestamp).await, 2);
        assert_eq!(current_version(&f, RoleName::Snapshot).await, 1);
    }
}

#[tokio::test]
async fn audit_trail_and_retired_keys_after_delete() {
    use notarium::store::AuditAction;
    let f = fixture().await;
    let root = root_bytes(&f, 1).await;
    let targets = targets_bytes(&f, 1, &["v1"]);
    f.repo
        .publish(
            GUN,
            vec![
                ("root".into(), root.clone()),
                ("targets".into(), targets.clone()),
            ],
            "alice",
        )
        .await
        .unwrap();
    // A refused publish records nothing, and neither does one that
    // changes nothing (the same bytes again).
    f.repo
        .publish(GUN, vec![("targets".into(), targets.clone())], "mallory")
        .await
        .unwrap();
    let stale = f
        .repo
        .publish(
            GUN,
            vec![("targets".into(), targets_bytes(&f, 1, &["other"]))],
            "mallory",
        )
        .await;
    assert!(
        matches!(stale, Err(Error::StaleVersion { .. })),
        "{stale:?}"
    );
    let rotated = f
        .repo
        .rotate_key(GUN, &RoleName::Timestamp, "bob")
        .await
        .unwrap();
    assert!(f.repo.delete(GUN, "carol").await.unwrap());

    // The deleted repository's root lists retired keys: refused, nothing
    // stored, nothing recorded.
    let replay = f
        .repo
        .publish(
            GUN,
            vec![("root".into(), root), ("targets".into(), targets)],
            "mallory",
        )
        .await;
    match replay {
        Err(Error::RetiredKey { role, .. }) => assert_eq!(role, "timestamp"),
        other => panic!("expected a retired-key refusal, got {other:?}"),
    }
    assert!(matches!(
        f.repo.current(GUN, &RoleName::Root).await,
        Err(Error::NotFound { .. })
    ));

    let records = f.repo.audit(GUN, None, None).await.unwrap();
    let summary: Vec<(AuditAction, &str)> = records
        .iter()
        .map(|r| (r.action, r.subject.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (AuditAction::Delete, "carol"),
            (AuditAction::RotateKey, "bob"),
            (AuditAction::Publish, "alice"),
        ]
    );
    let published: Vec<(&str, i64)> = records[2]
        .roles
        .iter()
        .map(|r| (r.role.as_str(), r.version))
        .collect();
    assert_eq!(
        published,
        [
            ("root", 1),
            ("targets", 1),
            ("snapshot", 1),
            ("timestamp", 1)
        ]
    );
    assert_eq!(records[1].key_ids, [rotated.id()]);
    assert!(records[0].key_ids.contains(&rotated.id().to_string()));
    assert!(matches!(
        f.repo.audit(GUN, Some(0), None).await,
        Err(Error::InvalidParameters { .. })
    ));

    // A new repository of the name gets new server keys and publishes.
    let fresh_root = root_bytes(&f, 1).await;
    f.repo
        .publish(
            GUN,
            vec![
                ("root".into(), fresh_root),
                ("targets".into(), targets_bytes(&f, 1, &["v2"])),
            ],
            "alice",
        )
        .await
        .unwrap();
    let timestamp = f.repo.public_key(GUN, &RoleName::Timestamp).await.unwrap();
    assert_ne!(timestamp.id(), rotated.id());

    // Immutability marks, for the admin endpoint.
    assert!(f.repo.set_immutable(GUN, true).await.unwrap());
    assert_eq!(
        f.repo.immutable_repositories().await.unwrap(),
        [GUN.to_string()]
    );
    assert!(f.repo.set_immutable(GUN, false).await.unwrap());
    assert!(f.repo.immutable_repositories().await.unwrap().is_empty());
}
