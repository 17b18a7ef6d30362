//! How one event ends once its worker is done with it: what it emitted is published, or it
//! is dead-lettered (whole, or [`without_payload`] when the broker refuses the whole letter).
//! Only then is it finished in the route's tracker, counted, and its bytes given back to the
//! route's budget.
//!
//! Publishing that the broker refuses for good (an emit too large, an invalid topic, no
//! authorisation) dead-letters the source event as `publish-failed`; failures that may pass
//! later are retried by the [`Publisher`]. So every event ends: published, or in the
//! dead-letter topic.

use super::applied::AppliedIndex;
use super::budget::Hold;
use super::deadletter::{Failure, without_payload};
use super::publish::{Publisher, Refused};
use super::tracker::OffsetTracker;
use crate::event::Event;
use crate::metrics::{FailureKind, RouteMetrics};
use std::sync::Arc;

/// What every ending of one route shares.
pub(super) struct Route {
    /// The route's name.
    pub name: String,
    /// The same, shared with log lines written while an event is handled.
    pub log_name: Arc<str>,
    /// The topic it reads.
    pub topic: String,
    /// Where its failed events go.
    pub dead_letter: String,
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<RouteMetrics>,
    pub publisher: Publisher,
    /// Which deliveries were applied to state already.
    pub applied: Arc<AppliedIndex>,
    /// Undeclared emits (topic, type) warned about already.
    pub undeclared: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
}

/// One event on its way to finished; dropping it unfinished (at shutdown) leaves the event
/// uncommitted, to be delivered again.
pub(super) struct Ending {
    pub route: Arc<Route>,
    pub partition: u32,
    pub offset: u64,
    pub hold: Hold,
}

impl Ending {
    /// The failure of this event, for its dead letter.
    pub fn failure(
        &self,
        kind: FailureKind,
        reason: String,
        version: &str,
        attempts: u32,
    ) -> Failure {
        Failure {
            kind,
            reason,
            route: self.route.name.clone(),
            plugin_version: version.to_owned(),
            attempts,
            topic: self.route.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// Handled, nothing to publish.
    pub fn succeeded(self) {
        RouteMetrics::add(&self.route.metrics.succeeded, 1);
        self.finish();
    }

    /// Handled: publishes what `cause` emitted (handled by `version` on attempt
    /// `attempts`); the event succeeds once they are durable, and is dead-lettered as
    /// `publish-failed` if the broker refuses them.
    pub fn publish(
        mut self,
        emitted: Vec<Event>,
        cause: Arc<Event>,
        version: String,
        attempts: u32,
    ) {
        let count = emitted.len() as u64;
        self.hold.grow(emitted.iter().map(Event::size).sum());
        let publisher = self.route.publisher.clone();
        publisher.publish(
            emitted,
            Box::new(move |result| match result {
                Ok(()) => {
                    RouteMetrics::add(&self.route.metrics.emitted, count);
                    self.succeeded();
                }
                Err(Refused { events, reason }) => {
                    let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
                    let reason = format!(
                        "the broker refused what the plugin emitted (to {}): {reason}",
                        topics.join(", ")
                    );
                    tracing::warn!(route = %self.route.name, event_id = %cause.id, %version, %reason, "dead-lettering event");
                    let failure = self.failure(FailureKind::PublishFailed, reason, &version, attempts);
                    let letter = failure.letter_for(&cause, &self.route.dead_letter);
                    self.dead_letter(FailureKind::PublishFailed, letter);
                }
            }),
        );
    }

    /// Writes `letter` to the dead-letter topic; the event ends once it is durable. A letter
    /// the broker refuses whole is written without its payload, insisting until it is taken.
    pub fn dead_letter(self, kind: FailureKind, letter: Event) {
        let publisher = self.route.publisher.clone();
        publisher.publish(
            vec![letter],
            Box::new(move |result| match result {
                Ok(()) => self.dead_lettered(kind),
                Err(Refused { events, reason }) => {
                    let Some(letter) = events.into_iter().next() else {
                        return;
                    };
                    tracing::warn!(route = %self.route.name, event_id = %letter.id, %reason, size = letter.data().len(), "the dead letter was refused whole; writing it without its payload");
                    let letter = without_payload(letter, &reason);
                    let publisher = self.route.publisher.clone();
                    publisher.publish_insisting(
                        vec![letter],
                        Box::new(move |result| {
                            if result.is_ok() {
                                RouteMetrics::add(
                                    &self.route.metrics.dead_letters_without_payload,
                                    1,
                                );
                                self.dead_lettered(kind);
                            }
                        }),
                    );
                }
            }),
        );
    }

    /// A duplicate the route's dedupe skips: finished without being handled.
    pub fn duplicate(self) {
        RouteMetrics::add(&self.route.metrics.duplicates, 1);
        self.finish();
    }

    fn dead_lettered(self, kind: FailureKind) {
        self.route.metrics.dead_letter(kind);
        self.finish();
    }

    fn finish(self) {
        self.route.tracker.finish(self.partition, self.offset);
        // Dropping `self.hold` gives the event's bytes back to the route's budget.
    }
}
