//! `notarium verify` against trust data made by the real notary CLI (several
//! signers, delegations with path prefixes, rotated targets and root keys),
//! served by notarium and by the Go notary-server: it must give the same
//! tag → digest answers as `notary lookup`, and refuse tampered, expired,
//! rolled-back, foreign and wrongly rotated trust data with the right exit
//! code and a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "support/dockercli.rs"]
mod dockercli;
#[path = "support/registry.rs"]
mod registry;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use common::{Curl, Notarium, NotaryClient, ReferenceServer};
use serde_json::Value;

const GUN: &str = "notarium.test/e2e/verify";

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs `notarium verify` with `args` (server, CA and trust dir given).
fn verify(server: &str, ca: &Path, trust_dir: &Path, args: &[&str]) -> Output {
    common::run(
        Command::new(env!("CARGO_BIN_EXE_notarium"))
            .arg("verify")
            .args([
                "-s",
                server,
                "--tlscacert",
                path_str(ca),
                "-d",
                path_str(trust_dir),
            ])
            .args(args),
    )
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn verified_json(output: &Output) -> Value {
    assert_eq!(code(output), 0, "{}", common::all_output(output));
    serde_json::from_str(common::stdout(output).trim()).unwrap()
}

fn assert_fails(output: &Output, expected: i32, message: &str) {
    let text = common::all_output(output);
    assert_eq!(code(output), expected, "{text}");
    assert!(text.contains(message), "expected {message:?} in: {text}");
}

/// `notary lookup`: (sha256:<hex>, size).
fn lookup(client: &NotaryClient, tag: &str) -> (String, i64) {
    let out = client.ok(&["lookup", GUN, tag]);
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{out}");
    assert_eq!(fields[0], tag);
    (fields[1].to_string(), fields[2].parse().unwrap())
}

/// Builds the repository with the notary CLI: targets, two delegations
/// (targets/releases for everything, targets/alice for `alice-*`), a
/// rotated targets key. Returns the tags signed.
fn build_repository(owner: &NotaryClient, dir: &Path) -> Vec<&'static str> {
    let f_v1 = write_file(dir, "v1", b"release one\n");
    let f_v2 = write_file(dir, "v2", b"release two\n");
    let f_alice = write_file(dir, "alice", b"alice's build\n");
    let (rel_key, rel_cert) = common::make_delegation_key(dir, "releases");
    let (alice_key, alice_cert) = common::make_delegation_key(dir, "alice");

    owner.ok(&["init", GUN, "-p"]);
    owner.ok(&["key", "rotate", GUN, "snapshot", "-r"]);
    owner.ok(&["add", GUN, "v1", path_str(&f_v1), "-p"]);
    owner.ok(&[
        "key",
        "import",
        path_str(&rel_key),
        "--role",
        "targets/releases",
    ]);
    owner.ok(&[
        "key",
        "import",
        path_str(&alice_key),
        "--role",
        "targets/alice",
    ]);
    owner.ok(&[
        "delegation",
        "add",
        "-p",
        GUN,
        "targets/releases",
        path_str(&rel_cert),
        "--all-paths",
    ]);
    owner.ok(&[
        "delegation",
        "add",
        "-p",
        GUN,
        "targets/alice",
        path_str(&alice_cert),
        "--paths",
        "alice-",
    ]);
    owner.ok(&[
        "add",
        GUN,
        "v1",
        path_str(&f_v1),
        "--roles",
        "targets/releases",
        "-p",
    ]);
    owner.ok(&[
        "add",
        GUN,
        "v2",
        path_str(&f_v2),
        "--roles",
        "targets/releases",
        "-p",
    ]);
    owner.ok(&[
        "add",
        GUN,
        "alice-1",
        path_str(&f_alice),
        "--roles",
        "targets/alice",
        "-p",
    ]);
    // A rotated targets key: targets is re-signed by the new key.
    owner.ok(&["key", "rotate", GUN, "targets"]);
    vec!["v1", "v2", "alice-1"]
}

/// Every tag: `notarium verify` (fresh cache, then warm) answers what
/// `notary lookup` answers.
fn assert_same_as_lookup(
    server: &str,
    ca: &Path,
    reader: &NotaryClient,
    tags: &[&str],
    trust: &Path,
) {
    for tag in tags {
        let (digest, size) = lookup(reader, tag);
        let reference = format!("{GUN}:{tag}");
        for _ in 0..2 {
            let json = verified_json(&verify(server, ca, trust, &[&reference, "-o", "json"]));
            assert_eq!(json["gun"], GUN);
            assert_eq!(json["tag"], *tag);
            assert_eq!(json["digest"], digest.as_str(), "{tag}");
            assert_eq!(json["size"], size, "{tag}");
            for role in ["root", "targets", "snapshot", "timestamp"] {
                assert!(json["expires"][role].is_string(), "{json}");
            }
        }
    }
}

