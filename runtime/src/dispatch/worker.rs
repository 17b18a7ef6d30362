//! One worker of a route: owns a handler and takes each delivery it is given through the
//! plugin inside a state transaction (retrying in place), then lets it end: at once, or
//! after its group's state commit (see [`super::group`]).
//!
//! The order for one event (ADR 14): handle → state commit (writes, the marker that the
//! route applied the event, and what it emitted, atomically) → publish → finished in the
//! tracker → source position committed → marker pruned. A delivery whose marker is there
//! is not handled again: what it emitted is published again instead. On a route that
//! dedupes, an event whose source and id the route finished within its window is skipped
//! (checked before handling, and again by the commit, which records it as finished).

use super::RouteSpec;
use super::budget::Hold;
use super::ending::{Ending, Route};
use super::group::{Fate, Group, Waiting};
use crate::broker::{Body, Delivery};
use crate::emitted;
use crate::event::{EmitContext, Event};
use crate::handler::{Handler, Outcome, Plugin};
use crate::log_context;
use crate::metrics::{FailureKind, RouteMetrics};
use crate::shutdown::Shutdown;
use crate::state::{Finished, Marker, Stop, dedupe_key};
use crate::telemetry::{EventSpan, SpanStart};
use crossbeam_channel::Receiver;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first wait for an unreachable state store; it doubles up to [`MAX_STORE_WAIT`].
const FIRST_STORE_WAIT: Duration = Duration::from_millis(100);
const MAX_STORE_WAIT: Duration = Duration::from_secs(5);
/// How many undeclared (topic, type) pairs a route warns about; past that it only counts.
const MAX_UNDECLARED_WARNINGS: usize = 100;

/// A delivery handed to a worker, with the bytes it holds on the route's budget.
pub(super) struct Job {
    pub delivery: Delivery,
    pub hold: Hold,
}

pub(super) struct Worker {
    pub spec: Arc<RouteSpec>,
    pub route: Arc<Route>,
    /// The plugin version `handler` belongs to, and the slot generation it came from.
    pub plugin: Arc<dyn Plugin>,
    pub generation: u64,
    pub handler: Box<dyn Handler>,
    pub shutdown: Shutdown,
    /// Handled events waiting for their state commit.
    pub group: Group,
}

impl Worker {
    /// Handles batches until the queue closes, or until shutdown, after finishing the event
    /// in hand and committing its group (the rest are dropped unfinished, stay uncommitted
    /// and are delivered again).
    pub fn run(mut self, inbox: Receiver<Vec<Job>>) {
        log_context::work_for(&self.route.log_name);
        for batch in inbox {
            for job in batch {
                if self.shutdown.is_triggered() {
                    self.settle();
                    return;
                }
                self.follow_slot();
                self.process(job);
                if self.group.is_due() {
                    self.settle();
                }
            }
            self.settle();
        }
    }

    /// Moves to the slot's current version if it changed since the last event. The new
    /// version was compiled and initialised once already by whoever replaced it; if this
    /// worker still cannot instantiate it, the old version keeps serving here.
    fn follow_slot(&mut self) {
        if self.spec.plugin.generation() == self.generation {
            return;
        }
        let (generation, plugin) = self.spec.plugin.current();
        self.generation = generation;
        match plugin.instantiate() {
            Ok(handler) => {
                tracing::debug!(route = %self.spec.name, old = %self.plugin.version(), new = %plugin.version(), "worker switched plugin version");
                self.handler = handler;
                self.plugin = plugin;
            }
            Err(error) => {
                tracing::error!(route = %self.spec.name, old = %self.plugin.version(), new = %plugin.version(), "cannot instantiate the new version; the old one keeps serving: {error:#}");
            }
        }
    }

