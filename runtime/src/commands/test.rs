//! `plexus test`: run one plugin on a file of CloudEvents JSON lines and print, per event,
//! its outcome and the events it emitted, as JSON lines; then, on stderr, a summary of the
//! outcomes and of the time the plugin took per event. The plugin author's inner loop.
//!
//! As in a route: events of types the route does not take (`--types`) are filtered, not
//! handled; each event's state writes are committed before the next; state may start from a
//! JSON file (`--state`).

use crate::cloudevents;
use crate::config::Limits;
use crate::event::EmitContext;
use crate::handler::{Outcome, Plugin};
use crate::host::component;
use crate::host::engine::PlexusEngine;
use crate::host::instance::WasmPlugin;
use crate::host::plugins::cache_dir;
use crate::host::store::PluginContext;
use crate::state::{Marker, MemoryBackend, Overlay, Transaction};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// The route name `plexus test` uses for emitted ids and headers.
pub const TEST_ROUTE: &str = "test";

/// Options of `plexus test`.
pub struct TestOptions<'a> {
    /// The component.
    pub plugin: &'a Path,
    /// The events file.
    pub events: &'a Path,
    /// `key=value` config entries.
    pub config: Vec<(String, String)>,
    /// The topic the events pretend to come from.
    pub topic: String,
    /// Limits for the instance.
    pub limits: Limits,
    /// The event types a route would take (`None`: all).
    pub types: Option<HashSet<String>>,
    /// A JSON object of keys and values the plugin's state starts with.
    pub state: Option<&'a Path>,
}

/// Runs the test; returns the exit code (1 if the plugin or the file cannot be loaded).
pub fn test(options: TestOptions<'_>, out: &mut dyn Write) -> i32 {
    match run_test(options, out) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error:#}");
            super::EXIT_INVALID
        }
    }
}

/// Reads `--state`: a JSON object; a string value is stored as its UTF-8 bytes, any other
/// value as its JSON text.
fn read_seed(path: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let object: serde_json::Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: the state file must be a JSON object of keys and values: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    Ok(object
        .into_iter()
        .map(|(key, value)| {
            let bytes = match value {
                Value::String(text) => text.into_bytes(),
                other => other.to_string().into_bytes(),
            };
            (key, bytes)
        })
        .collect())
}

/// Writes `seed` into the plugin's state namespace, as one commit.
fn seed_state(context: &PluginContext, seed: Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let namespace = context.namespace();
    let mut txn = Transaction::begin(Overlay::default());
    for (key, value) in seed {
        futures::executor::block_on(txn.set(&namespace, &key, value, None))
            .map_err(|e| anyhow::anyhow!("state file: key `{key}`: {e}"))?;
    }
    let marker = Marker {
        route: "plexus-test-seed".to_owned(),
        partition: 0,
        offset: 0,
    };
    let (_, commit) = txn.into_commit(marker, Vec::new(), None);
    context
        .state
        .commit(&context.name, namespace.quota, &[commit])?;
    Ok(())
}

/// Outcomes counted, and the time each handled event took, for the closing summary.
#[derive(Default)]
struct Summary {
    outcomes: BTreeMap<String, usize>,
    took: Vec<Duration>,
}

impl Summary {
    fn count(&mut self, outcome: &str) {
        *self.outcomes.entry(outcome.to_owned()).or_default() += 1;
    }

    /// `12 events: 10 ok, 2 rejected; handle: 41 µs per event (median 38 µs, p99 95 µs,
    /// max 120 µs)`.
    fn line(&self) -> String {
        let total: usize = self.outcomes.values().sum();
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(outcome, n)| format!("{n} {outcome}"))
            .collect();
        let mut line = format!("{total} events: {}", outcomes.join(", "));
        if self.took.is_empty() {
            return line;
        }
        let mut took = self.took.clone();
        took.sort();
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let mean = took.iter().map(|d| micros(*d)).sum::<f64>() / took.len() as f64;
        let at = |q: f64| micros(took[((took.len() - 1) as f64 * q).round() as usize]);
        line.push_str(&format!(
            "; handle: {mean:.0} µs per event (median {:.0} µs, p99 {:.0} µs, max {:.0} µs)",
            at(0.5),
            at(0.99),
            micros(took[took.len() - 1])
        ));
        line
    }
}

fn run_test(options: TestOptions<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
    let engine = PlexusEngine::new(cache_dir(None))?;
    let name = options.plugin.file_stem().map_or("plugin".to_owned(), |s| {
        s.to_string_lossy().replace('_', "-")
    });
    let loaded = component::load(&engine, &name, options.plugin, None)?;
    let context = PluginContext {
        name: name.as_str().into(),
        config: options.config,
        state: MemoryBackend::shared(),
        limits: options.limits,
        emits: None,
    };
    if let Some(path) = options.state {
        seed_state(&context, read_seed(path)?)?;
    }
    let state = context.state.clone();
    let quota = context.state_quota();
    let plugin = WasmPlugin::new(loaded, context);
    let mut handler = plugin.instantiate()?;
    let file = std::fs::File::open(options.events)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", options.events.display()))?;
    let mut summary = Summary::default();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let line_no = index + 1;
        let mut event = match cloudevents::decode(line.as_bytes()) {
            Ok(event) => event,
            Err(error) => {
                summary.count("undecodable");
                writeln!(
                    out,
                    "{}",
                    json!({"line": line_no, "outcome": "undecodable", "reason": error.to_string()})
                )?;
                continue;
            }
        };
        if options
            .types
            .as_ref()
            .is_some_and(|types| !types.contains(&event.type_))
        {
            summary.count("filtered");
            writeln!(
                out,
                "{}",
                json!({"line": line_no, "id": event.id, "outcome": "filtered", "type": event.type_})
            )?;
            continue;
        }
        event.topic.clone_from(&options.topic);
        event.offset = index as u64;
        // Each event's state writes are committed before the next event, as in a route.
        let mut txn = Transaction::begin(Overlay::default());
        let started = Instant::now();
        let outcome = handler.handle(&event, &mut txn);
        summary.took.push(started.elapsed());
        if matches!(outcome, Outcome::Done(_)) {
            let marker = Marker {
                route: TEST_ROUTE.to_owned(),
                partition: 0,
                offset: event.offset,
            };
            let (_, commit) = txn.into_commit(marker, Vec::new(), None);
            state.commit(&name, quota, &[commit])?;
        }
        let record = match outcome {
            Outcome::Done(staged) => {
                let context = EmitContext {
                    cause: &event,
                    route: TEST_ROUTE,
                    handled_by: plugin.version(),
                    trace: None,
                };
                let emitted: Vec<Value> = staged
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| {
                        serde_json::from_str(&cloudevents::encode(&context.complete(i, e)))
                    })
                    .collect::<Result<_, _>>()?;
                json!({"line": line_no, "id": event.id, "outcome": "ok", "emitted": emitted})
            }
            Outcome::Retry(reason) => {
                json!({"line": line_no, "id": event.id, "outcome": "retry", "reason": reason})
            }
            Outcome::Failed(kind, reason) => {
                json!({"line": line_no, "id": event.id, "outcome": kind.as_str(), "reason": reason})
            }
        };
        summary.count(record["outcome"].as_str().unwrap_or("?"));
        writeln!(out, "{record}")?;
    }
    out.flush()?;
    eprintln!("{}", summary.line());
    Ok(())
}
