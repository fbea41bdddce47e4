#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Rejections and concurrent publishes against a real `notarium serve`,
//! driven by the real notary 0.7 client and curl.
//!
//! Every refusal must be a 400 with one error entry of the expected code, at
//! most 1 KiB (clients read no more), with a `detail` the notary client can
//! print and a message that names what was wrong. After each refusal a fresh
//! client (new trust directory) still sees the previous good state, and the
//! stored files are byte-for-byte what they were.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Curl, Notarium, NotaryClient};
use notarium::tuf::encoding::format_time;
use notarium::tuf::envelope::write_envelope;
use notarium::tuf::sign::sign_metadata;
use notarium::tuf::{
    FileMeta, KeyAlgorithm, KeyType, PublicKey, Root, SignedFile, SigningKey, canonical, pem,
};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

/// Notary's `MaxErrorResponseSize`: clients read at most this much of an
/// error body.
const MAX_ERROR_BODY: usize = 1024;

fn three_years() -> String {
    format_time(OffsetDateTime::now_utc() + Duration::days(3 * 365))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn version_of(bytes: &[u8]) -> i64 {
    SignedFile::parse(bytes).unwrap().common().unwrap().version
}

/// Target name → signing role, from `notary list` output.
fn listed(listing: &str) -> BTreeMap<String, String> {
    listing
        .lines()
        .filter(|line| {
            !line.trim().is_empty()
                && !line.starts_with("NAME")
                && !line.starts_with("----")
                && !line.starts_with("No targets")
        })
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words[0].to_string(), words[words.len() - 1].to_string())
        })
        .collect()
}

/// Checks a refusal: HTTP 400, exactly one error with `code`, a body the
/// client reads whole. Returns the error entry.
fn refused(status: u16, body: &[u8], code: &str) -> Value {
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, 400, "expected 400 {code}, got {status}: {text}");
    assert!(
        body.len() <= MAX_ERROR_BODY,
        "error body is {} bytes, clients read only {MAX_ERROR_BODY}: {text}",
        body.len()
    );
    let parsed: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text}"));
    let errors = parsed["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {text}"));
    assert_eq!(errors.len(), 1, "clients need exactly one error: {text}");
    assert_eq!(errors[0]["code"], code, "{text}");
    errors[0].clone()
}

/// The detail the notary client parses (`Name`, `Error.Msg`); returns the
/// message after checking it names every word of `names`.
fn detail(error: &Value, name: &str, names: &[&str]) -> String {
    assert_eq!(error["detail"]["Name"], name, "{error}");
    let message = error["detail"]["Error"]["Msg"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail.Error.Msg: {error}"))
        .to_string();
    for word in names {
        assert!(
            message.contains(word),
            "message does not mention {word:?}: {message}"
        );
    }
    eprintln!(
        "observed server message ({}): {name}: {message}",
        error["code"]
    );
    message
}

/// The `* fatal: …` line a failed notary command printed.
fn client_fatal(output: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the client succeeded: {text}");
    let line = text
        .lines()
        .find(|line| line.starts_with("* fatal: "))
        .unwrap_or_else(|| panic!("no `* fatal:` line: {text}"))
        .to_string();
    eprintln!("observed client message: {line}");
    line
}

/// Private key PEM as the notary client's file keystore reads it.
fn client_key_pem(key: &SigningKey, gun: &str, role: &str) -> String {
    pem::encode(
        "PRIVATE KEY",
        &[("gun", gun), ("role", role)],
        &key.to_pkcs8().unwrap(),
    )
}

/// What clients see of a repository, to compare before and after a refusal.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    targets: BTreeMap<String, String>,
    files: BTreeMap<String, Vec<u8>>,
}

/// One notarium, one owner client, one GUN, all in a private tempdir.
struct Repo {
    work: tempfile::TempDir,
    notarium: Notarium,
    curl: Curl,
    owner: NotaryClient,
    gun: String,
    fresh: Cell<u32>,
}

impl Repo {
    /// Starts notarium (with `extra` config) and initialises `gun` with one
    /// published target, `hello`.
    fn start(gun: &str, extra: Value) -> Self {
        let work = tempfile::tempdir().unwrap();
        let notarium = Notarium::start(&work.path().join("server"), extra);
        let curl = notarium.curl();
        let owner = notarium.notary(work.path().join("owner"));
        let repo = Self {
            curl,
            owner,
            gun: gun.to_string(),
            fresh: Cell::new(0),
            notarium,
            work,
        };
        repo.owner.ok(&["init", gun, "-p"]);
        repo.add_and_publish(&repo.owner, "hello", b"hello\n");
        repo
    }

