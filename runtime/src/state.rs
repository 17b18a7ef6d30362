//! The key-value store behind the `state` import: one namespace per plugin, shared by all of
//! the plugin's instances, with per-entry expiry and a quota per namespace.
//!
//! The store is in memory; it lives as long as the process. The interface is async so that
//! a backend waiting on I/O parks the guest's call instead of blocking its thread, and the
//! call's deadline still holds (see [`crate::host::deadline`]).
//!
//! Quotas bound what a plugin can make the host hold: a write that would take a namespace
//! past its keys or bytes fails with [`StateError::TooLarge`] (the WIT's `too-large`, whose
//! message names the limit), after entries that have expired are purged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

/// A key-value store with namespaces. Every method is atomic.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// The live value of `key`.
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Sets `key`, expiring after `ttl` if given, within `quota`.
    async fn set(
        &self,
        ns: &str,
        quota: Quota,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), StateError>;
    /// Deletes `key`; whether a live entry was there.
    async fn delete(&self, ns: &str, key: &str) -> Result<bool, StateError>;
    /// Replaces the value of `key` with `new` (`None` deletes) if it currently equals
    /// `expected` (`None`: absent), within `quota`; whether it did.
    async fn compare_and_swap(
        &self,
        ns: &str,
        quota: Quota,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError>;
}

struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// One namespace and what it holds, counted as the quota counts it.
#[derive(Default)]
struct Namespace {
    entries: HashMap<String, Entry>,
    /// Bytes of keys and values, expired entries included until purged.
    bytes: u64,
    /// No entry expires before this (so a full namespace is not scanned on every write).
    earliest_expiry: Option<Instant>,
}

impl Namespace {
    fn live(&self, key: &str, now: Instant) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.live(now))
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.bytes -= (key.len() + entry.value.len()) as u64;
        Some(entry)
    }

    /// Drops expired entries if any can have expired by `now`.
    fn purge_expired(&mut self, now: Instant) {
        if self.earliest_expiry.is_none_or(|at| at > now) {
            return;
        }
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
        self.earliest_expiry = self.entries.values().filter_map(|e| e.expires).min();
    }

    /// Stores `value` under `key` if the namespace stays within `quota`.
    fn insert(
        &mut self,
        ns: &str,
        quota: Quota,
        key: &str,
        value: Vec<u8>,
        expires: Option<Instant>,
        now: Instant,
    ) -> Result<(), StateError> {
        let new_bytes = (key.len() + value.len()) as u64;
        let fits = |ns: &Namespace| {
            let old = ns.entries.get(key);
            let keys = ns.entries.len() as u64 + u64::from(old.is_none());
            let bytes =
                ns.bytes - old.map_or(0, |e| (key.len() + e.value.len()) as u64) + new_bytes;
            (keys <= quota.max_keys, bytes <= quota.max_bytes)
        };
        if fits(self) != (true, true) {
            self.purge_expired(now);
        }
        match fits(self) {
            (false, _) => {
                return Err(StateError::TooLarge(format!(
                    "state quota reached: namespace `{ns}` holds its limit of {} keys (limits.max_state_keys)",
                    quota.max_keys
                )));
            }
            (_, false) => {
                return Err(StateError::TooLarge(format!(
                    "state quota reached: namespace `{ns}` would hold more than {} of keys and values (limits.max_state_bytes)",
                    crate::config::units::ByteSize(quota.max_bytes)
                )));
            }
            (true, true) => {}
        }
        self.remove(key);
        self.bytes += new_bytes;
        if let Some(at) = expires {
            self.earliest_expiry = Some(self.earliest_expiry.map_or(at, |e| e.min(at)));
        }
        self.entries
            .insert(key.to_owned(), Entry { value, expires });
        Ok(())
    }
}

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStateStore {
    namespaces: Mutex<HashMap<String, Namespace>>,
}

impl MemoryStateStore {
    /// An empty store, ready to share.
    pub fn shared() -> Arc<dyn StateStore> {
        Arc::new(MemoryStateStore::default())
    }

    fn with<T>(&self, ns: &str, f: impl FnOnce(&mut Namespace) -> T) -> T {
        let mut namespaces = self.namespaces.lock().expect("state lock");
        if let Some(namespace) = namespaces.get_mut(ns) {
            return f(namespace);
        }
        f(namespaces.entry(ns.to_owned()).or_default())
    }
}

