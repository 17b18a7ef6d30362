//! Plexus runs event topics through sandboxed WebAssembly consumer plugins.
//!
//! A route binds a topic to a plugin. Every event read from the topic is decoded, handed to a
//! fresh-enough instance of the plugin's component (the contract is the WIT world in `wit/`),
//! and its outcome decides what happens next: events the plugin staged are published, a
//! *retry* error backs off and tries again, anything else goes to the route's dead-letter
//! topic with headers saying why. A source offset is committed only once every event at or
//! below it is finished, so delivery is at-least-once.
//!
//! # Embedding
//! Load a [`config::Config`], then [`run`] it (or [`Runtime::start`] it and [`supervise`] it),
//! controlling it with [`RunOptions`]: a [`Shutdown`] to stop, [`Reloads`] to apply the config
//! file again. Process matters stay with the caller: the library installs no signal handler
//! and never exits; a run that cannot go on returns a [`RunError`]. Brokers are seen through
//! [`broker::Source`] and [`broker::Sink`]; plugins through [`Plugin`] and [`Handler`], which
//! native Rust handlers implement too ([`NativePlugin`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = plexus::config::Config::load("plexus.toml".as_ref())?;
//! let options = plexus::RunOptions {
//!     watch: true,
//!     ..Default::default()
//! };
//! let (stop, reload) = (options.shutdown.clone(), options.reloads.clone());
//! // From any thread: `stop.trigger()` drains, commits and ends the run;
//! // `reload.request()` reads the config file again and applies it.
//! # drop((stop, reload));
//! let report = plexus::run(config, options)?;
//! println!("{:?}", report.routes);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! The path of one event, in order:
//! 1. **Enters** from a broker, one module each behind one trait (opened by
//!    `broker::open`): `broker::embedded` (in-process topics, fed from files by
//!    `broker::edges`), `broker::kafka` (the consumer in `broker::kafka`, the CloudEvents
//!    Kafka binding in `broker::kafka::binding`) or `broker::redis` (consumer groups on
//!    streams, entries mapped in `broker::redis::entry`), each yielding
//!    [`broker::Delivery`]s from a [`broker::Source`].
//! 2. **Is dispatched** by `dispatch`: a route's poller hands it to a worker chosen by its
//!    partition key (`dispatch::worker`), which retries (`dispatch::retry`) or dead-letters
//!    it (`dispatch::deadletter`). The dispatcher knows no broker and no wasm, only
//!    [`Handler`].
//! 3. **Crosses into Wasm** in `host`: `host::instance` calls the component's `handle` under
//!    its time and memory limits (`host::deadline`, `host::store`); the plugin's calls back
//!    into the host are `host::imports` (emit, state, log, config); its state calls run in
//!    a per-event [`state::Transaction`].
//! 4. **Is committed**: its state writes, with the record that the route applied it, in the
//!    worker's next group commit (`dispatch::group`; a delivery already applied is skipped by
//!    `dispatch::applied`); then what it emitted goes out through `dispatch::publish` to the
//!    broker's [`broker::Sink`], and once everything at or below it is finished,
//!    `dispatch::tracker` lets the route commit its offset to the source.
//!
//! Around that path: [`config`] reads `plexus.toml`; `host::plugins` loads a config's plugins
//! (for `run`, `check` and `test` alike); `runtime` wires a config into running routes and
//! reconfigures them (`runtime::plan` computes what changes, `runtime::apply` does it);
//! `supervise` is the run loop and `watch` the reload triggers; [`state`] holds plugin
//! state (memory, a local redb file or Redis); [`commands`] are the `plexus` subcommands.
//!
//! What operators see: `metrics` counts per route; [`ops`] keeps a live board of the run and
//! serves it (the admin server: `/metrics`, health, status, the topology page); [`catalog`]
//! derives the event catalog from a config; [`telemetry`] makes a trace span per handled
//! event when an OTLP endpoint is set; `log_context` gives plugin log lines the event's ids.

mod attributes;
mod bindings;
pub mod broker;
pub mod catalog;
mod cloudevents;
pub mod commands;
pub mod config;
mod dispatch;
mod emitted;
pub mod event;
mod handler;
mod host;
mod log_context;
mod metrics;
pub mod ops;
mod runtime;
mod shutdown;
pub mod state;
mod supervise;
pub mod telemetry;
mod watch;

pub use handler::{Handler, NativePlugin, Outcome, Plugin, PluginSlot};
pub use metrics::{FailureKind, RouteSnapshot, RunReport};
pub use runtime::{Changes, Runtime};
pub use shutdown::Shutdown;
pub use supervise::{RunError, RunOptions, run, supervise};
pub use watch::{ReloadReason, Reloads};

/// The attribute for implementing [`state::StateBackend`] (an async trait) outside this crate.
pub use async_trait::async_trait;

#[cfg(feature = "testing")]
pub mod testing;