    fn dir(&self) -> &Path {
        self.work.path()
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        write(self.dir(), name, bytes)
    }

    fn add_and_publish(&self, client: &NotaryClient, target: &str, content: &[u8]) {
        let path = self.file(&format!("content-{}", target.replace('/', "_")), content);
        client.ok(&["add", &self.gun, target, path.to_str().unwrap()]);
        client.ok(&["publish", &self.gun]);
    }

    fn tuf_path(&self, file: &str) -> String {
        format!("/v2/{}/_trust/tuf/{file}", self.gun)
    }

    /// GET of a current role, which must exist.
    fn get(&self, role: &str) -> Vec<u8> {
        let (status, body) = self.curl.get(&self.tuf_path(&format!("{role}.json")));
        assert_eq!(status, 200, "{role}: {}", String::from_utf8_lossy(&body));
        body
    }

    fn post(&self, parts: &[(&str, &Path)]) -> (u16, Vec<u8>) {
        self.curl.publish(&self.gun, parts)
    }

    /// POSTs a raw body with the given content type.
    fn post_raw(&self, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let path = self.file("raw-body", body);
        let data = format!("@{}", path.display());
        self.curl.request(
            &[
                "-X",
                "POST",
                "-H",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
                &data,
            ],
            &self.tuf_path(""),
        )
    }

    /// A client with a brand-new trust directory (trust on first use).
    fn fresh_client(&self) -> NotaryClient {
        let n = self.fresh.get() + 1;
        self.fresh.set(n);
        self.notarium.notary(self.dir().join(format!("fresh-{n}")))
    }

    fn fresh_listing(&self) -> BTreeMap<String, String> {
        listed(&self.fresh_client().ok(&["list", &self.gun]))
    }

    fn seen(&self, roles: &[&str]) -> Seen {
        Seen {
            targets: self.fresh_listing(),
            files: roles
                .iter()
                .map(|role| (role.to_string(), self.get(role)))
                .collect(),
        }
    }

    /// A fresh client and curl still see exactly `before`.
    fn assert_unchanged(&self, before: &Seen) {
        let roles: Vec<&str> = before.files.keys().map(String::as_str).collect();
        let now = self.seen(&roles);
        assert_eq!(
            now.targets, before.targets,
            "a refused upload changed what clients list"
        );
        for (role, bytes) in &before.files {
            assert!(
                now.files[role] == *bytes,
                "a refused upload changed {role}.json:\nbefore {}\nafter  {}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&now.files[role])
            );
        }
    }

    /// The server is healthy and never answered 500.
    fn assert_healthy(&self) {
        let (status, body) = self.curl.get("/_notary_server/health");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let log = self.notarium.log();
        assert!(
            !log.contains("status=500"),
            "the server answered 500:\n{log}"
        );
        assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    }

    /// The owner's private key file for `key_id`.
    fn private_key_path(&self, client: &NotaryClient, key_id: &str) -> PathBuf {
        client
            .trust_dir
            .join("private")
            .join(format!("{key_id}.key"))
    }
}

/// The current root's key ID for `role`.
fn role_key_id(root_bytes: &[u8], role: &str) -> String {
    let root: Root = SignedFile::parse(root_bytes).unwrap().body("root").unwrap();
    root.roles[role].keyids[0].clone()
}

/// Signs `signed` with `key` but files the signature under `claimed_keyid`,
/// as a client holding the wrong private key for a key ID would.
fn sign_as(signed: &Value, key: &SigningKey, claimed_keyid: &str) -> Vec<u8> {
    let message = canonical::to_canonical(signed).unwrap();
    let mut signature = key.sign(&message).unwrap();
    signature.keyid = claimed_keyid.to_string();
    write_envelope(&message, &[signature])
}

fn delegation_file(version: i64, targets: &[(&str, &str)]) -> Value {
    let targets: serde_json::Map<String, Value> = targets
        .iter()
        .map(|(name, content)| {
            (
                name.to_string(),
                serde_json::to_value(FileMeta::for_bytes(content.as_bytes())).unwrap(),
            )
        })
        .collect();
    json!({
        "_type": "Targets",
        "delegations": {"keys": {}, "roles": []},
        "expires": three_years(),
        "targets": targets,
        "version": version,
    })
}

