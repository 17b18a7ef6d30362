//! What the dispatcher calls: a [`Plugin`] makes [`Handler`]s, a handler handles one event at
//! a time. Wasm components are one implementation ([`crate::host`]); native Rust handlers
//! are another, used as the baseline in benchmarks and in tests of the dispatcher itself.

use crate::event::{Event, OutgoingEvent};
use crate::metrics::FailureKind;
use std::sync::Arc;

/// How handling one event ended.
#[derive(Debug)]
pub enum Outcome {
    /// Handled; these staged events are to be published.
    Done(Vec<OutgoingEvent>),
    /// A transient failure: try again later.
    Retry(String),
    /// A permanent failure: dead-letter the event.
    Failed(FailureKind, String),
}

/// One instance of a plugin, owned by one worker.
pub trait Handler: Send {
    /// Handles `event`. A handler recovers from its own failures (a trapped wasm instance
    /// is replaced before the next call), so every call gets a working instance.
    fn handle(&mut self, event: &Event) -> Outcome;
}

/// A loaded plugin: makes handlers for the workers of every route that uses it.
pub trait Plugin: Send + Sync {
    /// The plugin's name in `plexus.toml`.
    fn name(&self) -> &str;
    /// `name@sha256:<hex>` of this version, stamped on everything it handles.
    fn version(&self) -> &str;
    /// A new, initialised handler.
    fn instantiate(&self) -> anyhow::Result<Box<dyn Handler>>;
}

type HandleFn = dyn Fn(&Event) -> Outcome + Send + Sync;

/// A plugin written in Rust and compiled into the host.
pub struct NativePlugin {
    name: String,
    version: String,
    handle: Arc<HandleFn>,
}

impl NativePlugin {
    /// A native plugin called `name` that runs `handle` for every event.
    pub fn new(name: &str, handle: impl Fn(&Event) -> Outcome + Send + Sync + 'static) -> Self {
        NativePlugin {
            name: name.to_owned(),
            version: format!("{name}@native"),
            handle: Arc::new(handle),
        }
    }
}

impl Plugin for NativePlugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn instantiate(&self) -> anyhow::Result<Box<dyn Handler>> {
        Ok(Box::new(NativeHandler(self.handle.clone())))
    }
}

struct NativeHandler(Arc<HandleFn>);

impl Handler for NativeHandler {
    fn handle(&mut self, event: &Event) -> Outcome {
        (self.0)(event)
    }
}
