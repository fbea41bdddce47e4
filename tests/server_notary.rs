#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end: the real `notary` 0.7 client against a real `notarium serve`
//! process (PROTOCOL.md §9). Each test starts its own server in its own
//! temporary directory and asserts what the user sees (exit codes, printed
//! text) and what the server holds afterwards (a fresh client, or curl).

mod common;
use common::{all_output, sha256_hex};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Curl, Notarium, NotaryClient};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn start(dir: &Path) -> Notarium {
    Notarium::start(&dir.join("server"), json!({}))
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// One row of `notary list`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    digest: String,
    size: u64,
    role: String,
}

/// Parses the table `notary list` prints: name → (digest, size, role).
fn parse_listing(stdout: &str) -> BTreeMap<String, Listed> {
    if stdout.contains("No targets present in this repository.") {
        return BTreeMap::new();
    }
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in stdout.lines() {
        if line.starts_with("----") {
            in_table = true;
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !in_table || fields.is_empty() {
            continue;
        }
        assert_eq!(fields.len(), 4, "unexpected listing row {line:?}");
        rows.insert(
            fields[0].to_string(),
            Listed {
                digest: fields[1].to_string(),
                size: fields[2].parse().unwrap(),
                role: fields[3].to_string(),
            },
        );
    }
    assert!(in_table, "no target table in {stdout:?}");
    rows
}

/// `notary list <gun>` must succeed; returns the parsed table.
fn list(client: &NotaryClient, gun: &str) -> BTreeMap<String, Listed> {
    parse_listing(&client.ok(&["list", gun]))
}

/// The expected listing for `(name, content, role)` triples.
fn expected(entries: &[(&str, &[u8], &str)]) -> BTreeMap<String, Listed> {
    entries
        .iter()
        .map(|(name, content, role)| {
            (
                (*name).to_string(),
                Listed {
                    digest: sha256_hex(content),
                    size: content.len() as u64,
                    role: (*role).to_string(),
                },
            )
        })
        .collect()
}

/// Rows of `notary delegation list`: role name → whole row.
fn delegation_rows(stdout: &str) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in stdout.lines() {
        if line.starts_with("----") {
            in_table = true;
            continue;
        }
        if let (true, Some(role)) = (in_table, line.split_whitespace().next()) {
            rows.insert(role.to_string(), line.to_string());
        }
    }
    rows
}

fn tuf_path(gun: &str, file: &str) -> String {
    format!("/v2/{gun}/_trust/tuf/{file}")
}

