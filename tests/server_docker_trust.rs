#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end: the real docker CLI's `docker trust` commands (PROTOCOL.md
//! §9.4–§9.5) against a real `notarium serve` process.
//!
//! How docker is pointed at notarium (exactly what a user does, see
//! `DockerUser::new`/`DockerUser::command`):
//! * `DOCKER_CONTENT_TRUST_SERVER=https://127.0.0.1:PORT`;
//! * notarium's CA copied to `$DOCKER_CONFIG/tls/127.0.0.1:PORT/ca.crt`;
//! * `DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE` / `DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE`
//!   answer the passphrase prompts; a private `HOME` and `DOCKER_CONFIG` per
//!   user keep the real `~/.docker` untouched.
//!
//! None of the commands used here needs the Docker daemon or the registry:
//! every docker command runs with `DOCKER_HOST` pointing at a socket that
//! does not exist, and the GUNs' registry host is a listening socket that the
//! tests check nobody connected to. (`docker trust sign` of an unsigned tag
//! pushes the local image through the daemon, so tags are signed with the
//! notary CLI on docker's trust directory, as the fixtures README does.)

mod common;
use common::{sha256_hex, stderr, stdout};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use common::{Notarium, NotaryClient, require, run};
use serde_json::{Value, json};

const ROOT_PASSPHRASE: &str = "docker root passphrase";
const REPOSITORY_PASSPHRASE: &str = "docker repository passphrase";
/// The fixture's tag digest (17 bytes of content).
const DIGEST: &str = "79a3370aaa3292ba7c00bbe63b904297b6b65f808953334e866b9102131590e9";
const OTHER_DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A TCP port standing in for the registry in GUNs (`127.0.0.1:PORT/…`):
/// nothing may connect to it, since `docker trust` only talks to the trust
/// server for these commands.
struct FakeRegistry {
    listener: TcpListener,
}

impl FakeRegistry {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Self { listener }
    }

    fn host(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    fn assert_untouched(&self) {
        match self.listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("something ({peer}) connected to the registry host"),
            Err(e) => panic!("accept on the fake registry: {e}"),
        }
    }
}

/// One docker CLI user with their own HOME and DOCKER_CONFIG, pointed at
/// notarium.
struct DockerUser {
    dir: PathBuf,
    config: PathBuf,
    home: PathBuf,
    server: String,
    ca: PathBuf,
}

impl DockerUser {
    fn new(dir: &Path, notarium: &Notarium) -> Self {
        require("docker", "docker.io");
        let home = dir.join("home");
        let config = dir.join("docker-config");
        std::fs::create_dir_all(&home).unwrap();
        // docker looks for the trust server's CA in
        // $DOCKER_CONFIG/tls/<host:port>/ca.crt.
        let tls = config.join("tls").join(notarium.addr.to_string());
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::copy(&notarium.ca, tls.join("ca.crt")).unwrap();
        Self {
            dir: dir.to_path_buf(),
            config,
            home,
            server: notarium.url.clone(),
            ca: notarium.ca.clone(),
        }
    }

    fn trust_dir(&self) -> PathBuf {
        self.config.join("trust")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker");
        command
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_CONTENT_TRUST_SERVER", &self.server)
            .env("DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE", ROOT_PASSPHRASE)
            .env(
                "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
                REPOSITORY_PASSPHRASE,
            )
            // No daemon: every command here must work without one.
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.join("no-daemon.sock").display()),
            )
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_CONTENT_TRUST")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        common::run_with_stdin(&mut self.command(args), input)
    }

    /// Runs a command that must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "docker {args:?} failed");
        stdout(&output)
    }

    /// `docker trust key generate NAME --dir DIR`; returns the public key
    /// file.
    fn generate_key(&self, name: &str, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let out = self.ok(&[
            "trust",
            "key",
            "generate",
            name,
            "--dir",
            dir.to_str().unwrap(),
        ]);
        let public = dir.join(format!("{name}.pub"));
        assert_eq!(
            out,
            format!(
                "Generating key for {name}...\nSuccessfully generated and loaded private key. \
                 Corresponding public key available: {}\n",
                public.display()
            )
        );
        public
    }

    /// `docker trust signer add --key PUB NAME GUN`.
    fn add_signer(&self, name: &str, public: &Path, gun: &str) -> Output {
        self.run(&[
            "trust",
            "signer",
            "add",
            "--key",
            public.to_str().unwrap(),
            name,
            gun,
        ])
    }

    /// `docker trust inspect GUN` (JSON); returns the only element.
    fn inspect(&self, gun: &str) -> Value {
        let out = self.ok(&["trust", "inspect", gun]);
        let list: Value = serde_json::from_str(&out).unwrap();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 1, "{out}");
        assert_eq!(list[0]["Name"], gun);
        list[0].clone()
    }

    /// The notary CLI on this user's docker trust directory, as the fixtures
    /// README signs tags without an engine. Only the delegation passphrase
    /// is given, and it is docker's *repository* passphrase: that is what
    /// `docker trust key generate` encrypts signer keys with.
    fn notary(&self, args: &[&str]) -> Command {
        let client = NotaryClient::new(self.trust_dir(), &self.server, &self.ca);
        let mut command = client.command(args);
        for role in ["ROOT", "TARGETS", "SNAPSHOT"] {
            command.env_remove(format!("NOTARY_{role}_PASSPHRASE"));
        }
        command.env("NOTARY_DELEGATION_PASSPHRASE", REPOSITORY_PASSPHRASE);
        command
    }

    /// Signs `tag` (17 bytes, `digest`) into `roles` with the notary CLI.
    fn sign_tag(&self, gun: &str, tag: &str, digest: &str, roles: &[&str]) {
        let mut args = vec!["addhash", gun, tag, "17", "--sha256", digest];
        for role in roles {
            args.push("-r");
            args.push(role);
        }
        args.push("-p");
        let output = run(&mut self.notary(&args));
        assert!(output.status.success(), "notary addhash failed");
        assert!(
            stdout(&output).contains(&format!(
                "Successfully published changes for repository {gun}"
            )),
            "{}",
            stdout(&output)
        );
    }
}

