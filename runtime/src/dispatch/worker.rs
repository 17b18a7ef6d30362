//! One worker of a route: owns a handler and takes each delivery it is given to its end —
//! published, or dead-lettered — marking it finished only once the sink has it.

use super::RouteSpec;
use super::deadletter::Failure;
use super::tracker::OffsetTracker;
use crate::broker::{Body, Delivery, Sink};
use crate::event::{EmitContext, Event};
use crate::handler::{Handler, Outcome, Plugin};
use crate::metrics::{FailureKind, RouteMetrics};
use crate::shutdown::Shutdown;
use crossbeam_channel::Receiver;
use std::sync::Arc;

pub(super) struct Worker {
    pub spec: Arc<RouteSpec>,
    /// The plugin version `handler` belongs to, and the slot generation it came from.
    pub plugin: Arc<dyn Plugin>,
    pub generation: u64,
    pub handler: Box<dyn Handler>,
    pub sink: Arc<dyn Sink>,
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<RouteMetrics>,
    pub shutdown: Shutdown,
}

impl Worker {
    /// Handles batches until the queue closes, or until shutdown, after finishing the event
    /// in hand (the rest stay uncommitted and are delivered again).
    pub fn run(mut self, inbox: Receiver<Vec<Delivery>>) {
        for batch in inbox {
            for delivery in batch {
                if self.shutdown.is_triggered() {
                    return;
                }
                self.follow_slot();
                self.process(delivery);
            }
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

    fn process(&mut self, delivery: Delivery) {
        match &delivery.body {
            Body::Undecodable(record) => {
                let failure = self.failure(&delivery, FailureKind::Undecodable, &record.reason, 0);
                let letter = failure.letter_for_undecodable(record, &self.spec.dead_letter);
                self.dead_letter(&delivery, FailureKind::Undecodable, &record.reason, letter);
            }
            Body::Event(event) => self.handle(&delivery, event.clone()),
        }
    }

    fn handle(&mut self, delivery: &Delivery, event: Arc<Event>) {
        let policy = self.spec.retry;
        let mut attempt = 1;
        let mut current = event;
        loop {
            match self.handler.handle(&current) {
                Outcome::Done(staged) => return self.publish(delivery, &current, staged),
                Outcome::Retry(reason) if attempt >= policy.max_attempts => {
                    let reason = format!("gave up after {attempt} attempts: {reason}");
                    return self.fail(
                        delivery,
                        &current,
                        FailureKind::RetriesExhausted,
                        &reason,
                        attempt,
                    );
                }
                Outcome::Retry(reason) => {
                    RouteMetrics::add(&self.metrics.retried, 1);
                    let wait = policy.backoff(attempt);
                    tracing::debug!(route = %self.spec.name, id = %current.id, attempt, ?wait, %reason, "retrying");
                    if self.shutdown.wait_timeout(wait) {
                        return; // left unfinished: delivered again after restart
                    }
                    attempt += 1;
                    let mut next = (*current).clone();
                    next.attempt = attempt;
                    current = Arc::new(next);
                }
                Outcome::Failed(kind, reason) => {
                    return self.fail(delivery, &current, kind, &reason, attempt);
                }
            }
        }
    }

    fn publish(
        &self,
        delivery: &Delivery,
        event: &Event,
        staged: Vec<crate::event::OutgoingEvent>,
    ) {
        RouteMetrics::add(&self.metrics.succeeded, 1);
        if staged.is_empty() {
            self.tracker.finish(delivery.partition, delivery.offset);
            return;
        }
        let context = EmitContext {
            cause: event,
            route: &self.spec.name,
            handled_by: self.plugin.version(),
        };
        let events: Vec<Event> = staged
            .into_iter()
            .enumerate()
            .map(|(index, out)| context.complete(index, out))
            .collect();
        let count = events.len() as u64;
        let (tracker, metrics, route) = (
            self.tracker.clone(),
            self.metrics.clone(),
            self.spec.name.clone(),
        );
        let (partition, offset) = (delivery.partition, delivery.offset);
        self.sink.publish(
            events,
            Box::new(move |result| match result {
                Ok(()) => {
                    RouteMetrics::add(&metrics.emitted, count);
                    tracker.finish(partition, offset);
                }
                Err(error) => {
                    tracing::error!(route, partition, offset, %error, "publishing emitted events failed; the event stays uncommitted");
                }
            }),
        );
    }

    fn fail(
        &self,
        delivery: &Delivery,
        event: &Event,
        kind: FailureKind,
        reason: &str,
        attempts: u32,
    ) {
        let failure = self.failure(delivery, kind, reason, attempts);
        let letter = failure.letter_for(event, &self.spec.dead_letter);
        tracing::warn!(route = %self.spec.name, id = %event.id, version = %self.plugin.version(), kind = kind.as_str(), %reason, "dead-lettering event");
        self.dead_letter(delivery, kind, reason, letter);
    }

    fn failure<'a>(
        &'a self,
        delivery: &Delivery,
        kind: FailureKind,
        reason: &'a str,
        attempts: u32,
    ) -> Failure<'a> {
        Failure {
            kind,
            reason,
            route: &self.spec.name,
            plugin_version: self.plugin.version(),
            attempts,
            topic: &self.spec.topic,
            partition: delivery.partition,
            offset: delivery.offset,
        }
    }

    fn dead_letter(&self, delivery: &Delivery, kind: FailureKind, reason: &str, letter: Event) {
        let (tracker, metrics, route) = (
            self.tracker.clone(),
            self.metrics.clone(),
            self.spec.name.clone(),
        );
        let (partition, offset) = (delivery.partition, delivery.offset);
        let reason = reason.to_owned();
        self.sink.publish(
            vec![letter],
            Box::new(move |result| match result {
                Ok(()) => {
                    metrics.dead_letter(kind);
                    tracker.finish(partition, offset);
                }
                Err(error) => {
                    tracing::error!(route, partition, offset, %error, %reason, "writing a dead letter failed; the event stays uncommitted");
                }
            }),
        );
    }
}
