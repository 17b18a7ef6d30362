//! Wiring a validated [`Config`] into a running process: [`Runtime::start`] builds the
//! engine, the plugins (each in a [`PluginSlot`]), the broker, one pipeline per route, and the
//! file edges; [`Runtime::stop`] drains and commits everything and reports.
//!
//! # Layout
//! - this module: the [`Runtime`] and its routes.
//! - [`plan`]: what a new config changes, as data ([`plan::diff`]).
//! - [`apply`]: carrying a plan out ([`Runtime::apply`]).
//!
//! Driving a runtime (reloads, ending the run) is [`crate::supervise`]'s job.

pub mod apply;
pub mod plan;

use crate::broker::edges::FileEdges;
use crate::broker::{Broker, InputGuard, Source};
use crate::config::BrokerKind;
use crate::config::{Config, DeliveryGuarantee, PluginConfig, RouteConfig};
use crate::dispatch::publish::Publisher;
use crate::dispatch::retry::RetryPolicy;
use crate::dispatch::{RouteSpec, RunningRoute, start_route};
use crate::handler::PluginSlot;
use crate::host::engine::PlexusEngine;
use crate::host::plugins::{cache_dir, load_plugins};
use crate::metrics::{RouteMetrics, RouteSnapshot, RunReport};
use crate::ops::board::{Board, Phase, PluginView, RouteView, View};
use crate::shutdown::Shutdown;
use crate::state::StateBackend;
use anyhow::Context as _;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use apply::Changes;

/// How often a route commits while events flow.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

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
    /// The route's own publisher, over its transactional producer (exactly-once routes);
    /// the others share the runtime's.
    own_publisher: Option<Publisher>,
}

