#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every fixture produced by the real notary 0.7 client and server must verify
//! with our code: every signature, every key ID, every hash, and the canonical
//! re-encoding of every `signed` part.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use notarium::tuf::envelope::SignedFile;
use notarium::tuf::roles::FileMeta;
use notarium::tuf::sig::verify_signature;
use notarium::tuf::verify::{check_expiry, check_file_meta, verify_signatures};
use notarium::tuf::{PublicKey, RoleName, Root, Snapshot, Targets, Timestamp, canonical};
use time::OffsetDateTime;
use time::macros::datetime;

/// The fixtures were made on this day; their timestamps last 14 days.
const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Scenario folders holding a TUF repository (those with a root.json).
fn repositories() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![fixtures()];
    while let Some(dir) = pending.pop() {
        if dir.join("root.json").is_file() {
            found.push(dir.clone());
        }
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && path.file_name().unwrap() != "targets" {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

#[derive(Default)]
struct Tally {
    signatures: usize,
    key_ids: usize,
    files: usize,
}

fn load(path: &Path) -> SignedFile {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = SignedFile::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Notary writes `signed` canonically, so our re-encoding must reproduce
    // the exact bytes it signed, from the text and from a parsed value alike.
    let canonical = file.canonical_signed().unwrap();
    assert_eq!(
        canonical,
        canonical::to_canonical(&file.signed_value().unwrap()).unwrap(),
        "{}: streaming and value encoders differ",
        path.display()
    );
    let mut expected = b"{\"signed\":".to_vec();
    expected.extend_from_slice(&canonical);
    expected.extend_from_slice(b",\"signatures\":");
    assert!(
        bytes.starts_with(&expected),
        "{}: canonical re-encoding differs from the signed bytes",
        path.display()
    );
    file
}

/// Every signature must verify individually with one of `keys`.
fn assert_every_signature_verifies(
    path: &Path,
    file: &SignedFile,
    keys: &BTreeMap<String, PublicKey>,
    tally: &mut Tally,
) {
    let message = file.canonical_signed().unwrap();
    assert!(
        !file.signatures().is_empty(),
        "{}: unsigned",
        path.display()
    );
    for signature in file.signatures() {
        let key = keys
            .get(&signature.keyid)
            .unwrap_or_else(|| panic!("{}: unknown signer {}", path.display(), signature.keyid));
        verify_signature(key, &signature.method, &message, &signature.sig).unwrap_or_else(|e| {
            panic!(
                "{}: {} did not verify: {e}",
                path.display(),
                signature.keyid
            )
        });
        tally.signatures += 1;
    }
    tally.files += 1;
}

fn assert_key_ids(path: &Path, keys: &BTreeMap<String, PublicKey>, tally: &mut Tally) {
    for (listed, key) in keys {
        assert_eq!(listed, key.id(), "{}: key ID", path.display());
        tally.key_ids += 1;
    }
}

fn check_root(path: &Path, previous: Option<&Root>, tally: &mut Tally) -> Root {
    let file = load(path);
    let root: Root = file.body("root").unwrap();
    root.validate_structure().unwrap();
    assert_key_ids(path, &root.keys, tally);
    verify_signatures(&file, &root.trusted_role(&RoleName::Root).unwrap()).unwrap();
    let mut signers = root.keys.clone();
    if let Some(previous) = previous {
        // A rotation must also satisfy the previous root's threshold.
        verify_signatures(&file, &previous.trusted_role(&RoleName::Root).unwrap()).unwrap();
        signers.extend(previous.keys.clone());
    }
    assert_every_signature_verifies(path, &file, &signers, tally);
    check_expiry(&RoleName::Root, root.expires.at, NOW).unwrap();
    root
}

fn check_delegations(dir: &Path, parent: &Targets, parent_name: &RoleName, tally: &mut Tally) {
    for delegated in &parent.delegations.roles {
        let name = RoleName::parse(&delegated.name).unwrap();
        let path = dir.join(format!("{}.json", delegated.name));
        if !path.is_file() {
            continue;
        }
        let file = load(&path);
        let body: Targets = file.body(name.as_str()).unwrap();
        body.validate_structure(&name).unwrap();
        assert_key_ids(&path, &body.delegations.keys, tally);
        let (trusted, _) = parent.delegated_role(&name).unwrap();
        verify_signatures(&file, &trusted).unwrap();
        assert_every_signature_verifies(&path, &file, &trusted.keys, tally);
        check_expiry(&name, body.expires.at, NOW).unwrap();
        assert_eq!(name.parent().as_ref(), Some(parent_name));
        check_delegations(dir, &body, &name, tally);
    }
}

fn check_repository(dir: &Path) -> Tally {
    let mut tally = Tally::default();
    let mut previous: Option<Root> = None;
    let mut latest_versioned = None;
    for version in 1.. {
        let path = dir.join(format!("{version}.root.json"));
        if !path.is_file() {
            break;
        }
        let root = check_root(&path, previous.as_ref(), &mut tally);
        assert_eq!(root.version, version);
        latest_versioned = Some(fs::read(&path).unwrap());
        previous = Some(root);
    }
    let root_path = dir.join("root.json");
    let root = check_root(&root_path, None, &mut tally);
    if let Some(latest) = latest_versioned {
        assert_eq!(
            latest,
            fs::read(&root_path).unwrap(),
            "root.json is the newest root"
        );
    }

    let targets_path = dir.join("targets.json");
    let targets_file = load(&targets_path);
    let targets: Targets = targets_file.body("targets").unwrap();
    targets.validate_structure(&RoleName::Targets).unwrap();
    assert_key_ids(&targets_path, &targets.delegations.keys, &mut tally);
    let trusted = root.trusted_role(&RoleName::Targets).unwrap();
    verify_signatures(&targets_file, &trusted).unwrap();
    assert_every_signature_verifies(&targets_path, &targets_file, &trusted.keys, &mut tally);
    check_delegations(dir, &targets, &RoleName::Targets, &mut tally);

    let snapshot_path = dir.join("snapshot.json");
    let snapshot_file = load(&snapshot_path);
    let snapshot: Snapshot = snapshot_file.body("snapshot").unwrap();
    snapshot.validate_structure().unwrap();
    let trusted = root.trusted_role(&RoleName::Snapshot).unwrap();
    verify_signatures(&snapshot_file, &trusted).unwrap();
    assert_every_signature_verifies(&snapshot_path, &snapshot_file, &trusted.keys, &mut tally);
    check_expiry(&RoleName::Snapshot, snapshot.expires.at, NOW).unwrap();
    for (role, meta) in &snapshot.meta {
        let bytes = fs::read(dir.join(format!("{role}.json")))
            .unwrap_or_else(|e| panic!("{}: {role}: {e}", dir.display()));
        check_file_meta(role, &bytes, meta).unwrap();
    }

    let timestamp_path = dir.join("timestamp.json");
    let timestamp_file = load(&timestamp_path);
    let timestamp: Timestamp = timestamp_file.body("timestamp").unwrap();
    timestamp.validate_structure().unwrap();
    let trusted = root.trusted_role(&RoleName::Timestamp).unwrap();
    verify_signatures(&timestamp_file, &trusted).unwrap();
    assert_every_signature_verifies(&timestamp_path, &timestamp_file, &trusted.keys, &mut tally);
    check_expiry(&RoleName::Timestamp, timestamp.expires.at, NOW).unwrap();
    check_file_meta("snapshot", snapshot_file.raw(), &timestamp.meta["snapshot"]).unwrap();

    // The server's public keys, as served by GET <role>.key, are the ones
    // root lists for that role.
    for role in ["timestamp", "snapshot"] {
        let key_path = dir.join(format!("{role}.key"));
        if let Ok(bytes) = fs::read(&key_path) {
            let key: PublicKey = serde_json::from_slice(&bytes).unwrap();
            assert!(
                root.roles[role].keyids.contains(&key.id().to_string()),
                "{}: served key is not root's {role} key",
                key_path.display()
            );
            tally.key_ids += 1;
        }
    }
    tally
}

#[test]
fn every_fixture_repository_verifies() {
    let repositories = repositories();
    assert!(
        repositories.len() >= 6,
        "fixtures missing: {repositories:?}"
    );
    let mut total = Tally::default();
    for dir in &repositories {
        let tally = check_repository(dir);
        assert!(
            tally.signatures >= 4,
            "{}: too few signatures checked",
            dir.display()
        );
        total.signatures += tally.signatures;
        total.key_ids += tally.key_ids;
        total.files += tally.files;
    }
    eprintln!(
        "verified {} signatures over {} files and {} key IDs in {} repositories",
        total.signatures,
        total.files,
        total.key_ids,
        repositories.len()
    );
}

#[test]
fn signature_methods_cover_every_kind_notary_produces() {
    let mut methods = std::collections::BTreeSet::new();
    let mut keytypes = std::collections::BTreeSet::new();
    for dir in repositories() {
        for entry in walk(&dir) {
            if entry.extension().is_some_and(|e| e == "json") {
                let Ok(file) = SignedFile::parse(&fs::read(&entry).unwrap()) else {
                    continue;
                };
                for signature in file.signatures() {
                    methods.insert(signature.method.as_str().to_string());
                }
                let signed = file.signed_value().unwrap();
                for keys in ["keys"].iter().filter_map(|k| signed.get(k)) {
                    for key in keys.as_object().unwrap().values() {
                        keytypes.insert(key["keytype"].as_str().unwrap().to_string());
                    }
                }
                if let Some(keys) = signed.pointer("/delegations/keys") {
                    for key in keys.as_object().unwrap().values() {
                        keytypes.insert(key["keytype"].as_str().unwrap().to_string());
                    }
                }
            }
        }
    }
    for method in ["ecdsa", "eddsa", "rsapss"] {
        assert!(
            methods.contains(method),
            "no {method} signature in fixtures: {methods:?}"
        );
    }
    for keytype in ["ecdsa", "ecdsa-x509", "ed25519", "rsa", "rsa-x509"] {
        assert!(
            keytypes.contains(keytype),
            "no {keytype} key in fixtures: {keytypes:?}"
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn key_ids_match_what_docker_reports() {
    // `docker trust inspect` lists root and repository keys by the IDs root
    // lists (for the root that is the ID of the certificate key, not of the
    // plain key inside it) and signers by delegation key ID.
    let dir = fixtures().join("notary-0.7/docker-cli");
    let inspect: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("docker-trust-inspect.json")).unwrap()).unwrap();
    let root: Root = load(&dir.join("root.json")).body("root").unwrap();
    let root_key = &root.keys[&root.roles["root"].keyids[0]];
    let reported_root = inspect[0]["AdministrativeKeys"][0]["Keys"][0]["ID"]
        .as_str()
        .unwrap();
    assert_eq!(root_key.id(), reported_root);
    assert_ne!(root_key.canonical_id().unwrap(), reported_root);

    let targets_key = &root.keys[&root.roles["targets"].keyids[0]];
    let reported_repo = inspect[0]["AdministrativeKeys"][1]["Keys"][0]["ID"]
        .as_str()
        .unwrap();
    assert_eq!(targets_key.id(), reported_repo);
    assert_eq!(
        targets_key.canonical_id().unwrap(),
        reported_repo,
        "plain keys: same ID"
    );

    let targets: Targets = load(&dir.join("targets.json")).body("targets").unwrap();
    let reported_alice = inspect[0]["Signers"][0]["Keys"][0]["ID"].as_str().unwrap();
    let alice_pem = fs::read(dir.join("alice.pub")).unwrap();
    let alice_der = notarium::tuf::pem::first_block(&alice_pem).unwrap().der;
    let alice = PublicKey::new(notarium::tuf::KeyType::Ecdsa, alice_der);
    assert_eq!(alice.id(), reported_alice);
    assert!(targets.delegations.keys.contains_key(reported_alice));
}

#[test]
fn delegated_targets_match_notary_list() {
    // notary list printed the sha256 of files/hello.txt for both targets.
    let dir = fixtures().join("notary-0.7/notary-cli");
    let hello = fs::read(dir.join("files/hello.txt")).unwrap();
    let expected = FileMeta::for_bytes(&hello);
    let targets: Targets = load(&dir.join("targets.json")).body("targets").unwrap();
    let releases: Targets = load(&dir.join("targets/releases.json"))
        .body("targets/releases")
        .unwrap();
    assert_eq!(targets.targets["hello"].hashes, expected.hashes);
    assert_eq!(releases.targets["release-1.0"].hashes, expected.hashes);
    let listing = fs::read_to_string(dir.join("notary-list.txt")).unwrap();
    assert!(listing.contains(&hex::encode(expected.sha256().unwrap())));
}
