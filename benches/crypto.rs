//! Signing and verification as a publish does them, with the crates
//! notarium uses (`ed25519-dalek`, `p256`) beside aws-lc (what notarium used
//! before, still linked for TLS and RSA), on the same keys and message.
//!
//! A `notary add -p` costs the server two client-signature checks (targets
//! and snapshot) and one timestamp signature: the `publish_*` rows are that
//! sum, per library.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, UnparsedPublicKey,
};
use criterion::{Criterion, criterion_group, criterion_main};
use notarium::tuf::sig::verify_signature;
use notarium::tuf::{KeyAlgorithm, SigningKey, canonical};
use serde_json::json;

/// A timestamp's `signed` part, canonical: the message the server signs on
/// every publish.
fn timestamp_message() -> Vec<u8> {
    canonical::to_canonical(&json!({
        "_type": "Timestamp",
        "expires": "2027-12-07T00:00:00.000000000Z",
        "meta": {"snapshot": {
            "hashes": {"sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                       "sha512": "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
            "length": 688}},
        "version": 7,
    }))
    .unwrap()
}

/// aws-lc's signer for the same private key as `key`.
enum AwsLcKey {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
}

impl AwsLcKey {
    fn of(key: &SigningKey) -> Self {
        let pkcs8 = key.to_pkcs8().unwrap();
        match key.algorithm() {
            KeyAlgorithm::Ed25519 => {
                Self::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).unwrap())
            }
            KeyAlgorithm::EcdsaP256 => Self::EcdsaP256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap(),
            ),
        }
    }

    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed25519(key) => key.sign(message).as_ref().to_vec(),
            Self::EcdsaP256(key) => key.sign(rng, message).unwrap().as_ref().to_vec(),
        }
    }

    /// What aws-lc verifies against: the raw Ed25519 key, or the
    /// uncompressed P-256 point.
    fn verifier(&self) -> UnparsedPublicKey<Vec<u8>> {
        match self {
            Self::Ed25519(key) => {
                UnparsedPublicKey::new(&ED25519, key.public_key().as_ref().to_vec())
            }
            Self::EcdsaP256(key) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref().to_vec())
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let message = timestamp_message();
    let rng = SystemRandom::new();
    for (algorithm, name) in [
        (KeyAlgorithm::EcdsaP256, "ecdsa_p256"),
        (KeyAlgorithm::Ed25519, "ed25519"),
    ] {
        let key = SigningKey::generate(algorithm).unwrap();
        let aws = AwsLcKey::of(&key);
        let signature = key.sign(&message).unwrap();
        // Both libraries sign in Notary's format, so each verifies the other.
        let aws_signature = aws.sign(&rng, &message);
        let verifier = aws.verifier();
        verifier.verify(&message, &signature.sig).unwrap();
        verify_signature(
            key.public_key(),
            &signature.method,
            &message,
            &aws_signature,
        )
        .unwrap();

        let mut group = c.benchmark_group(name);
        group.bench_function("sign/notarium", |b| {
            b.iter(|| key.sign(black_box(&message)).unwrap())
        });
        group.bench_function("sign/aws_lc", |b| {
            b.iter(|| aws.sign(&rng, black_box(&message)))
        });
        // notarium's check parses the key from its Notary form each time,
        // as the server does for a role's key.
        group.bench_function("verify/notarium", |b| {
            b.iter(|| {
                verify_signature(
                    key.public_key(),
                    &signature.method,
                    black_box(&message),
                    &signature.sig,
                )
                .unwrap()
            })
        });
        group.bench_function("verify/aws_lc", |b| {
            b.iter(|| {
                verifier
                    .verify(black_box(&message), &signature.sig)
                    .unwrap()
            })
        });
        group.bench_function("publish/notarium", |b| {
            b.iter(|| {
                for _ in 0..2 {
                    verify_signature(
                        key.public_key(),
                        &signature.method,
                        black_box(&message),
                        &signature.sig,
                    )
                    .unwrap();
                }
                key.sign(black_box(&message)).unwrap()
            })
        });
        group.bench_function("publish/aws_lc", |b| {
            b.iter(|| {
                for _ in 0..2 {
                    verifier
                        .verify(black_box(&message), &signature.sig)
                        .unwrap();
                }
                aws.sign(&rng, black_box(&message))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
