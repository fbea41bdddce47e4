#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Each way verification can fail gives its own error.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use notarium::tuf::envelope::{SignedFile, write_envelope};
use notarium::tuf::sign::sign_metadata;
use notarium::tuf::verify::{check_expiry, check_hashes, check_version, verify_signatures};
use notarium::tuf::{
    Error, FileMeta, KeyAlgorithm, KeyType, PublicKey, RoleName, Root, SigningKey, Targets,
    TrustedRole,
};
use serde_json::json;
use time::macros::datetime;

fn fixture(path: &str) -> Vec<u8> {
    fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(path),
    )
    .unwrap()
}

/// The notary-cli fixture's targets.json and the role root declares for it.
fn targets_and_role() -> (Vec<u8>, TrustedRole) {
    let root: Root = SignedFile::parse(&fixture("notary-0.7/notary-cli/root.json"))
        .unwrap()
        .body("root")
        .unwrap();
    let role = root.trusted_role(&RoleName::Targets).unwrap();
    (fixture("notary-0.7/notary-cli/targets.json"), role)
}

fn assert_threshold_not_met(result: Result<(), Error>, expected_valid: usize) -> Vec<String> {
    match result {
        Err(Error::ThresholdNotMet {
            role,
            valid,
            rejected,
            ..
        }) => {
            assert_eq!(valid, expected_valid, "{role}");
            rejected.into_iter().map(|r| r.reason.to_string()).collect()
        }
        other => panic!("expected ThresholdNotMet, got {other:?}"),
    }
}

#[test]
fn the_untouched_file_verifies() {
    let (bytes, role) = targets_and_role();
    verify_signatures(&SignedFile::parse(&bytes).unwrap(), &role).unwrap();
}

#[test]
fn one_flipped_byte_in_signed_breaks_the_signature() {
    let (bytes, role) = targets_and_role();
    let text = String::from_utf8(bytes).unwrap();
    // Change the target's length: still valid JSON, different signed bytes.
    let tampered = text.replacen("\"length\":13", "\"length\":14", 1);
    assert_ne!(tampered, text);
    let reasons = assert_threshold_not_met(
        verify_signatures(&SignedFile::parse(tampered.as_bytes()).unwrap(), &role),
        0,
    );
    assert_eq!(reasons, vec!["signature was invalid".to_string()]);
}

#[test]
fn reference_server_rejected_uploads_fail_here_too() {
    // The files the Go server refused (fixtures/bad-signature) fail with us.
    let root: Root = SignedFile::parse(&fixture("delegation-x509/root.json"))
        .unwrap()
        .body("root")
        .unwrap();
    let targets: Targets = SignedFile::parse(&fixture("delegation-x509/targets.json"))
        .unwrap()
        .body("targets")
        .unwrap();
    let releases = RoleName::parse("targets/releases").unwrap();
    let (role, _) = targets.delegated_role(&releases).unwrap();
    for name in ["releases-body-flipped.json", "releases-sig-flipped.json"] {
        let file = SignedFile::parse(&fixture(&format!("bad-signature/{name}"))).unwrap();
        assert_threshold_not_met(verify_signatures(&file, &role), 0);
    }
    let unsigned = SignedFile::parse(&fixture("bad-signature/targets-no-signatures.json")).unwrap();
    let targets_role = root.trusted_role(&RoleName::Targets).unwrap();
    assert!(matches!(
        verify_signatures(&unsigned, &targets_role),
        Err(Error::NoSignatures { role }) if role == "targets"
    ));
}

#[test]
fn a_signature_by_a_key_outside_the_role_does_not_count() {
    let (bytes, _) = targets_and_role();
    let root: Root = SignedFile::parse(&fixture("notary-0.7/notary-cli/root.json"))
        .unwrap()
        .body("root")
        .unwrap();
    // The snapshot role's keys did not sign targets.json.
    let mut snapshot_role = root.trusted_role(&RoleName::Snapshot).unwrap();
    snapshot_role.name = RoleName::Targets;
    let reasons = assert_threshold_not_met(
        verify_signatures(&SignedFile::parse(&bytes).unwrap(), &snapshot_role),
        0,
    );
    assert!(
        reasons.is_empty(),
        "foreign signatures are ignored, not rejected"
    );
}

#[test]
fn a_duplicated_signature_counts_once() {
    let (bytes, mut role) = targets_and_role();
    let file = SignedFile::parse(&bytes).unwrap();
    let mut signatures = file.signatures().to_vec();
    signatures.push(signatures[0].clone());
    let doubled = write_envelope(&file.canonical_signed().unwrap(), &signatures);
    let doubled = SignedFile::parse(&doubled).unwrap();
    assert_eq!(doubled.signatures().len(), 2);
    role.threshold = 2;
    assert_threshold_not_met(verify_signatures(&doubled, &role), 1);
}

