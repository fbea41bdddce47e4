//! Generates a notary-server + notary-signer deployment of N repositories
//! as PostgreSQL `COPY` data, for `scripts/bench-import` (dev only).
//!
//! Each repository is what `notary init` + `publish` leaves: root v1 (its
//! root key a self-signed certificate with CN = GUN), targets v1,
//! snapshot v1 and timestamp v1, signed and linked by checksums, and one
//! `update` changefeed record. Its snapshot and timestamp keys are
//! notary-signer rows: ECDSA P-256, the private key as SEC1 DER sealed in a
//! compact JWE (PBES2-HS256+A128KW / A256GCM, 8192 iterations) under the
//! passphrase of alias `bench`, as notary-signer writes them.
//!
//!   cargo run --release --example notary_deployment -- COUNT OUT_DIR PASSPHRASE
//!
//! Writes OUT_DIR/{tuf_files,changefeed,private_keys}.N.copy, one set per
//! worker thread (rows stream to disk: memory does not grow with COUNT).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/builder.rs"]
mod builder;

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::Path;

use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use notarium::signer::{Passphrase, sealed};
use notarium::tuf::encoding::format_time;
use notarium::tuf::sign::sign_metadata;
use notarium::tuf::{FileMeta, KeyAlgorithm, SigningKey};
use serde_json::json;
use time::{Duration, OffsetDateTime};

/// `COPY` text form of a byte string (`bytea` hex input).
fn bytea(bytes: &[u8]) -> String {
    format!("\\\\x{}", hex::encode(bytes))
}

/// `COPY` text form of a time (columns are `timestamp`, UTC).
fn stamp(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// A server key as notary-signer stores it: the private key as SEC1 DER.
fn signer_key(passphrase: &Passphrase) -> (SigningKey, String) {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let pkcs8 = key.to_pkcs8().unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap();
    let sec1: EcPrivateKeyRfc5915Der<'static> = pair.private_key().as_der().unwrap();
    let jwe = sealed::seal(sec1.as_ref(), passphrase, sealed::NOTARY_ITERATIONS).unwrap();
    (key, jwe)
}

struct Out {
    files: BufWriter<std::fs::File>,
    changes: BufWriter<std::fs::File>,
    keys: BufWriter<std::fs::File>,
}

impl Out {
    fn create(dir: &Path, worker: usize) -> Self {
        let open = |name: &str| {
            BufWriter::new(
                std::fs::File::create(dir.join(format!("{name}.{worker}.copy"))).unwrap(),
            )
        };
        Self {
            files: open("tuf_files"),
            changes: open("changefeed"),
            keys: open("private_keys"),
        }
    }
}

fn repository(index: usize, passphrase: &Passphrase, now: OffsetDateTime, out: &mut Out) {
    let gun = format!("bench.test/import/repo-{index:06}");
    // Spread over the last 30 days, one second apart per file.
    let base = now - Duration::days(30) + Duration::seconds(i64::try_from(index).unwrap() * 4);
    let client = builder::ClientKeys::new(&gun, now);
    let (snapshot_key, snapshot_jwe) = signer_key(passphrase);
    let (timestamp_key, timestamp_jwe) = signer_key(passphrase);
    let root = client.root(
        1,
        snapshot_key.public_key(),
        timestamp_key.public_key(),
        now,
    );
    let names: Vec<String> = (0..3).map(|i| format!("v{i}")).collect();
    let targets = client.targets(1, &names, now);
    let snapshot = sign_metadata(
        &json!({
            "_type": "Snapshot",
            "expires": format_time(now + Duration::days(365 * 3)),
            "meta": {
                "root": FileMeta::for_bytes(&root),
                "targets": FileMeta::for_bytes(&targets),
            },
            "version": 1,
        }),
        &[&snapshot_key],
    )
    .unwrap();
    let timestamp = sign_metadata(
        &json!({
            "_type": "Timestamp",
            "expires": format_time(now + Duration::days(14)),
            "meta": {"snapshot": FileMeta::for_bytes(&snapshot)},
            "version": 1,
        }),
        &[&timestamp_key],
    )
    .unwrap();
    let mut line = String::new();
    for (n, (role, data)) in [
        ("root", &root),
        ("targets", &targets),
        ("snapshot", &snapshot),
        ("timestamp", &timestamp),
    ]
    .into_iter()
    .enumerate()
    {
        let at = stamp(base + Duration::seconds(i64::try_from(n).unwrap()));
        let sha = hex::encode(notarium::tuf::sha256(data));
        writeln!(line, "{at}\t{at}\t{gun}\t{role}\t1\t{}\t{sha}", bytea(data)).unwrap();
    }
    out.files.write_all(line.as_bytes()).unwrap();
    let at = stamp(base + Duration::seconds(3));
    let sha = hex::encode(notarium::tuf::sha256(&timestamp));
    writeln!(out.changes, "{at}\t{gun}\t1\t{sha}\tupdate").unwrap();
    for (role, key, jwe, created) in [
        ("snapshot", &snapshot_key, &snapshot_jwe, 0),
        ("timestamp", &timestamp_key, &timestamp_jwe, 1),
    ] {
        let at = stamp(base - Duration::seconds(10 - created));
        let used = stamp(base + Duration::seconds(3));
        writeln!(
            out.keys,
            "{at}\t{at}\t{}\tA256GCM\tPBES2-HS256+A128KW\tecdsa\tbench\t{}\t{}\t{gun}\t{role}\t{used}",
            key.public_key().id(),
            bytea(key.public_key().public_bytes()),
            bytea(jwe.as_bytes()),
        )
        .unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, count, dir, passphrase] = args.as_slice() else {
        eprintln!("usage: notary_deployment COUNT OUT_DIR PASSPHRASE");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT must be a number");
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).unwrap();
    let passphrase = Passphrase::new(passphrase.clone());
    let now = OffsetDateTime::now_utc();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let passphrase = &passphrase;
            scope.spawn(move || {
                let mut out = Out::create(dir, worker);
                for index in (worker..count).step_by(workers) {
                    repository(index, passphrase, now, &mut out);
                }
                out.files.flush().unwrap();
                out.changes.flush().unwrap();
                out.keys.flush().unwrap();
            });
        }
    });
}
