//! The wasmtime side of Plexus: loading components, checking them against the world, and
//! running them under limits.
//!
//! # Layout
//! - [`engine`]: engine settings, the epoch ticker (time limits), the compile cache.
//! - [`component`]: reading, verifying and compiling a plugin file into a [`component::LoadedPlugin`].
//! - [`store`]: the per-instance host state (WASI context, outbox, memory limiter, log budget).
//! - [`deadline`]: runs a guest call on the calling thread until it ends or its time is up.
//! - [`imports`]: what the host does when a plugin calls `log`, `emit`, `config`, `clock`, `state`.
//! - [`linker`]: wires WASI and the imports into a linker (separate from implementing them).
//! - [`legacy`]: plugins built against the 0.1.0 contract: their imports and events.
//! - [`instance`]: [`instance::WasmPlugin`] and its handlers: calls, failure classification,
//!   re-instantiation after a trap.
//! - [`guest_output`]: a guest's stdout and stderr into the log.
//! - [`plugins`]: the plugins a config declares, loaded and initialised, errors located.

pub mod component;
pub mod deadline;
pub mod engine;
pub mod guest_output;
pub mod imports;
pub mod instance;
pub mod legacy;
pub mod linker;
pub mod plugins;
pub mod store;

/// wasmtime 48 has its own error type, which is not `std::error::Error`; keep its chain of
/// messages when crossing into `anyhow`.
pub fn into_anyhow(error: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{error:#}")
}
