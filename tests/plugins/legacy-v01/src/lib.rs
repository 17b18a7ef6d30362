//! A plugin built against the frozen 0.1.0 contract (`wit/v0.1.0`), standing in for plugins
//! built with the SDK before 0.2.0. (It runs `generate!` itself only because no SDK of that
//! version is kept.) For each event it emits, to the `out` config topic, an event of type
//! `legacy.echo` carrying every header it received (so extension attributes come back), a
//! `legacy-note` header, and as data a JSON report of what it saw: headers, time, data size.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "plexus:plugin/consumer",
});

use plexus::plugin::emitter::emit;
use plexus::plugin::types::{Header, OutgoingEvent};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

struct Legacy;

/// The `out` config value (set once by `init`; each instance has its own memory).
static OUT: OnceLock<String> = OnceLock::new();

impl Guest for Legacy {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let topic = config
            .into_iter()
            .find(|(k, _)| k == "out")
            .map_or_else(|| "echo".to_owned(), |(_, v)| v);
        let _ = OUT.set(topic);
        Ok(())
    }

    fn handle(event: Event) -> Result<(), HandleError> {
        let seen: Map<String, Value> = event
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    Value::String(String::from_utf8_lossy(&h.value).into_owned()),
                )
            })
            .collect();
        let report = json!({
            "headers": seen,
            "timestamp": event.timestamp,
            "payload_len": event.payload.len(),
        });
        let mut headers = event.headers.clone();
        headers.push(Header {
            name: "legacy-note".to_owned(),
            value: b"from 0.1.0".to_vec(),
        });
        emit(&OutgoingEvent {
            topic: OUT.get().cloned().unwrap_or_default(),
            type_: "legacy.echo".to_owned(),
            key: event.key.clone(),
            subject: Some(event.id.clone()),
            content_type: Some("application/json".to_owned()),
            headers,
            payload: serde_json::to_vec(&report).map_err(|e| HandleError::Reject(e.to_string()))?,
        })
        .map_err(HandleError::Reject)
    }
}

export!(Legacy);
