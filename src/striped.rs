//! Striped async locks: a fixed number of mutexes shared by hash, so work on
//! one key (a GUN, a GUN and role) is serialised without a map that grows
//! with every key ever seen.

use tokio::sync::Mutex;

pub struct StripedLocks {
    stripes: Vec<Mutex<()>>,
}

impl StripedLocks {
    pub fn new(count: usize) -> Self {
        Self {
            stripes: (0..count.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    /// The lock for the key made of `parts` (FNV-1a over them, separated).
    pub fn for_key(&self, parts: &[&str]) -> &Mutex<()> {
        let hash = parts.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, part| {
            part.bytes().chain([0]).fold(hash, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })
        });
        let count = self.stripes.len() as u64;
        let index = usize::try_from(hash % count).unwrap_or(0);
        &self.stripes[index.min(self.stripes.len() - 1)]
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
        // Parts are separated: ("ab","c") and ("a","bc") are different keys.
        let spread: std::collections::BTreeSet<_> = (0..64)
            .map(|i| locks.for_key(&[&format!("gun-{i}")]) as *const _ as usize)
            .collect();
        assert!(spread.len() > 1);
    }
}
