//! Plugin state on the embedded broker, read back from the store after each run: local
//! state outlives the run, a second run over the same input is refused instead of counting
//! it twice, concurrent writers of one key lose no update, entries expire, and a memory
//! store starts empty every run.

use plexus::state::StateBackend;
use plexus::state::local::LocalBackend;
use plexus::testing::cloudevents;
use plexus_tests::counting::{counts, from_store, keyed_events};
use plexus_tests::{Scenario, plexus_command, plugins};
use std::collections::BTreeMap;
use std::path::Path;

/// `count` events over `keys` keys as CloudEvents JSON lines, and the counts they make
/// (see [`keyed_events`]).
fn counted_events(prefix: &str, count: usize, keys: usize) -> (Vec<String>, BTreeMap<String, i64>) {
    let (events, expected) = keyed_events(prefix, count, keys);
    (events.iter().map(cloudevents::encode).collect(), expected)
}

/// A config counting `input` with the counter plugin on two workers, state in `state`.
fn counting_config(
    scenario: &Scenario,
    input: &Path,
    state: &str,
    plugin_config: &str,
) -> std::path::PathBuf {
    scenario.file(
        "plexus.toml",
        &format!(
            "[runtime]\ncache_dir = \"{cache}\"\n[state]\n{state}\n[[inputs]]\ntopic = \"in\"\nfile = \"{input}\"\n[plugins.counter]\npath = \"{plugin}\"\nconfig = {{ total = true{plugin_config} }}\n[routes.count]\ntopic = \"in\"\nplugin = \"counter\"\nconcurrency = 2\n",
            cache = scenario.dir.path().join("cache").display(),
            input = input.display(),
            plugin = plugins::COUNTER,
        ),
    )
}

/// Runs `config` to its end and fails, with its log, unless it exits with `code`; the log.
fn run(config: &Path, code: i32) -> String {
    let output = plexus_command()
        .args(["run", "--no-watch", "--config"])
        .arg(config)
        .output()
        .expect("run plexus");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{log}");
    log
}

#[test]
fn local_state_outlives_the_run_and_the_same_input_is_never_applied_twice() {
    let scenario = Scenario::new();
    let (lines, mut expected) = counted_events("a", 600, 7);
    let input = scenario.events("in.jsonl", &lines);
    let state = scenario.dir.path().join("state/counts.redb");
    let config = counting_config(
        &scenario,
        &input,
        &format!("path = \"{}\"", state.display()),
        "",
    );
    run(&config, 0);
    {
        let store = LocalBackend::open(&state).expect("the state file, after the run");
        assert_eq!(
            counts(&expected, from_store(&store)),
            expected.clone(),
            "every event counted once, though two workers write `total`"
        );
        let markers: usize = (0..4)
            .map(|p| store.applied("count", p).unwrap().len())
            .sum();
        assert_eq!(markers, 0, "every position committed: every marker pruned");
    }

    // The same input again would count every event twice: refused, state untouched.
    let log = run(&config, 1);
    assert!(
        log.contains("was already fed into the durable local state"),
        "{log}"
    );
    // New events in the same file: counted on top.
    let (more, added) = counted_events("b", 200, 7);
    scenario.events("in.jsonl", &more);
    run(&config, 0);
    for (key, n) in added {
        *expected.get_mut(&key).unwrap() += n;
    }
    let store = LocalBackend::open(&state).unwrap();
    assert_eq!(counts(&expected, from_store(&store)), expected);
}

#[test]
fn memory_state_starts_empty_every_run_and_may_run_again() {
    let scenario = Scenario::new();
    let (lines, _) = counted_events("m", 50, 5);
    let input = scenario.events("in.jsonl", &lines);
    let out = scenario.dir.path().join("out.jsonl");
    let config = counting_config(
        &scenario,
        &input,
        "backend = \"memory\"",
        ", out = \"counted\"",
    );
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "[[outputs]]\ntopic = \"counted\"\nfile = \"{}\"\n",
            out.display()
        );
    std::fs::write(&config, text).unwrap();
    for _ in 0..2 {
        run(&config, 0);
        let highest = scenario
            .output("out.jsonl")
            .json()
            .iter()
            .map(|d| d["count"].as_i64().unwrap())
            .max();
        assert_eq!(
            highest,
            Some(10),
            "50 events over 5 keys, counted from zero"
        );
        assert!(
            !scenario.dir.path().join(".plexus").exists(),
            "nothing written to disk"
        );
    }
}

#[test]
fn entries_with_a_ttl_expire_in_local_state() {
    let scenario = Scenario::new();
    let (lines, expected) = counted_events("t", 40, 4);
    let input = scenario.events("in.jsonl", &lines);
    let config = counting_config(&scenario, &input, "", ", ttl_ms = 1500");
    run(&config, 0);
    // The default path: `.plexus/NAME.state.redb` beside the config.
    let state = scenario.dir.path().join(".plexus/plexus.state.redb");
    let store = LocalBackend::open(&state).unwrap();
    let now = counts(&expected, from_store(&store));
    assert_eq!(now["k0"], 10, "counted while alive: {now:?}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let later = counts(&expected, from_store(&store));
    assert!(
        later.iter().all(|(k, n)| k == "total" || *n == 0),
        "expired: {later:?}"
    );
    assert_eq!(later["total"], 40, "an entry without a TTL stays");
}

#[test]
fn the_redis_backend_keeps_the_contract_on_a_real_server() {
    let prefix = plexus_tests::kafka::unique("plexus-conformance");
    let store = plexus::state::redis::RedisBackend::open(plexus_tests::redis::url(), &prefix)
        .expect("the test server");
    plexus::testing::state_conformance(&store, false);
    // What the store wrote is where the module says, readable by any client.
    assert_eq!(
        plexus_tests::redis::cli(&["HGET", &format!("{prefix}:s:a:kept"), "v"]).as_deref(),
        Some("1")
    );
}

#[test]
fn an_unreachable_redis_is_a_clear_error_at_start() {
    let scenario = Scenario::new();
    let (lines, _) = counted_events("u", 3, 1);
    let input = scenario.events("in.jsonl", &lines);
    // A port nothing listens on.
    let config = counting_config(
        &scenario,
        &input,
        "backend = \"redis\"\nurl = \"redis://127.0.0.1:9/0\"",
        "",
    );
    let log = run(&config, 1);
    assert!(
        log.contains("redis://127.0.0.1:9") && log.contains("is redis-server running there?"),
        "{log}"
    );
}