    fn process(&mut self, job: Job) {
        let ending = Ending {
            route: self.route.clone(),
            partition: job.delivery.partition,
            offset: job.delivery.offset,
            hold: job.hold,
        };
        match job.delivery.body {
            Body::Undecodable(record) => {
                let failure = ending.failure(
                    FailureKind::Undecodable,
                    record.reason.clone(),
                    self.plugin.version(),
                    0,
                );
                let letter = failure.letter_for_undecodable(&record, &self.spec.dead_letter);
                ending.dead_letter(FailureKind::Undecodable, letter);
            }
            Body::Exhausted { event, deliveries } => {
                let failure = ending.failure(
                    FailureKind::DeliveriesExhausted,
                    format!("delivered {deliveries} times without being finished: the consumers holding it stopped each time"),
                    self.plugin.version(),
                    deliveries,
                );
                let letter = failure.letter_for(&event, &self.spec.dead_letter);
                ending.dead_letter(FailureKind::DeliveriesExhausted, letter);
            }
            Body::Event(event) => match self.applied_before(&ending) {
                None => {} // stopping: left unfinished
                Some(Some(outbox)) => self.republish(ending, event, &outbox),
                Some(None) => match self.finished_before(&event) {
                    None => {} // stopping: left unfinished
                    Some(true) => self.skip_duplicate(ending, &event),
                    Some(false) => self.handle(ending, event),
                },
            },
        }
    }

    /// What the delivery emitted when it was applied, if it was; `None` when stopping
    /// while the store is unreachable.
    fn applied_before(&mut self, ending: &Ending) -> Option<Option<Vec<u8>>> {
        let mut waits = 0;
        loop {
            match self.route.applied.lookup(ending.partition, ending.offset) {
                Ok(found) => return Some(found),
                Err(error) => {
                    if !self.wait_for_store(&error.to_string(), &mut waits) {
                        return None;
                    }
                }
            }
        }
    }

    /// Whether the route (if it dedupes) finished an event of the same source and id within
    /// its window; `None` when stopping while the store is unreachable.
    fn finished_before(&mut self, event: &Event) -> Option<bool> {
        if self.spec.dedupe.is_none() {
            return Some(false);
        }
        let key = [dedupe_key(&event.source, &event.id)];
        let mut waits = 0;
        loop {
            match self.spec.state.finished(&self.spec.name, &key) {
                Ok(found) => return Some(found.first().copied().unwrap_or(false)),
                Err(error) => {
                    if !self.wait_for_store(&error.to_string(), &mut waits) {
                        return None;
                    }
                }
            }
        }
    }

    /// Ends a duplicate of an event the route finished within its dedupe window: not
    /// handled, nothing emitted.
    fn skip_duplicate(&self, ending: Ending, event: &Event) {
        tracing::debug!(route = %self.spec.name, event_id = %event.id, source = %event.source, partition = ending.partition, offset = ending.offset, "duplicate: finished within the dedupe window; skipped");
        ending.duplicate();
    }

    /// The record that the route finished `event`, if the route dedupes.
    fn finished_record(&self, event: &Event) -> Option<Finished> {
        let window = self.spec.dedupe?;
        Some(Finished {
            route: self.spec.name.clone(),
            key: dedupe_key(&event.source, &event.id),
            until: crate::event::now_millis().saturating_add(window.as_millis() as i64),
        })
    }

    /// Ends a delivery of an event applied before: publishes again what it emitted then.
    fn republish(&self, ending: Ending, cause: Arc<Event>, outbox: &[u8]) {
        RouteMetrics::add(&self.route.metrics.already_applied, 1);
        tracing::debug!(route = %self.spec.name, event_id = %cause.id, partition = ending.partition, offset = ending.offset, "already applied: not handled again");
        match emitted::decode(outbox) {
            Ok(emitted) if emitted.is_empty() => ending.succeeded(),
            Ok(emitted) => {
                let version = self.plugin.version().to_owned();
                ending.publish(emitted, cause, version, 1);
            }
            Err(reason) => {
                tracing::error!(route = %self.spec.name, event_id = %cause.id, %reason, "an event applied before cannot publish again what it emitted");
                ending.succeeded();
            }
        }
    }

