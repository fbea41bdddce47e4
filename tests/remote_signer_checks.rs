#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! notarium in front of a deliberately misbehaving signer: a small gRPC
//! server in this test speaking notary-signer's API (notarium's generated
//! server traits) that can sign with another key, describe a key by a
//! public key that is not the one its ID names, fail with INTERNAL or
//! forget its keys, and counts GetKeyInfo calls. The real notary CLI must
//! print why its init or publish failed, nothing may be stored, and a
//! well-behaved signer is asked about each key once, not on every publish.

#[path = "support/builder.rs"]
mod builder;
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{Curl, Notarium, NotaryClient, all_output, make_test_tls};
use notarium::signer::proto::key_management_server::{KeyManagement, KeyManagementServer};
use notarium::signer::proto::signer_server::{Signer, SignerServer};
use notarium::signer::proto::{
    Algorithm, CreateKeyRequest, GetKeyInfoResponse, KeyId, KeyInfo, PublicKey, Signature,
    SignatureRequest, Void,
};
use notarium::signer::remote::{HEALTH_KEY_MANAGEMENT, HEALTH_SIGNER};
use notarium::tuf::{KeyAlgorithm, SigningKey};
use serde_json::{Value, json};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// How the fake signer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As notary-signer does.
    Good,
    /// Signs with a key other than the one asked for.
    OtherKeysSignature,
    /// Describes every key (create and GetKeyInfo) by another key's public
    /// bytes, under the right ID.
    WrongPublicKey,
    /// Sign fails with INTERNAL (with internals in the message).
    Internal,
    /// Has lost every key: NotFound for GetKeyInfo and Sign.
    Forgetful,
}

/// Words the fake puts in its INTERNAL error, which users must not see.
const SIGNER_INTERNALS: &str = "pkcs8 decrypt of row 42 failed";

struct State {
    mode: Mode,
    /// Key ID → (key, role).
    keys: HashMap<String, (Arc<SigningKey>, String)>,
    /// GetKeyInfo calls per key ID.
    key_info_calls: HashMap<String, usize>,
    /// Sign calls, answered or refused.
    sign_calls: usize,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    /// The key a misbehaving signer signs with or describes instead.
    stranger: Arc<SigningKey>,
}

fn key_info(key: &SigningKey) -> KeyInfo {
    KeyInfo {
        key_id: Some(KeyId {
            id: key.public_key().id().to_string(),
        }),
        algorithm: Some(Algorithm {
            algorithm: key.public_key().keytype().to_string(),
        }),
    }
}

impl Fake {
    fn mode(&self) -> Mode {
        self.state.lock().unwrap().mode
    }

    /// What the signer claims `key`'s public bytes are.
    fn public_bytes(&self, key: &SigningKey) -> Vec<u8> {
        let shown = if self.mode() == Mode::WrongPublicKey {
            &self.stranger
        } else {
            key
        };
        shown.public_key().public_bytes().to_vec()
    }

    fn held(&self, key_id: &str) -> Option<(Arc<SigningKey>, String)> {
        let state = self.state.lock().unwrap();
        if state.mode == Mode::Forgetful {
            return None;
        }
        state.keys.get(key_id).cloned()
    }
}

#[tonic::async_trait]
impl KeyManagement for Fake {
    async fn create_key(
        &self,
        request: Request<CreateKeyRequest>,
    ) -> Result<Response<PublicKey>, Status> {
        let request = request.into_inner();
        let algorithm = match request.algorithm.as_str() {
            "ecdsa" => KeyAlgorithm::EcdsaP256,
            "ed25519" => KeyAlgorithm::Ed25519,
            other => return Err(Status::invalid_argument(format!("{other} unsupported"))),
        };
        let key = Arc::new(SigningKey::generate(algorithm).unwrap());
        self.state.lock().unwrap().keys.insert(
            key.public_key().id().to_string(),
            (Arc::clone(&key), request.role),
        );
        Ok(Response::new(PublicKey {
            key_info: Some(key_info(&key)),
            public_key: self.public_bytes(&key),
        }))
    }

    async fn delete_key(&self, _: Request<KeyId>) -> Result<Response<Void>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn get_key_info(
        &self,
        request: Request<KeyId>,
    ) -> Result<Response<GetKeyInfoResponse>, Status> {
        let key_id = request.into_inner().id;
        *self
            .state
            .lock()
            .unwrap()
            .key_info_calls
            .entry(key_id.clone())
            .or_default() += 1;
        let (key, role) = self
            .held(&key_id)
            .ok_or_else(|| Status::not_found(format!("key {key_id} not found")))?;
        Ok(Response::new(GetKeyInfoResponse {
            key_info: Some(key_info(&key)),
            public_key: self.public_bytes(&key),
            role,
        }))
    }
}

