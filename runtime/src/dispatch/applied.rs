//! Which deliveries of a route were applied to state already, and what they emitted: the
//! markers of the state store, read once per partition when the route first sees it (after
//! a start, a restart or an assignment) and forgotten when the partition is revoked.
//!
//! Markers written while the route runs are not added here: the route will not be delivered
//! those events again while it holds the partition. A marker written by another process in
//! the meantime is caught by the commit itself ([`crate::state::Stop::AlreadyApplied`]).

use crate::state::{StateBackend, StateError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The markers of one partition: offset → what the event emitted.
type Markers = Arc<BTreeMap<u64, Vec<u8>>>;

/// The markers of one route, by partition.
pub struct AppliedIndex {
    route: String,
    store: Arc<dyn StateBackend>,
    partitions: Mutex<HashMap<u32, Markers>>,
    /// Whether the route may have markers to prune (set once it has written or found one).
    has_markers: AtomicBool,
}

impl AppliedIndex {
    /// The index of `route`'s markers in `store`.
    pub fn new(route: &str, store: Arc<dyn StateBackend>) -> Self {
        AppliedIndex {
            route: route.to_owned(),
            has_markers: AtomicBool::new(store.durable()),
            store,
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// What the event at `offset` of `partition` emitted when it was applied, if it was.
    pub fn lookup(&self, partition: u32, offset: u64) -> Result<Option<Vec<u8>>, StateError> {
        let loaded = self
            .partitions
            .lock()
            .expect("applied lock")
            .get(&partition)
            .cloned();
        let markers = match loaded {
            Some(markers) => markers,
            None => {
                let markers = Arc::new(self.store.applied(&self.route, partition)?);
                if !markers.is_empty() {
                    tracing::info!(route = %self.route, partition, applied = markers.len(), "found events applied to state and not committed at the source; they will not be applied again");
                    self.has_markers.store(true, Ordering::Relaxed);
                }
                self.partitions
                    .lock()
                    .expect("applied lock")
                    .insert(partition, markers.clone());
                markers
            }
        };
        Ok(markers.get(&offset).cloned())
    }

    /// Says that the route has written markers.
    pub fn wrote_markers(&self) {
        self.has_markers.store(true, Ordering::Relaxed);
    }

    /// Forgets revoked partitions (their markers are read again if they come back).
    pub fn forget(&self, partitions: &[u32]) {
        let mut loaded = self.partitions.lock().expect("applied lock");
        for partition in partitions {
            loaded.remove(partition);
        }
    }

    /// Prunes the markers below positions the broker confirmed as committed
    /// (`(partition, next offset)`). A failure only leaves markers for a later prune.
    pub fn prune(&self, positions: &[(u32, u64)]) {
        if !self.has_markers.load(Ordering::Relaxed) {
            return;
        }
        for &(partition, next) in positions {
            if let Err(error) = self.store.prune(&self.route, partition, next) {
                tracing::debug!(route = %self.route, partition, %error, "pruning markers failed; the next commit prunes them");
            }
        }
    }
}