/// GET that must answer 200; returns the body.
fn get_ok(curl: &Curl, path: &str) -> Vec<u8> {
    let (status, body) = curl.get(path);
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

fn get_json(curl: &Curl, path: &str) -> Value {
    serde_json::from_slice(&get_ok(curl, path)).unwrap()
}

fn signed_version(file: &Value) -> i64 {
    file["signed"]["version"].as_i64().unwrap()
}

fn role_key_ids(root: &Value, role: &str) -> Vec<String> {
    root["signed"]["roles"][role]["keyids"]
        .as_array()
        .unwrap_or_else(|| panic!("root has no {role} role: {root}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect()
}

fn signature_key_ids(file: &Value) -> Vec<String> {
    file["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyid"].as_str().unwrap().to_string())
        .collect()
}

/// Notary's key ID of a plain public key: sha256 of its canonical JSON
/// (PROTOCOL.md §4.4), computed independently of the server's code.
fn key_id(key: &Value) -> String {
    let keytype = key["keytype"].as_str().unwrap();
    let public = key["keyval"]["public"].as_str().unwrap();
    let canonical = format!(
        "{{\"keytype\":{},\"keyval\":{{\"private\":null,\"public\":{}}}}}",
        serde_json::to_string(keytype).unwrap(),
        serde_json::to_string(public).unwrap()
    );
    sha256_hex(canonical.as_bytes())
}

/// GET with the response headers (`curl -D`): (status, lowercase header
/// name → value, body).
fn get_with_headers(curl: &Curl, path: &str) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    common::require("curl", "curl");
    let body = tempfile::NamedTempFile::new().unwrap();
    let headers = tempfile::NamedTempFile::new().unwrap();
    let output = common::run(
        Command::new("curl")
            .arg("-sS")
            .arg("--cacert")
            .arg(&curl.ca)
            .arg("-D")
            .arg(headers.path())
            .arg("-o")
            .arg(body.path())
            .arg("-w")
            .arg("%{http_code}")
            .arg(format!("{}{path}", curl.base)),
    );
    assert!(output.status.success(), "curl failed");
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    let raw = std::fs::read_to_string(headers.path()).unwrap();
    let map = raw
        .lines()
        .skip(1) // status line
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (status, map, std::fs::read(body.path()).unwrap())
}

fn error_code(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body:?}"));
    value["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn assert_published(stdout: &str, gun: &str) {
    assert!(
        stdout.contains(&format!(
            "Successfully published changes for repository {gun}"
        )),
        "not published: {stdout:?}"
    );
}

// ---------------------------------------------------------------------------
// 1. Client-held snapshot key: add / remove / list over several publishes.
// ---------------------------------------------------------------------------

#[test]
fn publish_add_remove_and_list_with_client_held_snapshot_key() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let notarium = start(dir);
    let curl = notarium.curl();
    let gun = "notarium.test/e2e/basic";
    let owner = notarium.notary(dir.join("owner"));
    let (one, two, three, four) = (
        b"first target\n".as_slice(),
        b"second target\n".as_slice(),
        b"third\n".as_slice(),
        b"fourth target, a bit longer\n".as_slice(),
    );
    let f1 = write_file(dir, "one.txt", one);
    let f2 = write_file(dir, "two.txt", two);
    let f3 = write_file(dir, "three.txt", three);
    let f4 = write_file(dir, "four.txt", four);

    let out = owner.ok(&["init", gun, "-p"]);
    assert_published(&out, gun);
    // The client keeps the snapshot key: a private key file with that role.
    let private = owner.trust_dir.join("private");
    let holds_snapshot_key = std::fs::read_dir(&private)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .any(|pem| pem.contains("role: snapshot"));
    assert!(holds_snapshot_key, "no snapshot key under {private:?}");
    // An initialized but empty repository lists nothing.
    assert!(list(&owner, gun).is_empty());

    // Two auto-published additions.
    let out = owner.ok(&["add", gun, "one", path_str(&f1), "-p"]);
    assert!(
        out.contains("Addition of target \"one\" to repository"),
        "{out}"
    );
    assert_published(&out, gun);
    assert_published(&owner.ok(&["add", gun, "two", path_str(&f2), "-p"]), gun);
    assert_eq!(
        list(&owner, gun),
        expected(&[("one", one, "targets"), ("two", two, "targets")])
    );

    // Staged changes, then one publish.
    owner.ok(&["add", gun, "three", path_str(&f3)]);
    let out = owner.ok(&["remove", gun, "one"]);
    assert!(out.contains("Removal of one from"), "{out}");
    let status = owner.ok(&["status", gun]);
    assert!(
        status.contains("three") && status.contains("one"),
        "{status}"
    );
    let out = owner.ok(&["publish", gun]);
    assert_published(&out, gun);
    assert!(
        owner
            .ok(&["status", gun])
            .contains("No unpublished changes")
    );
    let after_batch = expected(&[("two", two, "targets"), ("three", three, "targets")]);
    assert_eq!(list(&owner, gun), after_batch);

    // The snapshot on the server is signed by the client's key.
    let root = get_json(&curl, &tuf_path(gun, "root.json"));
    let snapshot = get_json(&curl, &tuf_path(gun, "snapshot.json"));
    let snapshot_keys = role_key_ids(&root, "snapshot");
    assert!(
        signature_key_ids(&snapshot)
            .iter()
            .any(|id| snapshot_keys.contains(id))
    );

    // A second client with a fresh trust directory: trust on first use.
    let reader = notarium.notary(dir.join("reader"));
    assert_eq!(list(&reader, gun), after_batch);
    let pinned = reader
        .trust_dir
        .join("tuf")
        .join(gun)
        .join("metadata/root.json");
    assert_eq!(
        std::fs::read(&pinned).unwrap(),
        get_ok(&curl, &tuf_path(gun, "root.json")),
        "the reader pinned the server's root"
    );
    let lookup = reader.ok(&["lookup", gun, "three"]);
    assert!(
        lookup.contains(&format!(
            "three sha256:{} {}",
            sha256_hex(three),
            three.len()
        )),
        "{lookup}"
    );

    // Another publish by the owner; the reader, verifying against its
    // pinned root, sees it.
    owner.ok(&["add", gun, "four", path_str(&f4)]);
    assert_published(&owner.ok(&["publish", gun]), gun);
    assert_eq!(
        list(&reader, gun),
        expected(&[
            ("two", two, "targets"),
            ("three", three, "targets"),
            ("four", four, "targets"),
        ])
    );
    // And an auto-published removal.
    let out = owner.ok(&["remove", gun, "two", "-p"]);
    assert_published(&out, gun);
    let latest = expected(&[("three", three, "targets"), ("four", four, "targets")]);
    assert_eq!(list(&reader, gun), latest);
    assert_eq!(list(&owner, gun), latest);
    let missing = reader.run(&["lookup", gun, "two"]);
    assert!(!missing.status.success());

    // One targets version per publish: the client's initial publish already
    // carries version 2 (notary bumps the fresh version-1 file when it signs
    // it), then one, two, the batch, four, the removal.
    let targets = get_json(&curl, &tuf_path(gun, "targets.json"));
    assert_eq!(signed_version(&targets), 7);
    assert_eq!(
        signed_version(&get_json(&curl, &tuf_path(gun, "root.json"))),
        1
    );
}

