#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `notarium import` from a real notary deployment: the Go notary-signer and
//! notary-server 0.7 (Debian's `notary`) over a real PostgreSQL with
//! notary's schema (tests/data), populated by the real notary client; then
//! the Go servers stop, notarium imports and serves, and the very same
//! client trust directories (notary's and docker's) keep working with no
//! key-change warning, every imported file keeping its `Last-Modified`.

mod common;
#[path = "support/dockercli.rs"]
mod dockercli;
#[path = "support/mariadb.rs"]
mod mariadb;
use common::postgres;
#[path = "support/registry.rs"]
mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{
    Curl, Notarium, NotaryClient, Process, free_port, make_test_tls, require, run, wait_for_port,
};
use dockercli::DockerCli;
use mariadb::MariaDb;
use postgres::{PASSWORD, PgServer};
use registry::Registry;
use serde_json::{Value, json};

const ALPHA: &str = "notarium.test/import/alpha";
const BETA: &str = "notarium.test/import/beta";
const GONE: &str = "notarium.test/import/gone";
const PASS_ALPHA: &str = "first alias passphrase";
const PASS_BETA: &str = "second alias passphrase";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs SQL on `url` (several statements allowed), PostgreSQL or MySQL.
fn sql(url: &str, text: &str) {
    use sqlx::Connection;
    let text = sqlx::AssertSqlSafe(text.to_string());
    runtime().block_on(async {
        if url.starts_with("mysql://") {
            let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
            sqlx::raw_sql(text).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(text).execute(&mut conn).await.unwrap();
        }
    });
}

/// One text column of one query's rows.
fn sql_strings(url: &str, query: &str) -> Vec<String> {
    use sqlx::Connection;
    let query = sqlx::AssertSqlSafe(query.to_string());
    runtime().block_on(async {
        if url.starts_with("mysql://") {
            let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
            sqlx::query_scalar::<_, String>(query)
                .fetch_all(&mut conn)
                .await
                .unwrap()
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar::<_, String>(query)
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
    })
}

/// The source databases of one deployment: the DSNs notary's configs hold
/// and the URLs the test's own queries use.
struct Databases {
    backend: &'static str,
    server_dsn: String,
    signer_dsn: String,
    server_url: String,
    signer_url: String,
}

impl Databases {
    fn postgres(pg: &PgServer) -> Self {
        let url = |name: &str| {
            format!(
                "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{name}?sslmode=disable",
                pg.port
            )
        };
        let (server, signer) = (url(&pg.database()), url(&pg.database()));
        sql(&server, include_str!("data/notary-server-postgres.sql"));
        sql(&signer, include_str!("data/notary-signer-postgres.sql"));
        Self {
            backend: "postgres",
            server_dsn: server.clone(),
            signer_dsn: signer.clone(),
            server_url: server,
            signer_url: signer,
        }
    }

    fn mariadb(db: &MariaDb) -> Self {
        let (server, signer) = (db.database(), db.database());
        let this = Self {
            backend: "mysql",
            server_dsn: db.dsn(&server),
            signer_dsn: db.dsn(&signer),
            server_url: db.url(&server),
            signer_url: db.url(&signer),
        };
        sql(
            &this.server_url,
            include_str!("data/notary-server-mysql.sql"),
        );
        sql(
            &this.signer_url,
            include_str!("data/notary-signer-mysql.sql"),
        );
        this
    }

    /// `SELECT` text of the source changefeed: "id gun version category".
    fn changefeed(&self) -> Vec<String> {
        let query = if self.backend == "mysql" {
            "SELECT CONCAT(id, ' ', gun, ' ', version, ' ', category) FROM changefeed ORDER BY id"
        } else {
            "SELECT id::TEXT || ' ' || gun || ' ' || version::TEXT || ' ' || category \
             FROM changefeed ORDER BY id"
        };
        sql_strings(&self.server_url, query)
    }

    /// Appends a byte to one stored file without fixing its checksum.
    fn corrupt(&self, gun: &str, role: &str, version: i64) {
        let append = if self.backend == "mysql" {
            "CONCAT(data, ' ')"
        } else {
            "data || '\\x20'::BYTEA"
        };
        sql(
            &self.server_url,
            &format!(
                "UPDATE tuf_files SET data = {append} \
                 WHERE gun = '{gun}' AND role = '{role}' AND version = {version}"
            ),
        );
    }
}

fn sqlite_count(db: &Path, gun: &str) -> i64 {
    runtime().block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM tuf_files WHERE gun = ?")
            .bind(gun)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    })
}

