//! The key-value store behind the `state` import: one namespace per plugin, shared by all of
//! the plugin's instances, with per-entry expiry.
//!
//! The store is in memory; it lives as long as the process. The trait leaves room for
//! durable backends without touching the host imports.

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
    /// Key or value over the limits.
    #[error("{0}")]
    TooLarge(String),
    /// The backend could not be reached.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// A key-value store with namespaces. Every method is atomic.
pub trait StateStore: Send + Sync {
    /// The live value of `key`.
    fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Sets `key`, expiring after `ttl` if given.
    fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), StateError>;
    /// Deletes `key`; whether a live entry was there.
    fn delete(&self, ns: &str, key: &str) -> Result<bool, StateError>;
    /// Replaces the value of `key` with `new` (`None` deletes) if it currently equals
    /// `expected` (`None`: absent); whether it did.
    fn compare_and_swap(
        &self,
        ns: &str,
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

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStateStore {
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl MemoryStateStore {
    /// An empty store, ready to share.
    pub fn shared() -> Arc<dyn StateStore> {
        Arc::new(MemoryStateStore::default())
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

impl StateStore for MemoryStateStore {
    fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let entries = self.entries.lock().expect("state lock");
        let now = Instant::now();
        Ok(entries
            .get(&(ns.to_owned(), key.to_owned()))
            .filter(|e| e.live(now))
            .map(|e| e.value.clone()))
    }

    fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        check_sizes(key, Some(&value))?;
        let expires = ttl.map(|ttl| Instant::now() + ttl);
        let mut entries = self.entries.lock().expect("state lock");
        entries.insert((ns.to_owned(), key.to_owned()), Entry { value, expires });
        Ok(())
    }

    fn delete(&self, ns: &str, key: &str) -> Result<bool, StateError> {
        let mut entries = self.entries.lock().expect("state lock");
        let now = Instant::now();
        Ok(entries
            .remove(&(ns.to_owned(), key.to_owned()))
            .is_some_and(|e| e.live(now)))
    }

    fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        check_sizes(key, new.as_deref())?;
        let id = (ns.to_owned(), key.to_owned());
        let mut entries = self.entries.lock().expect("state lock");
        let now = Instant::now();
        let current = entries
            .get(&id)
            .filter(|e| e.live(now))
            .map(|e| e.value.as_slice());
        if current != expected {
            return Ok(false);
        }
        match new {
            Some(value) => {
                let expires = ttl.map(|ttl| now + ttl);
                entries.insert(id, Entry { value, expires });
            }
            None => {
                entries.remove(&id);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_separate() {
        let store = MemoryStateStore::default();
        store.set("a", "k", b"1".to_vec(), None).unwrap();
        assert_eq!(store.get("a", "k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get("b", "k").unwrap(), None);
    }

    #[test]
    fn compare_and_swap_checks_the_current_value() {
        let store = MemoryStateStore::default();
        assert!(
            store
                .compare_and_swap("n", "k", None, Some(b"1".to_vec()), None)
                .unwrap()
        );
        assert!(
            !store
                .compare_and_swap("n", "k", None, Some(b"2".to_vec()), None)
                .unwrap()
        );
        assert!(
            store
                .compare_and_swap("n", "k", Some(b"1"), Some(b"2".to_vec()), None)
                .unwrap()
        );
        assert!(
            store
                .compare_and_swap("n", "k", Some(b"2"), None, None)
                .unwrap()
        );
        assert_eq!(store.get("n", "k").unwrap(), None);
    }

    #[test]
    fn entries_expire() {
        let store = MemoryStateStore::default();
        store
            .set("n", "k", b"v".to_vec(), Some(Duration::from_millis(20)))
            .unwrap();
        assert!(store.get("n", "k").unwrap().is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(store.get("n", "k").unwrap(), None);
        assert!(!store.delete("n", "k").unwrap());
    }

    #[test]
    fn refuses_oversized_values() {
        let store = MemoryStateStore::default();
        let big = vec![0; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            store.set("n", "k", big, None),
            Err(StateError::TooLarge(_))
        ));
    }
}
