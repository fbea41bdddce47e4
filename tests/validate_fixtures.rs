#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Metadata made by the Go reference server and the real clients (the
//! fixtures) passes our server-side validation, update by update.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use notarium::repo::validate::{StoredState, Upload, validate_update};
use notarium::repo::{Error, Refusal, Rejection};
use notarium::tuf::{Error as TufError, RoleName, SignedFile};
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn file(dir: &Path, name: &str) -> SignedFile {
    SignedFile::parse(&fs::read(dir.join(name)).unwrap()).unwrap()
}

fn upload(dir: &Path, role: &str, name: &str) -> Upload {
    Upload {
        role: RoleName::parse(role).unwrap(),
        file: file(dir, name),
    }
}

fn version(file: &SignedFile) -> i64 {
    file.common().unwrap().version
}

#[test]
fn a_fresh_repository_with_client_snapshot_validates() {
    // Initial publish: root v1 + targets + delegation + snapshot, as
    // `notary publish` sends them (versions checked against nothing).
    let d = dir("notary-0.7/notary-cli");
    let state = StoredState::default();
    let update = validate_update(
        "notary.test/fixtures/app",
        &state,
        vec![upload(&d, "root", "2.root.json")],
        NOW,
    );
    // Root v2 alone has nothing to sign targets with yet.
    assert!(matches!(
        update,
        Err(Error::Rejected {
            kind: Rejection::BadHierarchy { missing: "targets" },
            ..
        })
    ));

    let update = validate_update(
        "notary.test/fixtures/app",
        &state,
        vec![
            upload(&d, "root", "root.json"),
            upload(&d, "targets", "targets.json"),
            upload(&d, "targets/releases", "targets/releases.json"),
            upload(&d, "snapshot", "snapshot.json"),
        ],
        NOW,
    )
    .unwrap();
    assert!(update.new_root);
    assert_eq!(update.targets.len(), 2);
    assert!(update.snapshot.is_some());
}

#[test]
fn root_rotation_is_validated_against_the_stored_root() {
    for name in ["notary-0.7/notary-cli", "rotated-root", "rsa-root"] {
        let d = dir(name);
        let gun = gun_of(&d);
        let v1 = file(&d, "1.root.json");
        let stored = StoredState {
            versions: BTreeMap::from([("root".to_string(), 1)]),
            root: Some(v1),
            targets: BTreeMap::from([(RoleName::Targets, file(&d, "targets.json"))]),
            ..StoredState::default()
        };
        let update = validate_update(&gun, &stored, vec![upload(&d, "root", "2.root.json")], NOW);
        match update {
            Ok(update) => assert_eq!(update.root.version, 2, "{name}"),
            // rsa-root rotated the targets key: root v2 must come with the
            // targets file signed by the new key.
            Err(Error::Rejected {
                kind: Rejection::BadRoot,
                reason,
            }) if name == "rsa-root" => {
                assert!(
                    matches!(
                        *reason,
                        Refusal::TargetsNotSignedByNewKeys {
                            root_version: 2,
                            ..
                        }
                    ),
                    "{reason:?}"
                );
                let with_targets = validate_update(
                    &gun,
                    &StoredState {
                        versions: BTreeMap::from([("root".into(), 1), ("targets".into(), 1)]),
                        root: Some(file(&d, "1.root.json")),
                        ..StoredState::default()
                    },
                    vec![
                        upload(&d, "root", "2.root.json"),
                        upload(&d, "targets", "targets.json"),
                    ],
                    NOW,
                );
                assert!(with_targets.is_ok(), "{name}: {with_targets:?}");
            }
            Err(error) => panic!("{name}: {error:?}"),
        }
        // Replaying root v1 over v2 is refused as stale.
        let newer = StoredState {
            versions: BTreeMap::from([("root".to_string(), 2)]),
            root: Some(file(&d, "2.root.json")),
            ..StoredState::default()
        };
        let replay = validate_update(&gun, &newer, vec![upload(&d, "root", "1.root.json")], NOW);
        assert!(
            matches!(
                replay,
                Err(Error::Rejected {
                    kind: Rejection::BadRoot,
                    ..
                })
            ),
            "{name}: {replay:?}"
        );
    }
}

/// The GUN a fixture repository was made for: its root certificate's CN.
fn gun_of(d: &Path) -> String {
    let root: notarium::tuf::Root = file(d, "root.json").body("root").unwrap();
    let key = &root.keys[&root.roles["root"].keyids[0]];
    notarium::tuf::certs::common_name(&key.leaf_certificate().unwrap()).unwrap()
}

#[test]
fn delegations_from_the_reference_validate_against_their_parents() {
    for name in ["delegation-x509", "rsa-delegation", "notary-0.7/docker-cli"] {
        let d = dir(name);
        let gun = gun_of(&d);
        let targets = file(&d, "targets.json");
        let mut uploads = Vec::new();
        let mut versions = BTreeMap::from([
            ("root".to_string(), 1),
            ("targets".to_string(), version(&targets)),
        ]);
        for entry in walk(&d.join("targets")) {
            let role = entry
                .strip_prefix(&d)
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_string();
            let file = SignedFile::parse(&fs::read(&entry).unwrap()).unwrap();
            versions.insert(role.clone(), version(&file) - 1);
            uploads.push(Upload {
                role: RoleName::parse(&role).unwrap(),
                file,
            });
        }
        let state = StoredState {
            versions,
            root: Some(file(&d, "root.json")),
            targets: BTreeMap::from([(RoleName::Targets, targets)]),
            ..StoredState::default()
        };
        let update = validate_update(&gun, &state, uploads, NOW)
            .unwrap_or_else(|e| panic!("{name} ({gun}): {e}"));
        assert!(!update.targets.is_empty());
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
    out.sort();
    out
}

#[test]
fn the_reference_rejections_are_rejections_here() {
    let d = dir("delegation-x509");
    let gun = gun_of(&d);
    let state = StoredState {
        versions: BTreeMap::from([
            ("root".into(), 1),
            ("targets".into(), 1),
            ("targets/releases".into(), 1),
        ]),
        root: Some(file(&d, "root.json")),
        targets: BTreeMap::from([(RoleName::Targets, file(&d, "targets.json"))]),
        ..StoredState::default()
    };
    let bad = dir("bad-signature");
    for (role, name) in [
        ("targets/releases", "releases-body-flipped.json"),
        ("targets/releases", "releases-sig-flipped.json"),
        ("targets", "targets-no-signatures.json"),
    ] {
        let result = validate_update(&gun, &state, vec![upload(&bad, role, name)], NOW);
        match result {
            Err(Error::Rejected {
                kind: Rejection::BadTargets,
                reason,
            }) => {
                let Refusal::Tuf(error) = *reason else {
                    panic!("{name}: {reason:?}");
                };
                let expected = if name.contains("no-signatures") {
                    matches!(&error, TufError::NoSignatures { role } if role == "targets")
                } else {
                    matches!(&error, TufError::ThresholdNotMet { role, .. } if role == "targets/releases")
                };
                assert!(expected, "{name}: {error:?}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}
