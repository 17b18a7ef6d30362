//! What one event emitted, encoded to be kept with its marker in the state store (see
//! [`crate::state`]) and published again if the event is delivered again.
//!
//! A compact binary form of whole [`Event`]s (every attribute, header and byte of the
//! payload, exactly): little-endian lengths and numbers, a tag byte before optional fields
//! and typed attribute values. It is written and read by this module only, within one
//! version's markers; a leading format byte lets a later version tell its own apart.

use crate::event::{Attribute, AttributeValue, Event, Header};

/// The format of what [`encode`] writes.
const FORMAT: u8 = 1;

/// Encodes `events`.
pub fn encode(events: &[Event]) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(
        1 + events.iter().map(|e| e.size() + 64).sum::<usize>(),
    ));
    out.0.push(FORMAT);
    out.len(events.len());
    for e in events {
        out.text(&e.id);
        out.text(&e.type_);
        out.text(&e.source);
        out.opt_text(&e.subject);
        out.text(&e.topic);
        out.0.extend_from_slice(&e.partition.to_le_bytes());
        out.0.extend_from_slice(&e.offset.to_le_bytes());
        out.opt_bytes(e.key.as_deref());
        out.opt_text(&e.time);
        out.opt_text(&e.content_type);
        out.opt_text(&e.dataschema);
        out.opt_text(&e.correlation_id);
        out.len(e.extensions.len());
        for a in &e.extensions {
            out.text(&a.name);
            out.value(&a.value);
        }
        out.len(e.headers.len());
        for h in &e.headers {
            out.text(&h.name);
            out.bytes(&h.value);
        }
        out.opt_bytes(e.payload.as_deref());
        out.0.extend_from_slice(&e.attempt.to_le_bytes());
    }
    out.0
}

/// Decodes what [`encode`] wrote (nothing: no events).
pub fn decode(bytes: &[u8]) -> Result<Vec<Event>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut input = Reader(bytes);
    let format = input.take(1)?[0];
    if format != FORMAT {
        return Err(format!("stored emits of an unknown format {format}"));
    }
    let count = input.len()?;
    let mut events = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        events.push(Event {
            id: input.text()?,
            type_: input.text()?,
            source: input.text()?,
            subject: input.opt_text()?,
            topic: input.text()?,
            partition: u32::from_le_bytes(input.array()?),
            offset: u64::from_le_bytes(input.array()?),
            key: input.opt_bytes()?,
            time: input.opt_text()?,
            content_type: input.opt_text()?,
            dataschema: input.opt_text()?,
            correlation_id: input.opt_text()?,
            extensions: (0..input.len()?)
                .map(|_| {
                    Ok(Attribute {
                        name: input.text()?,
                        value: input.value()?,
                    })
                })
                .collect::<Result<_, String>>()?,
            headers: (0..input.len()?)
                .map(|_| {
                    Ok(Header {
                        name: input.text()?,
                        value: input.bytes()?,
                    })
                })
                .collect::<Result<_, String>>()?,
            payload: input.opt_bytes()?,
            attempt: u32::from_le_bytes(input.array()?),
        });
    }
    if !input.0.is_empty() {
        return Err("stored emits: bytes left over".into());
    }
    Ok(events)
}

struct Writer(Vec<u8>);

impl Writer {
    fn len(&mut self, len: usize) {
        self.0.extend_from_slice(&(len as u32).to_le_bytes());
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.0.extend_from_slice(bytes);
    }
    fn text(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }
    fn opt_bytes(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => {
                self.0.push(1);
                self.bytes(bytes);
            }
            None => self.0.push(0),
        }
    }
    fn opt_text(&mut self, text: &Option<String>) {
        self.opt_bytes(text.as_deref().map(str::as_bytes));
    }
    fn value(&mut self, value: &AttributeValue) {
        match value {
            AttributeValue::Boolean(b) => self.0.extend_from_slice(&[0, u8::from(*b)]),
            AttributeValue::Integer(n) => {
                self.0.push(1);
                self.0.extend_from_slice(&n.to_le_bytes());
            }
            AttributeValue::String(s) => self.tagged(2, s.as_bytes()),
            AttributeValue::Binary(b) => self.tagged(3, b),
            AttributeValue::Uri(s) => self.tagged(4, s.as_bytes()),
            AttributeValue::UriReference(s) => self.tagged(5, s.as_bytes()),
            AttributeValue::Timestamp(s) => self.tagged(6, s.as_bytes()),
        }
    }
    fn tagged(&mut self, tag: u8, bytes: &[u8]) {
        self.0.push(tag);
        self.bytes(bytes);
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("stored emits: truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn len(&mut self) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let len = self.len()?;
        Ok(self.take(len)?.to_vec())
    }
    fn text(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?).map_err(|e| format!("stored emits: {e}"))
    }
    fn flag(&mut self) -> Result<bool, String> {
        Ok(self.take(1)?[0] == 1)
    }
    fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.flag()? {
            self.bytes().map(Some)
        } else {
            Ok(None)
        }
    }
    fn opt_text(&mut self) -> Result<Option<String>, String> {
        if self.flag()? {
            self.text().map(Some)
        } else {
            Ok(None)
        }
    }
    fn value(&mut self) -> Result<AttributeValue, String> {
        Ok(match self.take(1)?[0] {
            0 => AttributeValue::Boolean(self.flag()?),
            1 => AttributeValue::Integer(i32::from_le_bytes(self.array()?)),
            2 => AttributeValue::String(self.text()?),
            3 => AttributeValue::Binary(self.bytes()?),
            4 => AttributeValue::Uri(self.text()?),
            5 => AttributeValue::UriReference(self.text()?),
            6 => AttributeValue::Timestamp(self.text()?),
            tag => return Err(format!("stored emits: unknown attribute tag {tag}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_survives_the_round_trip() {
        let event = Event {
            id: "id-1".into(),
            type_: "t.v1".into(),
            source: "plexus:route/r".into(),
            subject: Some("s".into()),
            topic: "out".into(),
            partition: 3,
            offset: 1 << 40,
            key: Some(vec![0, 255, 7]),
            time: Some("2026-12-01T00:00:00.123456789+01:00".into()),
            content_type: None,
            dataschema: Some("https://example.com/s".into()),
            correlation_id: Some("c".into()),
            extensions: [
                AttributeValue::Boolean(true),
                AttributeValue::Integer(-5),
                AttributeValue::String("é".into()),
                AttributeValue::Binary(vec![1, 2]),
                AttributeValue::Uri("https://x".into()),
                AttributeValue::UriReference("/x".into()),
                AttributeValue::Timestamp("2026-01-01T00:00:00Z".into()),
            ]
            .into_iter()
            .enumerate()
            .map(|(i, value)| Attribute {
                name: format!("a{i}"),
                value,
            })
            .collect(),
            headers: vec![Header {
                name: "h".into(),
                value: vec![9; 3],
            }],
            payload: Some(Vec::new()),
            attempt: 2,
        };
        let mut without_payload = event.clone();
        without_payload.payload = None;
        let events = vec![event, without_payload];
        assert_eq!(decode(&encode(&events)).unwrap(), events);
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::<Event>::new());
        assert_eq!(decode(&[]).unwrap(), Vec::<Event>::new());
        let bytes = encode(&events);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err(), "truncated");
    }
}
