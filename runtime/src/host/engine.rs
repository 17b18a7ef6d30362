//! The process-wide wasmtime engine: its configuration, the epoch ticker that enforces
//! per-event time limits, and the on-disk cache of compiled components.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;
use wasmtime::component::Component;

/// How often the epoch advances; time limits are enforced to within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine and what belongs with it. Clones share it.
#[derive(Clone)]
pub struct PlexusEngine {
    engine: wasmtime::Engine,
    cache: Option<Arc<CompileCache>>,
    _ticker: Arc<Ticker>,
}

impl PlexusEngine {
    /// An engine caching compiled components under `cache_dir` (no cache if `None`).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = wasmtime::Engine::new(&config).map_err(super::into_anyhow)?;
        let cache = cache_dir.map(|dir| Arc::new(CompileCache::new(&engine, dir)));
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

    /// Compiles `bytes` (digest `sha256`), or loads the compiled form from the cache.
    /// Returns the component and whether it came from the cache.
    pub fn compile(&self, bytes: &[u8], sha256: &[u8; 32]) -> wasmtime::Result<(Component, bool)> {
        if let Some(cache) = &self.cache
            && let Some(component) = cache.load(&self.engine, sha256)
        {
            return Ok((component, true));
        }
        let component = Component::new(&self.engine, bytes)?;
        if let Some(cache) = &self.cache {
            cache.store(&component, sha256);
        }
        Ok((component, false))
    }
}

/// Compiled components on disk, keyed by the wasm's digest and the engine's settings.
struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    fn new(engine: &wasmtime::Engine, base: PathBuf) -> Self {
        // A different wasmtime or configuration compiles differently: give it its own folder.
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_id = format!("{:016x}", hasher.finish());
        CompileCache {
            dir: base.join(format!("wasmtime-48-{engine_id}")),
        }
    }

    fn path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.cwasm", hex::encode(sha256)))
    }

    fn load(&self, engine: &wasmtime::Engine, sha256: &[u8; 32]) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        match deserialize(engine, &path) {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring unusable cache entry");
                None
            }
        }
    }

    fn store(&self, component: &Component, sha256: &[u8; 32]) {
        let result = (|| -> anyhow::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let bytes = component.serialize().map_err(super::into_anyhow)?;
            // Write then rename, so a reader never sees half a file.
            let tmp = self.dir.join(format!(
                ".{}.{}.tmp",
                hex::encode(sha256),
                std::process::id()
            ));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, self.path(sha256))?;
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(dir = %self.dir.display(), %error, "could not cache a compiled plugin");
        }
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &wasmtime::Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the cache directory holds only files this module wrote with
    // `Component::serialize` for an engine with the same compatibility hash (it is part of
    // the directory name); wasmtime checks the header and refuses mismatched artifacts.
    unsafe { Component::deserialize_file(engine, path) }
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
