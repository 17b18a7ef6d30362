//! Reading a dead-letter topic: from the broker, in replay's own consumer group (so its
//! committed position says what was replayed already), or, on the embedded broker, from the
//! output file the topic was written to.
//!
//! A broker read stops at the end the topic had when it started: once each partition has
//! handed out the records its group lagged by then, or when nothing has come for
//! [`QUIET_END`] (a partition whose last records are transaction markers never hands out
//! that many).

use super::select::Letter;
use crate::broker::{Body, Broker, BrokerError, Poll, Source};
use crate::shutdown::Shutdown;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a read waits with nothing coming before it takes the topic as read.
const QUIET_END: Duration = Duration::from_secs(10);
/// How long the group may take to hand this consumer its partitions.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(60);

/// The letters read from one dead-letter topic, and how to commit having replayed them.
pub struct Read {
    /// The topic read.
    pub topic: String,
    /// Letters, in the order read, each with its partition and offset.
    pub letters: Vec<(u32, u64, Letter)>,
    /// Records that are not events at all: `position: reason`.
    pub unreadable: Vec<String>,
    /// The subscription read from (none for a file).
    source: Option<Box<dyn Source>>,
}

impl Read {
    /// Commits the replay's position: on each partition, past every letter read up to
    /// (not including) the first of `kept` (letters left for a later replay).
    pub fn commit(&mut self, kept: &[usize]) -> Result<(), BrokerError> {
        let Some(source) = self.source.as_mut() else {
            return Ok(());
        };
        let first_kept: BTreeMap<u32, usize> =
            kept.iter().fold(BTreeMap::new(), |mut first, &index| {
                let partition = self.letters[index].0;
                let at = first.entry(partition).or_insert(index);
                *at = (*at).min(index);
                first
            });
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        for (index, (partition, offset, _)) in self.letters.iter().enumerate() {
            if first_kept
                .get(partition)
                .is_some_and(|&first| index >= first)
            {
                continue;
            }
            next.insert(*partition, offset + 1);
        }
        let positions: Vec<(u32, u64)> = next.into_iter().collect();
        source.commit(&positions)?;
        source.close()
    }
}

/// Reads what `subscriber`'s group has not read of `topic` yet, up to the end it has now.
pub fn from_broker(
    broker: &dyn Broker,
    topic: &str,
    subscriber: &str,
    stop: &Shutdown,
) -> Result<Read, String> {
    let mut read = Read {
        topic: topic.to_owned(),
        letters: Vec::new(),
        unreadable: Vec::new(),
        source: None,
    };
    let start = match broker.group_positions(topic, subscriber) {
        Ok(start) => start,
        // A dead-letter topic never written to holds nothing to replay.
        Err(BrokerError::Refused(why)) if why.contains("does not exist") => return Ok(read),
        Err(error) => return Err(format!("reading `{topic}`: {error}")),
    };
    let expected: BTreeMap<u32, u64> = start
        .iter()
        .filter(|p| p.lag > 0)
        .map(|p| (p.partition, p.lag))
        .collect();
    if expected.is_empty() {
        return Ok(read);
    }
    let mut source = broker
        .subscribe(topic, subscriber)
        .map_err(|e| format!("subscribing to `{topic}`: {e}"))?;
    let mut counted: BTreeMap<u32, u64> = BTreeMap::new();
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    loop {
        if stop.is_triggered() {
            return Err("stopped before the dead letters were read; nothing was replayed".into());
        }
        let records = match source
            .poll(1000, Duration::from_millis(500))
            .map_err(|e| format!("reading `{topic}`: {e}"))?
        {
            Poll::Records(records) => records,
            Poll::Exhausted => break,
            Poll::Idle if !source.is_assigned() => {
                if started.elapsed() > ASSIGN_TIMEOUT {
                    return Err(format!(
                        "reading `{topic}`: not given its partitions within {ASSIGN_TIMEOUT:?}: is another replay with the same group running?"
                    ));
                }
                continue;
            }
            Poll::Idle => {
                if quiet_since.get_or_insert_with(Instant::now).elapsed() >= QUIET_END {
                    break;
                }
                continue;
            }
        };
        quiet_since = None;
        for delivery in records {
            *counted.entry(delivery.partition).or_default() += 1;
            let position = format!("{topic}/{}/{}", delivery.partition, delivery.offset);
            match delivery.body {
                Body::Event(event) | Body::Exhausted { event, .. } => read.letters.push((
                    delivery.partition,
                    delivery.offset,
                    Letter {
                        position,
                        event: (*event).clone(),
                    },
                )),
                Body::Undecodable(record) => {
                    read.unreadable
                        .push(format!("{position}: {}", record.reason));
                }
            }
        }
        if expected
            .iter()
            .all(|(p, n)| counted.get(p).copied().unwrap_or(0) >= *n)
        {
            break;
        }
    }
    read.source = Some(source);
    Ok(read)
}

/// Reads every letter of the JSON-lines file `path` (a dead-letter topic written out).
pub fn from_file(path: &Path, topic: &str) -> Result<Read, String> {
    let text = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut read = Read {
        topic: topic.to_owned(),
        letters: Vec::new(),
        unreadable: Vec::new(),
        source: None,
    };
    for (index, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let position = format!("{}:{}", path.display(), index + 1);
        match crate::cloudevents::decode(line) {
            Ok(event) => read
                .letters
                .push((0, index as u64, Letter { position, event })),
            Err(error) => read.unreadable.push(format!("{position}: {error}")),
        }
    }
    Ok(read)
}
