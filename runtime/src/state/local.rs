//! The local backend: state on disk in one redb database file (ADR 14), for one process.
//!
//! Every group commit is one redb write transaction, durable when it returns (redb's
//! default: its pages are synced before the commit record that makes them current), so a
//! SIGKILL or a power loss leaves the state as of the last group commit, markers included.
//! The file is locked while open: a second process gets a clear error.
//!
//! Tables: entries by `(namespace, key)`, each value stored as its version, its expiry and
//! its bytes; an expiry index by `(time, namespace, key)` that every commit sweeps; each
//! namespace's usage (for the quota); the markers by `(route, partition, offset)` with what
//! each event emitted; and the store's own bookkeeping.

use super::{
    Committed, EventCommit, Quota, StateBackend, StateError, Stop, Stored, Usage, Write, expiry,
};
use crate::event::now_millis;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("entries");
const EXPIRY: TableDefinition<(i64, &str, &str), ()> = TableDefinition::new("expiry");
const USAGE: TableDefinition<&str, (i64, i64)> = TableDefinition::new("usage");
const APPLIED: TableDefinition<(&str, u32, u64), &[u8]> = TableDefinition::new("applied");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Events finished by deduping routes: (route, key) → until when.
const FINISHED: TableDefinition<(&str, &str), i64> = TableDefinition::new("finished");
/// The same, by when they are forgotten, for purging.
const FINISHED_EXPIRY: TableDefinition<(i64, &str, &str), ()> =
    TableDefinition::new("finished_expiry");

/// The cache redb keeps of the file's pages.
const CACHE_BYTES: usize = 64 << 20;

/// State in a redb file.
pub struct LocalBackend {
    db: Database,
    path: PathBuf,
}

/// An entry as stored: version, expiry (milliseconds since the epoch, or none) and value.
struct Entry {
    version: u64,
    expires: Option<i64>,
    value: Vec<u8>,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16 + self.value.len());
        bytes.extend_from_slice(&self.version.to_le_bytes());
        bytes.extend_from_slice(&self.expires.unwrap_or(i64::MAX).to_le_bytes());
        bytes.extend_from_slice(&self.value);
        bytes
    }

    fn decode(bytes: &[u8]) -> Entry {
        let word = |at: usize| <[u8; 8]>::try_from(&bytes[at..at + 8]).expect("8 bytes");
        let expires = i64::from_le_bytes(word(8));
        Entry {
            version: u64::from_le_bytes(word(0)),
            expires: (expires != i64::MAX).then_some(expires),
            value: bytes[16..].to_vec(),
        }
    }

    fn live(&self, now: i64) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

type Table<'t, K, V> = redb::Table<'t, K, V>;