// ---------------------------------------------------------------------------
// 2. Server-held snapshot key.
// ---------------------------------------------------------------------------

#[test]
fn server_managed_snapshot_key_after_rotation() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let notarium = start(dir);
    let curl = notarium.curl();
    let gun = "notarium.test/e2e/server-snapshot";
    let owner = notarium.notary(dir.join("owner"));
    let (alpha, beta) = (b"alpha\n".as_slice(), b"beta beta\n".as_slice());
    let fa = write_file(dir, "alpha", alpha);
    let fb = write_file(dir, "beta", beta);

    // init without publishing: nothing on the server yet.
    owner.ok(&["init", gun]);
    let (status, body) = curl.get(&tuf_path(gun, "root.json"));
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "METADATA_NOT_FOUND");

    // The rotation does the initial publish (root + targets, no snapshot).
    let out = owner.ok(&["key", "rotate", gun, "snapshot", "-r"]);
    assert!(
        out.contains(&format!(
            "Successfully rotated snapshot key for repository {gun}"
        )),
        "{out}"
    );
    let root = get_json(&curl, &tuf_path(gun, "root.json"));
    let snapshot_key: Value =
        serde_json::from_slice(&get_ok(&curl, &tuf_path(gun, "snapshot.key"))).unwrap();
    let server_key_id = key_id(&snapshot_key);
    assert_eq!(snapshot_key["keytype"], "ecdsa");
    assert_eq!(
        role_key_ids(&root, "snapshot"),
        vec![server_key_id.clone()],
        "root lists the server's snapshot key"
    );
    // GET snapshot.key is stable (it does not mint a new key once rooted).
    let again: Value =
        serde_json::from_slice(&get_ok(&curl, &tuf_path(gun, "snapshot.key"))).unwrap();
    assert_eq!(key_id(&again), server_key_id);

    // Targets added after the rotation: the client uploads no snapshot,
    // the server signs it.
    owner.ok(&["add", gun, "alpha", path_str(&fa)]);
    owner.ok(&["add", gun, "beta", path_str(&fb)]);
    assert_published(&owner.ok(&["publish", gun]), gun);
    let snapshot = get_json(&curl, &tuf_path(gun, "snapshot.json"));
    assert_eq!(signature_key_ids(&snapshot), vec![server_key_id]);
    let targets_bytes = get_ok(&curl, &tuf_path(gun, "targets.json"));
    let listed_hash = snapshot["signed"]["meta"]["targets"]["hashes"]["sha256"]
        .as_str()
        .unwrap();
    use base64::Engine as _;
    assert_eq!(
        hex::encode(
            base64::engine::general_purpose::STANDARD
                .decode(listed_hash)
                .unwrap()
        ),
        sha256_hex(&targets_bytes),
        "the server's snapshot lists the current targets.json"
    );
    assert_eq!(
        snapshot["signed"]["meta"]["targets"]["length"],
        json!(targets_bytes.len())
    );
    let want = expected(&[("alpha", alpha, "targets"), ("beta", beta, "targets")]);
    assert_eq!(list(&owner, gun), want);
    assert_eq!(list(&notarium.notary(dir.join("fresh")), gun), want);

    // More publishes keep working with the server-held key.
    assert_published(&owner.ok(&["remove", gun, "alpha", "-p"]), gun);
    assert_eq!(
        list(&notarium.notary(dir.join("fresh2")), gun),
        expected(&[("beta", beta, "targets")])
    );
}

