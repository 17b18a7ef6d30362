//! `plexus componentize CORE.wasm -o PLUGIN.wasm`: makes a plugin component of a core
//! WebAssembly module built for WASI preview 1 as a reactor, which is what stock Go
//! (`GOOS=wasip1 -buildmode=c-shared`) and clang with wasi-libc (`-mexec-model=reactor`)
//! produce.
//!
//! The module gets the `plexus:plugin/consumer` world's type (unless it links one in, as
//! the C bindings do) and the WASI preview 1 adapter, which turns its preview 1 calls into
//! the WASI 0.2 the host serves. Both are embedded in this binary, the adapter matched to
//! the host's WASI, so no `wasm-tools` is needed and the result always loads here.

use super::bindings::consumer_world;
use std::path::Path;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};

/// The component made of core module `module`.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    if !module.starts_with(b"\0asm\x01\0\0\0") {
        return Err(if module.starts_with(b"\0asm") {
            "this is already a component (or not a core module): give the module the compiler wrote"
                .to_owned()
        } else {
            "this is not a WebAssembly module".to_owned()
        });
    }
    let mut module = module.to_vec();
    let (resolve, world) = consumer_world();
    // A module that links the world's type in (the C bindings' object) carries it twice
    // after this; the encoder merges identical worlds.
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8, false)
        .map_err(|e| format!("embedding the consumer world: {e:#}"))?;
    ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|encoder| {
            encoder.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|encoder| encoder.encode())
        .map_err(|e| format!("{e:#}"))
}

/// `plexus componentize`: reads `core`, writes the component to `out`; returns the exit
/// code.
pub fn componentize_file(core: &Path, out: &Path) -> i32 {
    let made = std::fs::read(core)
        .map_err(|e| format!("reading {}: {e}", core.display()))
        .and_then(|module| componentize(&module).map_err(|e| format!("{}: {e}", core.display())))
        .and_then(|component| {
            std::fs::write(out, &component)
                .map(|()| component.len())
                .map_err(|e| format!("writing {}: {e}", out.display()))
        });
    match made {
        Ok(bytes) => {
            println!("wrote {} ({bytes} bytes)", out.display());
            0
        }
        Err(error) => {
            eprintln!("error: {error}");
            super::EXIT_INVALID
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_core_module_is_refused_with_the_reason() {
        let not_wasm = componentize(b"hello").unwrap_err();
        assert!(not_wasm.contains("not a WebAssembly module"), "{not_wasm}");
        let component_header = b"\0asm\x0d\0\x01\0";
        let component = componentize(component_header).unwrap_err();
        assert!(component.contains("already a component"), "{component}");
    }

    #[test]
    fn a_module_that_does_not_export_the_world_is_refused() {
        // A valid core module with no `init` or `handle`.
        let empty = b"\0asm\x01\0\0\0";
        let error = componentize(empty).unwrap_err();
        assert!(
            error.contains("init") || error.contains("handle"),
            "{error}"
        );
    }
}