/// The key ID notary gives a public key: SHA-256 of the canonical JSON of
/// `{"keytype", "keyval": {"private": null, "public"}}` (PROTOCOL.md §4.4).
/// Built by hand for this fixed shape, independently of notarium's code.
fn key_id(key: &Value) -> String {
    assert!(key["keyval"]["private"].is_null(), "{key}");
    let keytype = key["keytype"].as_str().unwrap();
    let public = key["keyval"]["public"].as_str().unwrap();
    assert!(
        public
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    );
    sha256_hex(
        format!(r#"{{"keytype":"{keytype}","keyval":{{"private":null,"public":"{public}"}}}}"#)
            .as_bytes(),
    )
}

/// Key ID of a PEM public key file written by `docker trust key generate`.
fn pem_key_id(pem: &str) -> String {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----") && !line.contains(':') && !line.is_empty())
        .collect();
    key_id(&json!({"keytype": "ecdsa", "keyval": {"private": null, "public": body}}))
}

/// The private key file of docker's trust dir whose PEM header says
/// `role: ROLE`; returns (key ID = file stem, PEM text).
fn private_key(trust_dir: &Path, role: &str) -> (String, String) {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(trust_dir.join("private")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if text.lines().any(|line| line == format!("role: {role}")) {
            let id = path.file_stem().unwrap().to_str().unwrap().to_string();
            found.push((id, text));
        }
    }
    assert_eq!(found.len(), 1, "private keys for role {role}: {found:?}");
    found.pop().unwrap()
}

/// GET a metadata file from notarium; must be 200.
fn tuf(notarium: &Notarium, gun: &str, file: &str) -> Value {
    let (status, body) = notarium.curl().get(&format!("/v2/{gun}/_trust/tuf/{file}"));
    assert_eq!(status, 200, "{file}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn version(file: &Value) -> i64 {
    file["signed"]["version"].as_i64().unwrap()
}

fn signature_key_ids(file: &Value) -> Vec<String> {
    file["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyid"].as_str().unwrap().to_string())
        .collect()
}

fn string_list(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    list.sort();
    list
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| (*s).to_string()).collect();
    ids.sort();
    ids
}