/// A running Plexus: plugins, routes, broker, inputs and outputs.
pub struct Runtime {
    config: Config,
    engine: PlexusEngine,
    state: Arc<dyn StateBackend>,
    broker: Arc<dyn Broker>,
    publisher: Publisher,
    shutdown: Shutdown,
    plugins: BTreeMap<String, LivePlugin>,
    routes: BTreeMap<String, LiveRoute>,
    edges: FileEdges,
    report: RunReport,
    /// Events received by all routes so far, and when that number last moved.
    progress: Cell<(u64, Instant)>,
    /// What operators see of this run.
    board: Board,
    /// The thread measuring dead-letter depths and logging the status line.
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl Runtime {
    /// Loads the plugins of `config` and starts everything. Routes stop when their input
    /// is exhausted or `shutdown` is set.
    pub fn start(config: Config, shutdown: Shutdown) -> anyhow::Result<Runtime> {
        Runtime::start_on(config, shutdown, Board::new())
    }

    /// [`Runtime::start`], keeping `board` current with what runs (for an admin server
    /// started before, so it answers while plugins load).
    pub fn start_on(config: Config, shutdown: Shutdown, board: Board) -> anyhow::Result<Runtime> {
        Runtime::start_holding(config, shutdown, board, false).map(|(runtime, _)| runtime)
    }

    /// [`Runtime::start_on`]; with `hold_open`, also holds the run open as if an input were
    /// being fed (embedded broker), from before the first route polls, so a run started
    /// with no inputs cannot end before its caller appends anything.
    pub(crate) fn start_holding(
        config: Config,
        shutdown: Shutdown,
        board: Board,
        hold_open: bool,
    ) -> anyhow::Result<(Runtime, Option<InputGuard>)> {
        let engine = PlexusEngine::new(cache_dir(Some(&config)))?;
        let state = open_state(&config)?;
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
        let broker = crate::broker::open(&config, &shutdown)?;
        let held = if hold_open { broker.open_input() } else { None };
        let mut runtime = Runtime {
            publisher: Publisher::start(broker.sink())?,
            broker,
            engine,
            state,
            shutdown,
            plugins,
            routes: BTreeMap::new(),
            edges: FileEdges::default(),
            report: RunReport::default(),
            progress: Cell::new((0, Instant::now())),
            board,
            sampler: None,
            config,
        };
        if let Err(error) = runtime.start_pipelines() {
            runtime.stop();
            return Err(error);
        }
        runtime.post_board();
        runtime.board.set_phase(Phase::Running);
        let status_every = runtime.config.spec.admin.status_interval.0;
        runtime.sampler = Some(crate::ops::sampler::spawn(
            runtime.broker.clone(),
            runtime.board.clone(),
            runtime.shutdown.clone(),
            (!status_every.is_zero()).then_some(status_every),
        )?);
        Ok((runtime, held))
    }

    /// The broker.
    #[cfg(feature = "testing")]
    pub(crate) fn broker(&self) -> &dyn Broker {
        &*self.broker
    }

    /// What operators see of this run: kept current as routes and plugins change.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// Posts the routes and plugins in service now to the board.
    pub(crate) fn post_board(&self) {
        let routes = self
            .routes
            .iter()
            .map(|(name, live)| {
                let view = RouteView {
                    topic: live.settings.topic.to_string(),
                    types: live.settings.types.as_ref().map(|t| t.to_vec()),
                    plugin: live.settings.plugin.get_ref().clone(),
                    dead_letter: live.settings.dead_letter_topic(name).to_string(),
                    metrics: live.metrics.clone(),
                    tracker: live.running.tracker(),
                };
                (name.clone(), view)
            })
            .collect();
        let plugins = self
            .plugins
            .iter()
            .map(|(name, live)| {
                let view = PluginView {
                    version: live.slot.current().1.version().to_owned(),
                    path: live.settings.path.get_ref().display().to_string(),
                };
                (name.clone(), view)
            })
            .collect();
        self.board.post(View {
            broker: self.broker.kind().to_owned(),
            routes,
            plugins,
            reloads_applied: self.report.reloads_applied,
            reloads_refused: self.report.reloads_refused,
            plugin_swaps: self.report.plugin_swaps,
            publisher: Some(self.publisher.clone()),
            catalog: crate::catalog::Catalog::of(&self.config),
        });
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
        let outputs: Vec<_> = self
            .config
            .spec
            .outputs
            .iter()
            .map(|o| o.get_ref().clone())
            .collect();
        self.edges = FileEdges::start_outputs(&*self.broker, &outputs)?;
        for (name, settings) in self.config.spec.routes.clone() {
            let source = self.open_source(name.get_ref(), &settings)?;
            self.start_route(name.get_ref(), settings, source, Arc::default())?;
        }
        let inputs = self
            .config
            .spec
            .inputs
            .iter()
            .map(|i| i.get_ref().clone())
            .collect();
        self.edges
            .feed_inputs(&self.broker, inputs, input_guard, &self.shutdown)
    }

    /// Subscribes route `name` as `settings` say, creating the topics of `config` first
    /// where that is asked for.
    fn subscribe(
        &self,
        config: &Config,
        name: &str,
        settings: &RouteConfig,
    ) -> anyhow::Result<Box<dyn Source>> {
        self.create_topics(config)?;
        self.open_source(name, settings)
    }

    /// Route `name`'s subscription to its topic, transactional if it is exactly-once.
    fn open_source(&self, name: &str, settings: &RouteConfig) -> anyhow::Result<Box<dyn Source>> {
        let topic = settings.topic.as_str();
        Ok(match settings.delivery.get_ref() {
            DeliveryGuarantee::AtLeastOnce => self.broker.subscribe(topic, name)?,
            DeliveryGuarantee::ExactlyOnce => self
                .broker
                .subscribe_exactly_once(topic, name)
                .with_context(|| format!("route `{name}`: exactly-once subscription"))?,
        })
    }

    /// Makes sure the topics `config` reads or writes by name exist, where the broker
    /// needs that (Kafka with `create_topics`).
    fn create_topics(&self, config: &Config) -> anyhow::Result<()> {
        self.broker
            .ensure_topics(&config.named_topics())
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
            broker: self.broker.kind(),
            types: settings.types.as_ref().map(|t| t.iter().cloned().collect()),
            plugin: plugin.slot.clone(),
            concurrency: *settings.concurrency.get_ref() as usize,
            retry: RetryPolicy {
                max_attempts: *settings.retry.max_attempts.get_ref(),
                initial_backoff: settings.retry.initial_backoff.0,
                max_backoff: settings.retry.max_backoff.0,
            },
            dead_letter: settings.dead_letter_topic(name).to_string(),
            state: self.state.clone(),
            commit_interval: COMMIT_INTERVAL,
            max_in_flight: settings.max_in_flight.0,
            dedupe: settings.dedupe.as_ref().map(|d| d.window.get_ref().0),
        };
        // An exactly-once route publishes through its own transactional producer.
        let own_publisher = source
            .transactional_sink()
            .map(Publisher::start)
            .transpose()?;
        let publisher = own_publisher
            .clone()
            .unwrap_or_else(|| self.publisher.clone());
        let running = match start_route(spec, source, publisher, Shutdown::new(), metrics.clone()) {
            Ok(running) => running,
            Err(error) => {
                if let Some(own) = own_publisher {
                    own.stop();
                }
                return Err(error);
            }
        };
        self.routes.insert(
            name.to_owned(),
            LiveRoute {
                running,
                settings,
                metrics,
                own_publisher,
            },
        );
        Ok(())
    }

