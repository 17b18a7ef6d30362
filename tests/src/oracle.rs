//! The official CloudEvents SDKs as test oracles: the CNCF Python SDK (driven through
//! `tests/conformance/oracle.py`, in a virtual environment `scripts/setup-python-oracle`
//! makes) and the Rust `cloudevents-sdk` crate.
//!
//! Each SDK makes a corpus of events and describes events it parses as a [`Description`]:
//! every attribute with its type and text, and the data. Tests send a corpus through Plexus
//! and compare the description of each output with that of its input, within one SDK (the
//! SDKs differ in precision and types, so they are never compared with each other).

use chrono::{SecondsFormat, TimeZone, Utc};
use cloudevents::event::{AttributeValue, ExtensionValue};
use cloudevents::{Data, Event, EventBuilder, EventBuilderV10};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// What an SDK sees of an event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Description {
    /// Attribute name → (type, text).
    pub attrs: BTreeMap<String, (String, String)>,
    /// The data.
    pub data: DataDescription,
}

/// An event's data as an SDK sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum DataDescription {
    /// No data.
    None,
    /// A JSON value, as canonical text.
    Json(String),
    /// Text or bytes, in base64.
    Content(String),
}

/// The Python SDK's descriptions of one event, through its 2.x and its 1.x API.
#[derive(Debug, Clone, Deserialize)]
pub struct PythonDescription {
    /// The 2.x API (which validates attribute names).
    pub v2: Description,
    /// The 1.x API.
    pub v1: Description,
}

/// The Python interpreter with the SDK installed.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(path) = std::env::var_os("PLEXUS_CE_PYTHON") {
            return path.into();
        }
        let out = Command::new(crate::repo("scripts/setup-python-oracle"))
            .output()
            .expect("scripts/setup-python-oracle");
        assert!(
            out.status.success(),
            "setup-python-oracle failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().into()
    })
}

/// Runs the Python oracle with `args`; its standard output. Fails the test with the oracle's
/// error (an SDK that refused to parse something, typically).
pub fn python_oracle(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(crate::repo("tests/conformance/oracle.py"))
        .args(args)
        .output()
        .expect("run the Python oracle");
    assert!(
        out.status.success(),
        "the Python SDK failed on {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The Python SDK's descriptions of every line of the JSON-lines file `path`.
pub fn python_describe_json(path: &Path) -> Vec<PythonDescription> {
    serde_json::from_str(&python_oracle(&["describe-json", path.to_str().unwrap()]))
        .expect("descriptions")
}

/// The Python SDK's descriptions of the Kafka records in the JSON file `path` (see
/// [`records_json`]).
pub fn python_describe_kafka(path: &Path) -> Vec<PythonDescription> {
    serde_json::from_str(&python_oracle(&["describe-kafka", path.to_str().unwrap()]))
        .expect("descriptions")
}

/// Kafka records in the oracle's JSON form: key, headers and value in base64.
pub fn records_json(records: &[plexus::testing::kafka_binding::KafkaRecord]) -> String {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let list: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "key": r.key.as_deref().map(b64),
                "headers": r.headers.iter().map(|(n, v)| (n.clone(), b64(v))).collect::<Vec<_>>(),
                "value": r.value.as_deref().map(b64),
            })
        })
        .collect();
    serde_json::to_string(&list).unwrap()
}

/// The Rust SDK's corpus: every attribute type it has (string, URI, time with nanoseconds,
/// boolean and integer extensions) and every data form (JSON, text, binary, none).
pub fn rust_corpus() -> Vec<Event> {
    let time = Utc.timestamp_opt(1_767_323_045, 123_456_789).unwrap();
    let base = || EventBuilderV10::new().source("/oracle/rust").time(time);
    let build = |b: EventBuilderV10| b.build().expect("a valid event");
    vec![
        build(
            base()
                .id("rs-full")
                .ty("conf.rust.full")
                .subject("order-9")
                .data_with_schema(
                    "application/json",
                    "https://schemas.example.com/rust.json",
                    serde_json::json!({"total": 7, "lines": ["a", "b"]}),
                )
                .extension("color", "green")
                .extension("count", 7i64)
                .extension("flag", true)
                .extension("partitionkey", "rk-1"),
        ),
        build(
            base()
                .id("rs-text")
                .ty("conf.rust.text")
                .data("text/plain", "text from Rust".to_owned()),
        ),
        build(
            base()
                .id("rs-binary")
                .ty("conf.rust.binary")
                .data("application/octet-stream", vec![1u8, 2, 255, 0]),
        ),
        build(
            base()
                .id("rs-no-data")
                .ty("conf.rust.nodata")
                .extension("only", "attributes"),
        ),
    ]
}

