//! The process-wide wasmtime engine: its configuration, the epoch ticker that enforces
//! per-event time limits, and the on-disk cache of compiled components.

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;
use wasmtime::component::Component;

/// How often the epoch advances; time limits are enforced to within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine and what belongs with it. Clones share it.
#[derive(Clone)]
pub struct PlexusEngine {
    engine: wasmtime::Engine,
    cache: Option<wasmtime::Cache>,
    _ticker: Arc<Ticker>,
}

impl PlexusEngine {
    /// An engine caching compiled components under `cache_dir` (no cache if `None`).
    ///
    /// The cache is wasmtime's own (ADR 12): keyed by the component's bytes and every engine
    /// setting that changes the compiled code, written atomically, compressed, and trimmed
    /// in the background. A cache that cannot be set up (a read-only directory) only costs
    /// compile time: the engine runs without one and says so.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let cache = cache_dir.and_then(|dir| {
            let mut settings = wasmtime::CacheConfig::new();
            settings.with_directory(&dir);
            wasmtime::Cache::new(settings)
                .inspect_err(|error| {
                    tracing::warn!(dir = %dir.display(), "compiled plugins will not be cached: {error:#}");
                })
                .ok()
        });
        config.cache(cache.clone());
        let engine = wasmtime::Engine::new(&config).map_err(super::into_anyhow)?;
        let ticker = Ticker::start(&engine)?;
        Ok(PlexusEngine {
            engine,
            cache,
            _ticker: ticker,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Epoch ticks that cover `timeout`, rounded up, plus one for the tick in progress.
    pub fn ticks_for(timeout: Duration) -> u64 {
        timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64 + 1
    }

    /// Compiles `bytes`, or loads the compiled form from the cache. Returns the component and
    /// whether it came from the cache (as wasmtime counts hits: exact when one component is
    /// compiled at a time, as plugins are).
    pub fn compile(&self, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let hits = || self.cache.as_ref().map_or(0, wasmtime::Cache::cache_hits);
        let before = hits();
        let component = Component::new(&self.engine, bytes)?;
        Ok((component, hits() > before))
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the last engine clone is dropped.
struct Ticker;

impl Ticker {
    fn start(engine: &wasmtime::Engine) -> anyhow::Result<Arc<Ticker>> {
        let ticker = Arc::new(Ticker);
        let alive: Weak<Ticker> = Arc::downgrade(&ticker);
        let engine = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while alive.strong_count() > 0 {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(ticker)
    }
}

/// The SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
