#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `notarium signer` on its own terms: notary-signer's database on
//! MySQL/MariaDB taken over in both directions with the real Go
//! notary-signer (behind a notarium server, driven by the notary CLI); gRPC
//! health that follows the signer's database (PostgreSQL stopped and
//! started); and the gRPC boundary itself, called directly with a tonic
//! client: oversized and malformed requests, unknown keys, bad algorithms,
//! soft delete and the columns written, on PostgreSQL and on MariaDB.

mod common;
#[path = "support/mariadb.rs"]
mod mariadb;
#[path = "support/signer.rs"]
mod signer;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::postgres::PgServer;
use common::{Curl, Notarium, NotaryClient, free_port, make_test_tls};
use mariadb::MariaDb;
use notarium::signer::proto::key_management_client::KeyManagementClient;
use notarium::signer::proto::signer_client::SignerClient;
use notarium::signer::proto::{CreateKeyRequest, KeyId, SignatureRequest};
use notarium::signer::service::MAX_REQUEST_BYTES;
use notarium::tuf::sig::verify_signature;
use notarium::tuf::{KeyType, Method, PublicKey};
use serde_json::{Value, json};
use signer::{Kind, SignerDb, SignerProcess, runtime};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const SIGNER_PASSPHRASE: &str = "signer service alias passphrase";

/// notary's signer schema for MySQL in a fresh database of `server`.
fn mariadb_signer_db(server: &MariaDb) -> SignerDb {
    let name = server.database();
    SignerDb::with_schema("mysql", server.dsn(&name), server.url(&name))
}

/// Key IDs of live rows, oldest first.
fn key_ids(db: &SignerDb) -> Vec<String> {
    db.strings("SELECT key_id FROM private_keys WHERE deleted_at IS NULL ORDER BY id")
}

