//! A consumer group's committed positions, read and moved from outside the group (for
//! `plexus positions`): a consumer of the group's id that never subscribes, so it neither
//! joins the group nor disturbs its members.
//!
//! Moving positions is refused while the group has members: a live member would commit
//! over the reset with what it holds, and the broker refuses commits from outside a group
//! with members anyway. An empty group takes a commit from any client with its id.

use super::oauth::TokenSource;
use super::roles::Role;
use super::{KafkaBroker, bearer_tokens, broker_error, client_config};
use crate::broker::{BrokerError, GroupPosition, ResetTo};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// How long each question to the cluster may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The outside consumer's context: tokens, and nothing done on rebalances (it has none).
struct OutsideContext {
    tokens: TokenSource,
}

impl ClientContext for OutsideContext {
    bearer_tokens!();
}

impl ConsumerContext for OutsideContext {}

/// A partition's earliest kept offset and its end.
struct Bounds {
    partition: i32,
    low: i64,
    high: i64,
}

impl KafkaBroker {
    /// A consumer with the id of `subscriber`'s group that does not join it.
    fn outsider(
        &self,
        subscriber: &str,
    ) -> Result<(BaseConsumer<OutsideContext>, String), BrokerError> {
        let group = format!("{}.{subscriber}", self.settings.group);
        let consumer = client_config(&self.settings, Role::Consumer)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create_with_context(OutsideContext {
                tokens: self.settings.tokens.clone(),
            })
            .map_err(broker_error)?;
        Ok((consumer, group))
    }

    /// Each partition of `topic` with its earliest kept offset and its end.
    fn bounds(
        consumer: &BaseConsumer<OutsideContext>,
        topic: &str,
    ) -> Result<Vec<Bounds>, BrokerError> {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(broker_error)?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| BrokerError::Refused(format!("topic `{topic}` does not exist")))?;
        let mut bounds = Vec::new();
        for partition in found.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), TIMEOUT)
                .map_err(broker_error)?;
            bounds.push(Bounds {
                partition: partition.id(),
                low,
                high,
            });
        }
        bounds.sort_by_key(|b| b.partition);
        Ok(bounds)
    }

    /// Where `subscriber`'s group stands on every partition of `topic`.
    pub fn group_positions(
        &self,
        topic: &str,
        subscriber: &str,
    ) -> Result<Vec<GroupPosition>, BrokerError> {
        let (consumer, group) = self.outsider(subscriber)?;
        let bounds = Self::bounds(&consumer, topic)?;
        let mut asked = TopicPartitionList::new();
        for b in &bounds {
            asked.add_partition(topic, b.partition);
        }
        let committed = consumer
            .committed_offsets(asked, TIMEOUT)
            .map_err(broker_error)?;
        let members = Self::members(&consumer, &group)?;
        Ok(bounds
            .iter()
            .map(|b| {
                let offset =
                    committed
                        .find_partition(topic, b.partition)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(n) => Some(n.max(0) as u64),
                            _ => None,
                        });
                // Nothing committed: the group starts from the earliest record kept.
                let from = offset.unwrap_or(b.low.max(0) as u64);
                GroupPosition {
                    partition: b.partition as u32,
                    committed: offset,
                    end: b.high.max(0) as u64,
                    lag: (b.high.max(0) as u64).saturating_sub(from),
                    detail: format!("kept from {}; {members} live members", b.low),
                }
            })
            .collect())
    }

    /// How many members `group` has now.
    fn members(consumer: &BaseConsumer<OutsideContext>, group: &str) -> Result<usize, BrokerError> {
        let groups = consumer
            .fetch_group_list(Some(group), TIMEOUT)
            .map_err(broker_error)?;
        Ok(groups.groups().first().map_or(0, |g| g.members().len()))
    }

    /// Moves `subscriber`'s group on every partition of `topic` to `to`, unless the group
    /// has live members.
    pub fn reset_positions(
        &self,
        topic: &str,
        subscriber: &str,
        to: ResetTo,
    ) -> Result<Vec<GroupPosition>, BrokerError> {
        let (consumer, group) = self.outsider(subscriber)?;
        let groups = consumer
            .fetch_group_list(Some(&group), TIMEOUT)
            .map_err(broker_error)?;
        if let Some(live) = groups.groups().first().filter(|g| !g.members().is_empty()) {
            let who: Vec<String> = live
                .members()
                .iter()
                .map(|m| format!("{} at {}", m.client_id(), m.client_host()))
                .collect();
            return Err(BrokerError::Refused(format!(
                "consumer group `{group}` has {} live member(s) ({}): stop the processes running it first (a member would commit over the reset)",
                who.len(),
                who.join(", ")
            )));
        }
        let bounds = Self::bounds(&consumer, topic)?;
        let targets = match to {
            ResetTo::Time(millis) => Self::offsets_at(&consumer, topic, &bounds, millis)?,
            _ => bounds
                .iter()
                .map(|b| {
                    let target = match to {
                        ResetTo::Beginning => b.low,
                        ResetTo::End => b.high,
                        // Past either end, the group would be reset by the consumer's
                        // `auto.offset.reset`: keep it where it means something.
                        ResetTo::Offset(n) => (n.min(i64::MAX as u64) as i64).clamp(b.low, b.high),
                        ResetTo::Time(_) => unreachable!("handled above"),
                    };
                    (b.partition, target)
                })
                .collect(),
        };
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in &targets {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(broker_error)?;
        }
        consumer.commit(&list, CommitMode::Sync).map_err(|e| {
            BrokerError::Refused(format!("committing the new positions of `{group}`: {e}"))
        })?;
        tracing::info!(%group, %topic, ?targets, "positions reset");
        self.group_positions(topic, subscriber)
    }

    /// The first offset at or after `millis` on each partition (the end where nothing is).
    fn offsets_at(
        consumer: &BaseConsumer<OutsideContext>,
        topic: &str,
        bounds: &[Bounds],
        millis: i64,
    ) -> Result<Vec<(i32, i64)>, BrokerError> {
        let mut asked = TopicPartitionList::new();
        for b in bounds {
            asked
                .add_partition_offset(topic, b.partition, Offset::Offset(millis))
                .map_err(broker_error)?;
        }
        let found = consumer
            .offsets_for_times(asked, TIMEOUT)
            .map_err(broker_error)?;
        Ok(bounds
            .iter()
            .map(|b| {
                let offset = found
                    .find_partition(topic, b.partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(n) if n >= 0 => Some(n),
                        _ => None,
                    })
                    .unwrap_or(b.high);
                (b.partition, offset)
            })
            .collect())
    }
}
