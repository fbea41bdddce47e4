#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end with the real `notary` 0.7 client and a real `notarium serve`:
//! DELETE retires the repository's server keys (a replayed old root is
//! refused, a new `init` gets new keys), the audit trail records who did
//! what, and the server refuses to start without the passphrase its keys
//! were sealed with.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Notarium, all_output, run};
use serde_json::{Value, json};

fn tuf_path(gun: &str, file: &str) -> String {
    format!("/v2/{gun}/_trust/tuf/{file}")
}

fn get_ok(curl: &common::Curl, path: &str) -> Vec<u8> {
    let (status, body) = curl.get(path);
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

fn role_key_ids(root: &[u8], role: &str) -> Vec<String> {
    let root: Value = serde_json::from_slice(root).unwrap();
    root["signed"]["roles"][role]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect()
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `notarium <args>` against the test server's configuration and data.
fn notarium_cli(server: &Notarium, args: &[&str]) -> std::process::Output {
    run(Command::new(env!("CARGO_BIN_EXE_notarium"))
        .args(args)
        .arg("--config")
        .arg(&server.config)
        .current_dir(&server.dir))
}

#[test]
fn delete_retires_server_keys_and_refuses_the_old_root() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let server = Notarium::start(&dir.join("server"), json!({}));
    let curl = server.curl();
    let gun = "notarium.test/e2e/deleted";
    let owner = server.notary(dir.join("owner"));
    let payload = save(dir, "payload", b"payload before delete\n");

    owner.ok(&["init", gun, "-p"]);
    owner.ok(&["add", gun, "v1", payload.to_str().unwrap(), "-p"]);
    let old_root = get_ok(&curl, &tuf_path(gun, "root.json"));
    let old_targets = get_ok(&curl, &tuf_path(gun, "targets.json"));
    let old_snapshot = get_ok(&curl, &tuf_path(gun, "snapshot.json"));
    let old_timestamp_keys = role_key_ids(&old_root, "timestamp");
    // A reader that pins the old root.
    let early = server.notary(dir.join("early"));
    assert!(early.ok(&["list", gun]).contains("v1"));

    let out = owner.ok(&["delete", gun, "--remote"]);
    assert!(
        out.contains("Successfully deleted local and remote trust data"),
        "{out}"
    );

    // Replaying the deleted repository's files: refused with the reason,
    // and nothing is stored.
    let replay = [
        ("root", save(dir, "old-root.json", &old_root)),
        ("targets", save(dir, "old-targets.json", &old_targets)),
        ("snapshot", save(dir, "old-snapshot.json", &old_snapshot)),
    ];
    let parts: Vec<(&str, &Path)> = replay.iter().map(|(r, p)| (*r, p.as_path())).collect();
    let (status, body) = curl.publish(gun, &parts);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{text}");
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["errors"][0]["code"], "INVALID_UPDATE", "{text}");
    assert_eq!(error["errors"][0]["detail"]["Name"], "ErrBadRoot", "{text}");
    let message = error["errors"][0]["detail"]["Error"]["Msg"]
        .as_str()
        .unwrap();
    assert!(
        message.contains(&format!(
            "root lists timestamp key {} which was retired when this repository was deleted on",
            old_timestamp_keys[0]
        )),
        "{message}"
    );
    assert!(message.contains("notary init"), "{message}");
    for file in [
        "root.json",
        "targets.json",
        "snapshot.json",
        "timestamp.json",
    ] {
        assert_eq!(curl.get(&tuf_path(gun, file)).0, 404, "{file} after replay");
    }

    // A new repository of the same name gets new server keys and works.
    owner.ok(&["init", gun, "-p"]);
    owner.ok(&["add", gun, "v2", payload.to_str().unwrap(), "-p"]);
    let new_root = get_ok(&curl, &tuf_path(gun, "root.json"));
    let new_timestamp_keys = role_key_ids(&new_root, "timestamp");
    assert_ne!(new_timestamp_keys, old_timestamp_keys);
    let listed = server.notary(dir.join("reader")).ok(&["list", gun]);
    assert!(listed.contains("v2") && !listed.contains("v1 "), "{listed}");
    // The early reader's pinned root did not sign the new one: it must drop
    // its local trust data (what README tells owners of a deleted
    // repository), then it trusts the new repository.
    let pinned = early.run(&["list", gun]);
    assert!(!pinned.status.success(), "{}", all_output(&pinned));
    assert!(
        all_output(&pinned).contains("could not rotate trust to a new trusted root"),
        "{}",
        all_output(&pinned)
    );
    early.ok(&["delete", gun]);
    let listed = early.ok(&["list", gun]);
    assert!(listed.contains("v2"), "{listed}");

    // The audit trail, newest first: publishes, the delete, publishes.
    let output = notarium_cli(&server, &["audit", gun, "--json"]);
    assert!(output.status.success(), "{}", all_output(&output));
    let records: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    let delete_at = actions.iter().position(|a| *a == "delete").unwrap();
    assert!(delete_at > 0, "{actions:?}");
    assert!(actions[..delete_at].iter().all(|a| *a == "publish"));
    assert!(actions[delete_at + 1..].iter().all(|a| *a == "publish"));
    assert!(records.iter().all(|r| r["subject"] == "anonymous"));
    assert!(records.iter().all(|r| r["gun"] == gun));
    let retired: Vec<&str> = records[delete_at]["key_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        retired.contains(&old_timestamp_keys[0].as_str()),
        "{retired:?}"
    );
    // Every publish names the roles and versions it stored.
    let newest_roles: Vec<String> = records[0]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap().to_string())
        .collect();
    assert!(
        newest_roles.contains(&"timestamp".to_string()),
        "{newest_roles:?}"
    );
    let text = notarium_cli(&server, &["audit", gun, "--limit", "1"]);
    let text = common::stdout(&text);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("publish") && text.contains("anonymous"),
        "{text}"
    );

    // A SQLite database's files hold sealed keys: owner-only. On
    // PostgreSQL there is no such file: the server really used the database.
    let sqlite = format!("{}/data/notarium.db", server.dir.display());
    match common::backend() {
        common::Backend::Sqlite => {
            for suffix in ["", "-wal", "-shm"] {
                let path = format!("{sqlite}{suffix}");
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{path}");
            }
        }
        common::Backend::Postgres => assert!(!Path::new(&sqlite).exists(), "{sqlite}"),
    }
}

