//! `plexus replay`: the way back from a dead-letter topic. Reads the letters not replayed
//! yet, keeps those the filters choose, and publishes each event again (same id, same
//! payload, `plexusreplayed` counting) to the topic it failed on, or `--to` another.
//!
//! On Kafka and Redis the letters are read in replay's own consumer group
//! (`GROUP.replay.default`, or `GROUP.replay.NAME` with `--group NAME`), whose position is committed once every chosen event is durable: a
//! second run replays nothing again, and a run that fails before the end replays what it
//! had not committed the next time. Letters the filters pass over are committed past too
//! (the summary counts them; `--group` keeps a separate position). On the embedded broker,
//! whose topics end with the run, the letters come from the output file of the dead-letter
//! topic and the events are written to files for `plexus run --input`.
//!
//! # Layout
//! - this module: the command: which topics, what to refuse, publishing, the summary.
//! - [`select`]: the filters, and the event a letter becomes.
//! - [`read`]: reading a dead-letter topic from a broker or a file.

mod read;
pub mod select;

use super::{EXIT_INVALID, EXIT_UNREACHABLE, load_config};
use crate::broker::{self, Broker, Undelivered};
use crate::config::{BrokerKind, Config};
use crate::event::Event;
use crate::shutdown::Shutdown;
use read::Read;
use select::{Filter, Letter};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of replay's consumer group when `--group` does not give one: the group is
/// `GROUP.replay.NAME` (a dot, so no route's group can be the same).
pub const DEFAULT_GROUP: &str = "default";
/// How many times events the broker could not take are published again before giving up.
const PUBLISH_TRIES: u32 = 5;
/// How long one publish may take to be acknowledged.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// What `plexus replay` is asked to do.
pub struct ReplayOptions<'a> {
    /// The config file.
    pub config: &'a Path,
    /// Dead-letter topics to read (default: every route's).
    pub from: Vec<String>,
    /// A file of letters to read instead of a topic (embedded broker).
    pub file: Option<PathBuf>,
    /// Publish every chosen event here instead of where it failed.
    pub to: Option<String>,
    /// Which letters.
    pub filter: Filter,
    /// At most this many events; the other chosen letters stay for a later replay.
    pub limit: Option<usize>,
    /// List what would be replayed, publish and commit nothing.
    pub dry_run: bool,
    /// Publish even to topics no route reads.
    pub force: bool,
    /// Names replay's consumer group: `GROUP.replay.NAME`.
    pub group: String,
    /// Embedded broker: the directory the replayed events are written to.
    pub out_dir: Option<PathBuf>,
}

/// A letter chosen, and what becomes of it.
struct Chosen {
    letter: Letter,
    /// The event to publish, or why it cannot be.
    outcome: Result<Event, select::Unreplayable>,
}

/// Milliseconds since the Unix epoch of an RFC 3339 time (for `--since`, `--until`).
pub fn parse_time(text: &str) -> Result<i64, String> {
    crate::cloudevents::parse_rfc3339_millis(text)
}

