//! Exactly-once routes on a real Kafka broker, checked by what a `read_committed` consumer
//! reads back: every expected echo and dead letter exactly once (none lost, none twice)
//! after
//! - ten SIGKILLs mid-stream, each followed by a restart of the same instance;
//! - two processes sharing the group, one of them killed;
//! - a second process started with the first one's instance name, which fences the first.
//!
//! A `read_uncommitted` reader checks that the kills did land inside open transactions
//! (their aborted records are there, and not read by committed readers).

use plexus::event::Event;
use plexus_tests::kafka::{
    bootstrap, create_topic, event, kill_hard, log_of, produce_events, read, read_uncommitted_for,
    spawn_plexus, unique, wait_exit, wait_for_records,
};
use plexus_tests::{Scenario, attr, plugins};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One Kafka test at a time: they share the broker and two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The topics of one test.
struct Topics {
    input: String,
    out: String,
    dlq: String,
}

impl Topics {
    fn new(name: &str) -> Topics {
        let out = unique(&format!("{name}-out"));
        Topics {
            input: unique(&format!("{name}-in")),
            dlq: format!("{out}.dlq"),
            out,
        }
    }
}

/// `count` events on 13 keys: one in ten is rejected (dead-lettered), one in ten emits an
/// echo and then rejects (the echo must never be seen), the rest are echoed.
fn events(prefix: &str, count: usize) -> Vec<Event> {
    (0..count)
        .map(|i| {
            let kind = match i % 10 {
                3 => "test.reject",
                7 => "test.emit-then-reject",
                _ => "test.ok",
            };
            event(
                &format!("{prefix}-{i}"),
                kind,
                Some(&format!("k{}", i % 13)),
            )
        })
        .collect()
}

/// A Kafka config in `scenario`: process `instance` of `group`, running an exactly-once
/// echo route over `topics` (tagging its echoes with `tag`), ending after `idle_exit`
/// without events once it holds its partitions.
fn config(
    scenario: &Scenario,
    file: &str,
    group: &str,
    (instance, tag): (&str, &str),
    topics: &Topics,
    idle_exit: &str,
) -> PathBuf {
    scenario.file(
        file,
        &format!(
            r#"[runtime]
cache_dir = "{cache}"
[broker]
kind = "kafka"
partitions = 4
idle_exit = "{idle_exit}"
[broker.kafka]
bootstrap_servers = "{bootstrap}"
group = "{group}"
instance = "{instance}"
[plugins.echo]
path = "{plugin}"
config = {{ out = "{out}", spin = 3000000, tag = "{tag}" }}
[routes.echo]
topic = "{input}"
plugin = "echo"
concurrency = 2
dead_letter = "{dlq}"
delivery = "exactly-once"
"#,
            cache = scenario.dir.path().join("cache").display(),
            bootstrap = bootstrap(),
            plugin = plugins::MISBEHAVE,
            out = topics.out,
            input = topics.input,
            dlq = topics.dlq,
        ),
    )
}

/// Sends the events and creates the topics.
fn prepare(topics: &Topics, sent: &[Event]) {
    create_topic(&topics.input, 4);
    create_topic(&topics.out, 4);
    create_topic(&topics.dlq, 4);
    produce_events(&topics.input, sent);
}

/// Asserts that the committed outputs hold each expected echo and dead letter exactly once
/// and nothing else; returns how many records a `read_uncommitted` reader sees in the echo
/// topic (aborted ones included).
fn assert_exactly_once(topics: &Topics, sent: &[Event]) -> usize {
    let echoed_ids: Vec<String> = sent
        .iter()
        .filter(|e| e.type_ == "test.ok")
        .map(|e| e.id.clone())
        .collect();
    let rejected_ids: Vec<String> = sent
        .iter()
        .filter(|e| e.type_ != "test.ok")
        .map(|e| e.id.clone())
        .collect();
    let echoes = read(&topics.out, echoed_ids.len(), Duration::from_secs(90));
    let letters = read(&topics.dlq, rejected_ids.len(), Duration::from_secs(90));
    let counts = |ids: Vec<String>| {
        ids.into_iter().fold(BTreeMap::new(), |mut m, id| {
            *m.entry(id).or_insert(0usize) += 1;
            m
        })
    };
    let echo_counts = counts(echoes.iter().map(|e| attr(e, "echoof").unwrap()).collect());
    let letter_counts = counts(letters.iter().map(|e| e.id.clone()).collect());
    for (what, seen, expected) in [
        ("echoes", &echo_counts, &echoed_ids),
        ("dead letters", &letter_counts, &rejected_ids),
    ] {
        let expected: BTreeSet<&String> = expected.iter().collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|id| !seen.contains_key(**id))
            .take(10)
            .collect();
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
        let stray: Vec<_> = seen
            .keys()
            .filter(|id| !expected.contains(id))
            .take(10)
            .collect();
        assert!(
            missing.is_empty() && twice.is_empty() && stray.is_empty(),
            "{what}: {} read for {} expected; missing {missing:?}, more than once {twice:?}, unexpected {stray:?}",
            seen.values().sum::<usize>(),
            expected.len()
        );
    }
    assert!(
        echoes
            .iter()
            .all(|e| e.type_ != "test.must-not-appear.echo" && e.type_ != "test.must-not-appear"),
        "an emit of a rejected event was committed"
    );
    read_uncommitted_for(&topics.out, Duration::from_secs(10)).len()
}

