//! Per-route counters: what came in, how it ended, and why events were dead-lettered; how
//! long handling took; where the route stands on each partition. Workers and pollers bump
//! them lock-free (the positions take a lock once a second); the run's summary and the admin
//! server's `/metrics` read them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

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
    /// The broker delivered the event more times than allowed without it being finished
    /// (Redis `max_deliveries`: its consumers died on it).
    DeliveriesExhausted,
}

impl FailureKind {
    /// Every kind, in a stable order.
    pub const ALL: [FailureKind; 10] = [
        FailureKind::Rejected,
        FailureKind::RetriesExhausted,
        FailureKind::Trap,
        FailureKind::Timeout,
        FailureKind::MemoryLimit,
        FailureKind::Undecodable,
        FailureKind::Unavailable,
        FailureKind::InvalidEmit,
        FailureKind::PublishFailed,
        FailureKind::DeliveriesExhausted,
    ];

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
            FailureKind::DeliveriesExhausted => "deliveries-exhausted",
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
    /// Events skipped as duplicates of one the route finished within its dedupe window.
    pub duplicates: AtomicU64,
    /// Events handled again because a key they read was written before their commit.
    pub state_conflicts: AtomicU64,
    /// Waits for an unreachable state store (the event is handled again after each).
    pub state_waits: AtomicU64,
    /// State keys read by handled events (each key once per handling).
    pub state_reads: AtomicU64,
    /// State keys written or deleted by handled events.
    pub state_writes: AtomicU64,
    /// Emits of a type (or to a topic) the plugin's `emits` does not declare (published all
    /// the same).
    pub undeclared_emits: AtomicU64,
    /// How long `handle` calls took.
    pub handle_latency: Latency,
    /// Whether the route's source has joined its broker (Kafka: a first assignment came).
    pub assigned: AtomicBool,
    /// Events written to the dead-letter topic, by reason.
    dead_lettered: Mutex<BTreeMap<FailureKind, u64>>,
    /// Committed position and end of each partition the route reads, as last measured.
    positions: Mutex<BTreeMap<u32, PartitionPosition>>,
}

/// Where a route stands on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PartitionPosition {
    /// The partition.
    pub partition: u32,
    /// The next offset the route will commit from (everything below is finished).
    pub committed: u64,
    /// The partition's end: the offset the next record appended will get.
    pub end: u64,
}

impl PartitionPosition {
    /// Records appended and not yet committed by the route.
    pub fn lag(&self) -> u64 {
        self.end.saturating_sub(self.committed)
    }
}

/// Upper bounds, in seconds, of the buckets of [`Latency`]: 50 µs to 10 s, the range of a
/// `handle` call (a few µs for a filter, up to a plugin's time limit).
pub const LATENCY_BOUNDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// A histogram of durations with fixed buckets, bumped lock-free.
#[derive(Debug, Default)]
pub struct Latency {
    /// Observations per bucket of [`LATENCY_BOUNDS`], then one for anything longer.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    /// The sum of all observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Latency {
    /// Counts one duration.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The count per bucket (the last one unbounded) and the sum in seconds.
    pub fn read(&self) -> (Vec<u64>, f64) {
        let counts = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        (counts, self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9)
    }
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

    /// Replaces the measured positions with `positions` (those of partitions no longer
    /// read are dropped).
    pub fn set_positions(&self, positions: Vec<PartitionPosition>) {
        *self.positions.lock().expect("positions lock") =
            positions.into_iter().map(|p| (p.partition, p)).collect();
    }

    /// The positions as last measured, by partition.
    pub fn positions(&self) -> Vec<PartitionPosition> {
        self.positions
            .lock()
            .expect("positions lock")
            .values()
            .copied()
            .collect()
    }

    /// Dead letters by reason, so far.
    pub fn dead_lettered(&self) -> Vec<(FailureKind, u64)> {
        let counts = self.dead_lettered.lock().expect("metrics lock");
        counts.iter().map(|(k, v)| (*k, *v)).collect()
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
            duplicates: self.duplicates.load(Ordering::Relaxed),
            state_conflicts: self.state_conflicts.load(Ordering::Relaxed),
            state_waits: self.state_waits.load(Ordering::Relaxed),
            state_reads: self.state_reads.load(Ordering::Relaxed),
            state_writes: self.state_writes.load(Ordering::Relaxed),
            undeclared_emits: self.undeclared_emits.load(Ordering::Relaxed),
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
    /// Events skipped as duplicates (the route's dedupe).
    pub duplicates: u64,
    /// Events handled again after a state conflict.
    pub state_conflicts: u64,
    /// Waits for an unreachable state store.
    pub state_waits: u64,
    /// State keys read.
    pub state_reads: u64,
    /// State keys written or deleted.
    pub state_writes: u64,
    /// Emits the plugin does not declare.
    pub undeclared_emits: u64,
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
