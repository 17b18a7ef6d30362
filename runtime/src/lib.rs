//! Plexus runs event topics through sandboxed WebAssembly consumer plugins.
//!
//! A route binds a topic to a plugin. Every event read from the topic is decoded, handed to a
//! fresh-enough instance of the plugin's component (the contract is the WIT world in `wit/`),
//! and its outcome decides what happens next: events the plugin staged are published, a
//! *retry* error backs off and tries again, anything else goes to the route's dead-letter
//! topic with headers saying why. A source offset is committed only once every event at or
//! below it is finished, so delivery is at-least-once.
//!
//! # Layout
//! - [`config`]: `plexus.toml`, its validated types and file:line:col errors.
//! - [`event`], [`attributes`] and [`cloudevents`]: the event record, CloudEvents attribute
//!   rules, and the CloudEvents JSON format.
//! - [`broker`]: the `Source`/`Sink` traits, the embedded in-process broker, and Kafka.
//! - [`dispatch`]: per-route pipelines (ordering, retries, dead letters, offset tracking);
//!   it knows no broker and no wasm, only [`handler::Handler`].
//! - [`host`]: the wasmtime side: engine, compile cache, limits, imports, instances.
//! - [`state`]: the per-plugin key-value store behind the `state` import, with quotas.
//! - [`runtime`]: wires a config into running pipelines and reconfigures them live
//!   ([`runtime::Runtime::apply`]).
//! - [`watch`]: hot-reload triggers (file changes, SIGHUP).
//! - [`commands`]: `plexus run`, `check` and `test`.

pub mod attributes;
pub mod bindings;
pub mod broker;
pub mod cloudevents;
pub mod commands;
pub mod config;
pub mod dispatch;
pub mod event;
pub mod handler;
pub mod host;
pub mod metrics;
pub mod runtime;
pub mod shutdown;
pub mod state;
pub mod watch;

pub use runtime::{RunReport, run};
pub use shutdown::Shutdown;

/// The attribute for implementing [`state::StateStore`] (an async trait) outside this crate.
pub use async_trait::async_trait;