/// The delegation roles of a targets.json: name -> (sorted key IDs, paths,
/// threshold).
fn delegations(targets: &Value) -> std::collections::BTreeMap<String, (Vec<String>, Value, i64)> {
    targets["signed"]["delegations"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|role| {
            (
                role["name"].as_str().unwrap().to_string(),
                (
                    string_list(&role["keyids"]),
                    role["paths"].clone(),
                    role["threshold"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Every key listed in targets.json's delegations has the ID it is filed
/// under; returns the sorted IDs.
fn delegation_key_ids(targets: &Value) -> Vec<String> {
    let keys = targets["signed"]["delegations"]["keys"]
        .as_object()
        .unwrap();
    for (id, key) in keys {
        assert_eq!(&key_id(key), id, "delegation key filed under a wrong ID");
    }
    keys.keys().cloned().collect()
}

/// `docker trust inspect`'s signers: name -> key IDs.
fn inspect_signers(inspect: &Value) -> std::collections::BTreeMap<String, Vec<String>> {
    inspect["Signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|signer| {
            let ids = signer["Keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["ID"].as_str().unwrap().to_string())
                .collect();
            (signer["Name"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

fn post_count(notarium: &Notarium) -> usize {
    notarium
        .log()
        .lines()
        // One line per request carries its status.
        .filter(|line| line.contains("method=POST") && line.contains(" status="))
        .count()
}

fn assert_no_server_errors(notarium: &Notarium) {
    let log = notarium.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" status=5"))
        .collect();
    assert!(errors.is_empty(), "server errors:\n{}", errors.join("\n"));
}

/// A notarium, an admin docker user, a fake registry host and a GUN on it.
/// (Fields drop in order: the server stops before its directory goes.)
struct Setup {
    notarium: Notarium,
    registry: FakeRegistry,
    admin: DockerUser,
    gun: String,
    tmp: tempfile::TempDir,
}

impl Setup {
    fn new(path: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let notarium = Notarium::start(&tmp.path().join("server"), json!({}));
        let registry = FakeRegistry::new();
        let admin = DockerUser::new(&tmp.path().join("admin"), &notarium);
        let gun = format!("{}/{path}", registry.host());
        Self {
            notarium,
            registry,
            admin,
            gun,
            tmp,
        }
    }

    fn keys_dir(&self) -> PathBuf {
        self.tmp.path().join("public-keys")
    }

    /// A fresh notary client (empty trust dir) for checking server state.
    fn verifier(&self, name: &str) -> NotaryClient {
        self.notarium.notary(self.tmp.path().join(name))
    }

    /// Generates `name`'s key in the admin's trust dir and adds it as a
    /// signer; returns the key ID.
    fn admin_adds_own_signer(&self, name: &str) -> String {
        let public = self.admin.generate_key(name, &self.keys_dir());
        let output = self.admin.add_signer(name, &public, &self.gun);
        assert!(output.status.success());
        pem_key_id(&std::fs::read_to_string(public).unwrap())
    }

    fn finish(&self) {
        assert_no_server_errors(&self.notarium);
        self.registry.assert_untouched();
    }
}

// ---------------------------------------------------------------------------
// 1. docker trust key generate
// ---------------------------------------------------------------------------

#[test]
fn key_generate_writes_public_key_and_encrypted_private_key() {
    let setup = Setup::new("team/app");
    let dir = setup.keys_dir();
    let public = setup.admin.generate_key("alice", &dir);

    // alice.pub: a PEM public key with notary's role header.
    let pem = std::fs::read_to_string(&public).unwrap();
    assert!(
        pem.starts_with("-----BEGIN PUBLIC KEY-----\nrole: alice\n"),
        "{pem}"
    );
    assert!(
        pem.trim_end().ends_with("-----END PUBLIC KEY-----"),
        "{pem}"
    );
    let id = pem_key_id(&pem);

    // The private key lives in docker's trust dir, named by its key ID,
    // encrypted (PKCS#8) with the *repository* passphrase.
    let (file_id, private) = private_key(&setup.admin.trust_dir(), "alice");
    assert_eq!(file_id, id, "private key file is not named by the key ID");
    assert!(
        private.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: alice\n"),
        "{private}"
    );
    require("openssl", "openssl");
    let stripped = setup.tmp.path().join("alice-private.pem");
    std::fs::write(
        &stripped,
        private
            .lines()
            .filter(|line| !line.starts_with("role:"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let openssl = |passphrase: &str| {
        run(Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(&stripped)
            .arg("-passin")
            .arg(format!("pass:{passphrase}")))
    };
    assert!(openssl(REPOSITORY_PASSPHRASE).status.success());
    assert!(!openssl(ROOT_PASSPHRASE).status.success());

    // Generating a key is offline: nothing reached the server.
    assert!(
        !setup.notarium.log().contains("/_trust/"),
        "{}",
        setup.notarium.log()
    );

    // Generating a key under an existing name is refused.
    let again = setup.admin.run(&[
        "trust",
        "key",
        "generate",
        "alice",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("public key file already exists"),
        "{}",
        stderr(&again)
    );
    setup.finish();
}

// ---------------------------------------------------------------------------
// 2 + 3. docker trust signer add (initialises the repository), second signer
// ---------------------------------------------------------------------------

#[test]
fn signer_add_initialises_repository_and_second_signer_joins() {
    let setup = Setup::new("team/app");
    let gun = setup.gun.as_str();
    let public = setup.admin.generate_key("alice", &setup.keys_dir());
    let alice = pem_key_id(&std::fs::read_to_string(&public).unwrap());

    let output = setup.admin.add_signer("alice", &public, gun);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!(
            "Adding signer \"alice\" to {gun}...\n\
             Initializing signed repository for {gun}...\n\
             Successfully initialized \"{gun}\"\n\
             Successfully added signer: alice to {gun}\n\n"
        )
    );

    // The client asked for the server's timestamp and snapshot keys
    // (server-managed snapshot) and published once.
    let log = setup.notarium.log();
    for wanted in ["timestamp.key", "snapshot.key"] {
        assert!(
            log.lines().any(
                |l| l.contains(&format!("path=/v2/{gun}/_trust/tuf/{wanted} "))
                    && l.contains("operation=\"GetKey\"")
                    && l.contains("status=200")
            ),
            "no `{wanted}` in the log:\n{log}"
        );
    }
    assert_eq!(post_count(&setup.notarium), 1);

    // Root v1: root key = docker's root key, targets = docker's repository
    // key, snapshot and timestamp = the server's keys.
    let root = tuf(&setup.notarium, gun, "root.json");
    assert_eq!(version(&root), 1);
    let roles = &root["signed"]["roles"];
    let root_keys = root["signed"]["keys"].as_object().unwrap();
    for (id, key) in root_keys {
        assert_eq!(&key_id(key), id, "root key filed under a wrong ID");
    }
    let only = |role: &str| {
        let ids = string_list(&roles[role]["keyids"]);
        assert_eq!(ids.len(), 1, "{role}: {ids:?}");
        assert_eq!(roles[role]["threshold"], 1);
        ids[0].clone()
    };
    let root_key = only("root");
    assert_eq!(root_keys[&root_key]["keytype"], "ecdsa-x509");
    let (targets_key, _) = private_key(&setup.admin.trust_dir(), "targets");
    assert_eq!(
        only("targets"),
        targets_key,
        "targets key is not docker's repository key"
    );
    let (status, snapshot_key) = setup
        .notarium
        .curl()
        .get(&format!("/v2/{gun}/_trust/tuf/snapshot.key"));
    assert_eq!(status, 200);
    let snapshot_key = key_id(&serde_json::from_slice(&snapshot_key).unwrap());
    assert_eq!(
        only("snapshot"),
        snapshot_key,
        "snapshot is not server-managed"
    );
    let (status, timestamp_key) = setup
        .notarium
        .curl()
        .get(&format!("/v2/{gun}/_trust/tuf/timestamp.key"));
    assert_eq!(status, 200);
    let timestamp_key = key_id(&serde_json::from_slice(&timestamp_key).unwrap());
    assert_eq!(only("timestamp"), timestamp_key);
    assert_eq!(signature_key_ids(&root), vec![root_key]);

    // targets: the two delegations with alice's key, no targets of its own.
    let targets = tuf(&setup.notarium, gun, "targets.json");
    assert_eq!(signature_key_ids(&targets), vec![targets_key]);
    assert_eq!(targets["signed"]["targets"], json!({}));
    assert_eq!(delegation_key_ids(&targets), vec![alice.clone()]);
    let roles = delegations(&targets);
    assert_eq!(
        roles.keys().collect::<Vec<_>>(),
        ["targets/alice", "targets/releases"]
    );
    for (keys, paths, threshold) in roles.values() {
        assert_eq!(keys, &vec![alice.clone()]);
        assert_eq!(paths, &json!([""]));
        assert_eq!(*threshold, 1);
    }

    // Snapshot and timestamp made and signed by the server.
    let snapshot = tuf(&setup.notarium, gun, "snapshot.json");
    assert_eq!(signature_key_ids(&snapshot), vec![snapshot_key.clone()]);
    let meta = snapshot["signed"]["meta"].as_object().unwrap();
    assert_eq!(meta.keys().collect::<Vec<_>>(), ["root", "targets"]);
    let timestamp = tuf(&setup.notarium, gun, "timestamp.json");
    assert_eq!(signature_key_ids(&timestamp), vec![timestamp_key]);

    // A fresh notary client sees the same delegations.
    let verifier = setup.verifier("verifier");
    let listed = verifier.ok(&["delegation", "list", gun]);
    for role in ["targets/alice", "targets/releases"] {
        let row = listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(role))
            .unwrap_or_else(|| panic!("{role} not in\n{listed}"));
        assert!(row.contains(&alice), "{row}");
    }

    // 3. A second signer, bob, with a key made on another machine (his own
    // DOCKER_CONFIG): no re-initialisation, one more publish.
    let bob_user = DockerUser::new(&setup.tmp.path().join("bob"), &setup.notarium);
    let bob_public = bob_user.generate_key("bob", &setup.tmp.path().join("bob-keys"));
    let bob = pem_key_id(&std::fs::read_to_string(&bob_public).unwrap());
    let output = setup.admin.add_signer("bob", &bob_public, gun);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!("Adding signer \"bob\" to {gun}...\nSuccessfully added signer: bob to {gun}\n\n")
    );
    assert_eq!(post_count(&setup.notarium), 2);

    let root_again = tuf(&setup.notarium, gun, "root.json");
    assert_eq!(root_again, root, "adding a signer must not touch root");
    let targets2 = tuf(&setup.notarium, gun, "targets.json");
    assert_eq!(version(&targets2), version(&targets) + 1);
    assert_eq!(delegation_key_ids(&targets2), sorted(&[&alice, &bob]));
    let roles = delegations(&targets2);
    assert_eq!(
        roles.keys().collect::<Vec<_>>(),
        ["targets/alice", "targets/bob", "targets/releases"]
    );
    assert_eq!(roles["targets/alice"].0, vec![alice.clone()]);
    assert_eq!(roles["targets/bob"].0, vec![bob.clone()]);
    assert_eq!(roles["targets/releases"].0, sorted(&[&alice, &bob]));
    let snapshot2 = tuf(&setup.notarium, gun, "snapshot.json");
    assert_eq!(version(&snapshot2), version(&snapshot) + 1);
    assert_eq!(signature_key_ids(&snapshot2), vec![snapshot_key]);
    let timestamp2 = tuf(&setup.notarium, gun, "timestamp.json");
    assert_eq!(version(&timestamp2), version(&timestamp) + 1);

    let listed = setup.verifier("verifier2").ok(&["delegation", "list", gun]);
    assert!(
        listed.contains("targets/bob") && listed.contains(&bob),
        "{listed}"
    );

    // Invalid signer names are refused by docker before any request.
    let posts = post_count(&setup.notarium);
    for (bad, message) in [
        (
            "releases",
            "releases is a reserved keyword, use a different signer name",
        ),
        (
            "Bad_Name",
            "signer name \"Bad_Name\" must start with lowercase alphanumeric characters \
             and can include \"-\" or \"_\" after the first character",
        ),
    ] {
        let output = setup.admin.add_signer(bad, &bob_public, gun);
        assert!(!output.status.success(), "signer {bad} was accepted");
        assert_eq!(stderr(&output), format!("{message}\n"));
    }
    assert_eq!(post_count(&setup.notarium), posts);
    setup.finish();
}

// ---------------------------------------------------------------------------
// 4. docker trust inspect (JSON and --pretty)
// ---------------------------------------------------------------------------

#[test]
fn inspect_lists_signers_and_administrative_keys_matching_the_server() {
    let setup = Setup::new("team/app");
    let gun = setup.gun.as_str();
    let alice = setup.admin_adds_own_signer("alice");
    let bob = setup.admin_adds_own_signer("bob");

    let root = tuf(&setup.notarium, gun, "root.json");
    let root_key = string_list(&root["signed"]["roles"]["root"]["keyids"]).remove(0);
    let targets_key = string_list(&root["signed"]["roles"]["targets"]["keyids"]).remove(0);
    let targets = tuf(&setup.notarium, gun, "targets.json");
    let roles = delegations(&targets);

    let inspect = setup.admin.inspect(gun);
    assert_eq!(inspect["SignedTags"], json!([]));
    let signers = inspect_signers(&inspect);
    assert_eq!(signers.keys().collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!(signers["alice"], vec![alice.clone()]);
    assert_eq!(signers["bob"], vec![bob.clone()]);
    // ... which is what the server's targets.json says.
    assert_eq!(signers["alice"], roles["targets/alice"].0);
    assert_eq!(signers["bob"], roles["targets/bob"].0);
    assert_eq!(
        inspect["AdministrativeKeys"],
        json!([
            {"Name": "Root", "Keys": [{"ID": root_key}]},
            {"Name": "Repository", "Keys": [{"ID": targets_key}]},
        ])
    );

    let pretty = setup.admin.ok(&["trust", "inspect", "--pretty", gun]);
    assert_eq!(
        pretty,
        format!(
            "\nNo signatures for {gun}\n\n\n\
             List of signers and their keys for {gun}\n\n\
             SIGNER    KEYS\n\
             alice     {}\n\
             bob       {}\n\n\
             Administrative keys for {gun}\n\n\
             \x20 Repository Key:\t{targets_key}\n\
             \x20 Root Key:\t{root_key}\n",
            &alice[..12],
            &bob[..12],
        )
    );

    // Another user with nothing local (fresh DOCKER_CONFIG) sees the same.
    let other = DockerUser::new(&setup.tmp.path().join("other"), &setup.notarium);
    assert_eq!(other.inspect(gun), inspect);
    setup.finish();
}

// ---------------------------------------------------------------------------
// 5 + 6. Signing a tag without the daemon (notary CLI on docker's trust
// dir), docker trust revoke
// ---------------------------------------------------------------------------

#[test]
fn tag_signed_with_notary_on_docker_trust_dir_then_revoked() {
    let setup = Setup::new("team/app");
    let gun = setup.gun.as_str();
    let alice = setup.admin_adds_own_signer("alice");
    let bob_user = DockerUser::new(&setup.tmp.path().join("bob"), &setup.notarium);
    let bob_public = bob_user.generate_key("bob", &setup.tmp.path().join("bob-keys"));
    assert!(
        setup
            .admin
            .add_signer("bob", &bob_public, gun)
            .status
            .success()
    );

    // The signer key is under docker's *repository* passphrase: the root
    // passphrase does not open it (and nothing is published).
    let posts = post_count(&setup.notarium);
    let mut wrong = setup.admin.notary(&[
        "addhash",
        gun,
        "1.0",
        "17",
        "--sha256",
        DIGEST,
        "-r",
        "targets/releases",
        "-r",
        "targets/alice",
        "-p",
    ]);
    wrong.env("NOTARY_DELEGATION_PASSPHRASE", ROOT_PASSPHRASE);
    let output = run(&mut wrong);
    assert!(!output.status.success());
    assert!(
        stdout(&output).contains("could not find necessary signing keys"),
        "{}",
        stdout(&output)
    );
    assert_eq!(post_count(&setup.notarium), posts);
    assert!(
        run(&mut setup.admin.notary(&["reset", gun, "--all"]))
            .status
            .success()
    );

    // 5. Sign 1.0 into targets/releases and targets/alice, like
    // `docker trust sign` does for an already pushed tag.
    let targets_before = tuf(&setup.notarium, gun, "targets.json");
    setup
        .admin
        .sign_tag(gun, "1.0", DIGEST, &["targets/releases", "targets/alice"]);
    assert_eq!(post_count(&setup.notarium), posts + 1);

    let expected_target = json!({
        "1.0": {
            "hashes": {"sha256": base64::engine::general_purpose::STANDARD.encode(hex::decode(DIGEST).unwrap())},
            "length": 17,
        }
    });
    for role in ["targets/releases", "targets/alice"] {
        let file = tuf(&setup.notarium, gun, &format!("{role}.json"));
        assert_eq!(version(&file), 1, "{role}");
        assert_eq!(file["signed"]["targets"], expected_target, "{role}");
        assert_eq!(signature_key_ids(&file), vec![alice.clone()], "{role}");
    }
    assert_eq!(
        tuf(&setup.notarium, gun, "targets.json"),
        targets_before,
        "signing into delegations must not touch targets.json"
    );
    let snapshot = tuf(&setup.notarium, gun, "snapshot.json");
    let meta = snapshot["signed"]["meta"].as_object().unwrap();
    assert_eq!(
        meta.keys().collect::<Vec<_>>(),
        ["root", "targets", "targets/alice", "targets/releases"]
    );

    let inspect = setup.admin.inspect(gun);
    assert_eq!(
        inspect["SignedTags"],
        json!([{"SignedTag": "1.0", "Digest": DIGEST, "Signers": ["alice"]}])
    );
    let pretty = setup.admin.ok(&["trust", "inspect", "--pretty", gun]);
    assert!(
        pretty.starts_with(&format!("\nSignatures for {gun}\n\nSIGNED TAG ")),
        "{pretty}"
    );
    let row = pretty
        .lines()
        .find(|l| l.starts_with("1.0 "))
        .unwrap_or_else(|| panic!("no 1.0 row in\n{pretty}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["1.0", DIGEST, "alice"]
    );
    // docker trust inspect IMAGE:TAG shows just that tag.
    let tagged = setup.admin.ok(&["trust", "inspect", &format!("{gun}:1.0")]);
    let tagged: Value = serde_json::from_str(&tagged).unwrap();
    assert_eq!(tagged[0]["SignedTags"], inspect["SignedTags"]);

    let verifier = setup.verifier("verifier");
    let listed = verifier.ok(&["list", gun]);
    let row = listed
        .lines()
        .find(|l| l.starts_with("1.0 "))
        .unwrap_or_else(|| panic!("no 1.0 in\n{listed}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..3], ["1.0", DIGEST, "17"]);

    // 6. docker trust revoke GUN:TAG (no prompt for a single tag).
    let output = setup.admin.run(&["trust", "revoke", &format!("{gun}:1.0")]);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!("Successfully deleted signature for {gun}:1.0\n")
    );
    assert_eq!(post_count(&setup.notarium), posts + 2);
    for role in ["targets/releases", "targets/alice"] {
        let file = tuf(&setup.notarium, gun, &format!("{role}.json"));
        assert_eq!(version(&file), 2, "{role}");
        assert_eq!(file["signed"]["targets"], json!({}), "{role}");
    }
    assert_eq!(setup.admin.inspect(gun)["SignedTags"], json!([]));
    assert_eq!(
        setup
            .admin
            .ok(&["trust", "inspect", "--pretty", gun])
            .lines()
            .nth(1),
        Some(format!("No signatures for {gun}").as_str())
    );
    let listed = setup.verifier("verifier2").ok(&["list", gun]);
    assert!(
        listed.contains("No targets present in this repository."),
        "{listed}"
    );

    // Revoking the whole repository asks first; "n" keeps everything.
    setup
        .admin
        .sign_tag(gun, "1.0", DIGEST, &["targets/releases", "targets/alice"]);
    setup.admin.sign_tag(
        gun,
        "2.0",
        OTHER_DIGEST,
        &["targets/releases", "targets/alice"],
    );
    assert_eq!(
        setup.admin.inspect(gun)["SignedTags"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let posts = post_count(&setup.notarium);
    let output = setup.admin.run_with_stdin(&["trust", "revoke", gun], "n\n");
    assert!(output.status.success());
    assert!(
        stdout(&output).starts_with(&format!(
            "Confirm you would like to delete all signature data for {gun}? [y/N] "
        )),
        "{}",
        stdout(&output)
    );
    assert!(!stdout(&output).contains("Successfully"));
    assert_eq!(post_count(&setup.notarium), posts);
    assert_eq!(
        setup.admin.inspect(gun)["SignedTags"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // -y revokes every tag.
    let output = setup.admin.run(&["trust", "revoke", "-y", gun]);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!("Successfully deleted signature for {gun}\n")
    );
    assert_eq!(post_count(&setup.notarium), posts + 1);
    assert_eq!(setup.admin.inspect(gun)["SignedTags"], json!([]));
    for role in ["targets/releases", "targets/alice"] {
        let file = tuf(&setup.notarium, gun, &format!("{role}.json"));
        assert_eq!(file["signed"]["targets"], json!({}), "{role}");
    }
    // Signers are untouched by revocation.
    assert_eq!(
        inspect_signers(&setup.admin.inspect(gun))
            .keys()
            .collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    setup.finish();
}

// ---------------------------------------------------------------------------
// 7. docker trust signer remove
// ---------------------------------------------------------------------------

#[test]
fn signer_remove_prompts_for_the_last_releases_signer_and_publishes() {
    let setup = Setup::new("team/app");
    let gun = setup.gun.as_str();
    let alice = setup.admin_adds_own_signer("alice");
    let carol = setup.admin_adds_own_signer("carol");

    // bob has his own machine (DOCKER_CONFIG): his key is not in the admin's
    // trust dir, so only bob signs what bob publishes.
    let bob_user = DockerUser::new(&setup.tmp.path().join("bob"), &setup.notarium);
    let bob_public = bob_user.generate_key("bob", &setup.tmp.path().join("bob-keys"));
    let bob = pem_key_id(&std::fs::read_to_string(&bob_public).unwrap());
    assert!(
        setup
            .admin
            .add_signer("bob", &bob_public, gun)
            .status
            .success()
    );
    bob_user.sign_tag(gun, "1.0", DIGEST, &["targets/releases", "targets/bob"]);
    let releases = tuf(&setup.notarium, gun, "targets/releases.json");
    assert_eq!(signature_key_ids(&releases), vec![bob.clone()]);
    assert_eq!(
        setup.admin.inspect(gun)["SignedTags"],
        json!([{"SignedTag": "1.0", "Digest": DIGEST, "Signers": ["bob"]}])
    );

    // carol did not sign the last release, so docker removes her without
    // asking. Known docker CLI 28.2.2 bug: this path silently does nothing
    // and exits 0 (its maybePromptForSignerRemoval returns false unless a
    // prompt was answered "y"), with or without -f. Either way the server
    // must hold what docker reported.
    let posts = post_count(&setup.notarium);
    let output = setup
        .admin
        .run(&["trust", "signer", "remove", "-f", "carol", gun]);
    assert!(output.status.success());
    let out = stdout(&output);
    let carol_removed = out.contains("Successfully removed carol");
    let roles = delegations(&tuf(&setup.notarium, gun, "targets.json"));
    if carol_removed {
        assert_eq!(
            out,
            format!(
                "Removing signer \"carol\" from {gun}...\nSuccessfully removed carol from {gun}\n\n"
            )
        );
        assert!(!roles.contains_key("targets/carol"), "{roles:?}");
        assert_eq!(roles["targets/releases"].0, sorted(&[&alice, &bob]));
        assert_eq!(post_count(&setup.notarium), posts + 1);
    } else {
        eprintln!("docker did not remove carol (docker CLI 28.2.2 `signer remove` bug)");
        assert_eq!(out, format!("Removing signer \"carol\" from {gun}...\n"));
        assert!(roles.contains_key("targets/carol"), "{roles:?}");
        assert_eq!(post_count(&setup.notarium), posts);
    }
    let mut remaining = vec![alice.clone()];
    if !carol_removed {
        remaining.push(carol);
    }
    remaining.sort();

    // bob signed the last release: docker asks; "n" changes nothing.
    let targets_before = tuf(&setup.notarium, gun, "targets.json");
    let posts = post_count(&setup.notarium);
    let prompt = format!(
        "Removing signer \"bob\" from {gun}...\n\
         The signer \"bob\" signed the last released version of {gun}. Removing this signer \
         will make {gun} unpullable. Are you sure you want to continue? [y/N] "
    );
    let output = setup
        .admin
        .run_with_stdin(&["trust", "signer", "remove", "bob", gun], "n\n");
    assert!(output.status.success());
    assert!(stdout(&output).starts_with(&prompt), "{}", stdout(&output));
    assert!(!stdout(&output).contains("Successfully removed"));
    assert_eq!(post_count(&setup.notarium), posts);
    assert_eq!(tuf(&setup.notarium, gun, "targets.json"), targets_before);

    // "y" removes bob from targets/bob and from targets/releases.
    let output = setup
        .admin
        .run_with_stdin(&["trust", "signer", "remove", "bob", gun], "y\n");
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!("{prompt}Successfully removed bob from {gun}\n\n")
    );
    assert_eq!(post_count(&setup.notarium), posts + 1);
    let targets = tuf(&setup.notarium, gun, "targets.json");
    assert_eq!(version(&targets), version(&targets_before) + 1);
    let roles = delegations(&targets);
    assert!(!roles.contains_key("targets/bob"), "{roles:?}");
    assert!(roles.contains_key("targets/alice"), "{roles:?}");
    assert_eq!(roles["targets/releases"].0, remaining);
    assert_eq!(delegation_key_ids(&targets), remaining);
    let listed = setup.verifier("verifier").ok(&["delegation", "list", gun]);
    assert!(
        !listed.contains("targets/bob") && !listed.contains(&bob),
        "{listed}"
    );

    // As docker warned, the release bob signed no longer verifies
    // (targets/releases is signed by a key it no longer lists): no tags.
    let output = setup.admin.run(&["trust", "inspect", gun]);
    assert!(output.status.success());
    let inspect: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(inspect[0]["SignedTags"], json!([]));
    assert!(
        stderr(&output).contains("valid signatures did not meet threshold for targets/releases"),
        "{}",
        stderr(&output)
    );
    let signers = inspect_signers(&inspect[0]);
    assert!(!signers.contains_key("bob"), "{signers:?}");
    assert_eq!(signers["alice"], vec![alice]);
    assert_eq!(signers.contains_key("carol"), !carol_removed);

    // Errors docker reports without publishing, including removing the
    // remaining signer now that no release verifies.
    let posts = post_count(&setup.notarium);
    for (name, message) in [
        ("dave", format!("no signer dave for repository {gun}")),
        (
            "releases",
            "releases is a reserved keyword and cannot be removed".to_string(),
        ),
        (
            "alice",
            "all signed tags are currently revoked, use docker trust sign to fix".to_string(),
        ),
    ] {
        let output = setup
            .admin
            .run(&["trust", "signer", "remove", "-f", name, gun]);
        assert_eq!(output.status.code(), Some(1));
        // (logrus may first warn about the unverifiable releases role)
        let err: String = stderr(&output)
            .lines()
            .filter(|line| !line.starts_with("time="))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(
            err,
            format!("{message}\n\nerror removing signer from: {gun}\n")
        );
    }
    assert_eq!(post_count(&setup.notarium), posts);
    assert!(delegations(&tuf(&setup.notarium, gun, "targets.json")).contains_key("targets/alice"));
    setup.finish();
}

// ---------------------------------------------------------------------------
// 8. A repository that does not exist
// ---------------------------------------------------------------------------

#[test]
fn unknown_repository_gives_docker_clean_not_found_messages() {
    let setup = Setup::new("team/app");
    let gun = format!("{}/nobody/here", setup.registry.host());
    let gun = gun.as_str();

    let output = setup.admin.run(&["trust", "inspect", gun]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "[]\n");
    assert_eq!(
        stderr(&output),
        format!("no signatures or cannot access {gun}\n")
    );

    let output = setup.admin.run(&["trust", "inspect", "--pretty", gun]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!("no signatures or cannot access {gun}\n")
    );

    let server = setup.notarium.addr.to_string();
    let output = setup.admin.run(&["trust", "revoke", &format!("{gun}:1.0")]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "could not remove signature for {gun}:1.0: {server} does not have trust data for {gun}\n"
        )
    );

    let output = setup.admin.run(&["trust", "signer", "remove", "bob", gun]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "error retrieving signers for {gun}: {server} does not have trust data for {gun}\n\n\
             error removing signer from: {gun}\n"
        )
    );

    // The server answered every lookup with a notary-style 404, never 5xx,
    // and nothing was created.
    let log = setup.notarium.log();
    let lookups: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("path=/v2/{gun}/")) && l.contains(" status="))
        .collect();
    assert!(!lookups.is_empty(), "{log}");
    for line in &lookups {
        assert!(line.contains(" status=404"), "{line}");
    }
    let (status, body) = setup
        .notarium
        .curl()
        .get(&format!("/v2/{gun}/_trust/tuf/root.json"));
    assert_eq!(status, 404);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errors"][0]["code"], "METADATA_NOT_FOUND");
    assert_eq!(post_count(&setup.notarium), 0);
    setup.finish();
}
