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

    /// [`Runtime::start`] on the embedded broker, held open (as if an input were being fed)
    /// from before any route polls, until the guard is dropped.
    pub fn start_held(
        config: crate::config::Config,
        shutdown: crate::Shutdown,
    ) -> anyhow::Result<(Runtime, InputGuard)> {
        let (runtime, guard) =
            Runtime::start_holding(config, shutdown, crate::ops::board::Board::new(), true)?;
        let guard = guard.ok_or_else(|| anyhow::anyhow!("not the embedded broker"))?;
        Ok((runtime, guard))
    }
}