#[test]
fn too_few_signatures_for_the_threshold() {
    let first = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let second = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let third = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let body = json!({"_type": "Targets", "version": 1, "expires": "2030-01-01T00:00:00Z",
                      "targets": {}, "delegations": {"keys": {}, "roles": []}});
    let signed = sign_metadata(&body, &[&first, &second]).unwrap();
    let keys: BTreeMap<String, PublicKey> = [&first, &second, &third]
        .iter()
        .map(|k| (k.public_key().id().to_string(), k.public_key().clone()))
        .collect();
    let mut role = TrustedRole {
        name: RoleName::Targets,
        threshold: 2,
        keys,
    };
    let file = SignedFile::parse(&signed).unwrap();
    verify_signatures(&file, &role).unwrap();
    role.threshold = 3;
    assert_threshold_not_met(verify_signatures(&file, &role), 2);
    role.threshold = 0;
    assert!(matches!(
        verify_signatures(&file, &role),
        Err(Error::InvalidThreshold { threshold: 0, .. })
    ));
}

#[test]
fn expired_metadata_is_reported_as_expired() {
    let file = SignedFile::parse(&fixture("notary-0.7/notary-cli/timestamp.json")).unwrap();
    let expires = file.common().unwrap().expires.at;
    check_expiry(
        &RoleName::Timestamp,
        expires,
        datetime!(2026-11-23 12:00 UTC),
    )
    .unwrap();
    match check_expiry(
        &RoleName::Timestamp,
        expires,
        datetime!(2027-01-01 00:00 UTC),
    ) {
        Err(Error::Expired { role, expired }) => {
            assert_eq!(role, "timestamp");
            assert_eq!(expired, "Mon Dec 7 07:31:27 UTC 2026");
        }
        other => panic!("expected Expired, got {other:?}"),
    }
}

#[test]
fn lower_versions_are_reported() {
    assert!(matches!(
        check_version(&RoleName::Targets, 3, 4),
        Err(Error::LowVersion {
            actual: 3,
            minimum: 4,
            ..
        })
    ));
    check_version(&RoleName::Targets, 4, 4).unwrap();
}

/// A one-key role whose key is listed under the ID its signature names.
fn role_with(key: PublicKey) -> TrustedRole {
    TrustedRole {
        name: RoleName::Targets,
        threshold: 1,
        keys: [(key.id().to_string(), key)].into_iter().collect(),
    }
}

fn file_signed_as(keyid: &str) -> SignedFile {
    let signer = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let body = json!({"_type": "Targets", "version": 1, "expires": "2030-01-01T00:00:00Z"});
    let message = notarium::tuf::canonical::to_canonical(&body).unwrap();
    let mut signature = signer.sign(&message).unwrap();
    signature.keyid = keyid.to_string();
    SignedFile::parse(&write_envelope(&message, &[signature])).unwrap()
}

#[test]
fn an_unknown_key_type_cannot_verify() {
    let unknown = PublicKey::new(KeyType::Unknown("dsa".into()), vec![1, 2, 3]);
    let file = file_signed_as(unknown.id());
    let reasons = assert_threshold_not_met(verify_signatures(&file, &role_with(unknown)), 0);
    assert_eq!(reasons, vec!["unknown key type \"dsa\"".to_string()]);
}

#[test]
fn a_malformed_key_cannot_verify() {
    let garbage = PublicKey::new(KeyType::Ecdsa, b"definitely not DER".to_vec());
    let file = file_signed_as(garbage.id());
    let reasons = assert_threshold_not_met(verify_signatures(&file, &role_with(garbage)), 0);
    assert_eq!(
        reasons,
        vec!["malformed ecdsa key: not a DER SubjectPublicKeyInfo".to_string()]
    );
}

#[test]
fn a_key_listed_under_the_wrong_id_fails_hard() {
    let key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let wrong_id = "0".repeat(64);
    let body = json!({"_type": "Targets", "version": 1, "expires": "2030-01-01T00:00:00Z"});
    let message = notarium::tuf::canonical::to_canonical(&body).unwrap();
    let mut signature = key.sign(&message).unwrap();
    signature.keyid = wrong_id.clone();
    let file = SignedFile::parse(&write_envelope(&message, &[signature])).unwrap();
    let role = TrustedRole {
        name: RoleName::Targets,
        threshold: 1,
        keys: [(wrong_id, key.public_key().clone())].into_iter().collect(),
    };
    assert!(matches!(
        verify_signatures(&file, &role),
        Err(Error::KeyIdMismatch { .. })
    ));
}