/// notary-server accepts a publish that changes nothing (the client then
/// posts an empty multipart body when the server holds the snapshot key) and
/// re-signs snapshot and timestamp; `notary publish` prints success.
#[test]
fn publish_with_nothing_staged_on_server_managed_snapshot() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let notarium = start(dir);
    let curl = notarium.curl();
    let gun = "notarium.test/e2e/empty-publish";
    let owner = notarium.notary(dir.join("owner"));

    owner.ok(&["init", gun]);
    owner.ok(&["key", "rotate", gun, "snapshot", "-r"]);
    let before = signed_version(&get_json(&curl, &tuf_path(gun, "snapshot.json")));

    let output = owner.run(&["publish", gun]);
    let text = all_output(&output);
    assert!(
        output.status.success(),
        "an empty publish must succeed as with notary-server: {text}\nserver log:\n{}",
        notarium
            .log()
            .lines()
            .filter(|l| l.contains("POST"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_published(&text, gun);
    let after = signed_version(&get_json(&curl, &tuf_path(gun, "snapshot.json")));
    assert!(after >= before);
    assert!(list(&notarium.notary(dir.join("fresh")), gun).is_empty());
}

// ---------------------------------------------------------------------------
// 3. Delegations with x509 certificate keys.
// ---------------------------------------------------------------------------

#[test]
fn delegations_with_certificate_keys() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let notarium = start(dir);
    let curl = notarium.curl();
    let gun = "notarium.test/e2e/delegations";
    let owner = notarium.notary(dir.join("owner"));
    let (release, qa, stray) = (
        b"release one\n".as_slice(),
        b"qa build\n".as_slice(),
        b"not a qa file\n".as_slice(),
    );
    let f_release = write_file(dir, "release", release);
    let f_qa = write_file(dir, "qa", qa);
    let f_stray = write_file(dir, "stray", stray);
    let (rel_key, rel_cert) = common::make_delegation_key(dir, "releases");
    let (qa_key, qa_cert) = common::make_delegation_key(dir, "qa");

    owner.ok(&["init", gun, "-p"]);
    // Delegates may not hold the snapshot key: hand it to the server.
    owner.ok(&["key", "rotate", gun, "snapshot", "-r"]);

    // targets/releases, all paths.
    owner.ok(&[
        "key",
        "import",
        path_str(&rel_key),
        "--role",
        "targets/releases",
    ]);
    let out = owner.ok(&[
        "delegation",
        "add",
        "-p",
        gun,
        "targets/releases",
        path_str(&rel_cert),
        "--all-paths",
    ]);
    assert!(
        out.contains("Addition of delegation role targets/releases with keys"),
        "{out}"
    );
    assert_published(&out, gun);
    assert_published(
        &owner.ok(&[
            "add",
            gun,
            "rel-1",
            path_str(&f_release),
            "--roles",
            "targets/releases",
            "-p",
        ]),
        gun,
    );
    assert_eq!(
        list(&owner, gun),
        expected(&[("rel-1", release, "targets/releases")])
    );

    // The delegation is served by its slash-containing name and is signed
    // by the certificate's key.
    let releases = get_json(&curl, &tuf_path(gun, "targets/releases.json"));
    assert!(releases["signed"]["targets"]["rel-1"].is_object());
    let targets = get_json(&curl, &tuf_path(gun, "targets.json"));
    let delegated = &targets["signed"]["delegations"];
    let role = delegated["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "targets/releases")
        .unwrap();
    let cert_key_id = role["keyids"][0].as_str().unwrap();
    assert_eq!(delegated["keys"][cert_key_id]["keytype"], "ecdsa-x509");
    assert_eq!(signature_key_ids(&releases), vec![cert_key_id.to_string()]);

    // targets/qa, restricted to qa/.
    owner.ok(&["key", "import", path_str(&qa_key), "--role", "targets/qa"]);
    assert_published(
        &owner.ok(&[
            "delegation",
            "add",
            "-p",
            gun,
            "targets/qa",
            path_str(&qa_cert),
            "--paths",
            "qa/",
        ]),
        gun,
    );
    assert_published(
        &owner.ok(&[
            "add",
            gun,
            "qa/x",
            path_str(&f_qa),
            "--roles",
            "targets/qa",
            "-p",
        ]),
        gun,
    );

    // A target outside qa/ cannot go into targets/qa: the client refuses it
    // when applying the change at publish time and keeps it staged.
    let refused = owner.run(&[
        "add",
        gun,
        "outside",
        path_str(&f_stray),
        "--roles",
        "targets/qa",
        "-p",
    ]);
    let text = all_output(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains("Could not add all targets"), "{text}");
    let status = owner.ok(&["status", gun]);
    assert!(status.contains("outside"), "still staged: {status}");
    owner.ok(&["reset", gun, "--all"]);

    let both = expected(&[
        ("rel-1", release, "targets/releases"),
        ("qa/x", qa, "targets/qa"),
    ]);
    assert_eq!(list(&owner, gun), both);
    assert_eq!(list(&notarium.notary(dir.join("fresh1")), gun), both);
    let qa_file = get_json(&curl, &tuf_path(gun, "targets/qa.json"));
    assert!(qa_file["signed"]["targets"].get("outside").is_none());

    // Both delegations are listed, with their paths.
    let rows =
        delegation_rows(
            &notarium
                .notary(dir.join("fresh2"))
                .ok(&["delegation", "list", gun]),
        );
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>(),
        ["targets/qa", "targets/releases"]
    );
    assert!(rows["targets/qa"].contains("qa/"), "{rows:?}");
    assert!(rows["targets/releases"].contains("<all paths>"), "{rows:?}");

    // Whole-role removal asks for confirmation; -y answers it.
    let out = owner.ok(&["delegation", "remove", gun, "targets/qa", "-p", "-y"]);
    assert!(out.contains("Confirmed `yes` from flag"), "{out}");
    assert!(
        out.contains("Forced removal (including all keys and paths) of delegation role targets/qa"),
        "{out}"
    );
    assert_published(&out, gun);
    let fresh = notarium.notary(dir.join("fresh3"));
    let rows = delegation_rows(&fresh.ok(&["delegation", "list", gun]));
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>(),
        ["targets/releases"]
    );
    assert_eq!(
        list(&fresh, gun),
        expected(&[("rel-1", release, "targets/releases")])
    );
}

