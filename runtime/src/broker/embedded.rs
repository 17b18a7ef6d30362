//! The embedded broker: topics with partitions in this process's memory.
//!
//! Every subscriber has its own cursor and committed position per partition, so routes on one
//! topic fan out independently and a route reading a topic another route writes to chains
//! after it. Events are placed by key hash (keyless events round-robin) and kept for the
//! life of the process.
//!
//! Finite runs end by themselves: the broker counts, over all subscriptions, the events
//! appended and not yet committed. Emits are appended before the event that caused them is
//! committed, so when no input is still open and that count is zero, nothing can ever arrive
//! again and every source reports [`Poll::Exhausted`].

use super::files::{self, FeedReport};
use super::{Body, Broker, BrokerError, Completion, Delivery, Poll, Sink, Source, Undecodable};
use crate::event::{Event, key_hash};
use crate::metrics::PartitionPosition;
use crate::shutdown::Shutdown;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Handle to one embedded broker; clones share it.
#[derive(Clone)]
pub struct EmbeddedBroker(Arc<Inner>);

struct Inner {
    partitions: u32,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Appended and not yet committed, summed over subscriptions.
    outstanding: AtomicU64,
    /// Inputs that may still append.
    open_inputs: AtomicUsize,
    /// Bumped on every change a waiting source may care about.
    generation: Mutex<u64>,
    changed: Condvar,
}

struct Topic {
    name: String,
    partitions: Vec<RwLock<Vec<Body>>>,
    subscribers: AtomicU64,
    next_keyless: AtomicU32,
}

impl EmbeddedBroker {
    /// A broker whose topics have `partitions` partitions each.
    pub fn new(partitions: u32) -> Self {
        EmbeddedBroker(Arc::new(Inner {
            partitions: partitions.max(1),
            topics: RwLock::default(),
            outstanding: AtomicU64::new(0),
            open_inputs: AtomicUsize::new(0),
            generation: Mutex::new(0),
            changed: Condvar::new(),
        }))
    }

    /// A new subscriber to `topic`, reading from its first offset.
    pub fn subscribe(&self, topic: &str) -> EmbeddedSource {
        let topic = self.topic(topic);
        // Hold every partition lock so no append is counted twice or missed.
        let logs: Vec<_> = topic
            .partitions
            .iter()
            .map(|p| p.write().expect("log lock"))
            .collect();
        topic.subscribers.fetch_add(1, Ordering::SeqCst);
        let existing: usize = logs.iter().map(|log| log.len()).sum();
        self.0
            .outstanding
            .fetch_add(existing as u64, Ordering::SeqCst);
        drop(logs);
        EmbeddedSource {
            confirmed: Vec::new(),
            broker: self.clone(),
            cursors: vec![0; topic.partitions.len()],
            committed: vec![0; topic.partitions.len()],
            next_partition: 0,
            paused: false,
            topic,
        }
    }

    /// A sink publishing into this broker.
    pub fn sink(&self) -> Arc<dyn Sink> {
        Arc::new(self.clone())
    }

    /// Marks an input as open until the returned guard is dropped; the broker is not
    /// exhausted while any input is open.
    pub fn open_input(&self) -> InputGuard {
        self.0.open_inputs.fetch_add(1, Ordering::SeqCst);
        InputGuard(self.clone())
    }

    /// Appends `event` to its topic; returns where it landed.
    pub fn append(&self, mut event: Event) -> (u32, u64) {
        let topic = self.topic(&event.topic);
        let partition = topic.partition_for(event.key.as_deref());
        self.push(&topic, partition, |offset| {
            event.partition = partition;
            event.offset = offset;
            Body::Event(Arc::new(event))
        })
    }

    /// Appends a record that could not be decoded, to be dead-lettered by its readers.
    pub fn append_undecodable(&self, record: Undecodable) -> (u32, u64) {
        let topic = self.topic(&record.topic);
        let partition = topic.partition_for(record.key.as_deref());
        self.push(&topic, partition, |_| Body::Undecodable(Arc::new(record)))
    }

