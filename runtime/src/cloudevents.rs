//! The CloudEvents JSON format (spec v1.0.2 §2-3), one event per line.
//!
//! Used for input and output files, `plexus test`, and structured-mode Kafka records.
//! Mapping: the core attributes go to the record's fields (`partitionkey` is the key,
//! `correlationid` the correlation id), every other attribute is a typed extension
//! (JSON `true`/`false` a boolean, a whole number in 32 bits an integer, a string a string),
//! `data` or `data_base64` the payload. What this module reads it writes back the same:
//! `time` as written (nanoseconds and offset kept), JSON data as its exact text (large
//! numbers included), `null` as unset, an empty `data` as present. Transport headers are not
//! attributes and are not written.

use crate::attributes::{self, check_name, legacy_name};
use crate::event::{Attribute, AttributeValue, Event};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
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
    /// An attribute has the wrong type or form, or a name the spec does not allow.
    #[error("attribute `{name}`: {problem}")]
    Invalid {
        /// The attribute.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Whether a content type says the payload is JSON (`*/json` or `*/*+json`).
pub fn is_json_content_type(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence
        .split_once('/')
        .is_some_and(|(_, subtype)| subtype == "json" || subtype.ends_with("+json"))
}

/// Whether a content type says the payload is text (so the JSON format carries it as a
/// string, not in base64).
pub fn is_text_content_type(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence.starts_with("text/")
        || is_json_content_type(&essence)
        || essence.ends_with("/xml")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/yaml" | "application/x-yaml" | "application/javascript"
        )
}

/// A media type without its parameters, lower-cased.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

type Members = BTreeMap<String, Box<RawValue>>;

/// Decodes one CloudEvents JSON object. `topic`, `partition` and `offset` are left for the
/// broker to fill in.
pub fn decode(line: &[u8]) -> Result<Event, DecodeError> {
    let value: Box<RawValue> =
        serde_json::from_slice(line).map_err(|e| DecodeError::Json(e.to_string()))?;
    let mut members: Members =
        serde_json::from_str(value.get()).map_err(|_| DecodeError::NotAnObject)?;
    match take_string(&mut members, "specversion")? {
        Some(v) if v == "1.0" => {}
        Some(v) => {
            return Err(invalid(
                "specversion",
                format!("`{v}` is not supported, expected \"1.0\""),
            ));
        }
        None => return Err(DecodeError::Missing("specversion")),
    }
    let id = required(&mut members, "id")?;
    let source = required(&mut members, "source")?;
    let type_ = required(&mut members, "type")?;
    let subject = take_string(&mut members, "subject")?;
    let time = take_string(&mut members, "time")?
        .map(|t| check_time(&t).map(|()| t))
        .transpose()
        .map_err(|problem| invalid("time", problem))?;
    let mut content_type = take_string(&mut members, "datacontenttype")?;
    let dataschema = take_string(&mut members, "dataschema")?;
    let key = take_string(&mut members, "partitionkey")?.map(String::into_bytes);
    let correlation_id = take_string(&mut members, "correlationid")?;
    let payload = take_data(&mut members, &mut content_type)?;
    let mut extensions = Vec::with_capacity(members.len());
    for (name, raw) in members {
        let name = match check_name(&name) {
            Ok(()) => name,
            Err(problem) => legacy_name(&name).ok_or_else(|| invalid(&name, problem))?,
        };
        if let Some(value) = extension_value(&name, &raw)? {
            extensions.push(Attribute { name, value });
        }
    }
    Ok(Event {
        id,
        type_,
        source,
        subject,
        topic: String::new(),
        partition: 0,
        offset: 0,
        key,
        time,
        content_type,
        dataschema,
        correlation_id,
        extensions,
        headers: Vec::new(),
        payload,
        attempt: 1,
    })
}

/// The payload from `data` or `data_base64`, `None` if neither is there. A JSON `data`
/// (under a JSON content type, or none, which then becomes `application/json`) is kept as
/// its exact JSON text; under another content type `data` must be a string, the data itself.
fn take_data(
    members: &mut Members,
    content_type: &mut Option<String>,
) -> Result<Option<Vec<u8>>, DecodeError> {
    let data = members.remove("data");
    let base64 = members.remove("data_base64");
    match (data, base64) {
        (Some(_), Some(_)) => Err(invalid("data", "`data` and `data_base64` are exclusive")),
        (None, Some(raw)) => match serde_json::from_str::<Option<String>>(raw.get()) {
            Ok(Some(text)) => BASE64
                .decode(text)
                .map(Some)
                .map_err(|e| invalid("data_base64", e.to_string())),
            Ok(None) => Ok(None),
            Err(_) => Err(invalid("data_base64", "expected a base64 string")),
        },
        (Some(raw), None) => {
            if content_type.as_deref().is_none_or(is_json_content_type) {
                content_type.get_or_insert_with(|| "application/json".to_owned());
                return Ok(Some(raw.get().as_bytes().to_vec()));
            }
            match serde_json::from_str::<Option<String>>(raw.get()) {
                Ok(Some(text)) => Ok(Some(text.into_bytes())),
                Ok(None) => Ok(None),
                Err(_) => Err(invalid(
                    "data",
                    "expected a string: the content type is not JSON",
                )),
            }
        }
        (None, None) => Ok(None),
    }
}

