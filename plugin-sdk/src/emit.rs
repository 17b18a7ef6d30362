//! Staging outgoing events. The host publishes them only if `handle` returns `Ok`, stamping
//! each with a deterministic id, the time, the correlation id and the trace context of the
//! event being handled, and `causationid`.

use crate::bindings::plexus::plugin::{emitter, types};
use crate::{AttributeValue, HandleError};
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
            dataschema: None,
            extensions: Vec::new(),
            headers: Vec::new(),
            payload: None,
        })
    }

    /// The event `event` sent on to `topic` as it is: its type, key, subject, content type,
    /// dataschema, extension attributes, transport headers and data. (The host gives it a
    /// new id, source and time, as every emitted event.)
    pub fn forward(topic: &str, event: &crate::Event) -> Self {
        Outgoing(types::OutgoingEvent {
            topic: topic.to_owned(),
            type_: event.type_.clone(),
            key: event.key.clone(),
            subject: event.subject.clone(),
            content_type: event.content_type.clone(),
            dataschema: event.dataschema.clone(),
            extensions: event.extensions.clone(),
            headers: event.headers.clone(),
            payload: event.payload.clone(),
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

    /// Sets the CloudEvents `dataschema` (a URI naming the data's schema).
    pub fn dataschema(mut self, uri: &str) -> Self {
        self.0.dataschema = Some(uri.to_owned());
        self
    }

    /// Sets a CloudEvents extension attribute (lower-case letters and digits; a string,
    /// `bool` or `i32`, or an [`AttributeValue`]), replacing one of the same name. It travels
    /// in every format: a `ce_` header on Kafka, a member in JSON.
    pub fn extension(mut self, name: &str, value: impl Into<AttributeValue>) -> Self {
        self.0.extensions.retain(|a| a.name != name);
        self.0.extensions.push(types::Attribute {
            name: name.to_owned(),
            value: value.into(),
        });
        self
    }

    /// Copies every extension attribute of `event` (to forward it with its context).
    pub fn extensions_of(mut self, event: &crate::Event) -> Self {
        for attribute in &event.extensions {
            self = self.extension(&attribute.name, attribute.value.clone());
        }
        self
    }

    /// Adds a transport header: a Kafka header that is not a CloudEvents attribute (the JSON
    /// format has no place for it). Prefer [`Outgoing::extension`] for event metadata.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.0.headers.push(types::Header {
            name: name.to_owned(),
            value: value.as_ref().to_vec(),
        });
        self
    }

    /// Sets the payload to `value` as JSON (`application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, HandleError> {
        self.0.payload = Some(serde_json::to_vec(value).map_err(|e| {
            HandleError::reject(format!("cannot serialise the emitted payload: {e}"))
        })?);
        self.0.content_type = Some("application/json".to_owned());
        Ok(self)
    }

    /// Sets the payload to raw bytes of the given content type.
    pub fn bytes(mut self, content_type: &str, payload: impl Into<Vec<u8>>) -> Self {
        self.0.payload = Some(payload.into());
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
