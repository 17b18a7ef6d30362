//! An exactly-once route's transactional producer: what the route emits and dead-letters is
//! published inside a Kafka transaction, and the positions it consumed are committed by the
//! same transaction (sent to it with the consumer's group metadata), so readers of committed
//! data see all of it or none of it.
//!
//! One producer per route and process, with transactional id `GROUP.ROUTE.INSTANCE`. Two
//! kinds of zombie are fenced: a restarted process with the same instance name bumps the
//! producer epoch when it starts (its predecessor's open transaction is aborted then), and a
//! member that lost its partitions in a rebalance has the offsets of its transaction refused
//! by the group coordinator (the group generation moved on), so that transaction aborts.
//!
//! A transaction may only commit at a point where the route holds nothing unfinished: the
//! dispatcher settles the route before it asks for a commit (see ADR 0018).

use super::producer::{self, DeliveryContext};
use super::{KafkaSettings, broker_error};
use crate::broker::{BrokerError, Completion, Sink};
use crate::event::Event;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{Producer, ThreadedProducer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long one transactional call waits for the cluster before it is asked again.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a commit (or an abort) is retried through errors that may pass, before the
/// transaction is aborted (or, for an abort, the producer given up).
const RETRY_FOR: Duration = Duration::from_secs(60);
/// How long the broker keeps a transaction open without a commit before it aborts it (a
/// process killed with one open). `transaction.timeout.ms` in `[broker.kafka.properties]`
/// overrides it.
const TRANSACTION_TIMEOUT_MS: &str = "30000";

/// A random instance name, for a process that was not given one.
pub fn random_instance() -> String {
    use std::hash::{BuildHasher, Hasher};
    // The standard library's hasher keys are random per process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// A route's transactional producer, with a transaction always open between commits.
pub struct Transactions {
    producer: ThreadedProducer<DeliveryContext>,
    id: String,
    /// Whether anything was published since the open transaction began.
    published: AtomicBool,
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum NotCommitted {
    /// It was aborted: nothing it held is visible to readers of committed data, and the
    /// positions it carried were not committed. A new transaction is open.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The producer failed for good (fenced by another process with the same id, or a
    /// fatal error): nothing more can be published; the run must end.
    #[error("{0}")]
    Fatal(String),
}

impl Transactions {
    /// Creates the producer for `subscriber`, fences its predecessors (an earlier run of the
    /// same instance), and opens the first transaction.
    pub fn start(settings: &KafkaSettings, subscriber: &str) -> Result<Transactions, BrokerError> {
        let id = format!("{}.{subscriber}.{}", settings.group, settings.instance);
        let mut config = producer::producer_config(
            settings,
            &[
                ("acks", "all"),
                ("linger.ms", "5"),
                ("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS),
            ],
        );
        config.set("transactional.id", &id);
        let producer: ThreadedProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext::new(settings.tokens.clone()))
            .map_err(broker_error)?;
        retried("starting transactions", || {
            producer.init_transactions(CALL_TIMEOUT)
        })
        .map_err(|e| BrokerError::Unavailable(format!("transactional id `{id}`: {e}")))?;
        producer
            .begin_transaction()
            .map_err(|e| BrokerError::Unavailable(format!("transactional id `{id}`: {e}")))?;
        tracing::info!(transactional_id = %id, "exactly-once: transactional producer ready");
        Ok(Transactions {
            producer,
            id,
            published: AtomicBool::new(false),
        })
    }

    /// Commits the open transaction with `offsets` (the consumer's next positions) sent to
    /// it under `group`, and opens the next one. Nothing to commit (no offsets, nothing
    /// published) is not a commit.
    pub fn commit(
        &self,
        offsets: &TopicPartitionList,
        group: Option<ConsumerGroupMetadata>,
    ) -> Result<(), NotCommitted> {
        if offsets.count() == 0 && !self.published.load(Ordering::SeqCst) {
            return Ok(());
        }
        let committed = (|| {
            if offsets.count() > 0 {
                let group = group.as_ref().ok_or_else(|| {
                    KafkaError::Subscription("the consumer is in no group now".into())
                })?;
                retried("sending offsets to the transaction", || {
                    self.producer
                        .send_offsets_to_transaction(offsets, group, CALL_TIMEOUT)
                })?;
            }
            retried("committing the transaction", || {
                self.producer.commit_transaction(CALL_TIMEOUT)
            })
        })();
        match committed {
            Ok(()) => {
                tracing::debug!(transactional_id = %self.id, offsets = offsets.count(), "transaction committed");
                self.begin()?;
                Ok(())
            }
            Err(error) if is_fatal(&error) => Err(self.fail(&error)),
            Err(error) => {
                tracing::warn!(transactional_id = %self.id, %error, "transaction not committed: aborting it; its events will be processed again");
                self.abort_open()?;
                Err(NotCommitted::Aborted(error.to_string()))
            }
        }
    }

    /// Aborts the open transaction, if anything was published in it, and opens the next one.
    pub fn abort(&self) -> Result<(), NotCommitted> {
        if self.published.load(Ordering::SeqCst) {
            self.abort_open()?;
        }
        Ok(())
    }

    /// Aborts the open transaction (offsets sent to it included) and opens the next one.
    fn abort_open(&self) -> Result<(), NotCommitted> {
        if let Err(error) = retried("aborting the transaction", || {
            self.producer.abort_transaction(CALL_TIMEOUT)
        }) {
            return Err(self.fail(&error));
        }
        self.begin()
    }

    /// Gives up on the producer: the run ends (and a restart resumes from the last commit).
    pub fn fail(&self, error: &dyn std::fmt::Display) -> NotCommitted {
        let reason = format!(
            "transactional producer `{}` failed for good: {error} (fenced by another process with this transactional id, or a fatal broker error)",
            self.id
        );
        tracing::error!(transactional_id = %self.id, %error, "transactional producer failed for good");
        self.producer.context().fail(reason.clone());
        NotCommitted::Fatal(reason)
    }

    fn begin(&self) -> Result<(), NotCommitted> {
        self.published.store(false, Ordering::SeqCst);
        self.producer
            .begin_transaction()
            .map_err(|error| self.fail(&error))
    }
}

impl Sink for Transactions {
    fn publish(&self, events: Vec<Event>, done: Completion) {
        self.published.store(true, Ordering::SeqCst);
        producer::publish(&self.producer, events, done);
    }

    fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "transactional producer flush incomplete");
        }
    }

    fn fatal_error(&self) -> Option<String> {
        self.producer.context().fatal_error()
    }
}

/// Whether `error` ends the producer (fenced, or fatal).
fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(error) => error.is_fatal(),
        _ => false,
    }
}

/// Calls `call` again while it fails with an error the client says may pass, up to
/// [`RETRY_FOR`].
fn retried(what: &str, mut call: impl FnMut() -> KafkaResult<()>) -> KafkaResult<()> {
    let started = Instant::now();
    loop {
        match call() {
            Err(KafkaError::Transaction(error))
                if error.is_retriable() && started.elapsed() < RETRY_FOR =>
            {
                tracing::warn!(%error, "{what}: trying again");
                std::thread::sleep(Duration::from_millis(500));
            }
            result => return result,
        }
    }
}