/// A notary deployment: signer and server over two PostgreSQL databases.
struct Deployment {
    server_url: String,
    dbs: Databases,
    ca: PathBuf,
    server_config: PathBuf,
    signer_config: PathBuf,
    signer: Option<Process>,
    server: Option<Process>,
}

fn spawn(dir: &Path, name: &str, program: &Path, config: &Path, envs: &[(&str, &str)]) -> Child {
    let mut command = Command::new(program);
    command
        .arg("-config")
        .arg(config)
        .arg("-logf")
        .arg("logfmt")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap());
    for (key, value) in envs {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

type Child = std::process::Child;

impl Deployment {
    fn new(dir: &Path, dbs: Databases) -> Self {
        let (ca, cert, key) = make_test_tls(dir);
        let signer_port = free_port();
        let server_port = free_port();
        let signer_config = dir.join("signer.json");
        let server_config = dir.join("server.json");
        // Relative file names, as operators write them: relative to the file.
        std::fs::write(
            &server_config,
            json!({
                "server": {"http_addr": format!("127.0.0.1:{server_port}"),
                           "tls_cert_file": "server.crt", "tls_key_file": "server.key"},
                "trust_service": {"type": "remote", "hostname": "127.0.0.1",
                                  "port": signer_port.to_string(), "key_algorithm": "ecdsa",
                                  "tls_ca_file": "ca.crt"},
                "storage": {"backend": dbs.backend, "db_url": dbs.server_dsn},
                "logging": {"level": "info"},
            })
            .to_string(),
        )
        .unwrap();
        let _ = (cert, key);
        let deployment = Self {
            server_url: format!("https://127.0.0.1:{server_port}"),
            dbs,
            ca,
            server_config,
            signer_config,
            signer: None,
            server: None,
        };
        deployment.write_signer_config(signer_port, "alpha");
        deployment
    }

    fn write_signer_config(&self, port: u16, alias: &str) {
        std::fs::write(
            &self.signer_config,
            json!({
                "server": {"grpc_addr": format!("127.0.0.1:{port}"),
                           "tls_cert_file": "server.crt", "tls_key_file": "server.key"},
                "storage": {"backend": self.dbs.backend, "db_url": self.dbs.signer_dsn,
                            "default_alias": alias},
                "logging": {"level": "info"},
            })
            .to_string(),
        )
        .unwrap();
    }

    fn signer_port(&self) -> u16 {
        let config: Value =
            serde_json::from_slice(&std::fs::read(&self.server_config).unwrap()).unwrap();
        config["trust_service"]["port"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Starts the signer (new keys under `alias`) and the server.
    fn start(&mut self, alias: &str) {
        let dir = self.server_config.parent().unwrap().to_path_buf();
        let port = self.signer_port();
        self.write_signer_config(port, alias);
        let envs = [
            ("NOTARY_SIGNER_ALPHA", PASS_ALPHA),
            ("NOTARY_SIGNER_BETA", PASS_BETA),
        ];
        let signer_bin = require("notary-signer", "notary");
        let mut child = spawn(
            &dir,
            "notary-signer",
            &signer_bin,
            &self.signer_config,
            &envs,
        );
        let log = dir.join("notary-signer.log");
        wait_for_port(
            format!("127.0.0.1:{port}").parse().unwrap(),
            &mut child,
            &log,
        );
        self.signer = Some(Process { child, log });
        let server_bin = require("notary-server", "notary");
        let mut child = spawn(&dir, "notary-server", &server_bin, &self.server_config, &[]);
        let log = dir.join("notary-server.log");
        let addr = self
            .server_url
            .trim_start_matches("https://")
            .parse()
            .unwrap();
        wait_for_port(addr, &mut child, &log);
        self.server = Some(Process { child, log });
    }

    fn stop(&mut self) {
        self.server = None;
        self.signer = None;
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The notarium configuration `Notarium::start` writes, so that import and
/// serve use the same database and key passphrase.
/// `storage` replaces the SQLite default (for a PostgreSQL target); a
/// configuration already in `dir` is kept.
fn notarium_config(dir: &Path, storage: Option<Value>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("notarium.json");
    if path.exists() && storage.is_none() {
        return path;
    }
    let config = json!({
        "server": {"http_addr": "127.0.0.1:0", "keys_dir": "keys"},
        "trust_service": {"type": "local", "key_algorithm": "ecdsa"},
        "storage": storage.unwrap_or(json!({"backend": "sqlite", "db_url": "data/notarium.db"})),
        "logging": {"level": "info"},
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

fn import(dir: &Path, deployment: &Deployment, envs: &[(&str, &str)], extra: &[&str]) -> Output {
    let config = notarium_config(dir, None);
    let mut command = Command::new(env!("CARGO_BIN_EXE_notarium"));
    command
        .arg("import")
        .arg("--from-notary-server")
        .arg(&deployment.server_config)
        .arg("--from-notary-signer")
        .arg(&deployment.signer_config)
        .arg("--config")
        .arg(&config)
        .args(extra)
        .current_dir(dir)
        .env_remove("NOTARIUM_KEY_PASSPHRASE")
        .env_remove("NOTARY_SIGNER_ALPHA")
        .env_remove("NOTARY_SIGNER_BETA");
    for (key, value) in envs {
        command.env(key, value);
    }
    run(&mut command)
}

/// `notarium expiring` over the database `config` names, for the imported
/// repositories: (gun, role, the first signer's CN if any), sorted.
fn expiring_after_import(config: &Path) -> Vec<(String, String, Option<String>)> {
    let output = run(Command::new(env!("CARGO_BIN_EXE_notarium"))
        .arg("expiring")
        .arg("--config")
        .arg(config)
        .args(["--within", "4000d", "--output", "json"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let mut rows: Vec<(String, String, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r["gun"].as_str().unwrap().to_string(),
                r["role"].as_str().unwrap().to_string(),
                r["signed_by"][0]["common_name"]
                    .as_str()
                    .map(str::to_string),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// What the expiry report holds after the import: the client-signed roles
/// only (ALPHA's snapshot is server-managed after `key rotate snapshot -r`,
/// BETA's is the client's; the docker CLI's repository has a server-managed
/// snapshot), certificate keys named by their CN.
fn assert_imported_expiry(config: &Path, docker_gun: &str) {
    let some = |s: &str| Some(s.to_string());
    let row = |gun: &str, role: &str, cn: Option<String>| (gun.to_string(), role.to_string(), cn);
    let mut listed = expiring_after_import(config);
    listed.sort();
    let mut expected = vec![
        row(docker_gun, "root", some(docker_gun)),
        row(docker_gun, "targets", None),
        row(ALPHA, "root", some(ALPHA)),
        row(ALPHA, "targets", None),
        row(ALPHA, "targets/releases", some("releaser")),
        row(BETA, "root", some(BETA)),
        row(BETA, "snapshot", None),
        row(BETA, "targets", None),
    ];
    expected.sort();
    assert_eq!(listed, expected);
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn line_for<'a>(report: &'a str, gun: &str) -> &'a str {
    report
        .lines()
        .find(|line| line.contains(&format!(" {gun}:")))
        .unwrap_or_else(|| panic!("no report line for {gun} in:\n{report}"))
}

fn timestamp_key_ids(curl: &Curl, gun: &str) -> (Vec<String>, Vec<String>) {
    let (status, root) = curl.get(&format!("/v2/{gun}/_trust/tuf/root.json"));
    assert_eq!(status, 200);
    let root: Value = serde_json::from_slice(&root).unwrap();
    let listed: Vec<String> = root["signed"]["roles"]["timestamp"]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let (status, timestamp) = curl.get(&format!("/v2/{gun}/_trust/tuf/timestamp.json"));
    assert_eq!(status, 200);
    let timestamp: Value = serde_json::from_slice(&timestamp).unwrap();
    let signed_by = timestamp["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keyid"].as_str().unwrap().to_string())
        .collect();
    (listed, signed_by)
}

fn assert_no_key_warning(output: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .to_lowercase();
    for word in ["warn", "rotat", "changed", "mismatch", "not valid"] {
        assert!(
            !all.contains(word),
            "the client complained ({word}):\n{all}"
        );
    }
}

/// The `Last-Modified` of a 200 answer to GET `path`, without its zone
/// (notary writes its time's zone, "UTC" or "+0000", notarium "GMT").
fn last_modified(base: &str, ca: &Path, path: &str) -> String {
    let output = run(Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--cacert"])
        .arg(ca)
        .arg(format!("{base}{path}")));
    let headers = stdout(&output);
    assert!(
        headers.starts_with("HTTP/") && headers.lines().next().unwrap().contains(" 200"),
        "GET {path}:\n{headers}"
    );
    let value = headers
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("last-modified")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("GET {path}: no Last-Modified in\n{headers}"));
    let (date, zone) = value.rsplit_once(' ').unwrap();
    assert!(["GMT", "UTC", "+0000"].contains(&zone), "{path}: {value}");
    date.to_string()
}

/// The reads whose `Last-Modified` must survive the import: each role
/// current, root by version, targets by checksum.
fn history_paths(curl: &Curl, gun: &str) -> Vec<String> {
    let (status, snapshot) = curl.get(&format!("/v2/{gun}/_trust/tuf/snapshot.json"));
    assert_eq!(status, 200);
    let snapshot: Value = serde_json::from_slice(&snapshot).unwrap();
    use base64::Engine;
    let targets_sha = hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(
                snapshot["signed"]["meta"]["targets"]["hashes"]["sha256"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap(),
    );
    [
        "root.json".to_string(),
        "targets.json".into(),
        "targets/releases.json".into(),
        "snapshot.json".into(),
        "timestamp.json".into(),
        "1.root.json".into(),
        "2.root.json".into(),
        "2.targets.json".into(),
        format!("targets.{targets_sha}.json"),
    ]
    .into_iter()
    .map(|file| format!("/v2/{gun}/_trust/tuf/{file}"))
    .collect()
}

/// One text column of a query on notarium's SQLite database.
fn sqlite_strings(db: &Path, query: &str) -> Vec<String> {
    let query = sqlx::AssertSqlSafe(query.to_string());
    runtime().block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query_scalar::<_, String>(query)
            .fetch_all(&mut conn)
            .await
            .unwrap()
    })
}

/// "key_id created_at last_used" (seconds, UTC, "-" for never) of every
/// live key in notary-signer's database.
fn source_key_times(dbs: &Databases) -> Vec<String> {
    let query = if dbs.backend == "mysql" {
        "SELECT CONCAT(key_id, ' ', DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'), ' ', \
         COALESCE(DATE_FORMAT(last_used, '%Y-%m-%d %H:%i:%s'), '-')) \
         FROM private_keys WHERE deleted_at IS NULL"
    } else {
        "SELECT key_id || ' ' || to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') || ' ' || \
         COALESCE(to_char(last_used, 'YYYY-MM-DD HH24:MI:SS'), '-') \
         FROM private_keys WHERE deleted_at IS NULL"
    };
    sql_strings(&dbs.signer_url, query)
}

/// The same for notarium's keys, as stored in its SQLite database.
fn notarium_key_times(db: &Path) -> Vec<String> {
    sqlite_strings(
        db,
        "SELECT key_id || ' ' || replace(substr(created_at, 1, 19), 'T', ' ') || ' ' || \
         COALESCE(replace(substr(last_used, 1, 19), 'T', ' '), '-') FROM server_keys",
    )
}

/// The digest of `TAG: digest: sha256:HEX size: N` in `docker push` output.
fn pushed_digest(out: &str, tag: &str) -> String {
    let prefix = format!("{tag}: digest: sha256:");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"));
    line[prefix.len()..].split(' ').next().unwrap().to_string()
}

/// `docker trust inspect GUN`: the signed tags as "tag digest", and the
/// root/administrative key IDs.
fn trust_inspect(docker: &DockerCli, gun: &str) -> (Vec<String>, Value) {
    let output = docker.run(&["trust", "inspect", gun]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_no_key_warning(&output);
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let tags = list[0]["SignedTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{} {}",
                t["SignedTag"].as_str().unwrap(),
                t["Digest"].as_str().unwrap()
            )
        })
        .collect();
    (tags, list[0]["AdministrativeKeys"].clone())
}

#[test]
fn import_from_notary_on_postgres_keeps_clients_working() {
    import_keeps_clients_working(Databases::postgres(PgServer::shared()));
}

#[test]
fn import_from_notary_on_mariadb_keeps_clients_working() {
    import_keeps_clients_working(Databases::mariadb(MariaDb::shared()));
}

fn import_keeps_clients_working(dbs: Databases) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut deployment = Deployment::new(dir, dbs);

    // Populate through the real client: alias "alpha" first.
    deployment.start("alpha");
    let owner_dir = dir.join("owner");
    let owner = NotaryClient::new(owner_dir.clone(), &deployment.server_url, &deployment.ca);
    let one = write(dir, "one.txt", "one\n");
    let two = write(dir, "two.txt", "two\n");
    owner.ok(&["init", ALPHA, "-p"]);
    owner.ok(&["add", ALPHA, "one", one.to_str().unwrap()]);
    owner.ok(&["add", ALPHA, "two", two.to_str().unwrap()]);
    owner.ok(&["publish", ALPHA]);
    owner.ok(&["key", "rotate", ALPHA, "snapshot", "-r"]);
    // Rotated timestamp (a new server key), targets and root keys.
    owner.ok(&["key", "rotate", ALPHA, "timestamp", "-r"]);
    owner.ok(&["key", "rotate", ALPHA, "targets"]);
    owner.ok(&["key", "rotate", ALPHA, "root"]);
    owner.ok(&["remove", ALPHA, "one"]);
    owner.ok(&["publish", ALPHA]);
    // A delegation with a certificate.
    let (_, cert, delegate_key) = common::make_client_bundle(&dir.join("delegate"), "releaser");
    owner.ok(&[
        "key",
        "import",
        delegate_key.to_str().unwrap(),
        "--role",
        "targets/releases",
    ]);
    owner.ok(&[
        "delegation",
        "add",
        ALPHA,
        "targets/releases",
        cert.to_str().unwrap(),
        "--all-paths",
        "-p",
    ]);
    // A target signed by the delegate.
    owner.ok(&[
        "add",
        ALPHA,
        "released",
        two.to_str().unwrap(),
        "--roles",
        "targets/releases",
        "-p",
    ]);
    owner.ok(&["init", GONE, "-p"]);
    owner.ok(&["delete", GONE, "--remote"]);
    // New keys under the second alias from now on.
    deployment.stop();
    deployment.start("beta");
    owner.ok(&["init", BETA, "-p"]);
    owner.ok(&["add", BETA, "one", one.to_str().unwrap()]);
    owner.ok(&["publish", BETA]);
    // A repository made by docker: a content-trust push to a real registry
    // with the Go server as trust server.
    let registry = Registry::start(&dir.join("registry"));
    let mut docker =
        DockerCli::with_trust_server(&dir.join("docker"), &deployment.server_url, &deployment.ca);
    let docker_gun = format!("{}/import/docker", registry.host());
    let docker_ref = format!("{docker_gun}:1.0");
    docker.make_image(&docker_ref, "imported from notary");
    let pushed = docker.run_trusted(&["push", &docker_ref]);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let docker_digest = pushed_digest(&stdout(&pushed), "1.0");
    let (go_tags, go_admin_keys) = trust_inspect(&docker, &docker_gun);
    assert_eq!(go_tags, [format!("1.0 {docker_digest}")]);
    let aliases = sql_strings(
        &deployment.dbs.signer_url,
        "SELECT DISTINCT passphrase_alias FROM private_keys ORDER BY 1",
    );
    assert_eq!(aliases, ["alpha", "beta"]);
    let old = Curl {
        base: deployment.server_url.clone(),
        ca: deployment.ca.clone(),
    };
    let (alpha_ts_keys, _) = timestamp_key_ids(&old, ALPHA);
    let history = history_paths(&old, ALPHA);
    let go_dates: Vec<String> = history
        .iter()
        .map(|path| last_modified(&old.base, &old.ca, path))
        .collect();
    let source_changes = deployment.dbs.changefeed();
    deployment.stop();
    // The client's state as the Go server left it, for the PostgreSQL target.
    let pinned_copy = dir.join("owner-copy");
    common::run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(&owner_dir)
            .arg(&pinned_copy),
    );

    // Last-Modified has one-second resolution: an import that stamped its
    // own time instead of the source's would now be seen to.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // Dry run: the report, nothing written.
    let target = dir.join("notarium");
    let passphrases = [
        ("NOTARY_SIGNER_ALPHA", PASS_ALPHA),
        ("NOTARY_SIGNER_BETA", PASS_BETA),
    ];
    let dry = import(&target, &deployment, &passphrases, &["--dry-run"]);
    assert!(dry.status.success(), "{}", stdout(&dry));
    assert!(line_for(&stdout(&dry), ALPHA).starts_with("imported"));
    assert!(
        !target.join("data/notarium.db").exists()
            || sqlite_count(&target.join("data/notarium.db"), ALPHA) == 0
    );

    // The import, then again (idempotent).
    let first = import(&target, &deployment, &passphrases, &[]);
    let report = stdout(&first);
    assert!(first.status.success(), "{report}");
    assert!(line_for(&report, ALPHA).starts_with("imported"), "{report}");
    assert!(line_for(&report, BETA).starts_with("imported"), "{report}");
    assert!(
        line_for(&report, GONE).starts_with("deleted in source"),
        "{report}"
    );
    assert!(
        line_for(&report, &docker_gun).starts_with("imported"),
        "{report}"
    );
    assert!(
        report.contains("summary: 3 imported, 0 already imported, 1 deleted"),
        "{report}"
    );
    // Every imported key keeps the creation and last-use times notary-signer
    // recorded, not the import's.
    let source_keys = source_key_times(&deployment.dbs);
    let imported_keys = notarium_key_times(&target.join("data/notarium.db"));
    assert!(imported_keys.len() >= 4, "{imported_keys:?}");
    for key in &imported_keys {
        assert!(
            source_keys.contains(key),
            "{key} is not as in the source: {source_keys:?}"
        );
    }
    assert_imported_expiry(&target.join("notarium.json"), &docker_gun);
    let again = import(&target, &deployment, &passphrases, &[]);
    let report = stdout(&again);
    assert!(again.status.success(), "{report}");
    assert!(
        line_for(&report, ALPHA).starts_with("already imported"),
        "{report}"
    );
    assert!(
        line_for(&report, BETA).starts_with("already imported"),
        "{report}"
    );

    // notarium serves it; the same trust directory works without warnings.
    let notarium = Notarium::start(&target, json!({"storage": common::sqlite_storage()}));
    // Current, by-version and by-checksum reads answer the Last-Modified
    // the Go server answered.
    let dates: Vec<String> = history
        .iter()
        .map(|path| last_modified(&notarium.url, &notarium.ca, path))
        .collect();
    assert_eq!(
        history.iter().zip(&dates).collect::<Vec<_>>(),
        history.iter().zip(&go_dates).collect::<Vec<_>>()
    );
    // docker, with the very same DOCKER_CONFIG (its trust pins and cache),
    // now against notarium: the trust server URL changes, its CA is
    // trusted for the new address as docker expects.
    let tls = docker
        .config
        .join("tls")
        .join(notarium.url.trim_start_matches("https://"));
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::copy(&notarium.ca, tls.join("ca.crt")).unwrap();
    docker.server = notarium.url.clone();
    docker.ca = notarium.ca.clone();
    let (tags, admin_keys) = trust_inspect(&docker, &docker_gun);
    assert_eq!(tags, go_tags);
    assert_eq!(admin_keys, go_admin_keys);
    docker.ok(&["rmi", &docker_ref]);
    assert_eq!(docker.image_id(&docker_ref), None);
    let pulled = docker.run_trusted(&["pull", &docker_ref]);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    assert_no_key_warning(&pulled);
    let out = stdout(&pulled);
    assert!(
        out.starts_with(&format!(
            "Pull (1 of 1): {docker_ref}@sha256:{docker_digest}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Status: Downloaded newer image for {docker_gun}@sha256:{docker_digest}"
        )),
        "{out}"
    );
    assert!(docker.image_id(&docker_ref).is_some());
    let client = NotaryClient::new(owner_dir, &notarium.url, &notarium.ca);
    let listed = client.run(&["list", ALPHA]);
    assert!(listed.status.success());
    assert_no_key_warning(&listed);
    let listing = stdout(&listed);
    assert!(
        listing.contains("two") && !listing.contains("one "),
        "{listing}"
    );
    let three = write(dir, "three.txt", "three\n");
    client.ok(&["add", ALPHA, "three", three.to_str().unwrap()]);
    let published = client.run(&["publish", ALPHA]);
    assert!(published.status.success(), "{}", stdout(&published));
    assert_no_key_warning(&published);
    let listed = client.run(&["list", BETA]);
    assert!(listed.status.success());
    assert_no_key_warning(&listed);
    // A fresh client (no cache) sees the new target too.
    let fresh = NotaryClient::new(dir.join("fresh"), &notarium.url, &notarium.ca);
    assert!(fresh.ok(&["list", ALPHA]).contains("three"));
    // The timestamp notarium signed is signed by the imported key.
    let (listed_keys, signed_by) = timestamp_key_ids(&notarium.curl(), ALPHA);
    assert_eq!(listed_keys, alpha_ts_keys);
    assert_eq!(signed_by, alpha_ts_keys);
    // The changefeed keeps notary's IDs; new records come after them.
    let (status, feed) = notarium
        .curl()
        .get("/v2/_trust/changefeed?change_id=0&records=100");
    assert_eq!(status, 200);
    let feed: Value = serde_json::from_slice(&feed).unwrap();
    let records = feed["records"].as_array().unwrap();
    let imported: Vec<String> = records
        .iter()
        .take(source_changes.len())
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["ID"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| r["ID"].to_string()),
                r["GUN"].as_str().unwrap(),
                r["Version"],
                r["Category"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(imported, source_changes);
    assert!(records.len() > source_changes.len());

    drop(notarium);

    // Into a PostgreSQL notarium database too; the client (as it was before
    // the SQLite run) publishes through it, the timestamp signed by the
    // imported key.
    if deployment.dbs.backend == "postgres" {
        let pg = PgServer::shared();
        let target = dir.join("notarium-pg");
        std::fs::create_dir_all(&target).unwrap();
        let password_file = target.join("db-password");
        std::fs::write(&password_file, PASSWORD).unwrap();
        let storage = json!({
            "backend": "postgres",
            "db_url": pg.url(&pg.database()),
            "password_file": password_file,
        });
        notarium_config(&target, Some(storage.clone()));
        let output = import(&target, &deployment, &passphrases, &[]);
        let report = stdout(&output);
        assert!(output.status.success(), "{report}");
        assert!(line_for(&report, ALPHA).starts_with("imported"), "{report}");
        assert_imported_expiry(&target.join("notarium.json"), &docker_gun);
        let notarium = Notarium::start(&target, json!({"storage": storage}));
        let client = NotaryClient::new(pinned_copy, &notarium.url, &notarium.ca);
        let listed = client.run(&["list", ALPHA]);
        assert!(listed.status.success());
        assert_no_key_warning(&listed);
        client.ok(&["add", ALPHA, "three", three.to_str().unwrap()]);
        let published = client.run(&["publish", ALPHA]);
        assert!(published.status.success(), "{}", stdout(&published));
        assert_no_key_warning(&published);
        let (listed_keys, signed_by) = timestamp_key_ids(&notarium.curl(), ALPHA);
        assert_eq!(listed_keys, alpha_ts_keys);
        assert_eq!(signed_by, alpha_ts_keys);
    }

    // A wrong passphrase for one alias: that repository is reported and not
    // written; the others are. With the right one, a re-run resumes.
    let partial = dir.join("partial");
    let wrong = [
        ("NOTARY_SIGNER_ALPHA", PASS_ALPHA),
        ("NOTARY_SIGNER_BETA", "not the passphrase"),
    ];
    let output = import(&partial, &deployment, &wrong, &[]);
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{report}");
    let beta = line_for(&report, BETA);
    assert!(
        beta.starts_with("skipped")
            && beta.contains("NOTARY_SIGNER_BETA")
            && beta.contains("does not open"),
        "{beta}"
    );
    assert!(line_for(&report, ALPHA).starts_with("imported"), "{report}");
    let db = partial.join("data/notarium.db");
    assert_eq!(sqlite_count(&db, BETA), 0);
    let output = import(
        &partial,
        &deployment,
        &[("NOTARY_SIGNER_ALPHA", PASS_ALPHA)],
        &[],
    );
    let beta = line_for(&stdout(&output), BETA).to_string();
    assert!(beta.contains("set NOTARY_SIGNER_BETA"), "{beta}");
    let output = import(&partial, &deployment, &passphrases, &[]);
    let report = stdout(&output);
    assert!(output.status.success(), "{report}");
    assert!(
        line_for(&report, ALPHA).starts_with("already imported"),
        "{report}"
    );
    assert!(line_for(&report, BETA).starts_with("imported"), "{report}");
    assert!(sqlite_count(&db, BETA) > 0);

    // A corrupted row and a missing (soft-deleted) key: reported as broken
    // in the source, nothing of either repository written.
    deployment.dbs.corrupt(ALPHA, "targets", 2);
    sql(
        &deployment.dbs.signer_url,
        &format!(
            "UPDATE private_keys SET deleted_at = now() WHERE gun = '{BETA}' AND role = 'timestamp'"
        ),
    );
    let broken = dir.join("broken");
    let output = import(&broken, &deployment, &passphrases, &[]);
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(3), "{report}");
    let alpha = line_for(&report, ALPHA);
    assert!(
        alpha.starts_with("broken in source") && alpha.contains("corrupted row: targets version 2"),
        "{alpha}"
    );
    let beta = line_for(&report, BETA);
    assert!(
        beta.starts_with("broken in source") && beta.contains("no timestamp key"),
        "{beta}"
    );
    // The docker-made repository is intact and imports.
    assert!(
        line_for(&report, &docker_gun).starts_with("imported"),
        "{report}"
    );
    assert!(
        report.contains("1 imported") && report.contains("2 broken"),
        "{report}"
    );
    let db = broken.join("data/notarium.db");
    assert_eq!(sqlite_count(&db, ALPHA), 0);
    assert_eq!(sqlite_count(&db, BETA), 0);
}
