//! A worker's group: the events it has handled whose state is not committed yet, in the
//! order they were handled, each with how it will end once committed (its [`Fate`]).
//!
//! The events of a group see each other's writes (the [`Overlay`]) and are committed by
//! one backend call, so a backend pays one round trip or one sync per group, not per event.
//! An event that neither read nor wrote state and finds the group empty ends at once: a
//! stateless plugin never waits for a commit (unless its route dedupes: then every event
//! that succeeds is recorded as finished by the commit). Otherwise it joins the group, even
//! if it touched no state, so that what one key emits stays in order.

use super::ending::Ending;
use crate::emitted;
use crate::event::Event;
use crate::metrics::FailureKind;
use crate::state::{EventCommit, Finished, Marker, Overlay, Transaction};
use crate::telemetry::Ended;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most events a group holds before it is committed.
pub(super) const MAX_GROUP: usize = 256;
/// The longest a handled event waits for its group's commit while its worker handles more
/// (a slow plugin's group is committed before it is full).
pub(super) const MAX_GROUP_WAIT: Duration = Duration::from_millis(20);

/// How a handled event ends once its state is committed.
pub(super) enum Fate {
    /// Handled: publish what it emitted (nothing: it succeeded).
    Publish {
        emitted: Vec<Event>,
        /// The attempt that was handled.
        cause: Arc<Event>,
        version: String,
        attempts: u32,
    },
    /// Failed for good: dead-letter it.
    DeadLetter {
        kind: FailureKind,
        reason: String,
        event: Arc<Event>,
        version: String,
        attempts: u32,
    },
}

impl Fate {
    /// How the handling ended, for its trace span.
    pub fn ended(&self) -> Ended<'_> {
        match self {
            Fate::Publish { emitted, .. } => Ended::Succeeded {
                emitted: emitted.len(),
            },
            Fate::DeadLetter { kind, reason, .. } => Ended::DeadLettered {
                kind: kind.as_str(),
                reason,
            },
        }
    }

    /// Ends the event.
    pub fn end(self, ending: Ending) {
        match self {
            Fate::Publish { emitted, .. } if emitted.is_empty() => ending.succeeded(),
            Fate::Publish {
                emitted,
                cause,
                version,
                attempts,
            } => ending.publish(emitted, cause, version, attempts),
            Fate::DeadLetter {
                kind,
                reason,
                event,
                version,
                attempts,
            } => {
                tracing::warn!(route = %ending.route.name, event_id = %event.id, %version, kind = kind.as_str(), %reason, "dead-lettering event");
                let failure = ending.failure(kind, reason, &version, attempts);
                let letter = failure.letter_for(&event, &ending.route.dead_letter);
                ending.dead_letter(kind, letter);
            }
        }
    }
}

/// A handled event waiting for its group's commit.
pub(super) struct Waiting {
    pub ending: Ending,
    /// The event as delivered (handled again from this after a conflict).
    pub delivered: Arc<Event>,
    pub fate: Fate,
}

/// Handled events not committed yet.
#[derive(Default)]
pub(super) struct Group {
    overlay: Overlay,
    pub waiting: Vec<Waiting>,
    /// One commit per waiting event, in the same order.
    pub commits: Vec<EventCommit>,
    /// When the first waiting event joined.
    since: Option<Instant>,
}

impl Group {
    /// A transaction for the next event, over the group's writes.
    pub fn begin(&mut self) -> Transaction {
        Transaction::begin(std::mem::take(&mut self.overlay))
    }

    /// Takes back the overlay of a transaction that is handled again.
    pub fn restore(&mut self, txn: Transaction) {
        self.overlay = txn.abort();
    }

    /// Whether the group should be committed now: full, or waiting long enough.
    pub fn is_due(&self) -> bool {
        self.waiting.len() >= MAX_GROUP || self.since.is_some_and(|t| t.elapsed() >= MAX_GROUP_WAIT)
    }

    /// Adds a handled event (ending it at once if it needs no commit). `finished` records,
    /// if it succeeded, that its route finished it (the route dedupes).
    pub fn add(
        &mut self,
        waiting: Waiting,
        txn: Transaction,
        marker: Marker,
        finished: Option<Finished>,
    ) {
        let succeeded = matches!(waiting.fate, Fate::Publish { .. });
        if txn.is_untouched() && self.waiting.is_empty() && !(succeeded && finished.is_some()) {
            self.overlay = txn.abort();
            waiting.fate.end(waiting.ending);
            return;
        }
        let (overlay, commit) = match &waiting.fate {
            Fate::Publish { emitted, .. } => {
                let outbox = if txn.has_writes() || finished.is_some() {
                    emitted::encode(emitted)
                } else {
                    Vec::new()
                };
                txn.into_commit(marker, outbox, finished)
            }
            Fate::DeadLetter { .. } => txn.into_reads(),
        };
        self.overlay = overlay;
        self.since.get_or_insert_with(Instant::now);
        self.waiting.push(waiting);
        self.commits.push(commit);
    }

    /// After a commit of which the first `applied` events went through: those, and the
    /// rest (to be handled again or skipped). The overlay's writes are cleared (now
    /// committed, or dropped); those committed are remembered.
    pub fn split(&mut self, applied: usize) -> (Vec<Waiting>, Vec<Waiting>) {
        self.overlay.learn(&self.commits[..applied]);
        self.overlay.clear_writes();
        self.commits.clear();
        self.since = None;
        let mut done = std::mem::take(&mut self.waiting);
        let rest = done.split_off(applied);
        (done, rest)
    }

    /// Drops everything (stopping): the events stay unfinished and are delivered again.
    pub fn abandon(&mut self) {
        self.split(0);
    }

    /// Forgets what the worker knew of `key`, found changed by someone else.
    pub fn forget(&mut self, key: &str) {
        self.overlay.forget(key);
    }

    /// Forgets everything the worker knew of the store.
    pub fn forget_all(&mut self) {
        self.overlay.forget_all();
    }
}
