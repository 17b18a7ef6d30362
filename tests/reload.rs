//! Hot reload: plugins replaced and routes changed while events flow, with nothing lost,
//! nothing handled by two versions, per-key order kept, and broken versions never serving.

use plexus::Shutdown;
use plexus::broker::Body;
use plexus::config::Config;
use plexus::event::Event;
use plexus::runtime::Runtime;
use plexus_tests::{Scenario, attr, plugin, plugin_version_bytes, replace_file};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const KEYS: u64 = 8;

/// A scenario whose route `echo` runs `plugin.wasm` (a copy of misbehave) on topic `in`.
struct Live {
    scenario: Scenario,
    plugin_file: PathBuf,
    config_file: PathBuf,
}

impl Live {
    fn new(extra: &str) -> Live {
        let scenario = Scenario::new();
        let plugin_file = scenario.dir.path().join("plugin.wasm");
        replace_file(&plugin_file, &plugin_version_bytes(&plugin("misbehave"), 0));
        let live = Live {
            config_file: scenario.dir.path().join("plexus.toml"),
            plugin_file,
            scenario,
        };
        live.write_config(extra);
        live
    }

    fn write_config(&self, extra: &str) {
        self.write_config_with(r#"config = { out = "echo", spin = 500 }"#, extra);
    }

    /// Writes the config with `plugin_lines` in the plugin's table, then `extra`.
    fn write_config_with(&self, plugin_lines: &str, extra: &str) {
        let text = format!(
            r#"[runtime]
cache_dir = "{cache}"
reload_settle = "300ms"
[broker]
partitions = 2
[plugins.misbehave]
path = "{plugin}"
{plugin_lines}
{extra}
"#,
            cache = self.scenario.dir.path().join("cache").display(),
            plugin = self.plugin_file.display(),
        );
        std::fs::write(&self.config_file, text).unwrap();
    }

    fn config(&self) -> Config {
        Config::load(&self.config_file).unwrap_or_else(|e| panic!("{e}"))
    }
}

const ECHO_ROUTE: &str = r#"
[routes.echo]
topic = "in"
plugin = "misbehave"
concurrency = 4
dead_letter = "dlq"
"#;

fn event(seq: u64) -> Event {
    let key = format!("key-{}", seq % KEYS);
    let line = format!(
        r#"{{"specversion":"1.0","id":"e-{seq}","source":"/tests","type":"test.seq","partitionkey":"{key}","data":{{"seq":{}}}}}"#,
        seq / KEYS
    );
    let mut event = plexus::cloudevents::decode(line.as_bytes()).unwrap();
    event.topic = "in".into();
    event
}

/// Appends events to `in` at a steady pace until stopped; returns how many.
fn produce(runtime: &Arc<Mutex<Runtime>>, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    let broker = runtime
        .lock()
        .unwrap()
        .broker()
        .embedded()
        .expect("embedded broker")
        .clone();
    std::thread::spawn(move || {
        let mut seq = 0;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..20 {
                broker.append(event(seq));
                seq += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        seq
    })
}

fn events_of(runtime: &Arc<Mutex<Runtime>>, topic: &str) -> Vec<Event> {
    let broker = runtime
        .lock()
        .unwrap()
        .broker()
        .embedded()
        .expect("embedded broker")
        .clone();
    broker
        .read_all(topic)
        .into_iter()
        .filter_map(|b| match b {
            Body::Event(e) => Some((*e).clone()),
            Body::Undecodable(_) => None,
        })
        .collect()
}

fn handled_by(event: &Event) -> String {
    attr(event, "plexushandledby").unwrap()
}

/// Waits until an echo handled by `version` shows up.
fn wait_for_version(runtime: &Arc<Mutex<Runtime>>, version: &str) {
    let started = Instant::now();
    while !events_of(runtime, "echo")
        .iter()
        .rev()
        .take(2000)
        .any(|e| handled_by(e) == version)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{version} never served"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stops producing, lets everything drain, stops the runtime.
fn finish(
    runtime: Arc<Mutex<Runtime>>,
    stop: Arc<AtomicBool>,
    producer: JoinHandle<u64>,
    guard: plexus::broker::embedded::InputGuard,
) -> (u64, Vec<Event>, Vec<Event>, plexus::RunReport) {
    stop.store(true, Ordering::Relaxed);
    let produced = producer.join().unwrap();
    drop(guard);
    let started = Instant::now();
    while !runtime.lock().unwrap().is_done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run did not drain"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let echo = events_of(&runtime, "echo");
    let dlq = events_of(&runtime, "dlq");
    let runtime = Arc::into_inner(runtime).unwrap().into_inner().unwrap();
    (produced, echo, dlq, runtime.stop())
}

fn start(live: &Live) -> (Arc<Mutex<Runtime>>, plexus::broker::embedded::InputGuard) {
    let runtime = Runtime::start(live.config(), Shutdown::new()).unwrap();
    // Keep the run open while the test produces.
    let guard = runtime.broker().open_input().expect("embedded broker");
    (Arc::new(Mutex::new(runtime)), guard)
}

fn assert_exactly_once_in_order(produced: u64, echo: &[Event], dlq: &[Event]) {
    assert!(
        dlq.is_empty(),
        "dead letters: {:?}",
        dlq.iter()
            .map(|e| attr(e, "plexusdlqreason"))
            .collect::<Vec<_>>()
    );
    let ids: BTreeSet<String> = echo.iter().map(|e| attr(e, "echoof").unwrap()).collect();
    assert_eq!(ids.len(), echo.len(), "an event was handled twice");
    assert_eq!(
        ids,
        (0..produced).map(|s| format!("e-{s}")).collect(),
        "an event was lost"
    );
    // Per key, echoes (one partition per key) carry increasing sequence numbers.
    let mut last: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for e in echo {
        let seq = serde_json::from_slice::<serde_json::Value>(e.data()).unwrap()["seq"]
            .as_i64()
            .unwrap();
        let previous = last.insert(e.key.clone().unwrap(), seq);
        assert!(
            previous.is_none_or(|p| p < seq),
            "key order broken at {seq} after {previous:?}"
        );
    }
}

#[test]
fn twenty_replacements_under_load_lose_nothing_and_never_handle_twice() {
    let live = Live::new(ECHO_ROUTE);
    let (runtime, guard) = start(&live);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(&runtime, stop.clone());
    let mut versions = vec![runtime.lock().unwrap().plugin_version("misbehave").unwrap()];
    wait_for_version(&runtime, &versions[0]);
    for n in 1..=20 {
        replace_file(
            &live.plugin_file,
            &plugin_version_bytes(&plugin("misbehave"), n),
        );
        let changes = runtime
            .lock()
            .unwrap()
            .apply(live.config())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(changes.swapped.len(), 1, "{changes:?}");
        assert!(
            changes.restarted.is_empty(),
            "a plugin swap never restarts the route"
        );
        let version = changes.swapped[0].2.clone();
        wait_for_version(&runtime, &version);
        versions.push(version);
    }
    let (produced, echo, dlq, report) = finish(runtime, stop, producer, guard);
    assert_exactly_once_in_order(produced, &echo, &dlq);
    assert_eq!(report.plugin_swaps, 20);
    let mut share: BTreeMap<String, u64> = BTreeMap::new();
    for e in &echo {
        *share.entry(handled_by(e)).or_default() += 1;
    }
    assert_eq!(
        share.keys().cloned().collect::<BTreeSet<_>>(),
        versions.iter().cloned().collect(),
        "every version served"
    );
    println!(
        "{produced} events; share per version: {:?}",
        share.values().collect::<Vec<_>>()
    );
}

/// A way to break the deployed plugin.
type BreakIt = Box<dyn Fn(&Live)>;

#[test]
fn a_broken_new_version_never_takes_over() {
    let live = Live::new(ECHO_ROUTE);
    let (runtime, guard) = start(&live);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(&runtime, stop.clone());
    let serving = runtime.lock().unwrap().plugin_version("misbehave").unwrap();
    let good = std::fs::read(&live.plugin_file).unwrap();
    let attempts: Vec<(&str, BreakIt)> = vec![
        (
            "garbage bytes",
            Box::new(|l: &Live| {
                replace_file(
                    &l.plugin_file,
                    b"\0asm\x0d\0\x01\0garbage that is no component",
                )
            }),
        ),
        (
            "the wrong world",
            Box::new(|l: &Live| {
                replace_file(
                    &l.plugin_file,
                    &std::fs::read(plugin("wrong_world")).unwrap(),
                )
            }),
        ),
        (
            "a trap in init",
            Box::new(|l: &Live| {
                l.write_config_with(
                    r#"config = { out = "echo", trap_in_init = "yes" }"#,
                    ECHO_ROUTE,
                )
            }),
        ),
        (
            "a sha256 pin that does not match",
            Box::new(|l: &Live| {
                l.write_config_with(
                    &format!(
                        "config = {{ out = \"echo\" }}\nsha256 = \"{}\"",
                        "00".repeat(32)
                    ),
                    ECHO_ROUTE,
                )
            }),
        ),
    ];
    for (what, break_it) in attempts {
        break_it(&live);
        let refused = runtime.lock().unwrap().apply(live.config());
        let errors = refused.expect_err(what).to_string();
        println!("{what}: {errors}");
        assert!(errors.contains("plugin `misbehave`"), "{what}: {errors}");
        assert_eq!(
            runtime.lock().unwrap().plugin_version("misbehave").unwrap(),
            serving,
            "{what}"
        );
        // Restore, and check the old version still serves.
        replace_file(&live.plugin_file, &good);
        live.write_config(ECHO_ROUTE);
        let before = events_of(&runtime, "echo").len();
        let started = Instant::now();
        while events_of(&runtime, "echo").len() <= before + 50 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{what}: events stopped flowing"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let (produced, echo, dlq, report) = finish(runtime, stop, producer, guard);
    assert_exactly_once_in_order(produced, &echo, &dlq);
    assert!(
        echo.iter().all(|e| handled_by(e) == serving),
        "only the old version served"
    );
    assert_eq!((report.reloads_refused, report.plugin_swaps), (4, 0));
}

#[test]
fn the_watcher_applies_a_copy_only_when_complete_and_never_a_truncated_file() {
    let live = Live::new(ECHO_ROUTE);
    let (runtime, guard) = start(&live);
    let watcher_stop = Shutdown::new();
    let watcher = plexus::watch::spawn(
        runtime.clone(),
        live.config_file.clone(),
        watcher_stop.clone(),
        plexus::watch::Triggers::FilesAndHangup,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(&runtime, stop.clone());
    let v0 = runtime.lock().unwrap().plugin_version("misbehave").unwrap();

    // A copy in progress: written in place, in chunks, well within the settle time (300ms).
    let v1 = plugin_version_bytes(&plugin("misbehave"), 1);
    let mut file = std::fs::File::create(&live.plugin_file).unwrap();
    for chunk in v1.chunks(v1.len() / 8 + 1) {
        std::io::Write::write_all(&mut file, chunk).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(file);
    let v1_version = format!("misbehave@sha256:{}", hex(&v1));
    wait_for_version(&runtime, &v1_version);

    // A truncated file that stays truncated: refused, v1 keeps serving.
    let v2 = plugin_version_bytes(&plugin("misbehave"), 2);
    std::fs::write(&live.plugin_file, &v2[..v2.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        runtime.lock().unwrap().plugin_version("misbehave").unwrap(),
        v1_version
    );
    // Completed: now it loads.
    std::fs::write(&live.plugin_file, &v2).unwrap();
    wait_for_version(&runtime, &format!("misbehave@sha256:{}", hex(&v2)));

    watcher_stop.trigger();
    watcher.join().unwrap();
    let (produced, echo, dlq, report) = finish(runtime, stop, producer, guard);
    assert_exactly_once_in_order(produced, &echo, &dlq);
    let served: BTreeSet<String> = echo.iter().map(handled_by).collect();
    assert_eq!(served.len(), 3, "v0, v1 and v2 only: {served:?}");
    assert!(served.contains(&v0));
    assert_eq!(
        report.plugin_swaps, 2,
        "the copy in progress was applied once, when complete"
    );
    assert_eq!(report.reloads_refused, 1, "the truncated file was refused");
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    plexus::host::engine::sha256(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[test]
fn routes_are_added_changed_and_removed_live() {
    let live = Live::new(ECHO_ROUTE);
    let (runtime, guard) = start(&live);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(&runtime, stop.clone());
    let wait_for = |topic: &str, count: usize| {
        let started = Instant::now();
        while events_of(&runtime, topic).len() < count {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{topic} stalled"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for("echo", 200);

    // Change the route (concurrency): it drains, commits and resumes where it stopped.
    let echo_route = ECHO_ROUTE.replace("concurrency = 4", "concurrency = 2");
    live.write_config(&echo_route);
    let changes = runtime.lock().unwrap().apply(live.config()).unwrap();
    assert_eq!(changes.restarted, ["echo"]);
    let after_change = events_of(&runtime, "echo").len();
    wait_for("echo", after_change + 200);

    // Add a second route on the same topic, with its own output topic.
    let audit = r#"
[plugins.auditor]
path = "AUDITOR"
config = { out = "audit" }
[routes.audit]
topic = "in"
plugin = "auditor"
dead_letter = "audit-dlq"
"#
    .replace("AUDITOR", &plugin("misbehave"));
    live.write_config(&format!("{echo_route}{audit}"));
    let changes = runtime.lock().unwrap().apply(live.config()).unwrap();
    assert_eq!(changes.added, ["audit"]);
    wait_for("audit", 100);

    // Nothing was lost through the restart: once the producer stops, every event is echoed
    // (a restart may deliver again what was in flight: at-least-once).
    stop.store(true, Ordering::Relaxed);
    let produced = producer.join().unwrap();
    let echoed_ids = |runtime: &Arc<Mutex<Runtime>>| -> BTreeSet<String> {
        events_of(runtime, "echo")
            .iter()
            .map(|e| attr(e, "echoof").unwrap())
            .collect()
    };
    let started = Instant::now();
    while echoed_ids(&runtime).len() < produced as usize {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "events were lost through the restart"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Remove the first route; the second keeps going and the first handles nothing more.
    live.write_config(&audit);
    let changes = runtime.lock().unwrap().apply(live.config()).unwrap();
    assert_eq!(changes.removed, ["echo"]);
    let echoed_at_removal = events_of(&runtime, "echo").len();
    let broker = runtime
        .lock()
        .unwrap()
        .broker()
        .embedded()
        .expect("embedded broker")
        .clone();
    for seq in produced..produced + 100 {
        broker.append(event(seq));
    }
    let stop = Arc::new(AtomicBool::new(true));
    let producer = std::thread::spawn(move || produced + 100);
    let (produced, echo, dlq, report) = finish(runtime, stop, producer, guard);
    assert_eq!(
        echo.len(),
        echoed_at_removal,
        "a removed route handles nothing more"
    );
    assert_eq!(
        report.routes["audit"].succeeded, produced,
        "the added route handled every event, from the topic's start"
    );
    // Redeliveries after the restart are flagged by the plugin's per-key check, never lost.
    for letter in &dlq {
        let reason = attr(letter, "plexusdlqreason").unwrap();
        assert!(reason.contains("after Some"), "{reason}");
    }
}
