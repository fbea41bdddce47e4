//! A real MariaDB server for tests: `mariadb-install-db` and `mariadbd` from
//! Debian's `mariadb-server` package in a temporary directory, on a free
//! loopback port, with its unix socket in that directory. As root the
//! server runs as the `mysql` user. A missing MariaDB fails the test;
//! nothing skips.
//!
//! [`MariaDb::shared`] is one server per test binary; [`MariaDb::database`]
//! gives each use a fresh database. As in `postgres.rs`, a watchdog holding
//! the read end of a pipe stops the server and removes its directory when
//! the test binary exits, however it exits.
//!
//! Use from a test file that also declares `mod common;`:
//! `#[path = "support/mariadb.rs"] mod mariadb;`
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::db_server::{self, Watchdog, command_as, free_port};

/// The password of [`USER`], who connects over TCP.
pub const PASSWORD: &str = "notarium-test-pw";
pub const USER: &str = "notary";
const RUN_AS: &str = "mysql";

pub struct MariaDb {
    pub port: u16,
    pub dir: PathBuf,
    run_as: Option<&'static str>,
    server: Child,
    /// Dropped (or this process exiting), it stops the server.
    _watchdog: Watchdog,
}

fn program(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "MariaDB is not installed: this test needs `{name}` (Debian package \
                 `mariadb-server`; `scripts/test` installs it)"
            )
        })
}

impl MariaDb {
    /// The server of this test binary, started on first use.
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<MariaDb> = OnceLock::new();
        SHARED.get_or_init(MariaDb::start)
    }

    pub fn start() -> Self {
        let install = program("mariadb-install-db");
        let daemon = program("mariadbd");
        let run_as = db_server::run_as(RUN_AS);
        let dir = db_server::scratch_dir("mariadb", "data");
        if let Some(user) = run_as {
            db_server::chown(&dir, user);
        }
        let output = command_as(run_as, &install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "mariadb-install-db failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let port = free_port();
        let socket = dir.join("mariadb.sock");
        let log = dir.join("server.log");
        let server = command_as(run_as, &daemon)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .args(["--skip-log-bin", "--innodb-flush-log-at-trx-commit=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let watchdog = Watchdog::spawn(&format!(
            "kill {pid} 2>/dev/null; sleep 2; kill -9 {pid} 2>/dev/null; rm -rf {dir}",
            pid = server.id(),
            dir = dir.display()
        ));
        let mut db = Self {
            port,
            dir,
            run_as,
            server,
            _watchdog: watchdog,
        };
        db.wait_ready(&log);
        db.sql(&format!(
            "CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'; \
             GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'%'; FLUSH PRIVILEGES;"
        ));
        db
    }

    fn wait_ready(&mut self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.server.try_wait() {
                panic!(
                    "mariadbd exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("mariadbd does not listen after 60 s");
    }

    /// Runs SQL as the database superuser over the unix socket.
    pub fn sql(&self, sql: &str) {
        let mut command = match self.run_as {
            // root@localhost authenticates by socket as the OS user root.
            Some(_) | None => Command::new(program("mariadb")),
        };
        let output = command
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.join("mariadb.sock").display()
            ))
            .args(["-u", "root", "-e", sql])
            .output()
            .unwrap();
        assert!(output.status.success(), "mariadb {sql}: {output:?}");
    }

    /// A new, empty database; returns its name.
    pub fn database(&self) -> String {
        let name = db_server::database_name();
        self.sql(&format!("CREATE DATABASE {name}"));
        name
    }

    /// notary's Go DSN for `database`.
    pub fn dsn(&self, database: &str) -> String {
        format!(
            "{USER}:{PASSWORD}@tcp(127.0.0.1:{})/{database}?parseTime=True",
            self.port
        )
    }

    /// A URL sqlx understands, for the test's own queries.
    pub fn url(&self, database: &str) -> String {
        format!(
            "mysql://{USER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }
}
