//! Plexus against a real Apache Kafka broker (started by scripts/test), each test asserting
//! on what a Kafka consumer reads back: fan-out, the shop chain, poison events, a crash
//! mid-stream, and scale-out by consumer group.

use plexus::event::Event;
use plexus_tests::kafka::{
    bootstrap, create_topic, event, kill_hard, log_of, produce, produce_events, read, shop_config,
    spawn_plexus, unique, wait_exit, wait_for_records,
};
use plexus_tests::{Scenario, attr, plugins};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// One Kafka test at a time: they share the broker and two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Kafka config in `scenario`: the broker section, then `extra`.
fn kafka_config(
    scenario: &Scenario,
    name: &str,
    group: &str,
    idle_exit: &str,
    extra: &str,
) -> PathBuf {
    scenario.file(
        name,
        &format!(
            "[runtime]\ncache_dir = \"{}\"\n[broker]\nkind = \"kafka\"\nkafka.bootstrap_servers = \"{}\"\nkafka.group = \"{group}\"\npartitions = 4\nidle_exit = \"{idle_exit}\"\n{extra}",
            scenario.dir.path().join("cache").display(),
            bootstrap()
        ),
    )
}

/// A route `name` on `topic` running misbehave, echoing to `out`.
fn echo_route(
    name: &str,
    topic: &str,
    out: &str,
    dead_letter: &str,
    plugin_config: &str,
) -> String {
    format!(
        "[plugins.{name}]\npath = \"{}\"\nconfig = {{ out = \"{out}\"{plugin_config} }}\n[routes.{name}]\ntopic = \"{topic}\"\nplugin = \"{name}\"\nconcurrency = 2\ndead_letter = \"{dead_letter}\"\n",
        plugins::MISBEHAVE
    )
}

/// Fails with the missing ids (the first few) if `seen` lacks any of `expected`.
fn assert_all_processed(expected: &BTreeSet<String>, seen: &BTreeSet<String>, what: &str) {
    let missing: Vec<&String> = expected.difference(seen).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} missing, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(10)]
    );
}

fn echo_of(event: &Event) -> String {
    attr(event, "echoof").unwrap_or_default()
}

fn events(prefix: &str, count: usize) -> Vec<Event> {
    (0..count)
        .map(|i| {
            event(
                &format!("{prefix}-{i}"),
                "test.ok",
                Some(&format!("k{}", i % 13)),
            )
        })
        .collect()
}

#[test]
fn three_routes_on_one_topic_each_process_every_event() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("fan-in");
    create_topic(&input, 4);
    let sent = events("fan", 300);
    produce_events(&input, &sent);
    let outs: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|r| unique(&format!("fan-out-{r}")))
        .collect();
    let routes: String = ["a", "b", "c"]
        .iter()
        .zip(&outs)
        .map(|(r, out)| echo_route(r, &input, out, &format!("{out}.dlq"), ""))
        .collect();
    let config = kafka_config(&scenario, "plexus.toml", &unique("fan"), "3s", &routes);
    let mut plexus = spawn_plexus(&config);
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(120)), 0);
    let expected: BTreeSet<String> = sent.iter().map(|e| e.id.clone()).collect();
    for out in &outs {
        let echoed = read(out, 300, Duration::from_secs(30));
        assert_eq!(echoed.len(), 300, "{out}");
        assert_eq!(
            echoed.iter().map(echo_of).collect::<BTreeSet<_>>(),
            expected,
            "{out}"
        );
    }
}

