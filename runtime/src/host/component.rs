//! Turning a plugin file into something ready to instantiate, with a clear error for each
//! way it can be wrong: unreadable, digest mismatch, not wasm, a core module instead of a
//! component, or a component of another world. A component of the current contract or of
//! 0.1.0 (see [`super::legacy`]) is accepted; [`Pre`] says which.

use super::engine::{PlexusEngine, sha256};
use super::linker::consumer_linker;
use super::store::HostState;
use crate::bindings::{Consumer, ConsumerPre, v0_1};
use std::path::Path;
use std::time::{Duration, Instant};
use wasmtime::Store;

/// The world plugins target.
pub const WORLD: &str = "plexus:plugin/consumer@0.2.0";
/// The earlier world whose plugins still load.
pub const WORLD_V0_1: &str = "plexus:plugin/consumer@0.1.0";

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
    #[error("{path} does not implement the {WORLD} world (nor {WORLD_V0_1}): {reason}")]
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
    pub pre: Pre,
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
    let (component, from_cache) = engine.compile(&bytes).map_err(|e| LoadError::Compile {
        path: shown.clone(),
        reason: format!("{e:#}"),
    })?;
    let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
        path: shown.clone(),
        reason: format!("{e:#}"),
    };
    let linker = consumer_linker(engine.engine()).map_err(wrong_world)?;
    let instance_pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
    let pre = match ConsumerPre::new(instance_pre.clone()) {
        Ok(pre) => Pre::Current(pre),
        Err(current) => match v0_1::ConsumerPre::new(instance_pre) {
            Ok(pre) => Pre::V0_1(pre),
            Err(_) => return Err(wrong_world(current)),
        },
    };
    Ok(LoadedPlugin {
        version: format!("{name}@sha256:{}", hex::encode(digest)),
        digest,
        pre,
        from_cache,
        load_time: started.elapsed(),
    })
}

/// A component ready to instantiate, by the contract version it was built against.
pub enum Pre {
    /// The current contract.
    Current(ConsumerPre<HostState>),
    /// The 0.1.0 contract.
    V0_1(v0_1::ConsumerPre<HostState>),
}

/// An instance of either contract version.
pub enum Guest {
    /// The current contract.
    Current(Consumer),
    /// The 0.1.0 contract.
    V0_1(v0_1::Consumer),
}

impl Pre {
    /// The engine it was compiled for.
    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            Pre::Current(pre) => pre.engine(),
            Pre::V0_1(pre) => pre.engine(),
        }
    }

    /// The contract's world.
    pub fn world(&self) -> &'static str {
        match self {
            Pre::Current(_) => WORLD,
            Pre::V0_1(_) => WORLD_V0_1,
        }
    }

    /// A new instance in `store`.
    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Guest> {
        Ok(match self {
            Pre::Current(pre) => Guest::Current(pre.instantiate_async(store).await?),
            Pre::V0_1(pre) => Guest::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

impl Guest {
    /// Calls `init`.
    pub async fn init(
        &self,
        store: &mut Store<HostState>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Guest::Current(guest) => guest.call_init(store, config).await,
            Guest::V0_1(guest) => guest.call_init(store, config).await,
        }
    }

    /// Calls `handle` (converting the event for a 0.1.0 plugin).
    pub async fn handle(
        &self,
        store: &mut Store<HostState>,
        event: &crate::event::Event,
    ) -> wasmtime::Result<Result<(), crate::bindings::HandleError>> {
        use crate::bindings::HandleError;
        match self {
            Guest::Current(guest) => guest.call_handle(store, event).await,
            Guest::V0_1(guest) => {
                let old = super::legacy::event_to_v0_1(event);
                Ok(match guest.call_handle(store, &old).await? {
                    Ok(()) => Ok(()),
                    Err(v0_1::HandleError::Retry(reason)) => Err(HandleError::Retry(reason)),
                    Err(v0_1::HandleError::Reject(reason)) => Err(HandleError::Reject(reason)),
                })
            }
        }
    }
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