    /// Every record of `topic` so far, partition by partition (for tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn read_all(&self, topic: &str) -> Vec<Body> {
        let topic = self.topic(topic);
        topic
            .partitions
            .iter()
            .flat_map(|p| p.read().expect("log lock").clone())
            .collect()
    }

    /// Records in `topic` (0 if nothing was ever appended to it).
    pub fn depth(&self, topic: &str) -> u64 {
        let topics = self.0.topics.read().expect("topics lock");
        topics.get(topic).map_or(0, |topic| {
            topic
                .partitions
                .iter()
                .map(|p| p.read().expect("log lock").len() as u64)
                .sum()
        })
    }

    /// Whether nothing can arrive any more: no input open and everything committed.
    pub fn is_exhausted(&self) -> bool {
        self.0.open_inputs.load(Ordering::SeqCst) == 0
            && self.0.outstanding.load(Ordering::SeqCst) == 0
    }

    fn push(&self, topic: &Topic, partition: u32, make: impl FnOnce(u64) -> Body) -> (u32, u64) {
        let mut log = topic.partitions[partition as usize]
            .write()
            .expect("log lock");
        let offset = log.len() as u64;
        log.push(make(offset));
        let subscribers = topic.subscribers.load(Ordering::SeqCst);
        self.0.outstanding.fetch_add(subscribers, Ordering::SeqCst);
        drop(log);
        self.notify();
        (partition, offset)
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        if let Some(topic) = self.0.topics.read().expect("topics lock").get(name) {
            return topic.clone();
        }
        let mut topics = self.0.topics.write().expect("topics lock");
        topics
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Topic {
                    name: name.to_owned(),
                    partitions: (0..self.0.partitions).map(|_| RwLock::default()).collect(),
                    subscribers: AtomicU64::new(0),
                    next_keyless: AtomicU32::new(0),
                })
            })
            .clone()
    }

    fn generation(&self) -> u64 {
        *self.0.generation.lock().expect("generation lock")
    }

    fn notify(&self) {
        *self.0.generation.lock().expect("generation lock") += 1;
        self.0.changed.notify_all();
    }

    /// Waits until the generation moves past `seen` or `deadline` passes.
    fn wait_for_change(&self, seen: u64, deadline: Instant) {
        let guard = self.0.generation.lock().expect("generation lock");
        let timeout = deadline.saturating_duration_since(Instant::now());
        let _unused = self
            .0
            .changed
            .wait_timeout_while(guard, timeout, |generation| *generation == seen)
            .expect("generation lock");
    }
}

impl Topic {
    fn partition_for(&self, key: Option<&[u8]>) -> u32 {
        let count = self.partitions.len() as u64;
        match key {
            Some(key) => (key_hash(key) % count) as u32,
            None => self.next_keyless.fetch_add(1, Ordering::Relaxed) % count as u32,
        }
    }
}

impl Sink for EmbeddedBroker {
    /// Appends at once; an in-memory append cannot fail.
    fn publish(&self, events: Vec<Event>, done: Completion) {
        for event in events {
            self.append(event);
        }
        done(Ok(()));
    }
}

/// Closes an input when dropped.
pub struct InputGuard(EmbeddedBroker);

impl Drop for InputGuard {
    fn drop(&mut self) {
        self.0.0.open_inputs.fetch_sub(1, Ordering::SeqCst);
        self.0.notify();
    }
}

/// One subscriber's view of a topic.
pub struct EmbeddedSource {
    broker: EmbeddedBroker,
    topic: Arc<Topic>,
    cursors: Vec<u64>,
    committed: Vec<u64>,
    /// Positions committed since [`Source::confirmed`] last took them.
    confirmed: Vec<(u32, u64)>,
    next_partition: usize,
    paused: bool,
}

impl EmbeddedSource {
    fn take(&mut self, max: usize) -> Vec<Delivery> {
        let count = self.cursors.len();
        let mut out = Vec::new();
        for step in 0..count {
            let partition = (self.next_partition + step) % count;
            let log = self.topic.partitions[partition].read().expect("log lock");
            let from = self.cursors[partition] as usize;
            let until = log.len().min(from + (max - out.len()));
            out.extend(
                log[from..until]
                    .iter()
                    .enumerate()
                    .map(|(i, body)| Delivery {
                        partition: partition as u32,
                        offset: (from + i) as u64,
                        body: body.clone(),
                    }),
            );
            self.cursors[partition] = until as u64;
            if out.len() == max {
                break;
            }
        }
        // Start from the next partition next time so no partition starves.
        self.next_partition = (self.next_partition + 1) % count;
        out
    }
}

impl Source for EmbeddedSource {
    fn positions(&mut self) -> Option<Vec<PartitionPosition>> {
        let positions = self
            .topic
            .partitions
            .iter()
            .zip(&self.committed)
            .enumerate()
            .map(|(partition, (log, committed))| PartitionPosition {
                partition: partition as u32,
                committed: *committed,
                end: log.read().expect("log lock").len() as u64,
            })
            .collect();
        Some(positions)
    }

    fn confirmed(&mut self) -> Vec<(u32, u64)> {
        std::mem::take(&mut self.confirmed)
    }

    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Poll, BrokerError> {
        let deadline = Instant::now() + timeout;
        if self.paused {
            // A paused subscription holds unfinished events, so it cannot be exhausted.
            std::thread::sleep(timeout);
            return Ok(Poll::Idle);
        }
        loop {
            let seen = self.broker.generation();
            let records = self.take(max.max(1));
            if !records.is_empty() {
                return Ok(Poll::Records(records));
            }
            if self.broker.is_exhausted() {
                return Ok(Poll::Exhausted);
            }
            if Instant::now() >= deadline {
                return Ok(Poll::Idle);
            }
            self.broker.wait_for_change(seen, deadline);
        }
    }