    /// Handles `event` until it succeeds, fails for good, or the route stops (then it is
    /// left unfinished). A retry starts from the state as committed; a store that cannot be
    /// reached is waited for, however long, without counting an attempt.
    fn handle(&mut self, ending: Ending, event: Arc<Event>) {
        let policy = self.spec.retry;
        let mut attempt = 1;
        let mut current = event.clone();
        let mut waits = 0;
        let span = EventSpan::start(&SpanStart {
            event: &event,
            route: &self.spec.name,
            plugin: self.plugin.name(),
            version: self.plugin.version(),
            broker: self.spec.broker,
        });
        let trace = span.as_ref().map(EventSpan::context);
        loop {
            let mut txn = self.group.begin();
            let started = Instant::now();
            let logging = log_context::enter(&current);
            let outcome = self.handler.handle(&current, &mut txn);
            drop(logging);
            let metrics = &self.route.metrics;
            metrics.handle_latency.observe(started.elapsed());
            let (reads, writes) = txn.operations();
            RouteMetrics::add(&metrics.state_reads, reads as u64);
            RouteMetrics::add(&metrics.state_writes, writes as u64);
            if let Some(reason) = txn.unavailable().map(str::to_owned) {
                self.group.restore(txn);
                self.settle();
                if !self.wait_for_store(&reason, &mut waits) {
                    return;
                }
                continue;
            }
            let version = self.plugin.version().to_owned();
            let fate = match outcome {
                Outcome::Retry(reason) if attempt < policy.max_attempts => {
                    self.group.restore(txn);
                    RouteMetrics::add(&self.route.metrics.retried, 1);
                    let wait = policy.backoff(attempt);
                    tracing::debug!(route = %self.spec.name, event_id = %current.id, attempt, ?wait, %reason, "retrying");
                    // Nothing waits for a commit while this worker sleeps.
                    self.settle();
                    if self.shutdown.wait_timeout(wait) {
                        return;
                    }
                    attempt += 1;
                    let mut next = (*current).clone();
                    next.attempt = attempt;
                    current = Arc::new(next);
                    continue;
                }
                Outcome::Retry(reason) => Fate::DeadLetter {
                    kind: FailureKind::RetriesExhausted,
                    reason: format!("gave up after {attempt} attempts: {reason}"),
                    event: current,
                    version,
                    attempts: attempt,
                },
                Outcome::Failed(kind, reason) => Fate::DeadLetter {
                    kind,
                    reason,
                    event: current,
                    version,
                    attempts: attempt,
                },
                Outcome::Done(staged) => {
                    for out in &staged {
                        self.check_declared(&out.topic, &out.type_);
                    }
                    let context = EmitContext {
                        cause: &current,
                        route: &self.spec.name,
                        handled_by: &version,
                        trace: trace.as_ref(),
                    };
                    let emitted = staged
                        .into_iter()
                        .enumerate()
                        .map(|(index, out)| context.complete(index, out))
                        .collect();
                    Fate::Publish {
                        emitted,
                        cause: current,
                        version,
                        attempts: attempt,
                    }
                }
            };
            if let Some(span) = span {
                span.end(fate.ended(), attempt);
            }
            let marker = Marker {
                route: self.spec.name.clone(),
                partition: ending.partition,
                offset: ending.offset,
            };
            let finished = self.finished_record(&event);
            let waiting = Waiting {
                ending,
                delivered: event,
                fate,
            };
            self.group.add(waiting, txn, marker, finished);
            return;
        }
    }

