//! Running a loaded plugin: [`WasmPlugin`] makes initialised instances, [`WasmHandler`] calls
//! `handle` under the plugin's limits and classifies what went wrong.
//!
//! Every call (instantiation and `init` together, or one `handle`) runs under two guards
//! with the same limit: epoch interruption traps a guest computing past it, and
//! [`deadline::run`] abandons a guest waiting in a host call past it. An instance that
//! trapped or was abandoned is never entered again: the handler drops its store, which frees
//! its memory, and instantiates afresh (a cheap step from the pre-instantiated component)
//! before the next event.

use super::component::{Guest, LoadedPlugin};
use super::deadline::{self, Raced};
use super::engine::PlexusEngine;
use super::store::{HostState, PluginContext};
use crate::bindings::HandleError;
use crate::config::units::ByteSize;
use crate::event::Event;
use crate::handler::{Handler, Outcome, Plugin};
use crate::metrics::FailureKind;
use crate::state::{Quota, Transaction};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Store, Trap};

/// A plugin backed by a wasm component.
#[derive(Clone)]
pub struct WasmPlugin {
    loaded: Arc<LoadedPlugin>,
    context: Arc<PluginContext>,
}

impl WasmPlugin {
    /// A plugin running `loaded` with `context` (which carries its limits).
    pub fn new(loaded: LoadedPlugin, context: PluginContext) -> Self {
        WasmPlugin {
            loaded: Arc::new(loaded),
            context: Arc::new(context),
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
        let limit = self.context.limits.init_timeout.0;
        store.set_epoch_deadline(PlexusEngine::ticks_for(limit));
        let config = self.context.config.clone();
        let pre = &self.loaded.pre;
        let mut during = "instantiating";
        let raced = deadline::run(limit, async {
            let guest = pre.instantiate(&mut store).await?;
            during = "init";
            let init = guest.init(&mut store, &config).await?;
            Ok::<_, wasmtime::Error>((guest, init))
        });
        self.end_call_logs(&store, "init");
        match raced {
            Raced::Finished(Ok((guest, Ok(())))) => Ok(Live { store, guest }),
            Raced::Finished(Ok((_, Err(message)))) => {
                Err((FailureKind::Unavailable, format!("init failed: {message}")))
            }
            Raced::Finished(Err(error)) => {
                Err(classify(&mut store, Stop::Trapped(error), limit, during))
            }
            Raced::Abandoned => Err(classify(&mut store, Stop::Abandoned, limit, during)),
        }
    }

    /// Logs what the call printed (one record per stream), and says how much log output
    /// went over the plugin's budget.
    fn end_call_logs(&self, store: &Store<HostState>, call: &str) {
        store.data().stdout.end_call();
        store.data().stderr.end_call();
        let budget = &store.data().log_budget;
        let dropped = budget.dropped();
        if dropped > 0 {
            tracing::warn!(
                plugin = %self.context.name,
                call,
                dropped_bytes = dropped,
                "log output over the limit of {} per call (limits.max_log_bytes) was dropped",
                ByteSize(budget.limit())
            );
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

    fn state_quota(&self) -> Quota {
        self.context.state_quota()
    }

    fn declares_emit(&self, topic: &str, type_: &str) -> bool {
        self.context
            .emits
            .as_ref()
            .is_none_or(|emits| emits.declares(topic, type_))
    }

    fn instantiate(&self) -> anyhow::Result<Box<dyn Handler>> {
        let live = self
            .live_instance()
            .map_err(|(_, message)| anyhow::anyhow!("{message}"))?;
        Ok(Box::new(WasmHandler {
            plugin: self.clone(),
            live: Some(live),
        }))
    }
}

struct Live {
    store: Store<HostState>,
    guest: Guest,
}

/// One instance of a wasm plugin, re-created after a trap.
pub struct WasmHandler {
    plugin: WasmPlugin,
    live: Option<Live>,
}

impl Handler for WasmHandler {
    fn handle(&mut self, event: &Event, txn: &mut Transaction) -> Outcome {
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
        let Live { mut store, guest } = live;
        store.data_mut().begin_call();
        // What a plugin may pass on as it came, whatever it declares it to be.
        store.data_mut().handled_payload = event.payload.clone();
        std::mem::swap(&mut store.data_mut().txn, txn);
        let limit = self.plugin.context.limits.timeout.0;
        store.set_epoch_deadline(PlexusEngine::ticks_for(limit));
        let raced = deadline::run(limit, guest.handle(&mut store, event));
        std::mem::swap(&mut store.data_mut().txn, txn);
        self.plugin.end_call_logs(&store, "handle");
        let outcome = match raced {
            Raced::Finished(Ok(Ok(()))) => Outcome::Done(store.data_mut().outbox.take()),
            Raced::Finished(Ok(Err(HandleError::Retry(reason)))) => Outcome::Retry(reason),
            Raced::Finished(Ok(Err(HandleError::Reject(reason)))) => {
                Outcome::Failed(FailureKind::Rejected, reason)
            }
            // The instance is poisoned (or was left mid-call); dropping the store frees it.
            Raced::Finished(Err(error)) => {
                let (kind, reason) = classify(&mut store, Stop::Trapped(error), limit, "handle");
                return Outcome::Failed(kind, reason);
            }
            Raced::Abandoned => {
                let (kind, reason) = classify(&mut store, Stop::Abandoned, limit, "handle");
                return Outcome::Failed(kind, reason);
            }
        };
        self.live = Some(Live { store, guest });
        outcome
    }
}

/// How a call stopped without returning.
enum Stop {
    /// It trapped (a panic, the epoch deadline, a refused memory growth, ...).
    Trapped(wasmtime::Error),
    /// Its deadline passed while it waited in a host call.
    Abandoned,
}

/// Names what stopped a call: the time limit, the memory limit, a stack overflow or another
/// trap, with whatever the guest printed to stderr just before (a panic message, typically).
fn classify(
    store: &mut Store<HostState>,
    stop: Stop,
    limit: Duration,
    during: &str,
) -> (FailureKind, String) {
    let state = store.data_mut();
    let printed = state.stderr.take_recent();
    // Shown as the limit was written in the config (`1s`, `200ms`).
    let limit = crate::config::units::Duration(limit);
    let error = match stop {
        Stop::Abandoned => {
            return (
                FailureKind::Timeout,
                format!("{during} exceeded the time limit of {limit} while waiting in a host call"),
            );
        }
        Stop::Trapped(error) => error,
    };
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return (
            FailureKind::Timeout,
            format!("{during} exceeded the time limit of {limit}"),
        );
    }
    if state.limiter.hit {
        return (
            FailureKind::MemoryLimit,
            format!(
                "{during} tried to grow memory past the limit of {}",
                ByteSize(state.limiter.limit() as u64)
            ),
        );
    }
    let trap = describe_trap(&error);
    let reason = if printed.is_empty() {
        format!("{during} trapped: {trap}")
    } else {
        format!("{during} trapped: {trap}; guest stderr: {printed}")
    };
    (FailureKind::Trap, reason)
}

/// Frames of one function at the top of a backtrace that make an out-of-bounds access
/// read as a stack overflow (wasmtime keeps the 20 innermost frames).
const RECURSION_FRAMES: usize = 16;

/// The trap in words, naming stack overflows as such: wasmtime's own (the native stack of
/// nested wasm calls) and the guest's. Toolchains like Rust's keep the stack in linear
/// memory; when it runs out the stack pointer wraps below 0 and the next write is out of
/// bounds, deep inside a recursion.
fn describe_trap(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => {
            "stack overflow (wasm calls nested deeper than the host's stack allows)".to_owned()
        }
        Some(Trap::MemoryOutOfBounds) if deep_recursion(error) => {
            "stack overflow: the guest's stack ran out (an out-of-bounds memory access at the bottom of a deep recursion)".to_owned()
        }
        Some(trap) => trap.to_string(),
        None => format!("{}", error.root_cause()),
    }
}

/// Whether the trap's backtrace is one function calling itself, frame after frame.
fn deep_recursion(error: &wasmtime::Error) -> bool {
    let Some(trace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = trace.frames();
    frames.len() >= RECURSION_FRAMES
        && frames[..RECURSION_FRAMES]
            .iter()
            .all(|f| f.func_index() == frames[0].func_index())
}
