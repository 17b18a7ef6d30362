//! The CloudEvents Kafka protocol binding, both ways.
//!
//! Out: binary mode. Attributes become `ce_` headers (`ce_specversion`, `ce_id`,
//! `ce_source`, `ce_type`, `ce_subject`, `ce_time`, `ce_correlationid`), the content type
//! the `content-type` header, the partition key the Kafka key, the payload the value. Other
//! event headers (`traceparent`, `plexus-dlq-*`, ...) travel as plain Kafka headers.
//!
//! In: binary mode as above (any other `ce_` header becomes a header without the prefix), or
//! structured mode (`content-type: application/cloudevents+json`, or no `ce_` headers and a
//! JSON object value). The Kafka key is the key unless the event names a `partitionkey`;
//! the Kafka timestamp stands in for a missing `ce_time`.

use crate::cloudevents;
use crate::event::{Event, Header};

/// A Kafka record, independent of the client library.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The message key.
    pub key: Option<Vec<u8>>,
    /// The headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The value.
    pub value: Vec<u8>,
    /// The record timestamp, in milliseconds since the epoch.
    pub timestamp: Option<i64>,
}

impl KafkaRecord {
    /// Copies what a record read by librdkafka holds.
    pub fn from_message<M: rdkafka::Message>(message: &M) -> KafkaRecord {
        use rdkafka::message::Headers as _;
        KafkaRecord {
            key: message.key().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
            value: message.payload().unwrap_or_default().to_vec(),
            timestamp: message.timestamp().to_millis(),
        }
    }
}

const STRUCTURED: &str = "application/cloudevents+json";

/// Encodes `event` in binary mode.
pub fn encode(event: &Event) -> KafkaRecord {
    let mut headers = vec![
        ("ce_specversion".to_owned(), b"1.0".to_vec()),
        ("ce_id".to_owned(), event.id.as_bytes().to_vec()),
        ("ce_source".to_owned(), event.source.as_bytes().to_vec()),
        ("ce_type".to_owned(), event.type_.as_bytes().to_vec()),
    ];
    let optional = [
        ("ce_subject", event.subject.clone()),
        (
            "ce_time",
            event.timestamp.and_then(cloudevents::format_time),
        ),
        ("ce_correlationid", event.correlation_id.clone()),
        ("content-type", event.content_type.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            headers.push((name.to_owned(), value.into_bytes()));
        }
    }
    headers.extend(
        event
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone())),
    );
    KafkaRecord {
        key: event.key.clone(),
        headers,
        value: event.payload.clone(),
        timestamp: event.timestamp,
    }
}

/// Decodes a record read from `topic` at `partition`/`offset`; the error says why it is not
/// a CloudEvent.
pub fn decode(
    record: &KafkaRecord,
    topic: &str,
    partition: u32,
    offset: u64,
) -> Result<Event, String> {
    let header = |name: &str| {
        record
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    };
    let content_type = header("content-type").map(|v| String::from_utf8_lossy(v).into_owned());
    let structured = content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with(STRUCTURED))
        || (header("ce_specversion").is_none() && record.value.first() == Some(&b'{'));
    let mut event = if structured {
        let mut event = cloudevents::decode(&record.value)
            .map_err(|e| format!("structured-mode CloudEvent: {e}"))?;
        event.headers.extend(
            record
                .headers
                .iter()
                .filter(|(n, _)| n != "content-type")
                .map(|(name, value)| Header {
                    name: name.clone(),
                    value: value.clone(),
                }),
        );
        event
    } else {
        decode_binary(record, &header, content_type)?
    };
    if event.key.is_none() {
        event.key.clone_from(&record.key);
    }
    if event.timestamp.is_none() {
        event.timestamp = record.timestamp;
    }
    event.topic = topic.to_owned();
    event.partition = partition;
    event.offset = offset;
    Ok(event)
}

