//! A subscriber's consumer: one consumer (`HOST-PID-N`) in the group `GROUP.SUBSCRIBER` of
//! each of its topic's streams, on a connection of its own (reads block on it).
//!
//! Each poll does, in this order, what is due:
//! 1. every `claim_idle / 3`, resets the idle time of the entries it holds (`XCLAIM ...
//!    JUSTID`, which does not count as a delivery), so a slow event is not taken from it;
//! 2. after a rewind, reads its own pending entries again (`XREADGROUP ... 0`);
//! 3. every `claim_idle / 2` (at most every 5 s), takes over entries other consumers held
//!    unacknowledged for `claim_idle` (`XAUTOCLAIM`), handing out those delivered more than
//!    `max_deliveries` times as [`Body::Exhausted`], and forgets consumers that hold nothing
//!    and have been idle that long;
//! 3. reads new entries (`XREADGROUP ... >`, blocking up to the poll's timeout).
//!
//! A commit acknowledges (`XACK`), in delivery order, every entry up to the one the position
//! names.

use super::entry::{self, RawEntry, pack_id};
use super::{IO_TIMEOUT, connection, unavailable};
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
    client: redis::Client,
    settings: Arc<SourceSettings>,
    con: Option<redis::Connection>,
    topic: String,
    /// One stream per partition (shard).
    streams: Vec<String>,
    group: String,
    consumer: String,
    /// Whether every stream has the group.
    ready: bool,
    /// Delivered and not yet acknowledged, per partition, in delivery order.
    held: Vec<VecDeque<(u64, String)>>,
    /// While rereading its own pending entries: where each stream's reading is.
    pending_from: Option<Vec<String>>,
    /// Where each stream's reclaiming is (`XAUTOCLAIM`'s cursor).
    claim_cursor: Vec<String>,
    claimed_at: Instant,
    refreshed_at: Instant,
    measured_at: Option<Instant>,
    /// The last position committed per partition, until told to the dispatcher.
    committed: Vec<Option<u64>>,
    confirmed_at: Instant,
    paused: bool,
}

impl RedisSource {
    /// A source reading `streams` (the shards of `topic`) for `subscriber`.
    pub fn new(
        client: redis::Client,
        settings: Arc<SourceSettings>,
        topic: &str,
        streams: Vec<String>,
        subscriber: &str,
    ) -> RedisSource {
        let consumer = format!(
            "{}-{}",
            settings.consumer_prefix,
            NEXT_CONSUMER.fetch_add(1, Ordering::Relaxed)
        );
        let shards = streams.len();
        RedisSource {
            group: format!("{}.{subscriber}", settings.group),
            client,
            settings,
            con: None,
            topic: topic.to_owned(),
            held: vec![VecDeque::new(); shards],
            pending_from: None,
            claim_cursor: vec!["0-0".to_owned(); shards],
            claimed_at: Instant::now(),
            refreshed_at: Instant::now(),
            measured_at: None,
            committed: vec![None; shards],
            confirmed_at: Instant::now(),
            paused: false,
            streams,
            consumer,
            ready: false,
        }
    }

