#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! notarium as the server with the real Go notary-signer (Debian's `notary`)
//! behind it: `trust_service: {type: "remote"}` over mutual TLS, the signer
//! keeping its keys in notary's own `private_keys` table on PostgreSQL. The
//! notary CLI runs init, publish, a server-managed snapshot, a delegation,
//! witness and delete; the signer is stopped mid-run (503 on what needs a
//! signature, cached reads still served) and started again.

mod common;
#[path = "support/dockercli.rs"]
mod dockercli;
#[path = "support/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::postgres::{PASSWORD, PgServer};
use common::{
    Curl, Notarium, NotaryClient, Process, ReferenceServer, free_port, make_test_tls, require,
    wait_for_port,
};
use serde_json::{Value, json};

const GUN: &str = "notarium.test/remote/app";
const SIGNER_PASSPHRASE: &str = "remote signer alias passphrase";

/// Runs SQL statements on a PostgreSQL URL.
fn sql(url: &str, text: &str) {
    use sqlx::Connection;
    let text = sqlx::AssertSqlSafe(text.to_string());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(text).execute(&mut conn).await.unwrap();
        });
}

/// Which signer program serves the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Go,
    Notarium,
}

/// A signer with mutual TLS (clients need a certificate from `ca.crt`),
/// keys in `db_url` under the alias "alpha": the Go notary-signer or
/// `notarium signer`, from the same notary-signer configuration file.
struct SignerProcess {
    dir: PathBuf,
    config: PathBuf,
    port: u16,
    process: Option<Process>,
}

impl SignerProcess {
    fn new(dir: &Path, db_url: &str, kind: Kind) -> Self {
        let port = free_port();
        let config = dir.join("signer.json");
        std::fs::write(
            &config,
            json!({
                "server": {"grpc_addr": format!("127.0.0.1:{port}"),
                           "tls_cert_file": "server.crt", "tls_key_file": "server.key",
                           "client_ca_file": "ca.crt"},
                "storage": {"backend": "postgres", "db_url": db_url, "default_alias": "alpha"},
                "logging": {"level": "info"},
            })
            .to_string(),
        )
        .unwrap();
        let mut signer = Self {
            dir: dir.to_path_buf(),
            config,
            port,
            process: None,
        };
        signer.start(kind, SIGNER_PASSPHRASE);
        signer
    }

    fn command(&self, kind: Kind) -> Command {
        match kind {
            Kind::Go => {
                let mut command = Command::new(require("notary-signer", "notary"));
                command
                    .arg("-config")
                    .arg(&self.config)
                    .arg("-logf")
                    .arg("logfmt");
                command
            }
            Kind::Notarium => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_notarium"));
                command.arg("signer").arg("--config").arg(&self.config);
                command
            }
        }
    }

    fn start(&mut self, kind: Kind, passphrase: &str) {
        self.process = None;
        let log = self.dir.join(format!("signer-{kind:?}.log"));
        let mut child = self
            .command(kind)
            .env("NOTARY_SIGNER_ALPHA", passphrase)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        wait_for_port(
            format!("127.0.0.1:{}", self.port).parse().unwrap(),
            &mut child,
            &log,
        );
        self.process = Some(Process { child, log });
    }

    fn stop(&mut self) {
        self.process = None;
    }
}

fn signer_database(pg: &PgServer) -> String {
    let db_url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{}?sslmode=disable",
        pg.port,
        pg.database()
    );
    sql(&db_url, include_str!("data/notary-signer-postgres.sql"));
    db_url
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

fn signer_key_ids(db_url: &str) -> Vec<String> {
    use sqlx::Connection;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
            sqlx::query_scalar::<_, String>("SELECT key_id FROM private_keys ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap()
        })
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

