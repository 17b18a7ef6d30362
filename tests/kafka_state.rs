//! Plugin state on Kafka survives SIGKILL, read back independently after each run:
//! - local state, then redis state, the counting plugin killed ten times mid-stream and
//!   restarted;
//! - redis state shared by two processes of one group, one of them killed;
//! - redis-server itself killed mid-stream and started again (AOF, `appendfsync always`):
//!   the events wait for it, none is dead-lettered.
//!
//! Every per-key count equals the number of events of that key: nothing applied twice,
//! nothing lost. (One test at a time: they share the broker, the server and two cores.)

use plexus::event::Event;
use plexus::state::StateBackend;
use plexus::state::local::LocalBackend;
use plexus_tests::counting::{counts, from_redis, from_store, keyed_events};
use plexus_tests::kafka::{
    bootstrap, create_topic, kill_hard, produce_events, read, read_for, spawn_plexus, unique,
    wait_exit, wait_for_records,
};
use plexus_tests::{Scenario, plugins, redis};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

const EVENTS: usize = 3000;
const KEYS: usize = 13;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A config in `scenario` named `name`, counting `input` on two workers (each event
/// spinning `spin` rounds, to make the stream last) and emitting each count to `out`;
/// `broker` and `state` are added to their tables.
fn config(
    scenario: &Scenario,
    name: &str,
    input: &str,
    out: &str,
    broker: &str,
    state: &str,
    spin: u64,
) -> PathBuf {
    scenario.file(
        name,
        &format!(
            "[runtime]\ncache_dir = \"{cache}\"\n[broker]\nkind = \"kafka\"\nkafka.bootstrap_servers = \"{bootstrap}\"\n{broker}\n[state]\n{state}\n[plugins.counter]\npath = \"{plugin}\"\nconfig = {{ out = \"{out}\", total = true, spin = {spin} }}\n[routes.count]\ntopic = \"{input}\"\nplugin = \"counter\"\nconcurrency = 2\ndead_letter = \"{out}.dlq\"\n",
            cache = scenario.dir.path().join("cache").display(),
            bootstrap = bootstrap(),
            plugin = plugins::COUNTER,
        ),
    )
}

/// How many distinct events `out` holds a count of now (each event's count may be there
/// more than once: a redelivered event publishes again what it emitted).
fn distinct_counted(out: &str) -> usize {
    read_for(out, Duration::from_secs(3))
        .iter()
        .map(|e| serde_json::from_slice::<serde_json::Value>(e.data()).unwrap()["of"].clone())
        .map(|of| of.as_str().unwrap_or_default().to_owned())
        .collect::<BTreeSet<String>>()
        .len()
}

/// Fails unless every sent event had its count emitted at least once.
fn assert_all_emitted(out: &str, sent: &[Event]) -> usize {
    let emitted = read(out, sent.len(), Duration::from_secs(60));
    let of: BTreeSet<String> = emitted
        .iter()
        .map(|e| {
            serde_json::from_slice::<serde_json::Value>(e.data()).unwrap()["of"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        of,
        sent.iter().map(|e| e.id.clone()).collect(),
        "nothing lost"
    );
    emitted.len()
}

/// A stream to count: its input topic (created with four partitions, holding the events
/// sent), its output topic and consumer group, the events and the counts they make.
struct Stream {
    input: String,
    out: String,
    group: String,
    sent: Vec<Event>,
    expected: BTreeMap<String, i64>,
}

fn stream(name: &str) -> Stream {
    let stream = unsent_stream(name);
    produce_events(&stream.input, &stream.sent);
    stream
}

/// [`stream`] with nothing produced yet.
fn unsent_stream(name: &str) -> Stream {
    let input = unique(&format!("{name}-in"));
    create_topic(&input, 4);
    let (sent, expected) = keyed_events(name, EVENTS, KEYS);
    Stream {
        input,
        out: unique(&format!("{name}-out")),
        group: unique(name),
        sent,
        expected,
    }
}

/// `[state]` settings for redis state under a fresh key prefix, and the prefix.
fn redis_state() -> (String, String) {
    let prefix = unique("plexus-test");
    let state = format!(
        "backend = \"redis\"\nurl = \"{}\"\nprefix = \"{prefix}\"",
        redis::url()
    );
    (state, prefix)
}

/// Counts on Kafka with state configured by `state`, killing `plexus` ten times mid-stream
/// and restarting it; then checks every count with `counts_now`.
fn ten_sigkills(
    scenario: &Scenario,
    name: &str,
    state: &str,
    counts_now: impl FnOnce(&BTreeMap<String, i64>) -> BTreeMap<String, i64>,
) {
    let Stream {
        input,
        out,
        group,
        sent,
        expected,
    } = stream(name);
    // A static group member: a restarted process takes its partitions back at once.
    let broker = format!(
        "kafka.group = \"{group}\"\nidle_exit = \"8s\"\n[broker.kafka.properties]\n\"group.instance.id\" = \"{group}-member\""
    );
    let config = config(
        scenario,
        "plexus.toml",
        &input,
        &out,
        &broker,
        state,
        1_000_000,
    );

    let mut seen = 0;
    for kill in 0..10 {
        let mut plexus = spawn_plexus(&config);
        let target = seen + 120;
        seen = wait_for_records(&out, target, Duration::from_secs(120));
        assert!(seen >= target, "run {kill} made progress ({seen} counted)");
        kill_hard(&mut plexus);
    }
    // Counted by distinct events: the topic also holds what redeliveries published again.
    let at_last_kill = distinct_counted(&out);
    assert!(
        at_last_kill < EVENTS,
        "the last kill was mid-stream ({at_last_kill} of {EVENTS} events counted)"
    );
    let mut last = spawn_plexus(&config);
    assert_eq!(wait_exit(&mut last, Duration::from_secs(300)), 0);

    assert_eq!(
        counts_now(&expected),
        expected,
        "every count exact after ten SIGKILLs"
    );
    let emitted = assert_all_emitted(&out, &sent);
    println!("{name}: {emitted} counts emitted for {EVENTS} events over ten kills");
}

#[test]
fn local_state_counts_exactly_across_ten_sigkills() {
    let _serial = serial();
    let scenario = Scenario::new();
    let state = scenario.dir.path().join("state.redb");
    let mut left = 0;
    ten_sigkills(
        &scenario,
        "local",
        &format!("path = \"{}\"", state.display()),
        |expected| {
            let store = LocalBackend::open(&state).expect("the state file, after the run");
            // The markers of applied events were pruned as positions were committed.
            left = (0..4)
                .map(|p| store.applied("count", p).unwrap().len())
                .sum();
            counts(expected, from_store(&store))
        },
    );
    assert!(left < EVENTS / 10, "{left} markers left of {EVENTS} events");
}

#[test]
fn redis_state_counts_exactly_across_ten_sigkills() {
    let _serial = serial();
    let scenario = Scenario::new();
    let (state, prefix) = redis_state();
    ten_sigkills(&scenario, "redis", &state, |expected| {
        counts(expected, from_redis(&prefix))
    });
    let markers = redis::cli(&["KEYS", &format!("{prefix}:applied:*")]).unwrap_or_default();
    let left: usize = markers
        .lines()
        .filter(|k| !k.ends_with(":idx"))
        .map(|k| redis::cli(&["HLEN", k]).unwrap().parse::<usize>().unwrap())
        .sum();
    assert!(left < EVENTS / 10, "{left} markers left of {EVENTS} events");
}

#[test]
fn redis_state_shared_by_two_processes_counts_exactly_when_one_is_killed() {
    let _serial = serial();
    let scenario = Scenario::new();
    let Stream {
        input,
        out,
        group,
        sent,
        expected,
    } = unsent_stream("shared");
    // Half the events now, half once both processes hold partitions: so the stream is
    // still running when one is killed, however fast this machine is today.
    produce_events(&input, &sent[..EVENTS / 2]);
    let (state, prefix) = redis_state();
    // The survivor waits out the dead member's session (10s) before it gets its partitions.
    let broker = format!("kafka.group = \"{group}\"\nidle_exit = \"20s\"");
    let first = config(
        &scenario,
        "first.toml",
        &input,
        &out,
        &broker,
        &state,
        6_000_000,
    );
    let second = config(
        &scenario,
        "second.toml",
        &input,
        &out,
        &broker,
        &state,
        6_000_000,
    );
    // The first takes every partition, then shares them with the second.
    let mut one = spawn_plexus(&first);
    assert!(
        wait_for_records(&out, 200, Duration::from_secs(120)) >= 200,
        "the first made progress"
    );
    let mut two = spawn_plexus(&second);
    let second_log = second.with_extension("log");
    let shared = std::time::Instant::now();
    while !std::fs::read_to_string(&second_log)
        .unwrap_or_default()
        .contains("partitions assigned")
    {
        assert!(
            shared.elapsed() < Duration::from_secs(120),
            "the second never got partitions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    produce_events(&input, &sent[EVENTS / 2..]);
    let now = wait_for_records(&out, EVENTS, Duration::ZERO);
    assert!(
        wait_for_records(&out, now + 300, Duration::from_secs(120)) >= now + 300,
        "both made progress"
    );
    kill_hard(&mut one);
    let at_kill = distinct_counted(&out);
    assert!(
        at_kill < EVENTS,
        "killed mid-stream ({at_kill} of {EVENTS} events counted)"
    );
    assert_eq!(wait_exit(&mut two, Duration::from_secs(300)), 0);

    assert_eq!(
        counts(&expected, from_redis(&prefix)),
        expected,
        "every count exact, read with redis-cli"
    );
    assert_all_emitted(&out, &sent);
    let log = std::fs::read_to_string(&second_log).unwrap();
    let summary = log
        .lines()
        .find(|l| l.starts_with("route count:"))
        .expect("a summary");
    let received: u64 = summary
        .split("received ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        received > 0,
        "the survivor took over unfinished events: {summary}"
    );
    println!("survivor: {summary}");
}

#[test]
fn redis_server_killed_mid_stream_loses_no_count_and_dead_letters_nothing() {
    let _serial = serial();
    let scenario = Scenario::new();
    let Stream {
        input,
        out,
        group,
        sent,
        expected,
    } = stream("outage");
    let (state, prefix) = redis_state();
    let broker = format!("kafka.group = \"{group}\"\nidle_exit = \"10s\"");
    let config = config(
        &scenario,
        "plexus.toml",
        &input,
        &out,
        &broker,
        &state,
        1_000_000,
    );
    let mut plexus = spawn_plexus(&config);
    assert!(
        wait_for_records(&out, 300, Duration::from_secs(120)) >= 300,
        "progress before the outage"
    );
    redis::kill();
    // Longer than every timeout of the store (2s per command).
    std::thread::sleep(Duration::from_secs(6));
    let during = wait_for_records(&out, EVENTS, Duration::from_secs(1));
    redis::up();
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(300)), 0);
    assert!(
        during < EVENTS,
        "the outage was mid-stream ({during} emitted)"
    );

    assert_eq!(
        counts(&expected, from_redis(&prefix)),
        expected,
        "every count exact across the outage"
    );
    assert_all_emitted(&out, &sent);
    assert!(
        read_for(&format!("{out}.dlq"), Duration::from_secs(3)).is_empty(),
        "nothing dead-lettered while the store was down"
    );
    let log = std::fs::read_to_string(config.with_extension("log")).unwrap();
    assert!(
        log.contains("state store unavailable"),
        "the wait is logged"
    );
    assert!(
        log.contains("waits for the state store"),
        "and counted in the summary"
    );
}
