#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The container image and the compose stack (deploy/compose/), end to end:
//! * a Debian bookworm base image made locally (`deploy/image/make-base-image`:
//!   debootstrap + `docker import`; the engine here cannot pull images), built
//!   once and reused;
//! * the runtime stage of the repository's `Dockerfile`, fed the notarium
//!   binary cargo built for this test run (`PREBUILT`), and the stack's
//!   registry and PostgreSQL images, all on that base;
//! * `docker-compose up` of `deploy/compose/docker-compose.yml` under a
//!   project name of its own, with the tests' token server on the host as the
//!   realm; then `docker login`, a `DOCKER_CONTENT_TRUST=1` push and a
//!   verified pull by another user; the image's HEALTHCHECK reports healthy,
//!   the trust data is in PostgreSQL and notarium's log is JSON lines;
//! * `docker-compose down -v`, and the notarium image and its build stage
//!   removed at the end (the base, registry and PostgreSQL images are kept
//!   for the next run).

mod common;
#[path = "support/dockercli.rs"]
mod dockercli;
#[path = "support/token_server.rs"]
mod token_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{all_output, free_port, make_test_tls, require, run};
use dockercli::DockerCli;
use serde_json::Value;
use token_server::{Grant, ISSUER, NOTARY_SERVICE, Pki, REGISTRY_SERVICE, TokenServer};

/// The local Debian base every image of the test is built on.
const BASE_IMAGE: &str = "notarium-test/bookworm:base";
const REGISTRY_IMAGE: &str = "notarium-test/registry:compose";
const POSTGRES_IMAGE: &str = "notarium-test/postgres:compose";
/// The UID the runtime stage runs notarium as.
const NOTARIUM_UID: u32 = 10001;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `command`, which must succeed; returns stdout.
fn ok(command: &mut Command, what: &str) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        all_output(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn docker(args: &[&str]) -> Command {
    let mut command = Command::new("docker");
    command.args(args);
    command
}

/// The base image, made with debootstrap the first time (a few minutes).
fn ensure_base_image() {
    require("docker", "docker.io");
    let script = repo().join("deploy/image/make-base-image");
    ok(
        Command::new(&script).arg(BASE_IMAGE),
        "deploy/image/make-base-image (needs debootstrap and a Debian mirror)",
    );
}

/// `docker build` (legacy builder) of `dockerfile` in `context`.
fn build(
    context: &Path,
    dockerfile: &Path,
    tag: &str,
    args: &[(&str, &str)],
    target: Option<&str>,
) {
    let mut command = docker(&["build", "-q", "-t", tag, "-f"]);
    command.arg(dockerfile);
    for (name, value) in args {
        command.arg("--build-arg").arg(format!("{name}={value}"));
    }
    if let Some(target) = target {
        command.args(["--target", target]);
    }
    command.arg(context);
    ok(&mut command, &format!("docker build {tag}"));
}

/// The runtime stage of the repository's Dockerfile with the notarium that
/// cargo built for this test run (debug symbols stripped: a smaller context).
fn build_notarium_image(work: &Path, tag: &str) {
    let context = work.join("image-context");
    std::fs::create_dir_all(context.join("prebuilt")).unwrap();
    // The runtime stage's default configuration, at its path in the repository.
    std::fs::create_dir_all(context.join("deploy/image")).unwrap();
    std::fs::copy(
        repo().join("deploy/image/notarium.json"),
        context.join("deploy/image/notarium.json"),
    )
    .unwrap();
    let binary = context.join("prebuilt/notarium");
    ok(
        Command::new(require("strip", "binutils"))
            .arg("-o")
            .arg(&binary)
            .arg(env!("CARGO_BIN_EXE_notarium")),
        "strip",
    );
    build(
        &context,
        &repo().join("Dockerfile"),
        tag,
        &[
            ("RUST_IMAGE", BASE_IMAGE),
            ("RUNTIME_BASE", BASE_IMAGE),
            ("PREBUILT", "prebuilt/notarium"),
        ],
        Some("runtime"),
    );
}

/// docker-compose (Debian's) or the `docker compose` plugin.
fn compose_program() -> Vec<String> {
    let standalone = Command::new("docker-compose").arg("version").output();
    if standalone.is_ok_and(|o| o.status.success()) {
        return vec!["docker-compose".into()];
    }
    let plugin = Command::new("docker").args(["compose", "version"]).output();
    if plugin.is_ok_and(|o| o.status.success()) {
        return vec!["docker".into(), "compose".into()];
    }
    panic!("neither docker-compose nor `docker compose` works (Debian package docker-compose)");
}

/// One compose project: its settings, and `down -v` when dropped.
struct Stack {
    program: Vec<String>,
    project: String,
    env: Vec<(String, String)>,
    notarium_image: String,
}

impl Stack {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.program[0]);
        command
            .args(&self.program[1..])
            .arg("-f")
            .arg(repo().join("deploy/compose/docker-compose.yml"))
            .args(["-p", &self.project])
            .args(args);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(&mut self.command(args), &format!("compose {args:?}"))
    }

    fn container(&self, service: &str) -> String {
        self.ok(&["ps", "-q", service]).trim().to_string()
    }

    fn logs(&self, service: &str) -> String {
        all_output(&run(&mut self.command(&["logs", "--no-color", service])))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for service in ["notarium", "registry", "postgres"] {
                eprintln!("--- {service} ---\n{}", self.logs(service));
            }
        }
        let _ = run(&mut self.command(&["down", "-v", "--remove-orphans", "-t", "5"]));
        let _ = run(&mut docker(&["rmi", &self.notarium_image]));
        // The build stage's image (it only copied this run's binary).
        let _ = run(&mut docker(&[
            "image",
            "prune",
            "-f",
            "--filter",
            "label=org.notarium.stage=build",
        ]));
    }
}

