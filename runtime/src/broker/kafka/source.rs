//! A subscriber's consumer: polling, pausing while the dispatcher is full, committing the
//! positions it reports finished, and draining and committing on a rebalance.

use super::binding::{self, KafkaRecord};
use super::oauth::TokenSource;
use super::roles::Role;
use super::transactions::Transactions;
use super::{KafkaBroker, bearer_tokens, broker_error, client_config};
use crate::broker::{Body, BrokerError, Delivery, Poll, RevokeHook, Sink, Source, Undecodable};
use crate::event::Header;
use crate::metrics::PartitionPosition;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a source asks the group coordinator which positions it holds (see
/// [`Source::confirmed`]), and how long it waits for the answer.
const CONFIRM_INTERVAL: Duration = Duration::from_secs(5);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a source asks the partition leaders for the ends of its partitions (for the
/// lag), and how long it waits for each answer. The client's own idea of the end is not
/// used: it is not refreshed while a partition is paused, which is when lag matters most.
const POSITIONS_INTERVAL: Duration = Duration::from_secs(5);
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);

impl KafkaBroker {
    /// A source reading `topic` for `subscriber`, in consumer group `GROUP.SUBSCRIBER`.
    pub fn subscribe(&self, topic: &str, subscriber: &str) -> Result<KafkaSource, BrokerError> {
        self.source(topic, subscriber, None)
    }

    /// A source reading `topic` for an exactly-once `subscriber`: its commits are Kafka
    /// transactions of its own producer, which is also where the route publishes.
    pub fn subscribe_exactly_once(
        &self,
        topic: &str,
        subscriber: &str,
    ) -> Result<KafkaSource, BrokerError> {
        let transactions = Arc::new(Transactions::start(&self.settings, subscriber)?);
        self.source(topic, subscriber, Some(transactions))
    }

    fn source(
        &self,
        topic: &str,
        subscriber: &str,
        transactions: Option<Arc<Transactions>>,
    ) -> Result<KafkaSource, BrokerError> {
        let mut config = client_config(&self.settings, Role::Consumer);
        if transactions.is_some() {
            // Never read what an aborted transaction wrote (librdkafka's default too).
            config.set("isolation.level", "read_committed");
        }
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
            assigned: AtomicBool::new(false),
            transactions,
            rewind_due: AtomicBool::new(false),
        };
        let consumer: BaseConsumer<SourceContext> =
            config.create_with_context(context).map_err(broker_error)?;
        consumer.subscribe(&[topic]).map_err(broker_error)?;
        Ok(KafkaSource {
            consumer,
            topic: topic.to_owned(),
            paused: false,
            held_back: Vec::new(),
            confirmed_at: Instant::now(),
            group_committed: BTreeMap::new(),
            measured_at: None,
        })
    }
}

struct SourceContext {
    tokens: TokenSource,
    topic: String,
    hook: Mutex<Option<RevokeHook>>,
    /// The last position committed per partition still owned, for the final commit.
    committed: Mutex<BTreeMap<u32, u64>>,
    /// Whether the group has assigned this consumer its partitions once.
    assigned: AtomicBool,
    /// An exactly-once subscriber's producer, whose transactions commit the positions.
    transactions: Option<Arc<Transactions>>,
    /// Set when a transaction aborted during a rebalance: the partitions kept must be read
    /// again from their committed positions before anything else.
    rewind_due: AtomicBool,
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
            self.assigned.store(true, Ordering::Relaxed);
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
        let released = hook(&partitions);
        let positions = released.positions;
        let mut committed = self.committed.lock().expect("committed lock");
        for partition in &partitions {
            committed.remove(partition);
        }
        tracing::info!(topic = %self.topic, ?partitions, ?positions, "partitions revoked: drained, committing");
        if let Some(transactions) = &self.transactions {
            drop(committed);
            self.commit_revoked_in_transaction(
                consumer,
                transactions,
                &positions,
                released.settled,
            );
            return;
        }
        if positions.is_empty() {
            return;
        }
        let list = position_list(&self.topic, &positions);
        if let Err(error) = consumer.commit(&list, CommitMode::Sync) {
            tracing::warn!(topic = %self.topic, %error, "commit of revoked partitions failed; they will be delivered again");
        }
    }
}