fn assert_published(out: &str, gun: &str) {
    assert!(
        out.contains(&format!(
            "Successfully published changes for repository {gun}"
        )),
        "not published: {out:?}"
    );
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Asserts that a gRPC call was refused with `code`.
fn assert_refused<T>(result: Result<T, tonic::Status>, code: Code, what: &str) {
    match result {
        Ok(_) => panic!("{what}: accepted, expected {code:?}"),
        Err(status) => assert_eq!(status.code(), code, "{what}: {status:?}"),
    }
}

/// Adds and publishes the target `name` (`content` in a file in `dir`).
fn publish_target(owner: &NotaryClient, dir: &Path, gun: &str, name: &str, content: &str) {
    let file = dir.join(format!("{name}.txt"));
    std::fs::write(&file, content).unwrap();
    assert_published(&owner.ok(&["add", gun, name, text(&file), "-p"]), gun);
}

/// The key ID of a role file's (only) signature.
fn signing_key(curl: &Curl, gun: &str, role: &str) -> String {
    let (code, body) = curl.get(&format!("/v2/{gun}/_trust/tuf/{role}.json"));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let file: Value = serde_json::from_slice(&body).unwrap();
    file["signatures"][0]["keyid"].as_str().unwrap().to_string()
}

/// A notarium server in front of `signer`, with the test's client
/// certificate.
fn server_in_front(dir: &Path, signer: &SignerProcess) -> Notarium {
    Notarium::start(
        &dir.join("notarium"),
        json!({"trust_service": signer.trust_service()}),
    )
}

/// The Go notary-signer on MariaDB makes and uses the timestamp key;
/// `notarium signer` on the same database signs with it, and makes a new
/// one on rotation, with the columns notary-signer writes; the Go signer
/// then signs with that new key.
#[test]
fn mariadb_signer_database_is_taken_over_both_ways() {
    const GUN: &str = "notarium.test/signer-service/mariadb";
    let db = mariadb_signer_db(MariaDb::shared());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_test_tls(dir);
    let mut signer = SignerProcess::new(dir, &db, Kind::Go, SIGNER_PASSPHRASE);
    let server = server_in_front(dir, &signer);
    let curl = server.curl();
    assert_eq!(curl.get("/_notary_server/health").0, 200);
    let owner = server.notary(dir.join("owner"));

    assert_published(&owner.ok(&["init", GUN, "-p"]), GUN);
    publish_target(&owner, dir, GUN, "one", "first target");
    let ts_key = signing_key(&curl, GUN, "timestamp");
    let held = key_ids(&db);
    assert_eq!(held, std::slice::from_ref(&ts_key), "the Go signer's keys");

    // notarium's signer on the Go signer's database signs with its key.
    signer.start(Kind::Notarium, SIGNER_PASSPHRASE);
    assert_eq!(curl.get("/_notary_server/health").0, 200);
    publish_target(&owner, dir, GUN, "two", "second target");
    assert_eq!(signing_key(&curl, GUN, "timestamp"), ts_key);
    assert_eq!(key_ids(&db), held, "notarium's signer made a key to sign");

    // A timestamp key rotation: notarium's signer makes the key, in the
    // row layout notary-signer writes, and the next timestamp uses it.
    owner.ok(&["key", "rotate", GUN, "timestamp", "-r"]);
    let keys = key_ids(&db);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let new_key = keys[1].clone();
    let row = db.strings(&format!(
        "SELECT CONCAT_WS(' ', encryption_alg, keywrap_alg, algorithm, passphrase_alias, gun, \
         role) FROM private_keys WHERE key_id = '{new_key}' AND created_at IS NOT NULL \
         AND updated_at IS NOT NULL"
    ));
    assert_eq!(
        row,
        [format!(
            "A256GCM PBES2-HS256+A128KW ecdsa alpha {GUN} timestamp"
        )]
    );
    publish_target(&owner, dir, GUN, "three", "third target");
    assert_eq!(signing_key(&curl, GUN, "timestamp"), new_key);
    // Its first signature marked it used, as notary-signer marks keys, so
    // neither signer hands it out again as a fresh key.
    let used = db.strings("SELECT key_id FROM private_keys WHERE last_used IS NOT NULL");
    assert!(used.contains(&new_key), "{used:?}");

    // The Go signer takes the database back and signs with that key.
    signer.start(Kind::Go, SIGNER_PASSPHRASE);
    publish_target(&owner, dir, GUN, "four", "fourth target");
    assert_eq!(signing_key(&curl, GUN, "timestamp"), new_key);
    assert_eq!(key_ids(&db), keys, "the Go signer made a key");
    let listed = server.notary(dir.join("reader")).ok(&["list", GUN]);
    for target in ["one", "two", "three", "four"] {
        assert!(listed.contains(target), "{target} missing: {listed}");
    }
}

/// Polls `check` every 250 ms until it holds; fails after `limit` tries.
fn eventually(what: &str, limit: u32, mut check: impl FnMut() -> bool) {
    for _ in 0..limit {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("never happened: {what}");
}

async fn health_of(channel: &Channel) -> Vec<i32> {
    let mut client = HealthClient::new(channel.clone());
    let mut statuses = Vec::new();
    for service in [
        "grpc.health.v1.Health.KeyManagement",
        "grpc.health.v1.Health.Signer",
    ] {
        let response = client
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap();
        statuses.push(response.into_inner().status);
    }
    statuses
}

/// The signer's PostgreSQL stops: both health services turn NOT_SERVING,
/// a server in front reports 503, a call that needs the database is
/// UNAVAILABLE; the database comes back and so does SERVING.
#[test]
fn health_follows_the_signer_database() {
    const GUN: &str = "notarium.test/signer-service/health";
    // A server of its own: this test stops it.
    let pg = PgServer::start();
    let db = SignerDb::postgres(&pg);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_test_tls(dir);
    let signer = SignerProcess::new(dir, &db, Kind::Notarium, SIGNER_PASSPHRASE);
    let server = server_in_front(dir, &signer);
    let curl = server.curl();
    let rt = runtime();
    let channel = rt.block_on(signer.channel());
    let serving = vec![ServingStatus::Serving as i32; 2];
    let not_serving = vec![ServingStatus::NotServing as i32; 2];
    assert_eq!(rt.block_on(health_of(&channel)), serving);
    assert_eq!(curl.get("/_notary_server/health").0, 200);
    let owner = server.notary(dir.join("owner"));
    assert_published(&owner.ok(&["init", GUN, "-p"]), GUN);

    pg.stop();
    // The periodic check notices within its interval (5 s); 30 s bound.
    eventually("gRPC health NOT_SERVING", 120, || {
        rt.block_on(health_of(&channel)) == not_serving
    });
    let (code, body) = curl.get("/_notary_server/health");
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("Trust operational"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let status = rt
        .block_on(
            KeyManagementClient::new(channel.clone()).create_key(CreateKeyRequest {
                algorithm: "ecdsa".into(),
                gun: GUN.into(),
                role: "snapshot".into(),
            }),
        )
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    pg.restart();
    eventually("gRPC health SERVING again", 120, || {
        rt.block_on(health_of(&channel)) == serving
    });
    assert_eq!(curl.get("/_notary_server/health").0, 200);
    publish_target(&owner, dir, GUN, "one", "after the outage");
}

/// A codec that sends and receives raw bytes, for requests no generated
/// client would make.
mod raw {
    use bytes::{Buf, BufMut};
    use tonic::Status;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Debug, Default, Clone, Copy)]
    pub struct Bytes;
    #[derive(Debug, Default, Clone, Copy)]
    pub struct Raw;

    impl Encoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for Raw {
        type Item = Vec<u8>;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            let mut out = vec![0; src.remaining()];
            src.copy_to_slice(&mut out);
            Ok(Some(out))
        }
    }

    impl Codec for Bytes {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }
}

