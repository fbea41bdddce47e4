//! A bounded in-memory cache of served metadata, keyed by GUN, role and
//! version or checksum (never checksum alone: PROTOCOL.md §11.3).
//!
//! Files by checksum never change, and neither do files by version while
//! their GUN exists. What "current" means does change, and who may change it
//! is a property of the store ([`crate::store::Store::shared`]):
//!
//! - One process per database (SQLite): "current" entries are dropped
//!   whenever this process writes to the GUN, so a hit needs no query.
//! - A database shared by replicas (PostgreSQL): another process may publish,
//!   re-sign or delete at any moment, and "a publish answered by one replica
//!   is served by every replica on the next request". So every read first
//!   asks the database which file is meant (one indexed lookup of version
//!   and checksum, no bytes), and only the bytes come from here, by
//!   checksum; the fresh timestamp is used only while its checksum is still
//!   the current one. Invalidating by LISTEN/NOTIFY instead would leave a
//!   window between another replica's commit and this one hearing of it, and
//!   a lost connection would silently widen it. Version keys are not used
//!   there: a deleted and re-created GUN reuses version numbers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;

use super::Served;

/// At most this many bytes of metadata are cached; past it the cache starts
/// over (simple, bounded, and refilled by the next reads).
const MAX_CACHED_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Current(String),
    Version(String, i64),
    Checksum(String, String),
}

/// The current timestamp and the snapshot it names, with their expiries.
#[derive(Debug, Clone)]
pub struct Fresh {
    pub timestamp: Served,
    /// Checksum of `timestamp`: on a shared database, compared with the
    /// current one before each use.
    pub timestamp_sha256: String,
    pub snapshot: Served,
    pub timestamp_expires: OffsetDateTime,
    pub snapshot_expires: OffsetDateTime,
    /// Set after a failed re-sign: serve these files as they are until
    /// then, instead of retrying on every read.
    pub retry_after: Option<OffsetDateTime>,
}

#[derive(Default)]
struct Inner {
    by_gun: HashMap<String, GunEntries>,
    bytes: usize,
}

#[derive(Default)]
struct GunEntries {
    files: HashMap<Key, Served>,
    fresh: Option<Fresh>,
}

/// A reader notes the epoch before reading the store and may fill the cache
/// only if no write happened meanwhile; otherwise a read that raced a
/// publish could cache what the publish just replaced.
fn fresh_size(fresh: &Fresh) -> usize {
    fresh.timestamp.data.len() + fresh.snapshot.data.len()
}

#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
    epoch: AtomicU64,
}

impl Cache {
    pub fn get(&self, gun: &str, key: &Key) -> Option<Served> {
        let inner = self.inner.lock().ok()?;
        inner.by_gun.get(gun)?.files.get(key).cloned()
    }

    /// The epoch to pass to `put`/`put_fresh`, read before the store is.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn put(&self, gun: &str, key: Key, served: &Served, seen: u64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if self.epoch() != seen {
            return;
        }
        if inner.bytes + served.data.len() > MAX_CACHED_BYTES {
            *inner = Inner::default();
        }
        inner.bytes += served.data.len();
        let replaced = inner
            .by_gun
            .entry(gun.to_string())
            .or_default()
            .files
            .insert(key, served.clone());
        inner.bytes -= replaced.map_or(0, |old| old.data.len());
    }

    pub fn fresh(&self, gun: &str) -> Option<Fresh> {
        let inner = self.inner.lock().ok()?;
        inner.by_gun.get(gun)?.fresh.clone()
    }

    pub fn put_fresh(&self, gun: &str, fresh: Fresh, seen: u64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if self.epoch() != seen {
            return;
        }
        let size = fresh_size(&fresh);
        if inner.bytes + size > MAX_CACHED_BYTES {
            *inner = Inner::default();
        }
        inner.bytes += size;
        let replaced = inner
            .by_gun
            .entry(gun.to_string())
            .or_default()
            .fresh
            .replace(fresh);
        inner.bytes -= replaced.map_or(0, |old| fresh_size(&old));
    }

    /// Forgets what may have changed for `gun`: its current files (the
    /// immutable ones stay unless the GUN was deleted).
    pub fn invalidate(&self, gun: &str, deleted: bool) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        // Under the lock, so no `put` interleaves with the bump.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if deleted {
            inner.by_gun.remove(gun);
            return;
        }
        if let Some(entries) = inner.by_gun.get_mut(gun) {
            entries.fresh = None;
            entries
                .files
                .retain(|key, _| !matches!(key, Key::Current(_)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn served(text: &str) -> Served {
        Served {
            data: Bytes::from(text.to_string()),
            last_modified: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_cached() {
        let cache = Cache::default();
        let key = Key::Current("targets".into());
        let seen = cache.epoch();
        // A publish lands between the reader's store read and its put.
        cache.invalidate("r/app", false);
        cache.put("r/app", key.clone(), &served("old"), seen);
        assert!(cache.get("r/app", &key).is_none());
        let seen = cache.epoch();
        cache.put("r/app", key.clone(), &served("new"), seen);
        assert_eq!(cache.get("r/app", &key).unwrap().data, Bytes::from("new"));
        cache.invalidate("r/app", false);
        assert!(cache.get("r/app", &key).is_none());
    }
}