/// Publishes, retrying while the Go notary-server's gRPC connection to a
/// restarted signer is still in its reconnect backoff (bounded).
fn publish_retrying(owner: &NotaryClient) {
    let mut attempts = Vec::new();
    for _ in 0..20 {
        let output = owner.run(&["publish", GUN]);
        if output.status.success() {
            return;
        }
        attempts.push(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("never published: {attempts:?}");
}

#[test]
fn notarium_server_with_the_go_notary_signer() {
    notarium_server_flows(Kind::Go, Kind::Notarium);
}

#[test]
fn notarium_server_with_notarium_signer() {
    notarium_server_flows(Kind::Notarium, Kind::Go);
}

/// The CLI flows through notarium with the `first` signer, which is
/// stopped and started mid-run; then `second` serves the same database.
fn notarium_server_flows(first: Kind, then: Kind) {
    let db_url = signer_database(PgServer::shared());

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // One certificate serves as the signer's server certificate and as
    // notarium's client certificate (it carries both usages).
    let (ca, cert, key) = make_test_tls(dir);
    let mut signer = SignerProcess::new(dir, &db_url, first);

    let server = Notarium::start(
        &dir.join("notarium"),
        json!({
            "trust_service": {"type": "remote", "hostname": "127.0.0.1",
                              "port": signer.port.to_string(), "key_algorithm": "ecdsa",
                              "tls_ca_file": ca, "tls_client_cert": cert,
                              "tls_client_key": key},
        }),
    );
    let curl = server.curl();
    assert_eq!(status(&curl, "/_notary_server/health"), 200);
    let owner: NotaryClient = server.notary(dir.join("owner"));
    let tuf = |role: &str| format!("/v2/{GUN}/_trust/tuf/{role}");

    // init + publish: the timestamp key is made and used by the Go signer.
    assert_published(&owner.ok(&["init", GUN, "-p"]));
    let timestamp: Value = serde_json::from_slice(&curl.get(&tuf("timestamp.json")).1).unwrap();
    let ts_key = timestamp["signatures"][0]["keyid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        signer_key_ids(&db_url).contains(&ts_key),
        "the timestamp key {ts_key} is not in notary-signer's table"
    );
    // notarium holds no private key of its own: no local key passphrase
    // was even made.
    assert!(!dir.join("notarium/keys/passphrase").exists());

    let payload = write(dir, "one.txt", "first target");
    assert_published(&owner.ok(&["add", GUN, "one", text(&payload), "-p"]));

    // The server-managed snapshot: its key too comes from the signer.
    owner.ok(&["key", "rotate", GUN, "snapshot", "-r"]);
    assert_published(&owner.ok(&["publish", GUN]));
    let snapshot: Value = serde_json::from_slice(&curl.get(&tuf("snapshot.json")).1).unwrap();
    let snap_key = snapshot["signatures"][0]["keyid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(signer_key_ids(&db_url).contains(&snap_key));

    // A delegation, with the snapshot signed remotely.
    delegation_flow(dir, &owner);
    assert_published(&owner.ok(&["witness", GUN, "targets/releases", "-p"]));
    let listed = owner.ok(&["list", GUN]);
    assert!(
        listed.contains("rel-1") && listed.contains("one"),
        "{listed}"
    );

    // The signer goes away: health says so, cached reads go on, what needs
    // a new signature or key is 503 with Retry-After.
    signer.stop();
    assert_eq!(status(&curl, "/_notary_server/health"), 503);
    assert_eq!(status(&curl, &tuf("timestamp.json")), 200);
    assert_eq!(status(&curl, &tuf("targets.json")), 200);
    // With -i the headers come before the body.
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
    let second = write(dir, "two.txt", "second target");
    let output = owner.run(&["add", GUN, "two", text(&second), "-p"]);
    assert!(
        !output.status.success(),
        "published without a signer: {output:?}"
    );
    assert!(server.log().contains("signer unavailable"));

    // Back again: the pending change publishes, signed by the same key.
    signer.start(first, SIGNER_PASSPHRASE);
    assert_eq!(status(&curl, "/_notary_server/health"), 200);
    assert_published(&owner.ok(&["publish", GUN]));
    let listed = owner.ok(&["list", GUN]);
    assert!(listed.contains("two"), "{listed}");
    let snapshot: Value = serde_json::from_slice(&curl.get(&tuf("snapshot.json")).1).unwrap();
    assert_eq!(snapshot["signatures"][0]["keyid"], snap_key.as_str());

    // A fresh client verifies everything from the server alone.
    let reader = server.notary(dir.join("reader"));
    let listed = reader.ok(&["list", GUN]);
    assert!(
        listed.contains("rel-1") && listed.contains("two"),
        "{listed}"
    );

    // The same database under the other signer: keys the first made sign
    // through it.
    signer.start(then, SIGNER_PASSPHRASE);
    assert_eq!(status(&curl, "/_notary_server/health"), 200);
    let third = write(dir, "three.txt", "third target");
    assert_published(&owner.ok(&["add", GUN, "three", text(&third), "-p"]));
    let snapshot: Value = serde_json::from_slice(&curl.get(&tuf("snapshot.json")).1).unwrap();
    assert_eq!(snapshot["signatures"][0]["keyid"], snap_key.as_str());
    let listed = server.notary(dir.join("reader2")).ok(&["list", GUN]);
    assert!(listed.contains("three"), "{listed}");

    // A wrong passphrase for the alias: the keys do not open, nothing is
    // signed, and the refusal is an error, not a signature.
    signer.start(Kind::Notarium, "not the alias passphrase");
    let fourth = write(dir, "four.txt", "fourth target");
    let output = owner.run(&["add", GUN, "four", text(&fourth), "-p"]);
    assert!(
        !output.status.success(),
        "signed with a wrong passphrase: {output:?}"
    );
    signer.stop();
    // Without a passphrase for its default alias, `notarium signer` does
    // not start.
    let output = signer
        .command(Kind::Notarium)
        .env_remove("NOTARY_SIGNER_ALPHA")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NOTARY_SIGNER_ALPHA"), "{stderr}");
    signer.start(Kind::Notarium, SIGNER_PASSPHRASE);

    owner.ok(&["delete", GUN, "--remote"]);
    assert_eq!(status(&curl, &tuf("timestamp.json")), 404);
}

/// Both signers require a client certificate from their CA: notarium
/// without one, or with one from another CA, is refused, which shows as an
/// unhealthy trust service and 503 on what needs a key, never as a key.
#[test]
fn signers_refuse_clients_without_a_trusted_certificate() {
    for kind in [Kind::Go, Kind::Notarium] {
        let db_url = signer_database(PgServer::shared());
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (ca, _, _) = make_test_tls(dir);
        let signer = SignerProcess::new(dir, &db_url, kind);
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
            signer_key_ids(&db_url).is_empty(),
            "{kind:?}: a refused client made a key"
        );
    }
}

/// The real Go notary-server in front of `notarium signer`: init, publish,
/// a server-managed snapshot, a delegation, witness, a timestamp key
/// rotation and delete pass with the server's keys made and used by
/// notarium's signer, which is stopped and started mid-run; the Go
/// notary-signer also takes the same database over and signs with those
/// keys.
#[test]
fn go_notary_server_with_notarium_signer() {
    let db_url = signer_database(PgServer::shared());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ca, cert, key) = make_test_tls(dir);
    let mut signer = SignerProcess::new(dir, &db_url, Kind::Notarium);
    let server_dir = dir.join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server = ReferenceServer::start_with(
        &server_dir,
        json!({
            "trust_service": {"type": "remote", "hostname": "127.0.0.1",
                              "port": signer.port.to_string(), "key_algorithm": "ecdsa",
                              "tls_ca_file": ca, "tls_client_cert": cert,
                              "tls_client_key": key},
        }),
    );
    let curl = Curl {
        base: server.url.clone(),
        ca: server.ca.clone(),
    };
    let tuf = |role: &str| format!("/v2/{GUN}/_trust/tuf/{role}");
    let owner = NotaryClient::new(dir.join("owner"), &server.url, &server.ca);

    assert_published(&owner.ok(&["init", GUN, "-p"]));
    let payload = write(dir, "one.txt", "first target");
    assert_published(&owner.ok(&["add", GUN, "one", text(&payload), "-p"]));
    owner.ok(&["key", "rotate", GUN, "snapshot", "-r"]);
    assert_published(&owner.ok(&["publish", GUN]));
    let held = signer_key_ids(&db_url);
    for role in ["timestamp.json", "snapshot.json"] {
        let file: Value = serde_json::from_slice(&curl.get(&tuf(role)).1).unwrap();
        let key_id = file["signatures"][0]["keyid"].as_str().unwrap();
        assert!(
            held.iter().any(|k| k == key_id),
            "{role}: {key_id} not in {held:?}"
        );
    }
    let reader = NotaryClient::new(dir.join("reader"), &server.url, &server.ca);
    assert!(reader.ok(&["list", GUN]).contains("one"));

    // A delegation and witness, the snapshot and timestamp signed by
    // notarium's signer.
    delegation_flow(dir, &owner);
    assert_published(&owner.ok(&["witness", GUN, "targets/releases", "-p"]));
    let listed = reader.ok(&["list", GUN]);
    assert!(
        listed.contains("rel-1") && listed.contains("one"),
        "{listed}"
    );

    // The signer goes away mid-run: the Go server cannot sign, so a
    // publish fails and cached metadata is still served.
    signer.stop();
    assert_eq!(status(&curl, &tuf("timestamp.json")), 200);
    let second = write(dir, "two.txt", "second target");
    owner.ok(&["add", GUN, "two", text(&second)]);
    let output = owner.run(&["publish", GUN]);
    assert!(
        !output.status.success(),
        "published without a signer: {output:?}"
    );
    // Started again: the pending change publishes, with the same keys.
    signer.start(Kind::Notarium, SIGNER_PASSPHRASE);
    publish_retrying(&owner);
    let listed = reader.ok(&["list", GUN]);
    assert!(listed.contains("two"), "{listed}");
    assert_eq!(signer_key_ids(&db_url), held, "the restart made new keys");

    // The Go signer takes over the database notarium's signer wrote. The
    // Go server's gRPC connection to the stopped signer reconnects with a
    // backoff, so the first attempts may fail while it does.
    signer.start(Kind::Go, SIGNER_PASSPHRASE);
    let third = write(dir, "three.txt", "third target");
    owner.ok(&["add", GUN, "three", text(&third)]);
    publish_retrying(&owner);
    let listed = reader.ok(&["list", GUN]);
    assert!(listed.contains("three"), "{listed}");
    assert_eq!(signer_key_ids(&db_url), held, "the Go signer made new keys");

    // Back to notarium's signer: a timestamp key rotation makes a new key
    // there, and the next timestamp is signed with it.
    signer.start(Kind::Notarium, SIGNER_PASSPHRASE);
    // The same reconnect backoff applies to the key creation.
    let rotated = (0..20).any(|_| {
        let output = owner.run(&["key", "rotate", GUN, "timestamp", "-r"]);
        if !output.status.success() {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        output.status.success()
    });
    assert!(rotated, "the timestamp key never rotated");
    let fourth = write(dir, "four.txt", "fourth target");
    owner.ok(&["add", GUN, "four", text(&fourth)]);
    publish_retrying(&owner);
    let now_held = signer_key_ids(&db_url);
    assert_eq!(
        now_held.len(),
        held.len() + 1,
        "{now_held:?} after {held:?}"
    );
    let timestamp: Value = serde_json::from_slice(&curl.get(&tuf("timestamp.json")).1).unwrap();
    let ts_key = timestamp["signatures"][0]["keyid"].as_str().unwrap();
    assert_eq!(now_held.last().map(String::as_str), Some(ts_key));
    let listed = NotaryClient::new(dir.join("reader2"), &server.url, &server.ca).ok(&["list", GUN]);
    assert!(listed.contains("four"), "{listed}");

    owner.ok(&["delete", GUN, "--remote"]);
    assert_eq!(status(&curl, &tuf("timestamp.json")), 404);
}

/// docker with content trust through notarium and the Go notary-signer
/// (docker leaves snapshot and timestamp to the server, so both are the
/// signer's keys); then `notarium signer` serves the same keys and a
/// second signed push and a verified pull by another user go through.
#[test]
fn docker_content_trust_through_a_remote_signer() {
    let db_url = signer_database(PgServer::shared());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ca, cert, key) = make_test_tls(dir);
    let mut signer = SignerProcess::new(dir, &db_url, Kind::Go);
    let server = Notarium::start(
        &dir.join("notarium"),
        json!({
            "trust_service": {"type": "remote", "hostname": "127.0.0.1",
                              "port": signer.port.to_string(), "key_algorithm": "ecdsa",
                              "tls_ca_file": ca, "tls_client_cert": cert,
                              "tls_client_key": key},
        }),
    );
    let registry = registry::Registry::start(&dir.join("registry"));
    let docker = dockercli::DockerCli::new(&dir.join("docker"), &server);
    let gun = format!("{}/team/remote", registry.host());
    docker.make_image(&format!("{gun}:1.0"), "remote signer image one");
    let out = docker.ok_trusted(&["push", &format!("{gun}:1.0")]);
    assert!(
        out.contains(&format!("Successfully signed {gun}:1.0")),
        "{out}"
    );

    let curl = server.curl();
    let held = signer_key_ids(&db_url);
    for role in ["timestamp.json", "snapshot.json"] {
        let (code, body) = curl.get(&format!("/v2/{gun}/_trust/tuf/{role}"));
        assert_eq!(code, 200);
        let file: Value = serde_json::from_slice(&body).unwrap();
        let key_id = file["signatures"][0]["keyid"].as_str().unwrap();
        assert!(
            held.iter().any(|k| k == key_id),
            "{role}: {key_id} not in {held:?}"
        );
    }

    signer.start(Kind::Notarium, SIGNER_PASSPHRASE);
    docker.make_image(&format!("{gun}:2.0"), "remote signer image two");
    let out = docker.ok_trusted(&["push", &format!("{gun}:2.0")]);
    assert!(
        out.contains(&format!("Successfully signed {gun}:2.0")),
        "{out}"
    );
    assert_eq!(signer_key_ids(&db_url), held, "new server keys were made");

    let reader = dockercli::DockerCli::new(&dir.join("reader"), &server);
    reader.track(&format!("{gun}:2.0"));
    docker.remove_images();
    let out = reader.ok_trusted(&["pull", &format!("{gun}:2.0")]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
}
