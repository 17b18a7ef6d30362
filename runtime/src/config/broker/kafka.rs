//! `[broker.kafka]`: how to reach a Kafka cluster and how to name consumer groups. The
//! security tables under it are [`super::kafka_security`]'s.

use super::kafka_security::{KafkaSecurity, SaslConfig, TlsConfig};
use crate::config::error::{ConfigError, Locator};
use crate::config::secret::SecretSource;
use crate::config::units::Duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// `[broker.kafka]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap_servers = "127.0.0.1:9092"`: required.
    pub bootstrap_servers: Option<Spanned<String>>,
    /// `group = "plexus"`: route `R` consumes in group `GROUP.R`.
    pub group: Option<Spanned<String>>,
    /// `instance = "plexus-0"`: this process's name among those sharing the group, stable
    /// across its restarts and unique among them; exactly-once routes name their
    /// transactional producers after it (`GROUP.ROUTE.INSTANCE`), so a restart fences its
    /// predecessor at once. Unset, each start takes a new random name.
    pub instance: Option<Spanned<String>>,
    /// `create_topics = true`: create missing route, dead-letter and input topics at start
    /// with `[broker] partitions` partitions.
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// `connect_timeout = "10s"`: how long to wait for the cluster at start (and in
    /// `plexus check --connect`) before failing with the reason.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Spanned<Duration>,
    /// `[broker.kafka.properties]`: librdkafka properties passed through to every consumer
    /// and the producer (`"compression.codec" = "zstd"`, ...). Secrets are refused here:
    /// they go in `[broker.kafka.secrets]`.
    #[serde(default)]
    pub properties: BTreeMap<Spanned<String>, String>,
    /// `[broker.kafka.tls]`: connect over TLS.
    pub tls: Option<Spanned<TlsConfig>>,
    /// `[broker.kafka.sasl]`: authenticate with SASL.
    pub sasl: Option<Spanned<SaslConfig>>,
    /// `[broker.kafka.secrets]`: librdkafka properties whose values are read from the
    /// environment or a file: `"ssl.keystore.password" = { env = "NAME" }`.
    #[serde(default)]
    pub secrets: BTreeMap<Spanned<String>, Spanned<SecretSource>>,
    /// What `tls`, `sasl` and `secrets` come to, read when the file is loaded.
    #[serde(skip)]
    pub security: KafkaSecurity,
}

fn default_true() -> bool {
    true
}

fn default_connect_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration(std::time::Duration::from_secs(10)))
}

impl KafkaConfig {
    /// The consumer-group prefix (`plexus` unless set).
    pub fn group(&self) -> &str {
        self.group.as_ref().map_or("plexus", |g| g.get_ref())
    }

    /// This process's name for transactional ids: `instance`, or `None` for a random one.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_ref().map(|i| i.get_ref().as_str())
    }

    /// `bootstrap_servers` (empty when missing, which validation refuses).
    pub fn bootstrap_servers(&self) -> &str {
        self.bootstrap_servers.as_ref().map_or("", |b| b.get_ref())
    }

    /// Checks the table at `table`; every problem goes to `errors`.
    pub(super) fn check(
        &self,
        table: std::ops::Range<usize>,
        at: &Locator<'_>,
        errors: &mut Vec<ConfigError>,
    ) {
        if self.bootstrap_servers().is_empty() {
            let span = self.bootstrap_servers.as_ref().map_or(table, Spanned::span);
            errors.push(at.error(
                Some(span),
                "`[broker.kafka]` needs `bootstrap_servers`, e.g. \"127.0.0.1:9092\"",
            ));
        }
        if self.connect_timeout.get_ref().0.is_zero() {
            errors.push(at.error(
                Some(self.connect_timeout.span()),
                "connect_timeout must be more than 0ms",
            ));
        }
        if let Some(group) = &self.group
            && group.get_ref().is_empty()
        {
            errors.push(at.error(Some(group.span()), "group must not be empty"));
        }
        if let Some(instance) = &self.instance
            && !is_plain_name(instance.get_ref())
        {
            errors.push(at.error(
                Some(instance.span()),
                format!(
                    "instance must be 1 to 64 letters, digits, `.`, `_` or `-`, found {:?}",
                    instance.get_ref()
                ),
            ));
        }
        for key in self.properties.keys() {
            if key.get_ref() == "transactional.id" {
                errors.push(at.error(
                    Some(key.span()),
                    "`transactional.id` is set by Plexus for each exactly-once route (GROUP.ROUTE.INSTANCE); name this process with `instance` instead",
                ));
            }
        }
    }
}

/// Whether `name` can be part of a transactional id as it is.
fn is_plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
