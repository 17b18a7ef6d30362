//! Wiring: the one place that decides what a plugin can import. WASI (with the empty
//! context from [`super::store`]) and the `plexus:plugin` interfaces, current and 0.1.0 (see
//! [`super::legacy`]); nothing else. All are linked for async calls, so a guest waiting in a
//! host call can be abandoned at its deadline.

use super::store::HostState;
use crate::bindings::{Consumer, v0_1};
use wasmtime::component::{HasSelf, Linker};

/// A linker providing everything the `consumer` world may import.
pub fn consumer_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Consumer::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    v0_1::Consumer::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    Ok(linker)
}
