//! A subscriber's consumer: one consumer (`HOST-PID-N`) in the group `GROUP.SUBSCRIBER` of
//! each of its topic's streams, on a connection of its own (reads block on it).
//!
//! Each poll does, in this order, what is due:
//! 1. every `claim_idle / 3`, resets the idle time of the entries it holds (`XCLAIM ...
//!    JUSTID`, which does not count as a delivery), so a slow event is not taken from it,
//!    and, on a sharded topic, renews, gives back and takes shards ([`super::shards`]);
//! 2. after a rewind, reads its own pending entries again (`XREADGROUP ... 0`);
//! 3. on a shard just taken, takes over everything pending on it, from the start;
//! 4. on a shared stream, every `claim_idle / 2` (at most every 5 s), takes over entries
//!    other consumers held unacknowledged for `claim_idle` (`XAUTOCLAIM`), and forgets
//!    consumers that hold nothing and have been idle that long;
//! 5. reads new entries (`XREADGROUP ... >`, blocking up to the poll's timeout) of the
//!    streams it reads: all of them, or on a sharded topic the shards it owns.
//!
//! Entries taken over that were delivered more than `max_deliveries` times are handed out
//! as [`Body::Exhausted`]. A commit acknowledges (`XACK`), in delivery order, every entry up
//! to the one the position names.

use super::entry::{self, RawEntry, pack_id};
use super::link::Link;
use super::shards::Ownership;
use crate::broker::{Body, BrokerError, Delivery, Poll, Source, Undecodable};
use crate::metrics::PartitionPosition;
use redis::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a source measures its group's positions (for the lag), and how often it tells
/// the dispatcher which positions no consumer of the group will read again.
const MEASURE_INTERVAL: Duration = Duration::from_secs(5);

/// The longest time between two reclaim rounds.
const MAX_CLAIM_INTERVAL: Duration = Duration::from_secs(5);

/// How long after its first round of step 1 a source runs the second.
const FIRST_TICKS_APART: Duration = Duration::from_millis(500);

/// Most ids in one `XACK` or `XCLAIM`.
const IDS_PER_COMMAND: usize = 1024;

/// Tells this process's consumers apart.
static NEXT_CONSUMER: AtomicU64 = AtomicU64::new(0);

/// What every source of one broker shares.
#[derive(Debug)]
pub struct SourceSettings {
    /// Prefix of every consumer group.
    pub group: String,
    /// How long an entry may stay unacknowledged with a consumer before another takes it.
    pub claim_idle: Duration,
    /// Deliveries after which an entry is dead-lettered instead.
    pub max_deliveries: u32,
    /// `HOST-PID`.
    pub consumer_prefix: String,
}

/// One subscription.
pub struct RedisSource {
    settings: Arc<SourceSettings>,
    link: Link,
    topic: String,
    /// One stream per partition (shard).
    streams: Vec<String>,
    group: String,
    consumer: String,
    /// Whether every stream has the group.
    ready: bool,
    /// On a sharded topic: the shards this consumer owns.
    ownership: Option<Ownership>,
    /// When step 1 runs next.
    next_tick: Instant,
    /// How many rounds of step 1 have run.
    ticks: u32,
    /// Delivered and not yet acknowledged, per partition, in delivery order.
    held: Vec<VecDeque<(u64, String)>>,
    /// While rereading its own pending entries: where each stream's reading is.
    pending_from: Option<Vec<String>>,
    /// Shards just taken: where taking over what is pending on each is.
    takeover_from: Vec<Option<String>>,
    /// Where each stream's reclaiming is (`XAUTOCLAIM`'s cursor).
    claim_cursor: Vec<String>,
    claimed_at: Instant,
    measured_at: Option<Instant>,
    /// The last position committed per partition, until told to the dispatcher.
    committed: Vec<Option<u64>>,
    confirmed_at: Instant,
    paused: bool,
}