    fn commit(&mut self, positions: &[(u32, u64)]) -> Result<(), BrokerError> {
        self.confirmed.extend_from_slice(positions);
        let mut finished = 0;
        for &(partition, next) in positions {
            let committed = &mut self.committed[partition as usize];
            if next > *committed {
                finished += next - *committed;
                *committed = next;
            }
        }
        if finished > 0 {
            let before = self
                .broker
                .0
                .outstanding
                .fetch_sub(finished, Ordering::SeqCst);
            if before == finished {
                self.broker.notify();
            }
        }
        Ok(())
    }

    fn rewind(&mut self) {
        self.cursors.clone_from(&self.committed);
    }

    fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }
}

impl Drop for EmbeddedSource {
    fn drop(&mut self) {
        // What this subscriber never committed no longer holds the broker open.
        let uncommitted: u64 = self
            .topic
            .partitions
            .iter()
            .zip(&self.committed)
            .map(|(log, committed)| log.read().expect("log lock").len() as u64 - committed)
            .sum();
        self.topic.subscribers.fetch_sub(1, Ordering::SeqCst);
        self.broker
            .0
            .outstanding
            .fetch_sub(uncommitted, Ordering::SeqCst);
        self.broker.notify();
        tracing::trace!(topic = %self.topic.name, uncommitted, "subscription closed");
    }
}

impl Broker for EmbeddedBroker {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn subscribe(&self, topic: &str, _subscriber: &str) -> Result<Box<dyn Source>, BrokerError> {
        Ok(Box::new(EmbeddedBroker::subscribe(self, topic)))
    }

    fn sink(&self) -> Arc<dyn Sink> {
        EmbeddedBroker::sink(self)
    }

    fn depth(&self, topic: &str, _timeout: Duration) -> Result<u64, BrokerError> {
        Ok(EmbeddedBroker::depth(self, topic))
    }

    fn publish_raw(&self, topic: &str, raw: &[u8]) -> Result<(), BrokerError> {
        self.append_undecodable(Undecodable {
            topic: topic.to_owned(),
            key: None,
            headers: Vec::new(),
            raw: raw.to_vec(),
            reason: "not a CloudEvent".to_owned(),
        });
        Ok(())
    }

    fn feed(
        &self,
        topic: &str,
        path: &Path,
        follow: bool,
        stop: &Shutdown,
    ) -> std::io::Result<FeedReport> {
        files::feed_file(self, topic, path, follow, stop)
    }

    fn is_exhausted(&self) -> bool {
        EmbeddedBroker::is_exhausted(self)
    }

    fn open_input(&self) -> Option<InputGuard> {
        Some(EmbeddedBroker::open_input(self))
    }

    #[cfg(feature = "testing")]
    fn as_embedded(&self) -> Option<&EmbeddedBroker> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str, key: Option<&str>, id: &str) -> Event {
        let mut event = crate::cloudevents::decode(
            format!(r#"{{"specversion":"1.0","id":"{id}","source":"t","type":"t"}}"#).as_bytes(),
        )
        .unwrap();
        event.topic = topic.to_owned();
        event.key = key.map(|k| k.as_bytes().to_vec());
        event
    }

    fn drain(source: &mut EmbeddedSource) -> Vec<Delivery> {
        match source.poll(1000, Duration::from_millis(10)).unwrap() {
            Poll::Records(records) => records,
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn subscribers_fan_out_independently() {
        let broker = EmbeddedBroker::new(2);
        let mut a = broker.subscribe("t");
        let mut b = broker.subscribe("t");
        for i in 0..10 {
            broker.append(event("t", Some(&format!("k{i}")), &i.to_string()));
        }
        assert_eq!(drain(&mut a).len(), 10);
        assert_eq!(drain(&mut b).len(), 10);
    }

    #[test]
    fn same_key_same_partition_in_order() {
        let broker = EmbeddedBroker::new(4);
        let mut source = broker.subscribe("t");
        for i in 0..20 {
            broker.append(event("t", Some("one-key"), &i.to_string()));
        }
        let records = drain(&mut source);
        assert!(records.iter().all(|d| d.partition == records[0].partition));
        let ids: Vec<String> = records
            .iter()
            .map(|d| match &d.body {
                Body::Event(e) => e.id.clone(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ids, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn exhausted_only_when_inputs_closed_and_all_committed() {
        let broker = EmbeddedBroker::new(1);
        let mut source = broker.subscribe("t");
        let input = broker.open_input();
        broker.append(event("t", None, "1"));
        drop(input);
        let records = drain(&mut source);
        assert!(matches!(
            source.poll(10, Duration::from_millis(1)).unwrap(),
            Poll::Idle
        ));
        source.commit(&[(0, records[0].offset + 1)]).unwrap();
        assert!(matches!(
            source.poll(10, Duration::from_millis(1)).unwrap(),
            Poll::Exhausted
        ));
    }
}
