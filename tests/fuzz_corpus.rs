#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same `notarium::fuzzing` functions the cargo-fuzz targets call, on
//! stable, so every input a fuzzing run kept (crashes found included) stays
//! a regression test in CI.

use std::fs;
use std::path::Path;

use notarium::fuzzing;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("canonical_envelope", fuzzing::canonical_and_envelope),
    ("multipart_upload", fuzzing::multipart_upload),
    ("names", fuzzing::names),
    ("key_parse", fuzzing::key_parse),
    ("token", fuzzing::token),
];

#[test]
fn every_committed_corpus_input_replays_without_a_panic() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut dirs: Vec<String> = fs::read_dir(&corpus)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut known: Vec<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
    known.sort();
    assert_eq!(dirs, known, "every fuzz target has a corpus, and only they");
    for (name, target) in TARGETS {
        let mut replayed = 0;
        for entry in fs::read_dir(corpus.join(name)).unwrap() {
            let path = entry.unwrap().path();
            let data = fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{} panicked", path.display());
            replayed += 1;
        }
        assert!(replayed > 0, "the {name} corpus is empty");
    }
}

#[test]
fn the_fuzz_crate_lists_one_target_per_function() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lacks {name}"
        );
        let source = fs::read_to_string(root.join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(source.contains("notarium::fuzzing::"), "{name}");
    }
}
