//! Brokers, seen from the runtime: a [`Broker`] opens a [`Source`] per subscriber and
//! shares one [`Sink`].
//!
//! The dispatcher knows only these traits; adding a broker is one module implementing them,
//! one config table, and one line in [`open`]. Each broker module turns its wire format into
//! [`Delivery`]s (decoded events, or undecodable records with the reason) and publishes
//! [`Event`]s, acknowledging them through a [`Completion`] once they are durable.
//!
//! # Layout
//! - this module: the [`Broker`] trait, [`Source`], [`Sink`], and [`open`], the one place
//!   that knows every broker.
//! - [`embedded`]: the in-process broker (the default).
//! - [`kafka`]: Apache Kafka through librdkafka.
//! - [`redis`]: Redis Streams.
//! - [`connect`]: the error of a broker that cannot be reached at start.
//! - [`files`]: CloudEvents JSON-lines inputs (files → topics) and outputs (topics → files).
//! - [`edges`]: the threads that feed the input files and write the outputs during a run.

pub mod connect;
pub(crate) mod edges;
pub(crate) mod embedded;
pub(crate) mod files;
pub(crate) mod kafka;
pub(crate) mod redis;

use crate::config::{BrokerKind, Config};
use crate::event::{Event, Header};
use crate::metrics::PartitionPosition;
use crate::shutdown::Shutdown;
use connect::ConnectError;
pub(crate) use embedded::InputGuard;
use files::FeedReport;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A broker, as the runtime sees it: subscriptions, a sink, topics, and the input files fed
/// into it. Each broker module implements it; nothing outside them knows which one runs.
pub(crate) trait Broker: Send + Sync {
    /// `embedded`, `kafka` or `redis`.
    fn kind(&self) -> &'static str;

    /// A new subscription to `topic` for `subscriber` (a route, or an output), with its
    /// own committed positions.
    fn subscribe(&self, topic: &str, subscriber: &str) -> Result<Box<dyn Source>, BrokerError>;

    /// Where events are published.
    fn sink(&self) -> Arc<dyn Sink>;

    /// A subscription for an exactly-once route: its commits are transactions that also
    /// hold what the route publishes through [`Source::transactional_sink`]. Refused by
    /// brokers without transactions.
    fn subscribe_exactly_once(
        &self,
        _topic: &str,
        _subscriber: &str,
    ) -> Result<Box<dyn Source>, BrokerError> {
        Err(BrokerError::Refused(format!(
            "delivery = \"exactly-once\" needs Kafka transactions; the {} broker has none",
            self.kind()
        )))
    }

    /// Makes sure `topics` exist, where the broker needs them made (Kafka with
    /// `create_topics`); the others make topics as they are written.
    fn ensure_topics(&self, _topics: &[String]) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Records kept in `topic` now (each broker question awaited up to `timeout`).
    fn depth(&self, topic: &str, timeout: Duration) -> Result<u64, BrokerError>;

    /// Publishes `raw` to `topic` as it is, not as an event (an input line that is not a
    /// CloudEvent, for its readers to dead-letter), and waits until it is durable.
    fn publish_raw(&self, topic: &str, raw: &[u8]) -> Result<(), BrokerError>;

    /// Feeds a CloudEvents JSON-lines file into `topic`; with `follow`, also what is
    /// appended to it later, until `stop` is set.
    fn feed(
        &self,
        topic: &str,
        path: &Path,
        follow: bool,
        stop: &Shutdown,
    ) -> std::io::Result<FeedReport> {
        files::feed_published(
            &*self.sink(),
            |raw| self.publish_raw(topic, raw),
            topic,
            path,
            follow,
            stop,
        )
    }

    /// Whether nothing can arrive any more (only a finite embedded run ever is).
    fn is_exhausted(&self) -> bool {
        false
    }

    /// Holds the run open while inputs are fed (the embedded broker, whose run ends when
    /// its inputs do).
    fn open_input(&self) -> Option<InputGuard> {
        None
    }

    /// Where `subscriber`'s committed positions stand on each partition of `topic`, asked
    /// of the broker without joining the group (for `plexus positions`).
    fn group_positions(
        &self,
        _topic: &str,
        _subscriber: &str,
    ) -> Result<Vec<GroupPosition>, BrokerError> {
        Err(no_positions(self.kind()))
    }

    /// Moves `subscriber`'s committed positions on every partition of `topic` to `to`, and
    /// says where they are now; refused while the group has live members (they would
    /// commit over the reset).
    fn reset_positions(
        &self,
        _topic: &str,
        _subscriber: &str,
        _to: ResetTo,
    ) -> Result<Vec<GroupPosition>, BrokerError> {
        Err(no_positions(self.kind()))
    }

    /// The embedded broker, if that is the one (for tests that read its topics).
    #[cfg(feature = "testing")]
    fn as_embedded(&self) -> Option<&embedded::EmbeddedBroker> {
        None
    }
}

