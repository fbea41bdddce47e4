//! Helpers for tests that drive real programs: the notary client, the Go
//! reference notary-server, curl, openssl.
//!
//! A peer that is missing fails the test with how to install it; tests never
//! skip (`scripts/test` installs every peer).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The test PostgreSQL server (one per test binary: binaries that need it
/// directly use `common::postgres` rather than a second `mod postgres`).
#[path = "../support/postgres.rs"]
pub mod postgres;
/// The either-backend store of in-process tests.
#[path = "../support/store.rs"]
pub mod store;

/// Which database the servers the tests start use: `NOTARIUM_TEST_STORAGE`
/// unset or `sqlite` (SQLite, the default), or `postgres` (a fresh database
/// of this binary's shared PostgreSQL per server). `scripts/test` runs the
/// suite once each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The environment variable that picks the [`Backend`].
pub const TEST_STORAGE: &str = "NOTARIUM_TEST_STORAGE";

/// The backend this run uses; any other value of the variable fails the
/// test rather than quietly testing SQLite.
pub fn backend() -> Backend {
    match std::env::var(TEST_STORAGE) {
        Err(std::env::VarError::NotPresent) => Backend::Sqlite,
        Ok(value) if value.is_empty() || value == "sqlite" => Backend::Sqlite,
        Ok(value) if value == "postgres" => Backend::Postgres,
        Ok(value) => {
            panic!("{TEST_STORAGE}={value:?}: expected `sqlite` (the default) or `postgres`")
        }
        Err(e) => panic!("{TEST_STORAGE}: {e}"),
    }
}

/// The SQLite storage section, for tests that are about SQLite itself (its
/// file, `notarium backup`): they pass it explicitly and run SQLite in both
/// passes.
pub fn sqlite_storage() -> serde_json::Value {
    serde_json::json!({"backend": "sqlite", "db_url": "data/notarium.db"})
}

/// The storage section of a server in `dir` on this run's [`backend`]: the
/// SQLite file `data/notarium.db` relative to `dir`, or a fresh database
/// of the shared PostgreSQL with its password in a file in `dir`. A server
/// started again in the folder of an earlier one (its `notarium.json` on
/// PostgreSQL) gets that one's database, as it would get its SQLite file.
pub fn storage(dir: &Path) -> serde_json::Value {
    match backend() {
        Backend::Sqlite => sqlite_storage(),
        Backend::Postgres => {
            let earlier = std::fs::read(dir.join("notarium.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .map(|config| config["storage"].clone())
                .filter(|storage| storage["backend"] == "postgres");
            if let Some(storage) = earlier {
                return storage;
            }
            let server = postgres::PgServer::shared();
            std::fs::create_dir_all(dir).unwrap();
            let password_file = dir.join("db-password");
            std::fs::write(&password_file, format!("{}\n", postgres::PASSWORD)).unwrap();
            serde_json::json!({
                "backend": "postgres",
                "db_url": server.url(&server.database()),
                "password_file": password_file,
            })
        }
    }
}

/// Fails the test if `program` is not on PATH.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed: this test needs it (Debian package `{package}`; \
             `scripts/test` installs it)"
        )
    })
}

/// A loopback port that was free a moment ago (for peers that cannot be
/// handed a bound socket).
pub use db_server::free_port;
/// What the test database servers share; it lives in `postgres.rs`, which
/// the library's unit tests include without this module, and `mariadb.rs`
/// takes it from here (one copy per binary).
pub use postgres::db_server;

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "server exited ({status}) before listening on {addr}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr} after 30 s");
}

/// Runs a command and returns its output, echoing it for test logs.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    eprintln!(
        "$ {command:?}\n[exit {}]\n{}",
        output.status,
        all_output(&output)
    );
    output
}

/// What a command printed on stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a command printed on stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// stdout and stderr together (notary prints `* fatal: …` on stdout and
/// its warnings on stderr).
pub fn all_output(output: &Output) -> String {
    format!("{}{}", stdout(output), stderr(output))
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Runs `openssl` with `args` in `dir`; it must succeed. Returns stdout.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    require("openssl", "openssl");
    run_ok(Command::new("openssl").args(args).current_dir(dir))
}

/// A new ECDSA P-256 private key (PEM) in `<dir>/<file>`, made with openssl.
pub fn make_p256_key(dir: &Path, file: &str) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            file,
        ],
    );
}

/// Runs a command feeding `input` on its stdin (confirmation prompts).
pub fn run_with_stdin(command: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    eprintln!(
        "$ {command:?} <<< {input:?}\n[exit {}]\n{}",
        output.status,
        all_output(&output)
    );
    output
}

