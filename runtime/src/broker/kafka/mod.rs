//! Apache Kafka through librdkafka: a consumer per subscriber (group `GROUP.SUBSCRIBER`, so
//! each route keeps its own committed positions) and one idempotent producer shared by all,
//! except for exactly-once routes, which each have a transactional producer of their own.
//!
//! Offsets are committed explicitly, only positions the dispatcher reports finished; on a
//! rebalance the revoked partitions are drained and committed (synchronously) before they
//! are released. Produced events are acknowledged through the delivery callback; a batch's
//! [`Completion`] runs once every event of it is acknowledged or failed, and hands back the
//! failed ones with their errors classified: permanent (too large, invalid topic, not
//! authorised) or worth retrying (timeouts, a broker down, a full local queue). A failed
//! event is decoded back from the record librdkafka returns with the failure, so nothing is
//! kept per event while it is in flight.
//!
//! # Layout
//! - [`binding`]: the CloudEvents Kafka binding (binary out; binary or structured in).
//! - [`connect`]: the connection check at start: reach the cluster or say why not, quickly.
//! - [`group`]: a consumer group's committed positions, read and moved from outside it.
//! - [`roles`]: which configured properties reach producers and which reach consumers.
//! - [`oauth`]: OAUTHBEARER tokens read from a file, for every client.
//! - [`producer`]: the shared producer: publishing, delivery reports, failure classes.
//! - [`source`]: a subscriber's consumer: polling, committing, rebalances.
//! - [`transactions`]: an exactly-once route's transactional producer.

pub mod binding;
pub mod connect;
pub mod group;
pub mod oauth;
pub mod producer;
pub mod roles;
pub mod source;
pub mod transactions;

use super::{Broker, BrokerError, GroupPosition, ResetTo, Sink, Source};
use crate::config::secret::Secret;
use crate::config::{Config, KafkaConfig};
use oauth::TokenSource;
use producer::DeliveryContext;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::ThreadedProducer;
use roles::Role;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the cluster and how to name consumer groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Prefix of every consumer group: a route's group is `GROUP.ROUTE`.
    pub group: String,
    /// librdkafka properties; each client takes those of its role (see [`roles`]).
    pub properties: BTreeMap<String, String>,
    /// Properties whose values are secrets (passwords), kept apart so they are never shown.
    pub secrets: BTreeMap<String, Secret>,
    /// Where OAUTHBEARER tokens come from.
    pub tokens: TokenSource,
    /// This process's name in transactional ids (`[broker.kafka] instance`), chosen at
    /// random per start when not configured.
    pub instance: String,
}

/// A connection to a Kafka cluster: the shared producer and a factory of sources.
pub struct KafkaBroker {
    settings: KafkaSettings,
    producer: ThreadedProducer<DeliveryContext>,
}

impl KafkaSettings {
    /// How to reach the cluster `[broker.kafka]` describes.
    pub fn of(config: &KafkaConfig) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: config.bootstrap_servers().to_owned(),
            group: config.group().to_owned(),
            properties: config
                .properties
                .iter()
                .map(|(key, value)| (key.get_ref().clone(), value.clone()))
                .chain(config.security.properties.clone())
                .collect(),
            secrets: config.security.secrets.clone(),
            tokens: TokenSource::new(config.security.oauth_token_file.clone()),
            instance: config
                .instance()
                .map_or_else(transactions::random_instance, str::to_owned),
        }
    }
}

/// The Kafka broker a run uses: the shared producer, and what `ensure_topics` creates.
pub struct Kafka {
    broker: Arc<KafkaBroker>,
    /// Partitions of the topics Plexus creates; `None` with `create_topics` off.
    create_with: Option<u32>,
}

impl Kafka {
    /// Opens the broker `config` names (its `[broker.kafka]` table).
    pub fn open(config: &Config) -> Result<Kafka, BrokerError> {
        let broker = &config.spec.broker;
        let kafka = broker
            .kafka()
            .ok_or_else(|| BrokerError::Refused("no [broker.kafka] table".into()))?;
        Ok(Kafka {
            broker: Arc::new(KafkaBroker::connect(KafkaSettings::of(kafka))?),
            create_with: kafka.create_topics.then_some(*broker.partitions.get_ref()),
        })
    }
}

impl Broker for Kafka {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn subscribe(&self, topic: &str, subscriber: &str) -> Result<Box<dyn Source>, BrokerError> {
        Ok(Box::new(self.broker.subscribe(topic, subscriber)?))
    }

    fn sink(&self) -> Arc<dyn Sink> {
        self.broker.clone()
    }

    fn subscribe_exactly_once(
        &self,
        topic: &str,
        subscriber: &str,
    ) -> Result<Box<dyn Source>, BrokerError> {
        Ok(Box::new(
            self.broker.subscribe_exactly_once(topic, subscriber)?,
        ))
    }

