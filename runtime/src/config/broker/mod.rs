//! `[broker]`: which broker the routes read from and write to, and that broker's own table
//! (`[broker.kafka]`, `[broker.redis]`). Each broker's settings are parsed and validated by
//! its own module here; this one only picks the broker and says where keys that moved have
//! gone.
//!
//! # Layout
//! - this module: `[broker]` ([`BrokerConfig`], [`BrokerKind`]) and the keys that moved.
//! - [`kafka`]: `[broker.kafka]` ([`KafkaConfig`]).
//! - [`kafka_security`]: `[broker.kafka.tls]`, `[broker.kafka.sasl]`, `[broker.kafka.secrets]`.
//! - [`redis`]: `[broker.redis]` ([`RedisConfig`]).

pub mod kafka;
pub mod kafka_security;
pub mod redis;

pub use kafka::KafkaConfig;
pub use redis::{RedisConfig, RedisTopic};

use super::error::{ConfigError, Locator};
use super::units::Duration;
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

/// The most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// Which broker Plexus talks to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// The in-process broker: no setup, nothing persisted.
    #[default]
    Embedded,
    /// Apache Kafka (or a compatible broker), through librdkafka.
    Kafka,
    /// Redis Streams.
    Redis,
}

impl BrokerKind {
    /// `embedded`, `kafka` or `redis`, as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerKind::Embedded => "embedded",
            BrokerKind::Kafka => "kafka",
            BrokerKind::Redis => "redis",
        }
    }
}

/// `[broker]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// `kind = "embedded"` (the default), `"kafka"` or `"redis"`.
    #[serde(default = "default_kind")]
    pub kind: Spanned<BrokerKind>,
    /// `partitions = 4`: partitions per topic of the embedded broker, and of the topics
    /// Plexus creates on Kafka (1 to 1024). Redis streams are split by `shards` instead.
    #[serde(default = "default_partitions")]
    pub partitions: Spanned<u32>,
    /// `idle_exit = "5s"`: Kafka and Redis; end the run once inputs are fed and no route or
    /// output has received anything for this long (batch-style runs, tests). Default: run
    /// until SIGINT/SIGTERM.
    pub idle_exit: Option<Spanned<Duration>>,
    /// `[broker.kafka]`: how to reach Kafka; required with `kind = "kafka"`.
    pub kafka: Option<Spanned<KafkaConfig>>,
    /// `[broker.redis]`: how to reach Redis; required with `kind = "redis"`.
    pub redis: Option<Spanned<RedisConfig>>,
    // The Kafka keys `[broker]` held before each broker had its own table: read only
    // to say where they belong now.
    bootstrap_servers: Option<Spanned<toml::Value>>,
    group: Option<Spanned<toml::Value>>,
    create_topics: Option<Spanned<toml::Value>>,
    connect_timeout: Option<Spanned<toml::Value>>,
    properties: Option<Spanned<toml::Value>>,
    tls: Option<Spanned<toml::Value>>,
    sasl: Option<Spanned<toml::Value>>,
    secrets: Option<Spanned<toml::Value>>,
}

impl std::fmt::Debug for BrokerConfig {
    // Without the moved keys, which a valid config never has.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("kind", &self.kind)
            .field("partitions", &self.partitions)
            .field("idle_exit", &self.idle_exit)
            .field("kafka", &self.kafka)
            .field("redis", &self.redis)
            .finish()
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            kind: default_kind(),
            partitions: default_partitions(),
            idle_exit: None,
            kafka: None,
            redis: None,
            bootstrap_servers: None,
            group: None,
            create_topics: None,
            connect_timeout: None,
            properties: None,
            tls: None,
            sasl: None,
            secrets: None,
        }
    }
}

fn default_kind() -> Spanned<BrokerKind> {
    Spanned::new(0..0, BrokerKind::Embedded)
}

fn default_partitions() -> Spanned<u32> {
    Spanned::new(0..0, 4)
}

impl BrokerConfig {
    /// `[broker.kafka]`, when the broker is Kafka.
    pub fn kafka(&self) -> Option<&KafkaConfig> {
        self.kafka
            .as_ref()
            .filter(|_| *self.kind.get_ref() == BrokerKind::Kafka)
            .map(Spanned::get_ref)
    }

    /// `[broker.redis]`, when the broker is Redis.
    pub fn redis(&self) -> Option<&RedisConfig> {
        self.redis
            .as_ref()
            .filter(|_| *self.kind.get_ref() == BrokerKind::Redis)
            .map(Spanned::get_ref)
    }

