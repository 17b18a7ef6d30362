//! The way back from failure, through the real binary: `plexus replay` publishes dead
//! letters again once the plugin is fixed (embedded files, Kafka, Redis), a second replay
//! publishes nothing again, and `plexus positions --reset` moves a route back in time to
//! reprocess (refused while the route runs). And a route's dedupe: producer-side duplicates
//! skipped within the window, handled after it.

use plexus::event::Event;
use plexus_tests::kafka::{
    self, bootstrap, create_topic, produce_events, read, read_for, spawn_plexus, unique, wait_exit,
};
use plexus_tests::{Scenario, attr, event_line, plexus_command, plugins, redis};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

/// One broker test at a time: they share the broker and two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `plexus ARGS` to the end.
fn plexus(args: &[&str]) -> Output {
    plexus_command().args(args).output().expect("run plexus")
}

/// Runs `plexus ARGS`, which must succeed and say `said` on stderr; its output.
fn succeeds_saying(args: &[&str], said: &str) -> Output {
    let output = plexus(args);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(said), "expected `{said}` in: {stderr}");
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The filter plugin forwarding `orders` to `out`; with `reject`, rejecting every event.
fn route(input: &str, out: &str, reject: bool) -> String {
    let reject = if reject { ", reject = \"bug 42\"" } else { "" };
    format!(
        "[plugins.forward]\npath = \"{}\"\nconfig = {{ out = \"{out}\"{reject} }}\n[routes.forward]\ntopic = \"{input}\"\nplugin = \"forward\"\ndead_letter = \"{input}.dlq\"\nretry = {{ max_attempts = 1 }}\n",
        plugins::FILTER
    )
}

/// Now, to the millisecond, in RFC 3339.
fn now_rfc3339() -> String {
    let now = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%3NZ"])
        .output()
        .expect("date");
    text(&now.stdout).trim().to_owned()
}

/// The ids of the events `events` were emitted for, sorted.
fn causes(events: &[Event]) -> Vec<String> {
    let mut ids: Vec<String> = events
        .iter()
        .map(|e| attr(e, "causationid").expect("emitted events name their cause"))
        .collect();
    ids.sort();
    ids
}

fn ids(events: &[Event]) -> Vec<String> {
    let mut ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids
}