// ---------------------------------------------------------------------------
// 4. Key rotations, witness, delete.
// ---------------------------------------------------------------------------

#[test]
fn key_rotations_witness_and_remote_delete() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let notarium = start(dir);
    let curl = notarium.curl();
    let gun = "notarium.test/e2e/rotations";
    let owner = notarium.notary(dir.join("owner"));
    let content = b"rotating payload\n".as_slice();
    let file = write_file(dir, "payload", content);
    let want = expected(&[("payload", content, "targets")]);

    owner.ok(&["init", gun, "-p"]);
    owner.ok(&["add", gun, "payload", path_str(&file), "-p"]);
    // A reader that pins root version 1 before any rotation.
    let early = notarium.notary(dir.join("early"));
    assert_eq!(list(&early, gun), want);
    let root_v1 = get_json(&curl, &tuf_path(gun, "root.json"));

    let rotated = |role: &str, out: &str| {
        assert!(
            out.contains(&format!(
                "Successfully rotated {role} key for repository {gun}"
            )),
            "{out}"
        );
    };

    // Snapshot to the server.
    rotated(
        "snapshot",
        &owner.ok(&["key", "rotate", gun, "snapshot", "-r"]),
    );
    let snapshot_key: Value =
        serde_json::from_slice(&get_ok(&curl, &tuf_path(gun, "snapshot.key"))).unwrap();
    let root_v2 = get_json(&curl, &tuf_path(gun, "root.json"));
    assert_eq!(
        role_key_ids(&root_v2, "snapshot"),
        vec![key_id(&snapshot_key)]
    );
    assert_ne!(
        role_key_ids(&root_v1, "snapshot"),
        role_key_ids(&root_v2, "snapshot")
    );

    // New server timestamp key; the next timestamp is signed with it.
    rotated(
        "timestamp",
        &owner.ok(&["key", "rotate", gun, "timestamp", "-r"]),
    );
    let root_v3 = get_json(&curl, &tuf_path(gun, "root.json"));
    let timestamp_keys = role_key_ids(&root_v3, "timestamp");
    assert_ne!(role_key_ids(&root_v2, "timestamp"), timestamp_keys);
    let timestamp_key: Value =
        serde_json::from_slice(&get_ok(&curl, &tuf_path(gun, "timestamp.key"))).unwrap();
    assert_eq!(timestamp_keys, vec![key_id(&timestamp_key)]);
    let timestamp = get_json(&curl, &tuf_path(gun, "timestamp.json"));
    assert_eq!(signature_key_ids(&timestamp), timestamp_keys);

    // New local targets key.
    rotated("targets", &owner.ok(&["key", "rotate", gun, "targets"]));
    let root_v4 = get_json(&curl, &tuf_path(gun, "root.json"));
    assert_ne!(
        role_key_ids(&root_v3, "targets"),
        role_key_ids(&root_v4, "targets")
    );
    let targets = get_json(&curl, &tuf_path(gun, "targets.json"));
    assert_eq!(
        signature_key_ids(&targets),
        role_key_ids(&root_v4, "targets"),
        "targets re-signed with the new key"
    );

    // Root: asks "(yes/no)" on stdin; "no" aborts, "yes" rotates.
    let aborted =
        common::run_with_stdin(&mut owner.command(&["key", "rotate", gun, "root"]), "no\n");
    assert!(aborted.status.success());
    assert!(all_output(&aborted).contains("Aborting action."));
    assert_eq!(
        signed_version(&get_json(&curl, &tuf_path(gun, "root.json"))),
        4
    );
    let confirmed =
        common::run_with_stdin(&mut owner.command(&["key", "rotate", gun, "root"]), "yes\n");
    let text = all_output(&confirmed);
    assert!(confirmed.status.success(), "{text}");
    assert!(text.contains("Are you sure you want to proceed?"), "{text}");
    rotated("root", &text);
    let root_v5 = get_json(&curl, &tuf_path(gun, "root.json"));
    assert_eq!(signed_version(&root_v5), 5);
    assert_ne!(
        role_key_ids(&root_v4, "root"),
        role_key_ids(&root_v5, "root")
    );

    // Every root version is served by version, as a consistent file.
    for version in 1..=5 {
        let (status, headers, body) =
            get_with_headers(&curl, &tuf_path(gun, &format!("{version}.root.json")));
        assert_eq!(status, 200, "{version}.root.json");
        let root: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(signed_version(&root), version);
        assert_eq!(
            headers.get("cache-control").map(String::as_str),
            Some("public, max-age=2592000, s-maxage=2592000")
        );
    }
    assert_eq!(
        get_ok(&curl, &tuf_path(gun, "5.root.json")),
        get_ok(&curl, &tuf_path(gun, "root.json"))
    );
    let (status, body) = curl.get(&tuf_path(gun, "6.root.json"));
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "METADATA_NOT_FOUND");

    // Clients still verify: a fresh one (TOFU on root 5), and the early one
    // walking the rotation chain from its pinned root 1.
    assert_eq!(list(&notarium.notary(dir.join("fresh")), gun), want);
    assert_eq!(list(&early, gun), want);

    // Witness: re-sign targets unchanged, version + 1.
    let before = signed_version(&get_json(&curl, &tuf_path(gun, "targets.json")));
    let out = owner.ok(&["witness", gun, "targets", "-p"]);
    assert!(out.contains("successfully marked for witnessing"), "{out}");
    assert_published(&out, gun);
    let witnessed = get_json(&curl, &tuf_path(gun, "targets.json"));
    assert_eq!(signed_version(&witnessed), before + 1);
    assert_eq!(
        witnessed["signed"]["targets"], targets["signed"]["targets"],
        "witnessing changes no target"
    );
    assert_eq!(
        list(&notarium.notary(dir.join("fresh-after-witness")), gun),
        want
    );

    // Delete local and remote trust data.
    let out = owner.ok(&["delete", gun, "--remote"]);
    assert!(
        out.contains(&format!(
            "Successfully deleted local and remote trust data for repository {gun}"
        )),
        "{out}"
    );
    for file in [
        "root.json",
        "targets.json",
        "snapshot.json",
        "timestamp.json",
        "1.root.json",
    ] {
        let (status, body) = curl.get(&tuf_path(gun, file));
        assert_eq!(status, 404, "{file} after delete");
        assert_eq!(error_code(&body), "METADATA_NOT_FOUND");
    }
    let gone = notarium
        .notary(dir.join("after-delete"))
        .run(&["list", gun]);
    let text = all_output(&gone);
    assert_eq!(gone.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("does not have trust data for {gun}")),
        "{text}"
    );
    assert!(!owner.trust_dir.join("tuf").join(gun).exists());
}

