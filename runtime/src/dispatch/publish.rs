//! Publishing that always ends: every publication becomes durable, or is refused for good
//! and reported, so its event can be dead-lettered instead of staying in flight forever.
//!
//! A [`Sink`] hands back the events it could not deliver, with why. What may pass later (a
//! broker down, a timeout, a full queue) is published again after a backoff, without limit
//! for as long as the process runs; such an event is still in flight, so a run never ends
//! for being idle while the broker is away. What the broker will never take (too large, an
//! invalid topic, not authorised) is reported to the publication's [`Done`] at once, unless
//! the publication insists (the last resort for a dead letter, which has nowhere else to go).
//!
//! Sinks may report from their client's own thread, where nothing may block or publish;
//! failures are therefore handled on the publisher's thread, and a [`Done`] given an error
//! runs there (it may publish). A `Done` given `Ok` may run on any thread.

use crate::broker::{BrokerError, Sink, Undelivered};
use crate::event::Event;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The first wait before publishing again.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two tries of an event that may pass later.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The wait between two tries of an insisting publication the broker refuses.
const INSIST_BACKOFF: Duration = Duration::from_secs(30);

/// Called once when a publication ends: `Ok` once every event is durable, or what the
/// broker refused for good.
pub type Done = Box<dyn FnOnce(Result<(), Refused>) + Send>;

/// Events the broker will never accept, and why.
#[derive(Debug)]
pub struct Refused {
    /// The events refused (the rest of the publication is durable or abandoned).
    pub events: Vec<Event>,
    /// The broker's reason, for the first of them.
    pub reason: String,
}

/// Publishes through a sink, retrying what may pass later; clones share one retry thread.
#[derive(Clone)]
pub struct Publisher(Arc<Shared>);

struct Shared {
    sink: Arc<dyn Sink>,
    queue: Mutex<BTreeMap<(Instant, u64), Job>>,
    wake: Condvar,
    next_job: AtomicU64,
    /// Publications started and not ended.
    pending: AtomicU64,
    /// Events published again after a failure.
    retried: AtomicU64,
    stopped: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Job {
    work: Work,
    /// Tries made so far.
    tries: u32,
    insist: bool,
    done: Done,
}

enum Work {
    /// Failed events, to be classified on the publisher's thread.
    Failed(Vec<Undelivered>),
    /// Events to publish again when due.
    Resend(Vec<Event>),
}

impl Publisher {
    /// A publisher over `sink`, with its retry thread started.
    pub fn start(sink: Arc<dyn Sink>) -> std::io::Result<Publisher> {
        let shared = Arc::new(Shared {
            sink,
            queue: Mutex::new(BTreeMap::new()),
            wake: Condvar::new(),
            next_job: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || worker.run())?;
        *shared.thread.lock().expect("publisher lock") = Some(thread);
        Ok(Publisher(shared))
    }

    /// Publishes `events`; `done` learns that they are durable, or which the broker refused.
    pub fn publish(&self, events: Vec<Event>, done: Done) {
        self.begin(events, false, done);
    }

    /// Publishes `events`, trying again even what the broker refuses, until it takes them
    /// or the publisher stops (then `done` is dropped uncalled and the events stay
    /// unfinished, to be delivered again after a restart).
    pub fn publish_insisting(&self, events: Vec<Event>, done: Done) {
        self.begin(events, true, done);
    }

    /// Publications not ended yet (durable, refused, or abandoned at stop).
    pub fn pending(&self) -> u64 {
        self.0.pending.load(Ordering::SeqCst)
    }

    /// Events published again after a failure, so far.
    pub fn retried(&self) -> u64 {
        self.0.retried.load(Ordering::Relaxed)
    }

    /// The sink publications go to.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.0.sink
    }