fn decode_binary<'a>(
    record: &'a KafkaRecord,
    header: &dyn Fn(&str) -> Option<&'a [u8]>,
    content_type: Option<String>,
) -> Result<Event, String> {
    let text = |name: &str| -> Result<Option<String>, String> {
        header(name)
            .map(|v| {
                String::from_utf8(v.to_vec()).map_err(|_| format!("header `{name}` is not UTF-8"))
            })
            .transpose()
    };
    let required = |name: &str| -> Result<String, String> {
        text(name)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("missing header `{name}`"))
    };
    match text("ce_specversion")?.as_deref() {
        Some("1.0") => {}
        Some(other) => {
            return Err(format!(
                "ce_specversion `{other}` is not supported, expected 1.0"
            ));
        }
        None => {
            return Err(
                "not a CloudEvent: no `ce_specversion` header, and not structured mode".into(),
            );
        }
    }
    let timestamp = text("ce_time")?
        .map(|t| {
            cloudevents::parse_rfc3339_millis(&t).map_err(|problem| format!("ce_time {problem}"))
        })
        .transpose()?;
    const MAPPED: [&str; 8] = [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_subject",
        "ce_time",
        "ce_correlationid",
        "content-type",
    ];
    let headers = record
        .headers
        .iter()
        .filter(|(name, _)| !MAPPED.contains(&name.as_str()))
        .map(|(name, value)| Header {
            name: name.strip_prefix("ce_").unwrap_or(name).to_owned(),
            value: value.clone(),
        })
        .collect();
    Ok(Event {
        id: required("ce_id")?,
        type_: required("ce_type")?,
        source: required("ce_source")?,
        subject: text("ce_subject")?,
        topic: String::new(),
        partition: 0,
        offset: 0,
        key: None,
        timestamp,
        content_type,
        correlation_id: text("ce_correlationid")?,
        headers,
        payload: record.value.clone(),
        attempt: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        let mut event = cloudevents::decode(
            br#"{"specversion":"1.0","id":"o-1","source":"/shop","type":"shop.order.placed.v1","subject":"o-1","time":"2026-01-02T03:04:05.678Z","partitionkey":"c-7","correlationid":"flow-1","traceparent":"00-a-b-01","data":{"total":1}}"#,
        )
        .unwrap();
        event.topic = "orders".into();
        event.partition = 2;
        event.offset = 41;
        event
    }

    #[test]
    fn binary_mode_round_trips() {
        let event = sample();
        let record = encode(&event);
        assert_eq!(record.key.as_deref(), Some(&b"c-7"[..]));
        assert!(record.headers.contains(&("ce_id".into(), b"o-1".to_vec())));
        assert!(
            record
                .headers
                .contains(&("content-type".into(), b"application/json".to_vec()))
        );
        assert!(
            record
                .headers
                .contains(&("traceparent".into(), b"00-a-b-01".to_vec()))
        );
        assert_eq!(decode(&record, "orders", 2, 41).unwrap(), event);
    }

    #[test]
    fn structured_mode_is_accepted() {
        let record = KafkaRecord {
            key: Some(b"k".to_vec()),
            headers: vec![("content-type".into(), STRUCTURED.as_bytes().to_vec())],
            value: br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"a":1}}"#
                .to_vec(),
            timestamp: Some(7),
        };
        let event = decode(&record, "t", 0, 3).unwrap();
        assert_eq!(
            (event.id.as_str(), event.key.as_deref(), event.timestamp),
            ("1", Some(&b"k"[..]), Some(7))
        );
        assert_eq!(event.payload, br#"{"a":1}"#);
    }

    #[test]
    fn a_plain_record_is_not_an_event() {
        let record = KafkaRecord {
            value: b"hello".to_vec(),
            ..KafkaRecord::default()
        };
        assert!(
            decode(&record, "t", 0, 0)
                .unwrap_err()
                .contains("no `ce_specversion`")
        );
        let broken = KafkaRecord {
            value: b"{not json".to_vec(),
            ..KafkaRecord::default()
        };
        assert!(
            decode(&broken, "t", 0, 0)
                .unwrap_err()
                .starts_with("structured-mode CloudEvent: not JSON")
        );
    }
}
