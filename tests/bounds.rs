#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What one request may cost: caps at their boundaries, signatures checked
//! before any registry traffic, publishes that change nothing write nothing,
//! registry refusals without internal detail, application bundles described
//! in `custom` data, and a slow client that never finishes its header.

#[path = "support/builder.rs"]
mod builder;
mod common;
#[path = "support/registry.rs"]
mod registry;

use std::io::Write;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use common::store::TestStore;
use notarium::policy::{
    IndexKind, Lookup, LookupError, LookupFailure, ManifestKind, ManifestSource, Violation,
};
use notarium::registry::{RegistryClient, RegistrySettings};
use notarium::repo::{Cap, Error, Limits, Policy, Rejection, Repo};
use notarium::server::error::ApiError;
use notarium::store::Store;
use notarium::tuf::sign::sign_metadata;
use notarium::tuf::{KeyAlgorithm, RoleName};
use serde_json::{Value, json};
use time::OffsetDateTime;

use builder::ClientKeys;

const GUN: &str = "registry.test/team/app";

/// A registry stand-in that counts the lookups it is asked for and says
/// every digest is an image.
#[derive(Default)]
struct Counting {
    lookups: AtomicUsize,
    /// Answer every lookup with an unreachable registry.
    unreachable: bool,
}

impl ManifestSource for Counting {
    fn covers(&self, gun: &str) -> bool {
        gun.starts_with("registry.test/")
    }

    fn requires_image_manifests(&self, _gun: &str) -> bool {
        false
    }

    fn lookup<'a>(
        &'a self,
        _gun: &'a str,
        _digest: &'a str,
        _length: i64,
    ) -> Pin<Box<dyn Future<Output = Result<Lookup, LookupError>> + Send + 'a>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let unreachable = self.unreachable;
        Box::pin(async move {
            if unreachable {
                return Err(LookupError {
                    registry: "http://10.0.0.1:5000".into(),
                    failure: LookupFailure::Unreachable,
                    reason: "cannot connect".into(),
                });
            }
            Ok(Lookup::Found(ManifestKind::Image))
        })
    }
}

struct Fixture {
    repo: Repo<TestStore>,
    client: ClientKeys,
    now: OffsetDateTime,
    _dir: tempfile::TempDir,
}

async fn fixture(manifests: Arc<dyn ManifestSource>, limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = common::store::temp_store(dir.path()).await;
    let now = OffsetDateTime::now_utc();
    let repo = Repo::new(store, keys, Arc::new(move || now))
        .with_policy(Policy {
            manifests,
            ..Policy::default()
        })
        .with_limits(limits);
    Fixture {
        repo,
        client: ClientKeys::new(GUN, now),
        now,
        _dir: dir,
    }
}

async fn root(f: &Fixture) -> Vec<u8> {
    let timestamp = f.repo.public_key(GUN, &RoleName::Timestamp).await.unwrap();
    let snapshot = f.repo.public_key(GUN, &RoleName::Snapshot).await.unwrap();
    f.client.root(1, &snapshot, &timestamp, f.now)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_string()).collect()
}

fn targets(f: &Fixture, version: i64, tags: &[&str]) -> Vec<u8> {
    f.client.targets(version, &names(tags), f.now)
}

/// The first publish: root and targets without tags.
async fn init(f: &Fixture) {
    f.repo
        .publish(
            GUN,
            vec![
                ("root".into(), root(f).await),
                ("targets".into(), targets(f, 1, &[])),
            ],
            notarium::repo::ANONYMOUS,
        )
        .await
        .unwrap();
}

