//! Per-route counters: what came in, how it ended, and why events were dead-lettered.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an event went to a dead-letter topic; also the `plexusdlqkind` attribute's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// The plugin returned `reject`.
    Rejected,
    /// The plugin kept returning `retry` until the route's attempts ran out.
    RetriesExhausted,
    /// The plugin trapped (panic, unreachable, out-of-bounds access, ...).
    Trap,
    /// One call ran longer than the plugin's `timeout`.
    Timeout,
    /// The instance tried to grow its memory past the plugin's `memory` limit.
    MemoryLimit,
    /// The record could not be decoded into an event.
    Undecodable,
    /// No instance of the plugin could be created for the event.
    Unavailable,
    /// The plugin staged an invalid emit or too many of them.
    InvalidEmit,
    /// The broker refused for good what the plugin emitted (too large, an invalid topic,
    /// not authorised).
    PublishFailed,
}

impl FailureKind {
    /// The stable, kebab-case name used in headers and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Rejected => "rejected",
            FailureKind::RetriesExhausted => "retries-exhausted",
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::Undecodable => "undecodable",
            FailureKind::Unavailable => "unavailable",
            FailureKind::InvalidEmit => "invalid-emit",
            FailureKind::PublishFailed => "publish-failed",
        }
    }
}

/// Counters of one route. Cheap to bump from many workers at once.
#[derive(Default, Debug)]
pub struct RouteMetrics {
    /// Events read from the topic.
    pub received: AtomicU64,
    /// Events skipped by the route's type filter.
    pub filtered: AtomicU64,
    /// Events the plugin handled successfully.
    pub succeeded: AtomicU64,
    /// Attempts that ended in a *retry* error and were retried.
    pub retried: AtomicU64,
    /// Events emitted by the plugin and published.
    pub emitted: AtomicU64,
    /// Dead letters the broker refused whole, written without their payload.
    pub dead_letters_without_payload: AtomicU64,
    /// Deliveries of events already applied to state: not handled again, what they emitted
    /// published again.
    pub already_applied: AtomicU64,
    /// Events handled again because a key they read was written before their commit.
    pub state_conflicts: AtomicU64,
    /// Waits for an unreachable state store (the event is handled again after each).
    pub state_waits: AtomicU64,
    /// Events written to the dead-letter topic, by reason.
    dead_lettered: Mutex<BTreeMap<FailureKind, u64>>,
}

impl RouteMetrics {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one dead letter of `kind`.
    pub fn dead_letter(&self, kind: FailureKind) {
        *self
            .dead_lettered
            .lock()
            .expect("metrics lock")
            .entry(kind)
            .or_default() += 1;
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> RouteSnapshot {
        let dead_lettered = self.dead_lettered.lock().expect("metrics lock");
        RouteSnapshot {
            received: self.received.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            emitted: self.emitted.load(Ordering::Relaxed),
            dead_letters_without_payload: self.dead_letters_without_payload.load(Ordering::Relaxed),
            already_applied: self.already_applied.load(Ordering::Relaxed),
            state_conflicts: self.state_conflicts.load(Ordering::Relaxed),
            state_waits: self.state_waits.load(Ordering::Relaxed),
            unfinished: 0,
            dead_lettered: dead_lettered
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect(),
        }
    }
}

/// The counters of one route at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouteSnapshot {
    /// Events read from the topic.
    pub received: u64,
    /// Events skipped by the type filter.
    pub filtered: u64,
    /// Events handled successfully.
    pub succeeded: u64,
    /// Attempts retried.
    pub retried: u64,
    /// Events emitted and published.
    pub emitted: u64,
    /// Dead letters written without their payload (the broker refused them whole).
    pub dead_letters_without_payload: u64,
    /// Deliveries skipped because their event was applied to state already.
    pub already_applied: u64,
    /// Events handled again after a state conflict.
    pub state_conflicts: u64,
    /// Waits for an unreachable state store.
    pub state_waits: u64,
    /// Events received and not finished when the route stopped (delivered again later).
    pub unfinished: u64,
    /// Dead letters by reason.
    pub dead_lettered: BTreeMap<&'static str, u64>,
}

impl RouteSnapshot {
    /// All dead letters, whatever the reason.
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }
}

/// What a run did, per route and per output, and how its reloads went.
#[derive(Debug, Default, serde::Serialize)]
pub struct RunReport {
    /// Counters per route (removed routes included).
    pub routes: BTreeMap<String, RouteSnapshot>,
    /// Lines written per output topic.
    pub outputs: BTreeMap<String, u64>,
    /// Events and undecodable lines fed per input file.
    pub inputs: BTreeMap<String, (u64, u64)>,
    /// New configs applied.
    pub reloads_applied: u64,
    /// New configs refused (the running one kept).
    pub reloads_refused: u64,
    /// Plugin versions swapped in.
    pub plugin_swaps: u64,
    /// Events published again after a failure that could pass later (a broker outage).
    pub publish_retries: u64,
}