    /// Stops retrying and waits for the retry thread to end: what waits for another try is
    /// abandoned (its events stay unfinished).
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        drop(self.0.queue.lock().expect("publisher lock"));
        self.0.wake.notify_all();
        let thread = self.0.thread.lock().expect("publisher lock").take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the publisher thread panicked");
        }
    }

    fn begin(&self, events: Vec<Event>, insist: bool, done: Done) {
        self.0.pending.fetch_add(1, Ordering::SeqCst);
        Shared::send(&self.0, events, 1, insist, done);
    }
}

impl Shared {
    fn send(shared: &Arc<Shared>, events: Vec<Event>, tries: u32, insist: bool, done: Done) {
        let after = shared.clone();
        shared.sink.publish(
            events,
            Box::new(move |result| match result {
                Ok(()) => {
                    after.pending.fetch_sub(1, Ordering::SeqCst);
                    done(Ok(()));
                }
                Err(undelivered) => after.schedule(
                    Instant::now(),
                    Job {
                        work: Work::Failed(undelivered),
                        tries,
                        insist,
                        done,
                    },
                ),
            }),
        );
    }

    fn schedule(&self, due: Instant, job: Job) {
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let mut queue = self.queue.lock().expect("publisher lock");
        queue.insert((due, id), job);
        self.wake.notify_all();
    }

    fn run(self: Arc<Self>) {
        while let Some(job) = self.next_due() {
            match job.work {
                Work::Failed(undelivered) => {
                    self.classify(undelivered, job.tries, job.insist, job.done)
                }
                Work::Resend(events) => {
                    self.retried
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    Shared::send(&self, events, job.tries + 1, job.insist, job.done);
                }
            }
        }
        // Stopped: jobs still queued are dropped with their `Done`s; their events stay
        // unfinished and are delivered again after a restart.
        let abandoned = std::mem::take(&mut *self.queue.lock().expect("publisher lock"));
        if !abandoned.is_empty() {
            tracing::info!(
                publications = abandoned.len(),
                "stopping with publications still being retried; their events will be delivered again"
            );
        }
    }

    /// Waits for the next job that is due; `None` once stopped.
    fn next_due(&self) -> Option<Job> {
        let mut queue = self.queue.lock().expect("publisher lock");
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return None;
            }
            let now = Instant::now();
            match queue.keys().next().copied() {
                Some(key) if key.0 <= now => return queue.remove(&key),
                Some((due, _)) => {
                    queue = self
                        .wake
                        .wait_timeout(queue, due - now)
                        .expect("publisher lock")
                        .0;
                }
                None => queue = self.wake.wait(queue).expect("publisher lock"),
            }
        }
    }

    fn classify(&self, undelivered: Vec<Undelivered>, tries: u32, insist: bool, done: Done) {
        let refused = undelivered.iter().find(|u| u.error.is_permanent());
        if let Some(refused) = refused
            && !insist
        {
            let reason = refused.error.to_string();
            self.pending.fetch_sub(1, Ordering::SeqCst);
            let events = undelivered.into_iter().map(|u| u.event).collect();
            return done(Err(Refused { events, reason }));
        }
        let error = undelivered
            .iter()
            .map(|u| &u.error)
            .find(|e| e.is_permanent())
            .or(undelivered.first().map(|u| &u.error))
            .cloned()
            .unwrap_or_else(|| BrokerError::Unavailable("no reason given".into()));
        let wait = backoff(tries, &error);
        let topics: Vec<&str> = undelivered.iter().map(|u| u.event.topic.as_str()).collect();
        if error.is_permanent() {
            tracing::error!(?topics, tries, ?wait, %error, "a dead letter cannot be written even without its payload; trying again (fix the dead-letter topic or its permissions)");
        } else if tries.is_power_of_two() {
            tracing::warn!(events = undelivered.len(), ?topics, tries, ?wait, %error, "publishing failed; trying again");
        }
        let events = undelivered.into_iter().map(|u| u.event).collect();
        self.schedule(
            Instant::now() + wait,
            Job {
                work: Work::Resend(events),
                tries,
                insist,
                done,
            },
        );
    }
}

