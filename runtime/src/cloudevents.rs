//! The CloudEvents JSON format (structured mode), one event per line.
//!
//! Used for input and output files, `plexus test`, and structured-mode Kafka records.
//! Mapping: `partitionkey` (the CloudEvents partitioning extension) is the key,
//! `correlationid` the correlation id, `data` or `data_base64` the payload; every other
//! member is a header. A header value that is not UTF-8 is written as `{"base64": "..."}`.

use crate::event::{Event, Header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a line is not a CloudEvent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("a CloudEvent must be a JSON object")]
    NotAnObject,
    /// A required attribute is missing or empty.
    #[error("missing required attribute `{0}`")]
    Missing(&'static str),
    /// An attribute has the wrong type or form.
    #[error("attribute `{name}`: {problem}")]
    Invalid {
        /// The attribute.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
}

const CORE_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "partitionkey",
    "correlationid",
    "data",
];

/// Whether a content type says the payload is JSON.
pub fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Decodes one CloudEvents JSON object. `topic`, `partition` and `offset` are left for the
/// broker to fill in.
pub fn decode(line: &[u8]) -> Result<Event, DecodeError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| DecodeError::Json(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(DecodeError::NotAnObject);
    };
    match take_string(&mut object, "specversion")? {
        Some(v) if v == "1.0" => {}
        Some(v) => {
            return Err(invalid(
                "specversion",
                format!("`{v}` is not supported, expected \"1.0\""),
            ));
        }
        None => return Err(DecodeError::Missing("specversion")),
    }
    let id = required(&mut object, "id")?;
    let source = required(&mut object, "source")?;
    let type_ = required(&mut object, "type")?;
    let subject = take_string(&mut object, "subject")?;
    let timestamp = take_string(&mut object, "time")?
        .map(|t| parse_time(&t))
        .transpose()?;
    let mut content_type = take_string(&mut object, "datacontenttype")?;
    let key = take_string(&mut object, "partitionkey")?.map(String::into_bytes);
    let correlation_id = take_string(&mut object, "correlationid")?;
    let payload = match (object.remove("data"), object.remove("data_base64")) {
        (Some(_), Some(_)) => {
            return Err(invalid("data", "`data` and `data_base64` are exclusive"));
        }
        (None, Some(Value::String(b64))) => BASE64
            .decode(b64)
            .map_err(|e| invalid("data_base64", e.to_string()))?,
        (None, Some(_)) => return Err(invalid("data_base64", "expected a base64 string")),
        // With a declared non-JSON type, a string is the data itself; otherwise `data` is
        // a JSON value (a string included) and the payload is its JSON text.
        (Some(Value::String(text)), None)
            if content_type
                .as_deref()
                .is_some_and(|ct| !is_json_content_type(ct)) =>
        {
            text.into_bytes()
        }
        (Some(data), None) => {
            content_type.get_or_insert_with(|| "application/json".to_owned());
            serde_json::to_vec(&data).expect("a JSON value serialises")
        }
        (None, None) => Vec::new(),
    };
    let headers = object
        .into_iter()
        .map(|(name, value)| {
            let value = header_value(&name, value)?;
            Ok(Header { name, value })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(Event {
        id,
        type_,
        source,
        subject,
        topic: String::new(),
        partition: 0,
        offset: 0,
        key,
        timestamp,
        content_type,
        correlation_id,
        headers,
        payload,
        attempt: 1,
    })
}

/// Encodes an event as one line of CloudEvents JSON (no trailing newline).
pub fn encode(event: &Event) -> String {
    let mut object = Map::new();
    object.insert("specversion".into(), "1.0".into());
    object.insert("id".into(), event.id.clone().into());
    object.insert("source".into(), event.source.clone().into());
    object.insert("type".into(), event.type_.clone().into());
    let optional = [
        ("subject", event.subject.clone()),
        ("time", event.timestamp.and_then(format_time)),
        ("datacontenttype", event.content_type.clone()),
        ("correlationid", event.correlation_id.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            object.insert(name.into(), value.into());
        }
    }
    if let Some(key) = &event.key {
        object.insert("partitionkey".into(), bytes_value(key));
    }
    for header in &event.headers {
        if !CORE_ATTRIBUTES.contains(&header.name.as_str()) && header.name != "data_base64" {
            object.insert(header.name.clone(), bytes_value(&header.value));
        }
    }
    let mut line = serde_json::to_string(&object).expect("a JSON map serialises");
    if let Some(data) = data_member(event) {
        // The map always holds `specversion`, so the data member follows a comma.
        line.pop();
        line.push(',');
        line.push_str(&data);
        line.push('}');
    }
    line
}

/// `"data":...` or `"data_base64":"..."`, or nothing for an empty payload.
fn data_member(event: &Event) -> Option<String> {
    if event.payload.is_empty() {
        return None;
    }
    let json_declared = event
        .content_type
        .as_deref()
        .is_none_or(is_json_content_type);
    if json_declared && let Ok(raw) = serde_json::from_slice::<&RawValue>(&event.payload) {
        return Some(format!("\"data\":{}", raw.get()));
    }
    let textual = event
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("text/") || is_json_content_type(ct));
    match std::str::from_utf8(&event.payload) {
        Ok(text) if textual => Some(format!("\"data\":{}", Value::String(text.to_owned()))),
        _ => Some(format!(
            "\"data_base64\":\"{}\"",
            BASE64.encode(&event.payload)
        )),
    }
}

fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => serde_json::json!({ "base64": BASE64.encode(bytes) }),
    }
}

fn header_value(name: &str, value: Value) -> Result<Vec<u8>, DecodeError> {
    match value {
        Value::String(s) => Ok(s.into_bytes()),
        Value::Number(n) => Ok(n.to_string().into_bytes()),
        Value::Bool(b) => Ok(b.to_string().into_bytes()),
        Value::Object(mut o) if o.len() == 1 => match o.remove("base64") {
            Some(Value::String(b64)) => {
                BASE64.decode(b64).map_err(|e| invalid(name, e.to_string()))
            }
            _ => Err(invalid(
                name,
                "expected a string, number, boolean or {\"base64\": \"...\"}",
            )),
        },
        _ => Err(invalid(
            name,
            "expected a string, number, boolean or {\"base64\": \"...\"}",
        )),
    }
}

fn take_string(
    object: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DecodeError> {
    match object.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name, "expected a string")),
    }
}

fn required(object: &mut Map<String, Value>, name: &'static str) -> Result<String, DecodeError> {
    match take_string(object, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(DecodeError::Missing(name)),
    }
}

fn invalid(name: &str, problem: impl Into<String>) -> DecodeError {
    DecodeError::Invalid {
        name: name.to_owned(),
        problem: problem.into(),
    }
}

fn parse_time(text: &str) -> Result<i64, DecodeError> {
    parse_rfc3339_millis(text).map_err(|problem| invalid("time", problem))
}

/// An RFC 3339 time as milliseconds since the Unix epoch (the CloudEvents `time` form).
pub fn parse_rfc3339_millis(text: &str) -> Result<i64, String> {
    let time = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("`{text}` is not RFC 3339: {e}"))?;
    Ok((time.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Milliseconds since the Unix epoch as an RFC 3339 time, if representable.
pub fn format_time(millis: i64) -> Option<String> {
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()?;
    time.format(&Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"specversion":"1.0","id":"o-1","source":"/shop","type":"shop.order.placed.v1","time":"2026-01-02T03:04:05.678Z","partitionkey":"customer-7","correlationid":"flow-1","traceparent":"00-abc-def-01","data":{"total":12.5}}"#;

    #[test]
    fn decodes_attributes_key_headers_and_json_data() {
        let event = decode(ORDER.as_bytes()).unwrap();
        assert_eq!(event.id, "o-1");
        assert_eq!(event.type_, "shop.order.placed.v1");
        assert_eq!(event.key.as_deref(), Some(&b"customer-7"[..]));
        assert_eq!(event.correlation_id.as_deref(), Some("flow-1"));
        assert_eq!(event.timestamp, Some(1_767_323_045_678));
        assert_eq!(event.content_type.as_deref(), Some("application/json"));
        assert_eq!(event.header("traceparent"), Some(&b"00-abc-def-01"[..]));
        assert_eq!(event.payload, br#"{"total":12.5}"#);
    }

    #[test]
    fn round_trips() {
        let event = decode(ORDER.as_bytes()).unwrap();
        assert_eq!(decode(encode(&event).as_bytes()).unwrap(), event);
        let mut binary = event.clone();
        binary.content_type = Some("application/octet-stream".into());
        binary.payload = vec![0, 159, 146, 150];
        binary.headers.push(Header {
            name: "raw".into(),
            value: vec![255],
        });
        let line = encode(&binary);
        assert!(line.contains("data_base64"), "{line}");
        // JSON members are unordered: headers come back sorted by name.
        let mut decoded = decode(line.as_bytes()).unwrap();
        decoded.headers.sort_by(|a, b| a.name.cmp(&b.name));
        binary.headers.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(decoded, binary);
    }

    #[test]
    fn text_data_stays_text() {
        let line = r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":"hello"}"#;
        let event = decode(line.as_bytes()).unwrap();
        assert_eq!(event.payload, b"hello");
        assert_eq!(decode(encode(&event).as_bytes()).unwrap(), event);
    }

    #[test]
    fn rejects_what_is_not_a_cloud_event() {
        assert!(matches!(decode(b"{nope"), Err(DecodeError::Json(_))));
        assert_eq!(decode(b"[1]"), Err(DecodeError::NotAnObject));
        assert_eq!(
            decode(br#"{"specversion":"1.0","source":"s","type":"t"}"#),
            Err(DecodeError::Missing("id"))
        );
        assert!(matches!(
            decode(br#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            decode(br#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}"#),
            Err(DecodeError::Invalid { .. })
        ));
    }
}
