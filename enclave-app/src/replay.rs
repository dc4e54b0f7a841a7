//! Refusing a sealed request seen before.
//!
//! Every sealed request carries a fresh HPKE encapsulated key, so its
//! replay id is unique; a router replaying one (to run it twice, or to be
//! paid twice) is refused. The cache is bounded: the oldest ids are
//! forgotten first. Billing does not depend on it: receipts carry the
//! request hash, and settlement counts each request hash once.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// The ids remembered, as a set and in arrival order.
#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

/// Ids of requests already accepted.
#[derive(Debug)]
pub struct ReplayCache {
    inner: Mutex<Seen>,
    capacity: usize,
}

impl ReplayCache {
    /// Remembers up to `capacity` ids (32 bytes each, plus overhead).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Seen::default()),
            capacity: capacity.max(1),
        }
    }

    /// Records `id`; false if it was seen before.
    pub fn first_time(&self, id: [u8; 32]) -> bool {
        let mut guard = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let seen = &mut *guard;
        if !seen.ids.insert(id) {
            return false;
        }
        seen.order.push_back(id);
        if seen.order.len() > self.capacity
            && let Some(oldest) = seen.order.pop_front()
        {
            seen.ids.remove(&oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_repeats_and_forgets_the_oldest_beyond_capacity() {
        let cache = ReplayCache::new(2);
        assert!(cache.first_time([1; 32]));
        assert!(!cache.first_time([1; 32]));
        assert!(cache.first_time([2; 32]));
        assert!(cache.first_time([3; 32]));
        assert!(cache.first_time([1; 32]), "the oldest id was forgotten");
        assert!(!cache.first_time([3; 32]));
    }
}
