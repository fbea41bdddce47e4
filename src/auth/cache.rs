//! Verified tokens, remembered until they expire, so a client that sends
//! the same token on every request pays for its signature check once.
//! Bounded in entries and in bytes; a lookup re-checks expiry, so the cache
//! can never make an expired token valid.
//!
//! A lookup must cost little next to a cached metadata GET, so the token is
//! not run through a cryptographic hash (SHA-256 of a 1–2 KiB token with
//! an `x5c` chain was most of the cost of auth). Instead:
//! * the slot is a keyed hash (SipHash, random keys per process) of the
//!   token's length and last bytes — the signature, which differs between
//!   any two tokens a token server issues. The slot only says where to look:
//! * a hit needs the whole token byte-equal to the one that verified,
//!   compared without data-dependent branches, so nothing is learnt about a
//!   cached token from timing and no other token can be passed off as it.
//!   A token sharing a slot with a cached one simply misses (and replaces
//!   it if it verifies itself).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use time::OffsetDateTime;

use super::claims::LEEWAY_SECONDS;
use super::verify::VerifiedToken;

/// How many bytes from the end of a token choose its slot: well inside the
/// signature of every accepted algorithm (ES256's is 86 characters).
const TAIL_BYTES: usize = 32;
/// Token bytes kept at most: 10,000 tokens of 1.6 KiB.
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;

#[derive(Debug)]
struct Entry {
    token: Box<[u8]>,
    verified: Arc<VerifiedToken>,
}

/// The map's own hasher passes the slot through: it is a keyed hash
/// already, and hashing it again was a tenth of the cost of a lookup.
#[derive(Debug, Default)]
struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a `u64`); this is for
        // completeness.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, slot: u64) {
        self.0 = slot;
    }
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<u64, Entry, BuildHasherDefault<SlotHasher>>,
    /// Sum of the kept tokens' lengths.
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, slot: u64) {
        if let Some(old) = self.map.remove(&slot) {
            self.bytes -= old.token.len();
        }
    }
}

#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    max_bytes: usize,
    keys: RandomState,
    /// Read-mostly: every request with a known token only reads, so the
    /// workers do not queue behind each other.
    entries: RwLock<Entries>,
}

/// The same test verification applies (`exp` plus the leeway).
fn live(token: &VerifiedToken, now: OffsetDateTime) -> bool {
    now.unix_timestamp() <= token.expires.saturating_add(LEEWAY_SECONDS)
}