    /// Checks `[broker]` and the table of the broker chosen; every problem goes to `errors`.
    pub(super) fn check(&self, at: &Locator<'_>, errors: &mut Vec<ConfigError>) {
        let moved = errors.len();
        self.check_moved_keys(at, errors);
        let moved = errors.len() > moved;
        let kind = *self.kind.get_ref();
        let partitions = &self.partitions;
        if !(1..=MAX_PARTITIONS).contains(partitions.get_ref()) {
            errors.push(at.error(
                Some(partitions.span()),
                format!(
                    "partitions must be between 1 and {MAX_PARTITIONS}, found {}",
                    partitions.get_ref()
                ),
            ));
        }
        let tables = [
            (BrokerKind::Kafka, self.kafka.as_ref().map(Spanned::span)),
            (BrokerKind::Redis, self.redis.as_ref().map(Spanned::span)),
        ];
        for (table_kind, span) in tables {
            if let Some(span) = span
                && table_kind != kind
            {
                errors.push(at.error(
                    Some(span),
                    format!(
                        "`[broker.{}]` configures the {} broker, but `kind` is `{}`: set `kind = \"{}\"` or remove the table",
                        table_kind.as_str(),
                        table_kind.as_str(),
                        kind.as_str(),
                        table_kind.as_str()
                    ),
                ));
            }
        }
        let needs_table = |table: Option<std::ops::Range<usize>>, example: &str| {
            table.is_none().then(|| {
                at.error(
                    Some(self.kind.span()),
                    format!(
                        "broker kind `{}` needs a `[broker.{}]` table, e.g.\n  [broker.{}]\n  {example}",
                        kind.as_str(),
                        kind.as_str(),
                        kind.as_str()
                    ),
                )
            })
        };
        match kind {
            BrokerKind::Embedded => {
                if let Some(idle) = &self.idle_exit {
                    errors.push(at.error(
                        Some(idle.span()),
                        "`idle_exit` is for Kafka and Redis; an embedded run ends by itself when its inputs are done",
                    ));
                }
            }
            BrokerKind::Kafka => match &self.kafka {
                Some(kafka) => kafka.get_ref().check(kafka.span(), at, errors),
                // Keys written in `[broker]` were already told where to go.
                None if moved => {}
                None => errors.extend(needs_table(None, "bootstrap_servers = \"127.0.0.1:9092\"")),
            },
            BrokerKind::Redis => {
                if !partitions.span().is_empty() {
                    errors.push(at.error(
                        Some(partitions.span()),
                        "`partitions` is not a Redis setting: a topic is one stream, or several with `[broker.redis.topics.\"TOPIC\"] shards = N`",
                    ));
                }
                match &self.redis {
                    Some(redis) => redis.get_ref().check(redis.span(), at, errors),
                    None => {
                        errors.extend(needs_table(None, "url = \"redis://127.0.0.1:6379/0\""));
                    }
                }
            }
        }
    }

    /// Reads what the chosen broker's table refers to (files, secrets), relative to
    /// `base_dir`.
    pub(super) fn resolve(
        &mut self,
        base_dir: &Path,
        at: &Locator<'_>,
    ) -> Result<(), Vec<ConfigError>> {
        if *self.kind.get_ref() == BrokerKind::Kafka
            && let Some(kafka) = &mut self.kafka
        {
            let kafka = kafka.get_mut();
            kafka.security = kafka_security::resolve(kafka, base_dir, at)?;
        }
        Ok(())
    }
}

impl BrokerConfig {
    /// One error per key that moved to `[broker.kafka]`, saying where it goes now.
    fn check_moved_keys(&self, at: &Locator<'_>, errors: &mut Vec<ConfigError>) {
        let keys = [
            ("bootstrap_servers", &self.bootstrap_servers, false),
            ("group", &self.group, false),
            ("create_topics", &self.create_topics, false),
            ("connect_timeout", &self.connect_timeout, false),
            ("properties", &self.properties, true),
            ("tls", &self.tls, true),
            ("sasl", &self.sasl, true),
            ("secrets", &self.secrets, true),
        ];
        for (key, value, table) in keys {
            if let Some(value) = value {
                let advice = if table {
                    format!("rename the table `[broker.kafka.{key}]`")
                } else {
                    format!("move `{key} = ...` under a `[broker.kafka]` table")
                };
                errors.push(at.error(
                    Some(value.span()),
                    format!(
                        "`{key}` now belongs to `[broker.kafka]` (each broker has its own table now): {advice}"
                    ),
                ));
            }
        }
    }
}