#[test]
fn the_shop_chain_runs_end_to_end_through_kafka_topics() {
    let _serial = serial();
    let scenario = Scenario::new();
    let prefix = unique("shop");
    let text = shop_config(&prefix, bootstrap());
    let config = scenario.file("plexus.toml", &text);
    let mut plexus = spawn_plexus(&config);
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(120)), 0);

    let notifications = read(
        &format!("{prefix}.notifications"),
        5,
        Duration::from_secs(30),
    );
    let mut messages: Vec<String> = notifications
        .iter()
        .map(|n| {
            serde_json::from_slice::<serde_json::Value>(n.data()).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        plexus_tests::SHOP_NOTIFICATIONS,
        "plexus log:\n{}",
        log_of(&config)
    );
    let first = notifications
        .iter()
        .find(|n| n.correlation_id.as_deref() == Some("checkout-1001"))
        .unwrap();
    assert_eq!(
        attr(first, "traceparent").as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(
        first.key.as_deref(),
        Some(&b"c-ada"[..]),
        "the key travels as the Kafka key"
    );
    let dead = read(
        &format!("{prefix}.dead-letters"),
        2,
        Duration::from_secs(30),
    );
    let kinds: BTreeSet<String> = dead
        .iter()
        .map(|d| attr(d, "plexusdlqkind").unwrap())
        .collect();
    let letters: Vec<String> = dead
        .iter()
        .map(|d| {
            format!(
                "{} {:?} partition {} offset {}",
                d.id,
                attr(d, "plexusdlqkind"),
                d.partition,
                d.offset
            )
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["rejected".to_owned(), "undecodable".to_owned()]),
        "dead letters read: {letters:?}; plexus log:\n{}",
        log_of(&config)
    );
}

#[test]
fn poison_events_are_dead_lettered_and_the_rest_flow() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("poison-in");
    let (out, dlq) = (unique("poison-out"), unique("poison-dlq"));
    create_topic(&input, 1);
    let good: Vec<Event> = events("good", 10);
    produce_events(&input, &good[..3]);
    produce(
        &input,
        &[plexus::testing::kafka_binding::KafkaRecord {
            value: Some(b"not an event at all".to_vec()),
            ..Default::default()
        }],
    );
    produce_events(&input, &[event("bad", "test.reject", None)]);
    produce_events(&input, &good[3..]);
    let config = kafka_config(
        &scenario,
        "plexus.toml",
        &unique("poison"),
        "3s",
        &echo_route("p", &input, &out, &dlq, ""),
    );
    let mut plexus = spawn_plexus(&config);
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(120)), 0);
    let echoed = read(&out, 10, Duration::from_secs(30));
    assert_eq!(
        echoed.iter().map(echo_of).collect::<BTreeSet<_>>(),
        good.iter().map(|e| e.id.clone()).collect::<BTreeSet<_>>()
    );
    let dead = read(&dlq, 2, Duration::from_secs(30));
    let reasons: BTreeMap<String, String> = dead
        .iter()
        .map(|d| {
            let header = |n: &str| attr(d, n).unwrap();
            (header("plexusdlqkind"), header("plexusdlqreason"))
        })
        .collect();
    assert_eq!(reasons["rejected"], "rejected bad");
    assert!(
        reasons["undecodable"].contains("no `ce_specversion`"),
        "{reasons:?}"
    );
    let raw = dead
        .iter()
        .find(|d| d.type_ == "plexus.undecodable")
        .unwrap();
    assert_eq!(
        raw.data(),
        b"not an event at all",
        "the record's bytes are kept"
    );
    assert_eq!(attr(raw, "plexusdlqoffset").as_deref(), Some("3"));
}

