//! The in-memory backend: state that lives as long as the process (tests, throwaway runs,
//! `plexus test`). Expired entries are dropped when a commit or a usage count finds one may
//! have expired.

use super::{
    Committed, EventCommit, Quota, StateBackend, StateError, Stop, Stored, Usage, Write, expiry,
};
use crate::event::now_millis;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

struct Entry {
    value: Vec<u8>,
    version: u64,
    /// Milliseconds since the epoch when it expires.
    expires: Option<i64>,
}

impl Entry {
    fn live(&self, now: i64) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// One namespace and what it holds, counted as the quota counts it.
#[derive(Default)]
struct Namespace {
    entries: HashMap<String, Entry>,
    /// Keys and bytes, expired entries included until purged.
    usage: Usage,
    /// No entry expires before this (so a namespace is not scanned on every commit).
    earliest_expiry: Option<i64>,
}

impl Namespace {
    fn live(&self, key: &str, now: i64) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.live(now))
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.usage = self.usage + Usage::change(key, Some(entry.value.len()), None);
        }
    }

    /// Drops expired entries if any can have expired by `now`.
    fn purge_expired(&mut self, now: i64) {
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

    /// Applies one event's writes, all or none.
    fn apply(&mut self, ns: &str, quota: Quota, event: &EventCommit, now: i64) -> Result<(), Stop> {
        for (key, seen) in &event.reads {
            if self.live(key, now).map_or(0, |e| e.version) != *seen {
                return Err(Stop::Conflict(key.clone()));
            }
        }
        let mut usage = self.usage;
        for (key, write) in &event.writes {
            let before = self.live(key, now).map(|e| e.value.len());
            usage = usage + Usage::change(key, before, write.value().map(<[u8]>::len));
        }
        if usage.keys > self.usage.keys || usage.bytes > self.usage.bytes {
            quota
                .check(ns, usage)
                .map_err(|e| Stop::OverQuota(e.to_string()))?;
        }
        for (key, write) in &event.writes {
            self.remove(key);
            if let Write::Put {
                value,
                ttl,
                version,
            } = write
            {
                let expires = expiry(*ttl);
                if let Some(at) = expires {
                    self.earliest_expiry = Some(self.earliest_expiry.map_or(at, |e| e.min(at)));
                }
                self.usage = self.usage + Usage::change(key, None, Some(value.len()));
                self.entries.insert(
                    key.clone(),
                    Entry {
                        value: value.clone(),
                        version: *version,
                        expires,
                    },
                );
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Inner {
    namespaces: HashMap<String, Namespace>,
    /// Markers: what each route applied, by partition and offset, with what it emitted.
    applied: HashMap<(String, u32), BTreeMap<u64, Vec<u8>>>,
    /// Events finished by deduping routes, `(route, key)`, until when.
    finished: HashMap<(String, String), i64>,
    /// How many finished records there were after the last purge of expired ones.
    finished_after_purge: usize,
    meta: HashMap<String, Vec<u8>>,
}

impl Inner {
    fn is_finished(&self, route: &str, key: &str, now: i64) -> bool {
        self.finished
            .get(&(route.to_owned(), key.to_owned()))
            .is_some_and(|until| *until > now)
    }

    /// Drops expired finished records once there are twice as many as after the last purge
    /// (so a purge's cost is spread over the records added since).
    fn purge_finished(&mut self, now: i64) {
        if self.finished.len() < 2 * self.finished_after_purge.max(512) {
            return;
        }
        self.finished.retain(|_, until| *until > now);
        self.finished_after_purge = self.finished.len();
    }
}

/// The in-memory backend.
#[derive(Default)]
pub struct MemoryBackend {
    inner: Mutex<Inner>,
}

impl MemoryBackend {
    /// An empty store, ready to share.
    pub fn shared() -> Arc<dyn StateBackend> {
        Arc::new(MemoryBackend::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("state lock")
    }
}

#[async_trait::async_trait]
impl StateBackend for MemoryBackend {
    fn describe(&self) -> String {
        "memory state (lost when the process ends)".into()
    }

    fn durable(&self) -> bool {
        false
    }

    async fn read(&self, ns: &str, key: &str) -> Result<Option<Stored>, StateError> {
        let inner = self.lock();
        let now = now_millis();
        Ok(inner
            .namespaces
            .get(ns)
            .and_then(|n| n.live(key, now))
            .map(|e| Stored {
                value: e.value.clone(),
                version: e.version,
            }))
    }

    async fn usage(&self, ns: &str) -> Result<Usage, StateError> {
        let mut inner = self.lock();
        Ok(inner.namespaces.get_mut(ns).map_or(Usage::default(), |n| {
            n.purge_expired(now_millis());
            n.usage
        }))
    }

    fn commit(
        &self,
        ns: &str,
        quota: Quota,
        group: &[EventCommit],
    ) -> Result<Committed, StateError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let now = now_millis();
        inner.purge_finished(now);
        let namespace = inner.namespaces.entry(ns.to_owned()).or_default();
        namespace.purge_expired(now);
        for (index, event) in group.iter().enumerate() {
            if let Some(marker) = &event.marker {
                let markers = inner
                    .applied
                    .entry((marker.route.clone(), marker.partition))
                    .or_default();
                if let Some(outbox) = markers.get(&marker.offset) {
                    return Ok(Committed {
                        applied: index,
                        stop: Some(Stop::AlreadyApplied(outbox.clone())),
                    });
                }
            }
            if let Some(done) = &event.finished
                && inner
                    .finished
                    .get(&(done.route.clone(), done.key.clone()))
                    .is_some_and(|until| *until > now)
            {
                return Ok(Committed {
                    applied: index,
                    stop: Some(Stop::Duplicate),
                });
            }
            if let Err(stop) = namespace.apply(ns, quota, event, now) {
                return Ok(Committed {
                    applied: index,
                    stop: Some(stop),
                });
            }
            if let Some(marker) = &event.marker {
                inner
                    .applied
                    .entry((marker.route.clone(), marker.partition))
                    .or_default()
                    .insert(marker.offset, event.outbox.clone());
            }
            if let Some(done) = &event.finished {
                inner
                    .finished
                    .insert((done.route.clone(), done.key.clone()), done.until);
            }
        }
        Ok(Committed {
            applied: group.len(),
            stop: None,
        })
    }

    fn applied(&self, route: &str, partition: u32) -> Result<BTreeMap<u64, Vec<u8>>, StateError> {
        Ok(self
            .lock()
            .applied
            .get(&(route.to_owned(), partition))
            .cloned()
            .unwrap_or_default())
    }

    fn finished(&self, route: &str, keys: &[String]) -> Result<Vec<bool>, StateError> {
        let inner = self.lock();
        let now = now_millis();
        Ok(keys
            .iter()
            .map(|key| inner.is_finished(route, key, now))
            .collect())
    }

    fn prune(&self, route: &str, partition: u32, next: u64) -> Result<(), StateError> {
        if let Some(markers) = self.lock().applied.get_mut(&(route.to_owned(), partition)) {
            *markers = markers.split_off(&next);
        }
        Ok(())
    }

    fn forget_route(&self, route: &str) -> Result<(), StateError> {
        self.lock().applied.retain(|(r, _), _| r != route);
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.lock().meta.get(key).cloned())
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.lock().meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::conformance;
    use super::*;

    #[test]
    fn the_memory_backend_keeps_the_contract() {
        conformance(&MemoryBackend::default(), true);
    }
}
