//! Events per second through the embedded broker into one route, each wasm case beside the
//! same pipeline with a native Rust handler, measured in the same run:
//!
//! - (a) no-op: the plugin accepts every event and does nothing;
//! - (b) transform: the plugin parses a ~1 KB JSON payload and emits one summary event.
//!
//! Then both again with tracing on (a span per event, made and ended, its context on what
//! the event emits; no exporter, so what is measured is the cost inside Plexus). Metrics
//! are always on.
//!
//! Run with `scripts/bench` (which builds the plugins first). Each case runs `ROUNDS`
//! times; the median is reported, with min and max, since the machine is shared and noisy.

use plexus::Shutdown;
use plexus::config::Limits;
use plexus::event::{Event, OutgoingEvent};
use plexus::state::MemoryBackend;
use plexus::testing::EmbeddedBroker;
use plexus::testing::PlexusEngine;
use plexus::testing::PluginContext;
use plexus::testing::Publisher;
use plexus::testing::RetryPolicy;
use plexus::testing::RouteMetrics;
use plexus::testing::WasmPlugin;
use plexus::testing::cloudevents;
use plexus::testing::component;
use plexus::testing::{RouteSpec, start_route};
use plexus::{NativePlugin, Outcome, Plugin, PluginSlot};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

fn events(count: usize, payload: &[u8]) -> Vec<Event> {
    let template = cloudevents::decode(
        br#"{"specversion":"1.0","id":"x","source":"/bench","type":"bench.order.v1"}"#,
    )
    .unwrap();
    (0..count)
        .map(|i| {
            let mut event = template.clone();
            event.id = format!("e-{i}");
            event.topic = "in".into();
            event.key = Some(format!("customer-{}", i % 64).into_bytes());
            event.content_type = Some("application/json".into());
            event.payload = Some(payload.to_vec());
            event
        })
        .collect()
}

fn order_payload() -> Vec<u8> {
    let lines: Vec<serde_json::Value> = (0..8)
        .map(|i| serde_json::json!({"sku": format!("sku-{i:04}-blue-large"), "qty": i + 1, "price_cents": 1000 + i * 37}))
        .collect();
    let mut order = serde_json::json!({"order_id": "o-123456", "customer": "customer-42", "lines": lines, "note": ""});
    let base = serde_json::to_vec(&order).unwrap().len();
    order["note"] = "x".repeat(1024usize.saturating_sub(base)).into();
    serde_json::to_vec(&order).unwrap()
}

/// Runs `count` events through one route with `plugin`; events per second.
fn measure(plugin: Arc<dyn Plugin>, input: &[Event]) -> f64 {
    let broker = EmbeddedBroker::new(4);
    let source = Box::new(broker.subscribe("in"));
    {
        let _open = broker.open_input();
        for event in input {
            broker.append(event.clone());
        }
    }
    let spec = RouteSpec {
        name: "bench".into(),
        topic: "in".into(),
        broker: "embedded",
        types: None,
        plugin: PluginSlot::new(plugin),
        concurrency: 1,
        retry: RetryPolicy::default(),
        dead_letter: "bench.dlq".into(),
        state: MemoryBackend::shared(),
        commit_interval: Duration::from_millis(100),
        max_in_flight: 64 << 20,
        dedupe: None,
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
    input.len() as f64 / elapsed.as_secs_f64()
}

fn median_of(plugin: Arc<dyn Plugin>, input: &[Event]) -> (f64, f64, f64) {
    measure(plugin.clone(), &input[..input.len() / 10]); // warm-up
    let mut runs: Vec<f64> = (0..ROUNDS)
        .map(|_| measure(plugin.clone(), input))
        .collect();
    runs.sort_by(|a, b| a.total_cmp(b));
    (runs[ROUNDS / 2], runs[0], runs[ROUNDS - 1])
}

fn wasm(
    engine: &PlexusEngine,
    name: &str,
    path: &str,
    config: Vec<(String, String)>,
) -> Arc<dyn Plugin> {
    let loaded =
        component::load(engine, name, Path::new(path), None).unwrap_or_else(|e| panic!("{e}"));
    let context = PluginContext {
        name: name.into(),
        config,
        state: MemoryBackend::shared(),
        limits: Limits::default(),
        emits: None,
    };
    Arc::new(WasmPlugin::new(loaded, context))
}

#[derive(Deserialize)]
struct Line {
    sku: String,
    qty: u32,
    price_cents: u64,
}

#[derive(Deserialize)]
struct Order {
    order_id: String,
    customer: String,
    lines: Vec<Line>,
    note: String,
}

#[derive(Serialize)]
struct Summary<'a> {
    order_id: &'a str,
    customer: &'a str,
    lines: usize,
    total_cents: u64,
    note_len: usize,
    first_sku: Option<&'a str>,
}

