//! The TUF core on a large file: a targets.json with 10,000 targets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use notarium::tuf::roles::TrustedRole;
use notarium::tuf::sign::sign_metadata;
use notarium::tuf::verify::verify_signatures;
use notarium::tuf::{
    FileMeta, KeyAlgorithm, KeyType, PublicKey, RoleName, SignedFile, SigningKey, canonical,
};
use serde_json::{Value, json};
use std::hint::black_box;

fn large_targets(key: &SigningKey) -> Vec<u8> {
    let targets: serde_json::Map<String, Value> = (0..10_000)
        .map(|i| {
            let name = format!("release-{i}");
            let meta = serde_json::to_value(FileMeta::for_bytes(name.as_bytes())).unwrap();
            (name, meta)
        })
        .collect();
    let body = json!({
        "_type": "Targets",
        "delegations": {"keys": {}, "roles": []},
        "expires": "2030-01-01T00:00:00Z",
        "targets": targets,
        "version": 1,
    });
    sign_metadata(&body, &[key]).unwrap()
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let bytes = large_targets(&key);
    let file = SignedFile::parse(&bytes).unwrap();
    let role = TrustedRole {
        name: RoleName::Targets,
        threshold: 1,
        keys: [(key.public_key().id().to_string(), key.public_key().clone())]
            .into_iter()
            .collect(),
    };
    let mut group = c.benchmark_group("targets_10k");
    group.sample_size(20);
    group.bench_function("parse", |b| {
        b.iter(|| SignedFile::parse(black_box(&bytes)).unwrap())
    });
    group.bench_function("canonicalize", |b| {
        b.iter(|| black_box(&file).canonical_signed().unwrap())
    });
    let value = file.signed_value().unwrap();
    group.bench_function("canonicalize_value", |b| {
        b.iter(|| canonical::to_canonical(black_box(&value)).unwrap())
    });
    group.bench_function("parse_and_verify", |b| {
        b.iter(|| {
            let file = SignedFile::parse(black_box(&bytes)).unwrap();
            verify_signatures(&file, &role).unwrap();
        })
    });
    group.finish();

    let public = key.public_key().public_bytes().to_vec();
    c.bench_function("key_id_ecdsa", |b| {
        b.iter(|| PublicKey::new(KeyType::Ecdsa, black_box(public.clone())))
    });
    let message = canonical::to_canonical(&json!({"_type": "Timestamp", "version": 1})).unwrap();
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let key = SigningKey::generate(algorithm).unwrap();
        let signature = key.sign(&message).unwrap();
        c.bench_function(&format!("verify_{algorithm:?}"), |b| {
            b.iter(|| {
                notarium::tuf::sig::verify_signature(
                    key.public_key(),
                    &signature.method,
                    black_box(&message),
                    &signature.sig,
                )
                .unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
