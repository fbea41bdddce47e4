#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Token auth end to end with the real clients (PROTOCOL.md §8, §8.1):
//! * the notary CLI with `NOTARY_AUTH` against notarium (and, as the ground
//!   truth for what the CLI prints, against the Go notary-server with the
//!   same `auth` section): init, publish, list, delegation, and
//!   `delete --remote`, which needs `*`;
//! * docker: `docker login` to Debian's `docker-registry` with token auth,
//!   then `DOCKER_CONTENT_TRUST=1` push and pull, the registry and notarium
//!   sharing one token server (two `service` values, as Harbor does); a
//!   user whose token lacks `push` on the trust server gets the 401 message,
//!   never a 500.

mod common;
#[path = "support/dockercli.rs"]
mod dockercli;
#[path = "support/registry.rs"]
mod registry;
#[path = "support/token_server.rs"]
mod token_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use common::{Notarium, NotaryClient, ReferenceServer, all_output, run};
use dockercli::DockerCli;
use registry::{Registry, TokenAuth};
use serde_json::json;
use token_server::{Grant, ISSUER, NOTARY_SERVICE, Pki, REGISTRY_SERVICE, TokenServer};

/// What the notary CLI and docker print when the server answers 401.
const NOT_AUTHORIZED: &str =
    "you are not authorized to perform this operation: server returned 401.";

// ---------------------------------------------------------------------------
// notary CLI
// ---------------------------------------------------------------------------

/// The notary CLI of one user: `NOTARY_AUTH` = base64(`user:password`), or
/// no credentials at all.
struct User {
    client: NotaryClient,
    credentials: Option<String>,
}

impl User {
    /// A user with trust directory `dir/trust-LABEL` and `account` =
    /// (user, password) for the token server, if any.
    fn new(
        dir: &Path,
        label: &str,
        server: &str,
        ca: &Path,
        account: Option<(&str, &str)>,
    ) -> Self {
        Self {
            client: NotaryClient::new(dir.join(format!("trust-{label}")), server, ca),
            credentials: account.map(|(user, password)| {
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            }),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.client.command(args);
        command.env_remove("NOTARY_AUTH");
        if let Some(credentials) = &self.credentials {
            command.env("NOTARY_AUTH", credentials);
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "notary {args:?} failed");
        all_output(&output)
    }

    /// Runs a command that the server must refuse with 401.
    fn refused(&self, args: &[&str]) -> String {
        let mut output = self.run(args);
        // The Go notary-server may answer a refused upload and close before
        // reading its body; the client then reports the broken pipe rather
        // than the answer. A refused command changes nothing: run it again.
        if all_output(&output).contains("write: broken pipe") {
            output = self.run(args);
        }
        let out = all_output(&output);
        assert!(
            !output.status.success(),
            "notary {args:?} succeeded:\n{out}"
        );
        assert!(out.contains(NOT_AUTHORIZED), "notary {args:?}:\n{out}");
        assert!(!out.contains("500"), "{out}");
        out
    }
}

/// A token server with the users of the notary CLI scenario: `admin` may do
/// anything (`*`) under `notarium.test/`, `writer` may push and pull,
/// `reader` may only pull.
fn notary_users(pki: &Pki) -> TokenServer {
    let tokens = TokenServer::start(pki, &[NOTARY_SERVICE]);
    tokens.add_user(
        "admin",
        "admin-pw",
        &[Grant::repository("notarium.test/*", &["*"])],
    );
    tokens.add_user(
        "writer",
        "writer-pw",
        &[Grant::repository("notarium.test/*", &["push", "pull"])],
    );
    tokens.add_user(
        "reader",
        "reader-pw",
        &[Grant::repository("notarium.test/*", &["pull"])],
    );
    tokens
}

/// An ECDSA P-256 key and a self-signed certificate (openssl). Returns
/// (key.pem, cert.pem).
fn delegation_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    common::openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &format!("{name}.key"),
        ],
    );
    common::openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "30",
            "-out",
            &format!("{name}.crt"),
        ],
    );
    (key, cert)
}

