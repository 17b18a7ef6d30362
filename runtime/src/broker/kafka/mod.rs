//! Apache Kafka through librdkafka: a consumer per subscriber (group `GROUP.SUBSCRIBER`, so
//! each route keeps its own committed positions) and one idempotent producer shared by all.
//!
//! Offsets are committed explicitly, only positions the dispatcher reports finished; on a
//! rebalance the revoked partitions are drained and committed (synchronously) before they
//! are released. Produced events are acknowledged through the delivery callback; a batch's
//! [`Completion`] runs once every event of it is acknowledged.
//!
//! # Layout
//! - [`binding`]: the CloudEvents Kafka binding (binary out; binary or structured in).

pub mod binding;

use super::{Body, BrokerError, Completion, Delivery, Poll, RevokeHook, Sink, Source, Undecodable};
use crate::event::{Event, Header};
use binding::KafkaRecord;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to reach the cluster and how to name consumer groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Prefix of every consumer group: a route's group is `GROUP.ROUTE`.
    pub group: String,
    /// librdkafka properties for consumers and the producer alike.
    pub properties: BTreeMap<String, String>,
}

/// A connection to a Kafka cluster: the shared producer and a factory of sources.
pub struct KafkaBroker {
    settings: KafkaSettings,
    producer: ThreadedProducer<DeliveryContext>,
}

fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.bootstrap_servers);
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
}

fn broker_error(error: KafkaError) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

impl KafkaBroker {
    /// Creates the producer. (Connections are made lazily by librdkafka.)
    pub fn connect(settings: KafkaSettings) -> Result<KafkaBroker, BrokerError> {
        let mut config = client_config(&settings);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // Ride out a broker restart: retry for up to five minutes before failing.
            .set("message.timeout.ms", "300000");
        let producer = config
            .create_with_context(DeliveryContext)
            .map_err(broker_error)?;
        Ok(KafkaBroker { settings, producer })
    }

    /// A source reading `topic` for `subscriber`, in consumer group `GROUP.SUBSCRIBER`.
    pub fn subscribe(&self, topic: &str, subscriber: &str) -> Result<KafkaSource, BrokerError> {
        let mut config = client_config(&self.settings);
        config
            .set("group.id", format!("{}.{subscriber}", self.settings.group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        let context = SourceContext {
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
        })
    }

    /// Creates the topics that do not exist yet, with `partitions` partitions each.
    pub fn ensure_topics(&self, topics: &[String], partitions: u32) -> Result<(), BrokerError> {
        let admin: AdminClient<DefaultClientContext> = client_config(&self.settings)
            .create()
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
        let batch = Batch::new(1, Box::new(move |result| drop(tx.send(result))));
        let record = KafkaRecord {
            value: value.to_vec(),
            ..KafkaRecord::default()
        };
        self.send(topic, &record, batch);
        rx.recv()
            .unwrap_or_else(|_| Err(BrokerError::Unavailable("delivery report lost".into())))
    }

    fn send(&self, topic: &str, record: &KafkaRecord, batch: Arc<Batch>) {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(KafkaHeader {
                key: name,
                value: Some(value),
            });
        }
        let mut message = BaseRecord::with_opaque_to(topic, Box::new(batch.clone()))
            .payload(&record.value)
            .headers(headers);
        if let Some(key) = &record.key {
            message = message.key(key);
        }
        if let Some(timestamp) = record.timestamp {
            message = message.timestamp(timestamp);
        }
        loop {
            match self.producer.send(message) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: wait for acknowledgements to drain it.
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => {
                    batch.acknowledge(Some(error.to_string()));
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
        let batch = Batch::new(events.len(), done);
        for event in &events {
            self.send(&event.topic, &binding::encode(event), batch.clone());
        }
    }

    fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "producer flush incomplete");
        }
    }
}

/// Events published together; `done` runs when the last acknowledgement arrives.
struct Batch {
    remaining: AtomicUsize,
    error: Mutex<Option<String>>,
    done: Mutex<Option<Completion>>,
}

impl Batch {
    fn new(count: usize, done: Completion) -> Arc<Batch> {
        Arc::new(Batch {
            remaining: AtomicUsize::new(count),
            error: Mutex::new(None),
            done: Mutex::new(Some(done)),
        })
    }

    fn acknowledge(&self, error: Option<String>) {
        if let Some(error) = error {
            self.error.lock().expect("batch lock").get_or_insert(error);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let result = match self.error.lock().expect("batch lock").take() {
                Some(error) => Err(BrokerError::Unavailable(error)),
                None => Ok(()),
            };
            if let Some(done) = self.done.lock().expect("batch lock").take() {
                done(result);
            }
        }
    }
}

struct DeliveryContext;

/// Exit code when the producer fails fatally.
const EXIT_PRODUCER_FATAL: i32 = 70;

impl ClientContext for DeliveryContext {
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
        batch.acknowledge(result.as_ref().err().map(|(error, _)| error.to_string()));
    }
}

struct SourceContext {
    topic: String,
    hook: Mutex<Option<RevokeHook>>,
    /// The last position committed per partition still owned, for the final commit.
    committed: Mutex<BTreeMap<u32, u64>>,
}

impl ClientContext for SourceContext {}

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
                raw: record.value,
                reason,
            })),
        };
        Delivery {
            partition,
            offset,
            body,
        }
    }
}

impl Source for KafkaSource {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Poll, BrokerError> {
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