/// A typed extension value; `None` for `null` (unset).
fn extension_value(name: &str, raw: &RawValue) -> Result<Option<AttributeValue>, DecodeError> {
    let value: Value = serde_json::from_str(raw.get()).map_err(|e| invalid(name, e.to_string()))?;
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => AttributeValue::Boolean(b),
        Value::String(s) => AttributeValue::String(s),
        Value::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => AttributeValue::Integer(i),
            None => {
                return Err(invalid(
                    name,
                    format!(
                        "{n} is not a CloudEvents integer (a whole number from -2147483648 to 2147483647)"
                    ),
                ));
            }
        },
        // Plexus before 0.2.0 wrote header bytes that were not UTF-8 this way.
        Value::Object(mut o) if o.len() == 1 && o.contains_key("base64") => {
            match o.remove("base64") {
                Some(Value::String(b64)) => AttributeValue::Binary(
                    BASE64
                        .decode(b64)
                        .map_err(|e| invalid(name, e.to_string()))?,
                ),
                _ => return Err(invalid(name, "expected a base64 string")),
            }
        }
        _ => {
            return Err(invalid(
                name,
                "an attribute value is a string, a whole number or a boolean",
            ));
        }
    }))
}

/// Encodes an event as one line of CloudEvents JSON (no trailing newline).
pub fn encode(event: &Event) -> String {
    let mut line = String::with_capacity(256 + event.data().len());
    line.push('{');
    let mut member = |name: &str, json: &str| {
        if line.len() > 1 {
            line.push(',');
        }
        line.push_str(&string(name));
        line.push(':');
        line.push_str(json);
    };
    member("specversion", "\"1.0\"");
    member("id", &string(&event.id));
    member("source", &string(&event.source));
    member("type", &string(&event.type_));
    let optional = [
        ("subject", &event.subject),
        ("time", &event.time),
        ("datacontenttype", &event.content_type),
        ("dataschema", &event.dataschema),
        ("correlationid", &event.correlation_id),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            member(name, &string(value));
        }
    }
    if let Some(key) = event
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
    {
        member("partitionkey", &string(key));
    }
    for attribute in &event.extensions {
        member(&attribute.name, &extension_json(&attribute.value));
    }
    if let Some((name, json)) = data_member(event) {
        member(name, &json);
    }
    line.push('}');
    line
}

/// A JSON string literal.
fn string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

fn extension_json(value: &AttributeValue) -> String {
    match value {
        AttributeValue::Boolean(b) => b.to_string(),
        AttributeValue::Integer(i) => i.to_string(),
        other => string(&attributes::canonical_string(other)),
    }
}

/// `data` (JSON, or a string for text) or `data_base64`, or nothing when there is no data.
fn data_member(event: &Event) -> Option<(&'static str, String)> {
    let payload = event.payload.as_deref()?;
    let content_type = event.content_type.as_deref();
    if content_type.is_some_and(is_json_content_type)
        && let Ok(raw) = serde_json::from_slice::<&RawValue>(payload)
    {
        return Some(("data", raw.get().to_owned()));
    }
    if content_type.is_some_and(is_text_content_type)
        && let Ok(text) = std::str::from_utf8(payload)
    {
        return Some(("data", string(text)));
    }
    Some(("data_base64", string(&BASE64.encode(payload))))
}

fn take_string(members: &mut Members, name: &'static str) -> Result<Option<String>, DecodeError> {
    match members.remove(name) {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
            .map_err(|_| invalid(name, "expected a string")),
    }
}