impl LocalBackend {
    /// Opens (or creates) the database at `path`, creating its directory.
    pub fn open(path: &Path) -> Result<LocalBackend, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => format!(
                    "local state {} is in use by another process (local state belongs to one process; use [state] backend = \"redis\" to share state between processes)",
                    path.display()
                ),
                other => format!("cannot open local state {}: {other}", path.display()),
            })?;
        let backend = LocalBackend {
            db,
            path: path.to_owned(),
        };
        // Creates the tables, so that readers find them.
        backend
            .write(true, |tables| {
                tables.entries.len()?;
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        Ok(backend)
    }

    fn unavailable(&self, error: impl std::fmt::Display) -> StateError {
        StateError::Unavailable(format!("local state {}: {error}", self.path.display()))
    }

    /// Runs `f` in one write transaction, committed if it succeeds: durably, or (`durable`
    /// false, for idempotent cleanup) made durable by the next durable commit.
    fn write<T>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut Tables<'_>) -> Result<T, redb::Error>,
    ) -> Result<T, StateError> {
        let mut txn = self.db.begin_write().map_err(|e| self.unavailable(e))?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| self.unavailable(e))?;
        }
        let result = (|| {
            let mut tables = Tables {
                entries: txn.open_table(ENTRIES)?,
                expiry: txn.open_table(EXPIRY)?,
                usage: txn.open_table(USAGE)?,
                applied: txn.open_table(APPLIED)?,
                meta: txn.open_table(META)?,
                finished: txn.open_table(FINISHED)?,
                finished_expiry: txn.open_table(FINISHED_EXPIRY)?,
            };
            f(&mut tables)
        })()
        .map_err(|e| self.unavailable(e))?;
        txn.commit().map_err(|e| self.unavailable(e))?;
        Ok(result)
    }

    /// Checks the reads of a group that writes nothing, in one read transaction.
    fn validate(&self, ns: &str, group: &[EventCommit]) -> Result<Committed, redb::Error> {
        let txn = self.db.begin_read()?;
        let entries = txn.open_table(ENTRIES)?;
        let now = now_millis();
        for (index, event) in group.iter().enumerate() {
            for (key, seen) in &event.reads {
                let version = entries
                    .get((ns, key.as_str()))?
                    .map(|v| Entry::decode(v.value()))
                    .filter(|e| e.live(now))
                    .map_or(0, |e| e.version);
                if version != *seen {
                    return Ok(Committed {
                        applied: index,
                        stop: Some(Stop::Conflict(key.clone())),
                    });
                }
            }
        }
        Ok(Committed {
            applied: group.len(),
            stop: None,
        })
    }

    fn read_entry(&self, ns: &str, key: &str) -> Result<Option<Entry>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(ENTRIES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get((ns, key))?.map(|v| Entry::decode(v.value())))
    }
}

struct Tables<'t> {
    entries: Table<'t, (&'static str, &'static str), &'static [u8]>,
    expiry: Table<'t, (i64, &'static str, &'static str), ()>,
    usage: Table<'t, &'static str, (i64, i64)>,
    applied: Table<'t, (&'static str, u32, u64), &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
    finished: Table<'t, (&'static str, &'static str), i64>,
    finished_expiry: Table<'t, (i64, &'static str, &'static str), ()>,
}