    fn ensure_topics(&self, topics: &[String]) -> Result<(), BrokerError> {
        match self.create_with {
            Some(partitions) => self.broker.ensure_topics(topics, partitions),
            None => Ok(()),
        }
    }

    fn depth(&self, topic: &str, timeout: Duration) -> Result<u64, BrokerError> {
        self.broker.depth(topic, timeout)
    }

    fn publish_raw(&self, topic: &str, raw: &[u8]) -> Result<(), BrokerError> {
        self.broker.publish_raw(topic, raw)
    }

    fn group_positions(
        &self,
        topic: &str,
        subscriber: &str,
    ) -> Result<Vec<GroupPosition>, BrokerError> {
        self.broker.group_positions(topic, subscriber)
    }

    fn reset_positions(
        &self,
        topic: &str,
        subscriber: &str,
        to: ResetTo,
    ) -> Result<Vec<GroupPosition>, BrokerError> {
        self.broker.reset_positions(topic, subscriber, to)
    }
}

/// The settings for a client in `role`: the address, the properties for that role, secrets.
fn client_config(settings: &KafkaSettings, role: Role) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.bootstrap_servers);
    for (key, value) in &settings.properties {
        if role.reads(key) {
            config.set(key, value);
        }
    }
    for (key, secret) in &settings.secrets {
        config.set(key, secret.expose());
    }
    config
}

fn broker_error(error: KafkaError) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

impl KafkaBroker {
    /// Creates the topics that do not exist yet, with `partitions` partitions each.
    pub fn ensure_topics(&self, topics: &[String], partitions: u32) -> Result<(), BrokerError> {
        let admin: AdminClient<AdminContext> = client_config(&self.settings, Role::Producer)
            .create_with_context(AdminContext {
                tokens: self.settings.tokens.clone(),
            })
            .map_err(broker_error)?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions as i32, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = futures::executor::block_on(admin.create_topics(&new, &options))
            .map_err(broker_error)?;
        let mut created = Vec::new();
        for result in results {
            match result {
                Ok(topic) => created.push(topic),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BrokerError::Unavailable(format!(
                        "creating topic `{topic}`: {code}"
                    )));
                }
            }
        }
        for topic in created {
            wait_until_led(admin.inner(), &topic, partitions);
        }
        Ok(())
    }
}

/// Waits, up to [`TOPIC_VISIBLE_WAIT`], until the cluster's metadata shows `topic` just
/// created with its `partitions` partitions, each with a leader. A consumer group that
/// subscribes before then can be given no partitions of it, and librdkafka looks for a
/// subscribed topic it has not found only at its next periodic metadata refresh (minutes by
/// default): the route would idle, and a run with `idle_exit` would end without having read
/// it. A topic still not shown by then is logged and left to that refresh.
fn wait_until_led<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    partitions: u32,
) {
    let started = std::time::Instant::now();
    loop {
        let led = client
            .fetch_metadata(Some(topic), Duration::from_secs(1))
            .ok()
            .and_then(|metadata| {
                let found = metadata.topics().iter().find(|t| t.name() == topic)?;
                let partitions_led = found.partitions().iter().filter(|p| p.leader() >= 0);
                Some(found.error().is_none() && partitions_led.count() == partitions as usize)
            })
            .unwrap_or(false);
        if led {
            return;
        }
        if started.elapsed() >= TOPIC_VISIBLE_WAIT {
            tracing::warn!(
                topic,
                "topic created, but the cluster's metadata does not show it led yet; routes reading it may start only at their next metadata refresh"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long [`KafkaBroker::ensure_topics`] waits for a topic it created to show.
const TOPIC_VISIBLE_WAIT: Duration = Duration::from_secs(10);

impl KafkaBroker {
    /// Records kept in `topic`: the sum over its partitions of end minus start, asked of
    /// the partition leaders (each answer awaited up to `timeout`).
    pub fn depth(&self, topic: &str, timeout: Duration) -> Result<u64, BrokerError> {
        use rdkafka::producer::Producer as _;
        let client = self.producer.client();
        let metadata = client
            .fetch_metadata(Some(topic), timeout)
            .map_err(broker_error)?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(0);
        };
        if found.error().is_some() {
            return Ok(0); // not created yet: nothing in it
        }
        let mut records = 0;
        for partition in found.partitions() {
            let (low, high) = client
                .fetch_watermarks(topic, partition.id(), timeout)
                .map_err(broker_error)?;
            records += (high - low).max(0) as u64;
        }
        Ok(records)
    }
}

/// Answers librdkafka's requests for a fresh OAUTHBEARER token from the client's source.
macro_rules! bearer_tokens {
    () => {
        const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

        fn generate_oauth_token(
            &self,
            _config: Option<&str>,
        ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
            self.tokens.token()
        }
    };
}
pub(crate) use bearer_tokens;

/// The admin client's context: tokens, and librdkafka's default logging.
struct AdminContext {
    tokens: TokenSource,
}

impl ClientContext for AdminContext {
    bearer_tokens!();
}