/// Writes the stack's secrets into `dir` as an operator would: the private
/// ones owned by notarium's UID, mode 0600; the certificates readable.
fn write_secrets(dir: &Path, pki: &Pki) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let (ca, cert, key) = make_test_tls(dir);
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::copy(&cert, secrets.join("tls.crt")).unwrap();
    std::fs::copy(&key, secrets.join("tls.key")).unwrap();
    std::fs::copy(&pki.bundle, secrets.join("token-ca.pem")).unwrap();
    std::fs::write(secrets.join("db-password"), "compose 'db' pw\n").unwrap();
    std::fs::write(
        secrets.join("passphrase"),
        "compose key-sealing passphrase\n",
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o755)).unwrap();
    for public in ["tls.crt", "token-ca.pem"] {
        std::fs::set_permissions(secrets.join(public), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    for private in ["tls.key", "db-password", "passphrase"] {
        let path = secrets.join(private);
        std::os::unix::fs::chown(&path, Some(NOTARIUM_UID), Some(NOTARIUM_UID))
            .unwrap_or_else(|e| panic!("chown {} (the test runs as root): {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // The CA clients trust for notarium.
    let trust_ca = dir.join("notarium-ca.crt");
    std::fs::copy(ca, &trust_ca).unwrap();
    secrets
}

/// Polls `check` every second until it returns true or `limit` passes.
fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> Result<bool, String>) {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check() {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("{what}: not within {limit:?} (last: {last})");
}

#[test]
fn compose_stack_serves_a_signed_push_and_a_verified_pull() {
    ensure_base_image();
    let program = compose_program();
    require("curl", "curl");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let project = format!("notariumtest{}", stamp.replace('-', ""));
    let notarium_image = format!("notarium-test/notarium:{project}");

    build_notarium_image(dir, &notarium_image);
    let compose_dir = repo().join("deploy/compose");
    for (service, tag) in [("registry", REGISTRY_IMAGE), ("postgres", POSTGRES_IMAGE)] {
        let context = compose_dir.join(service);
        build(
            &context,
            &context.join("Dockerfile"),
            tag,
            &[("BASE", BASE_IMAGE)],
            None,
        );
    }
    // The runtime stage is the one `docker build .` gives users: non-root,
    // port 4443, a health check, a data volume.
    let config: Value = serde_json::from_str(&ok(
        &mut docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config}}",
            &notarium_image,
        ]),
        "docker image inspect",
    ))
    .unwrap();
    assert_eq!(config["User"], "notarium", "{config}");
    assert!(config["ExposedPorts"].get("4443/tcp").is_some(), "{config}");
    assert!(
        config["Volumes"].get("/var/lib/notarium").is_some(),
        "{config}"
    );
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "notarium", "health"]),
        "{config}"
    );

    // Alone, with its default configuration (every interface, no auth
    // configured), the image refuses to start, saying why, as a JSON line.
    let output = run(&mut docker(&["run", "--rm", &notarium_image]));
    let out = all_output(&output);
    assert!(!output.status.success(), "{out}");
    let refusal = out
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no JSON error line in:\n{out}"));
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("refusing to listen on :4443 without authentication"),
        "{refusal}"
    );

    let pki = Pki::new(dir);
    let tokens = TokenServer::start(&pki, &[REGISTRY_SERVICE, NOTARY_SERVICE]);
    let secrets = write_secrets(&dir.join("tls"), &pki);
    let trust_ca = dir.join("tls/notarium-ca.crt");
    let (notarium_port, registry_port) = (free_port(), free_port());
    let host = format!("127.0.0.1:{registry_port}");
    let trust_url = format!("https://127.0.0.1:{notarium_port}");

    let env: Vec<(String, String)> = [
        ("TOKEN_REALM", tokens.realm()),
        ("TOKEN_ISSUER", ISSUER.to_string()),
        ("REGISTRY_SERVICE", REGISTRY_SERVICE.to_string()),
        ("NOTARY_SERVICE", NOTARY_SERVICE.to_string()),
        ("BIND_ADDRESS", "127.0.0.1".to_string()),
        ("NOTARIUM_PORT", notarium_port.to_string()),
        ("REGISTRY_PORT", registry_port.to_string()),
        ("SECRETS_DIR", secrets.display().to_string()),
        ("NOTARIUM_IMAGE", notarium_image.clone()),
        ("REGISTRY_IMAGE", REGISTRY_IMAGE.to_string()),
        ("POSTGRES_IMAGE", POSTGRES_IMAGE.to_string()),
        ("DEBIAN_BASE", BASE_IMAGE.to_string()),
        ("RUST_IMAGE", BASE_IMAGE.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let stack = Stack {
        program,
        project,
        env,
        notarium_image,
    };
    // One command brings the stack up (images already built above).
    stack.ok(&["up", "-d", "--no-build"]);

    // notarium answers through its published port with the operator's TLS.
    let health_url = format!("{trust_url}/_notary_server/health");
    wait_until(
        "notarium healthy on its port",
        Duration::from_secs(120),
        || {
            let output = run(Command::new(env!("CARGO_BIN_EXE_notarium"))
                .args(["health", "--url", &health_url, "--cacert"])
                .arg(&trust_ca));
            if output.status.success() {
                Ok(true)
            } else {
                Err(all_output(&output))
            }
        },
    );
    // The registry asks for a token.
    wait_until("registry answering 401", Duration::from_secs(60), || {
        let output = run(Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{host}/v2/"),
        ]));
        let code = String::from_utf8_lossy(&output.stdout).into_owned();
        if code == "401" { Ok(true) } else { Err(code) }
    });
    // The image's own HEALTHCHECK (`notarium health` inside the container).
    let notarium_container = stack.container("notarium");
    wait_until(
        "the container's health check",
        Duration::from_secs(90),
        || {
            let status = ok(
                &mut docker(&[
                    "inspect",
                    "--format",
                    "{{.State.Health.Status}}",
                    &notarium_container,
                ]),
                "docker inspect",
            );
            let status = status.trim().to_string();
            if status == "healthy" {
                Ok(true)
            } else {
                Err(status)
            }
        },
    );
    let uid = ok(
        &mut docker(&["exec", &notarium_container, "id", "-u"]),
        "docker exec id",
    );
    assert_eq!(uid.trim(), NOTARIUM_UID.to_string());

    // The registry names repositories without its host, notarium with it.
    tokens.add_user(
        "alice",
        "alice-pw",
        &[
            Grant::repository("team/*", &["push", "pull"]),
            Grant::repository(&format!("{host}/team/*"), &["push", "pull"]),
        ],
    );
    let gun = format!("{host}/team/app");
    let alice = DockerCli::with_trust_server(&dir.join("alice"), &trust_url, &trust_ca);
    alice.login(&host, "alice", "alice-pw");
    alice.make_image(&format!("{gun}:v1"), "compose v1");
    let digest = alice.signed_push(&format!("{gun}:v1"));
    alice.remove_images();

    let puller = DockerCli::with_trust_server(&dir.join("puller"), &trust_url, &trust_ca);
    puller.login(&host, "alice", "alice-pw");
    puller.verified_pull(&format!("{gun}:v1"), &digest);
    puller.remove_images();

    // The trust data went to the stack's PostgreSQL.
    let count = stack.ok(&[
        "exec",
        "-T",
        "-u",
        "postgres",
        "postgres",
        "psql",
        "-d",
        "notarium",
        "-Atc",
        &format!("SELECT count(*) FROM tuf_files WHERE gun = '{gun}'"),
    ]);
    let files: u32 = count.trim().parse().unwrap();
    assert!(
        files >= 4,
        "expected root, targets, snapshot, timestamp: {count}"
    );

    // notarium logs JSON, one object per line, the publish with its subject.
    let logs = stack.logs("notarium");
    let mut published = false;
    for line in logs.lines() {
        // `docker-compose logs` prefixes each line with `<container> | `.
        let Some((_, text)) = line.split_once("| ") else {
            continue;
        };
        let entry: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("notarium log line is not JSON ({e}): {text}"));
        let span = &entry["span"];
        if span["operation"] == "UpdateTUF" && span["status"] == 200 {
            assert_eq!(span["subject"], "alice", "{entry}");
            assert_eq!(span["gun"], gun.as_str(), "{entry}");
            published = true;
        }
    }
    assert!(published, "no publish in notarium's log:\n{logs}");
    assert!(!logs.contains("alice-pw"), "{logs}");
}
