//! Host bindings for the `plexus:plugin/consumer` world, generated once from `wit/`.
//!
//! Everything else in the crate uses these types (the contract's `event` record is also the
//! runtime's in-memory event) so an event is never converted between two shapes on its way
//! into a plugin.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plexus:plugin/consumer",
    // Only the guest-visible types need these; they keep `Event` cheap to compare in tests.
    additional_derives: [PartialEq, Eq],
});

pub use self::plexus::plugin::types::{Header, OutgoingEvent};
