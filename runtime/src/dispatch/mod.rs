//! The dispatcher: one pipeline per route, knowing no broker and no wasm.
//!
//! A route's poller thread reads [`Delivery`]s from its [`Source`], skips event types the
//! route does not take, and hands each delivery to one of `concurrency` workers chosen by key
//! hash, so events with one key are handled in order by one worker while other keys run in
//! parallel (keyless events are spread round-robin). Workers run the [`Plugin`]'s handlers
//! and publish results through the [`Sink`]; the [`tracker::OffsetTracker`] turns finished
//! events into commit positions the poller commits.
//!
//! # Layout
//! - [`worker`]: one event's life: handle, retry with backoff, publish or dead-letter.
//! - [`tracker`]: commit positions over out-of-order completions.
//! - [`retry`]: the backoff policy.
//! - [`deadletter`]: dead-letter events and their headers.

pub mod deadletter;
pub mod retry;
pub mod tracker;
pub mod worker;

use crate::broker::{Body, Delivery, Poll, Sink, Source};
use crate::event::key_hash;
use crate::handler::PluginSlot;
use crate::metrics::RouteMetrics;
use crate::shutdown::Shutdown;
use anyhow::Context as _;
use crossbeam_channel::{Sender, bounded};
use retry::RetryPolicy;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracker::OffsetTracker;

/// Deliveries taken per poll.
const POLL_BATCH: usize = 512;
/// Batches queued per worker before the poller waits (backpressure).
const QUEUE_DEPTH: usize = 4;
/// How long a poll waits when nothing arrives.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How long revoked partitions may take to finish what was delivered of them.
const REVOKE_DRAIN: Duration = Duration::from_secs(10);
/// How long a stopping route waits for its published events to be acknowledged.
const STOP_FLUSH: Duration = Duration::from_secs(10);

/// Everything a route pipeline needs to know about its route.
pub struct RouteSpec {
    /// The route's name.
    pub name: String,
    /// The topic it reads.
    pub topic: String,
    /// Event types it takes; `None` takes all.
    pub types: Option<HashSet<String>>,
    /// The plugin handling its events, in a slot so new versions can take over.
    pub plugin: Arc<PluginSlot>,
    /// Workers (events in flight at once).
    pub concurrency: usize,
    /// What a *retry* error leads to.
    pub retry: RetryPolicy,
    /// Where failed events go.
    pub dead_letter: String,
    /// The longest time between two commits while events flow.
    pub commit_interval: Duration,
}

impl RouteSpec {
    fn takes(&self, delivery: &Delivery) -> bool {
        match (&self.types, &delivery.body) {
            (Some(types), Body::Event(event)) => types.contains(&event.type_),
            // An undecodable record has no type: the route dead-letters it.
            _ => true,
        }
    }
}

/// A running route: its poller thread, its own stop flag, and its offset tracker.
pub struct RunningRoute {
    name: String,
    stop: Shutdown,
    tracker: Arc<OffsetTracker>,
    poller: std::thread::JoinHandle<Box<dyn Source>>,
}

impl RunningRoute {
    /// Asks the route to stop: each worker finishes the event in hand, then the route
    /// commits what is finished.
    pub fn stop(&self) {
        self.stop.trigger();
    }

    /// Events delivered to the route and not finished yet.
    pub fn in_flight(&self) -> usize {
        self.tracker.in_flight()
    }

    /// Whether the route has stopped (its source is exhausted, or it was stopped).
    pub fn is_finished(&self) -> bool {
        self.poller.is_finished()
    }

    /// Waits for the route to stop (source exhausted, or stopped and drained) and returns
    /// its source, positioned after what was read (see [`Source::rewind`]).
    pub fn join(self) -> Option<Box<dyn Source>> {
        match self.poller.join() {
            Ok(source) => Some(source),
            Err(_) => {
                tracing::error!(route = %self.name, "the route's poller panicked");
                None
            }
        }
    }
}