/// The whole notary CLI scenario against one server (`url`, `ca`) whose
/// realm is `tokens`.
fn notary_cli_scenario(dir: &Path, url: &str, ca: &Path, tokens: &TokenServer) {
    let gun = "notarium.test/auth/cli";
    let p = |path: &Path| path.to_str().unwrap().to_string();
    let writer = User::new(dir, "writer", url, ca, Some(("writer", "writer-pw")));
    let admin = User::new(dir, "admin", url, ca, Some(("admin", "admin-pw")));
    let anonymous = User::new(dir, "anonymous", url, ca, None);
    let intruder = User::new(dir, "intruder", url, ca, Some(("writer", "wrong-password")));
    let file = dir.join("payload");
    std::fs::write(&file, b"signed with token auth\n").unwrap();

    // Nothing is readable, let alone writable, without a token that says so.
    anonymous.refused(&["list", gun]);
    let out = intruder.run(&["init", gun, "-p"]);
    assert!(!out.status.success(), "{}", all_output(&out));
    // The token server answered 401 to the wrong password.
    assert!(
        all_output(&out).contains("unauthorized: authentication required"),
        "{}",
        all_output(&out)
    );

    // writer (push,pull): init, publish, delegation.
    let out = writer.ok(&["init", gun, "-p"]);
    assert!(
        out.contains(&format!(
            "Successfully published changes for repository {gun}"
        )),
        "{out}"
    );
    let out = writer.ok(&["add", gun, "v1", &p(&file), "-p"]);
    assert!(
        out.contains(&format!(
            "Successfully published changes for repository {gun}"
        )),
        "{out}"
    );
    // Rotating a server-managed key needs `*` too.
    let out = writer.refused(&["key", "rotate", gun, "snapshot", "-r"]);
    assert!(out.contains("unable to rotate remote key"), "{out}");
    let (key, cert) = delegation_key(dir, "releases");
    writer.ok(&["key", "import", &p(&key), "--role", "targets/releases"]);
    let out = writer.ok(&[
        "delegation",
        "add",
        "-p",
        gun,
        "targets/releases",
        &p(&cert),
        "--all-paths",
    ]);
    assert!(
        out.contains("Addition of delegation role targets/releases"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Successfully published changes for repository {gun}"
        )),
        "{out}"
    );
    let out = writer.ok(&[
        "add",
        gun,
        "rc1",
        &p(&file),
        "--roles",
        "targets/releases",
        "-p",
    ]);
    assert!(
        out.contains(&format!(
            "Successfully published changes for repository {gun}"
        )),
        "{out}"
    );

    // reader (pull), holding copies of all the writer's keys: lists, may
    // not publish.
    common::run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(&writer.client.trust_dir)
            .arg(dir.join("trust-reader")),
    );
    let reader = User::new(dir, "reader", url, ca, Some(("reader", "reader-pw")));
    let listing = reader.ok(&["list", gun]);
    assert!(
        listing.contains("v1") && listing.contains("rc1"),
        "{listing}"
    );
    assert!(listing.contains("targets/releases"), "{listing}");
    let delegations = reader.ok(&["delegation", "list", gun]);
    assert!(delegations.contains("targets/releases"), "{delegations}");
    reader.ok(&["add", gun, "v2", &p(&file)]);
    reader.refused(&["publish", gun]);
    assert!(!writer.ok(&["list", gun]).contains("v2"));

    // delete --remote needs `*`: writer is refused and nothing is deleted,
    // admin succeeds.
    writer.refused(&["delete", gun, "--remote"]);
    assert!(reader.ok(&["list", gun]).contains("v1"));
    let out = admin.ok(&["delete", gun, "--remote"]);
    assert!(
        out.contains(&format!(
            "Successfully deleted local and remote trust data for repository {gun}"
        )),
        "{out}"
    );
    let fresh = User::new(dir, "reader-fresh", url, ca, Some(("reader", "reader-pw")));
    let out = fresh.run(&["list", gun]);
    assert!(!out.status.success(), "{}", all_output(&out));
    assert!(
        all_output(&out).contains("does not have trust data"),
        "{}",
        all_output(&out)
    );

    // Every token request carried the credentials of a known user, or
    // none; the CLI asks `*` only for delete --remote.
    let requests = tokens.requests();
    assert!(
        requests.iter().all(|r| r.service == NOTARY_SERVICE),
        "{requests:?}"
    );
    let asked_star: Vec<_> = requests
        .iter()
        .filter(|r| r.scopes.iter().any(|s| s.ends_with(":*")))
        .map(|r| r.user.clone())
        .collect();
    assert!(
        asked_star.contains(&Some("admin".to_string())),
        "{requests:?}"
    );
}

