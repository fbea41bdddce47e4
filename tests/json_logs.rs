#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `logging.format: json`: every line notarium logs is one JSON object; a
//! real notary CLI publish and a refused (401) request each leave one
//! request line with method, path, GUN, operation, status, duration and the
//! token subject, and no credential or token appears anywhere in the log.

mod common;
#[path = "support/token_server.rs"]
mod token_server;

use base64::Engine;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{NotaryClient, Process, all_output, free_port, run};
use serde_json::{Value, json};
use token_server::{Grant, NOTARY_SERVICE, Pki, TokenServer};

const GUN: &str = "notarium.test/logs/app";
const PASSWORD: &str = "writer-secret-pw";

/// notarium with `config` in `dir`, stdout and stderr both into
/// `dir/notarium.log` (a container runtime mixes them the same way); returns
/// once its health endpoint answers.
fn start(dir: &Path, config: &Value, args: &[&str]) -> (Process, String) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("notarium.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let log = dir.join("notarium.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_notarium"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .args(args)
        .current_dir(dir)
        .env_remove("NOTARIUM_KEY_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut process = Process { child, log };
    let url = format!(
        "https://{}",
        config["server"]["http_addr"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let probe = run(Command::new(env!("CARGO_BIN_EXE_notarium")).args([
            "health",
            "--url",
            &format!("{url}/_notary_server/health"),
        ]));
        if probe.status.success() {
            return (process, url);
        }
        let exited = process.child.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "notarium did not start ({}):\n{}",
            all_output(&probe),
            std::fs::read_to_string(&process.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The log's lines, each parsed; panics on a line that is not JSON.
fn parse_log(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"))
        })
        .collect()
}

/// The request ("done") line of `method` `operation` with `status`.
fn request_line<'a>(
    lines: &'a [Value],
    method: &str,
    operation: &str,
    status: u64,
) -> Option<&'a Value> {
    lines.iter().find(|line| {
        line["message"] == "done"
            && line["span"]["method"] == method
            && line["span"]["operation"] == operation
            && line["span"]["status"] == status
    })
}

#[test]
fn json_logs_of_a_notary_publish_and_a_refusal() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let pki = Pki::new(dir);
    let tokens = TokenServer::start(&pki, &[NOTARY_SERVICE]);
    tokens.add_user(
        "writer",
        PASSWORD,
        &[Grant::repository("notarium.test/*", &["push", "pull"])],
    );
    let server_dir = dir.join("notarium");
    let (process, url) = start(
        &server_dir,
        &json!({
            "server": {"http_addr": format!("127.0.0.1:{}", free_port()), "keys_dir": "keys"},
            "storage": {"backend": "sqlite", "db_url": "data/notarium.db"},
            "logging": {"level": "info", "format": "json"},
            "auth": tokens.auth_config(&pki, NOTARY_SERVICE),
        }),
        &[],
    );
    let ca = server_dir.join("keys/dev-ca.crt");

    // A real publish by the notary CLI, with the writer's credentials.
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("writer:{PASSWORD}"));
    let client = NotaryClient::new(dir.join("trust"), &url, &ca);
    let payload = dir.join("payload.txt");
    std::fs::write(&payload, b"logged").unwrap();
    for args in [
        vec!["init", GUN],
        vec!["add", GUN, "v1", payload.to_str().unwrap()],
        vec!["publish", GUN],
    ] {
        let output = run(client.command(&args).env("NOTARY_AUTH", &credentials));
        assert!(
            output.status.success(),
            "notary {args:?}:\n{}",
            all_output(&output)
        );
    }
    // The same metadata without a token: 401.
    let output = run(Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .arg(format!("{url}/v2/{GUN}/_trust/tuf/timestamp.json")));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "401");

    let log = std::fs::read_to_string(&process.log).unwrap();
    drop(process);
    let lines = parse_log(&log);
    // The announcement is a log line too (stdout is in the same stream).
    let listening = lines
        .iter()
        .find(|line| line["message"] == "listening")
        .unwrap_or_else(|| panic!("no listening line in:\n{log}"));
    assert_eq!(listening["url"], url.as_str(), "{listening}");
    assert!(
        listening["dev_ca"]
            .as_str()
            .unwrap()
            .ends_with("dev-ca.crt")
    );
    for line in &lines {
        for field in ["timestamp", "level", "message", "target"] {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
    }

    let publish = request_line(&lines, "POST", "UpdateTUF", 200)
        .unwrap_or_else(|| panic!("no publish request line in:\n{log}"));
    let span = &publish["span"];
    assert_eq!(span["gun"], GUN, "{publish}");
    assert_eq!(span["subject"], "writer", "{publish}");
    assert_eq!(span["path"], format!("/v2/{GUN}/_trust/tuf/"), "{publish}");
    assert!(publish["latency_ms"].as_f64().unwrap() >= 0.0, "{publish}");
    assert_eq!(publish["level"], "INFO", "{publish}");

    let refused = request_line(&lines, "GET", "GetRole", 401)
        .unwrap_or_else(|| panic!("no 401 request line in:\n{log}"));
    assert_eq!(refused["span"]["gun"], GUN, "{refused}");
    assert!(refused["latency_ms"].is_number(), "{refused}");
    // Refused before anyone was authenticated: no subject.
    assert!(refused["span"].get("subject").is_none(), "{refused}");

    // Nothing secret: no password, no credentials, no token, no header.
    let issued = tokens.token_for(Some("writer"), NOTARY_SERVICE, &[]);
    let token_header = issued.split('.').next().unwrap();
    for secret in [
        PASSWORD,
        credentials.as_str(),
        token_header,
        "Bearer ",
        "uthorization",
    ] {
        assert!(!log.contains(secret), "the log holds {secret:?}:\n{log}");
    }
}