/// Adds delegation `targets/releases` with a key of ours and the server
/// signing snapshots (so delegates can publish alone, as in real setups).
fn with_releases_delegation(repo: &Repo, paths: &[&str]) -> SigningKey {
    repo.owner
        .ok(&["key", "rotate", &repo.gun, "snapshot", "-r"]);
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let public = pem::encode("PUBLIC KEY", &[], key.public_key().public_bytes());
    let public = repo.file("releases.pub", public.as_bytes());
    let mut args = vec![
        "delegation",
        "add",
        &repo.gun,
        "targets/releases",
        public.to_str().unwrap(),
    ];
    if paths.is_empty() {
        args.push("--all-paths");
    }
    for path in paths {
        args.extend(["--paths", path]);
    }
    args.push("-p");
    repo.owner.ok(&args);
    key
}

// 1 ---------------------------------------------------------------------

#[test]
fn garbage_json_is_malformed_json() {
    let repo = Repo::start("notarium.test/rejections/garbage", json!({}));
    let before = repo.seen(&["root", "targets", "snapshot", "timestamp"]);

    let garbage = repo.file("garbage.json", b"{not json");
    let (status, body) = repo.post(&[("targets", &garbage)]);
    let error = refused(status, &body, "MALFORMED_JSON");
    detail(
        &error,
        "ErrValidation",
        &["targets", "not valid metadata JSON"],
    );

    // Valid JSON that is not signed metadata is refused the same way.
    let not_metadata = repo.file("not-metadata.json", br#"{"signed":{"_type":"Targets"}}"#);
    let (status, body) = repo.post(&[("targets", &not_metadata)]);
    let error = refused(status, &body, "MALFORMED_JSON");
    detail(&error, "ErrValidation", &["targets"]);

    repo.assert_unchanged(&before);
    repo.assert_healthy();
}

// 2 ---------------------------------------------------------------------

#[test]
fn targets_signed_by_a_foreign_key_are_bad_targets() {
    let repo = Repo::start("notarium.test/rejections/foreign-key", json!({}));
    let gun = repo.gun.clone();
    let before = repo.seen(&["root", "targets", "snapshot", "timestamp"]);
    let root = repo.get("root");
    let targets_key_id = role_key_id(&root, "targets");

    let mut targets: Value = SignedFile::parse(&before.files["targets"])
        .unwrap()
        .signed_value()
        .unwrap();
    let version = targets["version"].as_i64().unwrap();
    targets["version"] = json!(version + 1);
    targets["targets"]["forged"] = serde_json::to_value(FileMeta::for_bytes(b"forged\n")).unwrap();
    let wrong = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();

    // Signed by a key the root does not list for targets.
    let upload = repo.file("foreign.json", &sign_metadata(&targets, &[&wrong]).unwrap());
    let (status, body) = repo.post(&[("targets", &upload)]);
    let error = refused(status, &body, "INVALID_UPDATE");
    detail(
        &error,
        "ErrBadTargets",
        &["valid signatures did not meet threshold for targets"],
    );

    // Signed by the wrong key but filed under the real targets key ID: the
    // message names the key whose signature failed.
    let upload = repo.file(
        "mislabelled.json",
        &sign_as(&targets, &wrong, &targets_key_id),
    );
    let (status, body) = repo.post(&[("targets", &upload)]);
    let error = refused(status, &body, "INVALID_UPDATE");
    detail(
        &error,
        "ErrBadTargets",
        &[
            "valid signatures did not meet threshold for targets",
            &targets_key_id[..7],
        ],
    );
    repo.assert_unchanged(&before);

    // The real client holding a wrong private key under the targets key ID.
    let key_file = repo.private_key_path(&repo.owner, &targets_key_id);
    let original = fs::read(&key_file).unwrap();
    fs::write(&key_file, client_key_pem(&wrong, &gun, "targets")).unwrap();
    let content = repo.file("staged", b"staged\n");
    repo.owner
        .ok(&["add", &gun, "staged", content.to_str().unwrap()]);
    let line = client_fatal(&repo.owner.run(&["publish", &gun]));
    assert!(
        line.starts_with("* fatal: The targets metadata is invalid: "),
        "{line}"
    );
    repo.assert_unchanged(&before);

    // With its own key back, the same client publishes what it had staged.
    fs::write(&key_file, original).unwrap();
    repo.owner.ok(&["publish", &gun]);
    let after = repo.fresh_listing();
    assert!(
        after.contains_key("staged") && after.contains_key("hello"),
        "{after:?}"
    );
    assert!(!after.contains_key("forged"), "{after:?}");
    repo.assert_healthy();
}

// 3 ---------------------------------------------------------------------

#[test]
fn rollback_and_replay_are_version_errors() {
    let repo = Repo::start("notarium.test/rejections/rollback", json!({}));
    let older = repo.get("targets");
    let older_version = version_of(&older);
    repo.add_and_publish(&repo.owner, "newer", b"newer\n");
    let before = repo.seen(&["root", "targets", "snapshot", "timestamp"]);
    let current_version = version_of(&before.files["targets"]);
    assert!(current_version > older_version);

    // An older, validly signed targets file.
    let saved = repo.file("older-targets.json", &older);
    let (status, body) = repo.post(&[("targets", &saved)]);
    let error = refused(status, &body, "VERSION");
    let message = detail(
        &error,
        "ErrValidation",
        &[&format!(
            "targets version {older_version} is not newer than version {current_version}"
        )],
    );
    assert!(message.contains("publish again"), "{message}");

    // The current files again, byte for byte: a publish that changes
    // nothing is accepted and writes nothing (no new versions, snapshot or
    // timestamp; checked below).
    let replay = repo.file("current-targets.json", &before.files["targets"]);
    let (status, body) = repo.post(&[("targets", &replay)]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let root = repo.file("current-root.json", &before.files["root"]);
    let (status, body) = repo.post(&[("root", &root)]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    repo.assert_unchanged(&before);
    let listing = repo.fresh_listing();
    assert!(
        listing.contains_key("newer") && listing.contains_key("hello"),
        "{listing:?}"
    );
    repo.assert_healthy();
}

// 4 ---------------------------------------------------------------------

/// A self-signed leaf certificate (CN = `cn`) for `key`, made by openssl the
/// way notary makes root certificates.
fn self_signed_certificate(dir: &Path, key: &SigningKey, cn: &str) -> Vec<u8> {
    common::require("openssl", "openssl");
    let key_pem = pem::encode("PRIVATE KEY", &[], &key.to_pkcs8().unwrap());
    write(dir, "new-root.key", key_pem.as_bytes());
    write(
        dir,
        "new-root.cnf",
        format!(
            "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = leaf\n\
             [dn]\nCN = {cn}\n\
             [leaf]\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\nextendedKeyUsage = codeSigning\n"
        )
        .as_bytes(),
    );
    common::run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-x509",
                "-config",
                "new-root.cnf",
                "-key",
                "new-root.key",
                "-sha256",
                "-days",
                "30",
                "-out",
                "new-root.crt",
            ])
            .current_dir(dir),
    );
    fs::read(dir.join("new-root.crt")).unwrap()
}