    /// The publishers in service: the shared one, and those of exactly-once routes.
    fn publishers(&self) -> impl Iterator<Item = &Publisher> {
        std::iter::once(&self.publisher).chain(
            self.routes
                .values()
                .filter_map(|route| route.own_publisher.as_ref()),
        )
    }

    /// Stops route `name`, waits until it has drained and committed, and returns its
    /// source, rewound to its committed positions.
    fn stop_route(&mut self, name: &str) -> Option<(Box<dyn Source>, Arc<RouteMetrics>)> {
        let live = self.routes.remove(name)?;
        live.running.stop();
        let source = live.running.join().0;
        if let Some(own) = live.own_publisher {
            own.stop();
        }
        let mut source = source?;
        source.rewind();
        Some((source, live.metrics))
    }

    /// Whether the run is over by itself: on the embedded broker, inputs exhausted and every
    /// route finished; on Kafka with `idle_exit`, inputs fed, every route given its
    /// partitions, nothing in flight (read and unfinished, or being published) and nothing
    /// received for that long, with the broker answering (an outage is never taken for
    /// having nothing to do).
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
            // A route not given its partitions yet (a group still waiting for the members
            // of a killed process to time out) has not seen what it has to do.
            let busy = self.publishers().any(|p| p.pending() > 0)
                || self.routes.values().any(|r| {
                    r.running.in_flight() > 0
                        || !r
                            .metrics
                            .assigned
                            .load(std::sync::atomic::Ordering::Relaxed)
                });
            let (seen, since) = self.progress.get();
            if received != seen || busy {
                self.progress.set((received, Instant::now()));
                return false;
            }
            if !self.edges.inputs_fed() || since.elapsed() < idle.0 {
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

    /// Why the broker's producer failed for good, if it did: nothing can be published any
    /// more, and the run should end (see [`crate::supervise::RunError::ProducerFatal`]).
    pub fn fatal_error(&self) -> Option<String> {
        self.publishers().find_map(|p| p.sink().fatal_error())
    }

    /// Stops every route (each drains and commits), then the inputs and outputs; returns
    /// what the run did.
    pub fn stop(mut self) -> RunReport {
        self.board.set_phase(Phase::Draining);
        self.shutdown.trigger();
        let names: Vec<String> = self.routes.keys().cloned().collect();
        for live in self.routes.values() {
            live.running.stop();
        }
        for name in names {
            if let Some(live) = self.routes.remove(&name) {
                let (_, unfinished) = live.running.join();
                if let Some(own) = live.own_publisher {
                    own.stop();
                    self.report.publish_retries += own.retried();
                }
                let mut counts = live.metrics.snapshot();
                counts.unfinished = unfinished as u64;
                self.report.routes.insert(name, counts);
            }
        }
        self.publisher.stop();
        self.report.publish_retries += self.publisher.retried();
        let (inputs, outputs) = std::mem::take(&mut self.edges).stop();
        self.report.inputs = inputs;
        self.report.outputs = outputs;
        if let Some(sampler) = self.sampler.take()
            && sampler.join().is_err()
        {
            tracing::error!("the sampler thread panicked");
        }
        self.board.post(View::default());
        self.board.set_phase(Phase::Stopped);
        std::mem::take(&mut self.report)
    }
}

/// Opens the state store `config` chooses. On the embedded broker, whose positions do not
/// outlive a run, durable state refuses inputs it was fed before and forgets the markers of
/// an earlier run (they name positions this run does not share).
fn open_state(config: &Config) -> anyhow::Result<Arc<dyn StateBackend>> {
    let state = crate::state::open(&config.spec.state).map_err(|e| anyhow::anyhow!("{e}"))?;
    if *config.spec.broker.kind.get_ref() == BrokerKind::Embedded && state.durable() {
        let inputs: Vec<&std::path::Path> = config
            .spec
            .inputs
            .iter()
            .map(|i| i.get_ref().file.as_path())
            .collect();
        crate::state::inputs::admit(&*state, &inputs).map_err(|e| anyhow::anyhow!("{e}"))?;
        for route in config.spec.routes.keys() {
            state.forget_route(route.get_ref())?;
        }
    }
    tracing::info!(state = %state.describe(), "plugin state");
    Ok(state)
}
