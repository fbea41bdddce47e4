//! A small bounded least-recently-used map for unsealed keys: a hit moves
//! the entry to the front, a full map drops the entry unused the longest
//! (rather than emptying itself, which made every key pay an unseal again).
//!
//! Two maps: key → (value, tick) and tick → key; every operation is
//! O(log n), and nothing here needs `unsafe` linked lists.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    tick: u64,
    entries: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
}

impl<K: Eq + Hash + Clone, V: Clone> Lru<K, V> {
    /// A map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The value for `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let tick = self.next_tick();
        let (value, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, key.clone());
        Some(value.clone())
    }

    /// Inserts or replaces `key`, evicting the least recently used entry
    /// when full.
    pub fn put(&mut self, key: K, value: V) {
        let tick = self.next_tick();
        if let Some((_, used)) = self.entries.remove(&key) {
            self.order.remove(&used);
        } else if self.entries.len() >= self.capacity
            && let Some((_, oldest)) = self.order.pop_first()
        {
            self.entries.remove(&oldest);
        }
        self.order.insert(tick, key.clone());
        self.entries.insert(key, (value, tick));
    }

    /// Drops every entry for which `drop` holds.
    pub fn remove_where(&mut self, mut drop: impl FnMut(&K, &V) -> bool) {
        let order = &mut self.order;
        self.entries.retain(|key, (value, used)| {
            let remove = drop(key, value);
            if remove {
                order.remove(used);
            }
            !remove
        });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(3);
        for (key, value) in [("a", 1), ("b", 2), ("c", 3)] {
            lru.put(key, value);
        }
        // Touch "a": "b" is now the oldest.
        assert_eq!(lru.get(&"a"), Some(1));
        lru.put("d", 4);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.get(&"a"), Some(1));
        assert_eq!(lru.get(&"c"), Some(3));
        assert_eq!(lru.get(&"d"), Some(4));
        // Replacing an entry does not evict another.
        lru.put("c", 30);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.get(&"c"), Some(30));
        assert_eq!(lru.get(&"a"), Some(1));
    }

    #[test]
    fn remove_where_keeps_the_order_consistent() {
        let mut lru = Lru::new(2);
        lru.put("x", 1);
        lru.put("y", 2);
        lru.remove_where(|key, _| *key == "x");
        assert_eq!(lru.len(), 1);
        lru.put("z", 3);
        // Room was freed, so "y" survives.
        assert_eq!(lru.get(&"y"), Some(2));
        assert_eq!(lru.get(&"z"), Some(3));
        lru.remove_where(|_, _| true);
        assert!(lru.is_empty());
        let mut one = Lru::new(0);
        one.put(1, 1);
        one.put(2, 2);
        assert_eq!((one.len(), one.get(&2)), (1, Some(2)));
    }
}