/// The native twin of the `json-transform` plugin: same parsing, same emitted event.
fn native_transform(event: &Event) -> Outcome {
    let order: Order = match serde_json::from_slice(event.data()) {
        Ok(order) => order,
        Err(e) => return Outcome::Failed(plexus::FailureKind::Rejected, e.to_string()),
    };
    let summary = Summary {
        order_id: &order.order_id,
        customer: &order.customer,
        lines: order.lines.len(),
        total_cents: order
            .lines
            .iter()
            .map(|l| u64::from(l.qty) * l.price_cents)
            .sum(),
        note_len: order.note.len(),
        first_sku: order.lines.first().map(|l| l.sku.as_str()),
    };
    Outcome::Done(vec![OutgoingEvent {
        topic: "summaries".into(),
        type_: "bench.order.summary.v1".into(),
        key: Some(order.customer.as_bytes().to_vec()),
        subject: None,
        content_type: Some("application/json".into()),
        dataschema: None,
        extensions: Vec::new(),
        headers: Vec::new(),
        payload: Some(serde_json::to_vec(&summary).unwrap()),
    }])
}

fn report(case: &str, wasm: (f64, f64, f64), native: (f64, f64, f64)) {
    println!(
        "{case:<28} wasm {:>9.0} ev/s (min {:>9.0}, max {:>9.0})   native {:>9.0} ev/s (min {:>9.0}, max {:>9.0})   wasm/native {:.2}",
        wasm.0,
        wasm.1,
        wasm.2,
        native.0,
        native.1,
        native.2,
        wasm.0 / native.0
    );
}

fn main() {
    // `cargo bench` passes `--bench`; accept and ignore harness flags.
    let count: usize = std::env::var("PLEXUS_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let engine = PlexusEngine::new(None).unwrap();
    println!("{count} events per round, {ROUNDS} rounds, one worker; median (min, max)");

    let small = events(count, br#"{"n":1}"#);
    let noop_wasm = wasm(&engine, "noop", plexus_guests::NOOP, Vec::new());
    let noop_native: Arc<dyn Plugin> =
        Arc::new(NativePlugin::new("noop", |_| Outcome::Done(Vec::new())));
    report(
        "(a) no-op",
        median_of(noop_wasm.clone(), &small),
        median_of(noop_native.clone(), &small),
    );

    let orders = events(count, &order_payload());
    let transform_wasm = wasm(
        &engine,
        "json_transform",
        plexus_guests::JSON_TRANSFORM,
        vec![("out".into(), "summaries".into())],
    );
    let transform_native: Arc<dyn Plugin> =
        Arc::new(NativePlugin::new("transform", native_transform));
    report(
        "(b) 1 KB JSON parse + emit",
        median_of(transform_wasm.clone(), &orders),
        median_of(transform_native.clone(), &orders),
    );

    let _tracing = plexus::telemetry::install_without_export();
    report(
        "(a) no-op, traced",
        median_of(noop_wasm, &small),
        median_of(noop_native, &small),
    );
    report(
        "(b) 1 KB JSON, traced",
        median_of(transform_wasm, &orders),
        median_of(transform_native, &orders),
    );
}