// ---------------------------------------------------------------------------
// 5. Restart on the same data.
// ---------------------------------------------------------------------------

#[test]
fn state_and_server_keys_survive_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut notarium = start(dir);
    let gun = "notarium.test/e2e/restart";
    let owner = notarium.notary(dir.join("owner"));
    let (a, b, c) = (
        b"before restart A\n".as_slice(),
        b"before restart B\n".as_slice(),
        b"after restart\n".as_slice(),
    );
    let fa = write_file(dir, "a", a);
    let fb = write_file(dir, "b", b);
    let fc = write_file(dir, "c", c);

    owner.ok(&["init", gun, "-p"]);
    owner.ok(&["add", gun, "a", path_str(&fa), "-p"]);
    // The server now holds both the timestamp and the snapshot key.
    owner.ok(&["key", "rotate", gun, "snapshot", "-r"]);
    owner.ok(&["add", gun, "b", path_str(&fb), "-p"]);
    let curl = notarium.curl();
    let root_before = get_ok(&curl, &tuf_path(gun, "root.json"));
    let timestamp_before = get_ok(&curl, &tuf_path(gun, "timestamp.json"));
    let snapshot_key_before = key_id(&get_json(&curl, &tuf_path(gun, "snapshot.key")));
    let timestamp_key_before = key_id(&get_json(&curl, &tuf_path(gun, "timestamp.key")));
    assert!(
        notarium.dir.join("keys/passphrase").is_file(),
        "the sealing passphrase lives in keys/"
    );
    let url_before = notarium.url.clone();

    notarium.restart();
    assert_eq!(notarium.url, url_before, "same port after restart");
    let curl = notarium.curl();
    assert_eq!(get_ok(&curl, &tuf_path(gun, "root.json")), root_before);
    assert_eq!(
        get_ok(&curl, &tuf_path(gun, "timestamp.json")),
        timestamp_before,
        "the current timestamp is still valid: served as stored"
    );
    assert_eq!(
        key_id(&get_json(&curl, &tuf_path(gun, "snapshot.key"))),
        snapshot_key_before
    );
    assert_eq!(
        key_id(&get_json(&curl, &tuf_path(gun, "timestamp.key"))),
        timestamp_key_before
    );

    let both = expected(&[("a", a, "targets"), ("b", b, "targets")]);
    assert_eq!(list(&notarium.notary(dir.join("fresh1")), gun), both);

    // The pre-restart client publishes: the server signs snapshot and
    // timestamp with the keys it unsealed from the database.
    assert_published(&owner.ok(&["add", gun, "c", path_str(&fc), "-p"]), gun);
    let all = expected(&[
        ("a", a, "targets"),
        ("b", b, "targets"),
        ("c", c, "targets"),
    ]);
    assert_eq!(list(&owner, gun), all);
    assert_eq!(list(&notarium.notary(dir.join("fresh2")), gun), all);
    let root = get_json(&curl, &tuf_path(gun, "root.json"));
    let snapshot = get_json(&curl, &tuf_path(gun, "snapshot.json"));
    let timestamp = get_json(&curl, &tuf_path(gun, "timestamp.json"));
    assert_eq!(
        signature_key_ids(&snapshot),
        role_key_ids(&root, "snapshot")
    );
    assert_eq!(
        signature_key_ids(&timestamp),
        role_key_ids(&root, "timestamp")
    );
}