/// What the Rust SDK sees of `event`.
pub fn rust_describe(event: &Event) -> Description {
    let text = |value: AttributeValue<'_>| -> (String, String) {
        match value {
            AttributeValue::Boolean(b) => ("boolean".into(), b.to_string()),
            AttributeValue::Integer(i) => ("integer".into(), i.to_string()),
            AttributeValue::String(s) => ("string".into(), s.to_owned()),
            AttributeValue::Binary(b) => ("binary".into(), format!("{b:?}")),
            AttributeValue::URI(u) => ("string".into(), u.to_string()),
            AttributeValue::URIRef(u) => ("string".into(), u.to_string()),
            AttributeValue::Time(t) => (
                "timestamp".into(),
                t.to_rfc3339_opts(SecondsFormat::Nanos, true),
            ),
            AttributeValue::SpecVersion(v) => ("string".into(), v.to_string()),
        }
    };
    let mut attrs: BTreeMap<String, (String, String)> = event
        .iter_attributes()
        .map(|(name, value)| (name.to_owned(), text(value)))
        .collect();
    for (name, value) in event.iter_extensions() {
        let described = match value {
            ExtensionValue::String(s) => ("string".into(), s.clone()),
            ExtensionValue::Boolean(b) => ("boolean".into(), b.to_string()),
            ExtensionValue::Integer(i) => ("integer".into(), i.to_string()),
        };
        attrs.insert(name.to_owned(), described);
    }
    let data = match event.data() {
        None => DataDescription::None,
        Some(Data::Json(value)) => DataDescription::Json(value.to_string()),
        Some(Data::String(text)) => DataDescription::Content(b64(text.as_bytes())),
        Some(Data::Binary(bytes)) => DataDescription::Content(b64(bytes)),
    };
    Description { attrs, data }
}

/// Whether two data descriptions, one of them JSON, hold the same JSON value: an SDK reads
/// JSON data as a value in structured mode and as bytes in binary mode.
fn same_json(a: &DataDescription, b: &DataDescription) -> bool {
    use base64::Engine as _;
    let value = |d: &DataDescription| -> Option<serde_json::Value> {
        match d {
            DataDescription::Json(text) => serde_json::from_str(text).ok(),
            DataDescription::Content(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
                serde_json::from_slice(&bytes).ok()
            }
            DataDescription::None => None,
        }
    };
    let one_is_json =
        matches!(a, DataDescription::Json(_)) || matches!(b, DataDescription::Json(_));
    match (value(a), value(b)) {
        (Some(a), Some(b)) => one_is_json && json_eq(&a, &b),
        _ => false,
    }
}

/// JSON equality, numbers to 12 significant digits (an SDK that parses large numbers as
/// floats, and prints them back, may move the last digit).
fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One hop an event takes through the conformance routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Forwarded by a plugin: a new event (new id, source, time, correlation id and
    /// lineage) with every other attribute and the data of its cause.
    Forwarded,
    /// Rejected into the dead-letter topic: the event itself, plus `plexusdlq*` attributes.
    DeadLettered,
}

/// How strictly to compare.
#[derive(Debug, Clone, Copy)]
pub struct Strictness {
    /// Compare attribute types too (where both sides have them: the JSON format).
    pub types: bool,
    /// Take empty data as no data (the Python SDK reads an empty Kafka value as none).
    pub empty_is_none: bool,
    /// Let `partitionkey` appear where the input had a Kafka key but no `ce_partitionkey`
    /// (Plexus writes the key as both; the Rust SDK does not read the key as the attribute).
    pub key_is_partitionkey: bool,
}

/// Whether `output` is what `hop` should make of `input`; the differences, if not.
pub fn check(hop: Hop, input: &Description, output: &Description, how: Strictness) -> Vec<String> {
    let mut problems = Vec::new();
    let replaced_by_hop = ["id", "source", "time", "correlationid"];
    for (name, (ty, value)) in &input.attrs {
        if hop == Hop::Forwarded && replaced_by_hop.contains(&name.as_str()) {
            continue;
        }
        match output.attrs.get(name) {
            None => problems.push(format!("`{name}` lost")),
            Some((out_ty, out_value)) => {
                if out_value != value {
                    problems.push(format!("`{name}`: {value:?} became {out_value:?}"));
                } else if how.types && out_ty != ty {
                    problems.push(format!("`{name}`: type {ty} became {out_ty}"));
                }
            }
        }
    }
    for name in output.attrs.keys() {
        let added_by_hop = match hop {
            Hop::Forwarded => {
                replaced_by_hop.contains(&name.as_str())
                    || name == "causationid"
                    || name == "plexushandledby"
            }
            Hop::DeadLettered => name.starts_with("plexusdlq") || name == "plexushandledby",
        };
        let key_mapped = how.key_is_partitionkey && name == "partitionkey";
        if !input.attrs.contains_key(name) && !added_by_hop && !key_mapped {
            problems.push(format!("`{name}` appeared"));
        }
    }
    let empty = DataDescription::Content(String::new());
    let same_data = output.data == input.data
        || same_json(&input.data, &output.data)
        || (how.empty_is_none
            && [&input.data, &output.data]
                .iter()
                .all(|d| **d == DataDescription::None || **d == empty));
    if !same_data {
        problems.push(format!("data {:?} became {:?}", input.data, output.data));
    }
    problems
}
