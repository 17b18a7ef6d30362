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

/// How often a followed input is looked at again once it has been read to its end.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Reads every non-blank line of `path` until done or `stop` is set, handing each to
/// `event` or, if it is not a valid CloudEvent, to `bad` with the line and the reason.
///
/// With `follow`, the end of the file is not the end: lines appended later are read as
/// they are completed (a line counts once its newline is written), until `stop` is set, as
/// `tail -F` would. A file truncated or replaced by a shorter one is read again from its
/// start; one replaced by a longer one is read on from where the old one ended.
fn read_lines(
    path: &Path,
    follow: bool,
    stop: &Shutdown,
    mut event: impl FnMut(crate::event::Event),
    mut bad: impl FnMut(Vec<u8>, String),
) -> std::io::Result<FeedReport> {
    let mut file = FollowedFile::open(path)?;
    let mut report = FeedReport::default();
    let mut line = Vec::new();
    let mut line_no = 0usize;
    loop {
        if line_no.is_multiple_of(1024) && stop.is_triggered() {
            break;
        }
        let read = file.reader.read_until(b'\n', &mut line)?;
        file.position += read as u64;
        let complete = line.last() == Some(&b'\n');
        if read == 0 || !complete {
            if !follow {
                if line.is_empty() {
                    break;
                }
                // The last line of a file that is not followed needs no newline.
            } else {
                // At the end for now: wait for more (a partial line waits for its end).
                if stop.wait_timeout(FOLLOW_INTERVAL) {
                    break;
                }
                if file.reopen_if_replaced(line.len() as u64)? {
                    line.clear();
                }
                continue;
            }
        }
        line_no += 1;
        let mut text = std::mem::take(&mut line);
        while matches!(text.last(), Some(b'\n' | b'\r')) {
            text.pop();
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match cloudevents::decode(&text) {
            Ok(decoded) => {
                event(decoded);
                report.events += 1;
            }
            Err(error) => {
                bad(text, format!("{}:{line_no}: {error}", path.display()));
                report.undecodable += 1;
            }
        }
    }
    Ok(report)
}

/// An input file being read, and where: enough to notice that it was truncated or
/// replaced while it is followed.
struct FollowedFile {
    path: std::path::PathBuf,
    reader: BufReader<std::fs::File>,
    /// Bytes read so far.
    position: u64,
    /// The file's identity (device and inode), to notice a replacement.
    identity: (u64, u64),
}

impl FollowedFile {
    fn open(path: &Path) -> std::io::Result<FollowedFile> {
        let file = std::fs::File::open(path)?;
        let identity = identity(&file.metadata()?);
        Ok(FollowedFile {
            path: path.to_owned(),
            reader: BufReader::new(file),
            position: 0,
            identity,
        })
    }

    /// Opens the file again if the one at its path is not the one being read, or is shorter
    /// than what was read; whether it did. The `partial` last bytes read (a line without its
    /// end yet) are read again from the new file.
    fn reopen_if_replaced(&mut self, partial: u64) -> std::io::Result<bool> {
        let Ok(now) = std::fs::metadata(&self.path) else {
            // Gone for a moment (an editor saving): look again later.
            return Ok(false);
        };
        let replaced = identity(&now) != self.identity;
        let truncated = now.len() < self.position;
        if !replaced && !truncated {
            return Ok(false);
        }
        let mut reopened = FollowedFile::open(&self.path)?;
        if truncated {
            tracing::info!(file = %self.path.display(), "input truncated or replaced by a shorter file: reading it from the start");
        } else {
            use std::io::{Seek, SeekFrom};
            let from = self.position - partial;
            reopened.reader.seek(SeekFrom::Start(from))?;
            reopened.position = from;
        }
        *self = reopened;
        Ok(true)
    }
}

#[cfg(unix)]
fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

#[cfg(not(unix))]
fn identity(_metadata: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// Appends every non-blank line of `path` to `topic`, until done or `stop` is set. A line
/// that is not a valid CloudEvent is appended as an undecodable record whose reason names
/// the file and line.
pub fn feed_file(
    broker: &EmbeddedBroker,
    topic: &str,
    path: &Path,
    follow: bool,
    stop: &Shutdown,
) -> std::io::Result<FeedReport> {
    read_lines(
        path,
        follow,
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
    follow: bool,
    stop: &Shutdown,
) -> std::io::Result<FeedReport> {
    let (acks, acked) = std::sync::mpsc::channel();
    let mut unacknowledged = 0u64;
    let mut failure = None;
    let report = read_lines(
        path,
        follow,
        stop,
        |mut event| {
            event.topic = topic.to_owned();
            let acks = acks.clone();
            sink.publish(vec![event], Box::new(move |result| drop(acks.send(result))));
            unacknowledged += 1;
            // A followed file has no end to wait for: take the acknowledgements as they come.
            while let Ok(result) = acked.try_recv() {
                unacknowledged -= 1;
                note_failure(&mut failure, result);
            }
        },
        |line, reason| {
            tracing::warn!(%reason, "publishing a line that is not a CloudEvent as it is");
            if let Err(error) = raw(&line) {
                tracing::error!(%error, "cannot publish the line");
            }
        },
    )?;
    for _ in 0..unacknowledged {
        if let Ok(result) = acked.recv() {
            note_failure(&mut failure, result);
        }
    }
    match failure {
        Some(error) => Err(std::io::Error::other(format!(
            "publishing to `{topic}`: {error}"
        ))),
        None => Ok(report),
    }
}

/// Keeps the first publishing failure of a feed.
fn note_failure(failure: &mut Option<BrokerError>, result: Result<(), Vec<super::Undelivered>>) {
    if let Err(failed) = result
        && let Some(first) = failed.into_iter().next()
    {
        failure.get_or_insert(first.error);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn line(id: &str) -> String {
        format!(r#"{{"specversion":"1.0","id":"{id}","source":"t","type":"t"}}"#)
    }

    /// Follows `path` on a thread; the ids it reads come through the receiver.
    fn follow(
        path: &Path,
        stop: &Shutdown,
    ) -> (mpsc::Receiver<String>, std::thread::JoinHandle<FeedReport>) {
        let (tx, rx) = mpsc::channel();
        let (path, stop) = (path.to_owned(), stop.clone());
        let reader = std::thread::spawn(move || {
            read_lines(&path, true, &stop, |e| tx.send(e.id).unwrap(), |_, _| {}).unwrap()
        });
        (rx, reader)
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn a_followed_file_is_read_as_lines_are_completed_and_again_after_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, format!("{}\n", line("1"))).unwrap();
        let stop = Shutdown::new();
        let (ids, reader) = follow(&path, &stop);
        assert_eq!(ids.recv_timeout(WAIT).unwrap(), "1");

        let second = line("2");
        let (head, tail) = second.split_at(20);
        append(&path, head);
        assert!(
            ids.recv_timeout(FOLLOW_INTERVAL * 3).is_err(),
            "a line is not read before its newline"
        );
        append(&path, &format!("{tail}\n\n"));
        assert_eq!(ids.recv_timeout(WAIT).unwrap(), "2");

        // Truncated and written anew (a shorter file): read from its start.
        std::fs::write(&path, format!("{}\n", line("3"))).unwrap();
        assert_eq!(ids.recv_timeout(WAIT).unwrap(), "3");

        stop.trigger();
        let report = reader.join().unwrap();
        assert_eq!(report.events, 3);
        assert!(ids.try_recv().is_err(), "nothing read twice");
    }

    #[test]
    fn a_followed_file_replaced_by_a_longer_one_is_read_on_from_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let first = format!("{}\n", line("1"));
        std::fs::write(&path, &first).unwrap();
        let stop = Shutdown::new();
        let (ids, reader) = follow(&path, &stop);
        assert_eq!(ids.recv_timeout(WAIT).unwrap(), "1");
        // An editor's save: a new file renamed over the old one, the old lines kept.
        let saved = dir.path().join("saved.jsonl");
        std::fs::write(&saved, format!("{first}{}\n", line("2"))).unwrap();
        std::fs::rename(&saved, &path).unwrap();
        assert_eq!(ids.recv_timeout(WAIT).unwrap(), "2");
        stop.trigger();
        assert_eq!(reader.join().unwrap().events, 2);
    }
}
