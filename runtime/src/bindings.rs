//! Host bindings for the `plexus:plugin/consumer` world, generated once from `wit/`: the
//! current version at the top level, and the frozen 0.1.0 in [`v0_1`] for plugins built
//! against it (converted in [`crate::host::legacy`]).
//!
//! Everything else in the crate uses the current types (the contract's `event` record is also
//! the runtime's in-memory event) so an event is never converted between two shapes on its way
//! into a current plugin.
//!
//! Exports are called asynchronously, so a guest call is a future the host can abandon at its
//! deadline even while the guest waits in a host call (see [`crate::host::deadline`]). The
//! `state` imports are async because a state backend may wait on I/O; the others answer at
//! once.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plexus:plugin/consumer",
    imports: { "plexus:plugin/state": async },
    exports: { default: async },
    // Only the guest-visible types need these; they keep `Event` cheap to compare in tests.
    additional_derives: [PartialEq, Eq],
});

pub use self::plexus::plugin::types::{Attribute, AttributeValue, Header, OutgoingEvent};

/// The 0.1.0 contract, for plugins built against it.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plexus:plugin/consumer",
        imports: { "plexus:plugin/state": async },
        exports: { default: async },
    });
}
