//! `plexus test`: run one plugin on a file of CloudEvents JSON lines and print, per event,
//! its outcome and the events it emitted, as JSON lines. The plugin author's inner loop.

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
use std::io::{BufRead, Write};
use std::path::Path;

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
    let state = context.state.clone();
    let quota = context.state_quota();
    let plugin = WasmPlugin::new(loaded, context);
    let mut handler = plugin.instantiate()?;
    let file = std::fs::File::open(options.events)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", options.events.display()))?;
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let line_no = index + 1;
        let mut event = match cloudevents::decode(line.as_bytes()) {
            Ok(event) => event,
            Err(error) => {
                writeln!(
                    out,
                    "{}",
                    json!({"line": line_no, "outcome": "undecodable", "reason": error.to_string()})
                )?;
                continue;
            }
        };
        event.topic.clone_from(&options.topic);
        event.offset = index as u64;
        // Each event's state writes are committed before the next event, as in a route.
        let mut txn = Transaction::begin(Overlay::default());
        let outcome = handler.handle(&event, &mut txn);
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
        writeln!(out, "{record}")?;
    }
    Ok(())
}