impl SourceContext {
    /// Commits, before partitions go, the open transaction with the positions of every
    /// partition the route read (`positions`), if the route is `settled` (it holds nothing
    /// unfinished); else aborts it and ends the run: events still in hand would publish
    /// into the next transaction what their partitions' new owners publish again.
    fn commit_revoked_in_transaction(
        &self,
        consumer: &BaseConsumer<Self>,
        transactions: &Transactions,
        positions: &[(u32, u64)],
        settled: bool,
    ) {
        if !settled {
            let _ = transactions.abort();
            transactions.fail(&"events were still unfinished when the route's partitions were revoked, so its transaction was aborted");
            return;
        }
        let list = position_list(&self.topic, positions);
        if transactions
            .commit(&list, consumer.group_metadata())
            .is_err()
        {
            // Aborted: the partitions kept are read again from their committed positions.
            self.rewind_due.store(true, Ordering::SeqCst);
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
    /// Records read while paused (prefetched before the pause took hold, or of a partition
    /// assigned since), in the order read: handed out first once reading resumes. The
    /// consumer's position is already past them, so they must not be dropped.
    held_back: Vec<Delivery>,
    /// When [`Source::confirmed`] last asked the group coordinator.
    confirmed_at: Instant,
    /// What the group coordinator last said it holds, per partition.
    group_committed: BTreeMap<u32, u64>,
    /// When [`Source::positions`] last measured.
    measured_at: Option<Instant>,
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

    /// A poll while paused: serves rebalances and liveness, hands out nothing. Pausing
    /// drops what was prefetched and resumes at the next unread offset; a record that still
    /// comes through (already queued, or of a partition assigned since the last pause) is
    /// held back and handed out first after the pause. (Seeking back to it instead was
    /// unreliable: a seek with the zero timeout of a poll in passing is not confirmed, and a
    /// record it failed to rewind was skipped.)
    fn poll_paused(&mut self, timeout: Duration) -> Poll {
        self.pause_assigned(true);
        if let Some(Ok(message)) = self.consumer.poll(timeout) {
            let delivery = self.delivery(&message);
            drop(message);
            self.held_back.push(delivery);
            self.pause_assigned(true);
        }
        Poll::Idle
    }

    /// Up to `max` of the records held back during a pause whose partitions are still
    /// assigned (those of a partition revoked meanwhile are its new owner's, from the
    /// committed offset).
    fn take_held_back(&mut self, max: usize) -> Vec<Delivery> {
        if self.held_back.is_empty() {
            return Vec::new();
        }
        let assigned: Vec<u32> = self
            .consumer
            .assignment()
            .map(|list| {
                list.elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition() as u32)
                    .collect()
            })
            .unwrap_or_default();
        let mut held = std::mem::take(&mut self.held_back);
        held.retain(|d| assigned.contains(&d.partition));
        if held.len() > max {
            self.held_back = held.split_off(max);
        }
        held
    }
}

impl Source for KafkaSource {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Poll, BrokerError> {
        if self
            .consumer
            .context()
            .rewind_due
            .swap(false, Ordering::SeqCst)
        {
            self.rewind();
        }
        if self.paused {
            return Ok(self.poll_paused(timeout));
        }
        let mut records = self.take_held_back(max);
        let mut wait = if records.is_empty() {
            timeout
        } else {
            Duration::ZERO
        };
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
        let list = position_list(&self.topic, positions);
        match &self.consumer.context().transactions {
            Some(transactions) => {
                if let Err(not_committed) =
                    transactions.commit(&list, self.consumer.group_metadata())
                {
                    self.rewind();
                    return Err(BrokerError::Unavailable(not_committed.to_string()));
                }
            }
            None => self
                .consumer
                .commit(&list, CommitMode::Async)
                .map_err(broker_error)?,
        }
        let mut committed = self
            .consumer
            .context()
            .committed
            .lock()
            .expect("committed lock");
        committed.extend(positions.iter().copied());
        Ok(())
    }

    fn confirmed(&mut self) -> Vec<(u32, u64)> {
        // Commits are asynchronous and librdkafka reports no result for them here: ask the
        // group coordinator now and then what it holds.
        if self.confirmed_at.elapsed() < CONFIRM_INTERVAL {
            return Vec::new();
        }
        self.confirmed_at = Instant::now();
        let Ok(committed) = self.consumer.committed(CONFIRM_TIMEOUT) else {
            return Vec::new();
        };
        let confirmed: Vec<(u32, u64)> = committed
            .elements_for_topic(&self.topic)
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(next) => Some((e.partition() as u32, next as u64)),
                _ => None,
            })
            .collect();
        self.group_committed.extend(confirmed.iter().copied());
        confirmed
    }

    fn positions(&mut self) -> Option<Vec<PartitionPosition>> {
        if self
            .measured_at
            .is_some_and(|at| at.elapsed() < POSITIONS_INTERVAL)
        {
            return None;
        }
        self.measured_at = Some(Instant::now());
        let assigned = self.consumer.assignment().ok()?;
        let committed = self
            .consumer
            .context()
            .committed
            .lock()
            .expect("committed lock")
            .clone();
        let mut positions = Vec::new();
        for element in assigned.elements_for_topic(&self.topic) {
            let partition = element.partition();
            // One unanswered question is enough: an outage must not hold the poller long.
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, partition, WATERMARK_TIMEOUT)
                .ok()?;
            let partition = partition as u32;
            // Nothing committed yet: the group starts from the earliest record kept.
            let committed = committed
                .get(&partition)
                .or_else(|| self.group_committed.get(&partition))
                .copied()
                .unwrap_or(low.max(0) as u64);
            positions.push(PartitionPosition {
                partition,
                committed,
                end: high.max(0) as u64,
            });
        }
        Some(positions)
    }

    fn is_assigned(&self) -> bool {
        self.consumer.context().assigned.load(Ordering::Relaxed)
    }

    fn rewind(&mut self) {
        // Read again from the committed offsets, held-back records with them.
        self.held_back.clear();
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
        if let Some(transactions) = &self.consumer.context().transactions {
            // What was committed went with its transaction; anything published since (by
            // events left unfinished) is aborted. A transaction is open again after, for
            // a route restarted on this source.
            return transactions
                .abort()
                .map_err(|e| BrokerError::Unavailable(e.to_string()));
        }
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

    fn transactional_sink(&self) -> Option<Arc<dyn Sink>> {
        self.consumer
            .context()
            .transactions
            .clone()
            .map(|t| t as Arc<dyn Sink>)
    }

    fn on_revoke(&mut self, hook: RevokeHook) {
        *self.consumer.context().hook.lock().expect("hook lock") = Some(hook);
    }
}
