#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Token auth on the real server, run in-process on 127.0.0.1:0 and asked
//! with curl: notary-server 0.7's 401 challenges and bodies per route (bytes
//! captured from the Go server), good tokens opening their routes, open
//! health and metrics, the prefix filter before auth, and the loopback-only
//! default without auth.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{Value, json};

use notarium::app::{StartError, Started, run};
use notarium::config::{Config, ConfigOverrides};

const REALM: &str = "https://auth.example.com/token";
const SERVICE: &str = "notary.example.com";
const ISSUER: &str = "auth.example.com";

/// Everything the server logs, for checking what reaches the logs.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

/// The token server's signing key: a self-signed certificate, which is
/// also the whole root bundle (the usual docker token-server setup).
struct TokenSigner {
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl TokenSigner {
    fn new() -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "token signer");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self { key, cert }
    }

    fn token_for(&self, subject: &str, access: &Value) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let header =
            json!({"alg": "ES256", "typ": "JWT", "x5c": [STANDARD.encode(self.cert.der())]});
        let claims = json!({
            "iss": ISSUER, "sub": subject, "aud": SERVICE,
            "exp": now + 600, "nbf": now - 5, "iat": now - 5, "jti": subject,
            "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.key.serialize_der())
                .unwrap();
        let signature = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn token(&self, gun: &str, actions: &[&str]) -> String {
        self.token_for(
            "alice",
            &json!([{"type": "repository", "name": gun, "actions": actions}]),
        )
    }
}

/// notarium serving in this process until dropped.
struct Server {
    addr: SocketAddr,
    ca: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<Result<(), StartError>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_config(dir: &Path, extra: Value) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    // The SQLite file by absolute path: this server runs in the test's
    // working directory, not in `dir`.
    let storage = match common::backend() {
        common::Backend::Sqlite => {
            json!({"backend": "sqlite", "db_url": dir.join("data/notarium.db")})
        }
        common::Backend::Postgres => common::storage(dir),
    };
    let mut config = json!({
        "server": {"http_addr": "127.0.0.1:0", "keys_dir": dir.join("keys")},
        "trust_service": {"type": "local", "key_algorithm": "ecdsa"},
        "storage": storage,
    });
    merge(&mut config, extra);
    let path = dir.join("notarium.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Starts notarium with `extra` merged into its config; `Err` is the
/// start-up refusal.
fn start(dir: &Path, extra: Value) -> Result<Server, StartError> {
    captured_logs();
    let path = write_config(dir, extra);
    let (config, _) = Config::load(Some(&path), &|_| None, ConfigOverrides::default()).unwrap();
    let (started_tx, started_rx) = mpsc::channel::<Started>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(
            config,
            move |started| {
                let _ = started_tx.send(started.clone());
            },
            async move {
                let _ = stopped.await;
            },
        ))
    });
    match started_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(started) => Ok(Server {
            addr: started.addr,
            ca: started.dev_ca.unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }),
        // The sender is gone: run returned before listening.
        Err(_) => Err(thread.join().unwrap().unwrap_err()),
    }
}

fn auth_section(dir: &Path, signer: &TokenSigner, autoredirect: bool) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("token-root.pem"), signer.cert.pem()).unwrap();
    json!({"auth": {"type": "token", "options": {
        "realm": REALM, "service": SERVICE, "issuer": ISSUER,
        // Relative: resolved against the config file's folder.
        "rootcertbundle": "token-root.pem",
        "autoredirect": autoredirect,
    }}})
}

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    fn body(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Server {
    fn call(&self, method: &str, path: &str, token: Option<&str>) -> Reply {
        self.call_with(method, path, token, &[])
    }

    fn call_with(&self, method: &str, path: &str, token: Option<&str>, extra: &[&str]) -> Reply {
        common::require("curl", "curl");
        let body = tempfile::NamedTempFile::new().unwrap();
        let headers = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new("curl");
        command
            .arg("-sS")
            .arg("--cacert")
            .arg(&self.ca)
            .arg("-o")
            .arg(body.path())
            .arg("-D")
            .arg(headers.path())
            .arg("-w")
            .arg("%{http_code}")
            .arg("-X")
            .arg(method)
            .args(extra);
        if let Some(token) = token {
            command
                .arg("-H")
                .arg(format!("Authorization: Bearer {token}"));
        }
        command.arg(format!("https://{}{path}", self.addr));
        let output = common::run(&mut command);
        assert!(output.status.success(), "curl failed");
        Reply {
            status: String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .unwrap(),
            headers: std::fs::read_to_string(headers.path()).unwrap(),
            body: std::fs::read(body.path()).unwrap(),
        }
    }
}

/// (type, name, actions) of a required access.
type Resource = (&'static str, &'static str, &'static [&'static str]);

