#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! notarium as the server with the real Go notary-signer (Debian's `notary`)
//! behind it: `trust_service: {type: "remote"}` over mutual TLS, the signer
//! keeping its keys in notary's own `private_keys` table on PostgreSQL. The
//! notary CLI runs init, publish, a server-managed snapshot, a delegation,
//! witness and delete; the signer is stopped mid-run (503 on what needs a
//! signature, cached reads still served) and started again.

mod common;
#[path = "support/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    Curl, Notarium, NotaryClient, Process, free_port, make_test_tls, require, run_ok, wait_for_port,
};
use postgres::{PASSWORD, PgServer};
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

/// The Go notary-signer with mutual TLS (clients need a certificate from
/// `ca.crt`), keys in `db_url` under the alias "alpha".
struct GoSigner {
    dir: PathBuf,
    config: PathBuf,
    port: u16,
    process: Option<Process>,
}

impl GoSigner {
    fn new(dir: &Path, db_url: &str) -> Self {
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
        signer.start();
        signer
    }

    fn start(&mut self) {
        let program = require("notary-signer", "notary");
        let log = self.dir.join("notary-signer.log");
        let mut child = Command::new(program)
            .arg("-config")
            .arg(&self.config)
            .arg("-logf")
            .arg("logfmt")
            .env("NOTARY_SIGNER_ALPHA", SIGNER_PASSPHRASE)
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

#[test]
fn notarium_server_with_the_go_notary_signer() {
    let pg = PgServer::shared();
    let db_url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{}?sslmode=disable",
        pg.port,
        pg.database()
    );
    sql(&db_url, include_str!("data/notary-signer-postgres.sql"));

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // One certificate serves as the signer's server certificate and as
    // notarium's client certificate (it carries both usages).
    let (ca, cert, key) = make_test_tls(dir);
    let mut signer = GoSigner::new(dir, &db_url);

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
    run_ok(
        Command::new("openssl")
            .current_dir(dir)
            .args(["ecparam", "-name", "prime256v1", "-genkey", "-noout"])
            .args(["-out", "releases.key"]),
    );
    run_ok(
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-new", "-x509", "-key", "releases.key"])
            .args([
                "-subj",
                "/CN=releases",
                "-days",
                "30",
                "-out",
                "releases.crt",
            ]),
    );
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
    let (code, body) = curl.get("/v2/notarium.test/remote/other/_trust/tuf/timestamp.key");
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("signing service is unavailable"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let second = write(dir, "two.txt", "second target");
    let output = owner.run(&["add", GUN, "two", text(&second), "-p"]);
    assert!(
        !output.status.success(),
        "published without a signer: {output:?}"
    );
    assert!(server.log().contains("signer unavailable"));

    // Back again: the pending change publishes, signed by the same key.
    signer.start();
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

    owner.ok(&["delete", GUN, "--remote"]);
    assert_eq!(status(&curl, &tuf("timestamp.json")), 404);
}

/// The Go signer requires a client certificate from its CA: notarium
/// without one, or with one from another CA, is refused, which shows as an
/// unhealthy trust service and 503 on what needs a key, never as a key.
#[test]
fn the_go_signer_refuses_notarium_without_a_trusted_client_certificate() {
    let pg = PgServer::shared();
    let db_url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{}?sslmode=disable",
        pg.port,
        pg.database()
    );
    sql(&db_url, include_str!("data/notary-signer-postgres.sql"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ca, _, _) = make_test_tls(dir);
    let signer = GoSigner::new(dir, &db_url);
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
        assert_eq!(status(&curl, "/_notary_server/health"), 503, "{name}");
        let (code, body) = curl.get(&format!("/v2/{GUN}/_trust/tuf/timestamp.key"));
        assert_eq!(code, 503, "{name}: {}", String::from_utf8_lossy(&body));
    }
    assert!(
        signer_key_ids(&db_url).is_empty(),
        "a refused client made a key"
    );
}
