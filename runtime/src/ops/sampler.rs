//! A run's sampler thread: measures what has to be asked of the broker (the depth of each
//! dead-letter topic) off the dispatch path, and logs the periodic one-line status.

use super::board::{Board, View};
use crate::broker::Broker;
use crate::shutdown::Shutdown;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often dead-letter depths are measured, and how long each broker answer may take.
const DEPTH_INTERVAL: Duration = Duration::from_secs(5);
const DEPTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the thread looks whether something is due.
const TICK: Duration = Duration::from_millis(500);

/// Starts the sampler of `board` on `broker`; it ends when `stop` is set. `status_every`:
/// how often to log the status line (`None`: never).
pub(crate) fn spawn(
    broker: Arc<dyn Broker>,
    board: Board,
    stop: Shutdown,
    status_every: Option<Duration>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sampler".into())
        .spawn(move || {
            let mut depth_due = Instant::now();
            let mut status = StatusLine::new(&board.view());
            loop {
                if depth_due <= Instant::now() {
                    measure_depths(&*broker, &board);
                    depth_due = Instant::now() + DEPTH_INTERVAL;
                }
                if let Some(every) = status_every
                    && status.at.elapsed() >= every
                {
                    status.log(&board.view());
                }
                if stop.wait_timeout(TICK) {
                    return;
                }
            }
        })
}

fn measure_depths(broker: &dyn Broker, board: &Board) {
    let topics: BTreeSet<String> = board
        .view()
        .routes
        .values()
        .map(|r| r.dead_letter.clone())
        .collect();
    for topic in topics {
        match broker.depth(&topic, DEPTH_TIMEOUT) {
            Ok(records) => board.set_depth(&topic, records),
            Err(error) => {
                tracing::debug!(%topic, %error, "dead-letter depth not measured");
                // Once one question goes unanswered, the others would too.
                return;
            }
        }
    }
}

/// Totals of all routes at one moment.
#[derive(Default, Clone, Copy)]
struct Totals {
    received: u64,
    handled: u64,
    dead_lettered: u64,
}

impl Totals {
    fn of(view: &View) -> Totals {
        let mut totals = Totals::default();
        for route in view.routes.values() {
            let counts = route.metrics.snapshot();
            totals.received += counts.received;
            totals.handled += counts.succeeded;
            totals.dead_lettered += counts.dead_lettered_total();
        }
        totals
    }
}

/// The periodic status line: rates since the last one, lag and in-flight now.
struct StatusLine {
    at: Instant,
    last: Totals,
}

impl StatusLine {
    fn new(view: &View) -> StatusLine {
        StatusLine {
            at: Instant::now(),
            last: Totals::of(view),
        }
    }

    fn log(&mut self, view: &View) {
        let now = Totals::of(view);
        let seconds = self.at.elapsed().as_secs_f64().max(1e-3);
        let rate = |now: u64, before: u64| (now.saturating_sub(before)) as f64 / seconds;
        let lag: BTreeMap<&str, u64> = view
            .routes
            .iter()
            .map(|(name, r)| {
                let lag = r.metrics.positions().iter().map(|p| p.lag()).sum();
                (name.as_str(), lag)
            })
            .collect();
        let in_flight: usize = view.routes.values().map(|r| r.tracker.in_flight()).sum();
        let waiting: Vec<&str> = view
            .routes
            .iter()
            .filter(|(_, r)| !r.metrics.assigned.load(Ordering::Relaxed))
            .map(|(n, _)| n.as_str())
            .collect();
        tracing::info!(
            received_per_s = format!("{:.1}", rate(now.received, self.last.received)),
            handled_per_s = format!("{:.1}", rate(now.handled, self.last.handled)),
            dead_lettered_per_s =
                format!("{:.1}", rate(now.dead_lettered, self.last.dead_lettered)),
            lag = lag.values().sum::<u64>(),
            lag_by_route = lag
                .iter()
                .map(|(name, lag)| format!("{name}={lag}"))
                .collect::<Vec<_>>()
                .join(","),
            in_flight,
            unassigned = waiting.join(","),
            "status"
        );
        self.at = Instant::now();
        self.last = now;
    }
}