#[test]
fn a_signature_with_the_wrong_method_for_its_key_is_rejected() {
    let key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let body = json!({"_type": "Targets", "version": 1, "expires": "2030-01-01T00:00:00Z"});
    let message = notarium::tuf::canonical::to_canonical(&body).unwrap();
    let mut signature = key.sign(&message).unwrap();
    signature.method = notarium::tuf::Method::EcdsaRawSha256;
    let file = SignedFile::parse(&write_envelope(&message, &[signature])).unwrap();
    let reasons = assert_threshold_not_met(
        verify_signatures(&file, &role_with(key.public_key().clone())),
        0,
    );
    assert_eq!(
        reasons,
        vec!["signing method ecdsa cannot be used with a ed25519 key".to_string()]
    );
}

#[test]
fn hashes_and_lengths_are_checked_over_exact_bytes() {
    let snapshot_bytes = fixture("notary-0.7/notary-cli/snapshot.json");
    let timestamp: notarium::tuf::Timestamp =
        SignedFile::parse(&fixture("notary-0.7/notary-cli/timestamp.json"))
            .unwrap()
            .body("timestamp")
            .unwrap();
    let meta = &timestamp.meta["snapshot"];
    check_hashes("snapshot", &snapshot_bytes, meta).unwrap();
    let mut reformatted = snapshot_bytes.clone();
    reformatted.push(b'\n');
    assert!(matches!(
        check_hashes("snapshot", &reformatted, meta),
        Err(Error::ChecksumMismatch { .. })
    ));
    let no_hashes = FileMeta {
        length: 1,
        hashes: Default::default(),
        custom: None,
    };
    assert!(matches!(
        check_hashes("snapshot", &snapshot_bytes, &no_hashes),
        Err(Error::NoChecksums { .. })
    ));
}

#[test]
fn our_signatures_round_trip_for_both_algorithms() {
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
        let key = SigningKey::generate(algorithm).unwrap();
        let body = json!({"_type": "Targets", "version": 7, "expires": "2030-01-01T00:00:00Z",
                          "targets": {"a<b>&\"c": {"length": 1, "hashes": {"sha256": "AA=="}}}});
        let signed = sign_metadata(&body, &[&key]).unwrap();
        let file = SignedFile::parse(&signed).unwrap();
        verify_signatures(&file, &role_with(key.public_key().clone())).unwrap();
        // The reloaded key signs identically verifiable signatures.
        let reloaded = SigningKey::from_pkcs8(algorithm, &key.to_pkcs8().unwrap()).unwrap();
        assert_eq!(reloaded.public_key(), key.public_key());
        let again = sign_metadata(&body, &[&reloaded]).unwrap();
        verify_signatures(
            &SignedFile::parse(&again).unwrap(),
            &role_with(key.public_key().clone()),
        )
        .unwrap();
        assert!(!format!("{key:?}").contains("pkcs8"));
    }
}

#[test]
fn malformed_structure_is_named() {
    let root_bytes = fixture("notary-0.7/notary-cli/root.json");
    let mut value: serde_json::Value = serde_json::from_slice(&root_bytes).unwrap();
    value["signed"]["roles"]
        .as_object_mut()
        .unwrap()
        .remove("snapshot");
    let root: Root = SignedFile::parse(&serde_json::to_vec(&value).unwrap())
        .unwrap()
        .body("root")
        .unwrap();
    match root.validate_structure() {
        Err(Error::InvalidStructure { role, reason }) => {
            assert_eq!(role, "root");
            assert_eq!(reason, "missing snapshot role specification");
        }
        other => panic!("expected InvalidStructure, got {other:?}"),
    }
    assert!(matches!(
        SignedFile::parse(b"{\"signed\": [], \"signatures\": []}"),
        Err(Error::InvalidStructure { .. })
    ));
    assert!(matches!(
        SignedFile::parse(b"{not json"),
        Err(Error::MalformedJson(_))
    ));
}

#[test]
fn a_flood_of_bad_signatures_costs_a_bounded_number_of_checks() {
    let (bytes, role) = targets_and_role();
    let file = SignedFile::parse(&bytes).unwrap();
    let good = file.signatures()[0].clone();
    let mut bad = good.clone();
    bad.sig[10] ^= 1;
    // Many bad signatures by the role's key, then the good one.
    let mut signatures = vec![bad; 1000];
    signatures.push(good);
    let flooded = SignedFile::parse(&write_envelope(
        &file.canonical_signed().unwrap(),
        &signatures,
    ))
    .unwrap();
    let reasons = assert_threshold_not_met(verify_signatures(&flooded, &role), 0);
    assert_eq!(reasons.len(), notarium::tuf::verify::MAX_FAILURES_PER_KEY);
}
