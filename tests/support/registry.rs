//! A throwaway Docker registry for end-to-end tests: Debian's
//! `docker-registry` (distribution 2.8) on a free loopback port, with
//! filesystem storage in the test's directory and no auth (or token auth,
//! `start_with_auth`). The Docker engine treats 127.0.0.0/8 registries as
//! insecure, so plain HTTP works.
//!
//! Use from a test file that also declares `mod common;`:
//! `#[path = "support/registry.rs"] mod registry;`
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Process, free_port, require};

const BINARY: &str = "/usr/bin/docker-registry";

/// Registries started by this process (part of their identity token).
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// A running `docker-registry serve`, killed when dropped.
pub struct Registry {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
    _process: Process,
}

impl Registry {
    /// Writes `dir/config.yml` and starts the registry; returns once
    /// `GET /v2/` answers 200. Panics (with how to install it) if the
    /// binary is missing.
    pub fn start(dir: &Path) -> Self {
        Self::start_with_auth(dir, None)
    }

    /// `start` with token auth (`auth: token:` in the registry's config);
    /// ready once `GET /v2/` answers 401.
    pub fn start_with_auth(dir: &Path, auth: Option<&TokenAuth>) -> Self {
        let binary = if Path::new(BINARY).is_file() {
            PathBuf::from(BINARY)
        } else {
            require("docker-registry", "docker-registry")
        };
        std::fs::create_dir_all(dir.join("data")).unwrap();
        // The port is picked before the registry binds it: if something
        // else takes it meanwhile the registry exits, and we try another.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            // Every response carries this header, so that we know it is our
            // registry that answers on `addr`.
            let token = format!(
                "{}-{}-{port}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            );
            let config = dir.join("config.yml");
            let mut yaml = config_yaml(dir, addr, &token);
            if let Some(auth) = auth {
                yaml.push_str(&auth.yaml());
            }
            std::fs::write(&config, yaml).unwrap();
            let log = dir.join("registry.log");
            let file = std::fs::File::create(&log).unwrap();
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut process = Process {
                child,
                log: log.clone(),
            };
            let ready = if auth.is_some() { 401 } else { 200 };
            match wait_until_ready(addr, &token, ready, &mut process) {
                Ok(()) => {
                    return Self {
                        addr,
                        dir: dir.to_path_buf(),
                        log,
                        _process: process,
                    };
                }
                Err(e) => failures.push(format!(
                    "{e}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )),
            }
        }
        panic!("docker-registry did not start:\n{}", failures.join("\n"));
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The digest the registry serves for `repository:reference` (a
    /// `HEAD /v2/<repository>/manifests/<reference>` accepting a schema 2
    /// manifest), or `None` on 404.
    pub fn manifest_digest(&self, repository: &str, reference: &str) -> Option<String> {
        let (status, headers) = http(
            self.addr,
            "HEAD",
            &format!("/v2/{repository}/manifests/{reference}"),
            &["Accept: application/vnd.docker.distribution.manifest.v2+json"],
        )
        .unwrap_or_else(|e| panic!("registry HEAD manifest: {e}"));
        match status {
            200 => Some(
                header(&headers, "docker-content-digest")
                    .unwrap_or_else(|| panic!("no Docker-Content-Digest in\n{headers}")),
            ),
            404 => None,
            other => panic!("registry answered {other} for {repository}:{reference}\n{headers}"),
        }
    }

    /// The registry's output (access log and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The registry's `auth: token:` section (distribution 2.x).
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub rootcertbundle: PathBuf,
}

impl TokenAuth {
    fn yaml(&self) -> String {
        format!(
            "auth:
  token:
    realm: {}
    service: {}
    issuer: {}
    rootcertbundle: {}
",
            self.realm,
            self.service,
            self.issuer,
            self.rootcertbundle.display()
        )
    }
}

/// distribution 2.x configuration (see /etc/docker/registry/config.yml):
/// filesystem storage under `dir/data`, plain HTTP on `addr`, no auth.
fn config_yaml(dir: &Path, addr: SocketAddr, token: &str) -> String {
    let root = dir.join("data");
    format!(
        "version: 0.1
log:
  level: warn
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: notarium-test-registry
  headers:
    X-Content-Type-Options: [nosniff]
    X-Notarium-Test-Registry: [{token}]
",
        root = root.display(),
    )
}

/// Polls `GET /v2/` until our registry (the one sending `token`) answers
/// `ready` (30 s), or the process exits.
fn wait_until_ready(
    addr: SocketAddr,
    token: &str,
    ready: u16,
    process: &mut Process,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = process.child.try_wait() {
            return Err(format!(
                "docker-registry exited ({status}) before serving {addr}"
            ));
        }
        match http(addr, "GET", "/v2/", &[]) {
            Ok((status, head))
                if status == ready
                    && header(&head, "x-notarium-test-registry").as_deref() == Some(token) =>
            {
                return Ok(());
            }
            Ok((status, headers)) => last = format!("GET /v2/ answered {status}\n{headers}"),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "docker-registry not ready on {addr} after 30 s: {last}"
    ))
}

/// A minimal HTTP/1.1 request; returns (status, response head).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let head = response
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response from {addr}: {head:?}"))?;
    Ok((status, head))
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// A registry stand-in that counts the requests it gets and knows no
/// manifest (every answer is `404 MANIFEST_UNKNOWN`): for tests that a
/// refused upload causes no registry traffic. Served by a thread for the
/// life of the process.
pub struct CountingRegistry {
    pub addr: SocketAddr,
    requests: std::sync::Arc<AtomicUsize>,
}

impl CountingRegistry {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let counted = counted.clone();
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    // One request per connection: read its head, answer,
                    // close.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body =
                        r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Self { addr, requests }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
