//! Wiring a validated [`Config`] into a running process, and changing it while it runs.
//!
//! [`Runtime::start`] builds the engine, the plugins (each in a [`PluginSlot`]), the broker,
//! one pipeline per route, and the inputs and outputs. [`Runtime::apply`] moves a running
//! process to a new config: every changed plugin is loaded, checked and initialised *before*
//! anything changes, and if any fails the whole new config is refused; then plugins are
//! swapped in their slots (workers follow between events), and routes that were removed or
//! changed are stopped, drained and committed, and restarted where they left off.
//! [`run`] is `plexus run`: start, watch for changes (see [`crate::watch`]), wait, stop.

use crate::broker::files::write_output;
use crate::broker::kafka::connect::{self, ClusterInfo};
use crate::broker::{Broker, Source, kafka_settings};
use crate::config::error::{ConfigError, ConfigErrors};
use crate::config::{BrokerKind, Config, PluginConfig, RouteConfig};
use crate::dispatch::publish::Publisher;
use crate::dispatch::retry::RetryPolicy;
use crate::dispatch::{RouteSpec, RunningRoute, start_route};
use crate::handler::{Plugin, PluginSlot};
use crate::host::component;
use crate::host::engine::PlexusEngine;
use crate::host::instance::WasmPlugin;
use crate::host::store::PluginContext;
use crate::metrics::{RouteMetrics, RouteSnapshot};
use crate::shutdown::Shutdown;
use crate::state::{MemoryStateStore, StateStore};
use crate::watch::Triggers;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a route commits while events flow.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// What a run did, per route and per output, and how its reloads went.
#[derive(Debug, Default, serde::Serialize)]
pub struct RunReport {
    /// Counters per route (removed routes included).
    pub routes: BTreeMap<String, RouteSnapshot>,
    /// Lines written per output topic.
    pub outputs: BTreeMap<String, u64>,
    /// Events and undecodable lines fed per input file.
    pub inputs: BTreeMap<String, (u64, u64)>,
    /// New configs applied.
    pub reloads_applied: u64,
    /// New configs refused (the running one kept).
    pub reloads_refused: u64,
    /// Plugin versions swapped in.
    pub plugin_swaps: u64,
    /// Events published again after a failure that could pass later (a broker outage).
    pub publish_retries: u64,
}

/// What one [`Runtime::apply`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Plugins whose new version took over: (name, old version, new version).
    pub swapped: Vec<(String, String, String)>,
    /// Routes started that did not exist.
    pub added: Vec<String>,
    /// Routes stopped for good.
    pub removed: Vec<String>,
    /// Routes restarted with new settings.
    pub restarted: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.swapped.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.restarted.is_empty()
    }
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

/// Loads, verifies and initialises plugin `name` of `config`. Errors point at its `path`.
pub fn load_plugin(
    config: &Config,
    name: &str,
    plugin: &PluginConfig,
    engine: &PlexusEngine,
    state: &Arc<dyn StateStore>,
) -> Result<Arc<WasmPlugin>, ConfigError> {
    let at = |message: String| {
        config.error_at(plugin.path.span(), format!("plugin `{name}`: {message}"))
    };
    let pinned = plugin.sha256.as_ref().map(|s| &s.get_ref().0);
    let loaded = component::load(engine, name, plugin.path.get_ref(), pinned)
        .map_err(|e| at(e.to_string()))?;
    tracing::debug!(plugin = %loaded.version, from_cache = loaded.from_cache, load_ms = loaded.load_time.as_millis() as u64, "plugin loaded");
    let context = PluginContext {
        name: name.into(),
        config: config_entries(&plugin.config),
        state: state.clone(),
        limits: plugin.limits,
    };
    let wasm = WasmPlugin::new(loaded, context);
    // Instantiating once proves the exports fit and `init` accepts the config.
    wasm.instantiate().map_err(|e| at(format!("{e:#}")))?;
    Ok(Arc::new(wasm))
}