/// The wait after `tries` failed tries: doubling from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`]; a refusal being insisted on waits [`INSIST_BACKOFF`].
fn backoff(tries: u32, error: &BrokerError) -> Duration {
    if error.is_permanent() {
        return INSIST_BACKOFF;
    }
    let factor = 1u32
        .checked_shl(tries.saturating_sub(1))
        .unwrap_or(u32::MAX);
    FIRST_BACKOFF
        .checked_mul(factor)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Completion;
    use std::sync::mpsc;

    /// A sink that fails each event with the errors scripted for it, in turn, then takes it.
    struct Scripted {
        failures: Mutex<Vec<BrokerError>>,
        published: AtomicU64,
    }

    impl Sink for Scripted {
        fn publish(&self, events: Vec<Event>, done: Completion) {
            self.published
                .fetch_add(events.len() as u64, Ordering::SeqCst);
            let next = self.failures.lock().unwrap().pop();
            match next {
                None => done(Ok(())),
                Some(error) => done(Err(events
                    .into_iter()
                    .map(|event| Undelivered {
                        event,
                        error: error.clone(),
                    })
                    .collect())),
            }
        }
    }

    fn event() -> Event {
        crate::cloudevents::decode(br#"{"specversion":"1.0","id":"1","source":"t","type":"t"}"#)
            .unwrap()
    }

    fn publisher(failures: Vec<BrokerError>) -> (Publisher, Arc<Scripted>) {
        let sink = Arc::new(Scripted {
            failures: Mutex::new(failures.into_iter().rev().collect()),
            published: AtomicU64::new(0),
        });
        (Publisher::start(sink.clone()).unwrap(), sink)
    }

    fn publish(publisher: &Publisher, insist: bool) -> mpsc::Receiver<Result<(), String>> {
        let (tx, rx) = mpsc::channel();
        let done: Done = Box::new(move |r| drop(tx.send(r.map_err(|r| r.reason))));
        if insist {
            publisher.publish_insisting(vec![event()], done);
        } else {
            publisher.publish(vec![event()], done);
        }
        rx
    }

    const WAIT: Duration = Duration::from_secs(30);

    #[test]
    fn what_may_pass_later_is_published_again_until_it_passes() {
        let down = || BrokerError::Unavailable("broker down".into());
        let (publisher, sink) = publisher(vec![down(), down(), down()]);
        let done = publish(&publisher, false);
        assert_eq!(publisher.pending(), 1, "in flight while retried");
        assert_eq!(done.recv_timeout(WAIT).unwrap(), Ok(()));
        assert_eq!(sink.published.load(Ordering::SeqCst), 4);
        assert_eq!(publisher.retried(), 3);
        assert_eq!(publisher.pending(), 0);
    }

    #[test]
    fn what_the_broker_refuses_is_reported_at_once() {
        let (publisher, _) = publisher(vec![BrokerError::Refused("too large".into())]);
        let done = publish(&publisher, false);
        let reason = done.recv_timeout(WAIT).unwrap().unwrap_err();
        assert!(reason.contains("too large"), "{reason}");
        assert_eq!(publisher.pending(), 0);
    }

    #[test]
    fn an_insisting_publication_is_tried_again_even_when_refused() {
        let (publisher, sink) = publisher(vec![BrokerError::Refused("not authorised".into())]);
        let done = publish(&publisher, true);
        assert!(
            done.recv_timeout(Duration::from_millis(300)).is_err(),
            "not given up"
        );
        assert_eq!(publisher.pending(), 1);
        assert_eq!(sink.published.load(Ordering::SeqCst), 1);
        publisher.stop();
        assert!(
            done.recv_timeout(WAIT).is_err(),
            "abandoned at stop: its `Done` is dropped, never told it succeeded"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let down = BrokerError::Unavailable(String::new());
        let waits: Vec<u128> = (1..=8).map(|t| backoff(t, &down).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
