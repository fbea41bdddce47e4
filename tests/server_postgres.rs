#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end on PostgreSQL: `notarium migrate` and `notarium serve` with
//! `storage.backend: "postgres"` (password from a file), driven by the real
//! `notary` 0.7 client and curl; then the database stops under the server
//! and comes back.

mod common;
use common::postgres;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Notarium, run};
use postgres::{PASSWORD, PgServer};
use serde_json::json;

/// The storage section for `database` on `server`, the password in a file.
fn storage(
    dir: &Path,
    server: &PgServer,
    database: &str,
    migrate_on_start: bool,
) -> serde_json::Value {
    std::fs::create_dir_all(dir).unwrap();
    let password_file = dir.join("db-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    json!({"storage": {
        "backend": "postgres",
        "db_url": server.url(database),
        "password_file": password_file,
        "migrate_on_start": migrate_on_start,
        "acquire_timeout_seconds": 1,
    }})
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn notarium(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_notarium"));
    command.args(args);
    command
}

/// (status, Retry-After header if any, body) of a GET.
fn get(server: &Notarium, path: &str) -> (u16, Option<String>, String) {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let body = tempfile::NamedTempFile::new().unwrap();
    let output = run(Command::new("curl")
        .arg("-sS")
        .arg("--cacert")
        .arg(&server.ca)
        .arg("-D")
        .arg(headers.path())
        .arg("-o")
        .arg(body.path())
        .arg("-w")
        .arg("%{http_code}")
        .arg(format!("{}{path}", server.url)));
    assert!(output.status.success(), "curl failed");
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    let retry_after = std::fs::read_to_string(headers.path())
        .unwrap()
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().to_string())
        });
    let body = std::fs::read_to_string(body.path()).unwrap_or_default();
    (status, retry_after, body)
}

#[test]
fn notary_client_round_trip_on_postgres_through_an_outage() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // A server of its own: this test stops it.
    let db = PgServer::start();
    let database = db.database();
    let server_dir = dir.join("server");
    let extra = storage(&server_dir, &db, &database, false);

    // `notarium migrate` from two processes at once (replicas starting
    // together), before any server runs; then serve without migrating.
    let config_path = server_dir.join("migrate.json");
    std::fs::write(&config_path, serde_json::to_vec(&extra).unwrap()).unwrap();
    // Without migrations and with migrate_on_start false, serve refuses
    // to start on the empty database and says what to do.
    let refused = notarium(&["serve", "--config"])
        .arg(&config_path)
        .current_dir(&server_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("run `notarium migrate` first"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    let migrators: Vec<_> = (0..2)
        .map(|_| {
            notarium(&["migrate", "--config"])
                .arg(&config_path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for migrator in migrators {
        let output = migrator.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("up to date"));
    }

    let server = Notarium::start(&server_dir, extra);
    let gun = "notarium.test/pg/app";
    let owner = server.notary(dir.join("owner"));
    let payload = write_file(dir, "payload.txt", b"stored in postgres\n");
    let out = owner.ok(&["init", gun, "-p"]);
    assert!(out.contains("Successfully published changes"), "{out}");
    owner.ok(&["add", gun, "v1", payload.to_str().unwrap(), "-p"]);
    let reader = server.notary(dir.join("reader"));
    let listing = reader.ok(&["list", gun]);
    assert!(listing.contains("v1"), "{listing}");
    assert_eq!(get(&server, "/_notary_server/health").0, 200);
    // The admin subcommands read the same database.
    let audit = run(notarium(&["audit", gun, "--config"])
        .arg(&server.config)
        .current_dir(&server.dir));
    assert!(audit.status.success());
    let records = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(records.matches("publish").count(), 2, "{records}");
    // `notarium backup` is SQLite's; for PostgreSQL it says what to use.
    let backup = run(notarium(&["backup", "copy.db", "--config"])
        .arg(&server.config)
        .current_dir(&server.dir));
    assert!(!backup.status.success());
    assert!(String::from_utf8_lossy(&backup.stderr).contains("pg_dump"));
    assert!(!server.dir.join("copy.db").exists());

    // The database goes away: health says so, and requests that need it
    // fail fast with 503 and Retry-After, not 500 and not a hang.
    db.stop();
    let (status, _, body) = get(&server, "/_notary_server/health");
    assert_eq!(status, 503, "{body}");
    let (status, retry_after, body) =
        get(&server, "/v2/notarium.test/pg/absent/_trust/tuf/root.json");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("UNAVAILABLE") && body.contains("database"),
        "{body}"
    );
    assert!(retry_after.is_some(), "no Retry-After");
    // Metrics still answer, and say the database is down.
    let (status, _, metrics) = get(&server, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("notarium_db_up 0"), "{metrics}");
    let offline = write_file(dir, "offline.txt", b"while the database was down\n");
    let failed = owner.run(&["add", gun, "v2", offline.to_str().unwrap(), "-p"]);
    assert!(
        !failed.status.success(),
        "published while the database was down"
    );

    // It comes back: the same server process recovers by itself.
    db.restart();
    assert_eq!(get(&server, "/_notary_server/health").0, 200);
    let (_, _, metrics) = get(&server, "/metrics");
    assert!(metrics.contains("notarium_db_up 1"), "{metrics}");
    assert!(
        metrics.contains("notarium_db_ping_seconds ")
            && metrics.contains(r#"notarium_db_pool_connections{state="open"}"#)
            && metrics.contains("notarium_db_pool_max_connections "),
        "{metrics}"
    );
    let (status, _, _) = get(&server, "/v2/notarium.test/pg/absent/_trust/tuf/root.json");
    assert_eq!(status, 404);
    // The staged change from the failed attempt publishes now.
    let out = owner.ok(&["publish", gun]);
    assert!(out.contains("Successfully published changes"), "{out}");
    let fresh = server.notary(dir.join("fresh"));
    let listing = fresh.ok(&["list", gun]);
    assert!(
        listing.contains("v1") && listing.contains("v2"),
        "{listing}"
    );
}
