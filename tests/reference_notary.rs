#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Our signatures are accepted by the real Notary: the Go reference
//! notary-server validates what our code signed on upload, and a fresh real
//! notary client verifies it when listing.

mod common;

use std::fs;
use std::path::Path;

use common::{Curl, NotaryClient, ReferenceServer};
use notarium::tuf::encoding::format_time;
use notarium::tuf::pem;
use notarium::tuf::sign::sign_metadata;
use notarium::tuf::{FileMeta, KeyAlgorithm, PublicKey, Root, SignedFile, SigningKey};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

const GUN: &str = "notarium.test/interop";

fn three_years() -> String {
    format_time(OffsetDateTime::now_utc() + Duration::days(3 * 365))
}

/// Notary's own ed25519 private key PEM: 96 bytes public ‖ seed ‖ public.
fn notary_ed25519_pem(key: &SigningKey) -> String {
    let pkcs8 = key.to_pkcs8().unwrap();
    // PKCS#8 (RFC 8410): fixed 16-byte prefix, then the 32-byte seed.
    let seed = &pkcs8[16..48];
    let public = key.public_key().public_bytes();
    let mut raw = public.to_vec();
    raw.extend_from_slice(seed);
    raw.extend_from_slice(public);
    pem::encode("ED25519 PRIVATE KEY", &[("role", "targets")], &raw)
}

fn target_listing(client: &NotaryClient) -> String {
    client.ok(&["list", GUN])
}

fn listed_roles(listing: &str, name: &str) -> Option<String> {
    listing
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .and_then(|line| line.split_whitespace().last().map(str::to_string))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn reference_notary_accepts_our_ed25519_and_ecdsa_signatures() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let server = ReferenceServer::start(dir);
    let curl = Curl {
        base: server.url.clone(),
        ca: server.ca.clone(),
    };
    let owner = NotaryClient::new(dir.join("owner"), &server.url, &server.ca);

    owner.ok(&["init", GUN, "-p"]);
    // Delegates and imported keys publish without the snapshot key: the
    // server signs snapshots from now on.
    owner.ok(&["key", "rotate", GUN, "snapshot", "-r"]);

    // The client files private keys under their canonical key IDs; for the
    // root that is the ID of the plain key inside the certificate.
    let (status, root_bytes) = curl.get(&format!("/v2/{GUN}/_trust/tuf/root.json"));
    assert_eq!(status, 200);
    let root: Root = SignedFile::parse(&root_bytes)
        .unwrap()
        .body("root")
        .unwrap();
    let root_key = &root.keys[&root.roles["root"].keyids[0]];
    let canonical = root_key.canonical_id().unwrap();
    assert_ne!(&canonical, root_key.id());
    let private_dir = owner.trust_dir.join("private");
    assert!(
        private_dir.join(format!("{canonical}.key")).is_file(),
        "notary stored no root key named {canonical}.key in {}",
        private_dir.display()
    );

    // 1. An ECDSA P-256 delegation key of ours, signing targets/releases.
    let ecdsa = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let public_pem = pem::encode("PUBLIC KEY", &[], ecdsa.public_key().public_bytes());
    let public_path = write(dir, "releases.pub", public_pem.as_bytes());
    owner.ok(&[
        "delegation",
        "add",
        GUN,
        "targets/releases",
        public_path.to_str().unwrap(),
        "--all-paths",
        "-p",
    ]);
    let content = b"signed by notarium with ecdsa\n";
    let releases = json!({
        "_type": "Targets",
        "delegations": {"keys": {}, "roles": []},
        "expires": three_years(),
        "targets": {"from-notarium-ecdsa": FileMeta::for_bytes(content)},
        "version": 1,
    });
    let signed = sign_metadata(&releases, &[&ecdsa]).unwrap();
    let upload = write(dir, "releases.json", &signed);
    let (status, body) = curl.publish(GUN, &[("targets/releases", &upload)]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // 2. An ed25519 targets key of ours, imported into the real client.
    let ed25519 = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let key_path = write(
        dir,
        "targets-ed25519.pem",
        notary_ed25519_pem(&ed25519).as_bytes(),
    );
    owner.ok(&[
        "key",
        "rotate",
        GUN,
        "targets",
        "--key",
        key_path.to_str().unwrap(),
    ]);
    let (status, current) = curl.get(&format!("/v2/{GUN}/_trust/tuf/targets.json"));
    assert_eq!(status, 200);
    let root_bytes = curl.get(&format!("/v2/{GUN}/_trust/tuf/root.json")).1;
    let root: Root = SignedFile::parse(&root_bytes)
        .unwrap()
        .body("root")
        .unwrap();
    let expected_targets_key: &PublicKey = ed25519.public_key();
    assert_eq!(
        root.roles["targets"].keyids,
        vec![expected_targets_key.id().to_string()]
    );

    let mut targets: Value = SignedFile::parse(&current).unwrap().signed_value().unwrap();
    let version = targets["version"].as_i64().unwrap();
    targets["version"] = json!(version + 1);
    targets["expires"] = json!(three_years());
    targets["targets"]["from-notarium-ed25519"] =
        serde_json::to_value(FileMeta::for_bytes(b"signed by notarium with ed25519\n")).unwrap();
    let signed = sign_metadata(&targets, &[&ed25519]).unwrap();
    let upload = write(dir, "targets.json", &signed);
    let (status, body) = curl.publish(GUN, &[("targets", &upload)]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // A fresh client (trust on first use) verifies every signature and lists
    // both targets under the roles that signed them.
    let fresh = NotaryClient::new(dir.join("fresh"), &server.url, &server.ca);
    let listing = target_listing(&fresh);
    assert_eq!(
        listed_roles(&listing, "from-notarium-ecdsa").as_deref(),
        Some("targets/releases"),
        "{listing}"
    );
    assert_eq!(
        listed_roles(&listing, "from-notarium-ed25519").as_deref(),
        Some("targets"),
        "{listing}"
    );

    // 3. Tampering after signing is caught by the reference server, and
    //    nothing changes for clients.
    targets["version"] = json!(version + 2);
    targets["targets"]["tampered"] = serde_json::to_value(FileMeta::for_bytes(b"x")).unwrap();
    let signed = sign_metadata(&targets, &[&ed25519]).unwrap();
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("\"tampered\"", "\"tamperex\"");
    let upload = write(dir, "tampered.json", tampered.as_bytes());
    let (status, body) = curl.publish(GUN, &[("targets", &upload)]);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("valid signatures did not meet threshold for targets"),
        "{body}"
    );

    let releases_v2 = json!({
        "_type": "Targets",
        "delegations": {"keys": {}, "roles": []},
        "expires": three_years(),
        "targets": {"from-notarium-ecdsa": FileMeta::for_bytes(b"other content")},
        "version": 2,
    });
    let signed = sign_metadata(&releases_v2, &[&ecdsa]).unwrap();
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("\"version\":2", "\"version\":3");
    let upload = write(dir, "releases-tampered.json", tampered.as_bytes());
    let (status, body) = curl.publish(GUN, &[("targets/releases", &upload)]);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("valid signatures did not meet threshold for targets/releases"),
        "{body}"
    );

    let again = NotaryClient::new(dir.join("fresh-again"), &server.url, &server.ca);
    let after = target_listing(&again);
    assert!(!after.contains("tamperex"), "{after}");
    assert_eq!(after, listing, "tampered uploads changed what clients see");
}
