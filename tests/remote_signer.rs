#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The split deployment, server × signer: {the Go notary-server, notarium}
//! in front of {the Go notary-signer, `notarium signer`} (the Go programs
//! are Debian's `notary`), over mutual TLS, the signer keeping its keys in
//! notary's own `private_keys` table on PostgreSQL. One flow runs for each
//! of the four combinations (`go_server_go_signer`, …), in parallel threads
//! sharing this binary's PostgreSQL:
//! 1. the notary CLI: init, publish, a server-managed snapshot, a
//!    delegation, witness, a timestamp key rotation (the new key made in the
//!    signer's table and used), a fresh reader;
//! 2. the docker CLI: a signed push, `docker trust signer add` of a second
//!    user who pushes a signed tag, a verified pull by a third user, the
//!    server's snapshot and timestamp signed by the signer's keys;
//! 3. the signer stopped mid-run: publishing fails, cached reads go on
//!    (notarium also answers health and new keys with 503), and once it is
//!    started again the pending change publishes with the same keys;
//! 4. the other signer program takes the same database over, signs with the
//!    first one's keys and makes a timestamp key the first one then uses
//!    (with `notarium signer` first: a wrong and a missing passphrase);
//! 5. delete --remote.
//!
//! The Go server's gRPC connection to a restarted signer reconnects with a
//! backoff, so what follows a restart is retried a bounded number of times
//! there; notarium must succeed at once. Separately, both signers refuse
//! clients without a certificate from their CA.

mod common;
#[path = "support/dockercli.rs"]
mod dockercli;
#[path = "support/registry.rs"]
mod registry;
#[path = "support/signer.rs"]
mod signer;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::postgres::PgServer;
use common::{Curl, Notarium, NotaryClient, ReferenceServer, make_test_tls};
use dockercli::DockerCli;
use serde_json::{Value, json};
use signer::{Kind, SignerDb, SignerProcess};

const GUN: &str = "notarium.test/remote/app";
const SIGNER_PASSPHRASE: &str = "remote signer alias passphrase";

/// The server in front of the signer: the Go notary-server (memory
/// storage) or `notarium serve` (this run's storage backend), both with
/// notary-server's remote `trust_service` section.
struct Server {
    kind: Kind,
    url: String,
    ca: PathBuf,
    /// The notarium process (None for the Go server).
    notarium: Option<Notarium>,
    _go: Option<ReferenceServer>,
}

impl Server {
    /// Starts `kind` with `trust` as its `trust_service` section.
    fn start(kind: Kind, dir: &Path, trust: &Value) -> Self {
        let trust = json!({"trust_service": trust});
        match kind {
            Kind::Go => {
                let server_dir = dir.join("go-server");
                std::fs::create_dir_all(&server_dir).unwrap();
                let server = ReferenceServer::start_with(&server_dir, trust);
                Self {
                    kind,
                    url: server.url.clone(),
                    ca: server.ca.clone(),
                    notarium: None,
                    _go: Some(server),
                }
            }
            Kind::Notarium => {
                let server = Notarium::start(&dir.join("notarium"), trust);
                Self {
                    kind,
                    url: server.url.clone(),
                    ca: server.ca.clone(),
                    notarium: Some(server),
                    _go: None,
                }
            }
        }
    }

    fn curl(&self) -> Curl {
        Curl {
            base: self.url.clone(),
            ca: self.ca.clone(),
        }
    }

    fn notary(&self, trust_dir: PathBuf) -> NotaryClient {
        NotaryClient::new(trust_dir, &self.url, &self.ca)
    }

    fn docker(&self, dir: &Path) -> DockerCli {
        DockerCli::with_trust_server(dir, &self.url, &self.ca)
    }

