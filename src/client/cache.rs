//! The local trust cache (`--trust-dir`, default `~/.notarium/trust`):
//! per GUN, the last verified root and the versions seen, so a later run
//! can follow root rotations from a known root and refuse rollbacks.
//!
//! Layout: `<trust-dir>/tuf/<gun>/root.json` (the exact bytes of the last
//! verified root) and `<trust-dir>/tuf/<gun>/state.json`
//! (`{"root": n, "timestamp": n, "snapshot": n, "targets": n}`, the
//! highest versions verified), and `<trust-dir>/tuf/<gun>/files/` (the
//! snapshot, targets and delegation files last used, by hash, to save
//! downloads: each is checked against the verified hash before use), and
//! `<trust-dir>/tuf/<gun>/checked.json` (`{"<kept file>": "<fingerprint>"}`:
//! the kept files whose signatures met their role's threshold, and a
//! SHA-256 over the role name, threshold and key IDs they were checked
//! against, so an unchanged file under unchanged keys is not checked again).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The record of signature checks, next to `state.json`.
const CHECKED: &str = "checked.json";

/// Highest versions verified for a GUN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub root: i64,
    pub timestamp: i64,
    pub snapshot: i64,
    pub targets: i64,
}

/// What the cache holds for one GUN.
#[derive(Debug, Clone, Default)]
pub struct Cached {
    pub root: Option<Vec<u8>>,
    pub seen: Seen,
}

#[derive(Debug, thiserror::Error)]
#[error("trust cache {path}: {reason}")]
pub struct CacheError {
    pub path: String,
    pub reason: String,
}

/// A trust directory.
#[derive(Debug, Clone)]
pub struct TrustDir {
    dir: PathBuf,
}

impl TrustDir {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `~/.notarium/trust`, or `None` without a home directory.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".notarium/trust"))
    }

    /// The folder of one GUN. GUNs are checked by the reference grammar
    /// (no `..`, no empty components) before they get here.
    pub fn gun_dir(&self, gun: &str) -> PathBuf {
        self.dir.join("tuf").join(gun)
    }

    /// Snapshot, targets and delegation files of one GUN, by the name the
    /// server serves them under (`/` in role names as `%`). They are
    /// checked against the verified hashes before use, like downloads.
    pub fn files_dir(&self, gun: &str) -> PathBuf {
        self.gun_dir(gun).join("files")
    }

    /// Removes the kept files not in `used` (superseded versions).
    pub fn prune_files(&self, dir: &Path, used: &std::collections::BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !used.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The signature checks recorded by an earlier run (kept file name →
    /// fingerprint of the role it verified under). A missing or unreadable
    /// record only means every file is checked again.
    pub fn load_checked(&self, gun: &str) -> BTreeMap<String, String> {
        std::fs::read(self.gun_dir(gun).join(CHECKED))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Replaces the record of signature checks (atomically).
    pub fn store_checked(
        &self,
        gun: &str,
        checked: &BTreeMap<String, String>,
    ) -> Result<(), CacheError> {
        let dir = self.gun_dir(gun);
        let bytes = serde_json::to_vec_pretty(checked).map_err(|e| Self::error(&dir, e))?;
        Self::replace(&dir, CHECKED, &bytes)
    }

    fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CacheError> {
        std::fs::create_dir_all(dir).map_err(|e| Self::error(dir, e))?;
        let path = dir.join(name);
        let temporary = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&temporary, bytes).map_err(|e| Self::error(&temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| Self::error(&path, e))
    }

    fn error(path: &Path, reason: impl std::fmt::Display) -> CacheError {
        CacheError {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn load(&self, gun: &str) -> Result<Cached, CacheError> {
        let dir = self.gun_dir(gun);
        let root_path = dir.join("root.json");
        let root = match std::fs::read(&root_path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Self::error(&root_path, e)),
        };
        let state_path = dir.join("state.json");
        let seen = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Self::error(
                    &state_path,
                    format!("unreadable ({e}); remove it to start over"),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Seen::default(),
            Err(e) => return Err(Self::error(&state_path, e)),
        };
        Ok(Cached { root, seen })
    }

    /// Writes root and versions; each file is replaced atomically (write
    /// to a temporary name, then rename).
    pub fn store(&self, gun: &str, root: &[u8], seen: &Seen) -> Result<(), CacheError> {
        let dir = self.gun_dir(gun);
        let state = serde_json::to_vec_pretty(seen).map_err(|e| Self::error(&dir, e))?;
        for (name, bytes) in [("root.json", root), ("state.json", state.as_slice())] {
            Self::replace(&dir, name, bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_absent() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let cache = TrustDir::new(dir.path().to_path_buf());
        let empty = cache
            .load("example.com/a")
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(empty.root.is_none());
        assert_eq!(empty.seen, Seen::default());
        let seen = Seen {
            root: 2,
            timestamp: 7,
            snapshot: 5,
            targets: 3,
        };
        cache
            .store("example.com/a", b"{root}", &seen)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let loaded = cache
            .load("example.com/a")
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(loaded.root.as_deref(), Some(b"{root}".as_slice()));
        assert_eq!(loaded.seen, seen);
        assert!(dir.path().join("tuf/example.com/a/state.json").is_file());
    }
}