impl RedisSource {
    /// A source reading `streams` (the shards of `topic`; owned one consumer at a time if
    /// `sharded`) for `subscriber`.
    pub fn new(
        client: redis::Client,
        settings: Arc<SourceSettings>,
        topic: &str,
        streams: Vec<String>,
        sharded: bool,
        subscriber: &str,
    ) -> RedisSource {
        let consumer = format!(
            "{}-{}",
            settings.consumer_prefix,
            NEXT_CONSUMER.fetch_add(1, Ordering::Relaxed)
        );
        let group = format!("{}.{subscriber}", settings.group);
        let shards = streams.len();
        RedisSource {
            ownership: sharded
                .then(|| Ownership::new(&group, &streams, &consumer, settings.claim_idle)),
            link: Link::new(client),
            topic: topic.to_owned(),
            held: vec![VecDeque::new(); shards],
            pending_from: None,
            takeover_from: vec![None; shards],
            claim_cursor: vec!["0-0".to_owned(); shards],
            claimed_at: Instant::now(),
            measured_at: None,
            committed: vec![None; shards],
            confirmed_at: Instant::now(),
            paused: false,
            next_tick: Instant::now(),
            ticks: 0,
            ready: false,
            settings,
            streams,
            group,
            consumer,
        }
    }

    /// Runs `cmd`; a stream or group deleted meanwhile is made again before the next read.
    fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, BrokerError> {
        self.link.query(cmd).inspect_err(|error| {
            if error.to_string().contains("NOGROUP") {
                self.ready = false;
            }
        })
    }

    /// The partitions (shards) this consumer reads now.
    fn readable(&self) -> Vec<usize> {
        (0..self.streams.len())
            .filter(|&p| self.ownership.as_ref().is_none_or(|o| o.owns(p)))
            .collect()
    }

    /// Creates the group on every stream (from the stream's first entry, like Kafka's
    /// `earliest`), and the stream if need be.
    fn ensure_ready(&mut self) -> Result<(), BrokerError> {
        if self.ready {
            return Ok(());
        }
        for stream in self.streams.clone() {
            let mut create = redis::cmd("XGROUP");
            create
                .arg("CREATE")
                .arg(&stream)
                .arg(&self.group)
                .arg("0")
                .arg("MKSTREAM");
            match self.link.query::<()>(&create) {
                Ok(()) => tracing::info!(%stream, group = %self.group, "consumer group created"),
                Err(error) if error.to_string().contains("BUSYGROUP") => {}
                Err(error) => return Err(error),
            }
        }
        tracing::info!(topic = %self.topic, group = %self.group, consumer = %self.consumer, streams = ?self.streams, "reading");
        self.ready = true;
        Ok(())
    }

