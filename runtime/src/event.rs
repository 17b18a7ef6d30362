//! The event record and what the host derives from it: attribute and header access,
//! partition-key hashing, the ids and lineage of emitted events.
//!
//! The record itself is the WIT `event` (see [`crate::bindings`]); this module adds the
//! behaviour the host needs around it. CloudEvents naming rules are in
//! [`crate::attributes`].

use crate::attributes::{self, CAUSATION, HANDLED_BY, TRACE_CONTEXT};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use crate::bindings::{Attribute, AttributeValue, Event, Header, OutgoingEvent};

impl Event {
    /// The value of the first transport header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_slice())
    }

    /// The extension attribute called `name`.
    pub fn extension(&self, name: &str) -> Option<&AttributeValue> {
        self.extensions
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    /// The extension attribute called `name` in its canonical string encoding.
    pub fn extension_text(&self, name: &str) -> Option<String> {
        self.extension(name).map(attributes::canonical_string)
    }

    /// Sets extension attribute `name` (replacing any with that name).
    pub fn set_extension(&mut self, name: &str, value: AttributeValue) {
        set_extension(&mut self.extensions, name, value);
    }

    /// The data, or no bytes when the event has none.
    pub fn data(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }
}

/// Sets `name` to `value` in `extensions`, replacing any attribute with that name.
pub fn set_extension(extensions: &mut Vec<Attribute>, name: &str, value: AttributeValue) {
    extensions.retain(|a| a.name != name);
    extensions.push(Attribute {
        name: name.to_owned(),
        value,
    });
}

/// What `headers` weigh: names and values.
fn headers_size(headers: &[Header]) -> usize {
    headers.iter().map(|h| h.name.len() + h.value.len()).sum()
}

/// What `extensions` weigh: names and values.
fn extensions_size(extensions: &[Attribute]) -> usize {
    extensions
        .iter()
        .map(|a| a.name.len() + attributes::value_size(&a.value))
        .sum()
}

fn option_size(value: &Option<String>) -> usize {
    value.as_ref().map_or(0, String::len)
}

/// The bytes an outgoing event holds (payload, key, attributes, headers): what the outbox
/// budget (`max_outbox_bytes`) counts.
pub fn outgoing_size(event: &OutgoingEvent) -> usize {
    event.topic.len()
        + event.type_.len()
        + event.key.as_ref().map_or(0, Vec::len)
        + option_size(&event.subject)
        + option_size(&event.content_type)
        + option_size(&event.dataschema)
        + extensions_size(&event.extensions)
        + headers_size(&event.headers)
        + event.payload.as_ref().map_or(0, Vec::len)
}

impl Event {
    /// The bytes the event holds (payload, key, attributes, headers): what a route's
    /// in-flight budget counts.
    pub fn size(&self) -> usize {
        self.id.len()
            + self.type_.len()
            + self.source.len()
            + option_size(&self.subject)
            + self.topic.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + option_size(&self.time)
            + option_size(&self.content_type)
            + option_size(&self.dataschema)
            + option_size(&self.correlation_id)
            + extensions_size(&self.extensions)
            + headers_size(&self.headers)
            + self.data().len()
    }
}

/// A stable 64-bit hash (FNV-1a) of a partition key: the same key lands on the same
/// partition and the same worker in every process and every run.
pub fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The id of the `index`-th event emitted by `route` while handling the event `source_id`.
///
/// Deterministic, so a replay after a crash re-emits the same ids and a downstream dedupe
/// recognises the duplicates; the route is part of it so two routes reacting to one event
/// never produce colliding ids. Formatted as a UUID (version 8, RFC 9562).
pub fn emitted_event_id(source_id: &str, route: &str, index: usize) -> String {
    let mut hasher = Sha256::new();
    for part in [source_id.as_bytes(), route.as_bytes(), &index.to_be_bytes()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let bytes: [u8; 16] = hasher.finalize()[..16].try_into().expect("16 bytes");
    // `new_v8` sets the version and variant bits over the hash.
    uuid::Uuid::new_v8(bytes).hyphenated().to_string()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Now, as an RFC 3339 time (a CloudEvents `time`).
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Where an emitted event comes from, to stamp its identity and lineage.
pub struct EmitContext<'a> {
    /// The event being handled.
    pub cause: &'a Event,
    /// The route handling it.
    pub route: &'a str,
    /// `name@sha256:<hex>` of the plugin version handling it.
    pub handled_by: &'a str,
    /// The `traceparent` and `tracestate` of the span handling it, when it is traced: what
    /// it emits continues that span's trace instead of the cause's context.
    pub trace: Option<&'a (String, Option<String>)>,
}

impl EmitContext<'_> {
    /// Turns the `index`-th staged event into a full event: deterministic id, the route as
    /// source, the time of emission, the cause's correlation id (or its id, when it starts a
    /// flow), its trace context (unless the plugin set its own), `causationid` and
    /// `plexushandledby`.
    pub fn complete(&self, index: usize, out: OutgoingEvent) -> Event {
        let cause = self.cause;
        let mut extensions = out.extensions;
        let [parent, state] = TRACE_CONTEXT;
        let inherited = match self.trace {
            Some((traceparent, tracestate)) => [
                Some(AttributeValue::String(traceparent.clone())),
                tracestate.clone().map(AttributeValue::String),
            ],
            None => [
                cause.extension(parent).cloned(),
                cause.extension(state).cloned(),
            ],
        };
        for (name, value) in [parent, state].into_iter().zip(inherited) {
            if let Some(value) = value
                && !extensions.iter().any(|a| a.name == name)
            {
                extensions.push(Attribute {
                    name: name.to_owned(),
                    value,
                });
            }
        }
        set_extension(
            &mut extensions,
            CAUSATION,
            AttributeValue::String(cause.id.clone()),
        );
        set_extension(
            &mut extensions,
            HANDLED_BY,
            AttributeValue::String(self.handled_by.to_owned()),
        );
        Event {
            id: emitted_event_id(&cause.id, self.route, index),
            type_: out.type_,
            source: format!("plexus:route/{}", self.route),
            subject: out.subject,
            topic: out.topic,
            partition: 0,
            offset: 0,
            key: out.key,
            time: Some(now_rfc3339()),
            content_type: out.content_type,
            dataschema: out.dataschema,
            correlation_id: Some(
                cause
                    .correlation_id
                    .clone()
                    .unwrap_or_else(|| cause.id.clone()),
            ),
            extensions,
            headers: out.headers,
            payload: out.payload,
            attempt: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emitted_ids_are_deterministic_and_distinct() {
        let a = emitted_event_id("order-1", "validate", 0);
        assert_eq!(a, emitted_event_id("order-1", "validate", 0));
        assert_ne!(a, emitted_event_id("order-1", "validate", 1));
        assert_ne!(a, emitted_event_id("order-1", "audit", 0));
        assert_ne!(a, emitted_event_id("order-2", "validate", 0));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }

    #[test]
    fn key_hash_is_stable() {
        assert_eq!(key_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
