//! Wiring a validated [`Config`] into a running process: the engine, the plugins, the broker,
//! one pipeline per route, the inputs and outputs, and an orderly stop.

use crate::broker::embedded::EmbeddedBroker;
use crate::broker::files::{feed_file, write_output};
use crate::broker::{Sink, Source};
use crate::config::Config;
use crate::config::error::{ConfigError, ConfigErrors};
use crate::dispatch::retry::RetryPolicy;
use crate::dispatch::{RouteSpec, start_route};
use crate::handler::Plugin;
use crate::host::component;
use crate::host::engine::PlexusEngine;
use crate::host::instance::WasmPlugin;
use crate::host::store::PluginContext;
use crate::metrics::{RouteMetrics, RouteSnapshot};
use crate::shutdown::Shutdown;
use crate::state::{MemoryStateStore, StateStore};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often a route commits while events flow.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Loaded plugins by name.
pub type Plugins = BTreeMap<String, Arc<dyn Plugin>>;

/// What a run did, per route and per output.
#[derive(Debug, Default, serde::Serialize)]
pub struct RunReport {
    /// Counters per route.
    pub routes: BTreeMap<String, RouteSnapshot>,
    /// Lines written per output topic.
    pub outputs: BTreeMap<String, u64>,
    /// Events and undecodable lines fed per input file.
    pub inputs: BTreeMap<String, (u64, u64)>,
}

/// The compile cache directory: `[runtime] cache_dir`, else `$PLEXUS_CACHE_DIR`, else the
/// user's cache directory.
pub fn cache_dir(config: Option<&Config>) -> Option<PathBuf> {
    if let Some(dir) = config.and_then(|c| c.spec.runtime.cache_dir.clone()) {
        return Some(dir);
    }
    if let Some(dir) = std::env::var_os("PLEXUS_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("plexus"))
}

/// The configuration table of a plugin as `init` receives it: strings as they are, other
/// values as JSON.
pub fn config_entries(table: &toml::Table) -> Vec<(String, String)> {
    table
        .iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                other => serde_json::to_string(other).unwrap_or_else(|_| other.to_string()),
            };
            (key.clone(), text)
        })
        .collect()
}

