//! Brokers, seen from the dispatcher: a [`Source`] per subscriber and a shared [`Sink`].
//!
//! The dispatcher knows only these traits. Each broker module turns its wire format into
//! [`Delivery`]s (decoded events, or undecodable records with the reason) and publishes
//! [`Event`]s, acknowledging them through a [`Completion`] once they are durable.
//!
//! # Layout
//! - [`embedded`]: the in-process broker (the default).
//! - [`kafka`]: Apache Kafka through librdkafka.
//! - [`files`]: CloudEvents JSON-lines inputs (files → topics) and outputs (topics → files).
//! - [`edges`]: the threads that feed the input files and write the outputs during a run.

pub(crate) mod edges;
pub(crate) mod embedded;
pub(crate) mod files;
pub(crate) mod kafka;

use crate::config::{BrokerConfig, BrokerKind, Config};
use crate::event::{Event, Header};
use crate::metrics::PartitionPosition;
use crate::shutdown::Shutdown;
use embedded::EmbeddedBroker;
pub(crate) use embedded::InputGuard;
use files::FeedReport;
use kafka::connect::{ClusterInfo, ConnectError};
use kafka::{KafkaBroker, KafkaSettings};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The broker a runtime uses, chosen by `[broker] kind`.
#[derive(Clone)]
pub(crate) enum Broker {
    /// In-process topics.
    Embedded(EmbeddedBroker),
    /// A Kafka cluster.
    Kafka(Arc<KafkaBroker>),
}

impl Broker {
    /// Connects to (or creates) the broker `config` describes.
    pub fn open(config: &BrokerConfig) -> Result<Broker, BrokerError> {
        Ok(match config.kind.get_ref() {
            BrokerKind::Embedded => {
                Broker::Embedded(EmbeddedBroker::new(*config.partitions.get_ref()))
            }
            BrokerKind::Kafka => {
                Broker::Kafka(Arc::new(KafkaBroker::connect(kafka_settings(config))?))
            }
        })
    }

    /// A new subscription to `topic` for `subscriber` (a route, or an output).
    pub fn subscribe(&self, topic: &str, subscriber: &str) -> Result<Box<dyn Source>, BrokerError> {
        Ok(match self {
            Broker::Embedded(broker) => Box::new(broker.subscribe(topic)),
            Broker::Kafka(broker) => Box::new(broker.subscribe(topic, subscriber)?),
        })
    }

    /// Where events are published.
    pub fn sink(&self) -> Arc<dyn Sink> {
        match self {
            Broker::Embedded(broker) => broker.sink(),
            Broker::Kafka(broker) => broker.clone(),
        }
    }

    /// The embedded broker, if that is the one.
    pub fn embedded(&self) -> Option<&EmbeddedBroker> {
        match self {
            Broker::Embedded(broker) => Some(broker),
            Broker::Kafka(_) => None,
        }
    }

    /// Records kept in `topic` now (each broker question awaited up to `timeout`).
    pub fn depth(&self, topic: &str, timeout: Duration) -> Result<u64, BrokerError> {
        match self {
            Broker::Embedded(broker) => Ok(broker.depth(topic)),
            Broker::Kafka(broker) => broker.depth(topic, timeout),
        }
    }

    /// `embedded` or `kafka`.
    pub fn kind(&self) -> &'static str {
        match self {
            Broker::Embedded(_) => "embedded",
            Broker::Kafka(_) => "kafka",
        }
    }

    /// Whether nothing can arrive any more (only a finite embedded run ever is).
    pub fn is_exhausted(&self) -> bool {
        self.embedded().is_some_and(EmbeddedBroker::is_exhausted)
    }

    /// Holds the run open while inputs are fed (embedded broker).
    pub fn open_input(&self) -> Option<InputGuard> {
        self.embedded().map(EmbeddedBroker::open_input)
    }

    /// Feeds a CloudEvents JSON-lines file into `topic`.
    pub fn feed(&self, topic: &str, path: &Path, stop: &Shutdown) -> std::io::Result<FeedReport> {
        match self {
            Broker::Embedded(broker) => files::feed_file(broker, topic, path, stop),
            Broker::Kafka(broker) => files::feed_kafka(broker, topic, path, stop),
        }
    }
}

/// On Kafka, reaches the cluster (and, with `create_topics` off, finds every topic the
/// config names) before anything is started, so a cluster that cannot be used gives one
/// error with the reason within `connect_timeout`, and nothing else. `None` on the embedded
/// broker, which has nothing to reach.
pub(crate) fn check_connection(
    config: &Config,
    stop: &Shutdown,
) -> Result<Option<ClusterInfo>, ConnectError> {
    let settings = &config.spec.broker;
    if *settings.kind.get_ref() != BrokerKind::Kafka {
        return Ok(None);
    }
    let needed = if settings.create_topics {
        Vec::new()
    } else {
        config.named_topics()
    };
    let kafka = kafka_settings(settings);
    let timeout = settings.connect_timeout.get_ref().0;
    tracing::info!(address = %kafka.bootstrap_servers, timeout_ms = timeout.as_millis() as u64, "connecting to Kafka");
    let info = kafka::connect::check_connection(&kafka, &needed, timeout, stop)?;
    tracing::info!(address = %kafka.bootstrap_servers, brokers = info.brokers, "connected to Kafka");
    Ok(Some(info))
}

/// How to reach the Kafka cluster `config` describes.
pub(crate) fn kafka_settings(config: &BrokerConfig) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: config
            .bootstrap_servers
            .as_ref()
            .map(|b| b.get_ref().clone())
            .unwrap_or_default(),
        group: config
            .group
            .as_ref()
            .map_or_else(|| "plexus".to_owned(), |g| g.get_ref().clone()),
        properties: config
            .properties
            .iter()
            .map(|(key, value)| (key.get_ref().clone(), value.clone()))
            .chain(config.security.properties.clone())
            .collect(),
        secrets: config.security.secrets.clone(),
        tokens: kafka::oauth::TokenSource::new(config.security.oauth_token_file.clone()),
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
}

/// Called with the partitions being revoked; returns `(partition, next offset)` to commit.
pub type RevokeHook = Box<dyn FnMut(&[u32]) -> Vec<(u32, u64)> + Send>;

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
