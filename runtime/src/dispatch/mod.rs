//! The dispatcher: one pipeline per route, knowing no broker and no wasm.
//!
//! A route's poller thread reads [`Delivery`]s from its [`Source`], skips event types the
//! route does not take, and hands each delivery to one of `concurrency` workers chosen by key
//! hash, so events with one key are handled in order by one worker while other keys run in
//! parallel (keyless events are spread round-robin). Workers run the plugin's handlers and
//! publish results through the [`Publisher`]; the [`tracker::OffsetTracker`] turns finished
//! events into commit positions the poller commits. What a route holds unfinished is bounded
//! by its [`budget::Budget`]: when it is spent, the poller pauses its source.
//!
//! # Layout
//! - [`worker`]: one event through the plugin: handle, retry with backoff.
//! - `group`: a worker's handled events waiting for their state commit.
//! - `applied`: which deliveries were applied to state already (markers).
//! - [`ending`]: how it ends: its emits published, or dead-lettered.
//! - [`publish`]: publishing that ends (retries what may pass, reports what cannot).
//! - [`budget`]: the bytes a route may hold unfinished.
//! - [`tracker`]: commit positions over out-of-order completions.
//! - [`retry`]: the backoff policy.
//! - [`deadletter`]: dead-letter events and their headers.

mod applied;
pub mod budget;
pub mod deadletter;
mod ending;
mod group;
pub mod publish;
pub mod retry;
pub mod tracker;
mod worker;

use crate::broker::{Body, Delivery, Poll, Released, Source};
use crate::event::key_hash;
use crate::handler::PluginSlot;
use crate::metrics::RouteMetrics;
use crate::shutdown::Shutdown;
use crate::state::StateBackend;
use anyhow::Context as _;
use applied::AppliedIndex;
use budget::Budget;
use crossbeam_channel::{SendTimeoutError, Sender, bounded};
use publish::Publisher;
use retry::RetryPolicy;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracker::OffsetTracker;
use worker::Job;