#[test]
fn a_crash_mid_stream_loses_nothing_and_duplicates_are_recognisable() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("crash-in");
    let out = unique("crash-out");
    create_topic(&input, 4);
    let sent = events("crash", 3000);
    produce_events(&input, &sent);
    let group = unique("crash");
    let config = kafka_config(
        &scenario,
        "plexus.toml",
        &group,
        "3s",
        &echo_route("c", &input, &out, &format!("{out}.dlq"), ", spin = 2000000"),
    );
    let mut first = spawn_plexus(&config);
    assert!(
        wait_for_records(&out, 300, Duration::from_secs(60)) >= 300,
        "the first run made progress"
    );
    kill_hard(&mut first);
    let at_kill = wait_for_records(&out, 3000, Duration::from_secs(5));
    assert!(at_kill < 3000, "killed mid-stream ({at_kill} of 3000 done)");
    // The restarted member waits out the dead one's session (10s) before it gets partitions:
    // give it an idle exit longer than that.
    let restart = kafka_config(
        &scenario,
        "restart.toml",
        &group,
        "20s",
        &echo_route("c", &input, &out, &format!("{out}.dlq"), ", spin = 2000000"),
    );
    let mut second = spawn_plexus(&restart);
    assert_eq!(wait_exit(&mut second, Duration::from_secs(180)), 0);

    let echoed = read(&out, 3000, Duration::from_secs(60));
    let by_source: BTreeMap<String, BTreeSet<String>> =
        echoed.iter().fold(BTreeMap::new(), |mut m, e| {
            m.entry(echo_of(e)).or_default().insert(e.id.clone());
            m
        });
    let expected: BTreeSet<String> = sent.iter().map(|e| e.id.clone()).collect();
    assert_all_processed(
        &expected,
        &by_source.keys().cloned().collect(),
        "every event processed at least once",
    );
    assert!(
        by_source.values().all(|ids| ids.len() == 1),
        "a re-processed event re-emits the same id"
    );
    println!(
        "{} echoes for {} events: {} duplicates, each with the id of its twin",
        echoed.len(),
        sent.len(),
        echoed.len() - sent.len()
    );
}

