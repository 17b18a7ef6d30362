//! Turning a plugin file into something ready to instantiate, with a clear error for each
//! way it can be wrong: unreadable, digest mismatch, not wasm, a core module instead of a
//! component, or a component of another world.

use super::engine::{PlexusEngine, sha256};
use super::linker::consumer_linker;
use super::store::HostState;
use crate::bindings::ConsumerPre;
use std::path::Path;
use std::time::{Duration, Instant};

/// The world every plugin must target.
pub const WORLD: &str = "plexus:plugin/consumer@0.1.0";

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Version and layer words of a core module (version 1, layer 0).
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// Why a plugin file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file's digest is not the pinned one.
    #[error("sha256 mismatch for {path}: the config pins {expected}, the file has {actual}")]
    DigestMismatch {
        /// The file.
        path: String,
        /// The pinned digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// Not WebAssembly at all.
    #[error("{path} is not a WebAssembly file (it does not start with the \\0asm header)")]
    NotWasm {
        /// The file.
        path: String,
    },
    /// A core module, not a component.
    #[error(
        "{path} is a core WebAssembly module, not a component: build the plugin for wasm32-wasip2 (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule {
        /// The file.
        path: String,
    },
    /// wasmtime could not compile it.
    #[error("{path} does not compile: {reason}")]
    Compile {
        /// The file.
        path: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// It is a component, but not of the consumer world.
    #[error("{path} does not implement the {WORLD} world: {reason}")]
    WrongWorld {
        /// The file.
        path: String,
        /// What does not match.
        reason: String,
    },
}

/// A verified, compiled plugin, ready to instantiate.
pub struct LoadedPlugin {
    /// `name@sha256:<hex>`.
    pub version: String,
    /// The digest of the file.
    pub digest: [u8; 32],
    /// The pre-instantiated component (imports resolved once, up front).
    pub pre: ConsumerPre<HostState>,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// How long reading, compiling (or loading) and linking took.
    pub load_time: Duration,
}

/// Reads `path`, checks it, compiles it (or takes it from the cache) and links it.
pub fn load(
    engine: &PlexusEngine,
    name: &str,
    path: &Path,
    pinned: Option<&[u8; 32]>,
) -> Result<LoadedPlugin, LoadError> {
    let started = Instant::now();
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
        path: shown.clone(),
        error,
    })?;
    let digest = sha256(&bytes);
    if let Some(expected) = pinned
        && *expected != digest
    {
        return Err(LoadError::DigestMismatch {
            path: shown,
            expected: hex::encode(expected),
            actual: hex::encode(digest),
        });
    }
    check_header(&bytes, &shown)?;
    let (component, from_cache) =
        engine
            .compile(&bytes, &digest)
            .map_err(|e| LoadError::Compile {
                path: shown.clone(),
                reason: format!("{e:#}"),
            })?;
    let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
        path: shown.clone(),
        reason: format!("{e:#}"),
    };
    let linker = consumer_linker(engine.engine()).map_err(wrong_world)?;
    let instance_pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
    let pre = ConsumerPre::new(instance_pre).map_err(wrong_world)?;
    Ok(LoadedPlugin {
        version: format!("{name}@sha256:{}", hex::encode(digest)),
        digest,
        pre,
        from_cache,
        load_time: started.elapsed(),
    })
}

fn check_header(bytes: &[u8], path: &str) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(LoadError::NotWasm {
            path: path.to_owned(),
        });
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(LoadError::CoreModule {
            path: path.to_owned(),
        });
    }
    Ok(())
}
