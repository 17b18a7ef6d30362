//! `[broker.redis]`: how to reach a Redis server whose streams are the topics, how
//! consumer groups are named, when entries left pending are reclaimed, and how streams are
//! trimmed and split.

use crate::config::error::{ConfigError, Locator};
use crate::config::units::Duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The most streams one topic may be split into.
pub const MAX_SHARDS: u32 = 1024;

/// `[broker.redis]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `url = "redis://127.0.0.1:6379/0"`: required (`redis://[user:password@]host:port/db`).
    pub url: Option<Spanned<String>>,
    /// `group = "plexus"`: route `R` reads in consumer group `GROUP.R`.
    pub group: Option<Spanned<String>>,
    /// `connect_timeout = "10s"`: how long to wait for the server at start (and in
    /// `plexus check --connect`) before failing with the reason.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Spanned<Duration>,
    /// `claim_idle = "30s"`: an entry another consumer has held unacknowledged for this long
    /// is taken over (its consumer is presumed dead). Longer than a plugin's slowest event
    /// with its retries; a live consumer keeps refreshing what it holds.
    #[serde(default = "default_claim_idle")]
    pub claim_idle: Spanned<Duration>,
    /// `max_deliveries = 5`: an entry delivered this many times without being finished
    /// (its consumers died on it) goes to the route's dead-letter stream instead.
    #[serde(default = "default_max_deliveries")]
    pub max_deliveries: Spanned<u32>,
    /// `maxlen = 1000000`: trim every stream Plexus writes to about this many entries
    /// (`XADD ... MAXLEN ~`). Default: no trimming.
    pub maxlen: Option<Spanned<u64>>,
    /// `[broker.redis.topics."TOPIC"]`: settings of one topic.
    #[serde(default)]
    pub topics: BTreeMap<Spanned<String>, Spanned<RedisTopic>>,
}

/// `[broker.redis.topics."TOPIC"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTopic {
    /// `shards = 4`: the topic is this many streams, `TOPIC:0` to `TOPIC:N-1`, an event
    /// going to the one its key hashes to, and each read by one consumer of a route at a
    /// time, so per-key order holds across processes. Unset: the topic is the stream
    /// `TOPIC`, shared by all the route's consumers.
    pub shards: Option<Spanned<u32>>,
    /// `maxlen = 100000`: trim this topic's streams to about this many entries each.
    pub maxlen: Option<Spanned<u64>>,
}

fn default_connect_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(10)))
}

fn default_claim_idle() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(30)))
}

fn default_max_deliveries() -> Spanned<u32> {
    Spanned::new(0..0, 5)
}

impl RedisConfig {
    /// The server's URL (empty when missing, which validation refuses).
    pub fn url(&self) -> &str {
        self.url.as_ref().map_or("", |u| u.get_ref())
    }

    /// The consumer-group prefix (`plexus` unless set).
    pub fn group(&self) -> &str {
        self.group.as_ref().map_or("plexus", |g| g.get_ref())
    }

    /// Whether `topic` is split into shards (`shards` set, even to 1): then its streams are
    /// `TOPIC:N`, and each is read by one consumer of a route at a time.
    pub fn is_sharded(&self, topic: &str) -> bool {
        self.topic(topic).is_some_and(|t| t.shards.is_some())
    }

    /// How many streams `topic` is split into.
    pub fn shards(&self, topic: &str) -> u32 {
        self.topic(topic)
            .and_then(|t| t.shards.as_ref())
            .map_or(1, |s| *s.get_ref())
    }

    /// About how many entries each stream of `topic` keeps, if trimmed.
    pub fn maxlen(&self, topic: &str) -> Option<u64> {
        self.topic(topic)
            .and_then(|t| t.maxlen.as_ref())
            .or(self.maxlen.as_ref())
            .map(|m| *m.get_ref())
    }

    fn topic(&self, topic: &str) -> Option<&RedisTopic> {
        self.topics
            .iter()
            .find(|(name, _)| name.get_ref() == topic)
            .map(|(_, t)| t.get_ref())
    }

    /// Checks the table at `table`; every problem goes to `errors`.
    pub(super) fn check(
        &self,
        table: std::ops::Range<usize>,
        at: &Locator<'_>,
        errors: &mut Vec<ConfigError>,
    ) {
        match &self.url {
            None => errors.push(at.error(
                Some(table),
                "`[broker.redis]` needs `url`, e.g. \"redis://127.0.0.1:6379/0\"",
            )),
            Some(url) => {
                if let Err(problem) = check_url(url.get_ref()) {
                    errors.push(at.error(Some(url.span()), problem));
                }
            }
        }
        if let Some(group) = &self.group
            && group.get_ref().is_empty()
        {
            errors.push(at.error(Some(group.span()), "group must not be empty"));
        }
        for (value, name) in [
            (&self.connect_timeout, "connect_timeout"),
            (&self.claim_idle, "claim_idle"),
        ] {
            if value.get_ref().0 < std::time::Duration::from_millis(100) {
                errors.push(at.error(
                    Some(value.span()),
                    format!("{name} must be at least 100ms, found {}", value.get_ref()),
                ));
            }
        }
        if *self.max_deliveries.get_ref() == 0 {
            errors.push(at.error(
                Some(self.max_deliveries.span()),
                "max_deliveries must be at least 1",
            ));
        }
        let maxlens = self
            .topics
            .values()
            .filter_map(|t| t.get_ref().maxlen.as_ref())
            .chain(&self.maxlen);
        for maxlen in maxlens {
            if *maxlen.get_ref() == 0 {
                errors.push(at.error(
                    Some(maxlen.span()),
                    "maxlen must be at least 1 (leave it out to keep every entry)",
                ));
            }
        }
        for (name, topic) in &self.topics {
            if let Err(problem) = name.get_ref().parse::<crate::config::units::TopicName>() {
                errors.push(at.error(Some(name.span()), problem));
            }
            if let Some(shards) = &topic.get_ref().shards
                && !(1..=MAX_SHARDS).contains(shards.get_ref())
            {
                errors.push(at.error(
                    Some(shards.span()),
                    format!(
                        "shards must be between 1 and {MAX_SHARDS}, found {}",
                        shards.get_ref()
                    ),
                ));
            }
        }
    }
}

/// Whether `url` is one Plexus can connect with.
fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") {
        return Err(
            "TLS to Redis (`rediss://`) is not supported yet: reach the server over a TLS tunnel, or use `redis://` on a trusted network".into(),
        );
    }
    if !url.starts_with("redis://") && !url.starts_with("unix://") {
        return Err(format!(
            "`{url}` is not a Redis URL: expected `redis://host:port/db` (or `unix:///path/to/socket`)"
        ));
    }
    redis::parse_redis_url(url)
        .map(drop)
        .ok_or_else(|| format!("`{url}` is not a valid Redis URL"))
}
