//! Plugin state: one key-value namespace per plugin, read and written through one
//! [`Transaction`] per event and committed by the route's worker in groups, each event's
//! writes atomically with the record that the route applied that event (its marker).
//!
//! A committed event is never applied again: a delivery whose marker is present is not
//! handled; what it emitted, kept with the marker, is published again instead. A route with
//! `dedupe` also records, with the same commit, that it finished the event's source and id,
//! for its window: a later event with both is skipped as a duplicate. Markers are
//! pruned once the source position past them is committed. Reads are validated at commit
//! (the version each key had when read), so two writers of one key, in one process or in
//! several, never lose an update: the later one is handled again on the new value. ADR 14
//! gives the order of handle, state commit, publish and offset commit.
//!
//! # Layout
//! - this module: what every backend shares, and the [`StateBackend`] trait.
//! - [`txn`]: one event's transaction (its own writes visible, its reads recorded).
//! - [`memory`]: in this process only (tests, throwaway runs).
//! - [`local`]: on disk, in a redb database (one process).
//! - [`redis`]: in a Redis server, shared by every process of a consumer group.
//! - [`inputs`]: on the embedded broker, refusing to apply an input file twice.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod inputs;
pub mod local;
pub mod memory;
pub mod redis;
pub mod txn;

use std::collections::BTreeMap;
use std::time::Duration;

pub use memory::MemoryBackend;
pub use txn::{Overlay, Transaction};

/// The longest key the store accepts.
pub const MAX_KEY_BYTES: usize = 1024;
/// The largest value the store accepts.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Why a state operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Key or value over the limits, or the namespace's quota reached.
    #[error("{0}")]
    TooLarge(String),
    /// The backend could not be reached.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// How much one namespace may hold (`max_state_keys`, `max_state_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Live keys.
    pub max_keys: u64,
    /// Bytes of keys and values together.
    pub max_bytes: u64,
}

impl Quota {
    /// No limit beyond the per-key and per-value ones (tests and tools).
    pub const UNLIMITED: Quota = Quota {
        max_keys: u64::MAX,
        max_bytes: u64::MAX,
    };

    /// Whether a namespace holding `usage` is within the quota; if not, which limit it
    /// passes, in words naming the setting.
    pub fn check(&self, ns: &str, usage: Usage) -> Result<(), StateError> {
        if usage.keys.max(0) as u64 > self.max_keys {
            return Err(StateError::TooLarge(format!(
                "state quota reached: namespace `{ns}` holds its limit of {} keys (limits.max_state_keys)",
                self.max_keys
            )));
        }
        if usage.bytes.max(0) as u64 > self.max_bytes {
            return Err(StateError::TooLarge(format!(
                "state quota reached: namespace `{ns}` would hold more than {} of keys and values (limits.max_state_bytes)",
                crate::config::units::ByteSize(self.max_bytes)
            )));
        }
        Ok(())
    }
}

/// What a namespace holds (or how much a write changes it): keys and bytes of keys and
/// values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live keys.
    pub keys: i64,
    /// Bytes of keys and values.
    pub bytes: i64,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, other: Usage) -> Usage {
        Usage {
            keys: self.keys + other.keys,
            bytes: self.bytes + other.bytes,
        }
    }
}

impl Usage {
    /// What replacing `before` (a value's length, if the key is there) with `after` changes.
    pub fn change(key: &str, before: Option<usize>, after: Option<usize>) -> Usage {
        let size = |len: Option<usize>| len.map_or(0, |len| (key.len() + len) as i64);
        Usage {
            keys: i64::from(after.is_some()) - i64::from(before.is_some()),
            bytes: size(after) - size(before),
        }
    }
}

/// A committed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The value.
    pub value: Vec<u8>,
    /// Changes every time the key is written ([`fresh_version`]), so a commit can tell
    /// that a key it read was written since.
    pub version: u64,
}

/// What an event writes to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Sets the value, expiring after `ttl` (counted from the commit) if given.
    Put {
        /// The new value.
        value: Vec<u8>,
        /// How long it lives.
        ttl: Option<Duration>,
        /// The entry's version once committed ([`fresh_version`]).
        version: u64,
    },
    /// Removes the key.
    Delete,
}

impl Write {
    /// The value a reader sees after this write.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Write::Put { value, .. } => Some(value),
            Write::Delete => None,
        }
    }
}

/// Which event of which route: the identity of the record that it was applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Marker {
    /// The route that handled it.
    pub route: String,
    /// Where it was read from.
    pub partition: u32,
    /// Its offset there.
    pub offset: u64,
}

/// That a route finished an event, remembered until `until` so that a duplicate of it (the
/// same `source` and `id`, published again by a producer or a replay) is skipped: a route's
/// `dedupe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The route that finished it.
    pub route: String,
    /// The event's identity: [`dedupe_key`] of its source and id.
    pub key: String,
    /// Milliseconds since the Unix epoch when it is forgotten.
    pub until: i64,
}

/// The identity of an event for dedupe: its `source` and `id` (which CloudEvents makes
/// unique together), unambiguous whatever either holds.
pub fn dedupe_key(source: &str, id: &str) -> String {
    format!("{}:{source}{id}", source.len())
}

