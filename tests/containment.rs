//! Attacks on the limits, by a hostile plugin on the embedded broker: sleeping in host calls
//! (in `handle` and in `init`), calling the host forever, overflowing its stack, flooding
//! state, outbox and log. Each must be stopped at its limit, with the host's memory, exit
//! times and logs bounded, and the events after it still flowing.

use plexus::Runtime;
use plexus::Shutdown;
use plexus::config::Config;
use plexus_tests::{PeakRss, Scenario, attr, event_line, plexus_command, plugins};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A config running the hostile plugin on topic `in`, echoing to `echo.jsonl`, dead letters
/// to `dlq.jsonl`; `limits` and `plugin_config` go into the plugin's table.
fn hostile_config(input: &Path, limits: &str, plugin_config: &str) -> String {
    format!(
        r#"
[broker]
partitions = 1
[[inputs]]
topic = "in"
file = "{input}"
[[outputs]]
topic = "echo"
file = "echo.jsonl"
[[outputs]]
topic = "dlq"
file = "dlq.jsonl"
[plugins.hostile]
path = "{plugin}"
config = {{ out = "echo"{plugin_config} }}
limits = {{ {limits} }}
[routes.attack]
topic = "in"
plugin = "hostile"
dead_letter = "dlq"
retry = {{ max_attempts = 1 }}
"#,
        input = input.display(),
        plugin = plugins::HOSTILE,
    )
}

/// [`hostile_config`] written as the scenario's `plexus.toml`, with a compile cache of its
/// own, for running the binary.
fn hostile_config_file(
    scenario: &Scenario,
    input: &Path,
    limits: &str,
    plugin_config: &str,
) -> std::path::PathBuf {
    scenario.file(
        "plexus.toml",
        &format!(
            "[runtime]\ncache_dir = \"{}\"\n{}",
            scenario.dir.path().join("cache").display(),
            hostile_config(input, limits, plugin_config)
        ),
    )
}

fn header(event: &plexus::event::Event, name: &str) -> String {
    attr(event, name).unwrap_or_default()
}

/// Starts `plexus run` on `config`, stderr to `<config>.log`, with a cache in the scenario.
fn spawn_run(scenario: &Scenario, config: &Path) -> Child {
    plexus_command()
        .args(["run", "--no-watch", "--config"])
        .arg(config)
        .env("PLEXUS_CACHE_DIR", scenario.dir.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(config.with_extension("log")).unwrap())
        .spawn()
        .expect("start plexus")
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> (i32, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("plexus still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_of(config: &Path) -> String {
    std::fs::read_to_string(config.with_extension("log")).unwrap()
}

#[test]
fn a_plugin_blocked_in_a_host_call_is_stopped_at_its_time_limit_and_the_route_goes_on() {
    let scenario = Scenario::new();
    let input = scenario.events(
        "in.jsonl",
        &[
            event_line("sleep-60s", "hostile.sleep", None, json!({"secs": 60})),
            event_line("ok-1", "x", None, json!({})),
            event_line("host-forever", "hostile.host-loop", None, json!({})),
            event_line("ok-2", "x", None, json!({})),
            event_line("recurse", "hostile.recurse", None, json!({})),
            event_line("ok-3", "x", None, json!({})),
        ],
    );
    let config = scenario.config(&hostile_config(&input, r#"timeout = "500ms""#, ""));
    let started = Instant::now();
    let report = plexus::run(config, plexus::RunOptions::default()).unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "a 60 s sleep must end at the 500 ms limit; the run took {took:?}"
    );
    let dead = scenario.output("dlq.jsonl");
    let by_id = |id: &str| {
        dead.0
            .iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("{id} not dead-lettered: {:?}", dead.0))
            .clone()
    };
    let sleep = by_id("sleep-60s");
    assert_eq!(header(&sleep, "plexusdlqkind"), "timeout");
    assert_eq!(
        header(&sleep, "plexusdlqreason"),
        "handle exceeded the time limit of 500ms while waiting in a host call"
    );
    let looping = by_id("host-forever");
    assert_eq!(header(&looping, "plexusdlqkind"), "timeout");
    let recurse = by_id("recurse");
    assert_eq!(header(&recurse, "plexusdlqkind"), "trap");
    assert!(
        header(&recurse, "plexusdlqreason").contains("stack overflow"),
        "named as a stack overflow: {}",
        header(&recurse, "plexusdlqreason")
    );
    assert_eq!(
        scenario.output("echo.jsonl").attrs("echoof"),
        ["ok-1", "ok-2", "ok-3"],
        "the events after each attack flow"
    );
    assert_eq!(report.routes["attack"].dead_lettered_total(), 3);
}

#[test]
fn check_of_a_plugin_whose_init_sleeps_ends_at_the_init_time_limit() {
    let scenario = Scenario::new();
    let input = scenario.events("in.jsonl", &[event_line("a", "x", None, json!({}))]);
    let config = hostile_config_file(
        &scenario,
        &input,
        r#"init_timeout = "1s""#,
        ", sleep_in_init_secs = 3600",
    );
    let started = Instant::now();
    let out = plexus_command()
        .args(["check", "--config"])
        .arg(&config)
        .env("PLEXUS_CACHE_DIR", scenario.dir.path().join("cache"))
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(30), "check took {took:?}");
    assert!(
        stderr.contains("plexus.toml:16:8: plugin `hostile`: init exceeded the time limit of 1s while waiting in a host call"),
        "{stderr}"
    );
}

#[test]
fn a_reload_to_a_plugin_whose_init_sleeps_is_refused_in_time_and_later_changes_apply() {
    let scenario = Scenario::new();
    let input = scenario.events("in.jsonl", &[]);
    let write = |plugin_config: &str| -> Config {
        scenario.config(&hostile_config(
            &input,
            r#"init_timeout = "1s""#,
            plugin_config,
        ))
    };
    let (mut runtime, _open) = Runtime::start_held(write(""), Shutdown::new()).unwrap();
    let started = Instant::now();
    let refused = runtime
        .apply(write(", sleep_in_init_secs = 3600"))
        .expect_err("an init that never returns is refused");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refused after {:?}",
        started.elapsed()
    );
    assert!(
        refused.to_string().contains("init exceeded the time limit"),
        "{refused}"
    );
    let changes = runtime
        .apply(write(", tag = \"v2\""))
        .expect("a valid change after the refused one applies");
    assert_eq!(changes.swapped.len(), 1, "{changes:?}");
    let report = runtime.stop();
    assert_eq!((report.reloads_refused, report.reloads_applied), (1, 1));
}

