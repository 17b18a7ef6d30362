//! The shared idempotent producer: publishing batches of events and acknowledging them
//! through the delivery callback, classifying what fails, and noting a fatal error.

use super::binding::{self, KafkaRecord};
use super::oauth::TokenSource;
use super::roles::Role;
use super::{KafkaBroker, KafkaSettings, bearer_tokens, broker_error, client_config};
use crate::broker::{BrokerError, Completion, Sink, Undelivered};
use crate::event::Event;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long `publish` waits for room in librdkafka's local queue before handing the events
/// back as unavailable (to be retried later, off the caller's thread).
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(1);

/// How long a reachability check waits for the cluster's metadata.
const REACHABLE_WAIT: Duration = Duration::from_secs(2);

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

/// A producer's settings: `defaults` first, so `[broker.kafka.properties]` can change
/// them, then the properties for producers (and the secrets).
pub(super) fn producer_config(settings: &KafkaSettings, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in client_config(settings, Role::Producer).config_map() {
        config.set(key, value);
    }
    config
}

impl KafkaBroker {
    /// Creates the producer. (Connections are made lazily by librdkafka.) The defaults below
    /// come first, so `[broker.properties]` can change them.
    pub fn connect(settings: KafkaSettings) -> Result<KafkaBroker, BrokerError> {
        let config = producer_config(
            &settings,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "5"),
                // librdkafka retries for this long before failing a message; Plexus
                // retries such failures again itself, for as long as it runs.
                ("message.timeout.ms", "300000"),
            ],
        );
        let producer = config
            .create_with_context(DeliveryContext::new(settings.tokens.clone()))
            .map_err(broker_error)?;
        Ok(KafkaBroker { settings, producer })
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
        send(&self.producer, topic, &record, &batch);
        match rx.recv() {
            Ok(None) => Ok(()),
            Ok(Some((_, error))) => Err(error),
            Err(_) => Err(BrokerError::Unavailable("delivery report lost".into())),
        }
    }
}

/// Hands `record` to `producer` as part of `batch`; a failure to do so counts as its
/// acknowledgement.
fn send(
    producer: &ThreadedProducer<DeliveryContext>,
    topic: &str,
    record: &KafkaRecord,
    batch: &Arc<Batch>,
) {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (name, value) in &record.headers {
        headers = headers.insert(KafkaHeader {
            key: name,
            value: Some(value),
        });
    }
    let mut message = BaseRecord::with_opaque_to(topic, Box::new(batch.clone())).headers(headers);
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
        match producer.send(message) {
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

/// Publishes `events` through `producer`, calling `done` once each is acknowledged or has
/// failed (the failed ones handed back).
pub(super) fn publish(
    producer: &ThreadedProducer<DeliveryContext>,
    events: Vec<Event>,
    done: Completion,
) {
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
        send(producer, &event.topic, &binding::encode(event), &batch);
    }
}

impl Sink for KafkaBroker {
    fn publish(&self, events: Vec<Event>, done: Completion) {
        publish(&self.producer, events, done);
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

    fn fatal_error(&self) -> Option<String> {
        self.producer.context().fatal_error()
    }
}

/// Called with the failed records of a batch: why, and the event (unless the record was
/// raw bytes).
type BatchEnd = Box<dyn FnOnce(Vec<(Option<Event>, BrokerError)>) + Send>;

/// Records published together; `done` runs when the last one is acknowledged or failed,
/// with the failed ones handed back.
pub(super) struct Batch {
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

/// The producer's context: tokens, fatal errors, delivery reports.
pub(super) struct DeliveryContext {
    tokens: TokenSource,
    /// The first fatal error: the producer will never deliver again.
    fatal: std::sync::OnceLock<String>,
}

impl DeliveryContext {
    /// A context taking tokens from `tokens`.
    pub(super) fn new(tokens: TokenSource) -> DeliveryContext {
        DeliveryContext {
            tokens,
            fatal: std::sync::OnceLock::new(),
        }
    }

    /// Notes that the producer can never deliver again, and why (the first reason stays).
    pub(super) fn fail(&self, reason: String) {
        let _ = self.fatal.set(reason);
    }

    /// Why the producer can never deliver again, once that has happened.
    pub(super) fn fatal_error(&self) -> Option<String> {
        self.fatal.get().cloned()
    }
}

impl ClientContext for DeliveryContext {
    bearer_tokens!();

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            // Nothing unacknowledged was committed, so the safest way on is a restart that
            // resumes from the committed offsets: the run loop ends the run on this.
            tracing::error!(%error, reason, "fatal producer error");
            let _ = self.fatal.set(format!("{error}: {reason}"));
            return;
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