fn signed_by(json: &Value) -> Vec<String> {
    json["signed_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The whole scenario against one server.
fn scenario(server: &str, ca: &Path, dir: &Path) {
    let owner = NotaryClient::new(dir.join("owner"), server, ca);
    let tags = build_repository(&owner, dir);
    let trust = dir.join("verify-trust");
    let reader = NotaryClient::new(dir.join("reader"), server, ca);
    assert_same_as_lookup(server, ca, &reader, &tags, &trust);

    // Who signed what.
    let v1 = verified_json(&verify(
        server,
        ca,
        &trust,
        &[&format!("{GUN}:v1"), "-o", "json"],
    ));
    assert_eq!(signed_by(&v1), ["targets", "targets/releases"]);
    let alice = verified_json(&verify(
        server,
        ca,
        &trust,
        &[&format!("{GUN}:alice-1"), "-o", "json"],
    ));
    assert_eq!(signed_by(&alice), ["targets/alice"]);
    assert!(alice["expires"]["targets/alice"].is_string(), "{alice}");

    // Human output: one line.
    let human = verify(server, ca, &trust, &[&format!("{GUN}:v2")]);
    assert_eq!(code(&human), 0, "{}", common::all_output(&human));
    let line = common::stdout(&human);
    assert_eq!(line.trim().lines().count(), 1, "{line}");
    assert!(line.contains("signed by targets/releases"), "{line}");

    // Policy.
    let alice_ref = format!("{GUN}:alice-1");
    assert_fails(
        &verify(
            server,
            ca,
            &trust,
            &[&alice_ref, "--require-role", "targets/releases"],
        ),
        1,
        "0 of the required roles [targets/releases]",
    );
    let v1_ref = format!("{GUN}:v1");
    let any_one = [
        v1_ref.as_str(),
        "--require-role",
        "targets/alice",
        "--require-role",
        "targets/releases",
        "--require-count",
        "1",
    ];
    assert_eq!(code(&verify(server, ca, &trust, &any_one)), 0);
    assert_fails(
        &verify(server, ca, &trust, &any_one[..5]),
        1,
        "1 of the required roles",
    );

    // Admission: --digest, and a reference with a digest.
    let v1_digest = v1["digest"].as_str().unwrap();
    assert_eq!(
        code(&verify(
            server,
            ca,
            &trust,
            &[&v1_ref, "--digest", v1_digest]
        )),
        0
    );
    let other = format!("sha256:{}", "0".repeat(64));
    assert_fails(
        &verify(server, ca, &trust, &[&v1_ref, "--digest", &other]),
        1,
        &format!("is signed as {v1_digest}, not {other}"),
    );
    let by_digest = verified_json(&verify(
        server,
        ca,
        &trust,
        &[&format!("{GUN}@{v1_digest}"), "-o", "json"],
    ));
    assert_eq!(by_digest["tag"], "v1");

    // Not signed, usage, unreachable.
    assert_fails(
        &verify(server, ca, &trust, &[&format!("{GUN}:nope")]),
        3,
        "tag nope is not signed in",
    );
    assert_fails(
        &verify(server, ca, &trust, &["notarium.test/e2e/absent:v1"]),
        3,
        "does not have trust data for notarium.test/e2e/absent",
    );
    assert_fails(
        &verify(server, ca, &trust, &["Bad/Name:v1"]),
        2,
        "invalid repository name",
    );
    assert_fails(
        &verify(server, ca, &trust, &[&v1_ref, "--digest", "sha256:12"]),
        2,
        "--digest",
    );
    let closed = format!("https://127.0.0.1:{}", common::free_port());
    assert_fails(&verify(&closed, ca, &trust, &[&v1_ref]), 4, "cannot reach");

    // Expired timestamp (pinned clock: timestamps last 14 days).
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let later = notarium::tuf::encoding::format_time(later);
    assert_fails(
        &verify(
            server,
            ca,
            &dir.join("fresh-expired"),
            &[&v1_ref, "--now", &later],
        ),
        1,
        "timestamp of notarium.test/e2e/verify failed verification: timestamp expired at",
    );

    // Trust pins: the root key ID as notary lists it, and a wrong one.
    let root_id = root_key_id(&owner);
    assert_eq!(
        code(&verify(
            server,
            ca,
            &dir.join("pinned"),
            &[&v1_ref, "--root-key-id", &root_id]
        )),
        0
    );
    assert_fails(
        &verify(
            server,
            ca,
            &dir.join("pinned-wrong"),
            &[&v1_ref, "--root-key-id", &"ab".repeat(32)],
        ),
        1,
        "matches the trust pin",
    );

    // Root rotation, followed from the cached root through <v>.root.json.
    let before = cached_root_version(&trust);
    // Twice: the client must fetch the intermediate root by version.
    rotate_root(&owner);
    rotate_root(&owner);
    assert_same_as_lookup(
        server,
        ca,
        &NotaryClient::new(dir.join("reader2"), server, ca),
        &tags,
        &trust,
    );
    assert_eq!(cached_root_version(&trust), before + 2);
}

/// `notary key rotate <gun> root`, confirmed.
fn rotate_root(client: &NotaryClient) {
    let out = common::run_with_stdin(
        &mut client.command(&["key", "rotate", GUN, "root"]),
        "yes\n",
    );
    assert!(out.status.success(), "{}", common::all_output(&out));
}

fn root_key_id(owner: &NotaryClient) -> String {
    let out = owner.ok(&["key", "list"]);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("root"))
        .unwrap();
    line.split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no key ID in {line:?}"))
        .to_string()
}

fn cached_root_version(trust: &Path) -> i64 {
    let state: Value = serde_json::from_slice(
        &std::fs::read(trust.join("tuf").join(GUN).join("state.json")).unwrap(),
    )
    .unwrap();
    state["root"].as_i64().unwrap()
}

#[test]
fn notarium_served_trust_data_verifies_like_notary_lookup() {
    let work = tempfile::tempdir().unwrap();
    let notarium = Notarium::start(&work.path().join("server"), serde_json::json!({}));
    scenario(&notarium.url, &notarium.ca, work.path());
}

#[test]
fn reference_server_trust_data_verifies_like_notary_lookup() {
    let work = tempfile::tempdir().unwrap();
    let server_dir = work.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let reference = ReferenceServer::start(&server_dir);
    scenario(&reference.url, &reference.ca, work.path());
}

/// A plain-HTTP server in the test that answers trust data requests with
/// whatever `answer` gives for the path (`None` → 404).
type Answer = Arc<dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync>;

struct FakeServer {
    url: String,
}

impl FakeServer {
    fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = match answer(&path) {
                    Some(body) => ("200 OK", body),
                    None => ("404 Not Found", b"{}".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        Self { url }
    }
}

/// Answers by asking `curl` (the real server), rewriting the GUN in the
/// path from `from` to `to`.
fn proxy(curl: Curl, from: &'static str, to: &'static str) -> impl Fn(&str) -> Option<Vec<u8>> {
    move |path: &str| {
        let (status, body) = curl.get(&path.replacen(from, to, 1));
        (status == 200).then_some(body)
    }
}

fn fake_verify(fake: &FakeServer, trust: &Path, args: &[&str]) -> Output {
    common::run(
        Command::new(env!("CARGO_BIN_EXE_notarium"))
            .arg("verify")
            .args(["-s", &fake.url, "-d", path_str(trust)])
            .args(args),
    )
}

#[test]
fn tampered_foreign_rolled_back_and_unsigned_rotations_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let notarium = Notarium::start(&dir.join("server"), serde_json::json!({}));
    let owner = notarium.notary(dir.join("owner"));
    let f_v1 = write_file(dir, "v1", b"release one\n");
    owner.ok(&["init", GUN, "-p"]);
    owner.ok(&["add", GUN, "v1", path_str(&f_v1), "-p"]);
    let other_gun = "notarium.test/e2e/other";
    owner.ok(&["init", other_gun, "-p"]);
    owner.ok(&["add", other_gun, "v1", path_str(&f_v1), "-p"]);
    let v1_ref = format!("{GUN}:v1");

    // Honest proxy: verifies; record every answer for a replay later.
    let recorded: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let upstream = proxy(notarium.curl(), GUN, GUN);
    let log = recorded.clone();
    let honest = FakeServer::start(Arc::new(move |path: &str| {
        let body = upstream(path);
        if let Some(body) = &body {
            log.lock().unwrap().insert(path.to_string(), body.clone());
        }
        body
    }));
    let trust = dir.join("trust");
    let honest_json = verified_json(&fake_verify(&honest, &trust, &[&v1_ref, "-o", "json"]));

    // A tampered targets file: the bytes change, the snapshot's hash does not.
    let upstream = proxy(notarium.curl(), GUN, GUN);
    let tampering = FakeServer::start(Arc::new(move |path: &str| {
        let body = upstream(path)?;
        if path.contains("/targets.") {
            let text = String::from_utf8(body).unwrap();
            return Some(text.replacen("\"v1\"", "\"v9\"", 1).into_bytes());
        }
        Some(body)
    }));
    assert_fails(
        &fake_verify(&tampering, &dir.join("trust-tampered"), &[&v1_ref]),
        1,
        "targets of notarium.test/e2e/verify failed verification: sha256 checksum for targets did not match",
    );

    // Another GUN's data: refused on first use (certificate CN) and with the
    // real root cached.
    let foreign = FakeServer::start(Arc::new(proxy(notarium.curl(), GUN, other_gun)));
    assert_fails(
        &fake_verify(&foreign, &dir.join("trust-foreign"), &[&v1_ref]),
        1,
        "certificate for \"notarium.test/e2e/other\", not for \"notarium.test/e2e/verify\"",
    );
    assert_fails(
        &fake_verify(&foreign, &trust, &[&v1_ref]),
        1,
        "root version 1 differs from the one verified before",
    );

    // Rollback: publish more, verify (cache the newer versions), then
    // replay the recorded older answers.
    let f_v2 = write_file(dir, "v2", b"release two\n");
    owner.ok(&["add", GUN, "v2", path_str(&f_v2), "-p"]);
    let newer = verified_json(&verify(
        &notarium.url,
        &notarium.ca,
        &trust,
        &[&format!("{GUN}:v2"), "-o", "json"],
    ));
    assert_eq!(newer["tag"], "v2");
    let old = recorded.lock().unwrap().clone();
    let replay = FakeServer::start(Arc::new(move |path: &str| old.get(path).cloned()));
    assert_fails(
        &fake_verify(&replay, &trust, &[&v1_ref]),
        1,
        "rollback refused: the server offers timestamp version",
    );
    // The same old answers verify for a client that never saw newer ones.
    let fresh = verified_json(&fake_verify(
        &replay,
        &dir.join("trust-fresh"),
        &[&v1_ref, "-o", "json"],
    ));
    assert_eq!(fresh["digest"], honest_json["digest"]);

    // A root rotation not signed by the old root: the same GUN created
    // independently on the Go notary-server and rotated there; a client
    // holding notarium's root must refuse it.
    let ref_dir = dir.join("reference");
    std::fs::create_dir_all(&ref_dir).unwrap();
    let reference = ReferenceServer::start(&ref_dir);
    let impostor = NotaryClient::new(dir.join("impostor"), &reference.url, &reference.ca);
    impostor.ok(&["init", GUN, "-p"]);
    impostor.ok(&["add", GUN, "v1", path_str(&f_v2), "-p"]);
    rotate_root(&impostor);
    assert_fails(
        &verify(&reference.url, &reference.ca, &trust, &[&v1_ref]),
        1,
        "root of notarium.test/e2e/verify version 2 is not signed by a threshold of the keys of version 1",
    );
    // ...while a client that pins nothing and has no cache takes it (TOFU).
    assert_eq!(
        code(&verify(
            &reference.url,
            &reference.ca,
            &dir.join("trust-tofu"),
            &[&v1_ref]
        )),
        0
    );
}

/// openssl with `args`, in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    common::run_ok(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA (`<name>-ca.crt`) and, issued by it, an ECDSA root certificate for
/// `gun` (`<name>-root.key`, `<name>-root.crt`).
fn make_ca_issued_root(dir: &Path, name: &str, gun: &str) -> (PathBuf, PathBuf, PathBuf) {
    common::require("openssl", "openssl");
    let (ca_key, ca_crt) = (format!("{name}-ca.key"), format!("{name}-ca.crt"));
    let (key, csr, crt) = (
        format!("{name}-root.key"),
        format!("{name}-root.csr"),
        format!("{name}-root.crt"),
    );
    common::make_p256_key(dir, &ca_key);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            &ca_key,
            "-subj",
            &format!("/CN={name} CA"),
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-out",
            &ca_crt,
        ],
    );
    common::make_p256_key(dir, &key);
    let subject = format!("/CN={}", gun.replace('/', "\\/"));
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
    );
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=codeSigning\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
    // notary imports only encrypted root keys (PKCS#8, its passphrase).
    let encrypted = format!("{name}-root.p8");
    let pass = format!("pass:{}", common::PASSPHRASE);
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-v2prf",
            "hmacWithSHA1",
            "-in",
            &key,
            "-passout",
            &pass,
            "-out",
            &encrypted,
        ],
    );
    (dir.join(ca_crt), dir.join(encrypted), dir.join(crt))
}

