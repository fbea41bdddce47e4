//! A real PostgreSQL server for tests: `initdb` and `pg_ctl` from Debian's
//! `postgresql` package (/usr/lib/postgresql/<version>/bin) in a temporary
//! directory, on a free loopback port, with its unix socket in that
//! directory. As root the server runs as the `postgres` user (PostgreSQL
//! refuses root). A missing PostgreSQL fails the test; nothing skips.
//!
//! [`PgServer::shared`] is one server per test binary, each test taking a
//! fresh database from [`PgServer::database`]. A watchdog process holds the
//! read end of a pipe whose write end only this process has: when the test
//! binary exits, however it exits, the watchdog stops the server and removes
//! its directory.
//!
//! Included by the library's unit tests and by integration tests (`#[path]`),
//! so it uses std only.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Also `common::db_server`, for `mariadb.rs`.
#[path = "db_server.rs"]
pub mod db_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use db_server::{Watchdog, command_as, command_line, free_port};

/// The superuser's password: TCP connections authenticate with it
/// (scram-sha-256), so the tests exercise the password path.
pub const PASSWORD: &str = "notarium-test-pw";
const USER: &str = "postgres";

pub struct PgServer {
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
    /// `Some("postgres")` when the server runs as another user (we are root).
    run_as: Option<&'static str>,
    /// Extra server options from [`PgServer::start_with`].
    extra: String,
    /// Dropped (or this process exiting), it stops the server.
    _watchdog: Watchdog,
}

impl PgServer {
    /// The server of this test binary, started on first use.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::start)
    }

    /// A server of its own, for a test that stops and starts it.
    pub fn start() -> Self {
        Self::start_with(|_| String::new())
    }

    /// A server of its own; `prepare` may write files into the server's
    /// directory before it starts (TLS certificates) and returns extra
    /// server options (`-c name=value …`).
    pub fn start_with(prepare: impl FnOnce(&Path) -> String) -> Self {
        let bin = bin_dir();
        let run_as = db_server::run_as(USER);
        let dir = db_server::scratch_dir("pg", "sock");
        std::fs::write(dir.join("pwfile"), PASSWORD).unwrap();
        let extra = prepare(&dir);
        if let Some(user) = run_as {
            db_server::chown(&dir, user);
        }
        // The watchdog first: whatever fails below, the directory goes.
        let watchdog = Watchdog::spawn(&format!(
            "{} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {dir}",
            command_line(run_as, &bin.join("pg_ctl")),
            data = dir.join("data").display(),
            dir = dir.display(),
        ));
        let mut server = Self {
            port: 0,
            dir,
            bin,
            run_as,
            extra,
            _watchdog: watchdog,
        };
        server.initdb();
        // A port picked then freed can be taken meanwhile: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => return server,
                Err(log) => last = log,
            }
        }
        panic!("PostgreSQL did not start:\n{last}");
    }

    fn command(&self, program: &str) -> Command {
        command_as(self.run_as, &self.bin.join(program))
    }

    fn initdb(&self) {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-U", USER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", self.dir.join("pwfile").display()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn try_start(&self) -> Result<(), String> {
        let log = self.dir.join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 {}",
            self.port,
            self.dir.join("sock").display(),
            self.extra
        );
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .unwrap();
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "{}{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        ))
    }

    /// Stops the server (fast shutdown: sessions are disconnected).
    pub fn stop(&self) {
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(output.status.success(), "pg_ctl stop: {output:?}");
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&self) {
        self.try_start().unwrap();
    }

    /// A new, empty database; returns its name.
    pub fn database(&self) -> String {
        let name = db_server::database_name();
        self.psql(&format!("CREATE DATABASE {name}"));
        name
    }

    /// Runs one SQL command as the superuser over the unix socket.
    pub fn psql(&self, sql: &str) {
        let output = self
            .command("psql")
            .arg("-h")
            .arg(self.dir.join("sock"))
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", "postgres"])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .unwrap();
        assert!(output.status.success(), "psql {sql}: {output:?}");
    }

    /// notary's URL form for `database`, without the password (it comes
    /// from [`PASSWORD`] through the environment or a file).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{USER}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }
}

/// The newest installed server's programs.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed: this test needs initdb and pg_ctl from \
             /usr/lib/postgresql/<version>/bin (Debian package `postgresql`; `scripts/test` \
             installs it)"
        ),
    }
}