/// Why a broker without positions that outlive a run cannot show or move them.
fn no_positions(kind: &str) -> BrokerError {
    BrokerError::Refused(format!(
        "the {kind} broker keeps no positions between runs: every run reads its inputs from the start"
    ))
}

/// Where a subscriber's committed position stands on one partition (a Redis stream).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupPosition {
    /// The partition (the shard, on Redis).
    pub partition: u32,
    /// The next offset the group reads from (Kafka), or the entries it has read and
    /// acknowledged (Redis); `None` when it has committed nothing (it starts from the
    /// earliest record kept).
    pub committed: Option<u64>,
    /// The partition's end: the offset the next record gets (Kafka), the entries added
    /// (Redis).
    pub end: u64,
    /// Records not yet committed by the group.
    pub lag: u64,
    /// What the broker adds in its own terms (Redis: the id read up to, pending entries).
    pub detail: String,
}

/// Where `plexus positions --reset` moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The earliest record kept.
    Beginning,
    /// The end: only records appended from now on are read.
    End,
    /// This offset (a packed entry id on Redis).
    Offset(u64),
    /// The first record at or after this time (milliseconds since the Unix epoch).
    Time(i64),
}

impl std::str::FromStr for ResetTo {
    type Err = String;

    /// `beginning`, `end`, `offset:N` or `time:RFC3339`.
    fn from_str(text: &str) -> Result<ResetTo, String> {
        match text {
            "beginning" => return Ok(ResetTo::Beginning),
            "end" => return Ok(ResetTo::End),
            _ => {}
        }
        if let Some(offset) = text.strip_prefix("offset:") {
            return offset
                .parse()
                .map(ResetTo::Offset)
                .map_err(|_| format!("`{offset}` is not an offset (a whole number)"));
        }
        if let Some(time) = text.strip_prefix("time:") {
            return crate::cloudevents::parse_rfc3339_millis(time)
                .map(ResetTo::Time)
                .map_err(|_| format!("`{time}` is not an RFC 3339 time (2026-12-01T10:00:00Z)"));
        }
        Err(format!(
            "`{text}`: expected beginning, end, offset:N or time:RFC3339"
        ))
    }
}

/// Reaches the broker `config` names (within its `connect_timeout`, or until `stop`) and
/// opens it. The only place that knows every broker.
pub(crate) fn open(config: &Config, stop: &Shutdown) -> anyhow::Result<Arc<dyn Broker>> {
    let broker = &config.spec.broker;
    Ok(match broker.kind.get_ref() {
        BrokerKind::Embedded => {
            Arc::new(embedded::EmbeddedBroker::new(*broker.partitions.get_ref()))
        }
        BrokerKind::Kafka => {
            check_connection(config, stop)?;
            Arc::new(kafka::Kafka::open(config)?)
        }
        BrokerKind::Redis => {
            check_connection(config, stop)?;
            Arc::new(redis::Redis::open(config)?)
        }
    })
}

/// Reaches the broker `config` names as `plexus run` would at start, and says what it found
/// (`None` on the embedded broker, which has nothing to reach).
pub(crate) fn check_connection(
    config: &Config,
    stop: &Shutdown,
) -> Result<Option<String>, ConnectError> {
    match config.spec.broker.kind.get_ref() {
        BrokerKind::Embedded => Ok(None),
        BrokerKind::Kafka => kafka::connect::check(config, stop).map(Some),
        BrokerKind::Redis => redis::connect::check(config, stop).map(Some),
    }
}

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
    /// An event the broker delivered more times than allowed without it being finished
    /// (the consumers holding it died each time, Redis `max_deliveries`): dead-lettered
    /// without being handled again.
    Exhausted {
        /// The event.
        event: Arc<Event>,
        /// How many times it has been delivered, this time included.
        deliveries: u32,
    },
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker could not be reached or could not take the request now (a timeout, a
    /// full queue, a leader election): trying again later can succeed.
    #[error("broker error: {0}")]
    Unavailable(String),
    /// The broker will never accept this record: too large, an invalid topic, not
    /// authorised. Trying again cannot succeed.
    #[error("refused by the broker: {0}")]
    Refused(String),
}

impl BrokerError {
    /// Whether trying again cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, BrokerError::Refused(_))
    }
}

/// A published event the broker did not take, handed back with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// The event, as it was given to [`Sink::publish`].
    pub event: Event,
    /// Why it was not delivered.
    pub error: BrokerError,
}