#[test]
fn notary_cli_with_token_auth_against_notarium() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let pki = Pki::new(dir);
    let tokens = notary_users(&pki);
    let notarium = Notarium::start(
        &dir.join("notarium"),
        json!({"auth": tokens.auth_config(&pki, NOTARY_SERVICE)}),
    );
    notary_cli_scenario(dir, &notarium.url, &notarium.ca, &tokens);
    let log = notarium.log();
    assert!(!log.contains(" status=5"), "server errors:\n{log}");
}

/// The same scenario against the Go notary-server: what the CLI prints
/// above is what it prints against the reference.
#[test]
fn notary_cli_with_token_auth_against_notary_server() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let pki = Pki::new(dir);
    let tokens = notary_users(&pki);
    let go_dir = dir.join("go");
    std::fs::create_dir_all(&go_dir).unwrap();
    let reference = ReferenceServer::start_with(
        &go_dir,
        json!({"auth": tokens.auth_config(&pki, NOTARY_SERVICE)}),
    );
    notary_cli_scenario(dir, &reference.url, &reference.ca, &tokens);
}

// ---------------------------------------------------------------------------
// docker
// ---------------------------------------------------------------------------

#[test]
fn docker_login_push_and_pull_with_content_trust_and_one_token_server() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let pki = Pki::new(dir);
    let tokens = TokenServer::start(&pki, &[REGISTRY_SERVICE, NOTARY_SERVICE]);
    let registry = Registry::start_with_auth(
        &dir.join("registry"),
        Some(&TokenAuth {
            realm: tokens.realm(),
            service: REGISTRY_SERVICE.into(),
            issuer: ISSUER.into(),
            rootcertbundle: pki.bundle.clone(),
        }),
    );
    let host = registry.host();
    let notarium = Notarium::start(
        &dir.join("notarium"),
        json!({"auth": tokens.auth_config(&pki, NOTARY_SERVICE)}),
    );
    let (trust_url, trust_ca) = (notarium.url.clone(), notarium.ca.clone());
    // The registry names repositories without its host, the trust server
    // with it (PROTOCOL.md §8.1).
    tokens.add_user(
        "alice",
        "alice-pw",
        &[
            Grant::repository("team/*", &["push", "pull"]),
            Grant::repository(&format!("{host}/team/*"), &["push", "pull"]),
        ],
    );
    tokens.add_user(
        "mallory",
        "mallory-pw",
        &[
            Grant::repository("team/*", &["push", "pull"]),
            Grant::repository(&format!("{host}/team/*"), &["pull"]),
        ],
    );
    let gun = format!("{host}/team/app");

    // alice: login, signed push, then a verified pull by a fresh user.
    let alice = DockerCli::with_trust_server(&dir.join("alice"), &trust_url, &trust_ca);
    alice.login(&host, "alice", "alice-pw");
    alice.make_image(&format!("{gun}:v1"), "alice v1");
    let digest = alice.signed_push(&format!("{gun}:v1"));
    alice.remove_images();
    // `docker trust` reads with the same credentials.
    let inspected = alice.ok(&["trust", "inspect", &gun]);
    assert!(inspected.contains("\"SignedTag\": \"v1\""), "{inspected}");

    let puller = DockerCli::with_trust_server(&dir.join("alice-puller"), &trust_url, &trust_ca);
    puller.login(&host, "alice", "alice-pw");
    puller.verified_pull(&format!("{gun}:v1"), &digest);
    puller.remove_images();

    // mallory may push to the registry, but only pull trust data: even
    // with copies of alice's signing keys, the signed push and `docker
    // trust sign` fail with the 401 message.
    let mallory = DockerCli::with_trust_server(&dir.join("mallory"), &trust_url, &trust_ca);
    common::run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(alice.trust_dir())
            .arg(mallory.trust_dir()),
    );
    mallory.login(&host, "mallory", "mallory-pw");
    mallory.make_image(&format!("{gun}:evil"), "mallory");
    let output = mallory.run_trusted(&["push", &format!("{gun}:evil")]);
    let out = all_output(&output);
    assert!(
        !output.status.success(),
        "mallory's signed push succeeded:\n{out}"
    );
    assert!(out.contains(NOT_AUTHORIZED), "{out}");
    let output = mallory.run(&["trust", "sign", &format!("{gun}:evil")]);
    let out = all_output(&output);
    assert!(
        !output.status.success(),
        "mallory's trust sign succeeded:\n{out}"
    );
    assert!(out.contains(NOT_AUTHORIZED), "{out}");
    mallory.remove_images();

    // What was signed is unchanged: a verified pull of `evil` fails, `v1`
    // still resolves.
    let output = puller.run_trusted(&["pull", &format!("{gun}:evil")]);
    assert!(!output.status.success(), "{}", all_output(&output));
    assert!(
        all_output(&output).contains("No valid trust data for evil"),
        "{}",
        all_output(&output)
    );

    // Both services were asked, each with its own naming of the repository;
    // the trust server's realm got the credentials of the registry login.
    let requests = tokens.requests();
    assert!(
        requests.iter().any(|r| r.service == REGISTRY_SERVICE
            && r.scopes
                .iter()
                .any(|s| s == "repository:team/app:push,pull")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.service == NOTARY_SERVICE
            && r.user.as_deref() == Some("alice")
            && r.scopes
                .iter()
                .any(|s| s.starts_with(&format!("repository:{gun}:")))),
        "{requests:?}"
    );
    let log = notarium.log();
    assert!(!log.contains(" status=5"), "server errors:\n{log}");
    // (The log does show the refusals: the check above reads the right lines.)
    assert!(log.contains(" status=401"), "{log}");
    drop(registry);
}

