//! Striped async locks: a fixed number of mutexes shared by hash, so work on
//! one key (a GUN, a GUN and role) is serialised without a map that grows
//! with every key ever seen.
//!
//! The stripe is chosen by SipHash under random keys drawn per process
//! (`RandomState`): with a public hash anyone could pick GUNs that all land
//! on one stripe and stall every publish sharing it. Waits are bounded by
//! the caller ([`StripedLocks::lock`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

pub struct StripedLocks {
    stripes: Vec<Mutex<()>>,
    keys: RandomState,
}

/// The wait for a stripe ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl StripedLocks {
    pub fn new(count: usize) -> Self {
        Self {
            stripes: (0..count.max(1)).map(|_| Mutex::new(())).collect(),
            keys: RandomState::new(),
        }
    }

    fn index(&self, parts: &[&str]) -> usize {
        let mut hasher = self.keys.build_hasher();
        // `str`'s `Hash` ends each part with a separator, so ("ab", "c")
        // and ("a", "bc") are different keys.
        for part in parts {
            part.hash(&mut hasher);
        }
        let count = self.stripes.len() as u64;
        usize::try_from(hasher.finish() % count).unwrap_or(0)
    }

    /// The lock for the key made of `parts`.
    pub fn for_key(&self, parts: &[&str]) -> &Mutex<()> {
        let index = self.index(parts).min(self.stripes.len() - 1);
        &self.stripes[index]
    }

    /// Locks the key made of `parts`, waiting at most `wait`.
    pub async fn lock(
        &self,
        parts: &[&str],
        wait: Duration,
    ) -> Result<MutexGuard<'_, ()>, TimedOut> {
        tokio::time::timeout(wait, self.for_key(parts).lock())
            .await
            .map_err(|_| TimedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_always_gets_the_same_lock() {
        let locks = StripedLocks::new(8);
        let a = locks.for_key(&["r/app", "snapshot"]) as *const _;
        assert_eq!(a, locks.for_key(&["r/app", "snapshot"]) as *const _);
        let spread: std::collections::BTreeSet<_> = (0..64)
            .map(|i| locks.for_key(&[&format!("gun-{i}")]) as *const _ as usize)
            .collect();
        assert!(spread.len() > 1);
    }

    #[test]
    fn stripes_differ_between_instances() {
        // Keys a client aimed at one stripe of one process do not all share
        // a stripe in another: with random keys the placement of 64 GUNs
        // over 64 stripes repeats with negligible probability.
        let gun_stripes = |locks: &StripedLocks| -> Vec<usize> {
            (0..64)
                .map(|i| locks.index(&[&format!("gun-{i}")]))
                .collect()
        };
        let first = gun_stripes(&StripedLocks::new(64));
        let differs = (0..4).any(|_| gun_stripes(&StripedLocks::new(64)) != first);
        assert!(differs);
    }

    #[tokio::test]
    async fn a_wait_for_a_held_stripe_is_bounded() {
        let locks = StripedLocks::new(1);
        let held = locks.lock(&["a"], Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            locks.lock(&["b"], Duration::from_millis(20)).await.err(),
            Some(TimedOut)
        );
        drop(held);
        assert!(locks.lock(&["b"], Duration::from_millis(20)).await.is_ok());
    }
}