/// The most deliveries taken per poll (fewer when the route's budget has less room).
const POLL_BATCH: usize = 512;
/// Batches queued per worker before the poller waits (backpressure).
const QUEUE_DEPTH: usize = 4;
/// How long a poll waits when nothing arrives.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a route whose budget is spent reads nothing without polling its source, before
/// it pauses the source and polls on (keeping its place in a consumer group).
const SPENT_WITHOUT_POLLING: Duration = Duration::from_secs(5);
/// How often a route whose budget is spent looks again.
const SPENT_RECHECK: Duration = Duration::from_millis(5);
/// How long the poller waits for room in a full worker queue before it polls its (paused)
/// source again, so a consumer group keeps hearing from it.
const QUEUE_FULL_RECHECK: Duration = Duration::from_millis(50);
/// How long revoked partitions may take to finish what was delivered of them.
const REVOKE_DRAIN: Duration = Duration::from_secs(10);
/// How long a transactional route may take to finish everything it holds when partitions
/// are revoked (its transaction commits all partitions at once); past this the transaction
/// is aborted and the run ends. Well inside the transaction timeout.
const TRANSACTION_SETTLE: Duration = Duration::from_secs(20);
/// How long a transactional route settling before a commit goes without polling its
/// source; past this it pauses the source and polls it now and then, so its consumer group
/// keeps hearing from it. (Pausing drops what the client prefetched, so short settles,
/// the usual ones, do not pause.)
const SETTLE_POLL: Duration = Duration::from_secs(10);
/// How often a route settling before a commit looks whether it has, between polls.
const SETTLE_CHECK: Duration = Duration::from_millis(50);
/// How often a route measures where it stands on its partitions (for the lag).
const MEASURE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stopping route waits for its published events to be acknowledged (what is
/// not acknowledged by then stays uncommitted and is delivered again).
const STOP_FLUSH: Duration = Duration::from_secs(5);

/// Everything a route pipeline needs to know about its route.
pub struct RouteSpec {
    /// The route's name.
    pub name: String,
    /// The topic it reads.
    pub topic: String,
    /// The broker it reads from (`embedded`, `kafka`), for traces.
    pub broker: &'static str,
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
    /// Where the plugin's state lives (and the route's markers of applied events).
    pub state: Arc<dyn StateBackend>,
    /// The longest time between two commits while events flow.
    pub commit_interval: Duration,
    /// The most bytes of events (and what they emitted) the route holds unfinished before
    /// it stops reading.
    pub max_in_flight: u64,
    /// How long the route remembers the events it finished, to skip their duplicates.
    pub dedupe: Option<Duration>,
}

impl RouteSpec {
    fn takes(&self, delivery: &Delivery) -> bool {
        match (&self.types, &delivery.body) {
            (Some(types), Body::Event(event) | Body::Exhausted { event, .. }) => {
                types.contains(&event.type_)
            }
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

    /// The route's tracker of unfinished events.
    pub fn tracker(&self) -> Arc<OffsetTracker> {
        self.tracker.clone()
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
    /// its source, positioned after what was read (see [`Source::rewind`]), and how many
    /// events it left unfinished (uncommitted, so delivered again).
    pub fn join(self) -> (Option<Box<dyn Source>>, usize) {
        let source = match self.poller.join() {
            Ok(source) => Some(source),
            Err(_) => {
                tracing::error!(route = %self.name, "the route's poller panicked");
                None
            }
        };
        (source, self.tracker.in_flight())
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
    publisher: Publisher,
    stop: Shutdown,
    metrics: Arc<RouteMetrics>,
) -> anyhow::Result<RunningRoute> {
    let spec = Arc::new(spec);
    let tracker = Arc::new(OffsetTracker::default());
    let budget = Budget::new(spec.max_in_flight);
    let applied = Arc::new(AppliedIndex::new(&spec.name, spec.state.clone()));
    let releasing = tracker.clone();
    let forgetting = applied.clone();
    let transactional = source.transactional_sink().is_some();
    source.on_revoke(Box::new(move |partitions| {
        if transactional {
            // The transaction holds what every partition published: once nothing is
            // unfinished, it commits all their positions. A route that has stopped has
            // committed what it could and aborted the rest (closing its source): nothing
            // is left to commit.
            let stopped = releasing.is_stopped();
            let settled = stopped || releasing.settle(TRANSACTION_SETTLE);
            let (positions, all) = releasing.release_all();
            forgetting.forget(&all);
            return Released {
                positions: if stopped { Vec::new() } else { positions },
                settled,
            };
        }
        let positions = releasing.release(partitions, REVOKE_DRAIN);
        forgetting.forget(partitions);
        Released {
            positions,
            settled: false,
        }
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
    let route = Arc::new(ending::Route {
        name: spec.name.clone(),
        log_name: spec.name.as_str().into(),
        topic: spec.topic.clone(),
        dead_letter: spec.dead_letter.clone(),
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        publisher: publisher.clone(),
        applied: applied.clone(),
        undeclared: Default::default(),
    });
    let mut queues = Vec::with_capacity(spec.concurrency);
    let mut workers = Vec::with_capacity(spec.concurrency);
    for (index, handler) in handlers.into_iter().enumerate() {
        let (queue, inbox) = bounded::<Vec<Job>>(QUEUE_DEPTH);
        let worker = worker::Worker {
            spec: spec.clone(),
            route: route.clone(),
            plugin: plugin.clone(),
            generation,
            handler,
            shutdown: stop.clone(),
            group: Default::default(),
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
                applied,
                budget,
                metrics,
                shutdown,
                next_keyless: 0,
                spent_since: None,
                paused: false,
                exhausted: false,
                transaction: transactional.then_some(TransactionSize {
                    cap: TransactionSize::FIRST,
                    reached: false,
                }),
            };
            poller.run(source, queues, workers, publisher)
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
    applied: Arc<AppliedIndex>,
    budget: Arc<Budget>,
    metrics: Arc<RouteMetrics>,
    shutdown: Shutdown,
    next_keyless: usize,
    /// Since when the budget has been spent, while it is.
    spent_since: Option<Instant>,
    /// Whether the source is paused because the budget has been spent for a while.
    paused: bool,
    /// Whether the source said nothing will ever arrive again.
    exhausted: bool,
    /// Set when the source commits in transactions that hold what the route publishes (an
    /// exactly-once route): a commit then waits until the route holds nothing unfinished,
    /// and this bounds how much that is.
    transaction: Option<TransactionSize>,
}

/// How many events a transactional route lets in flight at once. Before each commit the
/// route waits for all of them to finish, so this bounds that wait: it doubles while the
/// wait is short next to the commit interval and halves while it is longer, so the route
/// keeps about a quarter to a whole interval of work in hand, whatever its plugin's speed.
struct TransactionSize {
    cap: usize,
    /// Whether the cap held reading back since the last commit (only then may it grow).
    reached: bool,
}

impl TransactionSize {
    const FIRST: usize = 32;
    const MIN: usize = 16;
    const MAX: usize = 16_384;

    /// How many more events may be read with `in_flight` unfinished.
    fn room(&mut self, in_flight: usize) -> usize {
        let room = self.cap.saturating_sub(in_flight);
        self.reached |= room == 0;
        room
    }

    /// Adapts the cap to a settle that took `took`, with commits every `interval`.
    fn settled(&mut self, took: Duration, interval: Duration) {
        if took > interval {
            self.cap = (self.cap / 2).max(Self::MIN);
        } else if self.reached && took * 4 < interval {
            self.cap = (self.cap * 2).min(Self::MAX);
        }
        self.reached = false;
    }
}

impl Poller {
    fn run(
        mut self,
        mut source: Box<dyn Source>,
        queues: Vec<Sender<Vec<Job>>>,
        workers: Vec<std::thread::JoinHandle<()>>,
        publisher: Publisher,
    ) -> Box<dyn Source> {
        let spec = self.spec.clone();
        tracing::info!(route = %spec.name, topic = %spec.topic, plugin = %spec.plugin.current().1.version(), workers = spec.concurrency, "route started");
        // A source handed over by a stopped route (a restart) may have been left paused.
        source.set_paused(false);
        let mut last_commit = Instant::now();
        let mut last_measure: Option<Instant> = None;
        while !self.shutdown.is_triggered() && !self.exhausted {
            if last_measure.is_none_or(|at| at.elapsed() >= MEASURE_INTERVAL) {
                self.measure(source.as_mut());
                last_measure = Some(Instant::now());
            }
            let idle = if self.wait_while_spent(source.as_mut()) {
                true
            } else {
                self.poll(source.as_mut(), &queues)
            };
            if idle || last_commit.elapsed() >= spec.commit_interval {
                if self.transaction.is_none() || self.settle(source.as_mut()) {
                    self.commit(source.as_mut());
                }
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
        publisher.sink().flush(STOP_FLUSH);
        // Nothing more will finish: a revoke while the source closes must not wait for it.
        self.tracker.stop_waiting();
        if self.transaction.is_some() && self.tracker.in_flight() > 0 {
            // Committing would make visible what the unfinished events published so far,
            // and they will be processed again: the transaction is aborted by `close`.
            tracing::info!(route = %spec.name, unfinished = self.tracker.in_flight(), "stopping with events unfinished: aborting the open transaction");
        } else {
            self.commit(source.as_mut());
        }
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

    /// Records where the source stands, for the route's metrics.
    fn measure(&self, source: &mut dyn Source) {
        self.metrics
            .assigned
            .store(source.is_assigned(), std::sync::atomic::Ordering::Relaxed);
        if let Some(positions) = source.positions() {
            self.metrics.set_positions(positions);
        }
    }

    /// Polls once and dispatches what came; whether nothing came.
    fn poll(&mut self, source: &mut dyn Source, queues: &[Sender<Vec<Job>>]) -> bool {
        let mut batch = self.budget.events_that_fit(POLL_BATCH);
        if let Some(transaction) = &mut self.transaction {
            let room = transaction.room(self.tracker.in_flight());
            if room == 0 {
                // As much in flight as settles quickly: let some of it finish first.
                std::thread::sleep(Duration::from_millis(1));
                return false;
            }
            batch = batch.min(room);
        }
        match source.poll(batch, POLL_TIMEOUT) {
            Ok(Poll::Records(records)) => {
                self.dispatch(records, queues, source);
                false
            }
            Ok(Poll::Idle) => true,
            Ok(Poll::Exhausted) => {
                self.exhausted = true;
                true
            }
            Err(error) => {
                tracing::warn!(route = %self.spec.name, %error, "poll failed; retrying");
                self.shutdown.wait_timeout(Duration::from_secs(1));
                true
            }
        }
    }

    /// While the route holds as much as its budget allows, reads nothing: for a moment by
    /// not polling (what the broker client prefetched stays where it is), then, if it
    /// lasts, by pausing the source and polling on, so the subscription stays alive through
    /// a long wait (a broker outage, a slow plugin). Resumes once enough is finished.
    /// Whether it waited instead of reading.
    fn wait_while_spent(&mut self, source: &mut dyn Source) -> bool {
        if !self.budget.is_spent() {
            self.spent_since = None;
            if self.paused {
                self.paused = false;
                source.set_paused(false);
                tracing::debug!(route = %self.spec.name, held_bytes = self.budget.used(), "in-flight budget has room again: reading resumed");
            }
            return false;
        }
        let since = *self.spent_since.get_or_insert_with(Instant::now);
        if since.elapsed() < SPENT_WITHOUT_POLLING {
            self.shutdown.wait_timeout(SPENT_RECHECK);
            return true;
        }
        if !self.paused {
            self.paused = true;
            source.set_paused(true);
            tracing::debug!(route = %self.spec.name, held_bytes = self.budget.used(), "in-flight budget spent for a while: source paused");
        }
        false
    }

    /// Filters a batch and queues each delivery with the worker that owns its key.
    fn dispatch(
        &mut self,
        records: Vec<Delivery>,
        queues: &[Sender<Vec<Job>>],
        source: &mut dyn Source,
    ) {
        RouteMetrics::add(&self.metrics.received, records.len() as u64);
        let mut batches: Vec<Vec<Job>> = (0..queues.len()).map(|_| Vec::new()).collect();
        for delivery in records {
            self.tracker.begin(delivery.partition, delivery.offset);
            if !self.spec.takes(&delivery) {
                RouteMetrics::add(&self.metrics.filtered, 1);
                self.tracker.finish(delivery.partition, delivery.offset);
                continue;
            }
            let (key, size) = match &delivery.body {
                Body::Event(event) | Body::Exhausted { event, .. } => {
                    (event.key.as_deref(), event.size())
                }
                Body::Undecodable(record) => (record.key.as_deref(), record.raw.len()),
            };
            let worker = match key {
                Some(key) => (key_hash(key) % queues.len() as u64) as usize,
                None => {
                    self.next_keyless = (self.next_keyless + 1) % queues.len();
                    self.next_keyless
                }
            };
            let hold = self.budget.hold(size);
            batches[worker].push(Job { delivery, hold });
        }
        for (queue, batch) in queues.iter().zip(batches) {
            // A batch not handed over (shutdown) stays uncommitted and is delivered again.
            if !batch.is_empty() && !self.hand_over(queue, batch, source) {
                break;
            }
        }
    }

    /// Queues `batch` with its worker. While the worker's queue is full (a slow plugin),
    /// the source is paused and polled on, reading nothing: a consumer group keeps hearing
    /// from this member and its rebalances are served at once, instead of waiting, with
    /// every other member, for the worker to make room. Whether the worker took the batch
    /// (not when stopping).
    ///
    /// A transactional route does not poll here: a rebalance served now would wait for the
    /// route to settle, and the events of this batch (and of the batches after it) are
    /// delivered but held by the poller itself, so they could never finish and the revoke
    /// would fail. Its transaction size bounds how long the worker takes to make room.
    fn hand_over(
        &mut self,
        queue: &Sender<Vec<Job>>,
        mut batch: Vec<Job>,
        source: &mut dyn Source,
    ) -> bool {
        loop {
            match queue.send_timeout(batch, QUEUE_FULL_RECHECK) {
                Ok(()) => return true,
                Err(SendTimeoutError::Disconnected(_)) => return false,
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.shutdown.is_triggered() {
                        return false;
                    }
                    batch = back;
                    if self.transaction.is_some() {
                        continue;
                    }
                    if !self.paused {
                        // Resumed by `wait_while_spent` once the budget has room.
                        self.paused = true;
                        source.set_paused(true);
                        tracing::debug!(route = %self.spec.name, "worker queue full: source paused");
                    }
                    if let Err(error) = source.poll(0, Duration::ZERO) {
                        tracing::debug!(route = %self.spec.name, %error, "poll while paused failed");
                    }
                }
            }
        }
    }
}

impl Poller {
    /// Commits the finished positions, and prunes the markers below positions the broker
    /// has confirmed (a marker is needed only while its event may be delivered again).
    fn commit(&self, source: &mut dyn Source) {
        let route = &self.spec.name;
        let positions = self.tracker.take_commits();
        if !positions.is_empty()
            && let Err(error) = source.commit(&positions)
        {
            if self.transaction.is_some() {
                // Aborted, and the source rewound: what it delivers next starts afresh.
                tracing::warn!(route, %error, "transaction aborted; its events will be processed again");
                let (_, partitions) = self.tracker.release_all();
                self.applied.forget(&partitions);
            } else {
                tracing::warn!(route, %error, "commit failed; retrying with the next commit");
                self.tracker.retake_commits();
            }
        }
        let confirmed = source.confirmed();
        if !confirmed.is_empty() {
            self.applied.prune(&confirmed);
        }
    }

    /// Waits, reading nothing, until the route holds nothing unfinished, so that its
    /// transaction may commit; polls the paused source now and then meanwhile. Whether it
    /// settled (not when the route is stopping first).
    fn settle(&mut self, source: &mut dyn Source) -> bool {
        let started = Instant::now();
        let mut polled = started;
        while !self.tracker.settle(SETTLE_CHECK) {
            if self.shutdown.is_triggered() {
                return false;
            }
            if polled.elapsed() >= SETTLE_POLL {
                if !self.paused {
                    // Resumed by `wait_while_spent` once the budget has room.
                    self.paused = true;
                    source.set_paused(true);
                }
                if let Err(error) = source.poll(0, Duration::ZERO) {
                    tracing::debug!(route = %self.spec.name, %error, "poll while settling failed");
                }
                polled = Instant::now();
            }
        }
        if let Some(transaction) = &mut self.transaction {
            transaction.settled(started.elapsed(), self.spec.commit_interval);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{BrokerError, Completion, RevokeHook, Sink};
    use crate::event::Event;
    use crate::handler::{NativePlugin, Outcome};
    use crate::state::MemoryBackend;
    use std::sync::Mutex;

    const INTERVAL: Duration = Duration::from_millis(100);

    /// A sink that takes everything at once.
    struct Taking;

    impl Sink for Taking {
        fn publish(&self, _events: Vec<Event>, done: Completion) {
            done(Ok(()))
        }
    }

    /// A transactional source of `total` events on partition 0, one per poll, that
    /// revokes its partition (calls the route's hook, as a Kafka client does inside a
    /// poll) at the first poll after `revoke_after` events went out, and keeps what the
    /// hook said.
    struct RevokingSource {
        sent: u64,
        total: u64,
        revoke_after: u64,
        hook: Option<RevokeHook>,
        released: Arc<Mutex<Option<Released>>>,
    }

    impl Source for RevokingSource {
        fn poll(&mut self, max: usize, _timeout: Duration) -> Result<Poll, BrokerError> {
            if self.sent >= self.revoke_after
                && let Some(mut hook) = self.hook.take()
            {
                *self.released.lock().unwrap() = Some(hook(&[0]));
            }
            if self.sent == self.total {
                return Ok(Poll::Exhausted);
            }
            if max == 0 {
                return Ok(Poll::Idle);
            }
            let json = format!(
                r#"{{"specversion":"1.0","id":"{}","source":"t","type":"t"}}"#,
                self.sent
            );
            let event = crate::cloudevents::decode(json.as_bytes()).unwrap();
            self.sent += 1;
            Ok(Poll::Records(vec![Delivery {
                partition: 0,
                offset: self.sent - 1,
                body: Body::Event(Arc::new(event)),
            }]))
        }
        fn commit(&mut self, _positions: &[(u32, u64)]) -> Result<(), BrokerError> {
            Ok(())
        }
        fn rewind(&mut self) {}
        fn set_paused(&mut self, _paused: bool) {}
        fn on_revoke(&mut self, hook: RevokeHook) {
            self.hook = Some(hook);
        }
        fn transactional_sink(&self) -> Option<Arc<dyn Sink>> {
            Some(Arc::new(Taking))
        }
    }

    /// A rebalance served while the poller waits for room in a full worker queue must
    /// still settle: the events it holds are the worker's to finish, not the poller's.
    #[test]
    fn a_transactional_route_settles_a_revoke_that_comes_while_its_worker_queue_is_full() {
        // One slow worker: one event in hand and QUEUE_DEPTH batches of one queued; the
        // next delivery finds the queue full.
        let revoke_after = QUEUE_DEPTH as u64 + 2;
        let released = Arc::new(Mutex::new(None));
        let source = RevokingSource {
            sent: 0,
            total: revoke_after + 2,
            revoke_after,
            hook: None,
            released: released.clone(),
        };
        let plugin = NativePlugin::new("slow", |_| {
            std::thread::sleep(Duration::from_millis(150));
            Outcome::Done(Vec::new())
        });
        let spec = RouteSpec {
            name: "slow".into(),
            topic: "in".into(),
            broker: "test",
            types: None,
            plugin: PluginSlot::new(Arc::new(plugin)),
            concurrency: 1,
            retry: RetryPolicy::default(),
            dead_letter: "in.dlq".into(),
            state: MemoryBackend::shared(),
            // No commit (and so no settle) on the way: the revoke is the first.
            commit_interval: Duration::from_secs(600),
            max_in_flight: 64 << 20,
            dedupe: None,
        };
        let publisher = Publisher::start(Arc::new(Taking)).unwrap();
        let started = Instant::now();
        start_route(
            spec,
            Box::new(source),
            publisher.clone(),
            Shutdown::new(),
            Arc::default(),
        )
        .unwrap()
        .join();
        publisher.stop();
        let released = released
            .lock()
            .unwrap()
            .take()
            .expect("the hook was called");
        assert!(
            released.settled,
            "settled (the revoke waited {:?})",
            started.elapsed()
        );
        assert_eq!(released.positions, vec![(0, revoke_after)]);
    }

    #[test]
    fn the_transaction_size_grows_while_settling_is_quick_and_shrinks_while_it_is_slow() {
        let mut size = TransactionSize {
            cap: TransactionSize::FIRST,
            reached: false,
        };
        assert_eq!(size.room(10), TransactionSize::FIRST - 10);
        size.settled(Duration::from_millis(1), INTERVAL);
        assert_eq!(
            size.cap,
            TransactionSize::FIRST,
            "not grown: the cap never held reading back"
        );
        assert_eq!(size.room(TransactionSize::FIRST), 0);
        size.settled(Duration::from_millis(1), INTERVAL);
        assert_eq!(
            size.cap,
            2 * TransactionSize::FIRST,
            "quick and full: doubled"
        );
        size.settled(Duration::from_millis(500), INTERVAL);
        assert_eq!(size.cap, TransactionSize::FIRST, "slow: halved");
        for _ in 0..20 {
            size.settled(Duration::from_secs(1), INTERVAL);
        }
        assert_eq!(size.cap, TransactionSize::MIN);
        for _ in 0..20 {
            size.room(usize::MAX);
            size.settled(Duration::ZERO, INTERVAL);
        }
        assert_eq!(size.cap, TransactionSize::MAX);
    }
}
