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

pub mod binding;
pub mod connect;
pub mod oauth;
pub mod roles;

use super::{
    Body, BrokerError, Completion, Delivery, Poll, RevokeHook, Sink, Source, Undecodable,
    Undelivered,
};
use crate::config::secret::Secret;
use crate::event::{Event, Header};
use binding::KafkaRecord;
use oauth::TokenSource;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use roles::Role;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long `publish` waits for room in librdkafka's local queue before handing the events
/// back as unavailable (to be retried later, off the caller's thread).
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(1);

/// How long a reachability check waits for the cluster's metadata.
const REACHABLE_WAIT: Duration = Duration::from_secs(2);

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

/// Classifies a produce error: what the broker will never take, or what may pass later.
fn produce_error(error: &KafkaError) -> BrokerError {
    use RDKafkaErrorCode as Code;
    let permanent = matches!(
        error.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::MessageBatchTooLarge
                | Code::InvalidMessage
                | Code::InvalidRecord
                | Code::InvalidTopic
                | Code::UnknownTopic
                | Code::UnknownTopicOrPartition
                | Code::UnknownPartition
                | Code::TopicAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::InvalidArgument
                | Code::BadMessage
        )
    );
    if permanent {
        BrokerError::Refused(error.to_string())
    } else {
        BrokerError::Unavailable(error.to_string())
    }
}

impl KafkaBroker {
    /// Creates the producer. (Connections are made lazily by librdkafka.) The defaults below
    /// come first, so `[broker.properties]` can change them.
    pub fn connect(settings: KafkaSettings) -> Result<KafkaBroker, BrokerError> {
        let mut config = ClientConfig::new();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // librdkafka retries for this long before failing a message; Plexus retries
            // such failures again itself, for as long as it runs.
            .set("message.timeout.ms", "300000");
        for (key, value) in client_config(&settings, Role::Producer).config_map() {
            config.set(key, value);
        }
        let producer = config
            .create_with_context(DeliveryContext {
                tokens: settings.tokens.clone(),
            })
            .map_err(broker_error)?;
        Ok(KafkaBroker { settings, producer })
    }

    /// A source reading `topic` for `subscriber`, in consumer group `GROUP.SUBSCRIBER`.
    pub fn subscribe(&self, topic: &str, subscriber: &str) -> Result<KafkaSource, BrokerError> {
        let mut config = client_config(&self.settings, Role::Consumer);
        config
            .set("group.id", format!("{}.{subscriber}", self.settings.group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        let context = SourceContext {
            tokens: self.settings.tokens.clone(),
            topic: topic.to_owned(),
            hook: Mutex::new(None),
            committed: Mutex::new(BTreeMap::new()),
        };
        let consumer: BaseConsumer<SourceContext> =
            config.create_with_context(context).map_err(broker_error)?;
        consumer.subscribe(&[topic]).map_err(broker_error)?;
        Ok(KafkaSource {
            consumer,
            topic: topic.to_owned(),
            paused: false,
        })
    }

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

    /// Publishes raw bytes (a line that is not a CloudEvent) to `topic`, and waits for it.
    pub fn publish_raw(&self, topic: &str, value: &[u8]) -> Result<(), BrokerError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let batch = Batch::new(
            1,
            Box::new(move |failed| drop(tx.send(failed.into_iter().next()))),
        );
        let record = KafkaRecord {
            value: Some(value.to_vec()),
            ..KafkaRecord::default()
        };
        self.send(topic, &record, &batch);
        match rx.recv() {
            Ok(None) => Ok(()),
            Ok(Some((_, error))) => Err(error),
            Err(_) => Err(BrokerError::Unavailable("delivery report lost".into())),
        }
    }

    /// Hands `record` to librdkafka as part of `batch`; a failure to do so counts as its
    /// acknowledgement.
    fn send(&self, topic: &str, record: &KafkaRecord, batch: &Arc<Batch>) {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(KafkaHeader {
                key: name,
                value: Some(value),
            });
        }
        let mut message =
            BaseRecord::with_opaque_to(topic, Box::new(batch.clone())).headers(headers);
        if let Some(value) = &record.value {
            message = message.payload(value);
        }
        if let Some(key) = &record.key {
            message = message.key(key);
        }
        if let Some(timestamp) = record.timestamp {
            message = message.timestamp(timestamp);
        }
        let started = Instant::now();
        loop {
            match self.producer.send(message) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < QUEUE_FULL_WAIT =>
                {
                    // The local queue is full: wait a little for acknowledgements to drain it.
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => {
                    let event = binding::decode(record, topic, 0, 0).ok();
                    batch.acknowledge(Some((produce_error(&error), event)));
                    return;
                }
            }
        }
    }
}

