//! Apache Kafka through librdkafka: a consumer per subscriber (group `GROUP.SUBSCRIBER`, so
//! each route keeps its own committed positions) and one idempotent producer shared by all.
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
//! - [`roles`]: which configured properties reach producers and which reach consumers.
//! - [`oauth`]: OAUTHBEARER tokens read from a file, for every client.
//! - [`producer`]: the shared producer: publishing, delivery reports, failure classes.
//! - [`source`]: a subscriber's consumer: polling, committing, rebalances.

pub mod binding;
pub mod connect;
pub mod oauth;
pub mod producer;
pub mod roles;
pub mod source;

use super::BrokerError;
use crate::config::secret::Secret;
use oauth::TokenSource;
use producer::DeliveryContext;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::ThreadedProducer;
use roles::Role;
use std::collections::BTreeMap;
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
}

/// A connection to a Kafka cluster: the shared producer and a factory of sources.
pub struct KafkaBroker {
    settings: KafkaSettings,
    producer: ThreadedProducer<DeliveryContext>,
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
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BrokerError::Unavailable(format!(
                        "creating topic `{topic}`: {code}"
                    )));
                }
            }
        }
        Ok(())
    }
}

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