    /// Runs `cmd`, connecting first if needed; a failed connection is dropped so the next
    /// command starts afresh.
    fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, BrokerError> {
        if self.con.is_none() {
            self.con = Some(connection(&self.client, IO_TIMEOUT)?);
        }
        let con = self.con.as_mut().expect("connected above");
        cmd.query(con).map_err(|error| {
            if error.code() == Some("NOGROUP") {
                // The stream or its group was deleted: make them again.
                self.ready = false;
            } else if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
                self.con = None;
            }
            unavailable(error)
        })
    }

    /// Creates the group on every stream (from the stream's first entry, like Kafka's
    /// `earliest`), and the stream if need be.
    fn ensure_ready(&mut self) -> Result<(), BrokerError> {
        if self.ready {
            return Ok(());
        }
        for stream in self.streams.clone() {
            let created = self.query::<()>(
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&stream)
                    .arg(&self.group)
                    .arg("0")
                    .arg("MKSTREAM"),
            );
            match created {
                Ok(()) => tracing::info!(%stream, group = %self.group, "consumer group created"),
                Err(error) if error.to_string().contains("BUSYGROUP") => {}
                Err(error) => return Err(error),
            }
        }
        tracing::info!(topic = %self.topic, group = %self.group, consumer = %self.consumer, streams = ?self.streams, "reading");
        self.ready = true;
        Ok(())
    }

    /// Turns entries read from partition `partition` into deliveries, holding each until it
    /// is acknowledged; `deliveries` gives how often each was delivered, when known.
    fn deliveries(
        &mut self,
        partition: usize,
        entries: Vec<RawEntry>,
        deliveries: &dyn Fn(&str) -> u32,
    ) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(entries.len());
        for raw in entries {
            let Some(offset) = pack_id(&raw.id) else {
                continue;
            };
            self.held[partition].push_back((offset, raw.id.clone()));
            let partition = partition as u32;
            let Some(fields) = raw.fields else {
                // Trimmed away while pending: nothing left to handle.
                out.push(self.undecodable(
                    partition,
                    offset,
                    Vec::new(),
                    Vec::new(),
                    "the entry was trimmed away (MAXLEN) before it was handled".into(),
                ));
                continue;
            };
            let body = match entry::decode(&fields, &self.topic, partition, offset) {
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
                Err(reason) => {
                    let key = fields
                        .iter()
                        .find(|(n, _)| n == b"key")
                        .map(|(_, v)| v.clone());
                    let raw = match fields.as_slice() {
                        [(name, data)] if name == b"data" => data.clone(),
                        _ => entry::as_json(&fields),
                    };
                    out.push(self.undecodable(
                        partition,
                        offset,
                        raw,
                        key.into_iter().collect(),
                        reason,
                    ));
                    continue;
                }
            };
            out.push(Delivery {
                partition,
                offset,
                body,
            });
        }
        out
    }

    fn undecodable(
        &self,
        partition: u32,
        offset: u64,
        raw: Vec<u8>,
        key: Vec<Vec<u8>>,
        reason: String,
    ) -> Delivery {
        Delivery {
            partition,
            offset,
            body: Body::Undecodable(Arc::new(Undecodable {
                topic: self.topic.clone(),
                key: key.into_iter().next(),
                headers: Vec::new(),
                raw,
                reason: format!("entry {}: {reason}", entry::unpack_id(offset)),
            })),
        }
    }

    /// `XREADGROUP` from `ids` (one per stream): `>` for new entries, an id for own pending.
    fn read(
        &mut self,
        max: usize,
        block: Option<Duration>,
        ids: &[String],
    ) -> Result<Vec<(usize, Vec<RawEntry>)>, BrokerError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(max);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.streams).arg(ids);
        let reply: Value = self.query(&cmd)?;
        Ok(entry::read_reply(&reply)
            .into_iter()
            .filter_map(|(stream, entries)| {
                let partition = self.streams.iter().position(|s| *s == stream)?;
                Some((partition, entries))
            })
            .collect())
    }

    /// Step 1: resets the idle time of every entry held.
    fn refresh_held(&mut self) -> Result<(), BrokerError> {
        for partition in 0..self.streams.len() {
            if self.held[partition].is_empty() {
                continue;
            }
            let ids: Vec<String> = self.held[partition]
                .iter()
                .map(|(_, id)| id.clone())
                .collect();
            for chunk in ids.chunks(1024) {
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

    /// Step 2: own pending entries, until none is left.
    fn read_own_pending(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let Some(from) = self.pending_from.clone() else {
            return Ok(Vec::new());
        };
        let read = self.read(max, None, &from)?;
        let mut out = Vec::new();
        let mut next = from;
        for (partition, entries) in read {
            if let Some(last) = entries.last() {
                next[partition] = last.id.clone();
            }
            out.extend(self.deliveries(partition, entries, &|_| 1));
        }
        self.pending_from = if out.is_empty() { None } else { Some(next) };
        Ok(out)
    }

    /// Step 3: entries dead consumers left behind.
    fn reclaim(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let idle = self.settings.claim_idle.as_millis() as u64;
        let mut out = Vec::new();
        for partition in 0..self.streams.len() {
            let stream = self.streams[partition].clone();
            let reply: Value = self.query(
                redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(&self.group)
                    .arg(&self.consumer)
                    .arg(idle)
                    .arg(&self.claim_cursor[partition])
                    .arg("COUNT")
                    .arg(max),
            )?;
            let parts = entry::items(&reply);
            self.claim_cursor[partition] = parts
                .first()
                .and_then(entry::text)
                .unwrap_or_else(|| "0-0".to_owned());
            let claimed = parts.get(1).map(entry::entries).unwrap_or_default();
            if claimed.is_empty() {
                continue;
            }
            let counts = self.delivery_counts(&stream, &claimed)?;
            tracing::warn!(%stream, group = %self.group, entries = claimed.len(), "took over entries a stopped consumer held");
            out.extend(self.deliveries(partition, claimed, &|id| {
                counts.iter().find(|(i, _)| i == id).map_or(1, |(_, n)| *n)
            }));
            self.forget_idle_consumers(&stream)?;
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
        let reply: Value = self.query(
            redis::cmd("XPENDING")
                .arg(stream)
                .arg(&self.group)
                .arg(&first.id)
                .arg(&last.id)
                .arg(entries.len())
                .arg(&self.consumer),
        )?;
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
        let reply: Value = self.query(
            redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(stream)
                .arg(&self.group),
        )?;
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
                self.query::<Value>(
                    redis::cmd("XGROUP")
                        .arg("DELCONSUMER")
                        .arg(stream)
                        .arg(&self.group)
                        .arg(&name),
                )?;
            }
        }
        Ok(())
    }

    fn claim_interval(&self) -> Duration {
        (self.settings.claim_idle / 2).min(MAX_CLAIM_INTERVAL)
    }
}

impl Source for RedisSource {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Poll, BrokerError> {
        self.ensure_ready()?;
        if self.refreshed_at.elapsed() >= self.settings.claim_idle / 3 {
            self.refresh_held()?;
            self.refreshed_at = Instant::now();
        }
        if self.paused || max == 0 {
            std::thread::sleep(timeout.min(Duration::from_millis(100)));
            return Ok(Poll::Idle);
        }
        let own = self.read_own_pending(max)?;
        if !own.is_empty() {
            return Ok(Poll::Records(own));
        }
        if self.claimed_at.elapsed() >= self.claim_interval() {
            self.claimed_at = Instant::now();
            let claimed = self.reclaim(max)?;
            if !claimed.is_empty() {
                return Ok(Poll::Records(claimed));
            }
        }
        let new = vec![">".to_owned(); self.streams.len()];
        let read = self.read(max, Some(timeout), &new)?;
        let mut out = Vec::new();
        for (partition, entries) in read {
            out.extend(self.deliveries(partition, entries, &|_| 1));
        }
        Ok(if out.is_empty() {
            Poll::Idle
        } else {
            Poll::Records(out)
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
            for chunk in ids.chunks(1024) {
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
            let Ok(summary) = self.query::<Value>(
                redis::cmd("XPENDING")
                    .arg(&self.streams[p])
                    .arg(&self.group),
            ) else {
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

    /// Leaves the group if it holds nothing (what it holds stays pending under its name, for
    /// another consumer to take over after `claim_idle`).
    fn close(&mut self) -> Result<(), BrokerError> {
        if self.held.iter().all(VecDeque::is_empty) {
            for stream in self.streams.clone() {
                let mut cmd = redis::cmd("XGROUP");
                cmd.arg("DELCONSUMER")
                    .arg(&stream)
                    .arg(&self.group)
                    .arg(&self.consumer);
                // Only an idle consumer's own pending count can be lost here, and it has
                // none: every entry it read was acknowledged.
                self.query::<Value>(&cmd)?;
            }
        }
        Ok(())
    }

    fn positions(&mut self) -> Option<Vec<PartitionPosition>> {
        if self
            .measured_at
            .is_some_and(|at| at.elapsed() < MEASURE_INTERVAL)
            || !self.ready
        {
            return None;
        }
        self.measured_at = Some(Instant::now());
        let mut out = Vec::new();
        for p in 0..self.streams.len() {
            let reply: Value = self
                .query(redis::cmd("XINFO").arg("GROUPS").arg(&self.streams[p]))
                .ok()?;
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
            };
            let read = get("entries-read").unwrap_or(0).max(0) as u64;
            let pending = get("pending").unwrap_or(0).max(0) as u64;
            let lag = get("lag").unwrap_or(0).max(0) as u64;
            out.push(PartitionPosition {
                partition: p as u32,
                committed: read.saturating_sub(pending),
                end: read + lag,
            });
        }
        Some(out)
    }

    fn is_assigned(&self) -> bool {
        self.ready
    }
}