impl Sink for KafkaBroker {
    fn publish(&self, events: Vec<Event>, done: Completion) {
        if events.is_empty() {
            return done(Ok(()));
        }
        let batch = Batch::new(
            events.len(),
            Box::new(move |failed| {
                if failed.is_empty() {
                    return done(Ok(()));
                }
                let undelivered = failed
                    .into_iter()
                    .filter_map(|(event, error)| {
                        Some(Undelivered {
                            event: event?,
                            error,
                        })
                    })
                    .collect();
                done(Err(undelivered));
            }),
        );
        for event in &events {
            self.send(&event.topic, &binding::encode(event), &batch);
        }
    }

    fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "producer flush incomplete");
        }
    }

    fn is_reachable(&self) -> bool {
        self.producer
            .client()
            .fetch_metadata(None, REACHABLE_WAIT)
            .is_ok()
    }
}

/// Called with the failed records of a batch: why, and the event (unless the record was
/// raw bytes).
type BatchEnd = Box<dyn FnOnce(Vec<(Option<Event>, BrokerError)>) + Send>;

/// Records published together; `done` runs when the last one is acknowledged or failed,
/// with the failed ones handed back.
struct Batch {
    remaining: AtomicUsize,
    failed: Mutex<Vec<(Option<Event>, BrokerError)>>,
    done: Mutex<Option<BatchEnd>>,
}

impl Batch {
    /// A batch of `count` records.
    fn new(count: usize, done: BatchEnd) -> Arc<Batch> {
        Arc::new(Batch {
            remaining: AtomicUsize::new(count),
            failed: Mutex::new(Vec::new()),
            done: Mutex::new(Some(done)),
        })
    }

    /// One record is acknowledged, or failed (with the event it held, if any).
    fn acknowledge(&self, failure: Option<(BrokerError, Option<Event>)>) {
        if let Some((error, event)) = failure {
            self.failed.lock().expect("batch lock").push((event, error));
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let failed = std::mem::take(&mut *self.failed.lock().expect("batch lock"));
        if let Some(done) = self.done.lock().expect("batch lock").take() {
            done(failed);
        }
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

/// The producer's context: tokens, fatal errors, delivery reports.
struct DeliveryContext {
    tokens: TokenSource,
}

/// Exit code when the producer fails fatally.
const EXIT_PRODUCER_FATAL: i32 = 70;

impl ClientContext for DeliveryContext {
    bearer_tokens!();

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            // The producer will never deliver again. Nothing unacknowledged was committed,
            // so the safest way on is a restart that resumes from the committed offsets.
            tracing::error!(%error, reason, "fatal producer error; exiting so a restart resumes from the committed offsets");
            std::process::exit(EXIT_PRODUCER_FATAL);
        }
        tracing::warn!(%error, reason, "producer error");
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Arc<Batch>>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Self::DeliveryOpaque) {
        let failure = result.as_ref().err().map(|(error, message)| {
            let record = KafkaRecord::from_message(message);
            let event = binding::decode(&record, message.topic(), 0, 0).ok();
            (produce_error(error), event)
        });
        batch.acknowledge(failure);
    }
}

struct SourceContext {
    tokens: TokenSource,
    topic: String,
    hook: Mutex<Option<RevokeHook>>,
    /// The last position committed per partition still owned, for the final commit.
    committed: Mutex<BTreeMap<u32, u64>>,
}

impl ClientContext for SourceContext {
    bearer_tokens!();
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let partitions: Vec<i32> = assigned
                .elements_for_topic(&self.topic)
                .iter()
                .map(|e| e.partition())
                .collect();
            tracing::info!(topic = %self.topic, ?partitions, "partitions assigned");
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let partitions: Vec<u32> = revoked
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition() as u32)
            .collect();
        let mut hook = self.hook.lock().expect("hook lock");
        let Some(hook) = hook.as_mut() else { return };
        let positions = hook(&partitions);
        let mut committed = self.committed.lock().expect("committed lock");
        for partition in &partitions {
            committed.remove(partition);
        }
        tracing::info!(topic = %self.topic, ?partitions, ?positions, "partitions revoked: drained, committing");
        if positions.is_empty() {
            return;
        }
        let list = position_list(&self.topic, &positions);
        if let Err(error) = consumer.commit(&list, CommitMode::Sync) {
            tracing::warn!(topic = %self.topic, %error, "commit of revoked partitions failed; they will be delivered again");
        }
    }
}

fn position_list(topic: &str, positions: &[(u32, u64)]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for &(partition, next) in positions {
        let _ = list.add_partition_offset(topic, partition as i32, Offset::Offset(next as i64));
    }
    list
}