#[test]
fn sigterm_while_a_plugin_sleeps_in_a_host_call_exits_within_its_time_limit() {
    let scenario = Scenario::new();
    let lines: Vec<String> = (0..20)
        .map(|i| {
            event_line(
                &format!("s{i}"),
                "hostile.sleep",
                None,
                json!({"secs": 3600}),
            )
        })
        .collect();
    let input = scenario.events("in.jsonl", &lines);
    let config = hostile_config_file(&scenario, &input, r#"timeout = "2s""#, "");
    let mut child = spawn_run(&scenario, &config);
    // Signal once the first event is in the plugin.
    let waiting = Instant::now();
    while !log_of(&config).contains("route started") {
        assert!(waiting.elapsed() < Duration::from_secs(60), "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let (code, took) = wait_with_deadline(&mut child, Duration::from_secs(60));
    let log = log_of(&config);
    assert_eq!(code, 0, "{log}");
    println!("SIGTERM with a plugin asleep in a host call: exited in {took:?}");
    assert!(
        took < Duration::from_secs(2 + 2 + 2),
        "SIGTERM took {took:?} with a 2 s time limit"
    );
    assert!(
        log.contains("unfinished"),
        "the summary says what is left: {log}"
    );
}

#[test]
fn floods_of_state_outbox_and_log_hit_their_limits_and_host_memory_stays_bounded() {
    let scenario = Scenario::new();
    let mut lines = Vec::new();
    for i in 0..4 {
        lines.push(event_line(
            &format!("state-{i}"),
            "hostile.flood-state",
            None,
            json!({"keys": 1_000_000}),
        ));
    }
    for i in 0..3 {
        lines.push(event_line(
            &format!("outbox-{i}"),
            "hostile.flood-outbox",
            None,
            json!({"count": 20, "bytes": 8 << 20}),
        ));
    }
    for i in 0..2 {
        lines.push(event_line(
            &format!("log-{i}"),
            "hostile.flood-log",
            None,
            json!({"bytes": 100 << 20}),
        ));
    }
    lines.push(event_line("after", "x", None, json!({})));
    let input = scenario.events("in.jsonl", &lines);
    let config = hostile_config_file(&scenario, &input, r#"timeout = "30s""#, "");
    let mut child = spawn_run(&scenario, &config);
    let peak = PeakRss::watch(child.id());
    let (code, _) = wait_with_deadline(&mut child, Duration::from_secs(600));
    let peak_mib = peak.peak_mib();
    let log = log_of(&config);
    assert_eq!(code, 0, "{log}");

    let echoed = scenario.output("echo.jsonl");
    let report = |id: &str| -> Value {
        let event = echoed
            .0
            .iter()
            .find(|e| header(e, "echoof") == id && e.type_ == "hostile.report")
            .unwrap_or_else(|| panic!("no report for {id}"));
        serde_json::from_slice(event.data()).unwrap()
    };
    // State: the namespace holds at most its 100,000 keys, over all four floods.
    let stored: u64 = (0..4)
        .map(|i| report(&format!("state-{i}"))["stored"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 100_000, "the default max_state_keys");
    let first = report("state-0");
    assert!(
        first["first_error"]
            .as_str()
            .unwrap()
            .contains("limits.max_state_keys"),
        "the plugin is told which limit: {first}"
    );
    // Outbox: one 8 MiB event fits the default 16 MiB, a second does not.
    let outbox = report("outbox-0");
    assert_eq!(
        (outbox["accepted"].as_u64(), outbox["refused"].as_u64()),
        (Some(1), Some(19)),
        "{outbox}"
    );
    assert!(
        outbox["first_error"]
            .as_str()
            .unwrap()
            .contains("limits.max_outbox_bytes"),
        "{outbox}"
    );
    assert_eq!(
        echoed.0.iter().filter(|e| e.type_ == "hostile.big").count(),
        3,
        "one big event per flood was published"
    );
    // Log: 200 MiB written, the log file holds the budget and one warning per event.
    assert!(
        log.len() < 4 << 20,
        "the host log stays small: {} bytes",
        log.len()
    );
    assert_eq!(
        log.matches("(limits.max_log_bytes) was dropped").count(),
        2,
        "one warning per flooding event"
    );
    assert!(!log.contains('\u{1b}'), "no colour codes in a log file");
    assert_eq!(report("log-0")["logged"], true);
    assert!(echoed.attrs("echoof").contains(&"after".to_owned()));
    // Memory: 100,000 keys of ~110 bytes, 3 × 8 MiB kept by the embedded broker, a 64 MiB
    // instance and transient copies of 8 MiB emits. Before the limits this run took the
    // host past 1.4 GB.
    println!("peak RSS {peak_mib} MiB");
    assert!(peak_mib < 400, "peak RSS {peak_mib} MiB");
}