async fn changefeed_len(f: &Fixture) -> usize {
    f.repo
        .changes(Some(GUN), None, Some("1000"))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_forged_upload_causes_no_registry_traffic() {
    let registry = Arc::new(Counting::default());
    let f = fixture(registry.clone(), Limits::default()).await;
    init(&f).await;
    assert_eq!(registry.lookups.load(Ordering::SeqCst), 0);

    // Targets naming new tags but signed by a key root does not list.
    let forger = ClientKeys::new(GUN, f.now);
    let forged = forger.targets(2, &names(&["1.0", "1.1", "1.2"]), f.now);
    let result = f
        .repo
        .publish(
            GUN,
            vec![("targets".into(), forged)],
            notarium::repo::ANONYMOUS,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Rejected {
                kind: Rejection::BadTargets,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(registry.lookups.load(Ordering::SeqCst), 0);

    // The same tags, properly signed: one lookup per new digest.
    f.repo
        .publish(
            GUN,
            vec![("targets".into(), targets(&f, 2, &["1.0", "1.1", "1.2"]))],
            notarium::repo::ANONYMOUS,
        )
        .await
        .unwrap();
    assert_eq!(registry.lookups.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_first_unanswered_lookup_ends_the_publish() {
    let registry = Arc::new(Counting {
        unreachable: true,
        ..Counting::default()
    });
    let f = fixture(registry.clone(), Limits::default()).await;
    init(&f).await;
    let names: Vec<String> = (0..20).map(|i| format!("1.{i}")).collect();
    let tags: Vec<&str> = names.iter().map(String::as_str).collect();
    let result = f
        .repo
        .publish(
            GUN,
            vec![("targets".into(), targets(&f, 2, &tags))],
            notarium::repo::ANONYMOUS,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Policy(Violation::ManifestUnreachable {
                failure: LookupFailure::Unreachable,
                ..
            }))
        ),
        "{result:?}"
    );
    // Not one wait per tag on a registry that is down: only the lookups
    // already in flight (a few at once) were started.
    let asked = registry.lookups.load(Ordering::SeqCst);
    assert!((1..=4).contains(&asked), "{asked} lookups");
}

#[tokio::test]
async fn a_publish_that_changes_nothing_writes_nothing() {
    let f = fixture(Arc::new(Counting::default()), Limits::default()).await;
    let root = root(&f).await;
    let first = targets(&f, 1, &["1.0"]);
    f.repo
        .publish(
            GUN,
            vec![
                ("root".into(), root.clone()),
                ("targets".into(), first.clone()),
            ],
            notarium::repo::ANONYMOUS,
        )
        .await
        .unwrap();
    let records = changefeed_len(&f).await;
    let versions = f.repo.store().latest_versions(GUN).await.unwrap();

    // The same bytes again, together and alone: accepted, nothing written.
    for parts in [
        vec![
            ("root".to_string(), root.clone()),
            ("targets".to_string(), first.clone()),
        ],
        vec![("targets".to_string(), first.clone())],
        vec![("root".to_string(), root.clone())],
        // An empty upload, as the notary client sends with nothing staged.
        Vec::new(),
    ] {
        f.repo
            .publish(GUN, parts, notarium::repo::ANONYMOUS)
            .await
            .unwrap();
        assert_eq!(changefeed_len(&f).await, records);
        assert_eq!(f.repo.store().latest_versions(GUN).await.unwrap(), versions);
    }

    // An unchanged root beside new targets: only the targets are new.
    f.repo
        .publish(
            GUN,
            vec![
                ("root".into(), root),
                ("targets".into(), targets(&f, 2, &["1.0", "2.0"])),
            ],
            notarium::repo::ANONYMOUS,
        )
        .await
        .unwrap();
    assert_eq!(changefeed_len(&f).await, records + 1);
}

fn small_limits() -> Limits {
    Limits {
        keys_per_role: 4,
        signatures_per_file: 2,
        delegations_per_file: 4,
        targets_per_file: 3,
        parts_per_upload: 3,
        registry_lookups_per_publish: 2,
    }
}

fn limit_of(result: &Result<(), Error>) -> Option<(Cap, usize, usize)> {
    match result {
        Err(Error::LimitExceeded {
            cap, count, limit, ..
        }) => Some((*cap, *count, *limit)),
        _ => None,
    }
}

#[tokio::test]
async fn caps_are_accepted_at_the_limit_and_refused_above_it() {
    let registry = Arc::new(Counting::default());
    let f = fixture(registry.clone(), small_limits()).await;
    init(&f).await;
    let records = changefeed_len(&f).await;

    // Targets per file: 4 > 3, refused before any lookup, nothing stored.
    let result = f
        .repo
        .publish(
            GUN,
            vec![("targets".into(), targets(&f, 2, &["a", "b", "c", "d"]))],
            notarium::repo::ANONYMOUS,
        )
        .await;
    assert_eq!(
        limit_of(&result),
        Some((Cap::TargetsPerFile, 4, 3)),
        "{result:?}"
    );
    assert_eq!(registry.lookups.load(Ordering::SeqCst), 0);
    assert_eq!(changefeed_len(&f).await, records);
    let body = String::from_utf8(ApiError::from_repo(&result.unwrap_err(), true).body()).unwrap();
    assert!(
        body.contains("limits.targets_per_file") && body.contains("at most 3"),
        "{body}"
    );

    // Registry lookups per publish: 3 new digests > 2, refused before the
    // first lookup.
    let result = f
        .repo
        .publish(
            GUN,
            vec![("targets".into(), targets(&f, 2, &["a", "b", "c"]))],
            notarium::repo::ANONYMOUS,
        )
        .await;
    assert_eq!(
        limit_of(&result),
        Some((Cap::RegistryLookupsPerPublish, 3, 2)),
        "{result:?}"
    );
    assert_eq!(registry.lookups.load(Ordering::SeqCst), 0);

    // At both caps: accepted.
    f.repo
        .publish(
            GUN,
            vec![("targets".into(), targets(&f, 2, &["a", "b"]))],
            notarium::repo::ANONYMOUS,
        )
        .await
        .unwrap();
    assert_eq!(registry.lookups.load(Ordering::SeqCst), 2);
    f.repo
        .publish(
            GUN,
            vec![("targets".into(), targets(&f, 3, &["a", "b", "c"]))],
            notarium::repo::ANONYMOUS,
        )
        .await
        .unwrap();

    // Parts per upload: 4 > 3, before anything is parsed.
    let junk = || ("targets".to_string(), b"not even json".to_vec());
    let result = f
        .repo
        .publish(
            GUN,
            vec![junk(), junk(), junk(), junk()],
            notarium::repo::ANONYMOUS,
        )
        .await;
    assert_eq!(
        limit_of(&result),
        Some((Cap::PartsPerUpload, 4, 3)),
        "{result:?}"
    );

    // Signatures per file: 3 > 2 (the third by a key nobody lists).
    let extra = notarium::tuf::SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let other = notarium::tuf::SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let body = f.client.targets_body(4, &names(&["a"]), f.now);
    let signed = sign_metadata(&body, &[&f.client.targets_key, &extra, &other]).unwrap();
    let result = f
        .repo
        .publish(
            GUN,
            vec![("targets".into(), signed)],
            notarium::repo::ANONYMOUS,
        )
        .await;
    assert_eq!(
        limit_of(&result),
        Some((Cap::SignaturesPerFile, 3, 2)),
        "{result:?}"
    );
    let signed = sign_metadata(&body, &[&f.client.targets_key, &extra]).unwrap();
    f.repo
        .publish(
            GUN,
            vec![("targets".into(), signed)],
            notarium::repo::ANONYMOUS,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn custom_data_describing_a_cnab_index_is_refused_as_an_application() {
    let registry = Arc::new(Counting::default());
    let f = fixture(registry.clone(), Limits::default()).await;
    init(&f).await;
    let mut body = f.client.targets_body(2, &names(&["0.1.0"]), f.now);
    body["targets"]["0.1.0"]["custom"] = json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "annotations": {
            "io.cnab.runtime_version": "v1.0.0",
            "org.opencontainers.artifactType": "application/vnd.cnab.manifest.v1",
        },
    });
    let signed = sign_metadata(&body, &[&f.client.targets_key]).unwrap();
    let result = f
        .repo
        .publish(
            GUN,
            vec![("targets".into(), signed)],
            notarium::repo::ANONYMOUS,
        )
        .await;
    let Err(Error::Policy(Violation::Index { kind, .. })) = &result else {
        panic!("{result:?}");
    };
    assert_eq!(*kind, IndexKind::Application);
    let shown = String::from_utf8(ApiError::from_repo(&result.unwrap_err(), true).body()).unwrap();
    assert!(
        shown.contains("is an application") && shown.contains("0.1.0-invoc"),
        "{shown}"
    );
    // Refused from the description alone: the registry was not asked.
    assert_eq!(registry.lookups.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_unreachable_registry_is_refused_without_internal_detail() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let client = RegistryClient::new(vec![RegistrySettings {
        gun_prefix: "registry.test/".into(),
        url: url.clone(),
        username: Some("robot".into()),
        password: Some(zeroize::Zeroizing::new("s3cret-password".into())),
        require_image_manifests: false,
        timeout: StdDuration::from_secs(5),
    }])
    .unwrap();
    let f = fixture(Arc::new(client), Limits::default()).await;
    init(&f).await;
    let result = f
        .repo
        .publish(
            GUN,
            vec![("targets".into(), targets(&f, 2, &["1.0"]))],
            notarium::repo::ANONYMOUS,
        )
        .await;
    let error = result.unwrap_err();
    let body = String::from_utf8(ApiError::from_repo(&error, true).body()).unwrap();
    let shown: Value = serde_json::from_str(&body).unwrap();
    let message = shown["errors"][0]["detail"]["Error"]["Msg"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("cannot check manifest type of tag 1.0")
            && message.contains("registry.test")
            && message.contains("cannot be reached"),
        "{message}"
    );
    for internal in [
        url.as_str(),
        "127.0.0.1",
        "robot",
        "s3cret",
        "refused",
        "os error",
    ] {
        assert!(!body.contains(internal), "{internal} in {body}");
    }
}

#[test]
fn a_client_that_never_finishes_its_header_is_disconnected() {
    let work = tempfile::tempdir().unwrap();
    let server = common::Notarium::start(
        work.path(),
        json!({"server": {"header_read_timeout_seconds": 1}}),
    );
    let openssl = common::require("openssl", "openssl");
    // Half a request header, then silence with the connection held open.
    let mut client = Command::new(openssl)
        .args(["s_client", "-quiet", "-connect"])
        .arg(server.addr.to_string())
        .arg("-CAfile")
        .arg(&server.ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .unwrap();
    stdin.flush().unwrap();
    // s_client exits when the server closes the connection, though its
    // stdin stays open. The generous bound only keeps a failing test from
    // hanging.
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(client.wait_with_output());
    });
    let output = waited
        .recv_timeout(StdDuration::from_secs(120))
        .expect("the server kept a half-sent request open")
        .unwrap();
    drop(stdin);
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(!answer.contains("200 OK"), "{answer}");
    // A complete request still works.
    let (status, _) = server.curl().get("/v2/");
    assert_eq!(status, 200);
}

#[test]
fn a_forged_upload_over_http_sends_nothing_to_the_registry() {
    let work = tempfile::tempdir().unwrap();
    let stand_in = registry::CountingRegistry::start();
    let notarium = common::Notarium::start(
        &work.path().join("notarium"),
        json!({"registries": [{
            "gun_prefix": "registry.test/",
            "url": format!("http://{}", stand_in.addr),
            "timeout_seconds": 5,
        }]}),
    );
    let gun = "registry.test/team/forged";
    let client = notarium.notary(work.path().join("trust"));
    client.ok(&["init", gun, "-p"]);
    // A real signed tag is looked up (the stand-in does not know it, which
    // is allowed here).
    client.ok(&[
        "addhash",
        gun,
        "1.0",
        "10",
        "--sha256",
        &"ab".repeat(32),
        "-p",
    ]);
    let looked_up = stand_in.requests();
    assert!(looked_up > 0, "the stand-in was never asked");

    // Targets with new tags, signed by a key the repository does not list.
    let (status, current) = notarium
        .curl()
        .get(&format!("/v2/{gun}/_trust/tuf/targets.json"));
    assert_eq!(status, 200);
    let version = notarium::tuf::SignedFile::parse(&current)
        .unwrap()
        .common()
        .unwrap()
        .version;
    let forger = ClientKeys::new(gun, OffsetDateTime::now_utc());
    let tags: Vec<String> = (0..20).map(|i| format!("forged-{i}")).collect();
    let forged = forger.targets(version + 1, &tags, OffsetDateTime::now_utc());
    let path = work.path().join("forged-targets.json");
    std::fs::write(&path, forged).unwrap();
    let (status, body) = notarium.curl().publish(gun, &[("targets", &path)]);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("ErrBadTargets"), "{text}");
    assert_eq!(
        stand_in.requests(),
        looked_up,
        "a forged upload reached the registry"
    );
}
