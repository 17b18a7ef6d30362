//! CloudEvents attributes as the spec (v1.0.2) defines them, shared by the JSON format, the
//! Kafka binding and the host: which names are valid, which are the core attributes Plexus
//! keeps in fields of its own, how a typed value is written as text (the canonical string
//! encoding, as the Kafka binding carries it), and the names Plexus itself uses.
//!
//! Plexus's own attributes were named `plexus-causation-id`, `plexus-handled-by` and
//! `plexus-dlq-*` before 0.2.0, which the spec forbids; [`legacy_name`] reads those old names
//! on input for one release.

use crate::bindings::AttributeValue;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The event that caused an emitted event (its id): the Correlation extension's attribute.
pub const CAUSATION: &str = "causationid";
/// The plugin version that handled an event: `name@sha256:<hex>`.
pub const HANDLED_BY: &str = "plexushandledby";
/// The W3C trace context (the Distributed Tracing extension), copied from a handled event
/// onto everything it causes.
pub const TRACE_CONTEXT: [&str; 2] = ["traceparent", "tracestate"];

/// Attributes Plexus keeps in fields of the event record (or derives), never as extensions.
pub const CORE: [&str; 11] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "partitionkey",
    "correlationid",
    "data",
];

/// Why a name cannot be an attribute's, if it cannot (lower-case letters and digits only).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an attribute name cannot be empty".to_owned());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
    {
        return Err(format!(
            "`{name}` is not a CloudEvents attribute name: `{bad}` is not a lower-case letter or a digit"
        ));
    }
    Ok(())
}

/// Why `name` cannot be an extension attribute's (a core attribute's, or invalid), if so.
pub fn check_extension_name(name: &str) -> Result<(), String> {
    check_name(name)?;
    if CORE.contains(&name) || name == "data_base64" {
        return Err(format!(
            "`{name}` is a core attribute, not an extension; set it through its own field"
        ));
    }
    Ok(())
}

/// The current name of an attribute Plexus wrote under an old, invalid name before 0.2.0
/// (`plexus-causation-id`, `plexus-handled-by`, `plexus-dlq-kind`, ...), if `name` is one.
pub fn legacy_name(name: &str) -> Option<String> {
    match name {
        "plexus-causation-id" => Some(CAUSATION.to_owned()),
        _ if name.starts_with("plexus-") => {
            Some(name.chars().filter(|c| *c != '-').collect::<String>())
        }
        _ => None,
    }
}

/// The canonical string encoding of a value (how the Kafka binding and 0.1.0 plugins see
/// it): booleans `true`/`false`, integers in decimal, binary in base64, the rest as is.
pub fn canonical_string(value: &AttributeValue) -> String {
    match value {
        AttributeValue::Boolean(b) => b.to_string(),
        AttributeValue::Integer(i) => i.to_string(),
        AttributeValue::Binary(bytes) => BASE64.encode(bytes),
        AttributeValue::String(s)
        | AttributeValue::Uri(s)
        | AttributeValue::UriReference(s)
        | AttributeValue::Timestamp(s) => s.clone(),
    }
}

/// The bytes a value holds, for size accounting.
pub fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::Boolean(_) => 1,
        AttributeValue::Integer(_) => 4,
        AttributeValue::Binary(bytes) => bytes.len(),
        AttributeValue::String(s)
        | AttributeValue::Uri(s)
        | AttributeValue::UriReference(s)
        | AttributeValue::Timestamp(s) => s.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_letters_and_digits() {
        assert!(check_name("traceparent").is_ok());
        assert!(check_name("plexusdlqkind2").is_ok());
        assert!(check_name("plexus-dlq-kind").is_err());
        assert!(check_name("Color").is_err());
        assert!(check_name("").is_err());
        assert!(check_extension_name("time").is_err());
        assert!(check_extension_name("color").is_ok());
    }

    #[test]
    fn old_plexus_names_map_to_valid_ones() {
        assert_eq!(
            legacy_name("plexus-causation-id").as_deref(),
            Some(CAUSATION)
        );
        assert_eq!(
            legacy_name("plexus-handled-by").as_deref(),
            Some(HANDLED_BY)
        );
        assert_eq!(
            legacy_name("plexus-dlq-kind").as_deref(),
            Some("plexusdlqkind")
        );
        assert_eq!(legacy_name("color"), None);
    }

    #[test]
    fn canonical_strings() {
        assert_eq!(canonical_string(&AttributeValue::Boolean(true)), "true");
        assert_eq!(canonical_string(&AttributeValue::Integer(-42)), "-42");
        assert_eq!(
            canonical_string(&AttributeValue::Binary(vec![0, 255])),
            "AP8="
        );
        assert_eq!(
            canonical_string(&AttributeValue::Uri("https://x/y".into())),
            "https://x/y"
        );
    }
}