#[test]
fn two_processes_share_a_topic_and_one_takes_over_when_the_other_dies() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("scale-in");
    let out = unique("scale-out");
    create_topic(&input, 4);
    let sent = events("scale", 3000);
    produce_events(&input, &sent);
    let group = unique("scale");
    let dlq = format!("{out}.dlq");
    let a = kafka_config(
        &scenario,
        "a.toml",
        &group,
        "20s",
        &echo_route("s", &input, &out, &dlq, ", spin = 8000000, tag = \"a\""),
    );
    let b = kafka_config(
        &scenario,
        "b.toml",
        &group,
        "20s",
        &echo_route("s", &input, &out, &dlq, ", spin = 8000000, tag = \"b\""),
    );
    let mut first = spawn_plexus(&a);
    let mut second = spawn_plexus(&b);
    // Once the second member has been given partitions while the first is alive, and
    // events are flowing, kill the first.
    let assigned = |config: &PathBuf| {
        log_of(config)
            .lines()
            .any(|l| l.contains("partitions assigned") && !l.contains("partitions=[]"))
    };
    let started = std::time::Instant::now();
    while !(assigned(&a) && assigned(&b)) {
        if started.elapsed() > Duration::from_secs(120) {
            let group_lines = |config: &PathBuf| {
                log_of(config)
                    .lines()
                    .filter(|l| {
                        l.contains("partitions") || l.contains("rror") || l.contains("WARN")
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            panic!(
                "both processes never got partitions\n--- a:\n{}\n--- b:\n{}",
                group_lines(&a),
                group_lines(&b)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        wait_for_records(&out, 200, Duration::from_secs(60)) >= 200,
        "events flow"
    );
    let b_before_kill = holdings(&log_of(&b)).pop().unwrap_or_default();
    kill_hard(&mut first);
    let at_kill = wait_for_records(&out, 3000, Duration::from_secs(5));
    assert!(at_kill < 3000, "killed mid-stream ({at_kill} of 3000 done)");
    assert_eq!(wait_exit(&mut second, Duration::from_secs(240)), 0);
    let echoed = read(&out, 3000, Duration::from_secs(60));
    let expected: BTreeSet<String> = sent.iter().map(|e| e.id.clone()).collect();
    assert_all_processed(
        &expected,
        &echoed.iter().map(echo_of).collect(),
        "nothing lost when a member died",
    );
    // The survivor took the dead member's partitions over and did all that was left.
    let all: BTreeSet<i32> = (0..4).collect();
    assert!(
        !b_before_kill.is_empty() && b_before_kill != all,
        "both members held partitions when one was killed: {b_before_kill:?}"
    );
    let b_history = holdings(&log_of(&b));
    assert!(
        b_history.contains(&all),
        "the survivor was given the dead member's partitions: {b_history:?}"
    );
    let by_b = echoed
        .iter()
        .filter(|e| attr(e, "echotag").as_deref() == Some("b"))
        .count();
    assert!(
        by_b >= 3000 - at_kill,
        "the survivor echoed everything not done at the kill ({by_b} < {})",
        3000 - at_kill
    );
    println!(
        "{} echoes, {at_kill} done when one member was killed, {by_b} by the survivor",
        echoed.len()
    );
}

/// The partitions a member held after each rebalance, in order: each `partitions assigned`
/// line adds its list, each `partitions revoked` line takes its list away.
fn holdings(log: &str) -> Vec<BTreeSet<i32>> {
    let listed = |line: &str| -> Vec<i32> {
        line.split("partitions=[")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .map(|list| {
                list.split(", ")
                    .filter_map(|p| p.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut held = BTreeSet::new();
    let mut history = Vec::new();
    for line in log.lines() {
        if line.contains("partitions assigned") {
            held.extend(listed(line));
        } else if line.contains("partitions revoked") {
            for partition in listed(line) {
                held.remove(&partition);
            }
        } else {
            continue;
        }
        history.push(held.clone());
    }
    history
}

#[test]
fn hot_reload_on_kafka_swaps_the_plugin_and_restarts_a_changed_route_without_loss() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("reload-in");
    let out = unique("reload-out");
    create_topic(&input, 4);
    let sent = events("reload", 4000);
    produce_events(&input, &sent);
    let group = unique("reload");
    let write = |tag: &str, concurrency: u32| {
        let route = echo_route(
            "r",
            &input,
            &out,
            &format!("{out}.dlq"),
            &format!(", spin = 400000, tag = \"{tag}\""),
        )
        .replace("concurrency = 2", &format!("concurrency = {concurrency}"));
        kafka_config(&scenario, "plexus.toml", &group, "10s", &route)
    };
    let config = write("v1", 2);
    // SIGHUP reloads even with --no-watch (which spawn_plexus passes).
    let mut plexus = spawn_plexus(&config);
    let hangup = |child: &std::process::Child| {
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let tagged = |events: &[Event], tag: &str| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| attr(e, "echotag").as_deref() == Some(tag))
            .map(echo_of)
            .collect()
    };
    assert!(wait_for_records(&out, 300, Duration::from_secs(60)) >= 300);

    // Phase 1: a new plugin config, the same route: a swap between events. Until the route
    // restarts below, no event may be handled by both versions.
    write("v2", 2);
    hangup(&plexus);
    let started = std::time::Instant::now();
    let swapped = loop {
        let so_far = plexus_tests::kafka::read_for(&out, Duration::from_secs(2));
        if !tagged(&so_far, "v2").is_empty() {
            break so_far;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "v2 never served"
        );
    };
    let (v1, v2) = (tagged(&swapped, "v1"), tagged(&swapped, "v2"));
    assert!(!v1.is_empty() && !v2.is_empty());
    assert!(
        v1.is_disjoint(&v2),
        "no event handled by both versions across a swap"
    );
    // Phase 2: the route itself changes: it drains, commits, and resumes where it stopped.
    // Events finished but not yet committed (an earlier offset still queued on another
    // worker) are delivered again, to v2: at-least-once, so overlap is allowed from here.
    write("v2", 3);
    hangup(&plexus);
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(300)), 0);

    let echoed = read(&out, 4000, Duration::from_secs(60));
    let expected: BTreeSet<String> = sent.iter().map(|e| e.id.clone()).collect();
    assert_all_processed(
        &expected,
        &echoed.iter().map(echo_of).collect(),
        "nothing lost across the reloads",
    );
    let (v1, v2) = (tagged(&echoed, "v1"), tagged(&echoed, "v2"));
    let log = std::fs::read_to_string(config.with_extension("log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("` swapped: ") && l.contains("@sha256:") && !l.contains("old=")),
        "the swap is logged in words: {log}"
    );
    assert!(log.contains("route restarted with new settings"), "{log}");
    println!(
        "{} echoes: {} by v1, {} by v2",
        echoed.len(),
        v1.len(),
        v2.len()
    );
}