    /// Turns entries read from `partition` into deliveries, holding each until it is
    /// acknowledged; `deliveries` gives how often each was delivered.
    fn deliveries(
        &mut self,
        partition: usize,
        entries: Vec<RawEntry>,
        deliveries: &dyn Fn(&str) -> u32,
    ) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(entries.len());
        for raw in entries {
            let Some(offset) = pack_id(&raw.id) else {
                tracing::error!(stream = %self.streams[partition], id = %raw.id, "an entry id that is not MS-SEQ: skipped");
                continue;
            };
            self.held[partition].push_back((offset, raw.id.clone()));
            let body = match raw.fields {
                None => undecodable(
                    &self.topic,
                    offset,
                    Vec::new(),
                    None,
                    "the entry was trimmed away (MAXLEN) before it was handled".into(),
                ),
                Some(fields) => {
                    match entry::decode(fields, &self.topic, partition as u32, offset) {
                        Ok(event) => {
                            let count = deliveries(&raw.id);
                            if count > self.settings.max_deliveries {
                                Body::Exhausted {
                                    event: Arc::new(event),
                                    deliveries: count,
                                }
                            } else {
                                Body::Event(Arc::new(event))
                            }
                        }
                        Err((reason, fields)) => {
                            let key = fields
                                .iter()
                                .find(|(n, _)| n == b"key")
                                .map(|(_, v)| v.clone());
                            // A lone `data` field is kept as it was; other entries as JSON.
                            let raw = match fields.as_slice() {
                                [(name, data)] if name == b"data" => data.clone(),
                                _ => entry::as_json(&fields),
                            };
                            undecodable(&self.topic, offset, raw, key, reason)
                        }
                    }
                }
            };
            out.push(Delivery {
                partition: partition as u32,
                offset,
                body,
            });
        }
        out
    }

    /// `XREADGROUP` of the streams of `partitions`, from `ids` (one per partition): `>` for
    /// new entries, an id for own pending.
    fn read(
        &mut self,
        max: usize,
        block: Option<Duration>,
        partitions: &[usize],
        ids: &[String],
    ) -> Result<Vec<Delivery>, BrokerError> {
        let streams: Vec<&String> = partitions.iter().map(|&p| &self.streams[p]).collect();
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(max);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&streams).arg(ids);
        let reply: Value = self.query(&cmd)?;
        let mut out = Vec::new();
        for (stream, entries) in entry::read_reply(reply) {
            if let Some(partition) = self.streams.iter().position(|s| *s == stream) {
                out.extend(self.deliveries(partition, entries, &|_| 1));
            }
        }
        Ok(out)
    }

    /// Step 1: resets the idle time of every entry held.
    fn refresh_held(&mut self) -> Result<(), BrokerError> {
        for partition in 0..self.streams.len() {
            let ids: Vec<String> = self.held[partition]
                .iter()
                .map(|(_, id)| id.clone())
                .collect();
            for chunk in ids.chunks(IDS_PER_COMMAND) {
                let mut cmd = redis::cmd("XCLAIM");
                cmd.arg(&self.streams[partition])
                    .arg(&self.group)
                    .arg(&self.consumer)
                    .arg(0)
                    .arg(chunk)
                    .arg("JUSTID");
                self.query::<Value>(&cmd)?;
            }
        }
        Ok(())
    }

    /// Step 1 on a sharded topic: settles which shards this consumer reads.
    fn settle_shards(&mut self) -> Result<(), BrokerError> {
        let Some(mut ownership) = self.ownership.take() else {
            return Ok(());
        };
        let idle: Vec<bool> = self.held.iter().map(VecDeque::is_empty).collect();
        let changes = ownership.tick(&mut self.link, &|shard| idle[shard]);
        self.ownership = Some(ownership);
        let changes = changes?;
        for &shard in &changes.gained {
            self.takeover_from[shard] = Some("0-0".to_owned());
        }
        for &shard in &changes.lost {
            self.takeover_from[shard] = None;
        }
        if !changes.gained.is_empty() || !changes.lost.is_empty() {
            tracing::info!(topic = %self.topic, group = %self.group, consumer = %self.consumer, gained = ?changes.gained, lost = ?changes.lost, reading = ?self.readable(), "shards changed hands");
        }
        Ok(())
    }

    /// Step 2: own pending entries, until none is left.
    fn read_own_pending(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let Some(mut from) = self.pending_from.clone() else {
            return Ok(Vec::new());
        };
        let partitions = self.readable();
        let ids: Vec<String> = partitions.iter().map(|&p| from[p].clone()).collect();
        let read = if partitions.is_empty() {
            Vec::new()
        } else {
            self.read(max, None, &partitions, &ids)?
        };
        for delivery in &read {
            from[delivery.partition as usize] = entry::unpack_id(delivery.offset);
        }
        self.pending_from = (!read.is_empty()).then_some(from);
        Ok(read)
    }

    /// Takes over, on `partition`, entries idle for `min_idle` or more, from `cursor`;
    /// returns them as deliveries and where to go on (`0-0` once the end is reached).
    fn claim(
        &mut self,
        partition: usize,
        min_idle: Duration,
        cursor: &str,
        max: usize,
    ) -> Result<(Vec<Delivery>, String), BrokerError> {
        let stream = self.streams[partition].clone();
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&stream)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(min_idle.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(max);
        let reply: Value = self.query(&cmd)?;
        let (next, claimed) = entry::autoclaim_reply(reply);
        if claimed.is_empty() {
            return Ok((Vec::new(), next));
        }
        let counts = self.delivery_counts(&stream, &claimed)?;
        tracing::warn!(%stream, group = %self.group, entries = claimed.len(), "took over entries a stopped consumer held");
        let deliveries = self.deliveries(partition, claimed, &|id| {
            counts.iter().find(|(i, _)| i == id).map_or(1, |(_, n)| *n)
        });
        Ok((deliveries, next))
    }

    /// Step 3: on shards just taken, everything pending, idle or not (whoever held it gave
    /// the shard up or died).
    fn take_over(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        for partition in 0..self.streams.len() {
            let Some(cursor) = self.takeover_from[partition].clone() else {
                continue;
            };
            let (claimed, next) = self.claim(partition, Duration::ZERO, &cursor, max)?;
            if next == "0-0" {
                self.takeover_from[partition] = None;
                let stream = self.streams[partition].clone();
                self.forget_idle_consumers(&stream)?;
            } else {
                self.takeover_from[partition] = Some(next);
            }
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }
        Ok(Vec::new())
    }

    /// Step 4: entries dead consumers left behind on shared streams.
    fn reclaim(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let mut out = Vec::new();
        for partition in 0..self.streams.len() {
            let cursor = self.claim_cursor[partition].clone();
            let (claimed, next) = self.claim(partition, self.settings.claim_idle, &cursor, max)?;
            self.claim_cursor[partition] = next;
            if !claimed.is_empty() {
                out.extend(claimed);
                let stream = self.streams[partition].clone();
                self.forget_idle_consumers(&stream)?;
            }
        }
        Ok(out)
    }

    /// How many times each of `entries` (just claimed by this consumer) has been delivered.
    fn delivery_counts(
        &mut self,
        stream: &str,
        entries: &[RawEntry],
    ) -> Result<Vec<(String, u32)>, BrokerError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Vec::new());
        };
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(stream)
            .arg(&self.group)
            .arg(&first.id)
            .arg(&last.id)
            .arg(entries.len())
            .arg(&self.consumer);
        let reply: Value = self.query(&cmd)?;
        Ok(entry::items(&reply)
            .iter()
            .filter_map(|row| {
                let row = entry::items(row);
                Some((
                    entry::text(row.first()?)?,
                    entry::integer(row.get(3)?)? as u32,
                ))
            })
            .collect())
    }

    /// Deletes the consumers of `stream`'s group that hold nothing and have been idle for
    /// `claim_idle` (processes gone), so the group's list stays short. Deleting one that is
    /// alive after all costs nothing: it is made again on its next read.
    fn forget_idle_consumers(&mut self, stream: &str) -> Result<(), BrokerError> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("CONSUMERS").arg(stream).arg(&self.group);
        let reply: Value = self.query(&cmd)?;
        let idle = self.settings.claim_idle.as_millis() as i64;
        for consumer in entry::items(&reply) {
            let fields = entry::fields_of(consumer);
            let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            let (Some(name), Some(pending), Some(since)) = (
                get("name").and_then(entry::text),
                get("pending").and_then(entry::integer),
                get("idle").and_then(entry::integer),
            ) else {
                continue;
            };
            if name != self.consumer && pending == 0 && since >= idle {
                let mut delete = redis::cmd("XGROUP");
                delete
                    .arg("DELCONSUMER")
                    .arg(stream)
                    .arg(&self.group)
                    .arg(&name);
                self.query::<Value>(&delete)?;
            }
        }
        Ok(())
    }

    fn claim_interval(&self) -> Duration {
        (self.settings.claim_idle / 2).min(MAX_CLAIM_INTERVAL)
    }

    /// The group's counters on `stream` (`XINFO GROUPS`): entries read, pending, lag.
    fn group_counters(&mut self, stream: &str) -> Option<(u64, u64, u64)> {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(stream);
        let reply: Value = self.query(&cmd).ok()?;
        let group = entry::items(&reply).iter().find(|g| {
            entry::fields_of(g)
                .iter()
                .any(|(n, v)| n == "name" && entry::text(v).as_deref() == Some(&self.group))
        })?;
        let fields = entry::fields_of(group);
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| entry::integer(v))
                .unwrap_or(0)
                .max(0) as u64
        };
        Some((get("entries-read"), get("pending"), get("lag")))
    }
}

