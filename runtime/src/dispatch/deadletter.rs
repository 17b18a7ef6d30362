//! Dead letters: the failed event, unchanged, plus extension attributes that say why, where
//! from and how many attempts (`plexusdlqkind`, `plexusdlqreason`, ...). Replaying one means
//! publishing it back to `plexusdlqtopic` without the `plexusdlq*` attributes.
//!
//! A dead letter the broker refuses whole (a record too large for it) is written again
//! [`without_payload`]: its attributes, with the payload's size and digest in place of the
//! payload, so the event is still accounted for and can be found at its source position.

use crate::attributes::HANDLED_BY;
use crate::broker::Undecodable;
use crate::event::{AttributeValue, Event, Header, emitted_event_id, now_rfc3339};
use crate::metrics::FailureKind;
use sha2::{Digest, Sha256};

/// Prefix of every dead-letter attribute.
pub const DLQ_PREFIX: &str = "plexusdlq";

/// Set on a dead letter written without its payload: why the whole letter was refused.
pub const PAYLOAD_DROPPED: &str = "plexusdlqdropped";
/// The size in bytes of the payload a dead letter was written without.
pub const PAYLOAD_SIZE: &str = "plexusdlqdatasize";
/// The SHA-256 (hex) of the payload a dead letter was written without.
pub const PAYLOAD_SHA256: &str = "plexusdlqdatasha256";
/// How many of the event's own attributes and headers a payload-less dead letter also left
/// out (when they were large).
pub const OTHERS_DROPPED: &str = "plexusdlqothersdropped";

/// The most bytes of the event's own extension attributes and headers a payload-less dead
/// letter keeps.
const KEPT_ATTRIBUTE_BYTES: usize = 16 << 10;

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
    fn attributes(&self) -> [(&'static str, String); 9] {
        [
            ("plexusdlqkind", self.kind.as_str().to_owned()),
            ("plexusdlqreason", self.reason.clone()),
            ("plexusdlqroute", self.route.clone()),
            ("plexusdlqplugin", self.plugin_version.clone()),
            ("plexusdlqattempts", self.attempts.to_string()),
            ("plexusdlqtopic", self.topic.clone()),
            ("plexusdlqpartition", self.partition.to_string()),
            ("plexusdlqoffset", self.offset.to_string()),
            ("plexusdlqtime", now_rfc3339()),
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
    /// event of type `plexus.undecodable`, with its key and headers kept as transport headers
    /// (`ce_*` and `content-type` renamed `original-ce_*`, `original-content-type`).
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
            time: Some(now_rfc3339()),
            content_type: Some(
                if std::str::from_utf8(&record.raw).is_ok() {
                    "text/plain"
                } else {
                    "application/octet-stream"
                }
                .to_owned(),
            ),
            dataschema: None,
            correlation_id: None,
            extensions: Vec::new(),
            headers: record
                .headers
                .iter()
                .map(|h| Header {
                    // Kept as transport headers: names a binding reads as attributes are
                    // renamed, so the letter's own attributes stay unambiguous.
                    name: if h.name.starts_with("ce_") || h.name == "content-type" {
                        format!("original-{}", h.name)
                    } else {
                        h.name.clone()
                    },
                    value: h.value.clone(),
                })
                .collect(),
            payload: Some(record.raw.clone()),
            attempt: 1,
        };
        self.stamp(&mut letter);
        letter
    }

    fn stamp(&self, letter: &mut Event) {
        for (name, value) in self.attributes() {
            letter.set_extension(name, AttributeValue::String(value));
        }
        letter.set_extension(
            HANDLED_BY,
            AttributeValue::String(self.plugin_version.clone()),
        );
    }
}

/// `letter` without its payload (and without the event's own extension attributes and
/// headers if they are large), saying why, how large the payload was and its SHA-256.
pub fn without_payload(mut letter: Event, why: &str) -> Event {
    let payload = letter.payload.take().unwrap_or_default();
    let own = |name: &str| !name.starts_with(DLQ_PREFIX) && name != HANDLED_BY;
    let own_bytes: usize = letter
        .extensions
        .iter()
        .filter(|a| own(&a.name))
        .map(|a| a.name.len() + crate::attributes::value_size(&a.value))
        .chain(letter.headers.iter().map(|h| h.name.len() + h.value.len()))
        .sum();
    if own_bytes > KEPT_ATTRIBUTE_BYTES {
        let before = letter.extensions.len() + letter.headers.len();
        letter.extensions.retain(|a| !own(&a.name));
        letter.headers.clear();
        let dropped = before - letter.extensions.len();
        letter.set_extension(OTHERS_DROPPED, AttributeValue::String(dropped.to_string()));
    }
    letter.set_extension(PAYLOAD_DROPPED, AttributeValue::String(why.to_owned()));
    letter.set_extension(
        PAYLOAD_SIZE,
        AttributeValue::String(payload.len().to_string()),
    );
    letter.set_extension(
        PAYLOAD_SHA256,
        AttributeValue::String(hex::encode(Sha256::digest(&payload))),
    );
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
        letter.set_extension("plexusdlqkind", AttributeValue::String("rejected".into()));
        letter.set_extension(
            "big",
            AttributeValue::String("h".repeat(KEPT_ATTRIBUTE_BYTES + 1)),
        );
        let stripped = without_payload(letter, "too large");
        assert_eq!(stripped.payload, None);
        let text = |n: &str| stripped.extension_text(n).unwrap();
        assert_eq!(text(PAYLOAD_DROPPED), "too large");
        assert_eq!(text(PAYLOAD_SIZE), "5", "the JSON text \"abc\"");
        assert_eq!(text(PAYLOAD_SHA256).len(), 64);
        assert_eq!(text(OTHERS_DROPPED), "1");
        assert_eq!(text("plexusdlqkind"), "rejected");
        assert!(stripped.extension("big").is_none());
        assert_eq!(stripped.id, "1", "the core attributes stay");
    }
}