#[test]
fn certificate_and_ca_pins() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let notarium = Notarium::start(&dir.join("server"), serde_json::json!({}));
    let gun = "notarium.test/e2e/ca";
    let (ca, root_key, root_cert) = make_ca_issued_root(dir, "good", gun);
    let (other_ca, _, other_cert) = make_ca_issued_root(dir, "other", gun);
    let owner = notarium.notary(dir.join("owner"));
    let f_v1 = write_file(dir, "v1", b"release one\n");
    owner.ok(&[
        "init",
        gun,
        "--rootkey",
        path_str(&root_key),
        "--rootcert",
        path_str(&root_cert),
        "-p",
    ]);
    owner.ok(&["add", gun, "v1", path_str(&f_v1), "-p"]);
    let v1 = format!("{gun}:v1");
    let run = |trust: &str, pin: &[&str]| {
        let args: Vec<&str> = [&[v1.as_str()][..], pin].concat();
        verify(&notarium.url, &notarium.ca, &dir.join(trust), &args)
    };
    assert_eq!(code(&run("t1", &["--ca", path_str(&ca)])), 0);
    assert_eq!(code(&run("t2", &["--root-cert", path_str(&root_cert)])), 0);
    assert_fails(
        &run("t3", &["--ca", path_str(&other_ca)]),
        1,
        "matches the trust pin",
    );
    assert_fails(
        &run("t4", &["--root-cert", path_str(&other_cert)]),
        1,
        "matches the trust pin",
    );
    assert_fails(
        &run(
            "t5",
            &["--ca", path_str(&ca), "--root-cert", path_str(&root_cert)],
        ),
        2,
        "give one of --root-key-id, --root-cert and --ca",
    );
}