/// Runs a command that must succeed; returns stdout.
pub fn run_ok(command: &mut Command) -> String {
    let output = run(command);
    assert!(output.status.success(), "command failed: {command:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `path` opened for appending, created if missing: a log that a process
/// started again in the same place goes on writing.
pub fn append_to(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

/// A child process killed when dropped.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1/localhost, made with
/// openssl. Returns (ca.crt, server.crt, server.key).
pub fn make_test_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    require("openssl", "openssl");
    let ca_key = dir.join("ca.key");
    let ca_crt = dir.join("ca.crt");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let crt = dir.join("server.crt");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| openssl(dir, args);
    make_p256_key(dir, "ca.key");
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        "ca.key",
        "-subj",
        "/CN=test CA",
        "-days",
        "30",
        "-out",
        "ca.crt",
    ]);
    make_p256_key(dir, "server.key");
    openssl(&[
        "req",
        "-new",
        "-key",
        "server.key",
        "-subj",
        "/CN=localhost",
        "-out",
        "server.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    let _ = (ca_key, csr);
    (ca_crt, crt, key)
}

/// The Go reference notary-server (Debian's `notary` package) with the local
/// trust service and memory storage.
pub struct ReferenceServer {
    pub url: String,
    pub ca: PathBuf,
    _process: Process,
}

impl ReferenceServer {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, serde_json::json!({}))
    }

    /// `start` with `extra` merged into the config JSON (e.g. an `auth`
    /// section).
    pub fn start_with(dir: &Path, extra: serde_json::Value) -> Self {
        let binary = require("notary-server", "notary");
        let (ca, cert, key) = make_test_tls(dir);
        let port = free_port();
        let config = dir.join("server.json");
        let mut settings = serde_json::json!({
            "server": {
                "http_addr": format!("127.0.0.1:{port}"),
                "tls_cert_file": cert,
                "tls_key_file": key,
            },
            "trust_service": {"type": "local"},
            "storage": {"backend": "memory"},
            "logging": {"level": "info"},
        });
        merge(&mut settings, extra);
        std::fs::write(&config, settings.to_string()).unwrap();
        let log = dir.join("notary-server.log");
        let mut child = Command::new(binary)
            .arg("-config")
            .arg(&config)
            .arg("-logf")
            .arg("logfmt")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("notary-server.err")).unwrap())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_port(addr, &mut child, &log);
        Self {
            url: format!("https://127.0.0.1:{port}"),
            ca,
            _process: Process { child, log },
        }
    }
}

/// The real notary client with its own trust directory.
pub struct NotaryClient {
    pub trust_dir: PathBuf,
    pub server: String,
    pub ca: PathBuf,
}

pub const PASSPHRASE: &str = "correct horse battery staple";