/// One subscriber's consumer.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    topic: String,
    paused: bool,
}

impl KafkaSource {
    fn delivery(&self, message: &rdkafka::message::BorrowedMessage<'_>) -> Delivery {
        let record = KafkaRecord::from_message(message);
        let (partition, offset) = (message.partition() as u32, message.offset() as u64);
        let body = match binding::decode(&record, &self.topic, partition, offset) {
            Ok(event) => Body::Event(Arc::new(event)),
            Err(reason) => Body::Undecodable(Arc::new(Undecodable {
                topic: self.topic.clone(),
                key: record.key,
                headers: record
                    .headers
                    .into_iter()
                    .map(|(name, value)| Header { name, value })
                    .collect(),
                raw: record.value.unwrap_or_default(),
                reason,
            })),
        };
        Delivery {
            partition,
            offset,
            body,
        }
    }

    /// Pauses or resumes every partition assigned now.
    fn pause_assigned(&self, pause: bool) {
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let result = if pause {
            self.consumer.pause(&assigned)
        } else {
            self.consumer.resume(&assigned)
        };
        if let Err(error) = result {
            tracing::debug!(topic = %self.topic, %error, pause, "pausing or resuming failed");
        }
    }

    /// A poll while paused: serves rebalances and liveness, reads nothing. Pausing drops
    /// what was prefetched and resumes at the next unread offset; a record that still slips
    /// through (a partition assigned since the last pause) is sought back to, so it is read
    /// again after the pause.
    fn poll_paused(&mut self, timeout: Duration) -> Poll {
        self.pause_assigned(true);
        if let Some(Ok(message)) = self.consumer.poll(timeout) {
            let (partition, offset) = (message.partition(), message.offset());
            drop(message);
            if let Err(error) =
                self.consumer
                    .seek(&self.topic, partition, Offset::Offset(offset), timeout)
            {
                tracing::warn!(topic = %self.topic, partition, offset, %error, "could not hold back a record read while paused");
            }
            self.pause_assigned(true);
        }
        Poll::Idle
    }
}

impl Source for KafkaSource {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Poll, BrokerError> {
        if self.paused {
            return Ok(self.poll_paused(timeout));
        }
        let mut records = Vec::new();
        let mut wait = timeout;
        while records.len() < max {
            match self.consumer.poll(wait) {
                Some(Ok(message)) => records.push(self.delivery(&message)),
                Some(Err(error)) => {
                    // Transport errors are reported here while librdkafka reconnects.
                    tracing::debug!(topic = %self.topic, %error, "consumer error");
                    break;
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        Ok(if records.is_empty() {
            Poll::Idle
        } else {
            Poll::Records(records)
        })
    }

    fn commit(&mut self, positions: &[(u32, u64)]) -> Result<(), BrokerError> {
        self.consumer
            .commit(&position_list(&self.topic, positions), CommitMode::Async)
            .map_err(broker_error)?;
        let mut committed = self
            .consumer
            .context()
            .committed
            .lock()
            .expect("committed lock");
        committed.extend(positions.iter().copied());
        Ok(())
    }

    fn rewind(&mut self) {
        let Ok(committed) = self.consumer.committed(Duration::from_secs(10)) else {
            return;
        };
        for element in committed.elements_for_topic(&self.topic) {
            let offset = match element.offset() {
                Offset::Offset(offset) => Offset::Offset(offset),
                _ => Offset::Beginning,
            };
            if let Err(error) = self.consumer.seek(
                &self.topic,
                element.partition(),
                offset,
                Duration::from_secs(10),
            ) {
                tracing::warn!(topic = %self.topic, partition = element.partition(), %error, "rewind failed");
            }
        }
    }

    fn set_paused(&mut self, paused: bool) {
        if self.paused != paused {
            self.paused = paused;
            self.pause_assigned(paused);
            tracing::debug!(topic = %self.topic, paused, "route reading paused or resumed");
        }
    }

    fn close(&mut self) -> Result<(), BrokerError> {
        let positions: Vec<(u32, u64)> = {
            let committed = self
                .consumer
                .context()
                .committed
                .lock()
                .expect("committed lock");
            committed.iter().map(|(p, o)| (*p, *o)).collect()
        };
        if positions.is_empty() {
            return Ok(());
        }
        self.consumer
            .commit(&position_list(&self.topic, &positions), CommitMode::Sync)
            .map_err(broker_error)
    }

    fn on_revoke(&mut self, hook: RevokeHook) {
        *self.consumer.context().hook.lock().expect("hook lock") = Some(hook);
    }
}