#[tonic::async_trait]
impl Signer for Fake {
    async fn sign(
        &self,
        request: Request<SignatureRequest>,
    ) -> Result<Response<Signature>, Status> {
        let request = request.into_inner();
        let key_id = request.key_id.map(|k| k.id).unwrap_or_default();
        self.state.lock().unwrap().sign_calls += 1;
        if self.mode() == Mode::Internal {
            return Err(Status::internal(SIGNER_INTERNALS));
        }
        let (key, _) = self
            .held(&key_id)
            .ok_or_else(|| Status::not_found(format!("key {key_id} not found")))?;
        let signing = if self.mode() == Mode::OtherKeysSignature {
            &self.stranger
        } else {
            &key
        };
        let signature = signing.sign(&request.content).unwrap();
        Ok(Response::new(Signature {
            key_info: Some(key_info(&key)),
            algorithm: Some(Algorithm {
                algorithm: signature.method.to_string(),
            }),
            content: signature.sig,
        }))
    }
}

/// The fake signer, serving TLS on a loopback port until dropped.
struct FakeSigner {
    fake: Fake,
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl FakeSigner {
    fn start(cert: &Path, key: &Path) -> Self {
        let fake = Fake {
            state: Arc::new(Mutex::new(State {
                mode: Mode::Good,
                keys: HashMap::new(),
                key_info_calls: HashMap::new(),
                sign_calls: 0,
            })),
            stranger: Arc::new(SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap()),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let tls = ServerTlsConfig::new().identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = fake.clone();
        runtime.spawn(async move {
            let (reporter, health) = tonic_health::server::health_reporter();
            for service in [HEALTH_KEY_MANAGEMENT, HEALTH_SIGNER] {
                reporter
                    .set_service_status(service, tonic_health::ServingStatus::Serving)
                    .await;
            }
            Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(health)
                .add_service(KeyManagementServer::new(served.clone()))
                .add_service(SignerServer::new(served))
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        Self {
            fake,
            port,
            _runtime: runtime,
        }
    }

    fn set_mode(&self, mode: Mode) {
        self.fake.state.lock().unwrap().mode = mode;
    }

    fn key_info_calls(&self) -> HashMap<String, usize> {
        self.fake.state.lock().unwrap().key_info_calls.clone()
    }

    fn sign_calls(&self) -> usize {
        self.fake.state.lock().unwrap().sign_calls
    }

    fn reset_counts(&self) {
        self.fake.state.lock().unwrap().key_info_calls.clear();
    }

    fn held_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .fake
            .state
            .lock()
            .unwrap()
            .keys
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}

/// The fake signer and a notarium server using it (`trust_service:
/// remote`, the signer's TLS certificate from `ca.crt`).
fn setup(dir: &Path) -> (FakeSigner, Notarium) {
    let (ca, cert, key) = make_test_tls(dir);
    let signer = FakeSigner::start(&cert, &key);
    let server = Notarium::start(
        &dir.join("notarium"),
        json!({
            "trust_service": {"type": "remote", "hostname": "127.0.0.1",
                              "port": signer.port.to_string(), "key_algorithm": "ecdsa",
                              "tls_ca_file": ca},
        }),
    );
    assert_eq!(server.curl().get("/_notary_server/health").0, 200);
    (signer, server)
}

fn tuf(gun: &str, file: &str) -> String {
    format!("/v2/{gun}/_trust/tuf/{file}")
}

/// The stored file, or `None` on 404.
fn stored(curl: &Curl, gun: &str, file: &str) -> Option<Vec<u8>> {
    let (status, body) = curl.get(&tuf(gun, file));
    match status {
        200 => Some(body),
        404 => None,
        other => panic!(
            "GET {file} of {gun}: {other} {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

fn version(bytes: &[u8]) -> i64 {
    let file: Value = serde_json::from_slice(bytes).unwrap();
    file["signed"]["version"].as_i64().unwrap()
}

fn assert_published(output: &str, gun: &str) {
    assert!(
        output.contains(&format!(
            "Successfully published changes for repository {gun}"
        )),
        "not published: {output}"
    );
}

/// Runs a notary command that must fail, and returns what it printed.
fn fails(client: &NotaryClient, args: &[&str]) -> String {
    let output = client.run(args);
    let printed = all_output(&output);
    assert!(!output.status.success(), "{args:?} succeeded: {printed}");
    printed
}

/// Adds a target and publishes it.
fn add_and_publish(
    client: &NotaryClient,
    dir: &Path,
    gun: &str,
    name: &str,
) -> std::process::Output {
    let file = dir.join(format!("{name}.txt"));
    std::fs::write(&file, name).unwrap();
    client.run(&["add", gun, name, file.to_str().unwrap(), "-p"])
}

#[test]
fn a_misbehaving_signer_is_caught_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (signer, server) = setup(dir);
    let curl = server.curl();
    let owner = server.notary(dir.join("owner"));

    // (a) A signature by another key: init's publish fails and says so.
    signer.set_mode(Mode::OtherKeysSignature);
    let gun = "notarium.test/checks/other-key";
    let printed = fails(&owner, &["init", gun, "-p"]);
    assert!(
        printed.contains("An error occurred during validation: the signing service returned a signature that does not verify with key")
            && printed.contains("nothing was stored"),
        "{printed}"
    );
    for file in ["root.json", "targets.json", "timestamp.json"] {
        assert!(stored(&curl, gun, file).is_none(), "{file} was stored");
    }

    // (b) A described key that is not the key its ID names: the client
    // cannot even fetch the timestamp key.
    signer.set_mode(Mode::WrongPublicKey);
    let gun = "notarium.test/checks/wrong-public-key";
    let printed = fails(&owner, &["init", gun, "-p"]);
    assert!(
        printed.contains("the signing service described key")
            && printed.contains("with a public key whose ID is"),
        "{printed}"
    );
    assert!(stored(&curl, gun, "root.json").is_none());

    // An existing repository: the files stay as they were.
    signer.set_mode(Mode::Good);
    let gun = "notarium.test/checks/existing";
    assert_published(&owner.ok(&["init", gun, "-p"]), gun);
    let timestamp = stored(&curl, gun, "timestamp.json").unwrap();
    let targets = stored(&curl, gun, "targets.json").unwrap();
    assert_eq!(version(&timestamp), 1);

    // (c) INTERNAL from Sign: the client is told the signer failed, not the
    // signer's internals.
    signer.set_mode(Mode::Internal);
    let output = add_and_publish(&owner, dir, gun, "one");
    let printed = all_output(&output);
    assert!(!output.status.success(), "{printed}");
    assert!(
        printed.contains("the signing service reported an error (internal error)"),
        "{printed}"
    );
    assert!(!printed.contains(SIGNER_INTERNALS), "{printed}");

    // (a) again, on the existing repository.
    signer.set_mode(Mode::OtherKeysSignature);
    let printed = fails(&owner, &["publish", gun]);
    assert!(
        printed.contains("signature that does not verify"),
        "{printed}"
    );
    assert_eq!(stored(&curl, gun, "timestamp.json").unwrap(), timestamp);
    assert_eq!(stored(&curl, gun, "targets.json").unwrap(), targets);

    // Once the signer behaves, the pending change goes through.
    signer.set_mode(Mode::Good);
    assert_published(&owner.ok(&["publish", gun]), gun);
    assert_eq!(version(&stored(&curl, gun, "timestamp.json").unwrap()), 2);

    // The operator's log has the signer's own words and the failed checks.
    let log = server.log();
    assert!(
        log.contains(SIGNER_INTERNALS),
        "no signer message in the log"
    );
    assert!(
        log.contains("the remote signer's answer failed verification"),
        "failed checks not logged"
    );
}

#[test]
fn a_steady_publish_asks_the_signer_about_each_key_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (signer, mut server) = setup(dir);
    let curl = server.curl();
    let owner = server.notary(dir.join("owner"));
    let gun = "notarium.test/checks/steady";

    // Timestamp and snapshot keys both on the signer.
    assert_published(&owner.ok(&["init", gun, "-p"]), gun);
    owner.ok(&["key", "rotate", gun, "snapshot", "-r"]);
    let held = signer.held_key_ids();
    assert_eq!(held.len(), 2, "timestamp and snapshot keys: {held:?}");

    // A restarted server knows no key yet: it asks once per key.
    server.restart();
    signer.reset_counts();
    for name in ["one", "two", "three", "four"] {
        let output = add_and_publish(&owner, dir, gun, name);
        assert!(output.status.success(), "{}", all_output(&output));
    }
    let calls = signer.key_info_calls();
    let expected: HashMap<String, usize> = held.iter().map(|id| (id.clone(), 1)).collect();
    assert_eq!(
        calls, expected,
        "GetKeyInfo calls per key over four publishes"
    );
    let published = version(&stored(&curl, gun, "timestamp.json").unwrap());

    // The signer loses its keys: the cached description does not hide it.
    // First the Sign call says so; the next publish asks afresh and gets
    // the refusal an unknown key gets ("five" is still pending).
    signer.set_mode(Mode::Forgetful);
    let output = add_and_publish(&owner, dir, gun, "five");
    let printed = all_output(&output);
    assert!(!output.status.success(), "{printed}");
    assert!(
        printed.contains("the signing service no longer holds key"),
        "{printed}"
    );
    let printed = fails(&owner, &["publish", gun]);
    assert!(
        printed.contains("server does not hold current snapshot key"),
        "{printed}"
    );
    let calls = signer.key_info_calls();
    assert_eq!(
        calls.values().sum::<usize>(),
        3,
        "the lost key was asked about again: {calls:?}"
    );
    assert_eq!(
        version(&stored(&curl, gun, "timestamp.json").unwrap()),
        published
    );

    // (b) on GetKeyInfo: a fresh server is told a public key that does not
    // match the key's ID, and refuses it ("five" is still pending).
    signer.set_mode(Mode::WrongPublicKey);
    server.restart();
    let printed = fails(&owner, &["publish", gun]);
    assert!(
        printed.contains("the signing service described key")
            && printed.contains("with a public key whose ID is"),
        "{printed}"
    );
    assert_eq!(
        version(&stored(&curl, gun, "timestamp.json").unwrap()),
        published
    );
}

/// The repository in process with the remote signer and a pinned clock:
/// when the timestamp is due for re-signing and the signer fails, reads go
/// on serving the last good timestamp instead of an error, the signer is
/// not asked again on every read, and once it behaves and the pause is
/// over, the next read re-signs through it.
#[test]
fn a_failing_remote_signer_leaves_the_last_good_timestamp_served() {
    use notarium::repo::{Clock, RESIGN_RETRY, Repo};
    use notarium::signer::remote::{DEFAULT_DEADLINE, RemoteConfig, RemoteSigner};
    use notarium::tuf::{RoleName, SignedFile};
    use std::sync::atomic::{AtomicI64, Ordering};
    use time::{Duration, OffsetDateTime};

    const GUN: &str = "notarium.test/checks/fallback";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ca, cert, key) = make_test_tls(dir);
    let signer = FakeSigner::start(&cert, &key);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The channel's background task needs a runtime to start on.
    let _entered = runtime.enter();
    let remote = RemoteSigner::connect_lazy(&RemoteConfig {
        hostname: "127.0.0.1".into(),
        port: signer.port,
        ca_pem: std::fs::read(&ca).unwrap(),
        client_identity: None,
        algorithm: KeyAlgorithm::EcdsaP256,
        deadline: DEFAULT_DEADLINE,
    })
    .unwrap();
    let seconds = Arc::new(AtomicI64::new(OffsetDateTime::now_utc().unix_timestamp()));
    let reader = Arc::clone(&seconds);
    let clock: Clock = Arc::new(move || {
        OffsetDateTime::from_unix_timestamp(reader.load(Ordering::SeqCst)).unwrap()
    });
    let advance = |by: Duration| seconds.fetch_add(by.whole_seconds(), Ordering::SeqCst);

    runtime.block_on(async {
        std::fs::create_dir_all(dir.join("store")).unwrap();
        let store = Arc::new(common::store::open(&dir.join("store")).await);
        let repo = Repo::new(store, remote, Arc::clone(&clock));
        let now = clock();
        let client = builder::ClientKeys::new(GUN, now);
        let timestamp_key = repo.public_key(GUN, &RoleName::Timestamp).await.unwrap();
        let snapshot_key = repo.public_key(GUN, &RoleName::Snapshot).await.unwrap();
        repo.publish(
            GUN,
            vec![
                (
                    "root".into(),
                    client.root(1, &snapshot_key, &timestamp_key, now),
                ),
                ("targets".into(), client.targets(1, &["v1".into()], now)),
            ],
            "tester",
        )
        .await
        .unwrap();
        let version = |served: &notarium::repo::Served| {
            SignedFile::parse(&served.data)
                .unwrap()
                .common()
                .unwrap()
                .version
        };
        let first = repo.current(GUN, &RoleName::Timestamp).await.unwrap();
        assert_eq!(version(&first), 1);

        // Twelve days on the timestamp is due; the signer fails.
        signer.set_mode(Mode::Internal);
        advance(Duration::days(12));
        let before = signer.sign_calls();
        let served = repo.current(GUN, &RoleName::Timestamp).await.unwrap();
        assert_eq!(served.data, first.data, "not the last good timestamp");
        let tried = signer.sign_calls();
        assert!(tried > before, "the re-sign was never attempted");
        // Reads within the pause neither fail nor ask the signer again.
        for _ in 0..5 {
            let served = repo.current(GUN, &RoleName::Timestamp).await.unwrap();
            assert_eq!(served.data, first.data);
        }
        assert_eq!(signer.sign_calls(), tried, "retried on every read");

        // The signer behaves again; after the pause a read re-signs.
        signer.set_mode(Mode::Good);
        advance(RESIGN_RETRY + Duration::seconds(1));
        let served = repo.current(GUN, &RoleName::Timestamp).await.unwrap();
        assert_eq!(version(&served), 2);
        assert!(signer.sign_calls() > tried);
    });
}
