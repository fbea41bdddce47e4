//! What the test database servers (`postgres.rs`, `mariadb.rs`) share:
//! a private scratch directory, the unprivileged user a server must run as
//! when the tests run as root, fresh names, and the watchdog that stops a
//! server and removes its directory when the test binary exits, however it
//! exits.
//!
//! `postgres.rs` includes it with `#[path]`; as that file is also part of
//! the library's unit tests, this uses std only. Test binaries reach it as
//! `common::db_server`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Numbers the directories and databases this process makes.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A new database name, `t_<pid>_<n>`: unique in this process and among
/// test binaries sharing a server.
pub fn database_name() -> String {
    format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new directory only its owner can enter,
/// `notarium-<kind>-<pid>-<n>` in the temporary directory, with `subdir`
/// made inside it.
pub fn scratch_dir(kind: &str, subdir: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "notarium-{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join(subdir)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// The user a server runs as: `user` when the tests run as root (the
/// servers refuse root, or should not run as it), else the tests' own.
pub fn run_as(user: &'static str) -> Option<&'static str> {
    is_root().then_some(user)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// Gives `dir` and what is in it to `user`.
pub fn chown(dir: &Path, user: &str) {
    let status = Command::new("chown")
        .args(["-R", &format!("{user}:")])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "chown {}", dir.display());
}

/// `program` run as `run_as` (through runuser) when set.
pub fn command_as(run_as: Option<&str>, program: &Path) -> Command {
    match run_as {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// [`command_as`] as shell text, for the watchdog's script.
pub fn command_line(run_as: Option<&str>, program: &Path) -> String {
    match run_as {
        Some(user) => format!("runuser -u {user} -- {}", program.display()),
        None => program.display().to_string(),
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A shell that holds the read end of a pipe whose write end only this
/// process has, and runs `cleanup` once it closes: when this value is
/// dropped or the test binary exits, however it exits.
pub struct Watchdog(Child);

impl Watchdog {
    pub fn spawn(cleanup: &str) -> Self {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("cat >/dev/null; {cleanup}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Closing the pipe lets the cleanup run; wait until it has.
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}
