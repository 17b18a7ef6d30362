//! Events per second of a dashboard-style counting pipeline with each state backend, in one
//! run: the `counter` plugin increments a per-key count in its state and emits the new count
//! for every event, on two workers, through the embedded broker, with state in `memory`,
//! `local` (a redb file in a temporary directory) and `redis` (the server at
//! `$PLEXUS_REDIS_URL`, which `scripts/bench` starts). Each case runs `ROUNDS` times on a
//! fresh store; the median is reported with min and max, and each durable backend as a
//! ratio of `memory`. A last case runs `local` with the route's `dedupe` on (a record per
//! event, looked up before and written with the commit), as a ratio of `local` without.

use plexus::Shutdown;
use plexus::config::Limits;
use plexus::event::Event;
use plexus::state::local::LocalBackend;
use plexus::state::redis::RedisBackend;
use plexus::state::{MemoryBackend, StateBackend};
use plexus::testing::{
    EmbeddedBroker, PlexusEngine, PluginContext, Publisher, RetryPolicy, RouteMetrics, RouteSpec,
    WasmPlugin, cloudevents, component, start_route,
};
use plexus::{Plugin, PluginSlot};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const KEYS: usize = 1000;

fn events(count: usize) -> Vec<Event> {
    let template = cloudevents::decode(
        br#"{"specversion":"1.0","id":"x","source":"/bench","type":"bench.order.v1","data":{"total_cents":1250}}"#,
    )
    .unwrap();
    (0..count)
        .map(|i| {
            let mut event = template.clone();
            event.id = format!("e-{i}");
            event.topic = "in".into();
            event.key = Some(format!("customer-{}", i % KEYS).into_bytes());
            event
        })
        .collect()
}

/// Runs `input` through one counting route with state in `store` (deduping for `dedupe`);
/// events per second.
fn measure(
    engine: &PlexusEngine,
    store: Arc<dyn StateBackend>,
    input: &[Event],
    dedupe: Option<Duration>,
) -> f64 {
    let loaded = component::load(engine, "counter", Path::new(plexus_guests::COUNTER), None)
        .unwrap_or_else(|e| panic!("{e}"));
    let context = PluginContext {
        name: "counter".into(),
        config: vec![("out".into(), "counts".into())],
        state: store.clone(),
        limits: Limits::default(),
        emits: None,
    };
    let plugin: Arc<dyn Plugin> = Arc::new(WasmPlugin::new(loaded, context));
    let broker = EmbeddedBroker::new(4);
    let source = Box::new(broker.subscribe("in"));
    {
        let _open = broker.open_input();
        for event in input {
            broker.append(event.clone());
        }
    }
    let spec = RouteSpec {
        name: "count".into(),
        topic: "in".into(),
        broker: "embedded",
        types: None,
        plugin: PluginSlot::new(plugin),
        concurrency: 2,
        retry: RetryPolicy::default(),
        dead_letter: "count.dlq".into(),
        state: store,
        commit_interval: Duration::from_millis(100),
        max_in_flight: 64 << 20,
        dedupe,
    };
    let publisher = Publisher::start(broker.sink()).unwrap();
    let metrics = Arc::new(RouteMetrics::default());
    let started = Instant::now();
    start_route(
        spec,
        source,
        publisher.clone(),
        Shutdown::new(),
        metrics.clone(),
    )
    .unwrap()
    .join();
    publisher.stop();
    let elapsed = started.elapsed();
    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.succeeded,
        input.len() as u64,
        "every event handled"
    );
    assert_eq!(snapshot.emitted, input.len() as u64, "every count emitted");
    input.len() as f64 / elapsed.as_secs_f64()
}

/// The median, min and max over `ROUNDS` runs, each on a store `fresh` makes.
fn median_of(
    engine: &PlexusEngine,
    fresh: &dyn Fn(usize) -> Arc<dyn StateBackend>,
    input: &[Event],
    dedupe: Option<Duration>,
) -> (f64, f64, f64) {
    measure(
        engine,
        fresh(usize::MAX),
        &input[..input.len() / 10],
        dedupe,
    ); // warm-up
    let mut runs: Vec<f64> = (0..ROUNDS)
        .map(|round| measure(engine, fresh(round), input, dedupe))
        .collect();
    runs.sort_by(|a, b| a.total_cmp(b));
    (runs[ROUNDS / 2], runs[0], runs[ROUNDS - 1])
}

fn main() {
    let count: usize = std::env::var("PLEXUS_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let redis_url = std::env::var("PLEXUS_REDIS_URL")
        .expect("PLEXUS_REDIS_URL: run this benchmark with scripts/bench, which starts Redis");
    let engine = PlexusEngine::new(None).unwrap();
    let input = events(count);
    let dir = tempfile::tempdir().unwrap();
    let run_id = std::process::id();
    println!(
        "counting pipeline (per-key count in state, one emit per event): {count} events over {KEYS} keys per round, two workers, {ROUNDS} rounds; median (min, max)"
    );

    let memory = median_of(&engine, &|_| MemoryBackend::shared(), &input, None);
    let local_at = |name: &'static str| {
        let dir = dir.path().to_owned();
        move |round: usize| -> Arc<dyn StateBackend> {
            let path = dir.join(format!("{name}-{round}.redb"));
            Arc::new(LocalBackend::open(&path).unwrap())
        }
    };
    let local = median_of(&engine, &local_at("state"), &input, None);
    let redis = median_of(
        &engine,
        &|round| {
            let prefix = format!("plexus-bench-{run_id}-{round}");
            Arc::new(RedisBackend::open(&redis_url, &prefix).unwrap())
        },
        &input,
        None,
    );
    let deduped = median_of(
        &engine,
        &local_at("dedupe"),
        &input,
        Some(Duration::from_secs(24 * 3600)),
    );
    let line = |name: &str, (median, min, max): (f64, f64, f64)| {
        println!(
            "  {name:<7} {median:>9.0} events/s  ({min:.0}, {max:.0})  {:.2}x memory",
            median / memory.0
        );
    };
    line("memory", memory);
    line("local", local);
    line("redis", redis);
    println!(
        "  local with dedupe = {{ window = \"24h\" }}: {:.0} events/s ({:.0}, {:.0})  {:.2}x local",
        deduped.0,
        deduped.1,
        deduped.2,
        deduped.0 / local.0
    );
}
