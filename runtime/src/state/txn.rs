//! One event's state transaction: what the plugin's `state` calls see and do while one
//! event is handled.
//!
//! Reads see, in order: the event's own writes, the writes of the earlier events of the
//! worker's group that are not committed yet, what the worker last committed or read of a
//! key (both in the [`Overlay`], lent to the transaction for the call), and the store.
//! Every key read from the store or the worker's memory of it is recorded with the version
//! seen, so the commit can refuse the event if the key was written since (and the worker
//! then forgets what it remembered of it). Writes are only buffered, each with the version
//! it will have ([`super::fresh_version`]); they reach the store when the worker commits the
//! event ([`Transaction::into_commit`]), or never (a failed event).
//!
//! Quotas are checked at each write against the store's usage plus what the group and the
//! event change, so a plugin hears `too-large` at the call; the commit checks them again
//! exactly.

use super::{
    EventCommit, Finished, Marker, Quota, StateBackend, StateError, Stored, Usage, Write,
    check_sizes, fresh_version,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The most keys, and bytes of keys and values, a worker remembers of the store; past
/// either, it forgets them all and starts again.
const MAX_KNOWN_KEYS: usize = 16_384;
const MAX_KNOWN_BYTES: usize = 16 << 20;

/// What a worker knows beyond the store: the writes of its events that are handled and not
/// committed yet, and the value and version of keys it last committed or read (so that a
/// key the worker owns is not read from the store for every event; the commit's check of
/// versions catches a value changed meanwhile by anyone else).
#[derive(Debug, Default)]
pub struct Overlay {
    writes: HashMap<String, Write>,
    /// What these writes change in the namespace.
    change: Usage,
    /// Committed entries as last seen: version (0: absent) and value.
    known: HashMap<String, (u64, Option<Vec<u8>>)>,
    /// Bytes of keys and values in `known`.
    known_bytes: usize,
}

impl Overlay {
    /// Whether no write is waiting.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Drops the uncommitted writes (committed or to be handled again); keeps what is known.
    pub fn clear_writes(&mut self) {
        self.writes.clear();
        self.change = Usage::default();
    }

    /// Learns the committed writes of `events` (entries that expire are not remembered).
    pub fn learn(&mut self, events: &[EventCommit]) {
        for (key, write) in events.iter().flat_map(|e| &e.writes) {
            match write {
                Write::Put {
                    value,
                    ttl: None,
                    version,
                } => self.know(key, *version, Some(value.clone())),
                Write::Put { .. } => self.forget(key),
                Write::Delete => self.know(key, 0, None),
            }
        }
    }

    /// Forgets what it knew of `key` (written by someone else since).
    pub fn forget(&mut self, key: &str) {
        if let Some((_, value)) = self.known.remove(key) {
            self.known_bytes -= key.len() + value.map_or(0, |v| v.len());
        }
    }

    /// Forgets everything it knew of the store.
    pub fn forget_all(&mut self) {
        self.known.clear();
        self.known_bytes = 0;
    }

    fn know(&mut self, key: &str, version: u64, value: Option<Vec<u8>>) {
        self.forget(key);
        let size = key.len() + value.as_ref().map_or(0, Vec::len);
        if self.known.len() >= MAX_KNOWN_KEYS || self.known_bytes + size > MAX_KNOWN_BYTES {
            self.forget_all();
        }
        self.known_bytes += size;
        self.known.insert(key.to_owned(), (version, value));
    }

    /// Adds the writes of an event handled after those already here.
    fn absorb(&mut self, writes: &BTreeMap<String, Write>, change: Usage) {
        for (key, write) in writes {
            self.writes.insert(key.clone(), write.clone());
        }
        self.change = self.change + change;
    }
}

/// The state seen and changed by the event being handled.
#[derive(Debug, Default)]
pub struct Transaction {
    /// Writes of earlier events of the group, lent for the call.
    overlay: Overlay,
    /// Keys read from the store: the event sees one value per key, the one its commit
    /// validates.
    reads: HashMap<String, Read>,
    /// This event's writes, the last one per key.
    writes: BTreeMap<String, Write>,
    /// What this event's writes change in the namespace.
    change: Usage,
    /// The store's usage, read once per transaction.
    usage: Option<Usage>,
    /// Why the store could not be reached, if a call found it so.
    unavailable: Option<String>,
    /// Whether writes are allowed (not during `init`, which handles no event).
    writable: bool,
}

/// Where a transaction's calls go: the plugin's namespace in a backend, under its quota.
pub struct Namespace<'a> {
    /// The backend.
    pub store: &'a dyn StateBackend,
    /// The plugin's name.
    pub name: &'a str,
    /// Its quota.
    pub quota: Quota,
}

/// A key as read from the store by one event.
#[derive(Debug)]
struct Read {
    /// Its version then (0: absent).
    version: u64,
    value: Option<Vec<u8>>,
    /// Whether the plugin saw the value (not only the host, sizing a write), so the commit
    /// must check it is still current.
    validate: bool,
}

/// The versions of the keys the plugin read, for the commit to check.
fn versions(reads: HashMap<String, Read>) -> Vec<(String, u64)> {
    reads
        .into_iter()
        .filter(|(_, read)| read.validate)
        .map(|(key, read)| (key, read.version))
        .collect()
}

impl Transaction {
    /// A transaction for one event, over the worker's uncommitted `overlay`.
    pub fn begin(overlay: Overlay) -> Self {
        Transaction {
            overlay,
            writable: true,
            ..Transaction::default()
        }
    }

    /// A transaction that only reads (a plugin's `init`).
    pub fn read_only() -> Self {
        Transaction::default()
    }

