//! Dead letters: the failed event, unchanged, plus headers that say why, where from and how
//! many attempts. Replaying one means publishing it back to `plexus-dlq-topic` without the
//! `plexus-dlq-*` headers.
//!
//! A dead letter the broker refuses whole (a record too large for it) is written again
//! [`without_payload`]: its attributes and `plexus-dlq-*` headers, with the payload's size and
//! digest in place of the payload, so the event is still accounted for and can be found at
//! its source position.

use crate::broker::Undecodable;
use crate::event::{Event, HANDLED_BY_HEADER, Header, emitted_event_id, now_millis};
use crate::metrics::FailureKind;
use sha2::{Digest, Sha256};

/// Prefix of every dead-letter header.
pub const DLQ_HEADER_PREFIX: &str = "plexus-dlq-";

/// Set on a dead letter written without its payload: why the whole letter was refused.
pub const PAYLOAD_DROPPED_HEADER: &str = "plexus-dlq-payload-dropped";
/// The size in bytes of the payload a dead letter was written without.
pub const PAYLOAD_SIZE_HEADER: &str = "plexus-dlq-payload-size";
/// The SHA-256 (hex) of the payload a dead letter was written without.
pub const PAYLOAD_SHA256_HEADER: &str = "plexus-dlq-payload-sha256";
/// How many of the event's own headers a payload-less dead letter also left out.
pub const HEADERS_DROPPED_HEADER: &str = "plexus-dlq-headers-dropped";

/// The most bytes of the event's own headers a payload-less dead letter keeps.
const KEPT_HEADER_BYTES: usize = 16 << 10;

/// Where and why an event failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Why, in one word.
    pub kind: FailureKind,
    /// Why, in a sentence (the plugin's message, the trap, the decode error).
    pub reason: String,
    /// The route that failed it.
    pub route: String,
    /// `name@sha256:<hex>` of the plugin version.
    pub plugin_version: String,
    /// Deliveries made.
    pub attempts: u32,
    /// Where the event was read from.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
}

impl Failure {
    fn headers(&self) -> [(&'static str, String); 9] {
        [
            ("plexus-dlq-kind", self.kind.as_str().to_owned()),
            ("plexus-dlq-reason", self.reason.clone()),
            ("plexus-dlq-route", self.route.clone()),
            ("plexus-dlq-plugin", self.plugin_version.clone()),
            ("plexus-dlq-attempts", self.attempts.to_string()),
            ("plexus-dlq-topic", self.topic.clone()),
            ("plexus-dlq-partition", self.partition.to_string()),
            ("plexus-dlq-offset", self.offset.to_string()),
            ("plexus-dlq-time", now_millis().to_string()),
        ]
    }

    /// The dead letter for `event`, addressed to `dead_letter_topic`.
    pub fn letter_for(&self, event: &Event, dead_letter_topic: &str) -> Event {
        let mut letter = event.clone();
        letter.topic = dead_letter_topic.to_owned();
        letter.attempt = 1;
        self.stamp(&mut letter);
        letter
    }

    /// The dead letter for a record that never decoded: its bytes as the payload of an
    /// event of type `plexus.undecodable`, with its key and headers kept.
    pub fn letter_for_undecodable(&self, record: &Undecodable, dead_letter_topic: &str) -> Event {
        let position = format!("{}/{}/{}", self.topic, self.partition, self.offset);
        let mut letter = Event {
            id: emitted_event_id(&position, &self.route, 0),
            type_: "plexus.undecodable".to_owned(),
            source: format!("plexus:topic/{}", self.topic),
            subject: None,
            topic: dead_letter_topic.to_owned(),
            partition: 0,
            offset: 0,
            key: record.key.clone(),
            timestamp: Some(now_millis()),
            content_type: Some(
                if std::str::from_utf8(&record.raw).is_ok() {
                    "text/plain"
                } else {
                    "application/octet-stream"
                }
                .to_owned(),
            ),
            correlation_id: None,
            headers: record.headers.clone(),
            payload: record.raw.clone(),
            attempt: 1,
        };
        self.stamp(&mut letter);
        letter
    }

    fn stamp(&self, letter: &mut Event) {
        for (name, value) in self.headers() {
            letter.set_header(name, value);
        }
        letter.set_header(HANDLED_BY_HEADER, self.plugin_version.as_bytes());
    }
}

/// `letter` without its payload (and without the event's own headers if they are large),
/// saying why, how large the payload was and its SHA-256.
pub fn without_payload(mut letter: Event, why: &str) -> Event {
    let payload = std::mem::take(&mut letter.payload);
    let own: usize = letter
        .headers
        .iter()
        .filter(|h| !h.name.starts_with(DLQ_HEADER_PREFIX))
        .map(|h| h.name.len() + h.value.len())
        .sum();
    if own > KEPT_HEADER_BYTES {
        let before = letter.headers.len();
        letter.headers.retain(|h: &Header| {
            h.name.starts_with(DLQ_HEADER_PREFIX) || h.name == HANDLED_BY_HEADER
        });
        letter.set_header(
            HEADERS_DROPPED_HEADER,
            (before - letter.headers.len()).to_string(),
        );
    }
    letter.set_header(PAYLOAD_DROPPED_HEADER, why);
    letter.set_header(PAYLOAD_SIZE_HEADER, payload.len().to_string());
    letter.set_header(PAYLOAD_SHA256_HEADER, hex::encode(Sha256::digest(&payload)));
    letter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_without_payload_says_what_it_left_out() {
        let mut letter = crate::cloudevents::decode(
            br#"{"specversion":"1.0","id":"1","source":"t","type":"t","data":"abc"}"#,
        )
        .unwrap();
        letter.set_header("plexus-dlq-kind", "rejected");
        letter.set_header("big", vec![b'h'; KEPT_HEADER_BYTES + 1]);
        let stripped = without_payload(letter, "too large");
        assert!(stripped.payload.is_empty());
        let header = |n: &str| String::from_utf8_lossy(stripped.header(n).unwrap()).into_owned();
        assert_eq!(header(PAYLOAD_DROPPED_HEADER), "too large");
        assert_eq!(header(PAYLOAD_SIZE_HEADER), "5", "the JSON text \"abc\"");
        assert_eq!(header(PAYLOAD_SHA256_HEADER).len(), 64);
        assert_eq!(header(HEADERS_DROPPED_HEADER), "1");
        assert_eq!(header("plexus-dlq-kind"), "rejected");
        assert!(stripped.header("big").is_none());
        assert_eq!(stripped.id, "1", "the attributes stay");
    }
}