/// Loads, verifies and initialises every plugin the config declares. Errors point at each
/// plugin's `path`.
pub fn load_plugins(
    config: &Config,
    engine: &PlexusEngine,
    state: &Arc<dyn StateStore>,
) -> Result<Plugins, ConfigErrors> {
    let mut plugins = Plugins::new();
    let mut errors: Vec<ConfigError> = Vec::new();
    for (name, plugin) in &config.spec.plugins {
        let name = name.get_ref();
        let at = |message: String| {
            config.error_at(plugin.path.span(), format!("plugin `{name}`: {message}"))
        };
        let pinned = plugin.sha256.as_ref().map(|s| &s.get_ref().0);
        let loaded = match component::load(engine, name, plugin.path.get_ref(), pinned) {
            Ok(loaded) => loaded,
            Err(error) => {
                errors.push(at(error.to_string()));
                continue;
            }
        };
        tracing::debug!(plugin = %loaded.version, from_cache = loaded.from_cache, load_ms = loaded.load_time.as_millis() as u64, "plugin loaded");
        let context = PluginContext {
            name: name.as_str().into(),
            config: config_entries(&plugin.config),
            state: state.clone(),
            max_emits: plugin.limits.max_emits as usize,
            memory_limit: plugin.limits.memory.0 as usize,
        };
        let wasm = WasmPlugin::new(loaded, context, plugin.limits.timeout.0);
        // Instantiating once proves the exports fit and `init` accepts the config.
        if let Err(error) = wasm.instantiate() {
            errors.push(at(format!("{error:#}")));
            continue;
        }
        plugins.insert(name.clone(), Arc::new(wasm));
    }
    if errors.is_empty() {
        Ok(plugins)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Runs `config` with its wasm plugins until the inputs are exhausted or `shutdown` is set.
pub fn run(config: &Config, shutdown: Shutdown) -> anyhow::Result<RunReport> {
    let engine = PlexusEngine::new(cache_dir(Some(config)))?;
    let state = MemoryStateStore::shared();
    let plugins = load_plugins(config, &engine, &state).map_err(anyhow::Error::new)?;
    run_with_plugins(config, &plugins, shutdown)
}

/// Runs `config` with the given plugins (wasm or native) in place of loading them.
pub fn run_with_plugins(
    config: &Config,
    plugins: &Plugins,
    shutdown: Shutdown,
) -> anyhow::Result<RunReport> {
    let spec = &config.spec;
    let broker = EmbeddedBroker::new(*spec.broker.partitions.get_ref());
    let sink: Arc<dyn Sink> = broker.sink();
    // Held until every input is fed: until then, no reader may conclude the run is over.
    let input_guard = broker.open_input();

    // Subscribe everything before the first input line, so every reader sees every event.
    let outputs_stop = Shutdown::new();
    let mut outputs = Vec::new();
    for output in &spec.outputs {
        let output = output.get_ref();
        let source: Box<dyn Source> = Box::new(broker.subscribe(output.topic.as_str()));
        let writer = open_output(&output.file)?;
        let stop = outputs_stop.clone();
        let topic = output.topic.to_string();
        outputs.push((
            topic.clone(),
            std::thread::Builder::new()
                .name(format!("output-{topic}"))
                .spawn(move || write_output(source, writer, &stop))?,
        ));
    }
    let mut report = RunReport::default();
    let mut routes = Vec::new();
    let mut metrics = Vec::new();
    for (name, route) in &spec.routes {
        let name = name.get_ref();
        let plugin = plugins.get(route.plugin.get_ref()).with_context(|| {
            format!(
                "route `{name}`: plugin `{}` is not loaded",
                route.plugin.get_ref()
            )
        })?;
        let route_spec = RouteSpec {
            name: name.clone(),
            topic: route.topic.to_string(),
            types: route.types.as_ref().map(|t| t.iter().cloned().collect()),
            plugin: plugin.clone(),
            concurrency: *route.concurrency.get_ref() as usize,
            retry: RetryPolicy {
                max_attempts: *route.retry.max_attempts.get_ref(),
                initial_backoff: route.retry.initial_backoff.0,
                max_backoff: route.retry.max_backoff.0,
            },
            dead_letter: route.dead_letter_topic(name).to_string(),
            commit_interval: COMMIT_INTERVAL,
        };
        let route_metrics = Arc::new(RouteMetrics::default());
        let source = Box::new(broker.subscribe(route.topic.as_str()));
        routes.push(start_route(
            route_spec,
            source,
            sink.clone(),
            shutdown.clone(),
            route_metrics.clone(),
        )?);
        metrics.push((name.clone(), route_metrics));
    }

    let inputs: Vec<_> = spec.inputs.iter().map(|i| i.get_ref().clone()).collect();
    let feeder_broker = broker.clone();
    let feeder_stop = shutdown.clone();
    let feeder = std::thread::Builder::new().name("inputs".into()).spawn(move || {
        let _open = input_guard;
        let mut fed = BTreeMap::new();
        for input in inputs {
            if feeder_stop.is_triggered() {
                break;
            }
            match feed_file(&feeder_broker, input.topic.as_str(), &input.file, &feeder_stop) {
                Ok(r) => {
                    tracing::info!(file = %input.file.display(), topic = %input.topic, events = r.events, undecodable = r.undecodable, "input fed");
                    fed.insert(input.file.display().to_string(), (r.events, r.undecodable));
                }
                Err(error) => tracing::error!(file = %input.file.display(), %error, "cannot read input"),
            }
        }
        fed
    })?;

    for route in routes {
        route.join();
    }
    report.inputs = feeder.join().unwrap_or_default();
    outputs_stop.trigger();
    for (topic, writer) in outputs {
        match writer.join() {
            Ok(Ok(lines)) => {
                *report.outputs.entry(topic).or_default() += lines;
            }
            Ok(Err(error)) => tracing::error!(%topic, "output failed: {error:#}"),
            Err(_) => tracing::error!(%topic, "output writer panicked"),
        }
    }
    report.routes = metrics
        .into_iter()
        .map(|(name, m)| (name, m.snapshot()))
        .collect();
    Ok(report)
}

fn open_output(file: &std::path::Path) -> anyhow::Result<Box<dyn Write + Send>> {
    if file.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = std::fs::File::create(file)
        .with_context(|| format!("creating output {}", file.display()))?;
    Ok(Box::new(std::io::BufWriter::new(out)))
}