/// Debian's docker-registry accepts the token server's tokens for its own
/// `service` (and only those): `docker login` and a push, no trust server
/// involved.
#[test]
fn registry_takes_tokens_from_the_same_token_server() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let pki = Pki::new(dir);
    let tokens = TokenServer::start(&pki, &[REGISTRY_SERVICE, NOTARY_SERVICE]);
    let registry = Registry::start_with_auth(
        &dir.join("registry"),
        Some(&TokenAuth {
            realm: tokens.realm(),
            service: REGISTRY_SERVICE.into(),
            issuer: ISSUER.into(),
            rootcertbundle: pki.bundle.clone(),
        }),
    );
    let host = registry.host();
    tokens.add_user(
        "carol",
        "carol-pw",
        &[Grant::repository("team/*", &["push", "pull"])],
    );
    tokens.add_user("dave", "dave-pw", &[Grant::repository("team/*", &["pull"])]);

    // The same token is good for the registry's service only.
    let registry_get = |token: &str| {
        let output = run(Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("http://{host}/v2/")));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let for_registry = tokens.token_for(Some("carol"), REGISTRY_SERVICE, &[]);
    let for_notary = tokens.token_for(Some("carol"), NOTARY_SERVICE, &[]);
    assert_eq!(registry_get(&for_registry), "200");
    assert_eq!(registry_get(&for_notary), "401");

    // No trust server here: content trust stays off.
    let carol =
        DockerCli::with_trust_server(&dir.join("carol"), "https://127.0.0.1:9", &pki.bundle);
    carol.login(&host, "carol", "carol-pw");
    let reference = format!("{host}/team/tool:1");
    carol.make_image(&reference, "carol");
    let out = carol.ok(&["push", &reference]);
    assert!(out.contains("1: digest: sha256:"), "{out}");

    let dave = DockerCli::with_trust_server(&dir.join("dave"), "https://127.0.0.1:9", &pki.bundle);
    dave.login(&host, "dave", "dave-pw");
    let mine = format!("{host}/team/tool:dave");
    dave.tag(&reference, &mine);
    let output = dave.run(&["push", &mine]);
    assert!(!output.status.success(), "{}", all_output(&output));
    assert!(
        all_output(&output).contains("denied: requested access to the resource is denied"),
        "{}",
        all_output(&output)
    );
    dave.remove_images();
    carol.remove_images();
}
