//! Redis Streams: a topic is a stream (or `shards` streams `TOPIC:0`..`TOPIC:N-1`, an event
//! going to the one its key hashes to), each subscriber reads in its own consumer group
//! (`GROUP.SUBSCRIBER`, so routes fan out and processes with the same config share a route's
//! entries), and events are written with pipelined `XADD`s.
//!
//! Delivery is at-least-once, as on Kafka: an entry is acknowledged (`XACK`) only once it and
//! everything it emitted is finished, which the route's offset tracker decides. What a
//! consumer read and did not acknowledge stays in the group's pending list: a restarted
//! route reads its own again, and entries a dead consumer held for `claim_idle` are taken
//! over (`XAUTOCLAIM`) by a living one; an entry delivered more than `max_deliveries` times
//! is dead-lettered instead (`deliveries-exhausted`). A live consumer keeps resetting the
//! idle time of what it holds, so a slow event is not taken from it.
//!
//! Offsets are the entry ids, packed ([`entry::pack_id`]); they ascend along a stream, but
//! an entry taken over from a dead consumer arrives after younger ones, so a source
//! acknowledges in delivery order what the tracker says is finished.
//!
//! # Layout
//! - this module: [`Redis`], the broker, and [`Topology`], which streams a topic is.
//! - [`connect`]: reaching the server at start, or saying why not.
//! - [`entry`]: the CloudEvents mapping of stream entries, and reply parsing.
//! - [`group`]: a consumer group's positions, read and moved from outside it.
//! - [`link`]: a connection made again after it breaks.
//! - [`shards`]: which consumer reads which shard of a sharded topic.
//! - [`sink`]: the writer thread: pipelined `XADD`s, acknowledged per batch.
//! - [`source`]: a subscriber's consumer: reading, acknowledging, reclaiming.

pub mod connect;
pub mod entry;
pub mod group;
pub mod link;
pub mod shards;
pub mod sink;
pub mod source;

use super::{Broker, BrokerError, GroupPosition, ResetTo, Sink, Source};
use crate::config::{Config, RedisConfig};
use crate::event::key_hash;
use std::sync::Arc;
use std::time::Duration;

/// How long one command may take before the connection is given up on.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Which streams a topic is, and how long they are kept.
#[derive(Debug, Clone)]
pub struct Topology {
    config: RedisConfig,
}

impl Topology {
    /// The streams of `topic`, shard by shard.
    pub fn streams(&self, topic: &str) -> Vec<String> {
        if !self.is_sharded(topic) {
            return vec![topic.to_owned()];
        }
        (0..self.config.shards(topic))
            .map(|shard| format!("{topic}:{shard}"))
            .collect()
    }

    /// Whether `topic` is split into shards, each read by one consumer of a route at a time.
    pub fn is_sharded(&self, topic: &str) -> bool {
        self.config.is_sharded(topic)
    }

    /// The stream an event of `topic` goes to: by its key's hash, or its id's when it has
    /// none (so the same event always lands in the same shard).
    pub fn stream_for(&self, topic: &str, key: Option<&[u8]>, id: &str) -> String {
        if !self.is_sharded(topic) {
            return topic.to_owned();
        }
        let hash = key_hash(key.unwrap_or(id.as_bytes()));
        format!("{topic}:{}", hash % u64::from(self.config.shards(topic)))
    }

    /// About how many entries each stream of `topic` keeps, if trimmed.
    pub fn maxlen(&self, topic: &str) -> Option<u64> {
        self.config.maxlen(topic)
    }
}

/// A connection to `client` whose commands give up after `timeout`.
pub(crate) fn connection(
    client: &redis::Client,
    timeout: Duration,
) -> Result<redis::Connection, BrokerError> {
    let con = client
        .get_connection_with_timeout(timeout)
        .map_err(unavailable)?;
    con.set_read_timeout(Some(timeout)).map_err(unavailable)?;
    con.set_write_timeout(Some(timeout)).map_err(unavailable)?;
    Ok(con)
}

/// A client error, as a broker error worth retrying.
pub(crate) fn unavailable(error: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(format!("Redis: {error}"))
}

/// The Redis broker a run uses.
pub struct Redis {
    client: redis::Client,
    topology: Arc<Topology>,
    sink: Arc<sink::RedisSink>,
    settings: Arc<source::SourceSettings>,
}

