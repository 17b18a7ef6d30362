//! `/metrics`: the board in the OpenMetrics text format Prometheus scrapes.
//!
//! Everything is read from the board at scrape time (a collector), so the dispatch path only
//! bumps its atomics and nothing is registered or unregistered as routes come and go.
//! Per-route series are labelled `route`, `topic` and `plugin`; the version serving is on
//! `plexus_route_info` and `plexus_plugin_info` (join on `route` or `plugin`), so a hot swap
//! does not start new counter series.

use super::board::Board;
use crate::metrics::{FailureKind, LATENCY_BOUNDS, RouteSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use std::fmt::Result;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of `board` now, as OpenMetrics text.
pub fn render(board: &Board) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BoardCollector(board.clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

#[derive(Debug)]
struct BoardCollector(Board);

type Labels = Vec<(&'static str, String)>;

/// One series: its labels and its value.
type Series<T> = Vec<(Labels, T)>;

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Series<u64>,
) -> Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in &series {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauges(encoder: &mut DescriptorEncoder, name: &str, help: &str, series: Series<i64>) -> Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in &series {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for BoardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result {
        let board = &self.0;
        let view = board.view();
        let (started, _) = board.started();
        let started = started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        gauges(
            &mut encoder,
            "plexus_start_time_seconds",
            "When this run started, in seconds since the Unix epoch.",
            vec![(vec![("broker", view.broker.clone())], started)],
        )?;
        gauges(
            &mut encoder,
            "plexus_ready",
            "1 when the run is ready (running, every route assigned its partitions), else 0.",
            vec![(Vec::new(), i64::from(board.not_ready().is_none()))],
        )?;
        gauges(
            &mut encoder,
            "plexus_plugin_info",
            "The version (name and digest) of each plugin in service; always 1.",
            view.plugins
                .iter()
                .map(|(name, p)| {
                    (
                        vec![("plugin", name.clone()), ("version", p.version.clone())],
                        1,
                    )
                })
                .collect(),
        )?;
        let route_labels = |name: &str| -> Labels {
            let route = &view.routes[name];
            vec![
                ("route", name.to_owned()),
                ("topic", route.topic.clone()),
                ("plugin", route.plugin.clone()),
            ]
        };
        gauges(
            &mut encoder,
            "plexus_route_info",
            "Each route in service, its dead-letter topic and the version of its plugin; always 1.",
            view.routes
                .iter()
                .map(|(name, route)| {
                    let mut labels = route_labels(name);
                    labels.push(("dead_letter_topic", route.dead_letter.clone()));
                    let version = view.plugins.get(&route.plugin).map(|p| p.version.clone());
                    labels.push(("plugin_version", version.unwrap_or_default()));
                    (labels, 1)
                })
                .collect(),
        )?;
        let snapshots: Vec<(Labels, RouteSnapshot)> = view
            .routes
            .iter()
            .map(|(name, route)| (route_labels(name), route.metrics.snapshot()))
            .collect();
        let per_route = |value: fn(&RouteSnapshot) -> u64| -> Series<u64> {
            snapshots
                .iter()
                .map(|(labels, counts)| (labels.clone(), value(counts)))
                .collect()
        };
        for (name, help, value) in ROUTE_COUNTERS {
            counters(&mut encoder, name, help, per_route(*value))?;
        }
        let mut dead = Vec::new();
        for (name, route) in &view.routes {
            let counts = route.metrics.dead_lettered();
            for kind in FailureKind::ALL {
                let mut labels = route_labels(name);
                labels.push(("kind", kind.as_str().to_owned()));
                let n = counts
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(0, |(_, n)| *n);
                dead.push((labels, n));
            }
        }
        counters(
            &mut encoder,
            "plexus_events_dead_lettered",
            "Events written to the route's dead-letter topic, by why (the plexusdlqkind header).",
            dead,
        )?;
        gauges(
            &mut encoder,
            "plexus_events_in_flight",
            "Events read by the route and not finished yet (handled, published and committable).",
            view.routes
                .iter()
                .map(|(name, r)| (route_labels(name), r.tracker.in_flight() as i64))
                .collect(),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "plexus_handle_duration",
                "How long the plugin's handle call took, per attempt.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (name, route) in &view.routes {
                let (counts, sum) = route.metrics.handle_latency.read();
                let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                    .iter()
                    .copied()
                    .chain([f64::MAX])
                    .zip(counts.iter().copied())
                    .collect();
                let labels = route_labels(name);
                metric.encode_family(&labels)?.encode_histogram::<Labels>(
                    sum,
                    counts.iter().sum(),
                    &buckets,
                    None,
                )?;
            }
        }
        let mut lag = Vec::new();
        let mut committed = Vec::new();
        let mut end = Vec::new();
        for (name, route) in &view.routes {
            for position in route.metrics.positions() {
                let mut labels = route_labels(name);
                labels.push(("partition", position.partition.to_string()));
                lag.push((labels.clone(), position.lag() as i64));
                committed.push((labels.clone(), position.committed as i64));
                end.push((labels, position.end as i64));
            }
        }
        gauges(
            &mut encoder,
            "plexus_consumer_lag",
            "Records in the partition not yet committed by the route: end minus committed offset.",
            lag,
        )?;
        gauges(
            &mut encoder,
            "plexus_consumer_committed_offset",
            "The route's committed offset in the partition (the next record it will finish).",
            committed,
        )?;
        gauges(
            &mut encoder,
            "plexus_partition_end_offset",
            "The partition's end offset (the offset of the next record appended).",
            end,
        )?;
        gauges(
            &mut encoder,
            "plexus_dead_letter_depth",
            "Records kept in each dead-letter topic, as last measured (every 5 s).",
            board
                .dead_letter_depths()
                .into_iter()
                .map(|(topic, n)| (vec![("topic", topic)], n as i64))
                .collect(),
        )?;
        let reloads = vec![
            (vec![("result", "applied".to_owned())], view.reloads_applied),
            (vec![("result", "refused".to_owned())], view.reloads_refused),
        ];
        counters(
            &mut encoder,
            "plexus_reloads",
            "Configuration reloads, applied or refused (the running configuration kept).",
            reloads,
        )?;
        counters(
            &mut encoder,
            "plexus_plugin_swaps",
            "Plugin versions swapped in while events flowed.",
            vec![(Vec::new(), view.plugin_swaps)],
        )?;
        let retries = view.publisher.as_ref().map_or(0, |p| p.retried());
        counters(
            &mut encoder,
            "plexus_publish_retries",
            "Events published again after the broker failed to take them.",
            vec![(Vec::new(), retries)],
        )?;
        Ok(())
    }
}

/// The per-route counters: name (without `_total`), help, and where the value comes from.
type RouteCounter = (&'static str, &'static str, fn(&RouteSnapshot) -> u64);

const ROUTE_COUNTERS: &[RouteCounter] = &[
    (
        "plexus_events_received",
        "Events read from the route's topic.",
        |c| c.received,
    ),
    (
        "plexus_events_filtered",
        "Events skipped by the route's type filter.",
        |c| c.filtered,
    ),
    (
        "plexus_events_succeeded",
        "Events the plugin handled successfully.",
        |c| c.succeeded,
    ),
    (
        "plexus_events_retried",
        "Attempts that ended in a retry error and were tried again.",
        |c| c.retried,
    ),
    (
        "plexus_events_emitted",
        "Events the plugin emitted that were published.",
        |c| c.emitted,
    ),
    (
        "plexus_emits_undeclared",
        "Emits of a type or to a topic the plugin's `emits` does not declare (published all the same).",
        |c| c.undeclared_emits,
    ),
    (
        "plexus_events_already_applied",
        "Deliveries of events already applied to state: not handled again, their emits published again.",
        |c| c.already_applied,
    ),
    (
        "plexus_events_duplicate",
        "Events skipped as duplicates: the route finished one of the same source and id within its dedupe window.",
        |c| c.duplicates,
    ),
    (
        "plexus_dead_letters_without_payload",
        "Dead letters the broker refused whole, written without their payload.",
        |c| c.dead_letters_without_payload,
    ),
    (
        "plexus_state_reads",
        "State keys read by handled events.",
        |c| c.state_reads,
    ),
    (
        "plexus_state_writes",
        "State keys written or deleted by handled events.",
        |c| c.state_writes,
    ),
    (
        "plexus_state_conflicts",
        "Events handled again because a key they read changed before their commit.",
        |c| c.state_conflicts,
    ),
    (
        "plexus_state_waits",
        "Waits for an unreachable state store.",
        |c| c.state_waits,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{PartitionPosition, RouteMetrics};
    use crate::ops::board::{PluginView, RouteView, View};
    use std::sync::Arc;
    use std::time::Duration;

    fn board_with_one_route() -> (Board, Arc<RouteMetrics>) {
        let board = Board::new();
        let metrics = Arc::new(RouteMetrics::default());
        let mut view = View {
            broker: "kafka".into(),
            ..View::default()
        };
        view.routes.insert(
            "validate".into(),
            RouteView {
                topic: "shop.orders".into(),
                types: None,
                plugin: "validator".into(),
                dead_letter: "shop.dlq".into(),
                metrics: metrics.clone(),
                tracker: Arc::default(),
            },
        );
        view.plugins.insert(
            "validator".into(),
            PluginView {
                version: "validator@sha256:ab".into(),
                path: "v.wasm".into(),
            },
        );
        board.post(view);
        (board, metrics)
    }

    /// The value of the one series of `text` that starts with `series` (name and labels).
    fn value(text: &str, series: &str) -> f64 {
        let found: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .collect();
        assert_eq!(found.len(), 1, "{series} in\n{text}");
        found[0].rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn counters_lag_and_latency_are_read_live_with_their_labels() {
        let (board, metrics) = board_with_one_route();
        RouteMetrics::add(&metrics.received, 3);
        metrics.dead_letter(FailureKind::Rejected);
        metrics.dead_letter(FailureKind::Rejected);
        metrics.handle_latency.observe(Duration::from_micros(30));
        metrics.handle_latency.observe(Duration::from_millis(3));
        metrics.set_positions(vec![PartitionPosition {
            partition: 1,
            committed: 40,
            end: 47,
        }]);
        board.set_depth("shop.dlq", 2);
        let text = render(&board);
        let labels = r#"route="validate",topic="shop.orders",plugin="validator""#;
        assert_eq!(
            value(&text, &format!("plexus_events_received_total{{{labels}}}")),
            3.0
        );
        assert_eq!(
            value(
                &text,
                &format!("plexus_events_dead_lettered_total{{{labels},kind=\"rejected\"}}")
            ),
            2.0
        );
        assert_eq!(
            value(
                &text,
                &format!("plexus_events_dead_lettered_total{{{labels},kind=\"trap\"}}")
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                &format!("plexus_consumer_lag{{{labels},partition=\"1\"}}")
            ),
            7.0
        );
        assert_eq!(
            value(&text, r#"plexus_dead_letter_depth{topic="shop.dlq"}"#),
            2.0
        );
        assert_eq!(
            value(
                &text,
                &format!("plexus_handle_duration_seconds_count{{{labels}}}")
            ),
            2.0
        );
        assert_eq!(
            value(
                &text,
                &format!("plexus_handle_duration_seconds_bucket{{le=\"0.00005\",{labels}}}")
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                &format!("plexus_handle_duration_seconds_bucket{{le=\"+Inf\",{labels}}}")
            ),
            2.0
        );
        assert!(
            text.contains(r#"plugin_version="validator@sha256:ab""#),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        // Not running yet: not ready.
        assert_eq!(value(&text, "plexus_ready{}"), 0.0);
        RouteMetrics::add(&metrics.received, 1);
        assert_eq!(
            value(
                &render(&board),
                &format!("plexus_events_received_total{{{labels}}}")
            ),
            4.0
        );
    }
}
