//! A runtime under live reload on the embedded broker, for the hot-reload tests: a route
//! `echo` running a copy of the misbehave plugin, a producer keeping events flowing, and
//! checks that nothing was lost, duplicated or reordered.

use crate::{Scenario, attr, plugin_version_bytes, plugins, replace_file};
use plexus::Runtime;
use plexus::Shutdown;
use plexus::broker::Body;
use plexus::config::Config;
use plexus::event::Event;
use plexus::testing::{EmbeddedBroker, InputGuard};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const KEYS: u64 = 8;

/// A scenario whose route `echo` runs `plugin.wasm` (a copy of misbehave) on topic `in`.
pub struct Live {
    /// The temporary directory.
    pub scenario: Scenario,
    /// The plugin file the route runs (replace it to deploy a version).
    pub plugin_file: PathBuf,
    /// The config file.
    pub config_file: PathBuf,
}

impl Live {
    pub fn new(extra: &str) -> Live {
        let scenario = Scenario::new();
        let plugin_file = scenario.dir.path().join("plugin.wasm");
        replace_file(&plugin_file, &plugin_version_bytes(plugins::MISBEHAVE, 0));
        let live = Live {
            config_file: scenario.dir.path().join("plexus.toml"),
            plugin_file,
            scenario,
        };
        live.write_config(extra);
        live
    }

    pub fn write_config(&self, extra: &str) {
        self.write_config_with(r#"config = { out = "echo", spin = 500 }"#, extra);
    }

    /// Writes the config with `plugin_lines` in the plugin's table, then `extra`.
    pub fn write_config_with(&self, plugin_lines: &str, extra: &str) {
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

    pub fn config(&self) -> Config {
        Config::load(&self.config_file).unwrap_or_else(|e| panic!("{e}"))
    }
}

pub const ECHO_ROUTE: &str = r#"
[routes.echo]
topic = "in"
plugin = "misbehave"
concurrency = 4
dead_letter = "dlq"
"#;

pub fn event(seq: u64) -> Event {
    let key = format!("key-{}", seq % KEYS);
    let line = format!(
        r#"{{"specversion":"1.0","id":"e-{seq}","source":"/tests","type":"test.seq","partitionkey":"{key}","data":{{"seq":{}}}}}"#,
        seq / KEYS
    );
    let mut event = plexus::testing::cloudevents::decode(line.as_bytes()).unwrap();
    event.topic = "in".into();
    event
}

/// Whatever gives access to the run's embedded broker: a runtime the test drives itself, or
/// the broker of one a run loop drives.
pub trait Topics {
    /// The embedded broker of the run.
    fn broker(&self) -> EmbeddedBroker;
}

impl Topics for Arc<Mutex<Runtime>> {
    fn broker(&self) -> EmbeddedBroker {
        let runtime = self.lock().unwrap();
        runtime.embedded_broker().expect("embedded broker").clone()
    }
}

impl Topics for EmbeddedBroker {
    fn broker(&self) -> EmbeddedBroker {
        self.clone()
    }
}

/// Appends events to `in` at a steady pace until stopped; returns how many.
pub fn produce(runtime: &impl Topics, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    let broker = runtime.broker();
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

pub fn events_of(runtime: &impl Topics, topic: &str) -> Vec<Event> {
    runtime
        .broker()
        .read_all(topic)
        .into_iter()
        .filter_map(|b| match b {
            Body::Event(e) | Body::Exhausted { event: e, .. } => Some((*e).clone()),
            Body::Undecodable(_) => None,
        })
        .collect()
}

pub fn handled_by(event: &Event) -> String {
    attr(event, "plexushandledby").unwrap()
}

/// Waits until an echo handled by `version` shows up.
pub fn wait_for_version(runtime: &impl Topics, version: &str) {
    let started = Instant::now();
    while !events_of(runtime, "echo")
        .iter()
        .rev()
        .take(2000)
        .any(|e| handled_by(e) == version)
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{version} never served"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stops producing, lets everything drain, stops the runtime.
pub fn finish(
    runtime: Arc<Mutex<Runtime>>,
    stop: Arc<AtomicBool>,
    producer: JoinHandle<u64>,
    guard: InputGuard,
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

pub fn start(live: &Live) -> (Arc<Mutex<Runtime>>, InputGuard) {
    // Keep the run open while the test produces, from before any route can see it end.
    let (runtime, guard) = Runtime::start_held(live.config(), Shutdown::new()).unwrap();
    (Arc::new(Mutex::new(runtime)), guard)
}

pub fn assert_exactly_once_in_order(produced: u64, echo: &[Event], dlq: &[Event]) {
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

/// Waits until `echo` holds at least `count` events.
pub fn wait_for_count(runtime: &impl Topics, count: usize) {
    let started = Instant::now();
    while events_of(runtime, "echo").len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "echo stalled below {count}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The version the plugin is served as with these bytes.
pub fn version_of(bytes: &[u8]) -> String {
    format!(
        "misbehave@sha256:{}",
        hex::encode(plexus::testing::sha256(bytes))
    )
}
