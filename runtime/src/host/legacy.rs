//! Plugins built against the 0.1.0 contract keep working: their imports are served by the
//! same host code as the current ones, and events are converted at the boundary.
//!
//! 0.1.0 has no typed extension attributes, no `dataschema`, no nanosecond time and no
//! difference between empty and absent data. So a 0.1.0 plugin sees extension attributes
//! and `dataschema` as headers holding their canonical string encoding (as before 0.2.0),
//! `time` as milliseconds, and absent data as empty; what it emits comes back the other
//! way: a header with a valid attribute name becomes a string extension attribute, any other
//! a transport header, and an empty payload means no data.

use super::store::HostState;
use crate::attributes::{self, check_extension_name};
use crate::bindings::plexus::plugin::{clock, config, emitter, log, state};
use crate::bindings::v0_1::plexus::plugin as old;
use crate::cloudevents::parse_rfc3339_millis;
use crate::event::{Attribute, AttributeValue, Event, Header, OutgoingEvent};

/// The 0.1.0 form of `event`.
pub fn event_to_v0_1(event: &Event) -> old::types::Event {
    let mut headers: Vec<old::types::Header> = event
        .extensions
        .iter()
        .map(|a| old::types::Header {
            name: a.name.clone(),
            value: attributes::canonical_string(&a.value).into_bytes(),
        })
        .collect();
    if let Some(schema) = &event.dataschema {
        headers.push(old::types::Header {
            name: "dataschema".to_owned(),
            value: schema.as_bytes().to_vec(),
        });
    }
    headers.extend(event.headers.iter().map(|h| old::types::Header {
        name: h.name.clone(),
        value: h.value.clone(),
    }));
    old::types::Event {
        id: event.id.clone(),
        type_: event.type_.clone(),
        source: event.source.clone(),
        subject: event.subject.clone(),
        topic: event.topic.clone(),
        partition: event.partition,
        offset: event.offset,
        key: event.key.clone(),
        timestamp: event
            .time
            .as_deref()
            .and_then(|t| parse_rfc3339_millis(t).ok()),
        content_type: event.content_type.clone(),
        correlation_id: event.correlation_id.clone(),
        headers,
        payload: event.payload.clone().unwrap_or_default(),
        attempt: event.attempt,
    }
}

/// The current form of an event a 0.1.0 plugin emitted.
pub fn outgoing_from_v0_1(out: old::types::OutgoingEvent) -> OutgoingEvent {
    let mut extensions = Vec::new();
    let mut headers = Vec::new();
    let mut dataschema = None;
    for header in out.headers {
        let text = String::from_utf8(header.value);
        match text {
            Ok(text) if header.name == "dataschema" => dataschema = Some(text),
            Ok(text) if check_extension_name(&header.name).is_ok() => extensions.push(Attribute {
                name: header.name,
                value: AttributeValue::String(text),
            }),
            Ok(text) => headers.push(Header {
                name: header.name,
                value: text.into_bytes(),
            }),
            Err(bytes) => headers.push(Header {
                name: header.name,
                value: bytes.into_bytes(),
            }),
        }
    }
    OutgoingEvent {
        topic: out.topic,
        type_: out.type_,
        key: out.key,
        subject: out.subject,
        content_type: out.content_type,
        dataschema,
        extensions,
        headers,
        payload: (!out.payload.is_empty()).then_some(out.payload),
    }
}

impl old::types::Host for HostState {}

impl old::log::Host for HostState {
    fn log(&mut self, level: old::log::Level, message: String) {
        let level = match level {
            old::log::Level::Trace => log::Level::Trace,
            old::log::Level::Debug => log::Level::Debug,
            old::log::Level::Info => log::Level::Info,
            old::log::Level::Warn => log::Level::Warn,
            old::log::Level::Error => log::Level::Error,
        };
        log::Host::log(self, level, message);
    }
}

impl old::emitter::Host for HostState {
    fn emit(&mut self, event: old::types::OutgoingEvent) -> Result<(), String> {
        emitter::Host::emit(self, outgoing_from_v0_1(event))
    }
}

impl old::config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        config::Host::get(self, key)
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        config::Host::entries(self)
    }
}

impl old::clock::Host for HostState {
    fn now_millis(&mut self) -> i64 {
        clock::Host::now_millis(self)
    }
}

fn old_state_error(error: state::StateError) -> old::state::StateError {
    match error {
        state::StateError::TooLarge(message) => old::state::StateError::TooLarge(message),
        state::StateError::Unavailable(message) => old::state::StateError::Unavailable(message),
    }
}

impl old::state::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, old::state::StateError> {
        state::Host::get(self, key).await.map_err(old_state_error)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_millis: Option<u64>,
    ) -> Result<(), old::state::StateError> {
        state::Host::set(self, key, value, ttl_millis)
            .await
            .map_err(old_state_error)
    }

    async fn delete(&mut self, key: String) -> Result<bool, old::state::StateError> {
        state::Host::delete(self, key)
            .await
            .map_err(old_state_error)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        ttl_millis: Option<u64>,
    ) -> Result<bool, old::state::StateError> {
        state::Host::compare_and_swap(self, key, expected, new, ttl_millis)
            .await
            .map_err(old_state_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_reach_a_0_1_plugin_as_text_headers_and_come_back_as_attributes() {
        let event = crate::cloudevents::decode(
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2026-01-01T00:00:00.5Z","dataschema":"https://s","count":5,"urgent":true}"#,
        )
        .unwrap();
        let old = event_to_v0_1(&event);
        let header = |n: &str| {
            old.headers
                .iter()
                .find(|h| h.name == n)
                .map(|h| String::from_utf8(h.value.clone()).unwrap())
        };
        assert_eq!(header("count").as_deref(), Some("5"));
        assert_eq!(header("urgent").as_deref(), Some("true"));
        assert_eq!(header("dataschema").as_deref(), Some("https://s"));
        assert_eq!(old.timestamp, Some(1_767_225_600_500));
        assert!(old.payload.is_empty());

        let out = outgoing_from_v0_1(old::types::OutgoingEvent {
            topic: "t".into(),
            type_: "t".into(),
            key: None,
            subject: None,
            content_type: None,
            headers: old.headers,
            payload: Vec::new(),
        });
        assert_eq!(out.dataschema.as_deref(), Some("https://s"));
        assert!(out.extensions.iter().any(|a| a.name == "count"));
        assert_eq!(out.payload, None);
    }
}
