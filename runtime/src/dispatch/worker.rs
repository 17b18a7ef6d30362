//! One worker of a route: owns a handler and takes each delivery it is given through the
//! plugin (retrying in place), then hands the event to its [`Ending`]: publish what it
//! emitted, or dead-letter it.

use super::RouteSpec;
use super::budget::Hold;
use super::ending::{Ending, Route};
use crate::broker::{Body, Delivery};
use crate::event::{EmitContext, Event};
use crate::handler::{Handler, Outcome, Plugin};
use crate::metrics::{FailureKind, RouteMetrics};
use crate::shutdown::Shutdown;
use crossbeam_channel::Receiver;
use std::sync::Arc;

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
}

impl Worker {
    /// Handles batches until the queue closes, or until shutdown, after finishing the event
    /// in hand (the rest are dropped unfinished, stay uncommitted and are delivered again).
    pub fn run(mut self, inbox: Receiver<Vec<Job>>) {
        for batch in inbox {
            for job in batch {
                if self.shutdown.is_triggered() {
                    return;
                }
                self.follow_slot();
                self.process(job);
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
            Body::Event(event) => self.handle(ending, event),
        }
    }

    fn handle(&mut self, ending: Ending, event: Arc<Event>) {
        let policy = self.spec.retry;
        let mut attempt = 1;
        let mut current = event;
        loop {
            match self.handler.handle(&current) {
                Outcome::Done(staged) if staged.is_empty() => return ending.succeeded(),
                Outcome::Done(staged) => {
                    let context = EmitContext {
                        cause: &current,
                        route: &self.spec.name,
                        handled_by: self.plugin.version(),
                    };
                    let emitted = staged
                        .into_iter()
                        .enumerate()
                        .map(|(index, out)| context.complete(index, out))
                        .collect();
                    let version = self.plugin.version().to_owned();
                    return ending.publish(emitted, current, version, attempt);
                }
                Outcome::Retry(reason) if attempt >= policy.max_attempts => {
                    let reason = format!("gave up after {attempt} attempts: {reason}");
                    return self.fail(
                        ending,
                        &current,
                        FailureKind::RetriesExhausted,
                        reason,
                        attempt,
                    );
                }
                Outcome::Retry(reason) => {
                    RouteMetrics::add(&self.route.metrics.retried, 1);
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
                    return self.fail(ending, &current, kind, reason, attempt);
                }
            }
        }
    }

    fn fail(
        &self,
        ending: Ending,
        event: &Event,
        kind: FailureKind,
        reason: String,
        attempts: u32,
    ) {
        tracing::warn!(route = %self.spec.name, id = %event.id, version = %self.plugin.version(), kind = kind.as_str(), %reason, "dead-lettering event");
        let failure = ending.failure(kind, reason, self.plugin.version(), attempts);
        let letter = failure.letter_for(event, &self.spec.dead_letter);
        ending.dead_letter(kind, letter);
    }
}
