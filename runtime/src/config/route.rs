//! `[routes.NAME]`: the topic a route reads, the plugin it hands events to, and how it
//! orders, retries and dead-letters them.

use super::units::{ByteSize, Duration, TopicName};
use serde::Deserialize;
use toml::Spanned;

/// `[routes.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `topic = "shop.orders"`: where events come from.
    pub topic: TopicName,
    /// `types = ["shop.order.placed.v1"]`: only these CloudEvents types reach the plugin
    /// (the rest count as done); absent means every type.
    pub types: Option<Vec<String>>,
    /// `plugin = "order-validator"`: a key of `[plugins]`.
    pub plugin: Spanned<String>,
    /// `concurrency = 4`: events handled at once; events with the same key stay in order.
    #[serde(default = "default_concurrency")]
    pub concurrency: Spanned<u32>,
    /// `[routes.NAME.retry]`: what a *retry* error leads to.
    #[serde(default)]
    pub retry: RetryConfig,
    /// `dead_letter = "shop.orders.dlq"`: where failed events go (default `NAME.dlq`).
    pub dead_letter: Option<Spanned<TopicName>>,
    /// `max_in_flight = "64MiB"`: the most bytes of events (and what they emitted) the
    /// route holds unfinished, queued, in a plugin, retried or being published; at this
    /// the route stops reading until some of it is finished.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: ByteSize,
    /// `dedupe = { window = "24h" }`: skip (count as `duplicate`) an event whose source and
    /// id this route finished within the window, remembered in the state store.
    pub dedupe: Option<DedupeConfig>,
    /// `delivery = "exactly-once"`: what the route emits, its dead letters and the positions
    /// it consumed are committed together in one Kafka transaction (Kafka only; the default
    /// is `at-least-once`).
    #[serde(default = "default_delivery")]
    pub delivery: Spanned<DeliveryGuarantee>,
}

/// `delivery`: what a route promises about its output when it fails and restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryGuarantee {
    /// Every event is handled until its output is durable, and a restart may publish some
    /// of that output twice (recognisable by its ids).
    #[default]
    AtLeastOnce,
    /// Readers that read committed data see each event's output exactly once (Kafka
    /// transactions).
    ExactlyOnce,
}

impl DeliveryGuarantee {
    /// `at-least-once` or `exactly-once`, as written in a config.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryGuarantee::AtLeastOnce => "at-least-once",
            DeliveryGuarantee::ExactlyOnce => "exactly-once",
        }
    }
}

/// `[routes.NAME.dedupe]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    /// `window = "24h"`: how long the route remembers an event it finished.
    pub window: Spanned<Duration>,
}

fn default_max_in_flight() -> ByteSize {
    ByteSize(64 << 20)
}

fn default_delivery() -> Spanned<DeliveryGuarantee> {
    Spanned::new(0..0, DeliveryGuarantee::AtLeastOnce)
}

fn default_concurrency() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// `[routes.NAME.retry]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// `max_attempts = 5`: deliveries in all, the first included (1 means no retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: Spanned<u32>,
    /// `initial_backoff = "100ms"`: the wait before the second attempt; it doubles each time.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// `max_backoff = "10s"`: the longest wait between two attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_max_attempts() -> Spanned<u32> {
    Spanned::new(0..0, 5)
}
fn default_initial_backoff() -> Duration {
    Duration(std::time::Duration::from_millis(100))
}
fn default_max_backoff() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}

impl RouteConfig {
    /// The dead-letter topic: the configured one, or `ROUTE.dlq`.
    pub fn dead_letter_topic(&self, route: &str) -> TopicName {
        match &self.dead_letter {
            Some(topic) => topic.get_ref().clone(),
            None => format!("{route}.dlq")
                .parse()
                .expect("route names make valid topics"),
        }
    }
}