/// Runs `plexus replay`; returns the exit code.
pub fn replay(options: ReplayOptions<'_>, stop: &Shutdown, out: &mut dyn Write) -> i32 {
    let config = match load_config(options.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match replay_config(&config, &options, stop, out) {
        Ok(()) => 0,
        Err(Failed(code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

/// Why the command failed: the exit code and what to say.
struct Failed(i32, String);

fn invalid(message: impl Into<String>) -> Failed {
    Failed(EXIT_INVALID, message.into())
}

fn replay_config(
    config: &Config,
    options: &ReplayOptions<'_>,
    stop: &Shutdown,
    out: &mut dyn Write,
) -> Result<(), Failed> {
    let embedded = *config.spec.broker.kind.get_ref() == BrokerKind::Embedded;
    let topics = dead_letter_topics(config, options)?;
    let broker = if embedded {
        None
    } else {
        Some(broker::open(config, stop).map_err(|e| Failed(EXIT_UNREACHABLE, format!("{e:#}")))?)
    };
    let mut reads = Vec::new();
    for topic in &topics {
        let read = match (&broker, &options.file) {
            (_, Some(file)) => read::from_file(file, topic),
            (Some(broker), None) => {
                read::from_broker(&**broker, topic, &format!("replay.{}", options.group), stop)
            }
            (None, None) => read::from_file(&output_file(config, topic)?, topic),
        };
        reads.push(read.map_err(invalid)?);
    }
    let mut left = options.limit.unwrap_or(usize::MAX);
    let mut kept: Vec<Vec<usize>> = Vec::new();
    let mut chosen: Vec<Chosen> = Vec::new();
    let mut passed_over = 0;
    for read in &reads {
        let mut kept_here = Vec::new();
        for (index, (_, _, letter)) in read.letters.iter().enumerate() {
            if !letter.matches(&options.filter) {
                passed_over += 1;
            } else if left == 0 {
                kept_here.push(index);
            } else {
                left -= 1;
                chosen.push(Chosen {
                    letter: letter.clone(),
                    outcome: letter.replayed(options.to.as_deref()),
                });
            }
        }
        kept.push(kept_here);
    }
    let events: Vec<Event> = chosen
        .iter()
        .filter_map(|c| c.outcome.as_ref().ok().cloned())
        .collect();
    if !options.force {
        refuse_unread_targets(config, &events)?;
    }
    if options.dry_run {
        write_table(&chosen, out).map_err(|e| invalid(format!("writing the list: {e}")))?;
        eprintln!(
            "dry run: {} of {} letters would be replayed; nothing published, nothing committed",
            events.len(),
            reads.iter().map(|r| r.letters.len()).sum::<usize>()
        );
        return Ok(());
    }
    match &broker {
        Some(broker) => publish(&**broker, events.clone(), stop)?,
        None => write_files(config, options, &events)?,
    }
    for (read, kept) in reads.iter_mut().zip(&kept) {
        read.commit(kept)
            .map_err(|e| Failed(EXIT_UNREACHABLE, format!("the events were published, but committing replay's position on `{}` failed ({e}): a second run replays them again", read.topic)))?;
    }
    summarise(&reads, &chosen, &kept, passed_over);
    Ok(())
}

/// The topics to read: `--from`, else the dead-letter topics of the routes (of those named
/// by `--route`, if any).
fn dead_letter_topics(config: &Config, options: &ReplayOptions<'_>) -> Result<Vec<String>, Failed> {
    if !options.from.is_empty() {
        return Ok(options.from.clone());
    }
    let wanted = &options.filter.routes;
    let topics: BTreeSet<String> = config
        .spec
        .routes
        .iter()
        .filter(|(name, _)| wanted.is_empty() || wanted.contains(name.get_ref()))
        .map(|(name, route)| route.dead_letter_topic(name.get_ref()).to_string())
        .collect();
    if topics.is_empty() {
        return Err(invalid(format!(
            "no route of {} is named {}: no dead-letter topic to read",
            config.file,
            wanted.join(", ")
        )));
    }
    Ok(topics.into_iter().collect())
}

/// The output file the embedded broker wrote `topic` to.
fn output_file(config: &Config, topic: &str) -> Result<PathBuf, Failed> {
    config
        .spec
        .outputs
        .iter()
        .map(|o| o.get_ref())
        .find(|o| o.topic.as_str() == topic && o.file != Path::new("-"))
        .map(|o| o.file.clone())
        .ok_or_else(|| {
            invalid(format!(
                "the embedded broker keeps `{topic}` only in an output file, and {} writes it to none: add [[outputs]] topic = \"{topic}\", or read a file of letters with --file",
                config.file
            ))
        })
}

/// Refuses to publish to a topic no route of the config reads (a typo in `--to`, a route
/// renamed since): the events would sit there unread.
fn refuse_unread_targets(config: &Config, events: &[Event]) -> Result<(), Failed> {
    let read: BTreeSet<&str> = config
        .spec
        .routes
        .values()
        .map(|r| r.topic.as_str())
        .collect();
    let unread: BTreeSet<&str> = events
        .iter()
        .map(|e| e.topic.as_str())
        .filter(|t| !read.contains(t))
        .collect();
    if unread.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "no route of {} reads {}: the replayed events would not be handled; replay to a topic a route reads (--to), or --force",
        config.file,
        unread
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Publishes `events` and waits until each is durable, trying again those the broker could
/// not take for now.
fn publish(broker: &dyn Broker, mut events: Vec<Event>, stop: &Shutdown) -> Result<(), Failed> {
    let sink = broker.sink();
    let mut unpublished = events.len();
    for attempt in 1..=PUBLISH_TRIES {
        if events.is_empty() {
            return Ok(());
        }
        let (done, result) = crossbeam_channel::bounded(1);
        sink.publish(
            events,
            Box::new(move |outcome| {
                let _ = done.send(outcome);
            }),
        );
        let failed: Vec<Undelivered> = match result.recv_timeout(PUBLISH_TIMEOUT) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(failed)) => failed,
            Err(_) => {
                return Err(Failed(
                    EXIT_UNREACHABLE,
                    format!(
                        "the broker did not acknowledge the replayed events within {PUBLISH_TIMEOUT:?}; nothing was committed, so a second run replays them again"
                    ),
                ));
            }
        };
        if let Some(refused) = failed.iter().find(|u| u.error.is_permanent()) {
            return Err(invalid(format!(
                "the broker refused event `{}` for `{}`: {}; nothing was committed",
                refused.event.id, refused.event.topic, refused.error
            )));
        }
        unpublished = failed.len();
        tracing::warn!(attempt, failed = unpublished, error = %failed[0].error, "the broker did not take every replayed event; trying those again");
        if stop.wait_timeout(Duration::from_millis(500 << attempt.min(4))) {
            break;
        }
        events = failed.into_iter().map(|u| u.event).collect();
    }
    Err(Failed(
        EXIT_UNREACHABLE,
        format!(
            "{} replayed events were not published after {PUBLISH_TRIES} tries; nothing was committed, so a second run replays them again",
            unpublished
        ),
    ))
}

/// Embedded broker: writes the events to `TOPIC.jsonl` files, for `plexus run --input`.
fn write_files(
    config: &Config,
    options: &ReplayOptions<'_>,
    events: &[Event],
) -> Result<(), Failed> {
    let dir = options
        .out_dir
        .clone()
        .unwrap_or_else(|| config.base_dir.join("replay"));
    let mut by_topic: BTreeMap<&str, String> = BTreeMap::new();
    for event in events {
        let lines = by_topic.entry(event.topic.as_str()).or_default();
        lines.push_str(&crate::cloudevents::encode(event));
        lines.push('\n');
    }
    if by_topic.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| invalid(format!("creating {}: {e}", dir.display())))?;
    let mut inputs = Vec::new();
    for (topic, lines) in by_topic {
        let file = dir.join(format!("{topic}.jsonl"));
        std::fs::write(&file, lines)
            .map_err(|e| invalid(format!("writing {}: {e}", file.display())))?;
        inputs.push(format!("--input {topic}={}", file.display()));
    }
    eprintln!(
        "the embedded broker's topics live only while it runs: to replay, run\n  plexus run --config {} {}",
        config.file,
        inputs.join(" ")
    );
    Ok(())
}

fn summarise(reads: &[Read], chosen: &[Chosen], kept: &[Vec<usize>], passed_over: usize) {
    let read: usize = reads.iter().map(|r| r.letters.len()).sum();
    let replayed = chosen.iter().filter(|c| c.outcome.is_ok()).count();
    let kept: usize = kept.iter().map(Vec::len).sum();
    let mut to: BTreeMap<&str, usize> = BTreeMap::new();
    for event in chosen.iter().filter_map(|c| c.outcome.as_ref().ok()) {
        *to.entry(event.topic.as_str()).or_default() += 1;
    }
    let topics: Vec<String> = to.iter().map(|(t, n)| format!("{n} to {t}")).collect();
    eprintln!(
        "replayed {replayed} of {read} letters read from {}{}",
        reads
            .iter()
            .map(|r| r.topic.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if topics.is_empty() {
            String::new()
        } else {
            format!(" ({})", topics.join(", "))
        }
    );
    if passed_over > 0 {
        eprintln!(
            "passed over {passed_over} letters the filters did not choose (not replayed later by this group either)"
        );
    }
    if kept > 0 {
        eprintln!("left {kept} chosen letters past --limit for the next replay");
    }
    for c in chosen {
        if let Err(why) = &c.outcome {
            eprintln!(
                "not replayed: {} (event {}): {why}",
                c.letter.position, c.letter.event.id
            );
        }
    }
    for line in reads.iter().flat_map(|r| &r.unreadable) {
        eprintln!("not a dead letter: {line}");
    }
}

fn write_table(chosen: &[Chosen], out: &mut dyn Write) -> std::io::Result<()> {
    let rows: Vec<[String; 8]> = chosen
        .iter()
        .map(|c| {
            let l = &c.letter;
            let attribute = |name: &str| l.attribute(name).unwrap_or_else(|| "-".into());
            let to = match &c.outcome {
                Ok(event) => event.topic.clone(),
                Err(why) => format!("(not replayed: {why})"),
            };
            let mut reason = attribute("reason").replace('\n', " ");
            if reason.chars().count() > 60 {
                reason = reason.chars().take(59).collect::<String>() + "…";
            }
            [
                l.position.clone(),
                l.event.id.clone(),
                l.event.type_.clone(),
                attribute("kind"),
                attribute("route"),
                attribute("time"),
                to,
                reason,
            ]
        })
        .collect();
    let header = [
        "POSITION",
        "ID",
        "TYPE",
        "KIND",
        "ROUTE",
        "DEAD-LETTERED",
        "TO",
        "REASON",
    ]
    .map(str::to_owned);
    super::table::write(out, &header, &rows)
}
