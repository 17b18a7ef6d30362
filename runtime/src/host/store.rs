//! What each plugin instance's `Store` holds: its WASI context (no files, no environment, no
//! network; working clocks, coarsened: see ADR 19), the outbox of staged emits, the memory
//! limiter, the log budget, and the plugin-wide context shared by all instances.

use super::guest_output::{GuestOutput, LogBudget, Stream};
use crate::config::{Emits, Limits};
use crate::event::OutgoingEvent;
use crate::state::txn::Namespace;
use crate::state::{Quota, StateBackend, Transaction};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

/// What every instance of one plugin shares.
pub struct PluginContext {
    /// The plugin's name.
    pub name: Arc<str>,
    /// Its configuration entries: strings as they are, other TOML values as JSON.
    pub config: Vec<(String, String)>,
    /// The state store, namespaced by `name`.
    pub state: Arc<dyn StateBackend>,
    /// What one instance and one event may use.
    pub limits: Limits,
    /// What it declares it emits, if it declares anything.
    pub emits: Option<Emits>,
}

impl PluginContext {
    /// The quota of the plugin's state namespace.
    pub fn state_quota(&self) -> Quota {
        Quota {
            max_keys: self.limits.max_state_keys,
            max_bytes: self.limits.max_state_bytes.0,
        }
    }

    /// The plugin's namespace in the state store.
    pub fn namespace(&self) -> Namespace<'_> {
        Namespace {
            store: &*self.state,
            name: &self.name,
            quota: self.state_quota(),
        }
    }
}

/// The events staged by the call in progress, and their size.
#[derive(Default)]
pub struct Outbox {
    /// Staged events, in emit order.
    pub events: Vec<OutgoingEvent>,
    /// Their size, as [`crate::event::outgoing_size`] counts it.
    pub bytes: usize,
}

impl Outbox {
    /// Empties the outbox, returning what it held.
    pub fn take(&mut self) -> Vec<OutgoingEvent> {
        self.bytes = 0;
        std::mem::take(&mut self.events)
    }
}

/// The data of one instance's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Shared plugin context.
    pub plugin: Arc<PluginContext>,
    /// Events staged by the call in progress.
    pub outbox: Outbox,
    /// Enforces the memory limit and remembers that it was hit.
    pub limiter: MemoryLimiter,
    /// The guest's stdout.
    pub stdout: GuestOutput,
    /// The guest's stderr (its tail explains traps).
    pub stderr: GuestOutput,
    /// Log bytes the call in progress may still write (shared with stdout and stderr).
    pub log_budget: Arc<LogBudget>,
    /// The state transaction of the event being handled (a read-only one outside `handle`).
    pub txn: Transaction,
    /// The payload of the event being handled, which may be emitted again as it came.
    pub handled_payload: Option<Vec<u8>>,
}

impl HostState {
    /// State for a new instance of `plugin`.
    pub fn new(plugin: Arc<PluginContext>) -> Self {
        let log_budget = Arc::new(LogBudget::new(plugin.limits.max_log_bytes.0));
        let stderr = GuestOutput::new(plugin.name.clone(), Stream::Stderr, log_budget.clone());
        let stdout = GuestOutput::new(plugin.name.clone(), Stream::Stdout, log_budget.clone());
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(CoarseClock)
            .monotonic_clock(CoarseClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: plugin.limits.memory.0 as usize,
                hit: false,
            },
            plugin,
            outbox: Outbox::default(),
            stdout,
            stderr,
            log_budget,
            txn: Transaction::read_only(),
            handled_payload: None,
        }
    }

    /// Clears what one call leaves behind, before the next.
    pub fn begin_call(&mut self) {
        self.outbox.take();
        self.limiter.hit = false;
        self.stdout.clear_recent();
        self.stderr.clear_recent();
        self.log_budget.reset();
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The granularity of the clocks a plugin reads through WASI: fine enough for timing and
/// timeouts in guest code, too coarse to time a cache hit (see ADR 19).
const CLOCK_GRAIN: Duration = Duration::from_micros(1);

/// WASI's wall and monotonic clocks: the host's, rounded down to [`CLOCK_GRAIN`]. Language
/// runtimes read them as they start (Go's refuses a monotonic clock that reads zero), and
/// plugins time their own work with them. What an event is about has its own time, the
/// event's `time` attribute, which is what a plugin should decide on.
struct CoarseClock;

/// Rounds `duration` down to [`CLOCK_GRAIN`].
fn coarse(duration: Duration) -> Duration {
    let grain = CLOCK_GRAIN.as_nanos();
    Duration::from_nanos((duration.as_nanos() / grain * grain) as u64)
}

impl HostWallClock for CoarseClock {
    fn resolution(&self) -> Duration {
        CLOCK_GRAIN
    }
    fn now(&self) -> Duration {
        coarse(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        )
    }
}

impl HostMonotonicClock for CoarseClock {
    fn resolution(&self) -> u64 {
        CLOCK_GRAIN.as_nanos() as u64
    }
    fn now(&self) -> u64 {
        // Counted from the host's first read, plus a second, so it never reads zero.
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let since = ORIGIN.get_or_init(Instant::now).elapsed() + Duration::from_secs(1);
        coarse(since).as_nanos() as u64
    }
}

/// Refuses memory growth past the plugin's limit and records that it did.
pub struct MemoryLimiter {
    limit: usize,
    /// Set when a growth was refused; cleared before each call.
    pub hit: bool,
}

impl MemoryLimiter {
    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// The most table elements an instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