    /// Runs `attempt`, which needs the signer just (re)started, until it
    /// succeeds; returns its stdout. notarium connects to the signer for
    /// the call, so it gets one attempt. The Go server's gRPC connection
    /// is in its reconnect backoff for a while, so it gets a bounded number.
    fn after_signer_start(&self, what: &str, mut attempt: impl FnMut() -> Output) -> String {
        let attempts = match self.kind {
            Kind::Notarium => 1,
            Kind::Go => 60,
        };
        let mut failures = Vec::new();
        for n in 0..attempts {
            if n > 0 {
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            let output = attempt();
            if output.status.success() {
                return common::stdout(&output);
            }
            failures.push(common::all_output(&output));
        }
        panic!(
            "{:?} server: {what} failed {attempts} times: {failures:#?}",
            self.kind
        );
    }
}

fn status(curl: &Curl, path: &str) -> u16 {
    curl.get(path).0
}

fn assert_published(out: &str) {
    assert!(
        out.contains(&format!(
            "Successfully published changes for repository {GUN}"
        )),
        "not published: {out:?}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The key IDs in the signer's table, oldest first.
fn signer_key_ids(db: &SignerDb) -> Vec<String> {
    db.strings("SELECT key_id FROM private_keys ORDER BY id")
}

/// The key IDs in the signer's table whose `last_used` is NULL: keys that
/// notary-signer's CreateKey may hand out again.
fn unused_key_ids(db: &SignerDb) -> Vec<String> {
    db.strings("SELECT key_id FROM private_keys WHERE last_used IS NULL ORDER BY id")
}

/// The key ID that signed `role`.json of `gun` (the server's roles have
/// one signature).
fn signed_by(curl: &Curl, gun: &str, role: &str) -> String {
    let (code, body) = curl.get(&format!("/v2/{gun}/_trust/tuf/{role}.json"));
    assert_eq!(
        code,
        200,
        "{gun} {role}: {}",
        String::from_utf8_lossy(&body)
    );
    let file: Value = serde_json::from_slice(&body).unwrap();
    let signatures = file["signatures"].as_array().unwrap();
    assert_eq!(signatures.len(), 1, "{gun} {role}: {file}");
    signatures[0]["keyid"].as_str().unwrap().to_string()
}

/// The server's snapshot and timestamp of `gun` are signed by keys in the
/// signer's table; returns (snapshot key, timestamp key).
fn assert_signed_by_signer(curl: &Curl, gun: &str, db: &SignerDb) -> (String, String) {
    let held = signer_key_ids(db);
    let keys = (
        signed_by(curl, gun, "snapshot"),
        signed_by(curl, gun, "timestamp"),
    );
    for key in [&keys.0, &keys.1] {
        assert!(held.contains(key), "{gun}: {key} is not in {held:?}");
    }
    keys
}

/// Makes a delegation key with openssl, adds `targets/releases` with it
/// and publishes `rel-1` into that role.
fn delegation_flow(dir: &Path, owner: &NotaryClient) {
    common::make_delegation_key(dir, "releases");
    owner.ok(&[
        "key",
        "import",
        text(&dir.join("releases.key")),
        "--role",
        "targets/releases",
    ]);
    assert_published(&owner.ok(&[
        "delegation",
        "add",
        "-p",
        GUN,
        "targets/releases",
        text(&dir.join("releases.crt")),
        "--all-paths",
    ]));
    let release = write(dir, "rel.txt", "release target");
    assert_published(&owner.ok(&[
        "add",
        GUN,
        "rel-1",
        text(&release),
        "--roles",
        "targets/releases",
        "-p",
    ]));
}

/// Rotates the timestamp key to one the signer makes and publishes `name`;
/// the new timestamp is signed by the new key, the newest row of the
/// signer's table. Returns it.
fn rotate_timestamp(
    server: &Server,
    curl: &Curl,
    owner: &NotaryClient,
    dir: &Path,
    db: &SignerDb,
    name: &str,
) -> String {
    let before = signer_key_ids(db);
    let old = signed_by(curl, GUN, "timestamp");
    // The signer recorded that the current key has signed, so that no
    // signer's CreateKey on this table offers it as a new key.
    assert!(
        !unused_key_ids(db).contains(&old),
        "{old} has signed but its last_used is NULL"
    );
    server.after_signer_start("key rotate timestamp", || {
        owner.run(&["key", "rotate", GUN, "timestamp", "-r"])
    });
    let payload = write(dir, &format!("{name}.txt"), name);
    assert_published(&owner.ok(&["add", GUN, name, text(&payload), "-p"]));
    let held = signer_key_ids(db);
    assert_eq!(held.len(), before.len() + 1, "{held:?} after {before:?}");
    let new = signed_by(curl, GUN, "timestamp");
    assert_ne!(new, old, "the timestamp key did not change");
    assert_eq!(held.last(), Some(&new), "{held:?}");
    new
}

#[test]
fn go_server_go_signer() {
    flow(Kind::Go, Kind::Go);
}

#[test]
fn go_server_notarium_signer() {
    flow(Kind::Go, Kind::Notarium);
}

#[test]
fn notarium_server_go_signer() {
    flow(Kind::Notarium, Kind::Go);
}

#[test]
fn notarium_server_notarium_signer() {
    flow(Kind::Notarium, Kind::Notarium);
}

/// The notary and docker CLI flows through a `server` in front of a
/// `first` signer, which is stopped and started mid-run, then replaced by
/// the other signer program on the same database and back.
fn flow(server_kind: Kind, first: Kind) {
    let db = SignerDb::postgres(PgServer::shared());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // One certificate serves as the signer's server certificate and as the
    // server's client certificate (it carries both usages).
    make_test_tls(dir);
    let mut signer = SignerProcess::new(dir, &db, first, SIGNER_PASSPHRASE);
    let server = Server::start(server_kind, dir, &signer.trust_service());
    let curl = server.curl();
    let tuf = |role: &str| format!("/v2/{GUN}/_trust/tuf/{role}");
    let owner = server.notary(dir.join("owner"));
    if let Some(notarium) = &server.notarium {
        assert_eq!(status(&curl, "/_notary_server/health"), 200);
        // notarium holds no private key of its own: no local key
        // passphrase was even made.
        assert!(!notarium.dir.join("keys/passphrase").exists());
    }

    // 1. The notary CLI. init + publish: the timestamp key is the signer's.
    assert_published(&owner.ok(&["init", GUN, "-p"]));
    let ts_key = signed_by(&curl, GUN, "timestamp");
    assert!(
        signer_key_ids(&db).contains(&ts_key),
        "the timestamp key {ts_key} is not in the signer's table"
    );
    let payload = write(dir, "one.txt", "first target");
    assert_published(&owner.ok(&["add", GUN, "one", text(&payload), "-p"]));
    // The server-managed snapshot: its key too comes from the signer.
    owner.ok(&["key", "rotate", GUN, "snapshot", "-r"]);
    assert_published(&owner.ok(&["publish", GUN]));
    let (snap_key, _) = assert_signed_by_signer(&curl, GUN, &db);
    // A delegation and witness, the snapshot signed remotely.
    delegation_flow(dir, &owner);
    assert_published(&owner.ok(&["witness", GUN, "targets/releases", "-p"]));
    let ts_key = rotate_timestamp(&server, &curl, &owner, dir, &db, "rotated");
    let listed = server.notary(dir.join("reader")).ok(&["list", GUN]);
    for target in ["one", "rel-1", "rotated"] {
        assert!(listed.contains(target), "{target}: {listed}");
    }

    // 2. The docker CLI.
    docker_flow(&server, dir, &db);

    // 3. The signer goes away: nothing new is signed, cached reads go on.
    signer.stop();
    for role in ["timestamp.json", "snapshot.json", "targets.json"] {
        assert_eq!(status(&curl, &tuf(role)), 200, "{role}");
    }
    if let Some(notarium) = &server.notarium {
        assert_eq!(status(&curl, "/_notary_server/health"), 503);
        // What needs a new key is 503 with Retry-After. With -i the headers
        // come before the body.
        let (code, response) = curl.request(
            &["-i", "-X", "GET"],
            "/v2/notarium.test/remote/other/_trust/tuf/timestamp.key",
        );
        let response = String::from_utf8_lossy(&response).to_ascii_lowercase();
        assert_eq!(code, 503, "{response}");
        assert!(response.contains("\r\nretry-after: "), "{response}");
        assert!(
            response.contains("signing service is unavailable"),
            "{response}"
        );
        assert!(notarium.log().contains("signer unavailable"));
    }
    let held = signer_key_ids(&db);
    let second = write(dir, "two.txt", "second target");
    let output = owner.run(&["add", GUN, "two", text(&second), "-p"]);
    assert!(
        !output.status.success(),
        "published without a signer: {output:?}"
    );
    // Back again: the pending change publishes, signed by the same keys.
    signer.start(first, SIGNER_PASSPHRASE);
    if server.notarium.is_some() {
        assert_eq!(status(&curl, "/_notary_server/health"), 200);
    }
    assert_published(&server.after_signer_start("publish", || owner.run(&["publish", GUN])));
    assert_eq!(signed_by(&curl, GUN, "snapshot"), snap_key);
    assert_eq!(signed_by(&curl, GUN, "timestamp"), ts_key);
    assert_eq!(signer_key_ids(&db), held, "the restart made new keys");
    let listed = server.notary(dir.join("reader2")).ok(&["list", GUN]);
    assert!(listed.contains("two"), "{listed}");

    // 4. The other signer program takes the same database over: the first
    // one's keys sign through it...
    signer.start(first.other(), SIGNER_PASSPHRASE);
    let third = write(dir, "three.txt", "third target");
    owner.ok(&["add", GUN, "three", text(&third)]);
    assert_published(&server.after_signer_start("publish", || owner.run(&["publish", GUN])));
    assert_eq!(signed_by(&curl, GUN, "snapshot"), snap_key);
    assert_eq!(signed_by(&curl, GUN, "timestamp"), ts_key);
    assert_eq!(signer_key_ids(&db), held, "the takeover made new keys");
    // ... and a key it makes signs through the first one.
    let ts_key = rotate_timestamp(&server, &curl, &owner, dir, &db, "four");
    signer.start(first, SIGNER_PASSPHRASE);
    let fifth = write(dir, "five.txt", "fifth target");
    owner.ok(&["add", GUN, "five", text(&fifth)]);
    assert_published(&server.after_signer_start("publish", || owner.run(&["publish", GUN])));
    assert_eq!(signed_by(&curl, GUN, "timestamp"), ts_key);
    assert_eq!(signed_by(&curl, GUN, "snapshot"), snap_key);
    let listed = server.notary(dir.join("reader3")).ok(&["list", GUN]);
    for target in ["one", "rel-1", "two", "three", "four", "five"] {
        assert!(listed.contains(target), "{target}: {listed}");
    }

    if first == Kind::Notarium {
        passphrase_checks(&server, &mut signer, &owner, dir);
    }

    // 5. delete --remote.
    owner.ok(&["delete", GUN, "--remote"]);
    assert_eq!(status(&curl, &tuf("timestamp.json")), 404);
}

/// `notarium signer` with a wrong passphrase for the alias: the keys do
/// not open, nothing is signed, and the refusal is an error, not a
/// signature. Without a passphrase it does not start. Leaves it running
/// with the right passphrase and the pending change published.
fn passphrase_checks(
    server: &Server,
    signer: &mut SignerProcess,
    owner: &NotaryClient,
    dir: &Path,
) {
    signer.start(Kind::Notarium, "not the alias passphrase");
    let sixth = write(dir, "six.txt", "sixth target");
    owner.ok(&["add", GUN, "six", text(&sixth)]);
    // Until the signer has been asked (the Go server may still be in its
    // reconnect backoff), every attempt must fail all the same.
    let mut refused = false;
    for _ in 0..60 {
        let output = owner.run(&["publish", GUN]);
        assert!(
            !output.status.success(),
            "signed with a wrong passphrase: {output:?}"
        );
        if signer.log().contains("cannot open a stored key") {
            refused = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        refused,
        "the signer was never asked to sign:\n{}",
        signer.log()
    );
    signer.stop();
    let output = signer
        .command(Kind::Notarium)
        .env_remove("NOTARY_SIGNER_ALPHA")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NOTARY_SIGNER_ALPHA"), "{stderr}");
    signer.start(Kind::Notarium, SIGNER_PASSPHRASE);
    assert_published(&server.after_signer_start("publish", || owner.run(&["publish", GUN])));
}

/// docker with content trust (docker leaves snapshot and timestamp to the
/// server, so both are the signer's keys): a signed push, a second signer
/// added with `docker trust signer add` who pushes a signed tag, and a
/// verified pull by another user.
fn docker_flow(server: &Server, dir: &Path, db: &SignerDb) {
    let registry = registry::Registry::start(&dir.join("registry"));
    let gun = format!("{}/team/remote", registry.host());
    let admin = server.docker(&dir.join("docker-admin"));
    admin.make_image(&format!("{gun}:1.0"), "remote signer image one");
    let out = admin.ok_trusted(&["push", &format!("{gun}:1.0")]);
    assert!(
        out.contains(&format!("Successfully signed {gun}:1.0")),
        "{out}"
    );
    let (snapshot_key, _) = assert_signed_by_signer(&server.curl(), &gun, db);

    // bob makes his key in his own docker config; the admin adds it.
    let bob = server.docker(&dir.join("docker-bob"));
    let keys = dir.join("docker-keys");
    std::fs::create_dir_all(&keys).unwrap();
    bob.ok(&["trust", "key", "generate", "bob", "--dir", text(&keys)]);
    let out = admin.ok(&[
        "trust",
        "signer",
        "add",
        "--key",
        text(&keys.join("bob.pub")),
        "bob",
        &gun,
    ]);
    assert!(
        out.contains(&format!("Successfully added signer: bob to {gun}")),
        "{out}"
    );
    // bob signs 2.0 into the delegations (targets/releases among them).
    bob.make_image(&format!("{gun}:2.0"), "remote signer image two");
    let out = bob.ok_trusted(&["push", &format!("{gun}:2.0")]);
    assert!(
        out.contains(&format!("Successfully signed {gun}:2.0")),
        "{out}"
    );
    let (code, body) = server
        .curl()
        .get(&format!("/v2/{gun}/_trust/tuf/targets/releases.json"));
    assert_eq!(code, 200);
    let releases: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        releases["signed"]["targets"]["2.0"].is_object(),
        "{releases}"
    );
    let (snapshot_again, _) = assert_signed_by_signer(&server.curl(), &gun, db);
    assert_eq!(snapshot_again, snapshot_key);

    // Another user, no image left locally: the pulls are verified.
    let reader = server.docker(&dir.join("docker-reader"));
    reader.track(&gun);
    admin.remove_images();
    bob.remove_images();
    for tag in ["1.0", "2.0"] {
        let out = reader.ok_trusted(&["pull", &format!("{gun}:{tag}")]);
        assert!(out.contains("Status: Downloaded newer image"), "{out}");
    }
}

/// Both signers require a client certificate from their CA: notarium
/// without one, or with one from another CA, is refused, which shows as an
/// unhealthy trust service and 503 on what needs a key, never as a key.
#[test]
fn signers_refuse_clients_without_a_trusted_certificate() {
    for kind in [Kind::Go, Kind::Notarium] {
        let db = SignerDb::postgres(PgServer::shared());
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (ca, _, _) = make_test_tls(dir);
        let signer = SignerProcess::new(dir, &db, kind, SIGNER_PASSPHRASE);
        let other = dir.join("other-ca");
        std::fs::create_dir_all(&other).unwrap();
        let (_, other_cert, other_key) = make_test_tls(&other);

        let cases = [
            ("none", json!({})),
            (
                "other-ca",
                json!({"tls_client_cert": other_cert, "tls_client_key": other_key}),
            ),
        ];
        for (name, identity) in cases {
            let mut trust = json!({"type": "remote", "hostname": "127.0.0.1",
                                   "port": signer.port, "key_algorithm": "ecdsa",
                                   "tls_ca_file": ca});
            for (k, v) in identity.as_object().unwrap() {
                trust[k] = v.clone();
            }
            let server = Notarium::start(&dir.join(name), json!({"trust_service": trust}));
            let curl = server.curl();
            assert_eq!(
                status(&curl, "/_notary_server/health"),
                503,
                "{kind:?} {name}"
            );
            let (code, body) = curl.get(&format!("/v2/{GUN}/_trust/tuf/timestamp.key"));
            assert_eq!(
                code,
                503,
                "{kind:?} {name}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        assert!(
            signer_key_ids(&db).is_empty(),
            "{kind:?}: a refused client made a key"
        );
    }
}