    /// Why the store could not be reached during the call, if it could not.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Whether the event neither read nor wrote state.
    pub fn is_untouched(&self) -> bool {
        self.writes.is_empty() && !self.reads.values().any(|r| r.validate)
    }

    /// Keys read and keys written (or deleted) so far.
    pub fn operations(&self) -> (usize, usize) {
        (self.reads.len(), self.writes.len())
    }

    /// Whether the event wrote state.
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Ends the transaction of an event handled again (a retry): its writes are dropped, the
    /// overlay goes back.
    pub fn abort(self) -> Overlay {
        self.overlay
    }

    /// Ends the transaction of a failed event: its writes are dropped, and what it read is
    /// returned for the commit to check (the failure may rest on a value read).
    pub fn into_reads(self) -> (Overlay, EventCommit) {
        let commit = EventCommit {
            reads: versions(self.reads),
            ..EventCommit::default()
        };
        (self.overlay, commit)
    }

    /// Ends the transaction of a handled event: its writes join the overlay (so the events
    /// after it see them) and its commit is returned, to be made with the group. The marker
    /// goes with an event that wrote, or that its route records as `finished` (so that a
    /// delivery again after a crash publishes what it emitted rather than skip it).
    pub fn into_commit(
        mut self,
        marker: Marker,
        outbox: Vec<u8>,
        finished: Option<Finished>,
    ) -> (Overlay, EventCommit) {
        self.overlay.absorb(&self.writes, self.change);
        let marker = (!self.writes.is_empty() || finished.is_some()).then_some(marker);
        let commit = EventCommit {
            marker,
            finished,
            reads: versions(self.reads),
            writes: self.writes.into_iter().collect(),
            outbox,
        };
        (self.overlay, commit)
    }

    /// The value of `key` as this event sees it.
    pub async fn get(
        &mut self,
        ns: &Namespace<'_>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.current(ns, key, true).await?.map(|v| v.to_vec()))
    }

    /// Sets `key` to `value`, expiring after `ttl`.
    pub async fn set(
        &mut self,
        ns: &Namespace<'_>,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        check_sizes(key, Some(&value))?;
        let version = fresh_version();
        self.write(
            ns,
            key,
            Write::Put {
                value,
                ttl,
                version,
            },
        )
        .await
    }

    /// Removes `key`; whether it was there.
    pub async fn delete(&mut self, ns: &Namespace<'_>, key: &str) -> Result<bool, StateError> {
        let present = self.current(ns, key, true).await?.is_some();
        if present {
            self.write(ns, key, Write::Delete).await?;
        }
        Ok(present)
    }

    /// Writes `new` (`None` deletes) if `key` holds `expected` (`None`: absent); whether it
    /// did. The value compared is recorded as read, so a concurrent change makes the commit
    /// handle the event again rather than lose either update.
    pub async fn compare_and_swap(
        &mut self,
        ns: &Namespace<'_>,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        check_sizes(key, new.as_deref())?;
        if self.current(ns, key, true).await?.as_deref() != expected {
            return Ok(false);
        }
        let write = match new {
            Some(value) => Write::Put {
                value,
                ttl,
                version: fresh_version(),
            },
            None => Write::Delete,
        };
        self.write(ns, key, write).await?;
        Ok(true)
    }

    /// Buffers `write`, if the namespace stays within its quota.
    async fn write(
        &mut self,
        ns: &Namespace<'_>,
        key: &str,
        write: Write,
    ) -> Result<(), StateError> {
        if !self.writable {
            return Err(StateError::Unavailable(
                "state is written while handling an event, not during init".into(),
            ));
        }
        let before = self.current(ns, key, false).await?.map(|v| v.len());
        let change = Usage::change(key, before, write.value().map(<[u8]>::len));
        // Only a write that grows the namespace can pass its quota: the others need not ask
        // the store how much it holds.
        if change.keys > 0 || change.bytes > 0 {
            let usage = match self.usage {
                Some(usage) => usage,
                None => {
                    let usage = ns.store.usage(ns.name).await.map_err(|e| self.note(e))?;
                    *self.usage.insert(usage)
                }
            };
            ns.quota
                .check(ns.name, usage + self.overlay.change + self.change + change)?;
        }
        self.change = self.change + change;
        self.writes.insert(key.to_owned(), write);
        Ok(())
    }

    /// The value of `key` seen from this event; `record` says whether a read from the store
    /// is one the commit must validate (not a look at the size a write replaces).
    async fn current(
        &mut self,
        ns: &Namespace<'_>,
        key: &str,
        record: bool,
    ) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(write) = self
            .writes
            .get(key)
            .or_else(|| self.overlay.writes.get(key))
        {
            return Ok(write.value().map(<[u8]>::to_vec));
        }
        if let Some(read) = self.reads.get_mut(key) {
            read.validate |= record;
            return Ok(read.value.clone());
        }
        if let Some((version, value)) = self.overlay.known.get(key) {
            let read = Read {
                version: *version,
                value: value.clone(),
                validate: record,
            };
            self.reads.insert(key.to_owned(), read);
            return Ok(value.clone());
        }
        let stored = ns
            .store
            .read(ns.name, key)
            .await
            .map_err(|e| self.note(e))?;
        let (version, value) = match stored {
            Some(Stored { value, version }) => (version, Some(value)),
            None => (0, None),
        };
        let read = Read {
            version,
            value: value.clone(),
            validate: record,
        };
        self.reads.insert(key.to_owned(), read);
        self.overlay.know(key, version, value.clone());
        Ok(value)
    }

    /// Remembers that the store was unreachable (the worker then retries the event however
    /// the plugin took the error).
    fn note(&mut self, error: StateError) -> StateError {
        if let StateError::Unavailable(reason) = &error {
            self.unavailable.get_or_insert_with(|| reason.clone());
        }
        error
    }
}