fn required(members: &mut Members, name: &'static str) -> Result<String, DecodeError> {
    match take_string(members, name)? {
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

/// Whether `text` is an RFC 3339 time.
pub fn check_time(text: &str) -> Result<(), String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(drop)
        .map_err(|e| format!("`{text}` is not RFC 3339: {e}"))
}

/// An RFC 3339 time as milliseconds since the Unix epoch (rounded towards the past).
pub fn parse_rfc3339_millis(text: &str) -> Result<i64, String> {
    let time = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("`{text}` is not RFC 3339: {e}"))?;
    Ok(time.unix_timestamp_nanos().div_euclid(1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"specversion":"1.0","id":"o-1","source":"/shop","type":"shop.order.placed.v1","time":"2026-01-02T03:04:05.678901234+02:00","partitionkey":"customer-7","correlationid":"flow-1","traceparent":"00-abc-def-01","count":5,"urgent":true,"unset":null,"data":{"total":12.5,"big":123456789012345678901234567890}}"#;

    #[test]
    fn decodes_attributes_key_typed_extensions_and_json_data() {
        let event = decode(ORDER.as_bytes()).unwrap();
        assert_eq!(event.id, "o-1");
        assert_eq!(event.type_, "shop.order.placed.v1");
        assert_eq!(event.key.as_deref(), Some(&b"customer-7"[..]));
        assert_eq!(event.correlation_id.as_deref(), Some("flow-1"));
        assert_eq!(
            event.time.as_deref(),
            Some("2026-01-02T03:04:05.678901234+02:00")
        );
        assert_eq!(event.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            event.extension("traceparent"),
            Some(&AttributeValue::String("00-abc-def-01".into()))
        );
        assert_eq!(event.extension("count"), Some(&AttributeValue::Integer(5)));
        assert_eq!(
            event.extension("urgent"),
            Some(&AttributeValue::Boolean(true))
        );
        assert_eq!(event.extension("unset"), None, "null is unset");
        assert_eq!(
            event.data(),
            br#"{"total":12.5,"big":123456789012345678901234567890}"#,
            "the exact JSON text"
        );
    }

    #[test]
    fn round_trips_unchanged() {
        let event = decode(ORDER.as_bytes()).unwrap();
        let again = decode(encode(&event).as_bytes()).unwrap();
        assert_eq!(again, event);
        assert!(encode(&event).contains("123456789012345678901234567890"));
        for line in [
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/xml","data":"<a b=\"c\"/>"}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":""}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":""}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":null}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":""}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AJ+Slg=="}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"1969-12-31T23:59:59.999999999Z","dataschema":"https://example.com/s.json"}"#,
        ] {
            let event = decode(line.as_bytes()).unwrap();
            let written = encode(&event);
            assert_eq!(
                decode(written.as_bytes()).unwrap(),
                event,
                "{line} -> {written}"
            );
        }
    }

    #[test]
    fn data_forms_are_kept() {
        let xml = decode(br#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/xml","data":"<a/>"}"#).unwrap();
        assert!(
            encode(&xml).ends_with(r#""data":"<a/>"}"#),
            "{}",
            encode(&xml)
        );
        let empty =
            decode(br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":""}"#)
                .unwrap();
        assert_eq!(empty.payload, Some(Vec::new()));
        assert!(encode(&empty).ends_with(r#""data_base64":""}"#));
        let none = decode(br#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#).unwrap();
        assert_eq!(none.payload, None);
        assert!(!encode(&none).contains("data"));
    }

    #[test]
    fn old_plexus_names_are_read_as_the_new_ones() {
        let event = decode(br#"{"specversion":"1.0","id":"1","source":"s","type":"t","plexus-dlq-kind":"trap","plexus-causation-id":"c"}"#).unwrap();
        assert_eq!(
            event.extension_text("plexusdlqkind").as_deref(),
            Some("trap")
        );
        assert_eq!(event.extension_text("causationid").as_deref(), Some("c"));
    }

    #[test]
    fn rejects_what_is_not_a_cloud_event() {
        assert!(matches!(decode(b"{nope"), Err(DecodeError::Json(_))));
        assert_eq!(decode(b"[1]"), Err(DecodeError::NotAnObject));
        assert_eq!(
            decode(br#"{"specversion":"1.0","source":"s","type":"t"}"#),
            Err(DecodeError::Missing("id"))
        );
        for bad in [
            r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","Color":"red"}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","big":4294967296}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","list":[1]}"#,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":{"a":1}}"#,
        ] {
            assert!(
                matches!(decode(bad.as_bytes()), Err(DecodeError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn millis_round_towards_the_past() {
        assert_eq!(
            parse_rfc3339_millis("1969-12-31T23:59:59.9995Z").unwrap(),
            -1
        );
        assert_eq!(
            parse_rfc3339_millis("1970-01-01T00:00:00.0015Z").unwrap(),
            1
        );
    }
}