/// A subscription to one topic with its own committed positions.
pub trait Source: Send {
    /// Waits up to `timeout` for at most `max` records (none while paused).
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Poll, BrokerError>;
    /// Records that every offset below `next` in each `(partition, next)` is finished.
    ///
    /// On a transactional source (see [`Source::transactional_sink`]) this commits the open
    /// transaction, and must only be asked when the route holds nothing unfinished. An
    /// error there means the transaction was aborted and the source rewound to its
    /// committed positions: everything delivered since the last commit comes again.
    fn commit(&mut self, positions: &[(u32, u64)]) -> Result<(), BrokerError>;
    /// Positions the broker has confirmed as committed since the last call: what depends
    /// on an event not being delivered again (its marker in the state store) may go. The
    /// default confirms nothing.
    fn confirmed(&mut self) -> Vec<(u32, u64)> {
        Vec::new()
    }
    /// Moves every read position back to the committed one, so what was read and not
    /// finished is delivered again (used when a stopped route is restarted).
    fn rewind(&mut self);
    /// Stops (or resumes) handing out records while the subscription stays alive: polls
    /// keep serving the broker's protocol (rebalances, liveness) and read nothing, and
    /// reading resumes where it stopped. Used when a route holds as much as it may.
    fn set_paused(&mut self, paused: bool);
    /// Makes the last commit durable before the source is dropped.
    fn close(&mut self) -> Result<(), BrokerError> {
        Ok(())
    }
    /// Where the subscription stands on each partition it reads now: its committed position
    /// and the partition's end. `None` when not measured this time (a source may measure
    /// only now and then, when that asks the broker); the last measure then stands.
    fn positions(&mut self) -> Option<Vec<PartitionPosition>> {
        None
    }
    /// Whether the subscription has joined its broker and been given its share of the
    /// partitions (possibly none, in a group with more members than partitions).
    fn is_assigned(&self) -> bool {
        true
    }
    /// Installs what to call when partitions are taken away (a consumer-group rebalance):
    /// the hook finishes what it holds of them and returns their commit positions, which
    /// the source commits before letting them go.
    fn on_revoke(&mut self, _hook: RevokeHook) {}
    /// Where a route reading this source must publish, when its commits are transactions
    /// that hold what it publishes (an exactly-once route on Kafka); `None` for the
    /// broker's shared sink.
    fn transactional_sink(&self) -> Option<Arc<dyn Sink>> {
        None
    }
}

/// Called with the partitions being revoked; finishes what the route holds of them.
pub type RevokeHook = Box<dyn FnMut(&[u32]) -> Released + Send>;

/// What a route finished of partitions being revoked.
#[derive(Debug, Default)]
pub struct Released {
    /// `(partition, next offset)` to commit: of the revoked partitions, and on a
    /// transactional source of every partition the route reads (its transaction holds
    /// what all of them published).
    pub positions: Vec<(u32, u64)>,
    /// Whether the route holds nothing unfinished any more (a transactional source may
    /// commit only then).
    pub settled: bool,
}

/// Called once with the result of one [`Sink::publish`]: `Ok` when every event is durable,
/// else the events that were not, with why (the others of the batch are durable).
///
/// It may run on a broker client's own thread: it must not block, nor publish.
pub type Completion = Box<dyn FnOnce(Result<(), Vec<Undelivered>>) + Send>;

/// Publishes events to topics.
pub trait Sink: Send + Sync {
    /// Publishes `events` (each to its `topic`), then calls `done` once every one of them is
    /// durable or has failed. Never blocks for long: when the client cannot take more, the
    /// events come back as [`BrokerError::Unavailable`].
    fn publish(&self, events: Vec<Event>, done: Completion);
    /// Waits up to `timeout` for everything published to be acknowledged.
    fn flush(&self, _timeout: Duration) {}
    /// Whether the broker answers now (asked before a run ends for being idle, so an outage
    /// is never mistaken for having nothing to do).
    fn is_reachable(&self) -> bool {
        true
    }
    /// Why the sink can never publish again, once that has happened (Kafka: a fatal error of
    /// the idempotent producer). The run ends on it; a restart resumes from the commits.
    fn fatal_error(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::ResetTo;

    #[test]
    fn reset_targets_parse_and_mistakes_say_what_is_expected() {
        assert_eq!("beginning".parse(), Ok(ResetTo::Beginning));
        assert_eq!("end".parse(), Ok(ResetTo::End));
        assert_eq!("offset:42".parse(), Ok(ResetTo::Offset(42)));
        assert_eq!(
            "time:2026-12-01T10:00:00.5Z".parse(),
            Ok(ResetTo::Time(1_796_119_200_500))
        );
        let wrong = "offset:-1".parse::<ResetTo>().unwrap_err();
        assert!(wrong.contains("not an offset"), "{wrong}");
        let wrong = "time:yesterday".parse::<ResetTo>().unwrap_err();
        assert!(wrong.contains("RFC 3339"), "{wrong}");
        let wrong = "start".parse::<ResetTo>().unwrap_err();
        assert!(
            wrong.contains("beginning, end, offset:N or time:RFC3339"),
            "{wrong}"
        );
    }
}
