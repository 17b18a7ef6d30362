//! The event record and what the host derives from it: partition-key hashing, the ids and
//! headers of emitted events.
//!
//! The record itself is the WIT `event` (see [`crate::bindings`]); this module adds the
//! behaviour the host needs around it.

use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::bindings::{Event, Header, OutgoingEvent};

/// W3C trace-context headers, copied from a handled event onto everything it causes.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Header naming the event that caused an emitted event (its id).
pub const CAUSATION_HEADER: &str = "plexus-causation-id";

/// Header naming the plugin version that handled an event: `name@sha256:<hex>`.
pub const HANDLED_BY_HEADER: &str = "plexus-handled-by";

impl Event {
    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_slice())
    }

    /// Replaces every header called `name` with one holding `value`.
    pub fn set_header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.headers.retain(|h| h.name != name);
        self.headers.push(Header {
            name: name.to_owned(),
            value: value.into(),
        });
    }
}

/// What `headers` weigh: names and values.
fn headers_size(headers: &[Header]) -> usize {
    headers.iter().map(|h| h.name.len() + h.value.len()).sum()
}

/// The bytes an outgoing event holds (payload, key, headers, attributes): what the outbox
/// budget (`max_outbox_bytes`) counts.
pub fn outgoing_size(event: &OutgoingEvent) -> usize {
    event.topic.len()
        + event.type_.len()
        + event.key.as_ref().map_or(0, Vec::len)
        + event.subject.as_ref().map_or(0, String::len)
        + event.content_type.as_ref().map_or(0, String::len)
        + headers_size(&event.headers)
        + event.payload.len()
}

impl Event {
    /// The bytes the event holds (payload, key, headers, attributes): what a route's
    /// in-flight budget counts.
    pub fn size(&self) -> usize {
        self.id.len()
            + self.type_.len()
            + self.source.len()
            + self.subject.as_ref().map_or(0, String::len)
            + self.topic.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self.content_type.as_ref().map_or(0, String::len)
            + self.correlation_id.as_ref().map_or(0, String::len)
            + headers_size(&self.headers)
            + self.payload.len()
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
    let mut b: [u8; 16] = hasher.finalize()[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where an emitted event comes from, to stamp its identity and lineage.
pub struct EmitContext<'a> {
    /// The event being handled.
    pub cause: &'a Event,
    /// The route handling it.
    pub route: &'a str,
    /// `name@sha256:<hex>` of the plugin version handling it.
    pub handled_by: &'a str,
}

impl EmitContext<'_> {
    /// Turns the `index`-th staged event into a full event: deterministic id, the route as
    /// source, the cause's correlation id (or its id, when it starts a flow), trace context
    /// and causation headers.
    pub fn complete(&self, index: usize, out: OutgoingEvent) -> Event {
        let cause = self.cause;
        let mut headers = out.headers;
        for name in TRACE_HEADERS {
            if let Some(value) = cause.header(name)
                && !headers.iter().any(|h| h.name == name)
            {
                headers.push(Header {
                    name: name.to_owned(),
                    value: value.to_vec(),
                });
            }
        }
        let mut event = Event {
            id: emitted_event_id(&cause.id, self.route, index),
            type_: out.type_,
            source: format!("plexus:route/{}", self.route),
            subject: out.subject,
            topic: out.topic,
            partition: 0,
            offset: 0,
            key: out.key,
            timestamp: Some(now_millis()),
            content_type: out.content_type,
            correlation_id: Some(
                cause
                    .correlation_id
                    .clone()
                    .unwrap_or_else(|| cause.id.clone()),
            ),
            headers,
            payload: out.payload,
            attempt: 1,
        };
        event.set_header(CAUSATION_HEADER, cause.id.as_bytes());
        event.set_header(HANDLED_BY_HEADER, self.handled_by.as_bytes());
        event
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
