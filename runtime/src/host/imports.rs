//! The host side of the `plexus:plugin` imports: what happens when a plugin logs, emits,
//! reads its config or the clock, or touches its state. Each holds the plugin to its limits
//! (log bytes, outbox events and bytes, state quota) before the host keeps anything.

use super::store::HostState;
use crate::attributes::check_extension_name;
use crate::bindings::plexus::plugin::{clock, config, emitter, log, state, types};
use crate::cloudevents::is_json_content_type;
use crate::config::units::{ByteSize, TopicName};
use crate::event::{OutgoingEvent, now_millis, outgoing_size};
use crate::log_context::plugin_event;
use crate::state::StateError;
use std::time::Duration;
use tracing::Level;

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        if !self.log_budget.admit(message.len()) {
            return;
        }
        let plugin = &*self.plugin.name;
        match level {
            log::Level::Trace => plugin_event!(Level::TRACE, plugin, "{message}"),
            log::Level::Debug => plugin_event!(Level::DEBUG, plugin, "{message}"),
            log::Level::Info => plugin_event!(Level::INFO, plugin, "{message}"),
            log::Level::Warn => plugin_event!(Level::WARN, plugin, "{message}"),
            log::Level::Error => plugin_event!(Level::ERROR, plugin, "{message}"),
        }
    }
}

impl emitter::Host for HostState {
    fn emit(&mut self, event: OutgoingEvent) -> Result<(), String> {
        let limits = &self.plugin.limits;
        if self.outbox.events.len() >= limits.max_emits as usize {
            return Err(format!(
                "emit limit reached: at most {} events per handled event (limits.max_emits)",
                limits.max_emits
            ));
        }
        let size = outgoing_size(&event);
        let budget = limits.max_outbox_bytes.0 as usize;
        if self.outbox.bytes + size > budget {
            return Err(format!(
                "outbox limit reached: this event of {} would take the staged events past {} per handled event (limits.max_outbox_bytes)",
                ByteSize(size as u64),
                limits.max_outbox_bytes
            ));
        }
        event.topic.parse::<TopicName>()?;
        if event.type_.is_empty() {
            return Err("an emitted event needs a type".to_owned());
        }
        for attribute in &event.extensions {
            check_extension_name(&attribute.name)?;
        }
        check_json_payload(&event, self.handled_payload.as_deref())?;
        self.outbox.bytes += size;
        self.outbox.events.push(event);
        Ok(())
    }
}

/// A payload a plugin makes and declares JSON (`application/json`, `*/*+json`) must be
/// JSON: written out as it is, anything else would reach consumers as a quoted string or in
/// base64, silently. The payload of the event being handled (`handled`) may be passed on as
/// it came, whatever it holds: forwarding keeps every event as it is.
fn check_json_payload(event: &OutgoingEvent, handled: Option<&[u8]>) -> Result<(), String> {
    let (Some(content_type), Some(payload)) = (&event.content_type, &event.payload) else {
        return Ok(());
    };
    // An event without data passes on as an empty payload.
    if !is_json_content_type(content_type) || handled.unwrap_or_default() == payload.as_slice() {
        return Ok(());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(payload)
        .map(|_| ())
        .map_err(|error| {
            format!("the payload is declared `{content_type}` but is not JSON: {error}")
        })
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
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, state::StateError> {
        let plugin = self.plugin.clone();
        self.txn
            .get(&plugin.namespace(), &key)
            .await
            .map_err(to_wit)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_millis: Option<u64>,
    ) -> Result<(), state::StateError> {
        let ttl = ttl_millis.map(Duration::from_millis);
        let plugin = self.plugin.clone();
        self.txn
            .set(&plugin.namespace(), &key, value, ttl)
            .await
            .map_err(to_wit)
    }

    async fn delete(&mut self, key: String) -> Result<bool, state::StateError> {
        let plugin = self.plugin.clone();
        self.txn
            .delete(&plugin.namespace(), &key)
            .await
            .map_err(to_wit)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        ttl_millis: Option<u64>,
    ) -> Result<bool, state::StateError> {
        let ttl = ttl_millis.map(Duration::from_millis);
        let plugin = self.plugin.clone();
        self.txn
            .compare_and_swap(&plugin.namespace(), &key, expected.as_deref(), new, ttl)
            .await
            .map_err(to_wit)
    }
}