/// The echoes committed now, knowing there are at least `known` (a fresh reader's first
/// records take a group join to come; it reads on until a second passes without more).
fn committed(topic: &str, known: usize) -> usize {
    read(topic, known, Duration::from_secs(60)).len()
}

/// Waits until the committed echoes reach `count` (or a minute); how many there are.
fn wait_for_committed(topic: &str, count: usize) -> usize {
    wait_for_records(topic, count, Duration::from_secs(60))
}

#[test]
fn ten_sigkills_mid_stream_leave_every_output_exactly_once() {
    let _serial = serial();
    let scenario = Scenario::new();
    let topics = Topics::new("eo-kill");
    let sent = events("eo-kill", 4000);
    prepare(&topics, &sent);
    let group = unique("eo-kill");
    // A restart is given partitions only once its killed predecessor's session expired, so
    // a short idle exit cannot end it early.
    let config = config(
        &scenario,
        "plexus.toml",
        &group,
        ("solo", "solo"),
        &topics,
        "5s",
    );
    let mut done = 0;
    for kill in 1..=10 {
        let mut plexus = spawn_plexus(&config);
        // Kill once this run has committed some more, so each kill lands mid-stream.
        let target = done + 120;
        assert!(
            wait_for_committed(&topics.out, target) >= target,
            "run {kill} made no progress ({done} echoes committed)\n{}",
            log_of(&config)
        );
        // A moment more, so the kill lands in a transaction with records in it.
        std::thread::sleep(Duration::from_millis(150));
        kill_hard(&mut plexus);
        done = committed(&topics.out, target);
    }
    assert!(
        done < 3600,
        "the kills all came before the end ({done} echoes committed)"
    );
    let mut last = spawn_plexus(&config);
    assert_eq!(
        wait_exit(&mut last, Duration::from_secs(300)),
        0,
        "{}",
        log_of(&config)
    );
    let with_aborted = assert_exactly_once(&topics, &sent);
    assert!(
        with_aborted > 3200,
        "the kills cut open transactions short: {with_aborted} echoes written, aborted ones included, for 3200 committed"
    );
    println!(
        "exactly once after ten SIGKILLs: 3200 echoes and 800 dead letters committed once each; {} echo records aborted",
        with_aborted - 3200
    );
}

#[test]
fn two_processes_in_one_group_one_killed_leave_every_output_exactly_once() {
    let _serial = serial();
    let scenario = Scenario::new();
    let topics = Topics::new("eo-pair");
    let sent = events("eo-pair", 4000);
    prepare(&topics, &sent);
    let group = unique("eo-pair");
    // The survivor holds partitions before the kill: its idle exit must outlast the dead
    // member's session (10 s), after which it is given the rest.
    let a = config(&scenario, "a.toml", &group, ("a", "a"), &topics, "20s");
    let b = config(&scenario, "b.toml", &group, ("b", "b"), &topics, "20s");
    let mut first = spawn_plexus(&a);
    let mut second = spawn_plexus(&b);
    let assigned = |config: &PathBuf| {
        log_of(config)
            .lines()
            .any(|l| l.contains("partitions assigned") && !l.contains("partitions=[]"))
    };
    let started = Instant::now();
    while !(assigned(&a) && assigned(&b)) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "both processes never got partitions\n--- a:\n{}\n--- b:\n{}",
            log_of(&a),
            log_of(&b)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let at_kill = wait_for_committed(&topics.out, 400);
    assert!(at_kill >= 400, "events flow");
    kill_hard(&mut first);
    assert_eq!(
        wait_exit(&mut second, Duration::from_secs(300)),
        0,
        "{}",
        log_of(&b)
    );
    assert!(at_kill < 3200, "killed mid-stream ({at_kill} of 3200)");
    let with_aborted = assert_exactly_once(&topics, &sent);
    let echoes = read(&topics.out, 3200, Duration::from_secs(30));
    let by_b = echoes
        .iter()
        .filter(|e| attr(e, "echotag").as_deref() == Some("b"))
        .count();
    assert!(
        by_b >= 3200 - at_kill,
        "the survivor did the rest ({by_b} echoes)"
    );
    println!(
        "exactly once with a member killed: {at_kill} echoes committed at the kill, {by_b} by the survivor, {} aborted",
        with_aborted - 3200
    );
}

#[test]
fn a_second_process_with_the_same_instance_fences_the_first() {
    let _serial = serial();
    let scenario = Scenario::new();
    let topics = Topics::new("eo-fence");
    let sent = events("eo-fence", 2000);
    prepare(&topics, &sent);
    let group = unique("eo-fence");
    let first_config = config(
        &scenario,
        "first.toml",
        &group,
        ("same", "first"),
        &topics,
        "20s",
    );
    let second_config = config(
        &scenario,
        "second.toml",
        &group,
        ("same", "second"),
        &topics,
        "20s",
    );
    let mut first = spawn_plexus(&first_config);
    assert!(wait_for_committed(&topics.out, 200) >= 200, "events flow");
    // The zombie: alive, but its transactional id is taken over by a new process.
    let mut second = spawn_plexus(&second_config);
    let code = wait_exit(&mut first, Duration::from_secs(120));
    let first_log = log_of(&first_config);
    assert_ne!(code, 0, "the fenced process stopped with an error");
    assert!(
        first_log.to_lowercase().contains("fenced"),
        "the fenced process said why:\n{first_log}"
    );
    assert_eq!(
        wait_exit(&mut second, Duration::from_secs(300)),
        0,
        "{}",
        log_of(&second_config)
    );
    assert_exactly_once(&topics, &sent[..]);
}