impl Tables<'_> {
    fn usage_of(&self, ns: &str) -> Result<Usage, redb::Error> {
        Ok(self.usage.get(ns)?.map_or(Usage::default(), |v| {
            let (keys, bytes) = v.value();
            Usage { keys, bytes }
        }))
    }

    fn add_usage(&mut self, ns: &str, change: Usage) -> Result<(), redb::Error> {
        let usage = self.usage_of(ns)? + change;
        self.usage.insert(ns, (usage.keys, usage.bytes))?;
        Ok(())
    }

    fn live(&self, ns: &str, key: &str, now: i64) -> Result<Option<Entry>, redb::Error> {
        Ok(self
            .entries
            .get((ns, key))?
            .map(|v| Entry::decode(v.value()))
            .filter(|e| e.live(now)))
    }

    /// Removes an entry (live or expired) with its expiry record and its usage.
    fn remove(&mut self, ns: &str, key: &str) -> Result<(), redb::Error> {
        let Some(old) = self
            .entries
            .remove((ns, key))?
            .map(|v| Entry::decode(v.value()))
        else {
            return Ok(());
        };
        if let Some(at) = old.expires {
            self.expiry.remove((at, ns, key))?;
        }
        self.add_usage(ns, Usage::change(key, Some(old.value.len()), None))
    }

    /// Drops every entry that has expired by `now`.
    fn purge_expired(&mut self, now: i64) -> Result<(), redb::Error> {
        let mut expired = Vec::new();
        for item in self.expiry.range(..(now, "", ""))? {
            let (key, _) = item?;
            let (_, ns, key) = key.value();
            expired.push((ns.to_owned(), key.to_owned()));
        }
        for (ns, key) in expired {
            self.remove(&ns, &key)?;
        }
        let mut forgotten = Vec::new();
        for item in self.finished_expiry.range(..(now, "", ""))? {
            let (key, _) = item?;
            let (until, route, key) = key.value();
            forgotten.push((until, route.to_owned(), key.to_owned()));
        }
        for (until, route, key) in forgotten {
            self.finished_expiry
                .remove((until, route.as_str(), key.as_str()))?;
            self.finished.remove((route.as_str(), key.as_str()))?;
        }
        Ok(())
    }

    /// Validates and applies one event, or says why it cannot be.
    fn apply(
        &mut self,
        ns: &str,
        quota: Quota,
        event: &EventCommit,
        now: i64,
    ) -> Result<Result<(), Stop>, redb::Error> {
        if let Some(marker) = &event.marker
            && let Some(outbox) =
                self.applied
                    .get((marker.route.as_str(), marker.partition, marker.offset))?
        {
            return Ok(Err(Stop::AlreadyApplied(outbox.value().to_vec())));
        }
        if let Some(done) = &event.finished
            && self
                .finished
                .get((done.route.as_str(), done.key.as_str()))?
                .is_some_and(|until| until.value() > now)
        {
            return Ok(Err(Stop::Duplicate));
        }
        for (key, seen) in &event.reads {
            if self.live(ns, key, now)?.map_or(0, |e| e.version) != *seen {
                return Ok(Err(Stop::Conflict(key.clone())));
            }
        }
        let before = self.usage_of(ns)?;
        let mut after = before;
        for (key, write) in &event.writes {
            let old = self.live(ns, key, now)?.map(|e| e.value.len());
            after = after + Usage::change(key, old, write.value().map(<[u8]>::len));
        }
        if (after.keys > before.keys || after.bytes > before.bytes)
            && let Err(error) = quota.check(ns, after)
        {
            return Ok(Err(Stop::OverQuota(error.to_string())));
        }
        for (key, write) in &event.writes {
            self.remove(ns, key)?;
            if let Write::Put {
                value,
                ttl,
                version,
            } = write
            {
                let entry = Entry {
                    version: *version,
                    expires: expiry(*ttl),
                    value: value.clone(),
                };
                self.entries
                    .insert((ns, key.as_str()), entry.encode().as_slice())?;
                if let Some(at) = entry.expires {
                    self.expiry.insert((at, ns, key.as_str()), ())?;
                }
                self.add_usage(ns, Usage::change(key, None, Some(value.len())))?;
            }
        }
        if let Some(marker) = &event.marker {
            self.applied.insert(
                (marker.route.as_str(), marker.partition, marker.offset),
                event.outbox.as_slice(),
            )?;
        }
        if let Some(done) = &event.finished {
            let (route, key) = (done.route.as_str(), done.key.as_str());
            if let Some(before) = self.finished.insert((route, key), done.until)? {
                self.finished_expiry.remove((before.value(), route, key))?;
            }
            self.finished_expiry.insert((done.until, route, key), ())?;
        }
        Ok(Ok(()))
    }
}

#[async_trait::async_trait]
impl StateBackend for LocalBackend {
    fn describe(&self) -> String {
        format!("local state in {}", self.path.display())
    }

    fn durable(&self) -> bool {
        true
    }

    async fn read(&self, ns: &str, key: &str) -> Result<Option<Stored>, StateError> {
        let now = now_millis();
        Ok(self
            .read_entry(ns, key)
            .map_err(|e| self.unavailable(e))?
            .filter(|e| e.live(now))
            .map(|e| Stored {
                value: e.value,
                version: e.version,
            }))
    }

    async fn usage(&self, ns: &str) -> Result<Usage, StateError> {
        let now = now_millis();
        let count = || -> Result<Usage, redb::Error> {
            let txn = self.db.begin_read()?;
            let usage = txn.open_table(USAGE)?;
            let mut total = usage.get(ns)?.map_or(Usage::default(), |v| {
                let (keys, bytes) = v.value();
                Usage { keys, bytes }
            });
            // Expired entries not swept yet do not count.
            let expiry = txn.open_table(EXPIRY)?;
            let entries = txn.open_table(ENTRIES)?;
            for item in expiry.range(..(now, "", ""))? {
                let (key, _) = item?;
                let (_, in_ns, key) = key.value();
                if in_ns == ns
                    && let Some(entry) = entries.get((ns, key))?
                {
                    let len = Entry::decode(entry.value()).value.len();
                    total = total + Usage::change(key, Some(len), None);
                }
            }
            Ok(total)
        };
        count().map_err(|e| self.unavailable(e))
    }