// ---------------------------------------------------------------------------
// 6. HTTP details: cache headers, errors, health, metrics, changefeed.
// ---------------------------------------------------------------------------

#[test]
fn http_cache_headers_errors_and_changefeed() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let notarium = start(dir);
    let curl = notarium.curl();
    let gun = "notarium.test/e2e/http";
    let owner = notarium.notary(dir.join("owner"));
    let file = write_file(dir, "f", b"http details\n");
    owner.ok(&["init", gun, "-p"]);
    owner.ok(&["add", gun, "f", path_str(&file), "-p"]);

    const CURRENT: &str = "public, max-age=300, s-maxage=300, must-revalidate";
    const CONSISTENT: &str = "public, max-age=2592000, s-maxage=2592000";

    for role in ["root", "targets", "snapshot", "timestamp"] {
        let (status, headers, body) =
            get_with_headers(&curl, &tuf_path(gun, &format!("{role}.json")));
        assert_eq!(status, 200, "{role}.json");
        assert!(!body.is_empty());
        assert_eq!(
            headers.get("cache-control").map(String::as_str),
            Some(CURRENT),
            "{role}.json: {headers:?}"
        );
        assert!(!headers.contains_key("pragma"), "{headers:?}");
        let modified = headers
            .get("last-modified")
            .unwrap_or_else(|| panic!("{role}.json has no Last-Modified: {headers:?}"));
        assert!(modified.ends_with(" GMT"), "{modified}");
        let when = httpdate::parse_http_date(modified).unwrap();
        let age = std::time::SystemTime::now()
            .duration_since(when)
            .unwrap_or_default();
        assert!(age.as_secs() < 600, "{modified} is not recent");
    }

    // Consistent (immutable) addresses: by version and by checksum.
    let (status, headers, _) = get_with_headers(&curl, &tuf_path(gun, "1.root.json"));
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("cache-control").map(String::as_str),
        Some(CONSISTENT)
    );
    assert!(headers.contains_key("last-modified"));
    let targets = get_ok(&curl, &tuf_path(gun, "targets.json"));
    let checksum = sha256_hex(&targets);
    let (status, headers, body) =
        get_with_headers(&curl, &tuf_path(gun, &format!("targets.{checksum}.json")));
    assert_eq!(status, 200);
    assert_eq!(body, targets, "served verbatim by checksum");
    assert_eq!(
        headers.get("cache-control").map(String::as_str),
        Some(CONSISTENT)
    );
    let (status, _, body) = get_with_headers(
        &curl,
        &tuf_path(gun, &format!("targets.{}.json", "0".repeat(64))),
    );
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "METADATA_NOT_FOUND");

    // Unknown roles and repositories.
    for path in [
        tuf_path(gun, "targets/unknown.json"),
        tuf_path(gun, "nonsense.json"),
        tuf_path("notarium.test/e2e/never-published", "root.json"),
    ] {
        let (status, headers, body) = get_with_headers(&curl, &path);
        assert_eq!(status, 404, "{path}");
        assert_eq!(error_code(&body), "METADATA_NOT_FOUND", "{path}");
        assert!(
            headers
                .get("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{headers:?}"
        );
        assert!(
            !headers.contains_key("cache-control"),
            "no caching of errors"
        );
    }

    // Ping, health, metrics.
    let (status, body) = curl.get("/v2/");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({}));
    let (status, body) = curl.get("/_notary_server/health");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({}));
    let (status, body) = curl.get("/metrics");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(body).unwrap();
    assert!(
        metrics.contains("notarium_http_requests_total"),
        "{metrics}"
    );
    // The database's state, measured at the scrape.
    assert!(
        metrics.contains("notarium_db_up 1")
            && metrics.contains("notarium_db_ping_seconds ")
            && metrics.contains(r#"notarium_db_pool_connections{state="idle"}"#),
        "{metrics}"
    );

    // Changefeed: one update per publish, newest matching the timestamp.
    let timestamp = get_ok(&curl, &tuf_path(gun, "timestamp.json"));
    let timestamp_version = signed_version(&serde_json::from_slice(&timestamp).unwrap());
    let feed = get_json(&curl, &format!("/v2/{gun}/_trust/changefeed?records=10"));
    let records = feed["records"].as_array().unwrap();
    assert_eq!(feed["count"], json!(records.len()));
    assert_eq!(records.len(), 2, "{feed}");
    for record in records {
        assert_eq!(record["GUN"], gun);
        assert_eq!(record["Category"], "update");
        assert!(record["ID"].is_string(), "{record}");
    }
    let newest = records.last().unwrap();
    assert_eq!(newest["SHA256"], json!(sha256_hex(&timestamp)));
    assert_eq!(newest["Version"], json!(timestamp_version));
    // Paging: the newest record only, backwards from the end.
    let last = get_json(
        &curl,
        &format!("/v2/{gun}/_trust/changefeed?records=-1&change_id=-1"),
    );
    assert_eq!(last["count"], 1);
    assert_eq!(last["records"][0]["ID"], newest["ID"]);
    // The global feed holds the same records.
    let global = get_json(&curl, "/v2/_trust/changefeed?records=10");
    assert!(
        global["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ID"] == newest["ID"])
    );

    let (status, _, body) = get_with_headers(&curl, &format!("/v2/{gun}/_trust/changefeed"));
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "INVALID_PARAMETERS");
    let (status, body) = curl.get(&format!("/v2/{gun}/_trust/changefeed?records=ten"));
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "INVALID_PARAMETERS");

    // A deletion shows up in the feed.
    owner.ok(&["delete", gun, "--remote"]);
    let feed = get_json(&curl, &format!("/v2/{gun}/_trust/changefeed?records=10"));
    let records = feed["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{feed}");
    assert_eq!(records[2]["Category"], "deletion");
    assert_eq!(records[2]["GUN"], gun);
}
