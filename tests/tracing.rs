//! Traces through a real OpenTelemetry Collector (OTLP/HTTP in, its file exporter out): the
//! shop on Kafka must give one trace per order, the validating span its root and the
//! notifying and dashboard spans its children, with the route, plugin version, event id
//! and correlation id on each span. Run by `scripts/test-tracing`, which builds the
//! collector once (`scripts/otelcol-build`) and sets `PLEXUS_OTELCOL`.

use plexus_tests::kafka::{bootstrap, shop_config, spawn_plexus_with, unique, wait_exit};
use plexus_tests::{KillOnDrop, Scenario, start_server};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One exported span, flattened.
#[derive(Debug)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: BTreeMap<String, String>,
    error: bool,
}

fn spans_in(file: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    for line in file.lines().filter(|l| !l.trim().is_empty()) {
        let export: Value = serde_json::from_str(line).expect("a JSON line");
        for resource in export["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name");
            assert_eq!(service.unwrap()["value"]["stringValue"], "plexus");
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let attributes = span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let value = &a["value"];
                            let text = value["stringValue"]
                                .as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| value["intValue"].to_string());
                            (a["key"].as_str().unwrap().to_owned(), text)
                        })
                        .collect();
                    spans.push(Span {
                        trace: span["traceId"].as_str().unwrap().to_owned(),
                        id: span["spanId"].as_str().unwrap().to_owned(),
                        parent: span["parentSpanId"].as_str().unwrap_or("").to_owned(),
                        name: span["name"].as_str().unwrap().to_owned(),
                        attributes,
                        error: span["status"]["code"] == 2,
                    });
                }
            }
        }
    }
    spans
}

#[test]
fn the_shop_on_kafka_gives_one_trace_per_order_across_both_hops() {
    let collector =
        std::env::var("PLEXUS_OTELCOL").unwrap_or_else(|_| start_server("otelcol-build"));
    let scenario = Scenario::new();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let traces = scenario.dir.path().join("traces.jsonl");
    let collector_config = scenario.file(
        "otelcol.yaml",
        &format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\nexporters:\n  file:\n    path: {}\n    flush_interval: 100ms\nservice:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [file]\n",
            traces.display()
        ),
    );
    let _collector = KillOnDrop(
        Command::new(collector)
            .arg(format!("--config={}", collector_config.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scenario.dir.path().join("otelcol.log")).unwrap())
            .spawn()
            .expect("start the collector"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the collector did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let prefix = unique("traced");
    let config = scenario.file("kafka.toml", &shop_config(&prefix, bootstrap()));
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut plexus = spawn_plexus_with(&config, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let code = wait_exit(&mut plexus, Duration::from_secs(180));
    let log = std::fs::read_to_string(config.with_extension("log")).unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("tracing: a span per handled event"), "{log}");

    // 6 orders handled by validate (5 go on to both routes), 5 by notify, 5 by dashboard.
    let started = Instant::now();
    let spans = loop {
        let spans = spans_in(&std::fs::read_to_string(&traces).unwrap_or_default());
        if spans.len() >= 16 || started.elapsed() > Duration::from_secs(30) {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(spans.len(), 16, "{spans:#?}");
    let mut by_trace: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for span in &spans {
        by_trace.entry(&span.trace).or_default().push(span);
    }
    assert_eq!(by_trace.len(), 6, "one trace per order: {spans:#?}");
    let mut full = 0;
    for (trace, spans) in &by_trace {
        // The first hop: a root, or the child of the producer's span when the order came
        // with a `traceparent` (order-1001 does: the trace goes on from there).
        let roots: Vec<&&Span> = spans
            .iter()
            .filter(|s| !spans.iter().any(|p| p.id == s.parent))
            .collect();
        assert_eq!(roots.len(), 1, "trace {trace}: {spans:#?}");
        let root = roots[0];
        assert_eq!(root.name, "process validate");
        assert_eq!(root.attributes["plexus.route"], "validate");
        assert!(root.attributes["plexus.plugin.version"].starts_with("order-validator@sha256:"));
        assert_eq!(root.attributes["messaging.system"], "kafka");
        let order = &root.attributes["cloudevents.event_id"];
        if order == "order-1001" {
            assert_eq!(*trace, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(root.parent, "00f067aa0ba902b7");
        } else {
            assert_eq!(root.parent, "", "{root:#?}");
        }
        if spans.len() == 1 {
            // The order the validator rejects ends at the first hop, dead-lettered.
            assert_eq!(root.attributes["plexus.outcome"], "dead-lettered");
            assert_eq!(root.attributes["plexus.failure_kind"], "rejected");
            assert!(root.error);
            continue;
        }
        full += 1;
        assert_eq!(root.attributes["plexus.outcome"], "succeeded");
        let mut children: Vec<&str> = spans
            .iter()
            .filter(|s| s.parent == root.id)
            .map(|s| s.name.as_str())
            .collect();
        children.sort();
        assert_eq!(
            children,
            ["process dashboard", "process notify"],
            "{spans:#?}"
        );
        // The flow's correlation id (the order's own, else its id) is on every hop.
        let flow = root
            .attributes
            .get("plexus.correlation_id")
            .unwrap_or(order);
        for child in spans.iter().filter(|s| s.parent == root.id) {
            assert_eq!(
                &child.attributes["plexus.correlation_id"], flow,
                "{child:#?}"
            );
            assert_eq!(
                child.attributes["messaging.destination.name"],
                format!("{prefix}.order-outcomes")
            );
        }
    }
    assert_eq!(full, 5);
}
