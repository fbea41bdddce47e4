//! Verified tokens, remembered by the SHA-256 of the token until they
//! expire. Bounded; a lookup re-checks expiry, so the cache can never make
//! an expired token valid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use time::OffsetDateTime;

use super::claims::LEEWAY_SECONDS;
use super::verify::VerifiedToken;

#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], Arc<VerifiedToken>>>,
}

fn key(token: &str) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

/// The same test verification applies (`exp` plus the leeway).
fn live(token: &VerifiedToken, now: OffsetDateTime) -> bool {
    now.unix_timestamp() <= token.expires.saturating_add(LEEWAY_SECONDS)
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Hashing happens before the lock: the lock is shared by every
    /// request, so it guards only the map operation.
    pub fn get(&self, token: &str, now: OffsetDateTime) -> Option<Arc<VerifiedToken>> {
        let key = key(token);
        // A poisoned lock only means another request panicked mid-update of
        // a plain map; its contents are still whole.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&key) {
            Some(hit) if live(hit, now) => Some(hit.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, token: &str, verified: &Arc<VerifiedToken>, now: OffsetDateTime) {
        if self.capacity == 0 || !live(verified, now) {
            return;
        }
        let key = key(token);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, cached| live(cached, now));
        }
        if entries.len() >= self.capacity {
            // Still full of live tokens: start over rather than track
            // recency; the cost is re-verifying some tokens once.
            entries.clear();
        }
        entries.insert(key, Arc::clone(verified));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
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
        assert_eq!(cache.get("t", at(1060)), Some(token(1000)));
        assert_eq!(cache.get("t", at(1061)), None);
        // And it is gone, not merely hidden.
        assert_eq!(cache.get("t", at(900)), None);
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
        assert!(cache.get("t9", at(900)).is_some());
        // Expired entries make room first.
        let cache = TokenCache::new(2);
        cache.insert("short", &token(910), at(900));
        cache.insert("long", &token(5000), at(900));
        cache.insert("new", &token(5000), at(1000));
        assert!(cache.get("long", at(1000)).is_some());
        assert!(cache.get("new", at(1000)).is_some());
    }
}