#[test]
fn roots_for_another_gun_or_not_signed_by_the_old_root_are_bad_root() {
    let repo = Repo::start("notarium.test/rejections/root-a", json!({}));
    let gun_b = "notarium.test/rejections/root-b";
    let before = repo.seen(&["root", "targets", "snapshot", "timestamp"]);
    let root_a = before.files["root"].clone();

    // A's root (certificate CN = A) as the first root of B.
    let upload = repo.file("root-of-a.json", &root_a);
    let (status, body) = repo.curl.publish(gun_b, &[("root", &upload)]);
    let error = refused(status, &body, "INVALID_UPDATE");
    detail(
        &error,
        "ErrBadRoot",
        &[
            "unable to retrieve valid leaf certificates",
            "does not match the repository name",
            &repo.gun,
            gun_b,
        ],
    );
    let (status, _) = repo.curl.get(&format!("/v2/{gun_b}/_trust/tuf/root.json"));
    assert_eq!(status, 404, "the refused root was stored for {gun_b}");

    // A rotation to a new root key (valid certificate for A) signed only by
    // the new key.
    let new_key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let certificate = self_signed_certificate(repo.dir(), &new_key, &repo.gun);
    let cert_key = PublicKey::new(KeyType::EcdsaX509, certificate);
    let mut signed = SignedFile::parse(&root_a).unwrap().signed_value().unwrap();
    let old_ids: Vec<String> = signed["roles"]["root"]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    let keys = signed["keys"].as_object_mut().unwrap();
    for id in &old_ids {
        keys.remove(id);
    }
    keys.insert(cert_key.id().to_string(), cert_key.to_json());
    signed["roles"]["root"]["keyids"] = json!([cert_key.id()]);
    let old_version = signed["version"].as_i64().unwrap();
    signed["version"] = json!(old_version + 1);
    let rotated = sign_as(&signed, &new_key, cert_key.id());
    let upload = repo.file("rotated-root.json", &rotated);
    let (status, body) = repo.post(&[("root", &upload)]);
    let error = refused(status, &body, "INVALID_UPDATE");
    detail(
        &error,
        "ErrBadRoot",
        &[
            "could not rotate trust to a new trusted root",
            &format!("root version {} must be signed", old_version + 1),
            &format!("of root version {old_version}"),
        ],
    );

    repo.assert_unchanged(&before);
    repo.assert_healthy();
}