/// Runs `notarium serve` on the stopped server's folder expecting it to
/// refuse to start; returns what it printed. Bounded by `timeout`, so a
/// server that starts fails the test instead of hanging it.
fn refused_start(config: &Path, dir: &Path) -> String {
    let output = run(Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_notarium"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .env_remove("NOTARIUM_KEY_PASSPHRASE"));
    let text = all_output(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    text
}

#[test]
fn missing_or_wrong_passphrase_refuses_to_start() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let server_dir = dir.join("server");
    let server = Notarium::start(&server_dir, json!({}));
    let gun = "notarium.test/e2e/passphrase";
    server.notary(dir.join("owner")).ok(&["init", gun, "-p"]);
    let root = get_ok(&server.curl(), &tuf_path(gun, "root.json"));
    let config = server.config.clone();
    let passphrase_file = server_dir.join("keys/passphrase");
    let passphrase = std::fs::read(&passphrase_file).unwrap();
    // Stops the process.
    drop(server);

    // Without its passphrase file, and no NOTARIUM_KEY_PASSPHRASE.
    std::fs::remove_file(&passphrase_file).unwrap();
    let text = refused_start(&config, &server_dir);
    assert!(
        text.contains("NOTARIUM_KEY_PASSPHRASE") && text.contains("keys/passphrase"),
        "{text}"
    );
    assert!(text.contains("will not generate a new one"), "{text}");
    assert!(
        !passphrase_file.exists(),
        "no new passphrase over existing keys"
    );

    // A wrong passphrase is named as such.
    std::fs::write(&passphrase_file, b"not the passphrase\n").unwrap();
    let text = refused_start(&config, &server_dir);
    assert!(text.contains("does not open the server keys"), "{text}");
    assert!(text.contains("NOTARIUM_KEY_PASSPHRASE"), "{text}");

    // The right one starts, and the keys it sealed still sign.
    std::fs::write(&passphrase_file, &passphrase).unwrap();
    let server = Notarium::start(&server_dir, json!({}));
    assert_eq!(get_ok(&server.curl(), &tuf_path(gun, "root.json")), root);
    let payload = save(dir, "payload", b"signed after restart\n");
    let out =
        server
            .notary(dir.join("owner"))
            .ok(&["add", gun, "p", payload.to_str().unwrap(), "-p"]);
    assert!(out.contains("Successfully published changes"), "{out}");
}

/// `notarium backup` copies the SQLite database while the server runs: a
/// server started on the copy serves the repository, and the admin commands
/// read it; an existing file is refused and left alone.
#[test]
fn backup_while_serving_then_serve_the_copy() {
    let work = tempfile::tempdir().unwrap();
    // SQLite's online backup: SQLite in both passes of the suite.
    let server = Notarium::start(
        &work.path().join("server"),
        json!({"storage": common::sqlite_storage()}),
    );
    let gun = "notarium.test/backup/app";
    let owner = server.notary(work.path().join("owner"));
    owner.ok(&["init", gun, "-p"]);
    let copy = work.path().join("copy.db");
    let out = notarium_cli(&server, &["backup", copy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("backed up to"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&copy).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let again = notarium_cli(&server, &["backup", copy.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        all_output(&again).contains("already exists"),
        "{}",
        all_output(&again)
    );

    // The copy is a working database: its audit trail has the publish.
    let audit = run(Command::new(env!("CARGO_BIN_EXE_notarium"))
        .args(["audit", gun, "--db-url"])
        .arg(&copy));
    assert!(audit.status.success(), "{}", all_output(&audit));
    assert!(String::from_utf8_lossy(&audit.stdout).contains("publish"));
}
