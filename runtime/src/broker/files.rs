//! CloudEvents JSON-lines files at the edges of a run: inputs feed a file into a topic,
//! outputs write a topic out to a file or standard output.

use super::embedded::EmbeddedBroker;
use super::{Body, BrokerError, Poll, Sink, Source, Undecodable};
use crate::cloudevents;
use crate::shutdown::Shutdown;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

/// How many records an output takes per poll.
const OUTPUT_BATCH: usize = 1024;

/// What feeding one file did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FeedReport {
    /// Lines appended as events.
    pub events: u64,
    /// Lines appended as undecodable records (their readers dead-letter them).
    pub undecodable: u64,
}

/// Reads every non-blank line of `path` until done or `stop` is set, handing each to
/// `event` or, if it is not a valid CloudEvent, to `bad` with the line and the reason.
fn read_lines(
    path: &Path,
    stop: &Shutdown,
    mut event: impl FnMut(crate::event::Event),
    mut bad: impl FnMut(Vec<u8>, String),
) -> std::io::Result<FeedReport> {
    let reader = BufReader::new(std::fs::File::open(path)?);
    let mut report = FeedReport::default();
    for (index, line) in reader.split(b'\n').enumerate() {
        if index % 1024 == 0 && stop.is_triggered() {
            break;
        }
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match cloudevents::decode(&line) {
            Ok(decoded) => {
                event(decoded);
                report.events += 1;
            }
            Err(error) => {
                bad(line, format!("{}:{}: {error}", path.display(), index + 1));
                report.undecodable += 1;
            }
        }
    }
    Ok(report)
}

/// Appends every non-blank line of `path` to `topic`, until done or `stop` is set. A line
/// that is not a valid CloudEvent is appended as an undecodable record whose reason names
/// the file and line.
pub fn feed_file(
    broker: &EmbeddedBroker,
    topic: &str,
    path: &Path,
    stop: &Shutdown,
) -> std::io::Result<FeedReport> {
    read_lines(
        path,
        stop,
        |mut event| {
            event.topic = topic.to_owned();
            broker.append(event);
        },
        |raw, reason| {
            broker.append_undecodable(Undecodable {
                topic: topic.to_owned(),
                key: None,
                headers: Vec::new(),
                raw,
                reason,
            });
        },
    )
}

/// Publishes every line of `path` to `topic` through `sink` and waits for the
/// acknowledgements. A line that is not a CloudEvent is published as it is, through `raw`
/// (its readers dead-letter it).
pub fn feed_published(
    sink: &dyn Sink,
    raw: impl Fn(&[u8]) -> Result<(), BrokerError>,
    topic: &str,
    path: &Path,
    stop: &Shutdown,
) -> std::io::Result<FeedReport> {
    let (acks, acked) = std::sync::mpsc::channel();
    let mut sent = 0;
    let report = read_lines(
        path,
        stop,
        |mut event| {
            event.topic = topic.to_owned();
            let acks = acks.clone();
            sink.publish(vec![event], Box::new(move |result| drop(acks.send(result))));
            sent += 1;
        },
        |line, reason| {
            tracing::warn!(%reason, "publishing a line that is not a CloudEvent as it is");
            if let Err(error) = raw(&line) {
                tracing::error!(%error, "cannot publish the line");
            }
        },
    )?;
    for _ in 0..sent {
        if let Ok(Err(failed)) = acked.recv()
            && let Some(first) = failed.first()
        {
            return Err(std::io::Error::other(format!(
                "publishing to `{topic}`: {}",
                first.error
            )));
        }
    }
    Ok(report)
}

/// Writes every record `source` yields as one JSON line to `out`, committing after each
/// flushed batch, until the source is exhausted or, once `stop` is set, has nothing left.
/// Returns how many lines it wrote.
pub fn write_output(
    mut source: Box<dyn Source>,
    mut out: Box<dyn Write + Send>,
    stop: &Shutdown,
) -> anyhow::Result<u64> {
    let mut written = 0;
    loop {
        let records = match source.poll(OUTPUT_BATCH, Duration::from_millis(50))? {
            Poll::Records(records) => records,
            Poll::Exhausted => break,
            Poll::Idle if stop.is_triggered() => break,
            Poll::Idle => continue,
        };
        let mut positions = BTreeMap::new();
        for record in &records {
            match &record.body {
                Body::Event(event) | Body::Exhausted { event, .. } => {
                    out.write_all(cloudevents::encode(event).as_bytes())?;
                }
                Body::Undecodable(raw) => out.write_all(&raw.raw)?,
            }
            out.write_all(b"\n")?;
            positions.insert(record.partition, record.offset + 1);
        }
        out.flush()?;
        written += records.len() as u64;
        source.commit(&positions.into_iter().collect::<Vec<_>>())?;
    }
    out.flush()?;
    Ok(written)
}