/// A content-trust `docker push` signs the tag; `notarium verify` names the
/// digest and size the daemon pushed, the digest `docker trust inspect`
/// shows, and a content-trust `docker pull` resolves to.
#[test]
fn docker_signed_push_verifies_like_docker_trust_inspect_and_pull() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let notarium = Notarium::start(&dir.join("notarium"), serde_json::json!({}));
    let registry = registry::Registry::start(&dir.join("registry"));
    let docker = dockercli::DockerCli::new(&dir.join("docker"), &notarium);
    let gun = format!("{}/team/verify", registry.host());
    let reference = format!("{gun}:1.0");
    docker.make_image(&reference, "verify image");
    let out = docker.ok_trusted(&["push", &reference]);
    let line = out
        .lines()
        .find(|l| l.starts_with("1.0: digest: sha256:"))
        .unwrap_or_else(|| panic!("{out}"));
    let (digest, size) = line["1.0: digest: ".len()..].split_once(" size: ").unwrap();

    let json = verified_json(&verify(
        &notarium.url,
        &notarium.ca,
        &dir.join("trust"),
        &[&reference, "-o", "json"],
    ));
    assert_eq!(json["gun"], gun.as_str());
    assert_eq!(json["digest"], digest);
    assert_eq!(json["size"], size.parse::<i64>().unwrap());
    assert_eq!(signed_by(&json), ["targets"]);

    let inspected: Value =
        serde_json::from_str(&docker.ok(&["trust", "inspect", &reference])).unwrap();
    assert_eq!(
        inspected[0]["SignedTags"][0]["Digest"],
        digest.trim_start_matches("sha256:")
    );

    // A verified pull (image removed locally first) resolves to it too.
    docker.run(&["rmi", &reference]);
    let pulled = docker.ok_trusted(&["pull", &reference]);
    assert!(
        pulled.starts_with(&format!("Pull (1 of 1): {reference}@{digest}")),
        "{pulled}"
    );
    // The digest pins an admission check.
    assert_eq!(
        code(&verify(
            &notarium.url,
            &notarium.ca,
            &dir.join("trust"),
            &[&format!("{gun}@{digest}")],
        )),
        0
    );
}
