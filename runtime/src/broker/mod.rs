//! Brokers, seen from the dispatcher: a [`Source`] per subscriber and a shared [`Sink`].
//!
//! The dispatcher knows only these traits. Each broker module turns its wire format into
//! [`Delivery`]s (decoded events, or undecodable records with the reason) and publishes
//! [`Event`]s, acknowledging them through a [`Completion`] once they are durable.
//!
//! # Layout
//! - [`embedded`]: the in-process broker (the default).
//! - [`files`]: CloudEvents JSON-lines inputs (files → topics) and outputs (topics → files).

pub mod embedded;
pub mod files;

use crate::event::{Event, Header};
use std::sync::Arc;
use std::time::Duration;

/// One record read by a subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Partition it was read from.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: u64,
    /// The decoded event, or why it could not be decoded.
    pub body: Body,
}

/// What a record holds.
#[derive(Debug, Clone)]
pub enum Body {
    /// A decoded event (topic, partition and offset filled in).
    Event(Arc<Event>),
    /// A record that is not a valid event.
    Undecodable(Arc<Undecodable>),
}

/// A record that could not be decoded, kept whole so it can be dead-lettered as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// The topic it was read from.
    pub topic: String,
    /// Its key, if it had one.
    pub key: Option<Vec<u8>>,
    /// Its headers, as they were.
    pub headers: Vec<Header>,
    /// Its bytes, as they were.
    pub raw: Vec<u8>,
    /// Why decoding failed.
    pub reason: String,
}

/// The answer to one [`Source::poll`].
#[derive(Debug)]
pub enum Poll {
    /// Records, in offset order within each partition.
    Records(Vec<Delivery>),
    /// Nothing arrived before the timeout.
    Idle,
    /// Nothing will ever arrive again (finite inputs, all processed).
    Exhausted,
}

/// Errors from a broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The broker could not be reached or refused the request.
    #[error("broker error: {0}")]
    Unavailable(String),
}

/// A subscription to one topic with its own committed positions.
pub trait Source: Send {
    /// Waits up to `timeout` for at most `max` records.
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Poll, BrokerError>;
    /// Records that every offset below `next` in each `(partition, next)` is finished.
    fn commit(&mut self, positions: &[(u32, u64)]) -> Result<(), BrokerError>;
    /// Moves every read position back to the committed one, so what was read and not
    /// finished is delivered again (used when a stopped route is restarted).
    fn rewind(&mut self);
}

/// Called once with the result of one [`Sink::publish`].
pub type Completion = Box<dyn FnOnce(Result<(), BrokerError>) + Send>;

/// Publishes events to topics.
pub trait Sink: Send + Sync {
    /// Publishes `events` (each to its `topic`), then calls `done` once all of them are
    /// durable, or with the first error.
    fn publish(&self, events: Vec<Event>, done: Completion);
}
