//! The signer side of split-deployment tests: notary-signer's
//! `private_keys` table in a fresh database ([`SignerDb`]) and a signer
//! serving it over mutual TLS ([`SignerProcess`]): the Go notary-signer
//! (Debian's `notary`) or `notarium signer`, from one notary-signer
//! configuration file.
//!
//! Use from a test file that also declares `mod common;`:
//! `#[path = "support/signer.rs"] mod signer;`
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::common::postgres::{PASSWORD, PgServer};
use crate::common::{Process, append_to, free_port, require, wait_for_port};

/// A current-thread runtime for the test's own async calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `work` to completion on a runtime of its own, in a thread of its
/// own, so the test's SQL can run from inside async gRPC checks too.
pub fn block_on<T: Send>(work: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| scope.spawn(|| runtime().block_on(work)).join().unwrap())
}

/// notary-signer's table in a fresh database: what the signer's
/// configuration names (`backend`, Go DSN) and the URL the test's own
/// queries use.
pub struct SignerDb {
    pub backend: &'static str,
    pub dsn: String,
    pub url: String,
}

/// Runs `$body` with `$conn` connected to `$db`'s database: sqlx has one
/// connection type per backend, so the body is written once for both.
macro_rules! on_connection {
    ($db:expr, $conn:ident => $body:expr) => {{
        use sqlx::Connection;
        block_on(async {
            if $db.backend == "mysql" {
                let mut $conn = sqlx::MySqlConnection::connect(&$db.url).await.unwrap();
                $body
            } else {
                let mut $conn = sqlx::PgConnection::connect(&$db.url).await.unwrap();
                $body
            }
        })
    }};
}

impl SignerDb {
    /// A fresh database of `pg` with notary-signer's PostgreSQL schema.
    pub fn postgres(pg: &PgServer) -> Self {
        let url = format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{}?sslmode=disable",
            pg.port,
            pg.database()
        );
        Self::with_schema("postgres", url.clone(), url)
    }

    /// The empty database at `dsn`/`url`, given notary's signer schema for
    /// `backend` (`postgres` or `mysql`: the state after its signer
    /// migrations, as the import tests apply it).
    pub fn with_schema(backend: &'static str, dsn: String, url: String) -> Self {
        let db = Self { backend, dsn, url };
        db.execute(match backend {
            "mysql" => include_str!("../data/notary-signer-mysql.sql"),
            _ => include_str!("../data/notary-signer-postgres.sql"),
        });
        db
    }

    /// Runs SQL statements.
    pub fn execute(&self, text: &str) {
        let text = sqlx::AssertSqlSafe(text.to_string());
        on_connection!(self, conn => {
            sqlx::raw_sql(text).execute(&mut conn).await.unwrap();
        });
    }

    /// One text column of a query's rows.
    pub fn strings(&self, query: &str) -> Vec<String> {
        let query = sqlx::AssertSqlSafe(query.to_string());
        on_connection!(self, conn => {
            sqlx::query_scalar::<_, String>(query)
                .fetch_all(&mut conn)
                .await
                .unwrap()
        })
    }
}

/// Which implementation plays a part: the Go program or notarium.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Go,
    Notarium,
}

impl Kind {
    pub fn other(self) -> Self {
        match self {
            Kind::Go => Kind::Notarium,
            Kind::Notarium => Kind::Go,
        }
    }
}

/// A signer with mutual TLS (clients need a certificate from `ca.crt` in
/// its directory, where `make_test_tls` put it), new keys under the alias
/// "alpha", on one port across restarts.
pub struct SignerProcess {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    process: Option<Process>,
    /// The log of the running process and where its output begins (the
    /// log file of a kind is appended to across restarts).
    log: Option<(PathBuf, u64)>,
}

impl SignerProcess {
    /// Writes the configuration into `dir` and starts `kind` with
    /// `passphrase` for the alias.
    pub fn new(dir: &Path, db: &SignerDb, kind: Kind, passphrase: &str) -> Self {
        let port = free_port();
        let config = dir.join("signer.json");
        std::fs::write(
            &config,
            json!({
                "server": {"grpc_addr": format!("127.0.0.1:{port}"),
                           "tls_cert_file": "server.crt", "tls_key_file": "server.key",
                           "client_ca_file": "ca.crt"},
                "storage": {"backend": db.backend, "db_url": db.dsn, "default_alias": "alpha"},
                "logging": {"level": "info"},
            })
            .to_string(),
        )
        .unwrap();
        let mut signer = Self {
            dir: dir.to_path_buf(),
            config,
            port,
            process: None,
            log: None,
        };
        signer.start(kind, passphrase);
        signer
    }

    /// The command line of `kind` on this configuration.
    pub fn command(&self, kind: Kind) -> Command {
        match kind {
            Kind::Go => {
                let mut command = Command::new(require("notary-signer", "notary"));
                command
                    .arg("-config")
                    .arg(&self.config)
                    .arg("-logf")
                    .arg("logfmt");
                command
            }
            Kind::Notarium => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_notarium"));
                command.arg("signer").arg("--config").arg(&self.config);
                command
            }
        }
    }

    /// Stops the running signer, if any, and starts `kind` on the same
    /// port and database.
    pub fn start(&mut self, kind: Kind, passphrase: &str) {
        self.process = None;
        let log = self.dir.join(format!("signer-{kind:?}.log"));
        let file = append_to(&log);
        let offset = file.metadata().unwrap().len();
        let mut child = self
            .command(kind)
            .env("NOTARY_SIGNER_ALPHA", passphrase)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        wait_for_port(
            format!("127.0.0.1:{}", self.port).parse().unwrap(),
            &mut child,
            &log,
        );
        self.log = Some((log.clone(), offset));
        self.process = Some(Process { child, log });
    }

    pub fn stop(&mut self) {
        self.process = None;
    }

    /// What the signer last started has logged.
    pub fn log(&self) -> String {
        let Some((path, offset)) = &self.log else {
            return String::new();
        };
        let bytes = std::fs::read(path).unwrap_or_default();
        let start = usize::try_from(*offset).unwrap().min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// notary-server's remote `trust_service` section for this signer,
    /// with the test's certificate (made for both usages) as the client's.
    pub fn trust_service(&self) -> Value {
        json!({"type": "remote", "hostname": "127.0.0.1",
               "port": self.port.to_string(), "key_algorithm": "ecdsa",
               "tls_ca_file": self.dir.join("ca.crt"),
               "tls_client_cert": self.dir.join("server.crt"),
               "tls_client_key": self.dir.join("server.key")})
    }

    /// A gRPC channel to it with the test CA's client certificate.
    pub async fn channel(&self) -> Channel {
        let read = |name: &str| std::fs::read(self.dir.join(name)).unwrap();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.crt")))
            .identity(Identity::from_pem(read("server.crt"), read("server.key")))
            .domain_name("localhost");
        Endpoint::from_shared(format!("https://127.0.0.1:{}", self.port))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .unwrap()
    }
}
