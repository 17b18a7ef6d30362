//! The CloudEvents Kafka protocol binding (v1.0.2), both ways.
//!
//! Out: binary mode, except for an event whose data is itself a CloudEvent
//! (`datacontenttype: application/cloudevents+json`), whose `content-type` header would
//! announce structured mode: it is written in structured mode. In binary mode every attribute
//! is a `ce_` header (§3.2.3): `ce_specversion`, `ce_id`,
//! `ce_source`, `ce_type`, `ce_subject`, `ce_time`, `ce_dataschema`, `ce_correlationid`,
//! `ce_partitionkey` and one per extension, values in their canonical string encoding; the
//! content type is the `content-type` header, the partition key also the Kafka key (§3.1),
//! the data the value (no data: no value, §3.2.2). Transport headers travel as they are.
//!
//! In: binary mode as above (every `ce_` header an attribute, extensions arriving as
//! strings, since the binding carries no types), or structured mode (`content-type:
//! application/cloudevents+json`, or no `ce_` headers and a JSON object value), where the
//! event is the value and `ce_` headers, if any, are ignored. The Kafka key is the key; a
//! record without one takes `ce_partitionkey`. Plain `traceparent`/`tracestate` headers (as
//! tracing libraries write them) become the trace-context attributes when there are no `ce_`
//! ones; headers named as Plexus named its attributes before 0.2.0 (`plexus-dlq-kind`, ...)
//! are read as the attributes they were.

use crate::attributes::{self, TRACE_CONTEXT, check_name, legacy_name};
use crate::cloudevents;
use crate::event::{Attribute, AttributeValue, Event, Header};

/// A Kafka record, independent of the client library.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The message key.
    pub key: Option<Vec<u8>>,
    /// The headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The value; `None` for a record without one (an event without data).
    pub value: Option<Vec<u8>>,
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
            value: message.payload().map(<[u8]>::to_vec),
            timestamp: message.timestamp().to_millis(),
        }
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

const STRUCTURED: &str = "application/cloudevents";
const PREFIX: &str = "ce_";
const CONTENT_TYPE: &str = "content-type";

/// Encodes `event` in binary mode (or structured mode, when its data is a CloudEvent).
pub fn encode(event: &Event) -> KafkaRecord {
    if event
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with(STRUCTURED))
    {
        return encode_structured(event);
    }
    let mut headers = vec![
        ("ce_specversion".to_owned(), b"1.0".to_vec()),
        ("ce_id".to_owned(), event.id.as_bytes().to_vec()),
        ("ce_source".to_owned(), event.source.as_bytes().to_vec()),
        ("ce_type".to_owned(), event.type_.as_bytes().to_vec()),
    ];
    let partition_key = event
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok());
    let optional = [
        ("ce_subject", event.subject.as_deref()),
        ("ce_time", event.time.as_deref()),
        ("ce_dataschema", event.dataschema.as_deref()),
        ("ce_correlationid", event.correlation_id.as_deref()),
        ("ce_partitionkey", partition_key),
        (CONTENT_TYPE, event.content_type.as_deref()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            headers.push((name.to_owned(), value.as_bytes().to_vec()));
        }
    }
    for attribute in &event.extensions {
        headers.push((
            format!("{PREFIX}{}", attribute.name),
            attributes::canonical_string(&attribute.value).into_bytes(),
        ));
    }
    headers.extend(transport_headers(event));
    KafkaRecord {
        key: event.key.clone(),
        headers,
        value: event.payload.clone(),
        timestamp: record_timestamp(event),
    }
}

/// Encodes `event` in structured mode: the JSON format as the value.
fn encode_structured(event: &Event) -> KafkaRecord {
    let mut headers = vec![(
        CONTENT_TYPE.to_owned(),
        b"application/cloudevents+json; charset=UTF-8".to_vec(),
    )];
    headers.extend(transport_headers(event));
    KafkaRecord {
        key: event.key.clone(),
        headers,
        value: Some(cloudevents::encode(event).into_bytes()),
        timestamp: record_timestamp(event),
    }
}

/// The event's transport headers, leaving out any named like an attribute's header (it
/// would be read as one).
fn transport_headers(event: &Event) -> impl Iterator<Item = (String, Vec<u8>)> + '_ {
    event
        .headers
        .iter()
        .filter(|h| !h.name.starts_with(PREFIX) && h.name != CONTENT_TYPE)
        .map(|h| (h.name.clone(), h.value.clone()))
}