/// The gRPC boundary on one backend, called directly.
async fn boundary_checks(signer: &SignerProcess, db: &SignerDb) {
    const GUN: &str = "notarium.test/signer-service/direct";
    let channel = signer.channel().await;
    let mut keys = KeyManagementClient::new(channel.clone());
    let mut signing = SignerClient::new(channel.clone());
    let create = |algorithm: &str| CreateKeyRequest {
        algorithm: algorithm.into(),
        gun: GUN.into(),
        role: "timestamp".into(),
    };
    let sign = |key_id: &str, content: Vec<u8>| SignatureRequest {
        key_id: Some(KeyId { id: key_id.into() }),
        content,
    };

    // A bad algorithm is the caller's mistake.
    for algorithm in ["rsa", ""] {
        let refused = keys.create_key(create(algorithm)).await;
        assert_refused(refused, Code::InvalidArgument, algorithm);
    }
    assert!(key_ids(db).is_empty());

    let made = keys.create_key(create("ecdsa")).await.unwrap().into_inner();
    let key_id = made.key_info.unwrap().key_id.unwrap().id;
    let public = PublicKey::new(KeyType::Ecdsa, made.public_key);
    assert_eq!(public.id(), key_id);
    // Never used: asked again, the same key comes back (notary-signer's
    // rule), and no second row is written.
    let again = keys.create_key(create("ecdsa")).await.unwrap().into_inner();
    assert_eq!(again.key_info.unwrap().key_id.unwrap().id, key_id);
    assert_eq!(key_ids(db), std::slice::from_ref(&key_id));
    let info = keys
        .get_key_info(KeyId { id: key_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.role, "timestamp");
    assert_eq!(info.public_key, public.public_bytes());

    let verify = |signature: notarium::signer::proto::Signature, content: &[u8]| {
        let method = Method::parse(&signature.algorithm.unwrap().algorithm);
        verify_signature(&public, &method, content, &signature.content).unwrap();
    };
    let content = b"{\"signed\":\"bytes\"}".to_vec();
    let signature = signing
        .sign(sign(&key_id, content.clone()))
        .await
        .unwrap()
        .into_inner();
    verify(signature, &content);
    assert_eq!(
        db.strings("SELECT key_id FROM private_keys WHERE last_used IS NOT NULL"),
        std::slice::from_ref(&key_id)
    );
    // Used now: the next request makes a new key.
    let fresh = keys.create_key(create("ecdsa")).await.unwrap().into_inner();
    assert_ne!(fresh.key_info.unwrap().key_id.unwrap().id, key_id);

    // More than the bound: refused by size, and the signer goes on.
    let status = signing
        .sign(sign(&key_id, vec![b'x'; MAX_REQUEST_BYTES + 1]))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    // The largest content that fits the bound with its envelope signs.
    let large = vec![b'y'; MAX_REQUEST_BYTES - 1024];
    let signature = signing
        .sign(sign(&key_id, large.clone()))
        .await
        .unwrap()
        .into_inner();
    verify(signature, &large);

    // Bytes that are not a SignatureRequest: an error status, and the
    // signer goes on.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(vec![0x0a, 0x05, 0x01]),
            tonic::codegen::http::uri::PathAndQuery::from_static("/proto.Signer/Sign"),
            raw::Bytes,
        )
        .await
        .unwrap_err();
    assert!(
        !matches!(status.code(), Code::Ok | Code::Unavailable),
        "{status:?}"
    );
    let signature = signing
        .sign(sign(&key_id, content.clone()))
        .await
        .unwrap()
        .into_inner();
    verify(signature, &content);

    // Unknown, empty, missing and absurd key IDs are NotFound.
    let unknown = "0".repeat(64);
    let long = "a".repeat(10_000);
    for id in [unknown.as_str(), "", long.as_str(), &key_id.to_uppercase()] {
        let what = format!("{id:.20}");
        let refused = signing.sign(sign(id, content.clone())).await;
        assert_refused(refused, Code::NotFound, &format!("sign {what}"));
        let refused = keys.get_key_info(KeyId { id: id.into() }).await;
        assert_refused(refused, Code::NotFound, &format!("info {what}"));
    }
    let refused = signing
        .sign(SignatureRequest {
            key_id: None,
            content: content.clone(),
        })
        .await;
    assert_refused(refused, Code::NotFound, "sign without a key ID");

    // Delete is gorm's soft delete: the row stays, marked, and the key is
    // gone for every call.
    keys.delete_key(KeyId { id: key_id.clone() }).await.unwrap();
    let refused = keys.get_key_info(KeyId { id: key_id.clone() }).await;
    assert_refused(refused, Code::NotFound, "info of a deleted key");
    let refused = signing.sign(sign(&key_id, content.clone())).await;
    assert_refused(refused, Code::NotFound, "sign with a deleted key");
    assert_eq!(
        db.strings("SELECT key_id FROM private_keys WHERE deleted_at IS NOT NULL"),
        std::slice::from_ref(&key_id)
    );
    // Deleting an unknown key succeeds, as in notary-signer.
    keys.delete_key(KeyId { id: unknown }).await.unwrap();
}