/// An entry that is not an event, kept to be dead-lettered.
fn undecodable(
    topic: &str,
    offset: u64,
    raw: Vec<u8>,
    key: Option<Vec<u8>>,
    reason: String,
) -> Body {
    Body::Undecodable(Arc::new(Undecodable {
        topic: topic.to_owned(),
        key,
        headers: Vec::new(),
        raw,
        reason: format!("entry {}: {reason}", entry::unpack_id(offset)),
    }))
}

impl Source for RedisSource {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Poll, BrokerError> {
        self.ensure_ready()?;
        if Instant::now() >= self.next_tick {
            self.refresh_held()?;
            self.settle_shards()?;
            self.ticks += 1;
            // The second round soon after the first, which only registers (see `shards`).
            let every = self.settings.claim_idle / 3;
            self.next_tick = Instant::now()
                + if self.ticks == 1 {
                    every.min(FIRST_TICKS_APART)
                } else {
                    every
                };
        }
        if self.paused || max == 0 {
            std::thread::sleep(timeout.min(Duration::from_millis(100)));
            return Ok(Poll::Idle);
        }
        let own = self.read_own_pending(max)?;
        if !own.is_empty() {
            return Ok(Poll::Records(own));
        }
        let taken = self.take_over(max)?;
        if !taken.is_empty() {
            return Ok(Poll::Records(taken));
        }
        if self.ownership.is_none() && self.claimed_at.elapsed() >= self.claim_interval() {
            self.claimed_at = Instant::now();
            let claimed = self.reclaim(max)?;
            if !claimed.is_empty() {
                return Ok(Poll::Records(claimed));
            }
        }
        // New entries only of shards whose pending entries are all taken over.
        let partitions: Vec<usize> = self
            .readable()
            .into_iter()
            .filter(|&p| self.takeover_from[p].is_none())
            .collect();
        if partitions.is_empty() {
            std::thread::sleep(timeout);
            return Ok(Poll::Idle);
        }
        let new = vec![">".to_owned(); partitions.len()];
        let read = self.read(max, Some(timeout), &partitions, &new)?;
        Ok(if read.is_empty() {
            Poll::Idle
        } else {
            Poll::Records(read)
        })
    }

