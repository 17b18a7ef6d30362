//! Dead letters: the failed event, unchanged, plus headers that say why, where from and how
//! many attempts. Replaying one means publishing it back to `plexus-dlq-topic` without the
//! `plexus-dlq-*` headers.

use crate::broker::Undecodable;
use crate::event::{Event, HANDLED_BY_HEADER, emitted_event_id, now_millis};
use crate::metrics::FailureKind;

/// Prefix of every dead-letter header.
pub const DLQ_HEADER_PREFIX: &str = "plexus-dlq-";

/// Where and why an event failed.
pub struct Failure<'a> {
    /// Why, in one word.
    pub kind: FailureKind,
    /// Why, in a sentence (the plugin's message, the trap, the decode error).
    pub reason: &'a str,
    /// The route that failed it.
    pub route: &'a str,
    /// `name@sha256:<hex>` of the plugin version.
    pub plugin_version: &'a str,
    /// Deliveries made.
    pub attempts: u32,
    /// Where the event was read from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
}

impl Failure<'_> {
    fn headers(&self) -> [(&'static str, String); 9] {
        [
            ("plexus-dlq-kind", self.kind.as_str().to_owned()),
            ("plexus-dlq-reason", self.reason.to_owned()),
            ("plexus-dlq-route", self.route.to_owned()),
            ("plexus-dlq-plugin", self.plugin_version.to_owned()),
            ("plexus-dlq-attempts", self.attempts.to_string()),
            ("plexus-dlq-topic", self.topic.to_owned()),
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
            id: emitted_event_id(&position, self.route, 0),
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
        letter.set_header(HANDLED_BY_HEADER, self.plugin_version);
    }
}
