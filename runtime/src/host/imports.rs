//! The host side of the `plexus:plugin` imports: what happens when a plugin logs, emits,
//! reads its config or the clock, or touches its state.

use super::store::HostState;
use crate::bindings::plexus::plugin::{clock, config, emitter, log, state, types};
use crate::config::units::TopicName;
use crate::event::{OutgoingEvent, now_millis};
use crate::state::StateError;
use std::time::Duration;

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let plugin = &*self.plugin.name;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl emitter::Host for HostState {
    fn emit(&mut self, event: OutgoingEvent) -> Result<(), String> {
        if self.outbox.len() >= self.plugin.max_emits {
            return Err(format!(
                "emit limit reached: at most {} events per handled event",
                self.plugin.max_emits
            ));
        }
        event.topic.parse::<TopicName>()?;
        if event.type_.is_empty() {
            return Err("an emitted event needs a type".to_owned());
        }
        self.outbox.push(event);
        Ok(())
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.plugin
            .config
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.plugin.config.clone()
    }
}

impl clock::Host for HostState {
    fn now_millis(&mut self) -> i64 {
        now_millis()
    }
}

fn to_wit(error: StateError) -> state::StateError {
    match error {
        StateError::TooLarge(message) => state::StateError::TooLarge(message),
        StateError::Unavailable(message) => state::StateError::Unavailable(message),
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, state::StateError> {
        self.plugin
            .state
            .get(&self.plugin.name, &key)
            .map_err(to_wit)
    }

    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_millis: Option<u64>,
    ) -> Result<(), state::StateError> {
        let ttl = ttl_millis.map(Duration::from_millis);
        self.plugin
            .state
            .set(&self.plugin.name, &key, value, ttl)
            .map_err(to_wit)
    }

    fn delete(&mut self, key: String) -> Result<bool, state::StateError> {
        self.plugin
            .state
            .delete(&self.plugin.name, &key)
            .map_err(to_wit)
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        ttl_millis: Option<u64>,
    ) -> Result<bool, state::StateError> {
        let ttl = ttl_millis.map(Duration::from_millis);
        self.plugin
            .state
            .compare_and_swap(&self.plugin.name, &key, expected.as_deref(), new, ttl)
            .map_err(to_wit)
    }
}