/// Whether `a == b`, in time that depends on the lengths only (a hit must
/// not tell an attacker how much of a cached token they guessed). aws-lc's
/// `CRYPTO_memcmp`: `subtle` compares byte by byte through a volatile read,
/// which for a 2 KiB token cost more than the rest of the request.
fn same(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self::with_max_bytes(capacity, DEFAULT_MAX_BYTES)
    }

    pub fn with_max_bytes(capacity: usize, max_bytes: usize) -> Self {
        Self {
            capacity,
            max_bytes,
            keys: RandomState::new(),
            entries: RwLock::new(Entries::default()),
        }
    }

    fn slot(&self, token: &[u8]) -> u64 {
        let tail = &token[token.len().saturating_sub(TAIL_BYTES)..];
        self.keys.hash_one((token.len(), tail))
    }

    /// The verified token whose bytes are exactly `token`, if still live.
    pub fn get(&self, token: &[u8], now: OffsetDateTime) -> Option<Arc<VerifiedToken>> {
        let slot = self.slot(token);
        {
            // A poisoned lock only means another request panicked mid-update
            // of a plain map; its contents are still whole.
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            let entry = entries.map.get(&slot)?;
            if !same(&entry.token, token) {
                return None;
            }
            if live(&entry.verified, now) {
                return Some(Arc::clone(&entry.verified));
            }
        }
        // Expired: drop it, unless another request replaced it meanwhile.
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let expired = entries
            .map
            .get(&slot)
            .is_some_and(|entry| same(&entry.token, token) && !live(&entry.verified, now));
        if expired {
            entries.remove(slot);
        }
        None
    }

    pub fn insert(&self, token: &str, verified: &Arc<VerifiedToken>, now: OffsetDateTime) {
        let token = token.as_bytes();
        if self.capacity == 0 || token.len() > self.max_bytes || !live(verified, now) {
            return;
        }
        let slot = self.slot(token);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // The same token again, or one sharing its slot: the newer wins.
        entries.remove(slot);
        let full =
            |e: &Entries| e.map.len() >= self.capacity || e.bytes + token.len() > self.max_bytes;
        if full(&entries) {
            entries.map.retain(|_, cached| live(&cached.verified, now));
            entries.bytes = entries.map.values().map(|e| e.token.len()).sum();
        }
        if full(&entries) {
            // Still full of live tokens: start over rather than track
            // recency; the cost is re-verifying some tokens once.
            *entries = Entries::default();
        }
        entries.bytes += token.len();
        entries.map.insert(
            slot,
            Entry {
                token: token.into(),
                verified: Arc::clone(verified),
            },
        );
    }

    pub fn len(&self) -> usize {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Grants;

    fn token(expires: i64) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            subject: "alice".into(),
            grants: Grants::default(),
            expires,
        })
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    #[test]
    fn entries_die_with_their_token() {
        let cache = TokenCache::new(8);
        cache.insert("t", &token(1000), at(900));
        assert_eq!(cache.get(b"t", at(1060)), Some(token(1000)));
        assert_eq!(cache.get(b"t", at(1061)), None);
        // And it is gone, not merely hidden.
        assert_eq!(cache.get(b"t", at(900)), None);
        assert!(cache.is_empty());
        // An already expired token is never stored.
        cache.insert("old", &token(100), at(900));
        assert!(cache.is_empty());
    }

    #[test]
    fn size_is_bounded() {
        let cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(&format!("t{i}"), &token(1000), at(900));
            assert!(cache.len() <= 3);
        }
        assert!(cache.get(b"t9", at(900)).is_some());
        // Expired entries make room first.
        let cache = TokenCache::new(2);
        cache.insert("short", &token(910), at(900));
        cache.insert("long", &token(5000), at(900));
        cache.insert("new", &token(5000), at(1000));
        assert!(cache.get(b"long", at(1000)).is_some());
        assert!(cache.get(b"new", at(1000)).is_some());
    }

    #[test]
    fn bytes_are_bounded() {
        let cache = TokenCache::with_max_bytes(100, 64);
        let long = "x".repeat(30);
        for i in 0..10 {
            cache.insert(&format!("{i}{long}"), &token(1000), at(900));
            assert!(cache.entries.read().unwrap().bytes <= 64);
        }
        assert!(cache.get(format!("9{long}").as_bytes(), at(900)).is_some());
        // A token larger than the whole budget is not kept at all.
        cache.insert(&"y".repeat(65), &token(1000), at(900));
        assert!(cache.get("y".repeat(65).as_bytes(), at(900)).is_none());
    }

    #[test]
    fn only_the_exact_token_hits() {
        let cache = TokenCache::new(8);
        let tail = "s".repeat(TAIL_BYTES);
        let cached = format!("header.claims.{tail}");
        cache.insert(&cached, &token(1000), at(900));
        assert!(cache.get(cached.as_bytes(), at(900)).is_some());
        // Same length and signature, other claims: same slot, still a miss.
        let forged = format!("header.CLAIMS.{tail}");
        assert!(cache.get(forged.as_bytes(), at(900)).is_none());
        for other in [&cached[1..], &format!("{cached}s"), ""] {
            assert!(cache.get(other.as_bytes(), at(900)).is_none(), "{other}");
        }
        // A token sharing the slot replaces the old one when it verifies.
        cache.insert(&forged, &token(2000), at(900));
        assert_eq!(cache.get(forged.as_bytes(), at(900)), Some(token(2000)));
        assert!(cache.get(cached.as_bytes(), at(900)).is_none());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn comparison_is_plain_equality() {
        for (a, b) in [
            ("", ""),
            ("a", "a"),
            ("abcdefgh", "abcdefgh"),
            ("abcdefghijklmnopq", "abcdefghijklmnopq"),
            ("abcdefghijklmnopq", "abcdefghijklmnopr"),
            ("abcdefghXjklmnopq", "abcdefghijklmnopq"),
            ("abc", "abd"),
            ("abc", "abcd"),
        ] {
            assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
        }
    }
}