#[test]
fn embedded_dead_letters_are_replayed_through_the_fixed_plugin() {
    let scenario = Scenario::new();
    let lines: Vec<String> = (0..10)
        .map(|i| {
            event_line(
                &format!("o-{i}"),
                "shop.order",
                Some("k"),
                serde_json::json!({ "n": i }),
            )
        })
        .collect();
    scenario.events("orders.jsonl", &lines);
    let write = |reject: bool| {
        scenario.file(
            "plexus.toml",
            &format!(
                "[runtime]\ncache_dir = \"{cache}\"\n[state]\nbackend = \"local\"\n[[inputs]]\ntopic = \"orders\"\nfile = \"orders.jsonl\"\n[[outputs]]\ntopic = \"out\"\nfile = \"out.jsonl\"\n[[outputs]]\ntopic = \"orders.dlq\"\nfile = \"dlq.jsonl\"\n{}",
                route("orders", "out", reject),
                cache = scenario.dir.path().join("cache").display()
            ),
        )
    };
    let config = write(true);
    let config = config.to_str().unwrap();
    let first = plexus(&["run", "--no-watch", "--config", config]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let letters = scenario.output("dlq.jsonl");
    assert_eq!(
        letters.len(),
        10,
        "every event rejected by the buggy plugin"
    );

    // What would go, as a table; a filter that matches nothing lists nothing.
    let listed = plexus(&["replay", "--config", config, "--dry-run"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let table = text(&listed.stdout);
    assert!(table.starts_with("POSITION"), "{table}");
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains("rejected") && l.contains("bug 42"))
            .count(),
        10,
        "{table}"
    );
    let none = plexus(&["replay", "--config", config, "--dry-run", "--kind", "trap"]);
    assert_eq!(text(&none.stdout).lines().count(), 1, "only the header");
    assert!(
        !scenario.dir.path().join("replay").exists(),
        "a dry run writes nothing"
    );

    // A topic no route reads is refused, unless forced.
    let refused = plexus(&["replay", "--config", config, "--to", "nowhere"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("no route of")
            && text(&refused.stderr).contains("`nowhere`"),
        "{}",
        text(&refused.stderr)
    );

    // Fixed: the letters go back to `orders`, and all of them now succeed.
    write(false);
    succeeds_saying(
        &["replay", "--config", config, "--limit", "7"],
        "replayed 7 of 10 letters",
    );
    let file = scenario.dir.path().join("replay/orders.jsonl");
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 7);
    let all = plexus(&["replay", "--config", config]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    let input = format!("orders={}", file.display());
    let second = plexus(&["run", "--no-watch", "--config", config, "--input", &input]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let out = scenario.output("out.jsonl");
    assert_eq!(causes(&out.0), ids(&letters.0), "the same events, by id");
    assert!(
        out.0
            .iter()
            .all(|e| attr(e, "plexusreplayed").as_deref() == Some("1")),
        "counted as replayed once"
    );
    assert!(
        out.0.iter().all(|e| attr(e, "plexusdlqkind").is_none()),
        "no dead-letter attributes left"
    );
    assert!(
        scenario.output("dlq.jsonl").is_empty(),
        "nothing failed this time"
    );

    // The same replay file again is refused by the durable state: it was run already.
    let again = plexus(&["run", "--no-watch", "--config", config, "--input", &input]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
}

/// A Kafka config for one test: the forward route from `input` to `out`, exiting when idle.
fn kafka_config(scenario: &Scenario, group: &str, input: &str, out: &str, reject: bool) -> PathBuf {
    scenario.file(
        "plexus.toml",
        &format!(
            "[runtime]\ncache_dir = \"{cache}\"\n[broker]\nkind = \"kafka\"\nkafka.bootstrap_servers = \"{bootstrap}\"\nkafka.group = \"{group}\"\nidle_exit = \"4s\"\n{}",
            route(input, out, reject),
            cache = scenario.dir.path().join("cache").display(),
            bootstrap = bootstrap(),
        ),
    )
}

fn run_until_idle(config: &Path) {
    let mut child = spawn_plexus(config);
    let code = wait_exit(&mut child, Duration::from_secs(120));
    assert_eq!(code, 0, "{}", kafka::log_of(config));
}

#[test]
fn kafka_dead_letters_are_replayed_once() {
    let _serial = serial();
    let scenario = Scenario::new();
    let (input, out, group) = (unique("replay-in"), unique("replay-out"), unique("replay"));
    let dlq = format!("{input}.dlq");
    create_topic(&input, 2);
    create_topic(&out, 1);
    create_topic(&dlq, 1);
    let sent: Vec<Event> = (0..30)
        .map(|i| {
            kafka::event(
                &format!("e-{i}"),
                if i % 3 == 0 { "a.trap" } else { "a.ok" },
                Some(&format!("k{i}")),
            )
        })
        .collect();
    produce_events(&input, &sent);
    let config = kafka_config(&scenario, &group, &input, &out, true);
    run_until_idle(&config);
    let letters = read(&dlq, 30, Duration::from_secs(60));
    assert_eq!(letters.len(), 30);
    let config_text = config.to_str().unwrap();

    kafka_config(&scenario, &group, &input, &out, false);
    // Only the letters of events with even numbers, by id, first.
    let chosen: Vec<String> = (0..30).step_by(2).map(|i| format!("e-{i}")).collect();
    let mut args = vec![
        "replay",
        "--config",
        config_text,
        "--route",
        "forward",
        "--group",
        "evens",
    ];
    for id in &chosen {
        args.extend(["--id", id.as_str()]);
    }
    succeeds_saying(&args, "replayed 15 of 30 letters");
    // Then everything, in the default group: all 30 go once; a second time nothing does.
    succeeds_saying(
        &["replay", "--config", config_text],
        "replayed 30 of 30 letters",
    );
    succeeds_saying(
        &["replay", "--config", config_text],
        "replayed 0 of 0 letters",
    );

    run_until_idle(&config);
    let forwarded = read_for(&out, Duration::from_secs(5));
    assert_eq!(
        forwarded.len(),
        45,
        "30 from the full replay, 15 from the evens replay"
    );
    let mut distinct = causes(&forwarded);
    distinct.dedup();
    assert_eq!(
        distinct,
        ids(&sent),
        "every event succeeded, under its own id"
    );
    assert!(
        forwarded
            .iter()
            .all(|e| attr(e, "plexusreplayed").as_deref() == Some("1"))
    );
    assert_eq!(
        read_for(&dlq, Duration::from_secs(3)).len(),
        30,
        "nothing dead-lettered again"
    );
}

/// The offset committed by `route` of `config` on partition 0, from `plexus positions --json`.
fn committed(config: &str, route: &str) -> Vec<serde_json::Value> {
    let shown = plexus(&["positions", "--config", config, "--route", route, "--json"]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    text(&shown.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn kafka_positions_are_shown_and_reset_to_a_time_reprocesses_from_there() {
    let _serial = serial();
    let scenario = Scenario::new();
    let (input, out, group) = (unique("pos-in"), unique("pos-out"), unique("pos"));
    create_topic(&input, 2);
    create_topic(&out, 1);
    let batch = |from: usize| -> Vec<Event> {
        (from..from + 20)
            .map(|i| kafka::event(&format!("p-{i}"), "a.ok", Some(&format!("k{i}"))))
            .collect()
    };
    produce_events(&input, &batch(0));
    std::thread::sleep(Duration::from_millis(1500));
    let between = now_rfc3339();
    std::thread::sleep(Duration::from_millis(1500));
    produce_events(&input, &batch(20));
    let config = kafka_config(&scenario, &group, &input, &out, false);
    let config_text = config.to_str().unwrap();
    let before = committed(config_text, "forward");
    assert_eq!(before.len(), 2, "one row per partition");
    assert!(
        before.iter().all(|p| p["committed"].is_null()),
        "nothing committed yet: {before:?}"
    );
    assert_eq!(
        before
            .iter()
            .map(|p| p["lag"].as_u64().unwrap())
            .sum::<u64>(),
        40
    );

    run_until_idle(&config);
    assert_eq!(read(&out, 40, Duration::from_secs(60)).len(), 40);
    let after = committed(config_text, "forward");
    assert!(
        after
            .iter()
            .all(|p| p["lag"] == 0 && p["committed"] == p["end"]),
        "{after:?}"
    );

    // While the route runs, a reset is refused and moves nothing.
    let mut running = spawn_plexus(
        &scenario.file(
            "running.toml",
            &std::fs::read_to_string(&config)
                .unwrap()
                .replace("idle_exit = \"4s\"", ""),
        ),
    );
    let log = scenario.dir.path().join("running.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("partitions assigned")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the route never joined its group"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = plexus(&[
        "positions",
        "--config",
        config_text,
        "--reset",
        "forward",
        "--to",
        "beginning",
    ]);
    kafka::terminate(&running);
    assert_eq!(wait_exit(&mut running, Duration::from_secs(60)), 0);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("live member"),
        "{}",
        text(&refused.stderr)
    );
    let offsets = |positions: &[serde_json::Value]| -> Vec<serde_json::Value> {
        positions.iter().map(|p| p["committed"].clone()).collect()
    };
    assert_eq!(offsets(&committed(config_text, "forward")), offsets(&after));

    // Stopped, it moves back to the time between the batches: only the second is read again.
    let reset = plexus(&[
        "positions",
        "--config",
        config_text,
        "--reset",
        "forward",
        "--to",
        &format!("time:{between}"),
    ]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    let moved = committed(config_text, "forward");
    assert_eq!(
        moved
            .iter()
            .map(|p| p["lag"].as_u64().unwrap())
            .sum::<u64>(),
        20,
        "{moved:?}"
    );
    run_until_idle(&config);
    let forwarded = read_for(&out, Duration::from_secs(5));
    let again: Vec<String> = causes(&forwarded[40..]);
    assert_eq!(
        again,
        ids(&batch(20)),
        "the events after the time, once more"
    );
}

/// A Redis config for one test: the forward route, exiting when idle.
fn redis_config(scenario: &Scenario, group: &str, input: &str, out: &str, reject: bool) -> PathBuf {
    scenario.file(
        "plexus.toml",
        &format!(
            "[runtime]\ncache_dir = \"{cache}\"\n[broker]\nkind = \"redis\"\nidle_exit = \"3s\"\n[broker.redis]\nurl = \"{url}\"\ngroup = \"{group}\"\n{}",
            route(input, out, reject),
            cache = scenario.dir.path().join("cache").display(),
            url = redis::url(),
        ),
    )
}

#[test]
fn redis_dead_letters_are_replayed_once_and_a_route_reset_reads_again() {
    let _serial = serial();
    redis::url();
    let scenario = Scenario::new();
    let (input, out, group) = (
        unique("rreplay-in"),
        unique("rreplay-out"),
        unique("rreplay"),
    );
    let dlq = format!("{input}.dlq");
    let events: Vec<(String, String, Option<String>)> = (0..12)
        .map(|i| (format!("r-{i}"), "a.ok".to_owned(), Some(format!("k{i}"))))
        .collect();
    redis::add_events(&input, &events);
    let config = redis_config(&scenario, &group, &input, &out, true);
    let config_text = config.to_str().unwrap();
    run_until_idle(&config);
    assert_eq!(redis::xlen(&dlq), 12);

    redis_config(&scenario, &group, &input, &out, false);
    succeeds_saying(
        &["replay", "--config", config_text],
        "replayed 12 of 12 letters",
    );
    succeeds_saying(
        &["replay", "--config", config_text],
        "replayed 0 of 0 letters",
    );
    run_until_idle(&config);
    assert_eq!(redis::xlen(&out), 12, "each replayed event forwarded once");
    let lag: u64 = committed(config_text, "forward")
        .iter()
        .map(|p| p["lag"].as_u64().unwrap())
        .sum();
    assert_eq!(lag, 0);

    // Back to the beginning: the 12 originals and the 12 replayed are read again.
    let reset = plexus(&[
        "positions",
        "--config",
        config_text,
        "--reset",
        "forward",
        "--to",
        "beginning",
    ]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    let lag: u64 = committed(config_text, "forward")
        .iter()
        .map(|p| p["lag"].as_u64().unwrap())
        .sum();
    assert_eq!(lag, 24);
    run_until_idle(&config);
    assert_eq!(redis::xlen(&out), 36);
}

/// A route that dedupes with `window`, forwarding `orders` to `out` on the embedded broker,
/// its state in the scenario's directory; inputs from `file`.
fn dedupe_config(file: &str, window: &str) -> String {
    format!(
        "[broker]\npartitions = 4\n[state]\nbackend = \"local\"\npath = \"state.redb\"\n[[inputs]]\ntopic = \"orders\"\nfile = \"{file}\"\n[[outputs]]\ntopic = \"out\"\nfile = \"out.jsonl\"\n{}dedupe = {{ window = \"{window}\" }}\n",
        route("orders", "out", false)
    )
}

/// An event line with `id` from `source`, keyed by its id (so its duplicates share a
/// partition and a worker, and meet in one group commit).
fn from_source(id: &str, source: &str, n: u32) -> String {
    serde_json::json!({
        "specversion": "1.0", "id": id, "source": source, "type": "shop.order",
        "partitionkey": id, "data": { "n": n },
    })
    .to_string()
}

#[test]
fn dedupe_skips_an_id_finished_within_the_window_and_handles_it_after() {
    let scenario = Scenario::new();
    // Ten events, five of them sent again (a producer retrying), and one of the same id
    // from another source (a different event).
    let mut lines: Vec<String> = (0..10)
        .map(|i| from_source(&format!("e-{i}"), "/shop", 1))
        .collect();
    lines.extend((0..5).map(|i| from_source(&format!("e-{i}"), "/shop", 2)));
    lines.push(from_source("e-0", "/elsewhere", 1));
    scenario.events("first.jsonl", &lines);
    let report = scenario.run(&dedupe_config("first.jsonl", "8s"));
    let counts = &report.routes["forward"];
    assert_eq!(counts.duplicates, 5, "{counts:?}");
    assert_eq!(counts.succeeded, 11);
    let out = scenario.output("out.jsonl");
    assert_eq!(out.len(), 11);
    assert!(
        out.0.iter().all(|e| e.data() == br#"{"n":1}"#),
        "the first of each kept, the duplicates skipped"
    );
    let finished_at = std::time::Instant::now();

    // A later run, inside the window: skipped again (the record is in the durable state).
    scenario.events("second.jsonl", &[from_source("e-7", "/shop", 3)]);
    let report = scenario.run(&dedupe_config("second.jsonl", "8s"));
    assert_eq!(report.routes["forward"].duplicates, 1);
    assert!(scenario.output("out.jsonl").is_empty());

    // After the window: handled again.
    std::thread::sleep(Duration::from_secs(9).saturating_sub(finished_at.elapsed()));
    scenario.events(
        "third.jsonl",
        &[
            from_source("e-1", "/shop", 4),
            from_source("e-2", "/shop", 4),
        ],
    );
    let report = scenario.run(&dedupe_config("third.jsonl", "8s"));
    assert_eq!(report.routes["forward"].duplicates, 0);
    assert_eq!(scenario.output("out.jsonl").len(), 2);
}
