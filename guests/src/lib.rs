//! The plugins of this repository as built components: the examples (`plugins/`) and the
//! test plugins (`tests/plugins/`), built for `wasm32-wasip2` by this crate's build script
//! and copied to `target/plugins/`, where the example configs find them.
//!
//! Each plugin is named by a constant holding the absolute path of its component (the
//! package name in upper snake case: `ORDER_VALIDATOR` for `order-validator`), so a test
//! that names a plugin that does not exist does not compile. The build script reruns only
//! when a plugin's sources, the SDK or the WIT change; it installs nothing: the wasm target
//! (or its fallback) is set up by `scripts/setup-wasm-toolchain`.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