/// Loads every plugin the config declares; all errors, located.
pub fn load_plugins(
    config: &Config,
    engine: &PlexusEngine,
    state: &Arc<dyn StateStore>,
) -> Result<BTreeMap<String, Arc<WasmPlugin>>, ConfigErrors> {
    let mut plugins = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, plugin) in &config.spec.plugins {
        match load_plugin(config, name.get_ref(), plugin, engine, state) {
            Ok(wasm) => {
                plugins.insert(name.get_ref().clone(), wasm);
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(plugins)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// A plugin in service and the settings it was loaded with.
struct LivePlugin {
    slot: Arc<PluginSlot>,
    settings: PluginConfig,
    digest: [u8; 32],
}

/// A route in service and the settings it was started with.
struct LiveRoute {
    running: RunningRoute,
    settings: RouteConfig,
    metrics: Arc<RouteMetrics>,
}

/// A running Plexus: plugins, routes, broker, inputs and outputs.
pub struct Runtime {
    config: Config,
    engine: PlexusEngine,
    state: Arc<dyn StateStore>,
    broker: Broker,
    publisher: Publisher,
    shutdown: Shutdown,
    plugins: BTreeMap<String, LivePlugin>,
    routes: BTreeMap<String, LiveRoute>,
    outputs: Vec<(String, JoinHandle<anyhow::Result<u64>>)>,
    outputs_stop: Shutdown,
    feeder: Option<JoinHandle<BTreeMap<String, (u64, u64)>>>,
    report: RunReport,
    /// Events received by all routes so far, and when that number last moved.
    progress: std::cell::Cell<(u64, Instant)>,
}

impl Runtime {
    /// Loads the plugins of `config` and starts everything. Routes stop when their input
    /// is exhausted or `shutdown` is set.
    pub fn start(config: Config, shutdown: Shutdown) -> anyhow::Result<Runtime> {
        let engine = PlexusEngine::new(cache_dir(Some(&config)))?;
        let state = MemoryStateStore::shared();
        let loaded = load_plugins(&config, &engine, &state).map_err(anyhow::Error::new)?;
        let plugins = config
            .spec
            .plugins
            .iter()
            .map(|(name, settings)| {
                let wasm = loaded[name.get_ref()].clone();
                let digest = wasm.loaded().digest;
                let live = LivePlugin {
                    slot: PluginSlot::new(wasm),
                    settings: settings.clone(),
                    digest,
                };
                (name.get_ref().clone(), live)
            })
            .collect();
        check_connection(&config, &shutdown)?;
        let broker = Broker::open(&config.spec.broker).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut runtime = Runtime {
            publisher: Publisher::start(broker.sink())?,
            broker,
            engine,
            state,
            shutdown,
            plugins,
            routes: BTreeMap::new(),
            outputs: Vec::new(),
            outputs_stop: Shutdown::new(),
            feeder: None,
            report: RunReport::default(),
            progress: std::cell::Cell::new((0, Instant::now())),
            config,
        };
        if let Err(error) = runtime.start_pipelines() {
            runtime.stop();
            return Err(error);
        }
        Ok(runtime)
    }

    /// The broker (tests append to the embedded one and read from it).
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The config in service.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters of route `name` now.
    pub fn route_metrics(&self, name: &str) -> Option<RouteSnapshot> {
        self.routes.get(name).map(|r| r.metrics.snapshot())
    }

    /// The version of plugin `name` in service.
    pub fn plugin_version(&self, name: &str) -> Option<String> {
        self.plugins
            .get(name)
            .map(|p| p.slot.current().1.version().to_owned())
    }

    fn start_pipelines(&mut self) -> anyhow::Result<()> {
        // Held until every input is fed: until then, no reader may conclude the run is over.
        let input_guard = self.broker.open_input();
        self.create_topics(&self.config.clone())?;
        // Subscribe everything before the first input line, so every reader sees every event.
        for output in &self.config.spec.outputs {
            let output = output.get_ref();
            let source = self
                .broker
                .subscribe(output.topic.as_str(), &format!("output.{}", output.topic))?;
            let writer = open_output(&output.file)?;
            let stop = self.outputs_stop.clone();
            let topic = output.topic.to_string();
            let thread = std::thread::Builder::new()
                .name(format!("output-{topic}"))
                .spawn(move || write_output(source, writer, &stop))?;
            self.outputs.push((topic, thread));
        }
        for (name, settings) in self.config.spec.routes.clone() {
            let source = self
                .broker
                .subscribe(settings.topic.as_str(), name.get_ref())?;
            self.start_route(name.get_ref(), settings, source, Arc::default())?;
        }
        let inputs: Vec<_> = self
            .config
            .spec
            .inputs
            .iter()
            .map(|i| i.get_ref().clone())
            .collect();
        let broker = self.broker.clone();
        let stop = self.shutdown.clone();
        self.feeder = Some(std::thread::Builder::new().name("inputs".into()).spawn(move || {
            let _open = input_guard;
            let mut fed = BTreeMap::new();
            for input in inputs {
                match broker.feed(input.topic.as_str(), &input.file, &stop) {
                    Ok(r) => {
                        tracing::info!(file = %input.file.display(), topic = %input.topic, events = r.events, undecodable = r.undecodable, "input fed");
                        fed.insert(input.file.display().to_string(), (r.events, r.undecodable));
                    }
                    Err(error) => tracing::error!(file = %input.file.display(), %error, "cannot feed input"),
                }
            }
            fed
        })?);
        Ok(())
    }

    /// On Kafka with `create_topics`, creates the topics `config` reads or writes by name.
    fn create_topics(&self, config: &Config) -> anyhow::Result<()> {
        let broker = match &self.broker {
            Broker::Kafka(kafka) if config.spec.broker.create_topics => kafka,
            _ => return Ok(()),
        };
        let topics = config.named_topics();
        broker
            .ensure_topics(&topics, *config.spec.broker.partitions.get_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn start_route(
        &mut self,
        name: &str,
        settings: RouteConfig,
        source: Box<dyn Source>,
        metrics: Arc<RouteMetrics>,
    ) -> anyhow::Result<()> {
        let plugin = self
            .plugins
            .get(settings.plugin.get_ref())
            .with_context(|| {
                format!(
                    "route `{name}`: plugin `{}` is not loaded",
                    settings.plugin.get_ref()
                )
            })?;
        let spec = RouteSpec {
            name: name.to_owned(),
            topic: settings.topic.to_string(),
            types: settings.types.as_ref().map(|t| t.iter().cloned().collect()),
            plugin: plugin.slot.clone(),
            concurrency: *settings.concurrency.get_ref() as usize,
            retry: RetryPolicy {
                max_attempts: *settings.retry.max_attempts.get_ref(),
                initial_backoff: settings.retry.initial_backoff.0,
                max_backoff: settings.retry.max_backoff.0,
            },
            dead_letter: settings.dead_letter_topic(name).to_string(),
            commit_interval: COMMIT_INTERVAL,
            max_in_flight: settings.max_in_flight.0,
        };
        let running = start_route(
            spec,
            source,
            self.publisher.clone(),
            Shutdown::new(),
            metrics.clone(),
        )?;
        self.routes.insert(
            name.to_owned(),
            LiveRoute {
                running,
                settings,
                metrics,
            },
        );
        Ok(())
    }

    /// Stops route `name`, waits until it has drained and committed, and returns its
    /// source, rewound to its committed positions.
    fn stop_route(&mut self, name: &str) -> Option<(Box<dyn Source>, Arc<RouteMetrics>)> {
        let live = self.routes.remove(name)?;
        live.running.stop();
        let mut source = live.running.join().0?;
        source.rewind();
        Some((source, live.metrics))
    }

    /// Whether the run is over by itself: on the embedded broker, inputs exhausted and every
    /// route finished; on Kafka with `idle_exit`, inputs fed, nothing in flight (read and
    /// unfinished, or being published) and nothing received for that long, with the broker
    /// answering (an outage is never taken for having nothing to do).
    pub fn is_done(&self) -> bool {
        if let Some(idle) = self
            .config
            .spec
            .broker
            .idle_exit
            .as_ref()
            .map(|i| *i.get_ref())
        {
            let received: u64 = self
                .routes
                .values()
                .map(|r| r.metrics.snapshot().received)
                .sum();
            let busy = self.publisher.pending() > 0
                || self.routes.values().any(|r| r.running.in_flight() > 0);
            let (seen, since) = self.progress.get();
            if received != seen || busy {
                self.progress.set((received, Instant::now()));
                return false;
            }
            let fed = self.feeder.as_ref().is_none_or(JoinHandle::is_finished);
            if !fed || since.elapsed() < idle.0 {
                return false;
            }
            if !self.publisher.sink().is_reachable() {
                tracing::info!(
                    "idle, but the broker does not answer: waiting for it before ending the run"
                );
                self.progress.set((received, Instant::now()));
                return false;
            }
            return true;
        }
        self.broker.is_exhausted() && self.routes.values().all(|r| r.running.is_finished())
    }

    /// Moves the running process to `new`. Every new or changed plugin is loaded,
    /// checked and initialised first; if any fails, nothing changes and the errors are
    /// returned. Broker settings, inputs and outputs are not changed by a reload.
    pub fn apply(&mut self, new: Config) -> Result<Changes, ConfigErrors> {
        let started = Instant::now();
        if new.spec.broker != self.config.spec.broker {
            self.report.reloads_refused += 1;
            let span = new.spec.broker.kind.span();
            return Err(ConfigErrors(vec![new.error_at(
                span,
                "broker settings cannot change while running; restart to apply them",
            )]));
        }
        // Phase 1, fallible and off the dispatch path: prepare every plugin that changed.
        let mut prepared = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, settings) in &new.spec.plugins {
            let name = name.get_ref();
            if let Some(live) = self.plugins.get(name)
                && live.settings == *settings
                && file_digest(settings.path.get_ref()).is_some_and(|d| d == live.digest)
            {
                continue;
            }
            match load_plugin(&new, name, settings, &self.engine, &self.state) {
                Ok(wasm) => {
                    prepared.insert(name.clone(), (wasm, settings.clone()));
                }
                Err(error) => errors.push(error),
            }
        }
        if !errors.is_empty() {
            self.report.reloads_refused += 1;
            return Err(ConfigErrors(errors));
        }
        // Phase 2: swap plugins in their slots; workers follow between events.
        let mut changes = Changes::default();
        for (name, (wasm, settings)) in prepared {
            let digest = wasm.loaded().digest;
            match self.plugins.get_mut(&name) {
                Some(live) => {
                    let old = live.slot.replace(wasm.clone());
                    live.settings = settings;
                    live.digest = digest;
                    tracing::info!(plugin = %name, old = %old.version(), new = %wasm.version(), took_ms = started.elapsed().as_millis() as u64, "plugin swapped");
                    changes.swapped.push((
                        name,
                        old.version().to_owned(),
                        wasm.version().to_owned(),
                    ));
                    self.report.plugin_swaps += 1;
                }
                None => {
                    let slot = PluginSlot::new(wasm);
                    self.plugins.insert(
                        name,
                        LivePlugin {
                            slot,
                            settings,
                            digest,
                        },
                    );
                }
            }
        }
        // Phase 3: routes. Removed and changed ones drain and commit first.
        let old_routes: Vec<String> = self.routes.keys().cloned().collect();
        for name in old_routes {
            let wanted = new
                .spec
                .routes
                .iter()
                .find(|(k, _)| k.get_ref() == &name)
                .map(|(_, r)| r.clone());
            match wanted {
                None => {
                    if let Some((_, metrics)) = self.stop_route(&name) {
                        self.report.routes.insert(name.clone(), metrics.snapshot());
                    }
                    tracing::info!(route = %name, "route removed");
                    changes.removed.push(name);
                }
                Some(settings) if settings != self.routes[&name].settings => {
                    let same_topic = settings.topic == self.routes[&name].settings.topic;
                    let Some((source, metrics)) = self.stop_route(&name) else {
                        continue;
                    };
                    // Same topic: resume at the committed positions; else start afresh.
                    let source = if same_topic {
                        source
                    } else {
                        drop(source);
                        match self.create_topics(&new).and_then(|()| {
                            Ok(self.broker.subscribe(settings.topic.as_str(), &name)?)
                        }) {
                            Ok(source) => source,
                            Err(error) => {
                                tracing::error!(route = %name, "cannot subscribe: {error:#}");
                                continue;
                            }
                        }
                    };
                    if let Err(error) = self.start_route(&name, settings, source, metrics) {
                        tracing::error!(route = %name, "cannot restart the route: {error:#}");
                        continue;
                    }
                    tracing::info!(route = %name, "route restarted with new settings");
                    changes.restarted.push(name);
                }
                Some(_) => {}
            }
        }
        for (name, settings) in &new.spec.routes {
            let name = name.get_ref();
            if self.routes.contains_key(name) || changes.restarted.contains(name) {
                continue;
            }
            let source = match self
                .create_topics(&new)
                .and_then(|()| Ok(self.broker.subscribe(settings.topic.as_str(), name)?))
            {
                Ok(source) => source,
                Err(error) => {
                    tracing::error!(route = %name, "cannot subscribe: {error:#}");
                    continue;
                }
            };
            match self.start_route(name, settings.clone(), source, Arc::default()) {
                Ok(()) => {
                    tracing::info!(route = %name, topic = %settings.topic, "route added");
                    changes.added.push(name.clone());
                }
                Err(error) => tracing::error!(route = %name, "cannot start the route: {error:#}"),
            }
        }
        self.plugins.retain(|name, _| new.plugin(name).is_some());
        if new.spec.inputs != self.config.spec.inputs
            || new.spec.outputs != self.config.spec.outputs
        {
            tracing::warn!("inputs and outputs are not changed by a reload; restart to apply them");
        }
        self.config = new;
        self.report.reloads_applied += 1;
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            ?changes,
            "configuration applied"
        );
        Ok(changes)
    }

    /// Counts a reload refused before [`Runtime::apply`] (the config did not parse).
    pub fn refuse(&mut self) {
        self.report.reloads_refused += 1;
    }

    /// Stops every route (each drains and commits), then the inputs and outputs; returns
    /// what the run did.
    pub fn stop(mut self) -> RunReport {
        self.shutdown.trigger();
        let names: Vec<String> = self.routes.keys().cloned().collect();
        for live in self.routes.values() {
            live.running.stop();
        }
        for name in names {
            if let Some(live) = self.routes.remove(&name) {
                let (_, unfinished) = live.running.join();
                let mut counts = live.metrics.snapshot();
                counts.unfinished = unfinished as u64;
                self.report.routes.insert(name, counts);
            }
        }
        self.publisher.stop();
        self.report.publish_retries = self.publisher.retried();
        if let Some(feeder) = self.feeder.take() {
            self.report.inputs = feeder.join().unwrap_or_default();
        }
        self.outputs_stop.trigger();
        for (topic, writer) in self.outputs.drain(..) {
            match writer.join() {
                Ok(Ok(lines)) => *self.report.outputs.entry(topic).or_default() += lines,
                Ok(Err(error)) => tracing::error!(%topic, "output failed: {error:#}"),
                Err(_) => tracing::error!(%topic, "output writer panicked"),
            }
        }
        std::mem::take(&mut self.report)
    }
}

/// The SHA-256 of the file at `path`, if it can be read.
fn file_digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path)
        .ok()
        .map(|bytes| crate::host::engine::sha256(&bytes))
}

/// On Kafka, reaches the cluster (and, with `create_topics` off, finds every topic the
/// config names) before anything is started, so a cluster that cannot be used gives one
/// error with the reason within `connect_timeout`, and nothing else.
pub fn check_connection(config: &Config, stop: &Shutdown) -> anyhow::Result<Option<ClusterInfo>> {
    let settings = &config.spec.broker;
    if *settings.kind.get_ref() != BrokerKind::Kafka {
        return Ok(None);
    }
    let needed = if settings.create_topics {
        Vec::new()
    } else {
        config.named_topics()
    };
    let kafka = kafka_settings(settings);
    let timeout = settings.connect_timeout.get_ref().0;
    tracing::info!(address = %kafka.bootstrap_servers, timeout_ms = timeout.as_millis() as u64, "connecting to Kafka");
    let info = connect::check_connection(&kafka, &needed, timeout, stop)?;
    tracing::info!(address = %kafka.bootstrap_servers, brokers = info.brokers, "connected to Kafka");
    Ok(Some(info))
}

/// `plexus run`: runs `config` until its inputs are exhausted or `shutdown` is set. SIGHUP
/// applies the config file again; with `watch`, so do changes to it or to any plugin file it
/// names (see [`crate::watch`]).
pub fn run(config: Config, shutdown: Shutdown, watch: bool) -> anyhow::Result<RunReport> {
    let config_path = PathBuf::from(&config.file);
    let runtime = Arc::new(Mutex::new(Runtime::start(config, shutdown.clone())?));
    let watcher_stop = Shutdown::new();
    // SIGHUP always reloads; `watch` adds the file watcher.
    let triggers = if watch {
        Triggers::FilesAndHangup
    } else {
        Triggers::HangupOnly
    };
    let watcher = crate::watch::spawn(runtime.clone(), config_path, watcher_stop.clone(), triggers);
    while !shutdown.wait_timeout(Duration::from_millis(50)) {
        if runtime.lock().expect("runtime lock").is_done() {
            break;
        }
    }
    watcher_stop.trigger();
    let _ = watcher.join();
    let runtime = Arc::into_inner(runtime).expect("the watcher released the runtime");
    Ok(runtime.into_inner().expect("runtime lock").stop())
}

fn open_output(file: &Path) -> anyhow::Result<Box<dyn Write + Send>> {
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