/// The challenge and body notary-server 0.7 sends (captured with curl).
fn challenge(scope: &str, error: Option<&str>) -> String {
    let mut text = format!(r#"Bearer realm="{REALM}",service="{SERVICE}",scope="{scope}""#);
    if let Some(error) = error {
        text.push_str(&format!(r#",error="{error}""#));
    }
    text
}

fn unauthorized_body(kind: &str, name: &str, actions: &[&str]) -> String {
    let detail: Vec<String> = actions
        .iter()
        .map(|action| {
            format!(r#"{{"Type":"{kind}","Class":"","Name":"{name}","Action":"{action}"}}"#)
        })
        .collect();
    format!(
        "{{\"errors\":[{{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":[{}]}}]}}\n",
        detail.join(",")
    )
}

#[test]
fn every_route_challenges_like_notary_server() {
    let dir = tempfile::tempdir().unwrap();
    let signer = TokenSigner::new();
    let server = start(dir.path(), auth_section(dir.path(), &signer, false)).unwrap();
    let gun = "example.com/team/app";
    let hash = "a".repeat(64);
    let repo = |actions: &'static [&'static str]| ("repository", gun, actions);
    let catalog = ("registry", "catalog", &["*"][..]);
    let cases: Vec<(&str, String, Resource)> = vec![
        ("GET", "/v2/".into(), catalog),
        ("GET", "/v2/_trust/changefeed".into(), catalog),
        ("GET", "/nothing/here".into(), catalog),
        ("PUT", format!("/v2/{gun}/_trust/tuf/"), catalog),
        (
            "POST",
            format!("/v2/{gun}/_trust/tuf/"),
            repo(&["push", "pull"]),
        ),
        (
            "GET",
            format!("/v2/{gun}/_trust/tuf/root.json"),
            repo(&["pull"]),
        ),
        (
            "GET",
            format!("/v2/{gun}/_trust/tuf/root.{hash}.json"),
            repo(&["pull"]),
        ),
        (
            "GET",
            format!("/v2/{gun}/_trust/tuf/2.targets.json"),
            repo(&["pull"]),
        ),
        (
            "GET",
            format!("/v2/{gun}/_trust/tuf/timestamp.key"),
            repo(&["push", "pull"]),
        ),
        (
            "POST",
            format!("/v2/{gun}/_trust/tuf/snapshot.key"),
            repo(&["*"]),
        ),
        ("DELETE", format!("/v2/{gun}/_trust/tuf/"), repo(&["*"])),
        (
            "GET",
            format!("/v2/{gun}/_trust/changefeed"),
            repo(&["pull"]),
        ),
        ("GET", format!("/v2/{gun}/_trust/audit"), repo(&["*"])),
        ("PUT", format!("/v2/{gun}/_trust/immutable"), repo(&["*"])),
    ];
    for (method, path, (kind, name, actions)) in &cases {
        let reply = server.call(method, path, None);
        assert_eq!(reply.status, 401, "{method} {path}: {}", reply.body());
        let scope = format!("{kind}:{name}:{}", actions.join(","));
        assert_eq!(
            reply.header("www-authenticate").as_deref(),
            Some(challenge(&scope, None).as_str()),
            "{method} {path}"
        );
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            reply.body(),
            unauthorized_body(kind, name, actions),
            "{method} {path}"
        );
        // A token that does not verify: the same, with invalid_token.
        let bad = server.call(method, path, Some("not.a.token"));
        assert_eq!(bad.status, 401);
        assert_eq!(
            bad.header("www-authenticate").as_deref(),
            Some(challenge(&scope, Some("invalid_token")).as_str())
        );
    }
    // A scheme other than Bearer counts as no token (no `error`).
    let basic = server.call_with("GET", "/v2/", None, &["-H", "Authorization: Basic YTpi"]);
    assert_eq!(
        basic.header("www-authenticate").as_deref(),
        Some(challenge("registry:catalog:*", None).as_str())
    );
    // Health and metrics stay open; unknown methods get mux's bare 405.
    assert_eq!(
        server.call("GET", "/_notary_server/health", None).status,
        200
    );
    let metrics = server.call("GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    let odd = server.call("BREW", "/v2/", None);
    assert_eq!((odd.status, odd.body.len()), (405, 0));
    let metrics = server.call("GET", "/metrics", None).body();
    assert!(metrics.contains(r#"method="OTHER""#), "{metrics}");
    assert!(!metrics.contains("BREW"), "{metrics}");
    assert!(
        metrics.contains(r#"operation="UpdateTUF""#) && metrics.contains(r#"status="401""#),
        "{metrics}"
    );
}

#[test]
fn good_tokens_open_exactly_their_routes() {
    let dir = tempfile::tempdir().unwrap();
    let signer = TokenSigner::new();
    let server = start(dir.path(), auth_section(dir.path(), &signer, false)).unwrap();
    let gun = "example.com/team/tokens";
    let pull = signer.token(gun, &["pull"]);
    let push_pull = signer.token(gun, &["push", "pull"]);
    let admin = signer.token(gun, &["*"]);
    let catalog = signer.token_for(
        "ops",
        &json!([{"type": "registry", "name": "catalog", "actions": ["*"]}]),
    );

    // Reads: pull is enough; nothing is published yet, so 404.
    let root = format!("/v2/{gun}/_trust/tuf/root.json");
    let reply = server.call("GET", &root, Some(&pull));
    assert_eq!(reply.status, 404, "{}", reply.body());
    assert!(reply.header("www-authenticate").is_none());
    assert_eq!(
        server
            .call(
                "GET",
                &format!("/v2/{gun}/_trust/changefeed?records=10"),
                Some(&pull)
            )
            .status,
        200
    );

    // The key needs push too.
    let key = format!("/v2/{gun}/_trust/tuf/timestamp.key");
    let reply = server.call("GET", &key, Some(&pull));
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate").as_deref(),
        Some(
            challenge(
                &format!("repository:{gun}:push,pull"),
                Some("insufficient_scope")
            )
            .as_str()
        )
    );
    let reply = server.call("GET", &key, Some(&push_pull));
    assert_eq!(reply.status, 200, "{}", reply.body());
    assert!(reply.body().contains("\"keytype\""));

    // An update gets past auth with push+pull (and is then refused as empty).
    let update = format!("/v2/{gun}/_trust/tuf/");
    assert_eq!(server.call("POST", &update, Some(&pull)).status, 401);
    let reply = server.call_with(
        "POST",
        &update,
        Some(&push_pull),
        &[
            "-H",
            "Content-Type: multipart/form-data; boundary=x",
            "--data-binary",
            "--x--\r\n",
        ],
    );
    assert_eq!(reply.status, 400, "{}", reply.body());

    // Rotation and delete need `*`.
    let rotate = format!("/v2/{gun}/_trust/tuf/snapshot.key");
    assert_eq!(server.call("POST", &rotate, Some(&push_pull)).status, 401);
    assert_eq!(server.call("POST", &rotate, Some(&admin)).status, 200);
    assert_eq!(server.call("DELETE", &update, Some(&push_pull)).status, 401);
    let deleted = server.call(
        "DELETE",
        &update,
        Some(&signer.token_for(
            "admin-of-tokens",
            &json!([{"type": "repository", "name": gun, "actions": ["*"]}]),
        )),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body());
    // The caller's subject reaches the logs of the operation.
    let logs = logs();
    assert!(logs.contains("admin-of-tokens"), "{logs}");

    // Another GUN, or a GUN that merely starts the same, is not covered.
    assert_eq!(
        server
            .call(
                "GET",
                &format!("/v2/{gun}x/_trust/tuf/root.json"),
                Some(&admin)
            )
            .status,
        401
    );
    assert_eq!(
        server
            .call(
                "GET",
                "/v2/example.com/team/_trust/tuf/root.json",
                Some(&admin)
            )
            .status,
        401
    );

    // The routes without a GUN need the catalog.
    assert_eq!(server.call("GET", "/v2/", Some(&admin)).status, 401);
    let reply = server.call("GET", "/v2/", Some(&catalog));
    assert_eq!((reply.status, reply.body()), (200, "{}".to_string()));
    assert_eq!(
        server
            .call("GET", "/v2/_trust/changefeed?records=10", Some(&catalog))
            .status,
        200
    );
    assert_eq!(server.call("GET", "/nothing", Some(&catalog)).status, 404);

    // The audit trail: `*` only.
    assert_eq!(
        server
            .call("GET", &format!("/v2/{gun}/_trust/audit"), Some(&admin))
            .status,
        200
    );
    assert_eq!(
        server
            .call("GET", &format!("/v2/{gun}/_trust/audit"), Some(&push_pull))
            .status,
        401
    );

    // Tokens for another service or from another signer do not verify.
    let stranger = TokenSigner::new().token(gun, &["*"]);
    let reply = server.call("GET", &root, Some(&stranger));
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .ends_with(r#"error="invalid_token""#)
    );
}

#[test]
fn autoredirect_points_the_realm_at_the_request_host() {
    let dir = tempfile::tempdir().unwrap();
    let signer = TokenSigner::new();
    let server = start(dir.path(), auth_section(dir.path(), &signer, true)).unwrap();
    let reply = server.call("GET", "/v2/", None);
    let host = server.addr.to_string();
    assert_eq!(
        reply.header("www-authenticate").unwrap(),
        format!(
            r#"Bearer realm="https://{host}/auth/token",service="{SERVICE}",scope="registry:catalog:*""#
        )
    );
}

#[test]
fn the_prefix_filter_answers_before_auth() {
    let dir = tempfile::tempdir().unwrap();
    let signer = TokenSigner::new();
    let mut extra = auth_section(dir.path(), &signer, false);
    extra["repositories"] = json!({"gun_prefixes": ["example.com/"]});
    let server = start(dir.path(), extra).unwrap();
    let reply = server.call("POST", "/v2/other.org/app/_trust/tuf/", None);
    assert_eq!(reply.status, 400, "{}", reply.body());
    assert!(reply.body().contains("INVALID_GUN"));
    assert!(reply.header("www-authenticate").is_none());
    let reply = server.call("GET", "/v2/other.org/app/_trust/tuf/root.json", None);
    assert_eq!(reply.status, 404);
    assert!(reply.header("www-authenticate").is_none());
    assert_eq!(
        server
            .call("GET", "/v2/example.com/app/_trust/tuf/root.json", None)
            .status,
        401
    );
}

#[test]
fn without_auth_only_loopback_unless_insecure_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    let refused = start(
        &dir.path().join("refused"),
        json!({"server": {"http_addr": "0.0.0.0:0"}}),
    );
    let Err(error) = refused else {
        panic!("notarium served 0.0.0.0 without auth");
    };
    assert!(matches!(error, StartError::InsecureBind { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("without authentication") && message.contains("insecure_no_auth"),
        "{message}"
    );

    // Loopback needs nothing, and everything is open.
    let local = start(&dir.path().join("local"), json!({})).unwrap();
    let reply = local.call("GET", "/v2/", None);
    assert_eq!((reply.status, reply.body()), (200, "{}".to_string()));
    assert_eq!(
        local
            .call(
                "GET",
                "/v2/example.com/team/open/_trust/tuf/root.json",
                None
            )
            .status,
        404
    );

    // insecure_no_auth: serves, and says so.
    let open = start(
        &dir.path().join("open"),
        json!({"server": {"http_addr": "0.0.0.0:0", "insecure_no_auth": true}}),
    )
    .unwrap();
    let reply = Server {
        addr: SocketAddr::from(([127, 0, 0, 1], open.addr.port())),
        ca: open.ca.clone(),
        stop: None,
        thread: None,
    }
    .call("GET", "/v2/", None);
    assert_eq!(reply.status, 200);
    assert!(logs().contains("serving without authentication on a non-loopback address"));

    // With auth, any address is fine.
    let signer = TokenSigner::new();
    let mut extra = auth_section(&dir.path().join("authed"), &signer, false);
    extra["server"] = json!({"http_addr": "0.0.0.0:0"});
    let authed = start(&dir.path().join("authed"), extra).unwrap();
    assert_ne!(authed.addr.port(), 0);
}

#[test]
fn a_bad_root_bundle_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token-root.pem"), "no certificates here").unwrap();
    let extra = json!({"auth": {"type": "token", "options": {
        "realm": REALM, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": "token-root.pem"}}});
    let Err(error) = start(dir.path(), extra) else {
        panic!("started with an empty root bundle");
    };
    let message = error.to_string();
    assert!(
        message.starts_with("auth.options.rootcertbundle"),
        "{message}"
    );
}

#[test]
fn admin_endpoints_need_star_and_record_who() {
    let dir = tempfile::tempdir().unwrap();
    let signer = TokenSigner::new();
    let server = start(dir.path(), auth_section(dir.path(), &signer, false)).unwrap();
    let gun = "example.com/team/admin";
    let push_pull = signer.token(gun, &["push", "pull"]);
    let admin = signer.token_for(
        "root-admin",
        &json!([{"type": "repository", "name": gun, "actions": ["*"]}]),
    );
    let other_admin = signer.token_for(
        "root-admin",
        &json!([{"type": "repository", "name": "example.com/team/other", "actions": ["*"]}]),
    );

    // A key rotation by the admin is recorded with the token's subject.
    let reply = server.call(
        "POST",
        &format!("/v2/{gun}/_trust/tuf/timestamp.key"),
        Some(&admin),
    );
    assert_eq!(reply.status, 200, "{}", reply.body());

    let audit = format!("/v2/{gun}/_trust/audit");
    for token in [None, Some(push_pull.as_str()), Some(other_admin.as_str())] {
        let reply = server.call("GET", &audit, token);
        assert_eq!(reply.status, 401, "{}", reply.body());
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .contains(&format!(r#"scope="repository:{gun}:*""#)),
            "{:?}",
            reply.header("www-authenticate")
        );
    }
    let reply = server.call("GET", &audit, Some(&admin));
    assert_eq!(reply.status, 200, "{}", reply.body());
    let records: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(records["count"], 1, "{records}");
    assert_eq!(records["records"][0]["subject"], "root-admin");
    assert_eq!(records["records"][0]["action"], "rotate_key");
    assert_eq!(records["records"][0]["gun"], gun);
    let reply = server.call("GET", &format!("{audit}?limit=x"), Some(&admin));
    assert_eq!(reply.status, 400, "{}", reply.body());
    assert!(
        reply.body().contains("INVALID_PARAMETERS"),
        "{}",
        reply.body()
    );

    // Immutability: push,pull cannot set it; `*` can, and then the
    // repository cannot be deleted until it is cleared.
    let immutable = format!("/v2/{gun}/_trust/immutable");
    let pull = signer.token(gun, &["pull"]);
    for token in [None, Some(pull.as_str()), Some(push_pull.as_str())] {
        for method in ["GET", "PUT", "DELETE"] {
            assert_eq!(server.call(method, &immutable, token).status, 401);
        }
    }
    let reply = server.call("GET", &immutable, Some(&admin));
    assert_eq!(reply.status, 200, "{}", reply.body());
    let shown: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(shown["immutable"], false);
    let reply = server.call("PUT", &immutable, Some(&admin));
    assert_eq!(reply.status, 200, "{}", reply.body());
    let shown: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(shown["immutable"], true);
    assert_eq!(shown["configured"], false);
    let repository = format!("/v2/{gun}/_trust/tuf/");
    let reply = server.call("DELETE", &repository, Some(&admin));
    assert_eq!(reply.status, 400, "{}", reply.body());
    assert!(reply.body().contains("immutable"), "{}", reply.body());
    let reply = server.call("DELETE", &immutable, Some(&admin));
    assert_eq!(reply.status, 200, "{}", reply.body());
    let shown: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(shown["immutable"], false);
    let reply = server.call("DELETE", &repository, Some(&admin));
    assert_eq!(reply.status, 200, "{}", reply.body());
}

/// A client that writes its whole upload before reading the answer gets the
/// 401, over HTTP/2 too: the refused body is drained, not reset mid-stream.
#[test]
fn a_refused_large_upload_still_gets_its_401() {
    let dir = tempfile::tempdir().unwrap();
    let signer = TokenSigner::new();
    let server = start(dir.path(), auth_section(dir.path(), &signer, false)).unwrap();
    let gun = "example.com/team/large";
    let upload = dir.path().join("large.json");
    std::fs::write(&upload, vec![b'x'; 512 * 1024]).unwrap();
    let pull = signer.token(gun, &["pull"]);
    for token in [None, Some(pull.as_str())] {
        for _ in 0..5 {
            let reply = server.call_with(
                "POST",
                &format!("/v2/{gun}/_trust/tuf/"),
                token,
                &["-F", &format!("files=@{};filename=root", upload.display())],
            );
            assert_eq!(reply.status, 401, "{}", reply.body());
            assert!(reply.body().contains("UNAUTHORIZED"), "{}", reply.body());
        }
    }
}