/// Starts one route: instantiates one handler per worker (failing here if the plugin cannot
/// be instantiated), then runs until the source is exhausted or `stop` is set, lets the
/// workers finish the event each has in hand, and commits what is finished. `stop` belongs
/// to this route (see [`RunningRoute::stop`]).
///
/// Once running, failures of events, plugins or the broker are counted, logged and
/// dead-lettered, never fatal.
pub fn start_route(
    spec: RouteSpec,
    mut source: Box<dyn Source>,
    sink: Arc<dyn Sink>,
    stop: Shutdown,
    metrics: Arc<RouteMetrics>,
) -> anyhow::Result<RunningRoute> {
    let spec = Arc::new(spec);
    let tracker = Arc::new(OffsetTracker::default());
    let releasing = tracker.clone();
    source.on_revoke(Box::new(move |partitions| {
        releasing.release(partitions, REVOKE_DRAIN)
    }));
    let (generation, plugin) = spec.plugin.current();
    let mut handlers = Vec::with_capacity(spec.concurrency);
    for _ in 0..spec.concurrency {
        handlers.push(plugin.instantiate().with_context(|| {
            format!(
                "route `{}`: instantiating plugin `{}`",
                spec.name,
                plugin.name()
            )
        })?);
    }
    let mut queues = Vec::with_capacity(spec.concurrency);
    let mut workers = Vec::with_capacity(spec.concurrency);
    for (index, handler) in handlers.into_iter().enumerate() {
        let (queue, inbox) = bounded::<Vec<Delivery>>(QUEUE_DEPTH);
        let worker = worker::Worker {
            spec: spec.clone(),
            plugin: plugin.clone(),
            generation,
            handler,
            sink: sink.clone(),
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            shutdown: stop.clone(),
        };
        workers.push(
            std::thread::Builder::new()
                .name(format!("{}#{index}", spec.name))
                .spawn(move || worker.run(inbox))?,
        );
        queues.push(queue);
    }
    let name = spec.name.clone();
    let shutdown = stop.clone();
    let route_tracker = tracker.clone();
    let poller = std::thread::Builder::new()
        .name(format!("{name}-poll"))
        .spawn(move || {
            let poller = Poller {
                spec,
                tracker,
                metrics,
                shutdown,
                next_keyless: 0,
            };
            poller.run(source, queues, workers, sink)
        })?;
    Ok(RunningRoute {
        name,
        stop,
        tracker: route_tracker,
        poller,
    })
}

struct Poller {
    spec: Arc<RouteSpec>,
    tracker: Arc<OffsetTracker>,
    metrics: Arc<RouteMetrics>,
    shutdown: Shutdown,
    next_keyless: usize,
}

impl Poller {
    fn run(
        mut self,
        mut source: Box<dyn Source>,
        queues: Vec<Sender<Vec<Delivery>>>,
        workers: Vec<std::thread::JoinHandle<()>>,
        sink: Arc<dyn Sink>,
    ) -> Box<dyn Source> {
        let spec = self.spec.clone();
        tracing::info!(route = %spec.name, topic = %spec.topic, plugin = %spec.plugin.current().1.version(), workers = spec.concurrency, "route started");
        let mut last_commit = Instant::now();
        while !self.shutdown.is_triggered() {
            let idle = match source.poll(POLL_BATCH, POLL_TIMEOUT) {
                Ok(Poll::Records(records)) => {
                    self.dispatch(records, &queues);
                    false
                }
                Ok(Poll::Idle) => true,
                Ok(Poll::Exhausted) => break,
                Err(error) => {
                    tracing::warn!(route = %spec.name, %error, "poll failed; retrying");
                    self.shutdown.wait_timeout(Duration::from_secs(1));
                    true
                }
            };
            if idle || last_commit.elapsed() >= spec.commit_interval {
                commit(&spec.name, source.as_mut(), &self.tracker);
                last_commit = Instant::now();
            }
        }
        drop(queues);
        for worker in workers {
            if worker.join().is_err() {
                tracing::error!(route = %spec.name, "a worker panicked");
            }
        }
        // What the workers published must be acknowledged before its events count as done.
        sink.flush(STOP_FLUSH);
        commit(&spec.name, source.as_mut(), &self.tracker);
        if let Err(error) = source.close() {
            tracing::warn!(route = %spec.name, %error, "final commit failed; the last events will be delivered again");
        }
        let unfinished = self.tracker.in_flight();
        if unfinished > 0 {
            tracing::info!(route = %spec.name, unfinished, "stopped with events left uncommitted; they will be delivered again");
        }
        tracing::info!(route = %spec.name, "route stopped");
        source
    }

    /// Filters a batch and queues each delivery with the worker that owns its key.
    fn dispatch(&mut self, records: Vec<Delivery>, queues: &[Sender<Vec<Delivery>>]) {
        RouteMetrics::add(&self.metrics.received, records.len() as u64);
        let mut batches: Vec<Vec<Delivery>> = vec![Vec::new(); queues.len()];
        for delivery in records {
            self.tracker.begin(delivery.partition, delivery.offset);
            if !self.spec.takes(&delivery) {
                RouteMetrics::add(&self.metrics.filtered, 1);
                self.tracker.finish(delivery.partition, delivery.offset);
                continue;
            }
            let key = match &delivery.body {
                Body::Event(event) => event.key.as_deref(),
                Body::Undecodable(record) => record.key.as_deref(),
            };
            let worker = match key {
                Some(key) => (key_hash(key) % queues.len() as u64) as usize,
                None => {
                    self.next_keyless = (self.next_keyless + 1) % queues.len();
                    self.next_keyless
                }
            };
            batches[worker].push(delivery);
        }
        for (queue, batch) in queues.iter().zip(batches) {
            // A send fails only when the worker stopped for shutdown; the batch then stays
            // uncommitted and is delivered again.
            if !batch.is_empty() && queue.send(batch).is_err() {
                break;
            }
        }
    }
}

fn commit(route: &str, source: &mut dyn Source, tracker: &OffsetTracker) {
    let positions = tracker.take_commits();
    if positions.is_empty() {
        return;
    }
    if let Err(error) = source.commit(&positions) {
        tracing::warn!(route, %error, "commit failed; retrying with the next commit");
        tracker.retake_commits();
    }
}