/// notary-server's flag spelling, one dash: `serve -logf=json` over a config
/// file that says nothing about the format (`-logf json` is the other form).
#[test]
fn logf_json_flag_as_notary_server_spells_it() {
    let work = tempfile::tempdir().unwrap();
    let (process, url) = start(
        work.path(),
        &json!({
            "server": {"http_addr": format!("127.0.0.1:{}", free_port()), "keys_dir": "keys"},
            "storage": {"backend": "sqlite", "db_url": "data/notarium.db"},
            "logging": {"level": "debug"},
        }),
        &["-logf=json"],
    );
    let log = std::fs::read_to_string(&process.log).unwrap();
    drop(process);
    let lines = parse_log(&log);
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "listening" && line["url"] == url.as_str()),
        "{log}"
    );
    // The health probes of start() are request lines too (at debug).
    assert!(
        lines
            .iter()
            .any(|line| line["span"]["operation"] == "Health" && line["span"]["status"] == 200),
        "{log}"
    );
}

/// `notarium signer` spelled as notary-signer is started (`-config FILE
/// -logf json`): its log stream is JSON only, at the level of the file's
/// `logging.level`, and a fatal start error is a JSON line too.
#[test]
fn notarium_signer_logs_json_as_notary_signer_is_told_to() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (_, cert, key) = common::make_test_tls(dir);
    // A database nobody listens on: the signer logs, then stops.
    let config = |level: &str| {
        let path = dir.join(format!("signer-{level}.json"));
        let text = json!({
            "server": {"grpc_addr": format!("127.0.0.1:{}", free_port()),
                       "tls_cert_file": cert, "tls_key_file": key},
            "storage": {"backend": "postgres", "default_alias": "alpha",
                        "db_url": format!("postgres://signer@127.0.0.1:{}/signer", free_port())},
            "logging": {"level": level},
        });
        std::fs::write(&path, text.to_string()).unwrap();
        path
    };
    let signer = |path: &Path, passphrase: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_notarium"));
        command
            .args(["signer", "-config", path.to_str().unwrap(), "-logf", "json"])
            .env_remove("NOTARIUM_LOG")
            .env_remove("NOTARIUM_LOGGING_FORMAT")
            .env_remove("NOTARY_SIGNER_LOGGING_LEVEL");
        if passphrase {
            command.env("NOTARY_SIGNER_ALPHA", "alias passphrase");
        } else {
            command.env_remove("NOTARY_SIGNER_ALPHA");
        }
        let output = run(&mut command);
        assert!(!output.status.success(), "{}", all_output(&output));
        assert!(output.stdout.is_empty(), "stdout: {}", all_output(&output));
        parse_log(&String::from_utf8_lossy(&output.stderr))
    };

    let lines = signer(&config("info"), true);
    let stopped = lines
        .iter()
        .find(|line| line["message"] == "notarium signer stopped" && line["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no fatal line: {lines:?}"));
    assert!(
        stopped["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect to the signer database"),
        "{stopped}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "notarium signer listening"),
        "{lines:?}"
    );

    // At "error" the start announcement is not logged; the fatal error is.
    let lines = signer(&config("error"), false);
    assert!(
        lines.iter().all(|line| line["level"] == "ERROR"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|line| line["error"]
            .as_str()
            .unwrap_or("")
            .contains("NOTARY_SIGNER_ALPHA")),
        "{lines:?}"
    );

    // A level notary-signer would not take is refused before anything runs.
    let mut command = Command::new(env!("CARGO_BIN_EXE_notarium"));
    command.args(["signer", "-config", config("loud").to_str().unwrap()]);
    let output = run(&mut command);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("logging.level \"loud\""),
        "{}",
        all_output(&output)
    );
}
