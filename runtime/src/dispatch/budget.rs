//! How many bytes of unfinished work a route may hold: the events it has read and not
//! finished (queued, being handled, retried, being published) and what they emitted.
//!
//! Every delivery the poller hands out carries a [`Hold`] on its route's [`Budget`], grown by
//! the event's emits when they are published and released when the event ends (or is
//! abandoned at shutdown) by dropping it. While the budget is spent the poller reads nothing
//! more, and it takes no more records per poll than the room left would hold at the size
//! events have had so far, so a slow or unreachable broker, or a flood of large events,
//! cannot grow the host's memory without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes a route may hold unfinished (`max_in_flight`).
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
    /// A running average of the size of the events held, to size reads by.
    average_event: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Budget {
            limit,
            used: AtomicU64::new(0),
            average_event: AtomicU64::new(0),
        })
    }

    /// Holds `bytes` (one event read) until the returned hold is dropped.
    pub fn hold(self: &Arc<Self>, bytes: usize) -> Hold {
        // An exponentially weighted average: recent events count most.
        let average = self.average_event.load(Ordering::Relaxed);
        let updated = if average == 0 {
            bytes as u64
        } else {
            (average * 7 + bytes as u64) / 8
        };
        self.average_event.store(updated, Ordering::Relaxed);
        let mut hold = Hold {
            budget: self.clone(),
            bytes: 0,
        };
        hold.grow(bytes);
        hold
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the route must stop reading until some of what it holds is finished.
    pub fn is_spent(&self) -> bool {
        self.used() >= self.limit
    }

    /// How many more events, of the size events have had so far, fit in the room left
    /// (at least 1, at most `cap`).
    pub fn events_that_fit(&self, cap: usize) -> usize {
        let room = self.limit.saturating_sub(self.used());
        let average = self.average_event.load(Ordering::Relaxed).max(1);
        usize::try_from(room / average)
            .unwrap_or(usize::MAX)
            .clamp(1, cap)
    }
}

/// Bytes held on a [`Budget`] by one event; given back when dropped.
#[derive(Debug)]
pub struct Hold {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Hold {
    /// Holds `bytes` more (what the event emitted, while it is being published).
    pub fn grow(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        self.budget.used.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_add_up_and_are_given_back_when_dropped() {
        let budget = Budget::new(100);
        let mut a = budget.hold(60);
        assert!(!budget.is_spent());
        let b = budget.hold(30);
        a.grow(10);
        assert_eq!(budget.used(), 100);
        assert!(budget.is_spent());
        drop(a);
        assert_eq!(budget.used(), 30);
        assert!(!budget.is_spent());
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn reads_are_sized_to_the_room_left() {
        let budget = Budget::new(1000);
        assert_eq!(budget.events_that_fit(512), 512, "nothing seen yet");
        let held: Vec<Hold> = (0..4).map(|_| budget.hold(100)).collect();
        assert_eq!(budget.events_that_fit(512), 6, "600 bytes left, 100 each");
        assert_eq!(budget.events_that_fit(3), 3, "capped");
        let more: Vec<Hold> = (0..6).map(|_| budget.hold(100)).collect();
        assert_eq!(budget.events_that_fit(512), 1, "always at least one");
        drop((held, more));
    }
}