fn check_sizes(key: &str, value: Option<&[u8]>) -> Result<(), StateError> {
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

#[async_trait::async_trait]
impl StateStore for MemoryStateStore {
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let now = Instant::now();
        Ok(self.with(ns, |ns| ns.live(key, now).map(|e| e.value.clone())))
    }

    async fn set(
        &self,
        ns: &str,
        quota: Quota,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        check_sizes(key, Some(&value))?;
        let now = Instant::now();
        let expires = ttl.map(|ttl| now + ttl);
        self.with(ns, |namespace| {
            namespace.insert(ns, quota, key, value, expires, now)
        })
    }

    async fn delete(&self, ns: &str, key: &str) -> Result<bool, StateError> {
        let now = Instant::now();
        Ok(self.with(ns, |ns| ns.remove(key).is_some_and(|e| e.live(now))))
    }

    async fn compare_and_swap(
        &self,
        ns: &str,
        quota: Quota,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        check_sizes(key, new.as_deref())?;
        let now = Instant::now();
        self.with(ns, |namespace| {
            let current = namespace.live(key, now).map(|e| e.value.as_slice());
            if current != expected {
                return Ok(false);
            }
            match new {
                Some(value) => {
                    let expires = ttl.map(|ttl| now + ttl);
                    namespace.insert(ns, quota, key, value, expires, now)?;
                }
                None => {
                    namespace.remove(key);
                }
            }
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    const ANY: Quota = Quota::UNLIMITED;

    #[test]
    fn namespaces_are_separate() {
        let store = MemoryStateStore::default();
        block_on(store.set("a", ANY, "k", b"1".to_vec(), None)).unwrap();
        assert_eq!(block_on(store.get("a", "k")).unwrap(), Some(b"1".to_vec()));
        assert_eq!(block_on(store.get("b", "k")).unwrap(), None);
    }

    #[test]
    fn compare_and_swap_checks_the_current_value() {
        let store = MemoryStateStore::default();
        let cas = |expected: Option<&[u8]>, new: Option<&[u8]>| {
            block_on(store.compare_and_swap("n", ANY, "k", expected, new.map(<[u8]>::to_vec), None))
                .unwrap()
        };
        assert!(cas(None, Some(b"1")));
        assert!(!cas(None, Some(b"2")));
        assert!(cas(Some(b"1"), Some(b"2")));
        assert!(cas(Some(b"2"), None));
        assert_eq!(block_on(store.get("n", "k")).unwrap(), None);
    }

    #[test]
    fn entries_expire() {
        let store = MemoryStateStore::default();
        block_on(store.set(
            "n",
            ANY,
            "k",
            b"v".to_vec(),
            Some(Duration::from_millis(20)),
        ))
        .unwrap();
        assert!(block_on(store.get("n", "k")).unwrap().is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(block_on(store.get("n", "k")).unwrap(), None);
        assert!(!block_on(store.delete("n", "k")).unwrap());
    }

    #[test]
    fn refuses_oversized_values() {
        let store = MemoryStateStore::default();
        let big = vec![0; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            block_on(store.set("n", ANY, "k", big, None)),
            Err(StateError::TooLarge(_))
        ));
    }

    #[test]
    fn a_namespace_cannot_grow_past_its_quota_of_keys_or_bytes() {
        let store = MemoryStateStore::default();
        let quota = Quota {
            max_keys: 3,
            max_bytes: 100,
        };
        for key in ["a", "b", "c"] {
            block_on(store.set("n", quota, key, vec![0; 10], None)).unwrap();
        }
        let refused = block_on(store.set("n", quota, "d", vec![0; 10], None)).unwrap_err();
        assert!(refused.to_string().contains("max_state_keys"), "{refused}");
        // Replacing a key adds no key; growing a value counts its bytes.
        block_on(store.set("n", quota, "a", vec![0; 60], None)).unwrap();
        let refused = block_on(store.set("n", quota, "b", vec![0; 60], None)).unwrap_err();
        assert!(refused.to_string().contains("max_state_bytes"), "{refused}");
        assert!(
            block_on(store.compare_and_swap("n", quota, "d", None, Some(vec![1]), None)).is_err(),
            "compare-and-swap is held to the quota too"
        );
        // Deleting frees room; another namespace has its own quota.
        assert!(block_on(store.delete("n", "a")).unwrap());
        block_on(store.set("n", quota, "d", vec![0; 10], None)).unwrap();
        block_on(store.set("other", quota, "x", vec![0; 90], None)).unwrap();
    }

    #[test]
    fn expired_entries_make_room_when_the_quota_is_reached() {
        let store = MemoryStateStore::default();
        let quota = Quota {
            max_keys: 2,
            max_bytes: 1000,
        };
        let short = Some(Duration::from_millis(20));
        block_on(store.set("n", quota, "a", b"1".to_vec(), short)).unwrap();
        block_on(store.set("n", quota, "b", b"1".to_vec(), short)).unwrap();
        assert!(block_on(store.set("n", quota, "c", b"1".to_vec(), None)).is_err());
        std::thread::sleep(Duration::from_millis(40));
        block_on(store.set("n", quota, "c", b"1".to_vec(), None)).unwrap();
        block_on(store.set("n", quota, "d", b"1".to_vec(), None)).unwrap();
    }
}
