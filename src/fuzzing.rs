//! Entry points for the fuzz targets in `fuzz/` (one line each) and for
//! `tests/fuzz_corpus.rs`, which replays the committed corpus on stable.
//! Each takes arbitrary bytes, must never panic on them, and asserts the
//! invariants that hold for any input; a panic here is a bug found.

use bytes::Bytes;

use crate::policy::names;
use crate::repo::parse_parts;
use crate::server::multipart;
use crate::tuf::{KeyType, PublicKey, RoleName, Root, SignedFile, Snapshot, Targets, Timestamp};
use crate::tuf::{canonical, pem, strict};

/// Canonical JSON and the signed envelope: parse, re-canonicalize, read
/// every role body and its structure checks.
pub fn canonical_and_envelope(data: &[u8]) {
    // The streaming encoder gives what the encoder over a parsed value does.
    let via_value = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .map(|value| canonical::to_canonical(&value).ok());
    if let Some(expected) = via_value {
        assert!(
            canonical::canonicalize(data).ok() == expected,
            "streaming and value canonical encoders differ"
        );
    }
    if let Ok(canonical) = canonical::canonicalize(data) {
        // Canonical form is a fixed point. (It need not parse again: like
        // Notary's encoder it writes control characters raw.)
        if let Ok(again) = canonical::canonicalize(&canonical) {
            assert!(again == canonical, "canonicalizing is not idempotent");
        }
    }
    let Ok(file) = SignedFile::parse(data) else {
        return;
    };
    // A parsed file has no duplicate keys and keeps its bytes.
    assert!(strict::check_unique_keys(file.raw()).is_ok());
    assert!(file.raw() == data);
    let _ = file.canonical_signed();
    let _ = file.common();
    if let Ok(root) = file.body::<Root>("root") {
        let _ = root.validate_structure();
        for role in [RoleName::Root, RoleName::Targets, RoleName::Snapshot] {
            let _ = root.trusted_role(&role);
        }
    }
    if let Ok(targets) = file.body::<Targets>("targets") {
        let _ = targets.validate_structure(&RoleName::Targets);
        for delegated in &targets.delegations.roles {
            if let Ok(name) = RoleName::parse(&delegated.name) {
                let _ = targets.delegated_role(&name);
            }
        }
    }
    if let Ok(snapshot) = file.body::<Snapshot>("snapshot") {
        let _ = snapshot.validate_structure();
    }
    if let Ok(timestamp) = file.body::<Timestamp>("timestamp") {
        let _ = timestamp.validate_structure();
    }
}

/// The upload body: the first line is the Content-Type, the rest the body;
/// parts that come out go through the role and metadata parsing of a
/// publish.
pub fn multipart_upload(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let content_type = String::from_utf8_lossy(head);
    let Ok(parts) = multipart::parse(&content_type, Bytes::copy_from_slice(body)) else {
        return;
    };
    let total: usize = parts.iter().map(|(_, bytes)| bytes.len()).sum();
    assert!(total <= body.len(), "parts hold more bytes than the body");
    let _ = parse_parts(parts);
}

/// GUNs, prefixes, certificate names, tags and role names.
pub fn names(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if names::check_gun(text).is_ok() {
        // What the grammar lets through has one spelling.
        assert!(text.is_ascii() && !text.contains('%'));
        assert!(
            text.split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
        );
        assert!(!text.chars().any(|c| c.is_ascii_control() || c == ' '));
        assert!(text.len() <= names::MAX_GUN_LEN);
        // A GUN is a valid certificate name, and every GUN prefix at a
        // component boundary is a valid configured prefix.
        assert!(names::check_common_name(text).is_ok());
        for (at, _) in text.match_indices('/') {
            assert!(
                names::check_gun_prefix(&text[..=at]).is_ok(),
                "{:?}",
                &text[..=at]
            );
        }
    }
    if names::check_gun_prefix(text).is_ok() {
        assert!(text.ends_with('/') && text.is_ascii());
    }
    let _ = names::check_common_name(text);
    if names::check_tag(text).is_ok() {
        assert!(text.len() <= names::MAX_TAG_LEN && text.is_ascii());
    }
    if let Ok(role) = RoleName::parse(text) {
        assert!(role.as_str() == text);
        if let Some(parent) = role.parent() {
            assert!(parent.depth() + 1 == role.depth());
        }
    }
}

/// Public keys: as listed in metadata (JSON), and raw key bytes of every
/// key type (DER, PEM certificates).
pub fn key_parse(data: &[u8]) {
    if let Ok(key) = serde_json::from_slice::<PublicKey>(data) {
        let _ = key.verifying_key();
        let _ = key.canonical_id();
        // The ID is over the normalised form, which round-trips.
        if let Ok(again) = serde_json::from_value::<PublicKey>(key.to_json()) {
            assert!(again.id() == key.id());
        }
    }
    for keytype in ["ed25519", "ecdsa", "rsa", "ecdsa-x509", "rsa-x509"] {
        let key = PublicKey::new(KeyType::parse(keytype), data.to_vec());
        let _ = key.verifying_key();
        if key.keytype().is_x509() {
            let _ = key.certificate_chain();
            let _ = key.canonical_id();
        }
    }
    let _ = pem::blocks(data);
}

/// Bearer tokens: header, claims and signature decoding, key resolution
/// (`x5c` chain, `jwk`, `kid`) and the claim checks, against a bundle of
/// one fixture certificate. No input can carry a valid signature by that
/// certificate's key, so every token must be refused.
pub fn token(data: &[u8]) {
    use crate::auth::claims::Expectations;
    use crate::auth::verify::{TrustBundle, Verifier};
    const BUNDLE: &[u8] = include_bytes!("../fixtures/notary-0.7/notary-cli/root-v1.crt");
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let bundle = TrustBundle::from_pem(BUNDLE);
    assert!(bundle.is_ok(), "the fixture bundle must load");
    let Ok(bundle) = bundle else {
        return;
    };
    let verifier = Verifier::new(
        bundle,
        Expectations {
            issuer: "auth.example.com".into(),
            service: "notary.example.com".into(),
        },
    );
    // Inside the fixture certificate's validity, so chains are checked.
    let now = time::macros::datetime!(2030-01-01 00:00 UTC);
    assert!(
        verifier.verify(token, now).is_err(),
        "a token without a valid signature was accepted"
    );
}