    /// Commits the group and ends its events; handles again, one by one and in order, those
    /// a conflict sent back. Returns with the group empty (or abandoned, when stopping).
    fn settle(&mut self) {
        let mut again: VecDeque<Waiting> = VecDeque::new();
        loop {
            if !self.group.waiting.is_empty() {
                let Some(rest) = self.commit_group() else {
                    return;
                };
                for waiting in rest.into_iter().rev() {
                    again.push_front(waiting);
                }
            }
            if self.shutdown.is_triggered() {
                return; // what is left is unfinished: delivered again
            }
            let Some(waiting) = again.pop_front() else {
                return;
            };
            self.handle(waiting.ending, waiting.delivered);
        }
    }

    /// Commits the group, ends the events that went through, and returns those to handle
    /// again; `None` when stopping while the store is unreachable (all left unfinished).
    fn commit_group(&mut self) -> Option<Vec<Waiting>> {
        let store = self.spec.state.clone();
        let quota = self.plugin.state_quota();
        let mut waits = 0;
        let committed = loop {
            match store.commit(self.plugin.name(), quota, &self.group.commits) {
                Ok(committed) => break committed,
                Err(error) => {
                    if !self.wait_for_store(&error.to_string(), &mut waits) {
                        self.group.abandon();
                        return None;
                    }
                }
            }
        };
        if self.group.commits[..committed.applied]
            .iter()
            .any(|c| c.marker.is_some())
        {
            self.route.applied.wrote_markers();
        }
        let (done, rest) = self.group.split(committed.applied);
        for waiting in done {
            waiting.fate.end(waiting.ending);
        }
        let mut rest = rest.into_iter();
        match committed.stop {
            None => {}
            Some(Stop::AlreadyApplied(outbox)) => {
                // Someone else applied it: what this worker knew may be stale.
                self.group.forget_all();
                if let Some(first) = rest.next() {
                    self.republish(first.ending, first.delivered, &outbox);
                }
            }
            Some(Stop::Conflict(key)) => {
                self.group.forget(&key);
                RouteMetrics::add(&self.route.metrics.state_conflicts, 1);
                tracing::debug!(route = %self.spec.name, %key, "state conflict: handling again on the committed value");
            }
            Some(Stop::Duplicate) => {
                if let Some(first) = rest.next() {
                    self.skip_duplicate(first.ending, &first.delivered);
                }
            }
            Some(Stop::OverQuota(reason)) => {
                tracing::debug!(route = %self.spec.name, %reason, "over the state quota at commit: handling again");
            }
        }
        Some(rest.collect())
    }

    /// Counts an emit the plugin does not declare, and warns about it once per topic and
    /// type (the first [`MAX_UNDECLARED_WARNINGS`] of them).
    fn check_declared(&self, topic: &str, type_: &str) {
        if self.plugin.declares_emit(topic, type_) {
            return;
        }
        RouteMetrics::add(&self.route.metrics.undeclared_emits, 1);
        let mut warned = self.route.undeclared.lock().expect("undeclared lock");
        if warned.len() < MAX_UNDECLARED_WARNINGS
            && warned.insert((topic.to_owned(), type_.to_owned()))
        {
            tracing::warn!(route = %self.spec.name, plugin = %self.plugin.name(), %topic, r#type = %type_, "the plugin emits what its `emits` does not declare (published all the same; counted in plexus_emits_undeclared_total; warned once)");
        }
    }

    /// Waits for an unreachable state store before the next try; whether to try again
    /// (not when stopping).
    fn wait_for_store(&self, reason: &str, waits: &mut u32) -> bool {
        RouteMetrics::add(&self.route.metrics.state_waits, 1);
        if (*waits).is_multiple_of(10) {
            tracing::warn!(route = %self.spec.name, %reason, waits = *waits, "state store unavailable; the event waits for it (never dead-lettered for this)");
        }
        let wait = FIRST_STORE_WAIT
            .saturating_mul(1 << (*waits).min(6))
            .min(MAX_STORE_WAIT);
        *waits += 1;
        !self.shutdown.wait_timeout(wait)
    }
}