/// [`boundary_checks`] against `notarium signer` on `db`.
fn grpc_boundary_on(db: &SignerDb) {
    let tmp = tempfile::tempdir().unwrap();
    make_test_tls(tmp.path());
    let signer = SignerProcess::new(tmp.path(), db, Kind::Notarium, SIGNER_PASSPHRASE);
    runtime().block_on(boundary_checks(&signer, db));
}

#[test]
fn grpc_boundary_on_postgres() {
    grpc_boundary_on(&SignerDb::postgres(PgServer::shared()));
}

#[test]
fn grpc_boundary_on_mariadb() {
    grpc_boundary_on(&mariadb_signer_db(MariaDb::shared()));
}

/// Backends notary-signer has but whose keys cannot be taken over are
/// refused at start, naming what is supported.
#[test]
fn unsupported_backends_are_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_test_tls(dir);
    for (backend, db_url) in [("memory", ""), ("sqlite3", "/tmp/signer.db")] {
        let config = dir.join(format!("{backend}.json"));
        std::fs::write(
            &config,
            json!({
                "server": {"grpc_addr": format!("127.0.0.1:{}", free_port()),
                           "tls_cert_file": "server.crt", "tls_key_file": "server.key"},
                "storage": {"backend": backend, "db_url": db_url, "default_alias": "alpha"},
            })
            .to_string(),
        )
        .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_notarium"))
            .arg("signer")
            .arg("--config")
            .arg(&config)
            .env("NOTARY_SIGNER_ALPHA", SIGNER_PASSPHRASE)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{backend}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for word in [backend, "postgres", "mysql"] {
            assert!(stderr.contains(word), "{backend}: {stderr}");
        }
    }
}