impl NotaryClient {
    pub fn new(trust_dir: PathBuf, server: &str, ca: &Path) -> Self {
        require("notary", "notary");
        std::fs::create_dir_all(&trust_dir).unwrap();
        Self {
            trust_dir,
            server: server.to_string(),
            ca: ca.to_path_buf(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("notary");
        command
            .arg("-d")
            .arg(&self.trust_dir)
            .arg("-s")
            .arg(&self.server)
            .arg("--tlscacert")
            .arg(&self.ca)
            .args(args);
        for role in ["ROOT", "TARGETS", "SNAPSHOT", "DELEGATION"] {
            command.env(format!("NOTARY_{role}_PASSPHRASE"), PASSPHRASE);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        run_ok(&mut self.command(args))
    }
}

/// HTTPS requests with curl (the test trusts `ca`).
pub struct Curl {
    pub base: String,
    pub ca: PathBuf,
}

impl Curl {
    /// GET `path`; returns (status, body).
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        self.request(&["-X", "GET"], path)
    }

    /// Multipart POST of metadata files as notary does: field `files`,
    /// filename = role.
    pub fn publish(&self, gun: &str, parts: &[(&str, &Path)]) -> (u16, Vec<u8>) {
        let mut args: Vec<String> = Vec::new();
        for (role, file) in parts {
            args.push("-F".into());
            args.push(format!("files=@{};filename={role}", file.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.request(&args, &format!("/v2/{gun}/_trust/tuf/"))
    }

    pub fn request(&self, args: &[&str], path: &str) -> (u16, Vec<u8>) {
        require("curl", "curl");
        let body = tempfile::NamedTempFile::new().unwrap();
        let output = run(Command::new("curl")
            .arg("-sS")
            .arg("--cacert")
            .arg(&self.ca)
            .arg("-o")
            .arg(body.path())
            .arg("-w")
            .arg("%{http_code}")
            .args(args)
            .arg(format!("{}{path}", self.base)));
        assert!(output.status.success(), "curl failed");
        let status = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        (status, std::fs::read(body.path()).unwrap())
    }
}

/// A real `notarium serve` process on 127.0.0.1:0 with its own data and
/// keys directories (development TLS generated into `keys/`).
pub struct Notarium {
    pub url: String,
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub dir: PathBuf,
    pub config: PathBuf,
    process: Option<Process>,
}

impl Notarium {
    /// Starts notarium with a notary-server style config in `dir`; `extra`
    /// is merged into the config JSON.
    pub fn start(dir: &Path, extra: serde_json::Value) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        // A test that names a backend gets exactly its storage section;
        // otherwise this run's backend, with the test's other settings.
        let storage = match extra.pointer("/storage/backend") {
            Some(_) => serde_json::json!({}),
            None => storage(dir),
        };
        let mut config = serde_json::json!({
            "server": {"http_addr": "127.0.0.1:0", "keys_dir": "keys"},
            "trust_service": {"type": "local", "key_algorithm": "ecdsa"},
            "storage": storage,
            "logging": {"level": "info"},
        });
        merge(&mut config, extra);
        let path = dir.join("notarium.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let mut server = Self {
            url: String::new(),
            addr: "127.0.0.1:1".parse().unwrap(),
            ca: dir.join("keys/dev-ca.crt"),
            dir: dir.to_path_buf(),
            config: path,
            process: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        use std::io::{BufRead, BufReader};
        let log = self.dir.join("notarium.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_notarium"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .current_dir(&self.dir)
            .env_remove("NOTARIUM_KEY_PASSPHRASE")
            .stdout(Stdio::piped())
            .stderr(append_to(&log))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[notarium] {line}");
                if let Some(url) = line.split_whitespace().find(|w| w.starts_with("https://")) {
                    let _ = sender.send(url.trim_end_matches('/').to_string());
                }
            }
        });
        let url = receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "notarium did not report its address:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        self.addr = url.trim_start_matches("https://").parse().unwrap();
        self.url = url;
        self.process = Some(Process { child, log });
    }

    /// Stops the process (SIGKILL) and starts it again on the same data.
    pub fn restart(&mut self) {
        self.process = None;
        // Reuse the port the clients know about.
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&self.config).unwrap()).unwrap();
        config["server"]["http_addr"] = serde_json::json!(self.addr.to_string());
        std::fs::write(&self.config, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        self.launch();
    }

    /// The process ID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|process| process.child.id())
    }

    /// SIGKILL, no restart ([`Notarium::restart`] brings it back).
    pub fn kill(&mut self) {
        self.process = None;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("notarium.log")).unwrap_or_default()
    }

    pub fn curl(&self) -> Curl {
        Curl {
            base: self.url.clone(),
            ca: self.ca.clone(),
        }
    }

    pub fn notary(&self, trust_dir: PathBuf) -> NotaryClient {
        NotaryClient::new(trust_dir, &self.url, &self.ca)
    }
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(base), serde_json::Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (slot, value) => *slot = value,
    }
}

/// A UCP-style client bundle for `user`, made with openssl: a cluster CA
/// (`ca.pem`) and the user's ECDSA P-256 certificate (`cert.pem`, CN = user,
/// valid one year, client auth) with its key (`key.pem`, SEC1 `EC PRIVATE
/// KEY`). Returns (ca.pem, cert.pem, key.pem).
pub fn make_client_bundle(dir: &Path, user: &str) -> (PathBuf, PathBuf, PathBuf) {
    require("openssl", "openssl");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("user.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| openssl(dir, args);
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ca-key.pem",
    ]);
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        "ca-key.pem",
        "-subj",
        "/CN=UCP Client Root CA",
        "-days",
        "365",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "key.pem",
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        "key.pem",
        "-subj",
        &format!("/CN={user}"),
        "-out",
        "user.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "user.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "365",
        "-extfile",
        "user.ext",
        "-out",
        "cert.pem",
    ]);
    let verified = openssl(&["verify", "-CAfile", "ca.pem", "cert.pem"]);
    assert_eq!(verified.trim(), "cert.pem: OK");
    let subject = openssl(&["x509", "-in", "cert.pem", "-noout", "-subject"]);
    assert_eq!(subject.trim(), format!("subject=CN = {user}"));
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// An ECDSA P-256 key and a self-signed certificate for it, made with
/// openssl as `<dir>/<name>.key` and `<dir>/<name>.crt` (CN = `name`).
pub fn make_delegation_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    require("openssl", "openssl");
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    make_p256_key(dir, &format!("{name}.key"));
    run_ok(
        Command::new("openssl")
            .args(["req", "-new", "-x509", "-key"])
            .arg(&key)
            .args(["-subj", &format!("/CN={name}"), "-days", "3650", "-out"])
            .arg(&cert),
    );
    (key, cert)
}
