//! The writer: events handed to [`RedisSink::publish`] are queued for one thread that sends
//! them as pipelined `XADD`s (up to [`PIPELINE`] at a time, so a busy route pays one round
//! trip per pipeline, not per event) and runs each batch's completion once its replies are
//! in. A reply is the server's acknowledgement; with `appendfsync always` it is on disk.

use super::entry;
use super::link::Link;
use super::{Topology, connection, unavailable};
use crate::broker::{BrokerError, Completion, Sink, Undelivered};
use crate::event::Event;
use redis::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most events sent in one pipeline.
const PIPELINE: usize = 1024;

/// Most events queued and not yet written; past it, `publish` hands events back at once as
/// unavailable (the publisher retries them), so memory stays bounded during an outage.
const QUEUE_LIMIT: usize = 65_536;

/// How long `is_reachable` waits for a `PING`.
const REACHABLE_WAIT: Duration = Duration::from_secs(2);

/// One `publish` call.
struct Batch {
    events: Vec<Event>,
    done: Completion,
}

/// The shared sink; dropping it ends its thread once the queue is written (the thread is
/// not joined: `flush` is how a caller waits).
pub struct RedisSink {
    queue: Mutex<Sender<Batch>>,
    queued: Arc<AtomicUsize>,
    client: redis::Client,
}

impl RedisSink {
    /// Starts the writer thread.
    pub fn start(client: redis::Client, topology: Arc<Topology>) -> Result<RedisSink, BrokerError> {
        let (queue, batches) = channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            link: Link::new(client.clone()),
            topology,
            queued: queued.clone(),
        };
        std::thread::Builder::new()
            .name("redis-writer".into())
            .spawn(move || writer.run(&batches))
            .map_err(|e| BrokerError::Unavailable(format!("cannot start the Redis writer: {e}")))?;
        Ok(RedisSink {
            queue: Mutex::new(queue),
            queued,
            client,
        })
    }
}

impl Sink for RedisSink {
    fn publish(&self, events: Vec<Event>, done: Completion) {
        if events.is_empty() {
            return done(Ok(()));
        }
        let count = events.len();
        if self.queued.fetch_add(count, Ordering::SeqCst) + count > QUEUE_LIMIT {
            self.queued.fetch_sub(count, Ordering::SeqCst);
            return done(Err(all_failed(
                events,
                &BrokerError::Unavailable("the Redis writer's queue is full".into()),
            )));
        }
        let queue = self.queue.lock().expect("queue lock");
        if let Err(error) = queue.send(Batch { events, done }) {
            self.queued.fetch_sub(count, Ordering::SeqCst);
            let Batch { events, done } = error.0;
            done(Err(all_failed(
                events,
                &BrokerError::Unavailable("the Redis writer has stopped".into()),
            )));
        }
    }

    fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.queued.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn is_reachable(&self) -> bool {
        connection(&self.client, REACHABLE_WAIT)
            .and_then(|mut con| redis::cmd("PING").exec(&mut con).map_err(unavailable))
            .is_ok()
    }
}

fn all_failed(events: Vec<Event>, error: &BrokerError) -> Vec<Undelivered> {
    events
        .into_iter()
        .map(|event| Undelivered {
            event,
            error: error.clone(),
        })
        .collect()
}

/// `XADD STREAM [MAXLEN ~ N] *` (the fields are the caller's).
pub(super) fn xadd<'a>(
    cmd: &'a mut redis::Cmd,
    stream: &str,
    maxlen: Option<u64>,
) -> &'a mut redis::Cmd {
    cmd.arg(stream);
    if let Some(maxlen) = maxlen {
        cmd.arg("MAXLEN").arg("~").arg(maxlen);
    }
    cmd.arg("*")
}

/// What a refused `XADD` means: a key that is not a stream will never take it; anything
/// else (out of memory, a replica that cannot write, loading) may pass later.
fn reply_error(error: &redis::ServerError) -> BrokerError {
    let text = format!("Redis refused XADD: {error:?}");
    match error.code() {
        "WRONGTYPE" | "NOPERM" => BrokerError::Refused(text),
        _ => BrokerError::Unavailable(text),
    }
}

struct Writer {
    link: Link,
    topology: Arc<Topology>,
    queued: Arc<AtomicUsize>,
}

impl Writer {
    fn run(mut self, batches: &Receiver<Batch>) {
        loop {
            let first = match batches.recv_timeout(Duration::from_millis(200)) {
                Ok(batch) => batch,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut taken = vec![first];
            let mut events = taken[0].events.len();
            while events < PIPELINE
                && let Ok(batch) = batches.try_recv()
            {
                events += batch.events.len();
                taken.push(batch);
            }
            self.write(taken, events);
        }
    }

    /// Writes `batches` (`events` in all) in one pipeline, then completes each.
    fn write(&mut self, batches: Vec<Batch>, events: usize) {
        let replies = self.send(&batches);
        self.queued.fetch_sub(events, Ordering::SeqCst);
        let mut replies = replies.map(Vec::into_iter);
        for batch in batches {
            let mut failed = Vec::new();
            for event in batch.events {
                let error = match &mut replies {
                    Err(error) => Some(error.clone()),
                    Ok(replies) => match replies.next() {
                        Some(Value::ServerError(error)) => Some(reply_error(&error)),
                        Some(_) => None,
                        None => Some(BrokerError::Unavailable("no reply from Redis".into())),
                    },
                };
                if let Some(error) = error {
                    failed.push(Undelivered { event, error });
                }
            }
            (batch.done)(if failed.is_empty() {
                Ok(())
            } else {
                Err(failed)
            });
        }
    }

    /// One `XADD` per event, pipelined; the replies in order, or why none came.
    fn send(&mut self, batches: &[Batch]) -> Result<Vec<Value>, BrokerError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for event in batches.iter().flat_map(|b| &b.events) {
            let stream = self
                .topology
                .stream_for(&event.topic, event.key.as_deref(), &event.id);
            let mut cmd = redis::cmd("XADD");
            xadd(&mut cmd, &stream, self.topology.maxlen(&event.topic));
            for (name, value) in entry::encode(event) {
                cmd.arg(name).arg(value);
            }
            pipe.add_command(cmd);
        }
        self.link.query_pipe(&pipe)
    }
}
