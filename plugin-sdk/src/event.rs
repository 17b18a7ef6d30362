//! Reading an event: its data as JSON or text, its CloudEvents attributes (typed, or as
//! text), its transport headers and key.

use crate::{AttributeValue, Event};
use serde::de::DeserializeOwned;

impl Event {
    /// The data, or no bytes when the event has none.
    pub fn data(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }

    /// The data parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.data())
    }

    /// The data as UTF-8 text, if it is.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(self.data()).ok()
    }

    /// The extension attribute `name` (e.g. `traceparent`, or one a producer set), typed.
    pub fn extension(&self, name: &str) -> Option<&AttributeValue> {
        self.extensions
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    /// The extension attribute `name` as text: its canonical string encoding (booleans
    /// `true`/`false`, integers in decimal, binary in base64).
    pub fn extension_str(&self, name: &str) -> Option<String> {
        self.extension(name).map(AttributeValue::to_text)
    }

    /// The value of the first transport header called `name` (a Kafka header that is not a
    /// CloudEvents attribute).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_slice())
    }

    /// The value of the header `name` as UTF-8 text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The partition key as UTF-8 text.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// CloudEvents `time` as milliseconds since the Unix epoch (rounded towards the past),
    /// if the event has one.
    pub fn time_millis(&self) -> Option<i64> {
        self.time.as_deref().and_then(crate::text::rfc3339_millis)
    }
}

impl AttributeValue {
    /// The canonical string encoding of the value.
    pub fn to_text(&self) -> String {
        match self {
            AttributeValue::Boolean(b) => b.to_string(),
            AttributeValue::Integer(i) => i.to_string(),
            AttributeValue::Binary(bytes) => crate::text::base64(bytes),
            AttributeValue::String(s)
            | AttributeValue::Uri(s)
            | AttributeValue::UriReference(s)
            | AttributeValue::Timestamp(s) => s.clone(),
        }
    }
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        AttributeValue::String(value.to_owned())
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::String(value)
    }
}

impl From<bool> for AttributeValue {
    fn from(value: bool) -> Self {
        AttributeValue::Boolean(value)
    }
}

impl From<i32> for AttributeValue {
    fn from(value: i32) -> Self {
        AttributeValue::Integer(value)
    }
}
