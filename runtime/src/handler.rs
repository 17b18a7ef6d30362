//! What the dispatcher calls: a [`Plugin`] makes [`Handler`]s, a handler handles one event at
//! a time, and a [`PluginSlot`] holds the version in service so it can be replaced live.
//! Wasm components are one implementation ([`crate::host`]); native Rust handlers are
//! another, used as the baseline in benchmarks and in tests of the dispatcher itself.

use crate::event::{Event, OutgoingEvent};
use crate::metrics::FailureKind;
use crate::state::{Quota, Transaction};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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
    /// Handles `event`, reading and writing plugin state through `state` (the event's
    /// transaction, committed or dropped by the caller). A handler recovers from its own
    /// failures (a trapped wasm instance is replaced before the next call), so every call
    /// gets a working instance.
    fn handle(&mut self, event: &Event, state: &mut Transaction) -> Outcome;
}

/// A loaded plugin: makes handlers for the workers of every route that uses it.
pub trait Plugin: Send + Sync {
    /// The plugin's name in `plexus.toml`.
    fn name(&self) -> &str;
    /// `name@sha256:<hex>` of this version, stamped on everything it handles.
    fn version(&self) -> &str;
    /// A new, initialised handler.
    fn instantiate(&self) -> anyhow::Result<Box<dyn Handler>>;
    /// How much the plugin's state namespace may hold.
    fn state_quota(&self) -> Quota {
        Quota::UNLIMITED
    }
    /// Whether the plugin declares (in `emits`) that it emits `type_` to `topic`; a plugin
    /// that declares nothing declares everything.
    fn declares_emit(&self, _topic: &str, _type: &str) -> bool {
        true
    }
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
    fn handle(&mut self, event: &Event, _: &mut Transaction) -> Outcome {
        (self.0)(event)
    }
}

/// The current version of a plugin, replaceable while events flow.
///
/// Routes hold the slot, not the plugin. Workers compare [`PluginSlot::generation`] between
/// events (one atomic load) and, when it moved, instantiate the new version for the events
/// that follow; the event in hand always finishes on the version that started it.
pub struct PluginSlot {
    current: RwLock<Arc<dyn Plugin>>,
    generation: AtomicU64,
}

impl PluginSlot {
    /// A slot holding `plugin`.
    pub fn new(plugin: Arc<dyn Plugin>) -> Arc<Self> {
        Arc::new(PluginSlot {
            current: RwLock::new(plugin),
            generation: AtomicU64::new(0),
        })
    }

    /// Bumped by every [`PluginSlot::replace`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current plugin and its generation.
    pub fn current(&self) -> (u64, Arc<dyn Plugin>) {
        let current = self.current.read().expect("plugin slot lock");
        (self.generation(), current.clone())
    }

    /// Makes `plugin` the current version; returns the one it replaced.
    pub fn replace(&self, plugin: Arc<dyn Plugin>) -> Arc<dyn Plugin> {
        let mut current = self.current.write().expect("plugin slot lock");
        let old = std::mem::replace(&mut *current, plugin);
        self.generation.fetch_add(1, Ordering::AcqRel);
        old
    }
}