// 5 ---------------------------------------------------------------------

#[test]
fn delegation_signed_by_a_key_its_parent_does_not_list_is_bad_targets() {
    let repo = Repo::start("notarium.test/rejections/delegation-key", json!({}));
    let k1 = with_releases_delegation(&repo, &[]);

    // The delegated key publishes.
    let good = sign_metadata(&delegation_file(1, &[("approved", "approved\n")]), &[&k1]).unwrap();
    let upload = repo.file("releases-1.json", &good);
    let (status, body) = repo.post(&[("targets/releases", &upload)]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let before = repo.seen(&[
        "root",
        "targets",
        "targets/releases",
        "snapshot",
        "timestamp",
    ]);
    assert_eq!(
        before.targets.get("approved").map(String::as_str),
        Some("targets/releases")
    );

    // Another key.
    let k2 = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let forged = delegation_file(2, &[("approved", "approved\n"), ("forged", "forged\n")]);
    let upload = repo.file("releases-k2.json", &sign_metadata(&forged, &[&k2]).unwrap());
    let (status, body) = repo.post(&[("targets/releases", &upload)]);
    let error = refused(status, &body, "INVALID_UPDATE");
    detail(
        &error,
        "ErrBadTargets",
        &["valid signatures did not meet threshold for targets/releases"],
    );

    // Another key posing as K1: the message names K1.
    let upload = repo.file(
        "releases-posing.json",
        &sign_as(&forged, &k2, k1.public_key().id()),
    );
    let (status, body) = repo.post(&[("targets/releases", &upload)]);
    let error = refused(status, &body, "INVALID_UPDATE");
    detail(
        &error,
        "ErrBadTargets",
        &[
            "valid signatures did not meet threshold for targets/releases",
            &k1.public_key().id()[..7],
        ],
    );

    // K1 signing a delegation targets does not declare.
    let other = sign_metadata(&delegation_file(1, &[("other", "other\n")]), &[&k1]).unwrap();
    let upload = repo.file("other.json", &other);
    let (status, body) = repo.post(&[("targets/other", &upload)]);
    let error = refused(status, &body, "INVALID_UPDATE");
    detail(
        &error,
        "ErrBadTargets",
        &["targets/other", "delegation does not exist"],
    );

    repo.assert_unchanged(&before);
    repo.assert_healthy();
}

#[test]
fn delegation_forged_through_the_client_is_refused_naming_the_role() {
    let repo = Repo::start("notarium.test/rejections/delegation-client", json!({}));
    let gun = repo.gun.clone();
    let k1 = with_releases_delegation(&repo, &[]);
    let before = repo.seen(&["root", "targets", "snapshot", "timestamp"]);

    // The client holds K2 under K1's key ID, signs targets/releases with it
    // and uploads the result.
    let k2 = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    fs::write(
        repo.private_key_path(&repo.owner, k1.public_key().id()),
        client_key_pem(&k2, &gun, "targets/releases"),
    )
    .unwrap();
    let content = repo.file("forged", b"forged\n");
    repo.owner.ok(&[
        "add",
        &gun,
        "forged",
        content.to_str().unwrap(),
        "--roles",
        "targets/releases",
    ]);
    let line = client_fatal(&repo.owner.run(&["publish", &gun]));
    assert!(
        line.starts_with("* fatal: The targets metadata is invalid: "),
        "{line}"
    );
    assert!(
        line.contains("targets/releases"),
        "the client's message does not say which role was refused: {line}"
    );
    repo.assert_unchanged(&before);
    let (status, _) = repo.curl.get(&repo.tuf_path("targets/releases.json"));
    assert_eq!(status, 404);
    repo.assert_healthy();
}

// 6 ---------------------------------------------------------------------

#[test]
fn delegation_target_outside_its_paths_is_bad_targets() {
    let repo = Repo::start("notarium.test/rejections/delegation-paths", json!({}));
    let key = with_releases_delegation(&repo, &["qa/"]);

    let good = sign_metadata(&delegation_file(1, &[("qa/ok", "ok\n")]), &[&key]).unwrap();
    let upload = repo.file("releases-1.json", &good);
    let (status, body) = repo.post(&[("targets/releases", &upload)]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let before = repo.seen(&[
        "root",
        "targets",
        "targets/releases",
        "snapshot",
        "timestamp",
    ]);
    assert_eq!(
        before.targets.get("qa/ok").map(String::as_str),
        Some("targets/releases")
    );

    for (name, targets) in [
        ("outside", vec![("prod/x", "x\n")]),
        ("mixed", vec![("qa/ok", "ok\n"), ("prod/x", "x\n")]),
    ] {
        let file = sign_metadata(&delegation_file(2, &targets), &[&key]).unwrap();
        let upload = repo.file(&format!("releases-{name}.json"), &file);
        let (status, body) = repo.post(&[("targets/releases", &upload)]);
        let error = refused(status, &body, "INVALID_UPDATE");
        detail(
            &error,
            "ErrBadTargets",
            &["prod/x", "outside the paths", "targets/releases", "qa/"],
        );
    }

    repo.assert_unchanged(&before);
    repo.assert_healthy();
}

// 7 ---------------------------------------------------------------------

/// Stages `count` targets by writing the notary client's changelist
/// directly (one `notary add` per target would take minutes).
fn stage_many_targets(client: &NotaryClient, gun: &str, count: usize) {
    let b64 = notarium::tuf::encoding::base64_encode;
    let dir = client.trust_dir.join("tuf").join(gun).join("changelist");
    fs::create_dir_all(&dir).unwrap();
    for i in 0..count {
        let content = format!("bulk content {i}\n");
        let meta = json!({
            "length": content.len(),
            "hashes": {
                "sha256": b64(&notarium::tuf::sha256(content.as_bytes())),
                "sha512": b64(&notarium::tuf::sha512(content.as_bytes())),
            },
        });
        let change = json!({
            "action": "create",
            "role": "targets",
            "type": "target",
            "path": format!("bulk/target-{i:04}"),
            "data": b64(meta.to_string().as_bytes()),
        });
        fs::write(
            dir.join(format!(
                "{:020}_00000000-0000-4000-8000-{i:012}.change",
                1_700_000_000_000_000_000_u64 + i as u64
            )),
            change.to_string(),
        )
        .unwrap();
    }
}

/// A POST over HTTP/1.1 without `Expect: 100-continue`, like Go's HTTP
/// client; `Err` (curl's complaint) when no HTTP response arrived.
fn post_like_go(repo: &Repo, args: &[&str]) -> Result<(u16, Vec<u8>), String> {
    common::require("curl", "curl");
    let body = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("curl")
        .args(["-sS", "--http1.1", "-H", "Expect:", "--cacert"])
        .arg(&repo.curl.ca)
        .arg("-o")
        .arg(body.path())
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(format!("{}{}", repo.curl.base, repo.tuf_path("")))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    Ok((status, fs::read(body.path()).unwrap()))
}

#[test]
fn oversized_uploads_are_refused_and_the_server_stays_healthy() {
    let limit = 65_536;
    let repo = Repo::start(
        "notarium.test/rejections/oversized",
        json!({"server": {"max_body_bytes": limit}}),
    );
    let gun = repo.gun.clone();
    let before = repo.seen(&["root", "targets", "snapshot", "timestamp"]);
    let big = repo.file("big.json", &vec![b'A'; 200 * 1024]);
    let part = format!("files=@{};filename=targets", big.display());

    // As Go's notary and docker clients send it: HTTP/1.1, no `Expect:
    // 100-continue`, the whole body written whether or not the server has
    // answered. Every attempt must get the refusal (a server that answers
    // and closes with the upload unread makes the client fail with "broken
    // pipe" / "connection reset" instead; that is a race, hence the
    // repetitions). Then chunked, where the size is not known up front.
    // (HTTP/2 is left out: curl 7.88 drops an early HTTP/2 answer followed
    // by RST_STREAM(NO_ERROR), which RFC 9113 §8.1 allows the server.)
    let chunked: &[&str] = &["-H", "Transfer-Encoding: chunked"];
    for (attempt, extra) in (0..60).map(|i| (i, &[][..])).chain([(60, chunked)]) {
        let mut args = vec!["-F", part.as_str()];
        args.extend_from_slice(extra);
        let (status, body) = post_like_go(&repo, &args)
            .unwrap_or_else(|e| panic!("attempt {attempt}: no HTTP response: {e}"));
        let error = refused(status, &body, "MALFORMED_UPLOAD");
        let message = error["detail"]["Error"]["Msg"].as_str().unwrap_or_default();
        if attempt == 0 || attempt == 60 {
            detail(
                &error,
                "ErrValidation",
                &["more than the limit", "65536 bytes"],
            );
        } else {
            assert!(message.contains("65536 bytes"), "{message}");
        }
    }
    repo.assert_unchanged(&before);
    repo.assert_healthy();

    // The real client publishing a targets file of about 120 KB.
    stage_many_targets(&repo.owner, &gun, 600);
    let line = client_fatal(&repo.owner.run(&["publish", &gun]));
    assert!(
        line.starts_with("* fatal: An error occurred during validation: "),
        "{line}"
    );
    assert!(
        line.contains("more than the limit of 65536 bytes"),
        "{line}"
    );
    repo.assert_unchanged(&before);

    // The same with a 4 MB targets file (one target with large custom
    // data), repeatedly: the bigger the upload, the likelier a server that
    // closes without reading it leaves the client with "write: broken pipe".
    repo.owner.ok(&["reset", &gun, "--all"]);
    let custom = json!({"notes": "n".repeat(4 << 20)}).to_string();
    let custom = repo.file("custom.json", custom.as_bytes());
    let content = repo.file("large-content", b"large\n");
    repo.owner.ok(&[
        "add",
        &gun,
        "large",
        content.to_str().unwrap(),
        "--custom",
        custom.to_str().unwrap(),
    ]);
    for attempt in 0..20 {
        let output = repo.owner.command(&["publish", &gun]).output().unwrap();
        let line = client_fatal(&output);
        assert!(
            line.contains("more than the limit of 65536 bytes"),
            "attempt {attempt}: the client did not get the refusal: {line}"
        );
    }
    repo.assert_unchanged(&before);

    // Still serving and accepting normal publishes.
    repo.owner.ok(&["reset", &gun, "--all"]);
    repo.add_and_publish(&repo.owner, "small", b"small\n");
    let listing = repo.fresh_listing();
    assert!(
        listing.contains_key("small") && listing.contains_key("hello"),
        "{listing:?}"
    );
    assert!(
        !listing.keys().any(|name| name.starts_with("bulk/")),
        "{listing:?}"
    );
    repo.assert_healthy();
}

// 8 ---------------------------------------------------------------------

#[test]
fn malformed_requests_get_specific_codes() {
    let repo = Repo::start("notarium.test/rejections/malformed", json!({}));
    let before = repo.seen(&["root", "targets", "snapshot", "timestamp"]);
    let targets = repo.file("targets.json", &before.files["targets"]);

    // Not multipart.
    let (status, body) = repo.post_raw("application/json", &before.files["targets"]);
    let error = refused(status, &body, "MALFORMED_UPLOAD");
    detail(&error, "ErrValidation", &["multipart", "application/json"]);

    // Multipart that breaks off (Notary crashed the handler here, §11.6).
    let (status, body) = repo.post_raw("multipart/form-data; boundary=XyZ", b"--XyZ\r\ngarbage");
    let error = refused(status, &body, "MALFORMED_UPLOAD");
    detail(&error, "ErrValidation", &["multipart"]);

    // A part with an empty file name, and one with none at all.
    let mut empty_name =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"\"\r\n\
        Content-Type: application/octet-stream\r\n\r\n"
            .to_vec();
    empty_name.extend_from_slice(&before.files["targets"]);
    empty_name.extend_from_slice(b"\r\n--XyZ--\r\n");
    let (status, body) = repo.post_raw("multipart/form-data; boundary=XyZ", &empty_name);
    let error = refused(status, &body, "NO_FILENAME");
    detail(&error, "ErrValidation", &["file name"]);
    let (status, body) = repo.curl.request(
        &["-F", &format!("files=<{}", targets.display())],
        &repo.tuf_path(""),
    );
    let error = refused(status, &body, "NO_FILENAME");
    detail(&error, "ErrValidation", &["file name"]);

    // Role names that are not roles.
    for role in ["targets/../root", "releases", "targets/", "Targets"] {
        let (status, body) = repo.post(&[(role, &targets)]);
        let error = refused(status, &body, "INVALID_ROLE");
        detail(&error, "ErrValidation", &[role, "not a valid role"]);
    }

    // A new GUN without a root.
    let (status, body) = repo.curl.publish(
        "notarium.test/rejections/never-initialised",
        &[("targets", &targets)],
    );
    let error = refused(status, &body, "INVALID_UPDATE");
    detail(
        &error,
        "ErrValidation",
        &["no pre-existing root and no root provided in update"],
    );
    let (status, _) = repo
        .curl
        .get("/v2/notarium.test/rejections/never-initialised/_trust/tuf/targets.json");
    assert_eq!(status, 404);

    repo.assert_unchanged(&before);
    repo.assert_healthy();
}

// 9, 10 -----------------------------------------------------------------

/// Runs `notary publish` for both clients at the same time.
fn publish_together(a: &NotaryClient, b: &NotaryClient, gun: &str) -> (Output, Output) {
    let spawn = |client: &NotaryClient| {
        client
            .command(&["publish", gun])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn(a);
    let second = spawn(b);
    let outputs = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    for (name, output) in [("A", &outputs.0), ("B", &outputs.1)] {
        eprintln!(
            "publish by {name}: [exit {}]\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    outputs
}

#[test]
fn concurrent_publishes_never_lose_updates() {
    let repo = Repo::start("notarium.test/rejections/concurrent", json!({}));
    let gun = repo.gun.clone();
    let a = &repo.owner;
    // B starts from a copy of A's trust directory: same keys, same state.
    let b_dir = repo.dir().join("client-b");
    common::run_ok(Command::new("cp").arg("-a").arg(&a.trust_dir).arg(&b_dir));
    let b = repo.notarium.notary(b_dir);

    let mut expected = vec!["hello".to_string()];
    let mut contested = 0;
    for round in 1..=5 {
        for (client, name) in [
            (a, format!("from-a-{round}")),
            (&b, format!("from-b-{round}")),
        ] {
            let content = repo.file(&name, name.as_bytes());
            client.ok(&["add", &gun, &name, content.to_str().unwrap()]);
            expected.push(name);
        }
        let (out_a, out_b) = publish_together(a, &b, &gun);
        assert!(
            out_a.status.success() || out_b.status.success(),
            "round {round}: neither publish succeeded"
        );
        for (client, output) in [(a, &out_a), (&b, &out_b)] {
            if output.status.success() {
                continue;
            }
            contested += 1;
            let line = client_fatal(output);
            assert!(
                line.starts_with("* fatal: An error occurred during validation: "),
                "round {round}: {line}"
            );
            assert!(
                line.contains("is not newer than") || line.contains("repository changed"),
                "round {round}: {line}"
            );
            assert!(
                line.contains("publish again") || line.contains("retry"),
                "round {round}: the message does not say what to do: {line}"
            );
            // The client re-fetches, re-applies its changelist, succeeds.
            client.ok(&["publish", &gun]);
        }
        let listing = repo.fresh_listing();
        let names: Vec<&String> = listing.keys().collect();
        let mut wanted: Vec<&String> = expected.iter().collect();
        wanted.sort();
        assert_eq!(names, wanted, "round {round}: an update was lost");
        repo.assert_healthy();
    }
    eprintln!("{contested} of 5 rounds had a losing publisher");

    // Both clients agree with a fresh one.
    for client in [a, &b] {
        assert_eq!(listed(&client.ok(&["list", &gun])), repo.fresh_listing());
    }
    repo.assert_healthy();
}
