//! Staging outgoing events. The host publishes them only if `handle` returns `Ok`, stamping
//! each with a deterministic id, the correlation id and the trace context of the event being
//! handled.

use crate::HandleError;
use crate::bindings::plexus::plugin::{emitter, types};
use serde::Serialize;

/// An event to emit, built step by step.
#[derive(Debug, Clone)]
pub struct Outgoing(types::OutgoingEvent);

impl Outgoing {
    /// An empty event of CloudEvents type `event_type`, for `topic`.
    pub fn new(topic: &str, event_type: &str) -> Self {
        Outgoing(types::OutgoingEvent {
            topic: topic.to_owned(),
            type_: event_type.to_owned(),
            key: None,
            subject: None,
            content_type: None,
            headers: Vec::new(),
            payload: Vec::new(),
        })
    }

    /// Sets the partition key (events with one key stay in order).
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.0.key = Some(key.as_ref().to_vec());
        self
    }

    /// Sets the CloudEvents `subject`.
    pub fn subject(mut self, subject: &str) -> Self {
        self.0.subject = Some(subject.to_owned());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.0.headers.push(types::Header {
            name: name.to_owned(),
            value: value.as_ref().to_vec(),
        });
        self
    }

    /// Sets the payload to `value` as JSON (`application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, HandleError> {
        self.0.payload = serde_json::to_vec(value).map_err(|e| {
            HandleError::reject(format!("cannot serialise the emitted payload: {e}"))
        })?;
        self.0.content_type = Some("application/json".to_owned());
        Ok(self)
    }

    /// Sets the payload to raw bytes of the given content type.
    pub fn bytes(mut self, content_type: &str, payload: impl Into<Vec<u8>>) -> Self {
        self.0.payload = payload.into();
        self.0.content_type = Some(content_type.to_owned());
        self
    }
}

/// Stages `event` for publication. Fails (with a *reject*) when the event is invalid or the
/// call has staged its most events (`max_emits`) or bytes (`max_outbox_bytes`); the message
/// names the limit. A staged event the broker refuses for good (too large for it, say)
/// sends the event being handled to the dead-letter topic as `publish-failed`.
pub fn emit(event: Outgoing) -> Result<(), HandleError> {
    emitter::emit(&event.0).map_err(|e| HandleError::reject(format!("emit refused: {e}")))
}