/// The record timestamp: the event's `time`, when it is one Kafka can carry.
fn record_timestamp(event: &Event) -> Option<i64> {
    event
        .time
        .as_deref()
        .and_then(|t| cloudevents::parse_rfc3339_millis(t).ok())
        .filter(|millis| *millis >= 0)
}

/// Decodes a record read from `topic` at `partition`/`offset`; the error says why it is not
/// a CloudEvent.
pub fn decode(
    record: &KafkaRecord,
    topic: &str,
    partition: u32,
    offset: u64,
) -> Result<Event, String> {
    let content_type = record
        .header(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let structured = content_type
        .as_deref()
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with(STRUCTURED))
        || (record.header("ce_specversion").is_none()
            && record.value.as_deref().and_then(|v| v.first()) == Some(&b'{'));
    let mut event = if structured {
        let mut event = cloudevents::decode(record.value.as_deref().unwrap_or_default())
            .map_err(|e| format!("structured-mode CloudEvent: {e}"))?;
        event.headers = record
            .headers
            .iter()
            .filter(|(n, _)| !n.starts_with(PREFIX) && n != CONTENT_TYPE)
            .map(|(name, value)| Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        event
    } else {
        decode_binary(record, content_type)?
    };
    if record.key.is_some() {
        event.key.clone_from(&record.key);
    }
    event.topic = topic.to_owned();
    event.partition = partition;
    event.offset = offset;
    Ok(event)
}

fn decode_binary(record: &KafkaRecord, content_type: Option<String>) -> Result<Event, String> {
    let text = |name: &str| -> Result<Option<String>, String> {
        record
            .header(name)
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
    let time = text("ce_time")?;
    if let Some(time) = &time {
        cloudevents::check_time(time).map_err(|problem| format!("ce_time {problem}"))?;
    }
    let mut extensions: Vec<Attribute> = Vec::new();
    let mut headers = Vec::new();
    let mut extension = |name: String, value: &[u8]| -> Result<(), String> {
        let value = String::from_utf8(value.to_vec())
            .map_err(|_| format!("header `{PREFIX}{name}` is not UTF-8"))?;
        extensions.retain(|a| a.name != name);
        extensions.push(Attribute {
            name,
            value: AttributeValue::String(value),
        });
        Ok(())
    };
    for (name, value) in &record.headers {
        if let Some(attribute) = name.strip_prefix(PREFIX) {
            if attributes::CORE.contains(&attribute) {
                continue;
            }
            check_name(attribute).map_err(|problem| format!("header `{name}`: {problem}"))?;
            extension(attribute.to_owned(), value)?;
        } else if let Some(current) = legacy_name(name) {
            extension(current, value)?;
        } else if name != CONTENT_TYPE {
            headers.push(Header {
                name: name.clone(),
                value: value.clone(),
            });
        }
    }
    // Trace context from tracing libraries' plain headers, when no `ce_` header gave it.
    for name in TRACE_CONTEXT {
        if !extensions.iter().any(|a| a.name == name)
            && let Some(index) = headers.iter().position(|h| h.name == name)
            && let Ok(value) = String::from_utf8(headers[index].value.clone())
        {
            headers.remove(index);
            extensions.push(Attribute {
                name: name.to_owned(),
                value: AttributeValue::String(value),
            });
        }
    }
    Ok(Event {
        id: required("ce_id")?,
        type_: required("ce_type")?,
        source: required("ce_source")?,
        subject: text("ce_subject")?,
        topic: String::new(),
        partition: 0,
        offset: 0,
        key: text("ce_partitionkey")?.map(String::into_bytes),
        time,
        content_type,
        dataschema: text("ce_dataschema")?,
        correlation_id: text("ce_correlationid")?,
        extensions,
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
            br#"{"specversion":"1.0","id":"o-1","source":"/shop","type":"shop.order.placed.v1","subject":"o-1","time":"2026-01-02T03:04:05.678901Z","dataschema":"https://example.com/order.json","partitionkey":"c-7","correlationid":"flow-1","traceparent":"00-a-b-01","color":"red","data":{"total":1}}"#,
        )
        .unwrap();
        event.topic = "orders".into();
        event.partition = 2;
        event.offset = 41;
        event.headers.push(Header {
            name: "x-tenant".into(),
            value: b"acme".to_vec(),
        });
        event
    }

    #[test]
    fn binary_mode_carries_every_attribute_as_a_ce_header_and_round_trips() {
        let event = sample();
        let record = encode(&event);
        assert_eq!(record.key.as_deref(), Some(&b"c-7"[..]));
        for (name, value) in [
            ("ce_id", "o-1"),
            ("ce_dataschema", "https://example.com/order.json"),
            ("ce_partitionkey", "c-7"),
            ("ce_traceparent", "00-a-b-01"),
            ("ce_color", "red"),
            ("ce_time", "2026-01-02T03:04:05.678901Z"),
            ("content-type", "application/json"),
            ("x-tenant", "acme"),
        ] {
            assert_eq!(record.header(name), Some(value.as_bytes()), "{name}");
        }
        let names: Vec<&String> = record.headers.iter().map(|(n, _)| n).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "no header twice: {names:?}");
        assert_eq!(decode(&record, "orders", 2, 41).unwrap(), event);
    }

    #[test]
    fn an_event_without_data_is_a_record_without_a_value() {
        let mut event = sample();
        event.payload = None;
        let record = encode(&event);
        assert_eq!(record.value, None);
        assert_eq!(decode(&record, "orders", 2, 41).unwrap().payload, None);
    }

    #[test]
    fn the_partition_key_header_stands_in_for_a_missing_kafka_key() {
        let mut record = encode(&sample());
        record.key = None;
        assert_eq!(
            decode(&record, "t", 0, 0).unwrap().key.as_deref(),
            Some(&b"c-7"[..])
        );
    }

    #[test]
    fn structured_mode_ignores_ce_headers_and_keeps_the_kafka_key() {
        let record = KafkaRecord {
            key: Some(b"k".to_vec()),
            headers: vec![
                (
                    "content-type".into(),
                    b"application/cloudevents+json; charset=UTF-8".to_vec(),
                ),
                ("ce_id".into(), b"other".to_vec()),
                ("x-tenant".into(), b"acme".to_vec()),
            ],
            value: Some(
                br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"a":1}}"#
                    .to_vec(),
            ),
            timestamp: Some(7),
        };
        let event = decode(&record, "t", 0, 3).unwrap();
        assert_eq!(
            (
                event.id.as_str(),
                event.key.as_deref(),
                event.time.as_deref()
            ),
            ("1", Some(&b"k"[..]), None)
        );
        assert_eq!(event.data(), br#"{"a":1}"#);
        assert!(event.extensions.is_empty());
        assert_eq!(event.header("x-tenant"), Some(&b"acme"[..]));
        assert_eq!(event.header("ce_id"), None);
    }

    #[test]
    fn plain_trace_and_old_plexus_headers_become_attributes() {
        let mut record = encode(&sample());
        record.headers.retain(|(n, _)| n != "ce_traceparent");
        record
            .headers
            .push(("traceparent".into(), b"00-c-d-01".to_vec()));
        record
            .headers
            .push(("plexus-dlq-kind".into(), b"trap".to_vec()));
        let event = decode(&record, "t", 0, 0).unwrap();
        assert_eq!(
            event.extension_text("traceparent").as_deref(),
            Some("00-c-d-01")
        );
        assert_eq!(
            event.extension_text("plexusdlqkind").as_deref(),
            Some("trap")
        );
        assert_eq!(event.header("traceparent"), None);
    }

    #[test]
    fn an_event_whose_data_is_a_cloud_event_goes_in_structured_mode_and_comes_back() {
        let mut event = sample();
        event.content_type = Some("application/cloudevents+json".into());
        event.payload =
            Some(br#"{"specversion":"1.0","id":"inner","source":"s","type":"t"}"#.to_vec());
        let record = encode(&event);
        assert!(record.header("ce_id").is_none(), "structured mode");
        let back = decode(&record, "orders", 2, 41).unwrap();
        assert_eq!(back.payload, event.payload);
        assert_eq!(back.content_type, event.content_type);
        assert_eq!(back.id, "o-1");
    }

    #[test]
    fn a_plain_record_is_not_an_event() {
        let record = KafkaRecord {
            value: Some(b"hello".to_vec()),
            ..KafkaRecord::default()
        };
        assert!(
            decode(&record, "t", 0, 0)
                .unwrap_err()
                .contains("no `ce_specversion`")
        );
        let broken = KafkaRecord {
            value: Some(b"{not json".to_vec()),
            ..KafkaRecord::default()
        };
        assert!(
            decode(&broken, "t", 0, 0)
                .unwrap_err()
                .starts_with("structured-mode CloudEvent: not JSON")
        );
    }
}
