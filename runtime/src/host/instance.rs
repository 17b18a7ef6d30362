//! Running a loaded plugin: [`WasmPlugin`] makes initialised instances, [`WasmHandler`] calls
//! `handle` under the time and memory limits and classifies what went wrong.
//!
//! An instance that trapped (panic, timeout, memory limit) is never entered again: the
//! handler drops its store, which frees its memory, and instantiates afresh (a cheap step
//! from the pre-instantiated component) before the next event.

use super::component::LoadedPlugin;
use super::engine::PlexusEngine;
use super::store::{HostState, PluginContext};
use crate::bindings::{Consumer, HandleError};
use crate::event::Event;
use crate::handler::{Handler, Outcome, Plugin};
use crate::metrics::FailureKind;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Store, Trap};

/// A plugin backed by a wasm component.
pub struct WasmPlugin {
    loaded: Arc<LoadedPlugin>,
    context: Arc<PluginContext>,
    timeout: Duration,
}

impl WasmPlugin {
    /// A plugin running `loaded` with `context`, each call limited to `timeout`.
    pub fn new(loaded: LoadedPlugin, context: PluginContext, timeout: Duration) -> Self {
        WasmPlugin {
            loaded: Arc::new(loaded),
            context: Arc::new(context),
            timeout,
        }
    }

    /// The loaded component.
    pub fn loaded(&self) -> &LoadedPlugin {
        &self.loaded
    }

    fn live_instance(&self) -> Result<Live, (FailureKind, String)> {
        let mut store = Store::new(
            self.loaded.pre.engine(),
            HostState::new(self.context.clone()),
        );
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(PlexusEngine::ticks_for(self.timeout));
        let consumer = self
            .loaded
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&mut store, e, self.timeout, "instantiating"))?;
        let config = self.context.config.clone();
        match consumer.call_init(&mut store, &config) {
            Ok(Ok(())) => Ok(Live { store, consumer }),
            Ok(Err(message)) => Err((FailureKind::Unavailable, format!("init failed: {message}"))),
            Err(error) => Err(classify(&mut store, error, self.timeout, "init")),
        }
    }
}

impl Plugin for WasmPlugin {
    fn name(&self) -> &str {
        &self.context.name
    }

    fn version(&self) -> &str {
        &self.loaded.version
    }

    fn instantiate(&self) -> anyhow::Result<Box<dyn Handler>> {
        let live = self
            .live_instance()
            .map_err(|(_, message)| anyhow::anyhow!("{message}"))?;
        Ok(Box::new(WasmHandler {
            plugin: WasmPlugin {
                loaded: self.loaded.clone(),
                context: self.context.clone(),
                timeout: self.timeout,
            },
            live: Some(live),
        }))
    }
}

struct Live {
    store: Store<HostState>,
    consumer: Consumer,
}

/// One instance of a wasm plugin, re-created after a trap.
pub struct WasmHandler {
    plugin: WasmPlugin,
    live: Option<Live>,
}

impl Handler for WasmHandler {
    fn handle(&mut self, event: &Event) -> Outcome {
        let live = match self.live.take() {
            Some(live) => live,
            None => match self.plugin.live_instance() {
                Ok(live) => live,
                Err((_, message)) => {
                    return Outcome::Failed(
                        FailureKind::Unavailable,
                        format!("no instance: {message}"),
                    );
                }
            },
        };
        let Live {
            mut store,
            consumer,
        } = live;
        let state = store.data_mut();
        state.outbox.clear();
        state.limiter.hit = false;
        state.stderr.take_recent();
        store.set_epoch_deadline(PlexusEngine::ticks_for(self.plugin.timeout));
        let result = consumer.call_handle(&mut store, event);
        let outcome = match result {
            Ok(Ok(())) => Outcome::Done(std::mem::take(&mut store.data_mut().outbox)),
            Ok(Err(HandleError::Retry(reason))) => Outcome::Retry(reason),
            Ok(Err(HandleError::Reject(reason))) => Outcome::Failed(FailureKind::Rejected, reason),
            Err(error) => {
                let (kind, reason) = classify(&mut store, error, self.plugin.timeout, "handle");
                // The instance is poisoned; dropping the store frees it.
                return Outcome::Failed(kind, reason);
            }
        };
        self.live = Some(Live { store, consumer });
        outcome
    }
}

/// Names what stopped a call: the time limit, the memory limit, or a trap, with whatever
/// the guest printed to stderr just before (a panic message, typically).
fn classify(
    store: &mut Store<HostState>,
    error: wasmtime::Error,
    timeout: Duration,
    during: &str,
) -> (FailureKind, String) {
    let state = store.data_mut();
    let printed = state.stderr.take_recent();
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return (
            FailureKind::Timeout,
            format!(
                "{during} exceeded the time limit of {}ms",
                timeout.as_millis()
            ),
        );
    }
    if state.limiter.hit {
        return (
            FailureKind::MemoryLimit,
            format!(
                "{during} tried to grow memory past the limit of {}",
                crate::config::units::ByteSize(state.plugin.memory_limit as u64)
            ),
        );
    }
    let trap = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{}", error.root_cause()),
    };
    let reason = if printed.is_empty() {
        format!("{during} trapped: {trap}")
    } else {
        format!("{during} trapped: {trap}; guest stderr: {printed}")
    };
    (FailureKind::Trap, reason)
}
