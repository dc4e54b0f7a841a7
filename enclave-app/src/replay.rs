//! Refusing a sealed request seen before, within a time window.
//!
//! Every sealed request carries a fresh HPKE encapsulated key (its replay id)
//! and the client's clock (`issued_at`, inside the sealed envelope, so the
//! router cannot change it). A request is accepted only when `issued_at` is
//! within `±window` of the node's clock and its id has not been accepted
//! before; an accepted id is remembered until `issued_at + window`, after
//! which the request is refused as too old anyway. So no replay of an
//! accepted request can ever run again, whatever the router sends.
//!
//! Ids are recorded only after the request opened (its AEAD verified and its
//! payer's signature checked), so cheap invalid requests cannot fill the
//! set. When the set is full of unexpired ids the node refuses new requests
//! ("busy") rather than forgetting one: forgetting would re-open a replay.
//!
//! The node's clock comes from the host. To keep an expired id from becoming
//! valid again when the host sets the clock back, [`RatchetClock`] never goes
//! backwards. A host that sets the clock far ahead can only make the node
//! refuse requests as too old (a denial of service it has anyway).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayRefusal {
    /// The same sealed request was accepted before.
    #[error("this sealed request was already served")]
    Replayed,
    /// `issued_at` is older than the window.
    #[error(
        "the request was sealed {age_s} s ago, beyond this node's {window_s} s window; seal it again (is the client's clock right?)"
    )]
    TooOld {
        /// Seconds before the node's clock.
        age_s: u64,
        /// The window.
        window_s: u64,
    },
    /// `issued_at` is further in the future than the window.
    #[error(
        "the request claims to be sealed {ahead_s} s in the future, beyond this node's {window_s} s window (is the client's clock right?)"
    )]
    FromTheFuture {
        /// Seconds after the node's clock.
        ahead_s: u64,
        /// The window.
        window_s: u64,
    },
    /// The window's set of ids is full.
    #[error(
        "this node remembers {capacity} recent requests and is full; retry shortly or on another node"
    )]
    Full {
        /// How many ids fit.
        capacity: usize,
    },
}

impl ReplayRefusal {
    /// Stable code for error frames and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Replayed => "replayed",
            Self::TooOld { .. } => "stale_request",
            Self::FromTheFuture { .. } => "request_from_the_future",
            Self::Full { .. } => "busy",
        }
    }

    /// Whether sending the same request again, resealed, may work.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Full { .. })
    }
}

#[derive(Debug, Default)]
struct Window {
    ids: HashSet<[u8; 32]>,
    /// (expiry, id), soonest expiry on top.
    expiries: BinaryHeap<Reverse<(u64, [u8; 32])>>,
}

/// Ids of requests accepted within the window.
#[derive(Debug)]
pub struct ReplayGuard {
    inner: Mutex<Window>,
    window_s: u64,
    capacity: usize,
}

impl ReplayGuard {
    /// Accepts `issued_at` within `±window_s` of the node's clock and
    /// remembers up to `capacity` ids (about 100 bytes each).
    pub fn new(window_s: u64, capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Window::default()),
            window_s,
            capacity: capacity.max(1),
        }
    }

    /// The window in seconds.
    pub fn window_s(&self) -> u64 {
        self.window_s
    }

    /// Checks `issued_at` against `now` (Unix seconds, from a
    /// [`RatchetClock`]) and records `id`.
    pub fn admit(&self, id: [u8; 32], issued_at: u64, now: u64) -> Result<(), ReplayRefusal> {
        let window_s = self.window_s;
        if issued_at.saturating_add(window_s) < now {
            return Err(ReplayRefusal::TooOld {
                age_s: now - issued_at,
                window_s,
            });
        }
        if issued_at > now.saturating_add(window_s) {
            return Err(ReplayRefusal::FromTheFuture {
                ahead_s: issued_at - now,
                window_s,
            });
        }
        let mut guard = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let window = &mut *guard;
        while let Some(Reverse((expiry, old))) = window.expiries.peek().copied()
            && expiry < now
        {
            window.expiries.pop();
            window.ids.remove(&old);
        }
        if window.ids.contains(&id) {
            return Err(ReplayRefusal::Replayed);
        }
        if window.ids.len() >= self.capacity {
            return Err(ReplayRefusal::Full {
                capacity: self.capacity,
            });
        }
        window.ids.insert(id);
        window
            .expiries
            .push(Reverse((issued_at.saturating_add(window_s), id)));
        Ok(())
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        match self.inner.lock() {
            Ok(guard) => guard.ids.len(),
            Err(poisoned) => poisoned.into_inner().ids.len(),
        }
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Unix time in seconds that never goes backwards, whatever the host does to
/// the system clock.
#[derive(Debug, Default)]
pub struct RatchetClock {
    highest: AtomicU64,
}

impl RatchetClock {
    /// A clock starting at the system's time.
    pub fn new() -> Self {
        Self::default()
    }

    /// The later of the system clock and every value returned before.
    pub fn now(&self) -> u64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.observe(system)
    }

    /// Feeds a reading of the system clock; returns the ratcheted time.
    pub fn observe(&self, system: u64) -> u64 {
        let previous = self.highest.fetch_max(system, Ordering::SeqCst);
        previous.max(system)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn refuses_repeats_stale_and_future_requests() {
        let guard = ReplayGuard::new(300, 10);
        assert_eq!(guard.admit([1; 32], NOW, NOW), Ok(()));
        assert_eq!(
            guard.admit([1; 32], NOW, NOW + 1),
            Err(ReplayRefusal::Replayed)
        );
        assert_eq!(
            guard.admit([2; 32], NOW - 300, NOW),
            Ok(()),
            "edge of the window"
        );
        assert!(matches!(
            guard.admit([3; 32], NOW - 301, NOW),
            Err(ReplayRefusal::TooOld { age_s: 301, .. })
        ));
        assert!(matches!(
            guard.admit([4; 32], NOW + 301, NOW),
            Err(ReplayRefusal::FromTheFuture { ahead_s: 301, .. })
        ));
        // Once its id expires, the request is too old: never a second run.
        assert!(matches!(
            guard.admit([1; 32], NOW, NOW + 301),
            Err(ReplayRefusal::TooOld { .. })
        ));
    }

    #[test]
    fn a_full_window_refuses_instead_of_forgetting() {
        let guard = ReplayGuard::new(300, 2);
        guard.admit([1; 32], NOW, NOW).unwrap();
        guard.admit([2; 32], NOW, NOW).unwrap();
        assert_eq!(
            guard.admit([3; 32], NOW, NOW),
            Err(ReplayRefusal::Full { capacity: 2 })
        );
        // The old ids are still refused: nothing was forgotten.
        assert_eq!(guard.admit([1; 32], NOW, NOW), Err(ReplayRefusal::Replayed));
        // After they expire, room comes back.
        guard.admit([3; 32], NOW + 301, NOW + 301).unwrap();
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn the_clock_never_goes_back() {
        let clock = RatchetClock::new();
        assert_eq!(clock.observe(NOW), NOW);
        assert_eq!(
            clock.observe(NOW - 1000),
            NOW,
            "the host set the clock back"
        );
        assert_eq!(clock.observe(NOW + 5), NOW + 5);
        assert!(clock.now() >= NOW + 5);
    }
}
