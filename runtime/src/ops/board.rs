//! The board: what a running Plexus shows to operators, kept current by the runtime and read
//! by the admin server, the status line and embedders.
//!
//! The runtime posts a new [`View`] whenever its routes or plugins change (start, reload,
//! stop); the counters in a view are the routes' live [`RouteMetrics`], so reading a view
//! always gives current figures without asking the runtime anything. Dead-letter depths are
//! measured apart (they ask the broker) by [`super::sampler`].

use crate::catalog::Catalog;
use crate::dispatch::publish::Publisher;
use crate::dispatch::tracker::OffsetTracker;
use crate::metrics::RouteMetrics;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Loading plugins, reaching the broker.
    Starting,
    /// Routes running.
    Running,
    /// Asked to stop: routes finish what they hold and commit.
    Draining,
    /// Everything stopped.
    Stopped,
}

/// A handle to one run's board; clones share it.
#[derive(Clone)]
pub struct Board(Arc<Shared>);

struct Shared {
    started: SystemTime,
    since: Instant,
    phase: AtomicU8,
    view: RwLock<Arc<View>>,
    /// Records in each dead-letter topic, as last measured.
    depths: RwLock<BTreeMap<String, u64>>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl Default for Board {
    fn default() -> Self {
        Board(Arc::new(Shared {
            started: SystemTime::now(),
            since: Instant::now(),
            phase: AtomicU8::new(Phase::Starting as u8),
            view: RwLock::default(),
            depths: RwLock::default(),
        }))
    }
}

/// The runtime's routes and plugins at one moment, with live counters.
#[derive(Default)]
pub struct View {
    /// `embedded` or `kafka`.
    pub broker: String,
    /// Routes in service, by name.
    pub routes: BTreeMap<String, RouteView>,
    /// Plugins in service, by name.
    pub plugins: BTreeMap<String, PluginView>,
    /// Reloads applied, refused, and plugin versions swapped in, so far.
    pub reloads_applied: u64,
    pub reloads_refused: u64,
    pub plugin_swaps: u64,
    /// The shared publisher (for its retries), once there is one.
    pub publisher: Option<Publisher>,
    /// The event catalog of the config in service.
    pub catalog: Catalog,
}

/// One route in service.
pub struct RouteView {
    /// The topic it reads.
    pub topic: String,
    /// Event types it takes (`None`: all).
    pub types: Option<Vec<String>>,
    /// Its plugin's name.
    pub plugin: String,
    /// Where its dead letters go.
    pub dead_letter: String,
    /// Its live counters.
    pub metrics: Arc<RouteMetrics>,
    /// Its unfinished events.
    pub tracker: Arc<OffsetTracker>,
}

/// One plugin in service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginView {
    /// `NAME@sha256:DIGEST` of the version serving.
    pub version: String,
    /// The component file.
    pub path: String,
}

impl Board {
    /// A new board, in [`Phase::Starting`].
    pub fn new() -> Board {
        Board::default()
    }

    /// Where the run is.
    pub fn phase(&self) -> Phase {
        match self.0.phase.load(Ordering::Relaxed) {
            0 => Phase::Starting,
            1 => Phase::Running,
            2 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.0.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// When the board was made (the run's start), and how long ago.
    pub fn started(&self) -> (SystemTime, std::time::Duration) {
        (self.0.started, self.0.since.elapsed())
    }

    /// The routes and plugins now.
    pub fn view(&self) -> Arc<View> {
        self.0.view.read().expect("board lock").clone()
    }

    pub(crate) fn post(&self, view: View) {
        *self.0.view.write().expect("board lock") = Arc::new(view);
    }

    /// Records in each dead-letter topic, as last measured.
    pub fn dead_letter_depths(&self) -> BTreeMap<String, u64> {
        self.0.depths.read().expect("board lock").clone()
    }

    pub(crate) fn set_depth(&self, topic: &str, records: u64) {
        self.0
            .depths
            .write()
            .expect("board lock")
            .insert(topic.to_owned(), records);
    }

    /// Why the run is not ready to take traffic, if it is not: not running yet (or any
    /// more), or a route whose source has not joined its broker.
    pub fn not_ready(&self) -> Option<String> {
        match self.phase() {
            Phase::Running => {}
            phase => return Some(format!("{phase:?}").to_lowercase()),
        }
        let view = self.view();
        let waiting: Vec<&str> = view
            .routes
            .iter()
            .filter(|(_, r)| !r.metrics.assigned.load(Ordering::Relaxed))
            .map(|(name, _)| name.as_str())
            .collect();
        (!waiting.is_empty()).then(|| {
            format!(
                "routes not assigned their partitions yet: {}",
                waiting.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RouteMetrics;

    #[test]
    fn ready_only_when_running_with_every_route_assigned() {
        let board = Board::new();
        assert_eq!(board.not_ready().as_deref(), Some("starting"));
        let metrics = Arc::new(RouteMetrics::default());
        let mut view = View::default();
        view.routes.insert(
            "r".into(),
            RouteView {
                topic: "t".into(),
                types: None,
                plugin: "p".into(),
                dead_letter: "d".into(),
                metrics: metrics.clone(),
                tracker: Arc::default(),
            },
        );
        board.post(view);
        board.set_phase(Phase::Running);
        assert!(board.not_ready().unwrap().contains("not assigned"));
        metrics.assigned.store(true, Ordering::Relaxed);
        assert_eq!(board.not_ready(), None);
        board.set_phase(Phase::Draining);
        assert_eq!(board.not_ready().as_deref(), Some("draining"));
    }
}