    fn commit(&mut self, positions: &[(u32, u64)]) -> Result<(), BrokerError> {
        for &(partition, next) in positions {
            let p = partition as usize;
            let Some(held) = self.held.get(p) else {
                continue;
            };
            // The tracker's position is one past the last finished entry in delivery order.
            let Some(last) = held.iter().position(|(offset, _)| offset + 1 == next) else {
                continue;
            };
            let ids: Vec<String> = held
                .iter()
                .take(last + 1)
                .map(|(_, id)| id.clone())
                .collect();
            for chunk in ids.chunks(IDS_PER_COMMAND) {
                let mut cmd = redis::cmd("XACK");
                cmd.arg(&self.streams[p]).arg(&self.group).arg(chunk);
                self.query::<Value>(&cmd)?;
            }
            self.held[p].drain(..=last);
            self.committed[p] = Some(next);
        }
        Ok(())
    }

    /// Positions below which no consumer of the group holds anything (so no entry there is
    /// delivered again): the state store's "applied once" markers below them may go.
    fn confirmed(&mut self) -> Vec<(u32, u64)> {
        if self.confirmed_at.elapsed() < MEASURE_INTERVAL {
            return Vec::new();
        }
        self.confirmed_at = Instant::now();
        let mut out = Vec::new();
        for p in 0..self.streams.len() {
            let Some(next) = self.committed[p] else {
                continue;
            };
            let mut cmd = redis::cmd("XPENDING");
            cmd.arg(&self.streams[p]).arg(&self.group);
            let Ok(summary) = self.query::<Value>(&cmd) else {
                return out;
            };
            let summary = entry::items(&summary);
            let pending = summary.first().and_then(entry::integer).unwrap_or(0);
            let oldest = summary
                .get(1)
                .and_then(entry::text)
                .and_then(|id| pack_id(&id));
            let safe = match (pending, oldest) {
                (0, _) => next,
                (_, Some(oldest)) => next.min(oldest),
                (_, None) => continue,
            };
            self.committed[p] = None;
            out.push((p as u32, safe));
        }
        out
    }

    fn rewind(&mut self) {
        for held in &mut self.held {
            held.clear();
        }
        self.pending_from = Some(vec!["0".to_owned(); self.streams.len()]);
    }

    fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Leaves the group, and gives its shards back, if it holds nothing (what it holds stays
    /// pending under its name, for another consumer to take over after `claim_idle`).
    fn close(&mut self) -> Result<(), BrokerError> {
        if !self.held.iter().all(VecDeque::is_empty) {
            return Ok(());
        }
        if let Some(mut ownership) = self.ownership.take() {
            ownership.release_all(&mut self.link)?;
        }
        for stream in self.streams.clone() {
            // Only a consumer's own pending entries go with it, and it has none.
            let mut cmd = redis::cmd("XGROUP");
            cmd.arg("DELCONSUMER")
                .arg(&stream)
                .arg(&self.group)
                .arg(&self.consumer);
            self.query::<Value>(&cmd)?;
        }
        Ok(())
    }

    /// The group's position on each stream read (Redis 7 counters): committed is what the
    /// group read minus what is pending, the end what it read plus its lag.
    fn positions(&mut self) -> Option<Vec<PartitionPosition>> {
        if !self.ready
            || self
                .measured_at
                .is_some_and(|at| at.elapsed() < MEASURE_INTERVAL)
        {
            return None;
        }
        self.measured_at = Some(Instant::now());
        let mut out = Vec::new();
        for p in self.readable() {
            let stream = self.streams[p].clone();
            let (read, pending, lag) = self.group_counters(&stream)?;
            out.push(PartitionPosition {
                partition: p as u32,
                committed: read.saturating_sub(pending),
                end: read + lag,
            });
        }
        Some(out)
    }

    fn is_assigned(&self) -> bool {
        self.ready && self.ticks >= if self.ownership.is_some() { 2 } else { 1 }
    }
}
