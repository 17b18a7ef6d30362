//! Internals that this repository's tests and benchmarks reach, behind the `testing`
//! feature: they are not part of the embedding API and may change at any time.

pub use crate::broker::embedded::{EmbeddedBroker, InputGuard};
pub use crate::dispatch::publish::Publisher;
pub use crate::dispatch::retry::RetryPolicy;
pub use crate::dispatch::{RouteSpec, start_route};
pub use crate::host::engine::{PlexusEngine, sha256};
pub use crate::host::instance::WasmPlugin;
pub use crate::host::store::PluginContext;
pub use crate::metrics::RouteMetrics;
pub use crate::runtime::Runtime;
pub use crate::state::conformance::conformance as state_conformance;

/// The CloudEvents JSON format.
pub mod cloudevents {
    pub use crate::cloudevents::{decode, encode};
}

/// The CloudEvents Kafka binding.
pub mod kafka_binding {
    pub use crate::broker::kafka::binding::*;
}

/// Reading a plugin file into a compiled, checked component.
pub mod component {
    pub use crate::host::component::*;
}

impl Runtime {
    /// The embedded broker, if that is the one (tests append to it and read from it).
    pub fn embedded_broker(&self) -> Option<&EmbeddedBroker> {
        self.broker().as_embedded()
    }

    /// Holds the run open as if an input were still being fed (embedded broker).
    pub fn hold_open(&self) -> Option<InputGuard> {
        self.broker().open_input()
    }
}