/// One event's effect on its plugin's namespace, committed all or nothing.
#[derive(Debug, Clone, Default)]
pub struct EventCommit {
    /// The record that the event was applied (events that wrote nothing need none, unless
    /// their route dedupes).
    pub marker: Option<Marker>,
    /// That its route finished it, for the route's dedupe window.
    pub finished: Option<Finished>,
    /// Every key read from the store, with the version seen (0: absent).
    pub reads: Vec<(String, u64)>,
    /// The writes, one per key.
    pub writes: Vec<(String, Write)>,
    /// What the event emitted, encoded; kept with the marker so that a delivery of an event
    /// already applied can publish it again without handling it.
    pub outbox: Vec<u8>,
}

/// Why a group commit stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A key the event read was written since: handle it again.
    Conflict(String),
    /// The event's marker is there already (another process, or an earlier run, applied it
    /// first): its writes are dropped; here is what it emitted when it was applied.
    AlreadyApplied(Vec<u8>),
    /// Applying the event would take the namespace past its quota.
    OverQuota(String),
    /// Its route finished an event of the same source and id within its dedupe window
    /// (another worker or process, since this one looked): its writes are dropped and it
    /// is skipped as a duplicate.
    Duplicate,
}

/// How a group commit went: the first `applied` events are committed; the one after them
/// (if any) stopped the group, and the rest were not looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Events committed, from the start of the group.
    pub applied: usize,
    /// Why the group stopped early.
    pub stop: Option<Stop>,
}

/// Where plugin state lives. Reads are async so that a backend waiting on the network parks
/// the guest's call (which its time limit then still bounds); the rest is called by route
/// workers and pollers outside guest calls.
#[async_trait::async_trait]
pub trait StateBackend: Send + Sync {
    /// Where the state is, for logs and errors (`local state in /path`, `redis://...`).
    fn describe(&self) -> String;
    /// Whether the state outlives the process.
    fn durable(&self) -> bool;
    /// The live entry of `key` in `ns`.
    async fn read(&self, ns: &str, key: &str) -> Result<Option<Stored>, StateError>;
    /// What `ns` holds, expired entries not counted.
    async fn usage(&self, ns: &str) -> Result<Usage, StateError>;
    /// Commits `group` in order, each event all or nothing (see [`Committed`]).
    fn commit(
        &self,
        ns: &str,
        quota: Quota,
        group: &[EventCommit],
    ) -> Result<Committed, StateError>;
    /// The events of `route`'s `partition` recorded as applied and not pruned yet, with what
    /// each emitted.
    fn applied(&self, route: &str, partition: u32) -> Result<BTreeMap<u64, Vec<u8>>, StateError>;
    /// Forgets the markers of `route`'s `partition` below `next` (its committed position).
    fn prune(&self, route: &str, partition: u32, next: u64) -> Result<(), StateError>;
    /// Which of `keys` ([`dedupe_key`]) `route` finished and still remembers.
    fn finished(&self, route: &str, keys: &[String]) -> Result<Vec<bool>, StateError>;
    /// Forgets every marker of `route` (on the embedded broker, whose positions do not
    /// outlive a run).
    fn forget_route(&self, route: &str) -> Result<(), StateError>;
    /// A value of the store's own bookkeeping (not in any namespace).
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Sets a value of the store's own bookkeeping.
    fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StateError>;
}

/// Opens the backend `config` chooses.
pub fn open(
    config: &crate::config::StateConfig,
) -> Result<std::sync::Arc<dyn StateBackend>, String> {
    use crate::config::StateBackendKind;
    Ok(match config.backend.get_ref() {
        StateBackendKind::Memory => MemoryBackend::shared(),
        StateBackendKind::Local => {
            std::sync::Arc::new(local::LocalBackend::open(&config.local_path)?)
        }
        StateBackendKind::Redis => {
            let url = config.url.as_ref().map_or("", |u| u.get_ref());
            std::sync::Arc::new(redis::RedisBackend::open(url, config.prefix())?)
        }
    })
}

/// Refuses keys and values over the store's limits.
pub fn check_sizes(key: &str, value: Option<&[u8]>) -> Result<(), StateError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(StateError::TooLarge(format!(
            "key of {} bytes, at most {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    match value {
        Some(v) if v.len() > MAX_VALUE_BYTES => Err(StateError::TooLarge(format!(
            "value of {} bytes, at most {MAX_VALUE_BYTES}",
            v.len()
        ))),
        _ => Ok(()),
    }
}

/// A version for an entry about to be written: a 64-bit number drawn from a sequence that
/// starts at a random point in every process, never 0. The writer knows it without asking
/// the store, so a worker can remember what it committed; two writes (in any processes)
/// share one with a chance of about one in 2^64.
pub fn fresh_version() -> u64 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        nanos ^ (u64::from(std::process::id()) << 32) ^ (&local as *const u8 as u64)
    });
    // splitmix64 of the process's sequence: a bijection, so no repeat within a process.
    let mut z = seed.wrapping_add(
        NEXT.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

/// Milliseconds since the Unix epoch when an entry written now with `ttl` expires. Wall
/// clock, so that expiry holds across restarts.
pub fn expiry(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|ttl| crate::event::now_millis().saturating_add(ttl.as_millis() as i64))
}