impl Redis {
    /// Opens the broker `config` names (its `[broker.redis]` table).
    pub fn open(config: &Config) -> Result<Redis, BrokerError> {
        let redis = config
            .spec
            .broker
            .redis()
            .ok_or_else(|| BrokerError::Refused("no [broker.redis] table".into()))?;
        let client = redis::Client::open(redis.url()).map_err(unavailable)?;
        let topology = Arc::new(Topology {
            config: redis.clone(),
        });
        let settings = Arc::new(source::SourceSettings {
            group: redis.group().to_owned(),
            claim_idle: redis.claim_idle.get_ref().0,
            max_deliveries: *redis.max_deliveries.get_ref(),
            consumer_prefix: consumer_prefix(),
        });
        Ok(Redis {
            sink: Arc::new(sink::RedisSink::start(client.clone(), topology.clone())?),
            client,
            topology,
            settings,
        })
    }
}

/// `HOST-PID`: what names this process's consumers, so an operator reading `XINFO
/// CONSUMERS` sees which process holds what.
fn consumer_prefix() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "plexus".to_owned());
    format!("{host}-{}", std::process::id())
}

impl Broker for Redis {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn subscribe(&self, topic: &str, subscriber: &str) -> Result<Box<dyn Source>, BrokerError> {
        Ok(Box::new(source::RedisSource::new(
            self.client.clone(),
            self.settings.clone(),
            topic,
            self.topology.streams(topic),
            self.topology.is_sharded(topic),
            subscriber,
        )))
    }

    fn sink(&self) -> Arc<dyn Sink> {
        self.sink.clone()
    }

    fn depth(&self, topic: &str, timeout: Duration) -> Result<u64, BrokerError> {
        let mut con = connection(&self.client, timeout)?;
        let mut pipe = redis::pipe();
        for stream in self.topology.streams(topic) {
            pipe.cmd("XLEN").arg(stream);
        }
        let lengths: Vec<u64> = pipe.query(&mut con).map_err(unavailable)?;
        Ok(lengths.iter().sum())
    }

    fn publish_raw(&self, topic: &str, raw: &[u8]) -> Result<(), BrokerError> {
        let mut con = connection(&self.client, IO_TIMEOUT)?;
        let stream = self
            .topology
            .stream_for(topic, None, &String::from_utf8_lossy(raw));
        sink::xadd(
            &mut redis::cmd("XADD"),
            &stream,
            self.topology.maxlen(topic),
        )
        .arg(DATA_FIELD)
        .arg(raw)
        .exec(&mut con)
        .map_err(unavailable)
    }

    fn group_positions(
        &self,
        topic: &str,
        subscriber: &str,
    ) -> Result<Vec<GroupPosition>, BrokerError> {
        self.positions_of(topic, subscriber)
    }

    fn reset_positions(
        &self,
        topic: &str,
        subscriber: &str,
        to: ResetTo,
    ) -> Result<Vec<GroupPosition>, BrokerError> {
        self.reset_of(topic, subscriber, to)
    }
}

/// The field that holds an entry's data.
const DATA_FIELD: &str = "data";

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(toml: &str) -> Topology {
        let config: RedisConfig = toml::from_str(toml).unwrap();
        Topology { config }
    }

    #[test]
    fn a_sharded_topic_spreads_by_key_and_keeps_a_key_in_one_stream() {
        let t = topology(
            "url = \"redis://x\"\n[topics.orders]\nshards = 4\n[topics.one]\nshards = 1\n",
        );
        assert_eq!(
            t.streams("one"),
            ["one:0"],
            "one shard: still owned by one consumer"
        );
        assert_eq!(
            t.streams("orders"),
            ["orders:0", "orders:1", "orders:2", "orders:3"]
        );
        assert_eq!(t.streams("other"), ["other"]);
        let first = t.stream_for("orders", Some(b"c-1"), "a");
        assert_eq!(t.stream_for("orders", Some(b"c-1"), "b"), first);
        let used: std::collections::BTreeSet<String> = (0..64)
            .map(|k| t.stream_for("orders", Some(format!("c-{k}").as_bytes()), "x"))
            .collect();
        assert_eq!(used.len(), 4);
        assert_eq!(t.stream_for("other", Some(b"c-1"), "a"), "other");
    }
}