    fn commit(
        &self,
        ns: &str,
        quota: Quota,
        group: &[EventCommit],
    ) -> Result<Committed, StateError> {
        if group
            .iter()
            .all(|e| e.writes.is_empty() && e.marker.is_none() && e.finished.is_none())
        {
            // Nothing to write: check the reads without a write transaction (and its sync).
            return self.validate(ns, group).map_err(|e| self.unavailable(e));
        }
        self.write(true, |tables| {
            let now = now_millis();
            tables.purge_expired(now)?;
            let mut committed = Committed {
                applied: 0,
                stop: None,
            };
            for event in group {
                if let Err(stop) = tables.apply(ns, quota, event, now)? {
                    committed.stop = Some(stop);
                    break;
                }
                committed.applied += 1;
            }
            Ok(committed)
        })
    }

    fn applied(&self, route: &str, partition: u32) -> Result<BTreeMap<u64, Vec<u8>>, StateError> {
        let read = || -> Result<BTreeMap<u64, Vec<u8>>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(APPLIED)?;
            let mut markers = BTreeMap::new();
            for item in table.range((route, partition, 0)..=(route, partition, u64::MAX))? {
                let (key, outbox) = item?;
                markers.insert(key.value().2, outbox.value().to_vec());
            }
            Ok(markers)
        };
        read().map_err(|e| self.unavailable(e))
    }

    fn finished(&self, route: &str, keys: &[String]) -> Result<Vec<bool>, StateError> {
        let read = || -> Result<Vec<bool>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = match txn.open_table(FINISHED) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![false; keys.len()]),
                Err(error) => return Err(error.into()),
            };
            let now = now_millis();
            keys.iter()
                .map(|key| {
                    Ok(table
                        .get((route, key.as_str()))?
                        .is_some_and(|until| until.value() > now))
                })
                .collect()
        };
        read().map_err(|e| self.unavailable(e))
    }

    fn prune(&self, route: &str, partition: u32, next: u64) -> Result<(), StateError> {
        // Forgetting markers again after a crash is harmless: no sync of its own.
        self.write(false, |tables| {
            tables
                .applied
                .retain_in((route, partition, 0)..(route, partition, next), |_, _| {
                    false
                })?;
            Ok(())
        })
    }

    fn forget_route(&self, route: &str) -> Result<(), StateError> {
        self.write(true, |tables| {
            tables
                .applied
                .retain_in((route, 0, 0)..=(route, u32::MAX, u64::MAX), |_, _| false)?;
            Ok(())
        })
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let read = || -> Result<Option<Vec<u8>>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(META)?;
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        };
        read().map_err(|e| self.unavailable(e))
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.write(true, |tables| {
            tables.meta.insert(key, value)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::conformance;
    use super::*;

    #[test]
    fn the_local_backend_keeps_the_contract_and_its_state_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state.redb");
        conformance(&LocalBackend::open(&path).unwrap(), true);
        let reopened = LocalBackend::open(&path).unwrap();
        assert_eq!(
            futures::executor::block_on(reopened.read("a", "kept"))
                .unwrap()
                .map(|s| s.value),
            Some(b"1".to_vec()),
            "what was committed is there after reopening"
        );
    }

    #[test]
    fn a_second_opener_is_told_the_file_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let _first = LocalBackend::open(&path).unwrap();
        let error = LocalBackend::open(&path).err().expect("refused");
        assert!(error.contains("in use by another process"), "{error}");
    }
}
