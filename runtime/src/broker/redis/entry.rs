//! Stream entries and CloudEvents, both ways, and the replies that carry entries.
//!
//! An entry is the Kafka binding's binary mode with stream fields for headers (see
//! [`crate::broker::kafka::binding`]): every attribute a `ce_` field (`ce_specversion`,
//! `ce_id`, `ce_source`, `ce_type`, ...), the content type in `content-type`, the data in
//! `data`, the partition key in `key` (and `ce_partitionkey`), transport headers as fields
//! of their own name. An entry whose `data` is a JSON object and that has no
//! `ce_specversion` (or whose `content-type` is `application/cloudevents+json`) is a
//! structured-mode event: `XADD orders * data '{"specversion":"1.0",...}'`. `data` and
//! `key` are therefore reserved: a transport header of either name is not carried.
//!
//! An entry's id `MS-SEQ` is its offset, packed as `MS << 20 | SEQ`: stable (the same entry
//! has the same offset in every process, which the state store's "applied once" markers
//! rely on) and ascending along the stream.

use crate::broker::kafka::binding::{self, KafkaRecord};
use crate::event::Event;
use redis::Value;

/// Bits of an offset that hold the id's sequence number.
const SEQ_BITS: u32 = 20;

/// The offset of entry id `MS-SEQ` (sequence numbers past 2^20 - 1, which Redis never gives
/// itself, are clamped).
pub fn pack_id(id: &str) -> Option<u64> {
    let (ms, seq) = id.split_once('-')?;
    let ms: u64 = ms.parse().ok()?;
    let seq: u64 = seq.parse().ok()?;
    Some((ms << SEQ_BITS) | seq.min((1 << SEQ_BITS) - 1))
}

/// The entry id an offset stands for.
pub fn unpack_id(offset: u64) -> String {
    format!("{}-{}", offset >> SEQ_BITS, offset & ((1 << SEQ_BITS) - 1))
}

/// One entry as read: its id and fields (`None` when it was trimmed away while pending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// `MS-SEQ`.
    pub id: String,
    /// Field-value pairs, in order.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// The fields of `event`, ready for `XADD`.
pub fn encode(event: &Event) -> Vec<(Vec<u8>, Vec<u8>)> {
    let record = binding::encode(event);
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = record
        .headers
        .into_iter()
        .filter(|(name, _)| name != DATA && name != KEY)
        .map(|(name, value)| (name.into_bytes(), value))
        .collect();
    if let Some(key) = record.key {
        fields.push((KEY.as_bytes().to_vec(), key));
    }
    if let Some(data) = record.value {
        fields.push((DATA.as_bytes().to_vec(), data));
    }
    fields
}

const DATA: &str = "data";
const KEY: &str = "key";

/// Fields of an entry, name and value.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes the fields of an entry read from shard `partition` of `topic`, taking them (an
/// entry is decoded once, and its data is most of it); when it is not a CloudEvent, the
/// error says why and hands the fields back.
pub fn decode(
    fields: Fields,
    topic: &str,
    partition: u32,
    offset: u64,
) -> Result<Event, (String, Fields)> {
    if let Some((name, _)) = fields.iter().find(|(n, _)| std::str::from_utf8(n).is_err()) {
        let reason = format!(
            "field name {:?} is not UTF-8",
            String::from_utf8_lossy(name)
        );
        return Err((reason, fields));
    }
    let mut record = KafkaRecord {
        timestamp: Some((offset >> SEQ_BITS) as i64),
        ..KafkaRecord::default()
    };
    for (name, value) in fields {
        let name = String::from_utf8(name).expect("checked above");
        match name.as_str() {
            DATA => record.value = Some(value),
            KEY => record.key = Some(value),
            _ => record.headers.push((name, value)),
        }
    }
    binding::decode(&record, topic, partition, offset).map_err(|reason| {
        let mut fields: Fields = record
            .headers
            .into_iter()
            .map(|(name, value)| (name.into_bytes(), value))
            .collect();
        fields.extend(record.key.map(|key| (KEY.as_bytes().to_vec(), key)));
        fields.extend(record.value.map(|data| (DATA.as_bytes().to_vec(), data)));
        (reason, fields)
    })
}

/// An entry as one JSON object of its fields (text, lossily), for the dead letter of an
/// entry that does not decode.
pub fn as_json(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let object: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(name, value)| {
            (
                String::from_utf8_lossy(name).into_owned(),
                serde_json::Value::String(String::from_utf8_lossy(value).into_owned()),
            )
        })
        .collect();
    serde_json::to_vec(&object).unwrap_or_default()
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(text) => Some(text.clone().into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

/// Text of a reply element.
pub fn text(value: &Value) -> Option<String> {
    bytes(value).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// An integer reply element (Redis sends some as strings).
pub fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// The elements of an array reply (none for anything else, e.g. nil).
pub fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// The bytes of a reply element, taken out of it.
fn into_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

/// The elements of an array reply, taken out of it.
fn into_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => Vec::new(),
    }
}

/// A list of entries, `[[id, [field, value, ...]], ...]`, taken apart without copying.
pub fn entries(value: Value) -> Vec<RawEntry> {
    into_items(value)
        .into_iter()
        .filter_map(|entry| {
            let mut parts = into_items(entry).into_iter();
            let id = String::from_utf8(into_bytes(parts.next()?)?).ok()?;
            let fields = match parts.next() {
                Some(Value::Nil) | None => None,
                Some(list) => {
                    let mut flat = into_items(list).into_iter();
                    let mut fields = Vec::with_capacity(flat.len() / 2);
                    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                        fields.extend(into_bytes(name).zip(into_bytes(value)));
                    }
                    Some(fields)
                }
            };
            Some(RawEntry { id, fields })
        })
        .collect()
}

/// An `XREAD`/`XREADGROUP` reply: entries per stream (nil, on a timeout, is none).
pub fn read_reply(value: Value) -> Vec<(String, Vec<RawEntry>)> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Map(map) => map,
        other => into_items(other)
            .into_iter()
            .filter_map(|stream| {
                let mut parts = into_items(stream).into_iter();
                Some((parts.next()?, parts.next()?))
            })
            .collect(),
    };
    pairs
        .into_iter()
        .filter_map(|(stream, list)| {
            let stream = String::from_utf8(into_bytes(stream)?).ok()?;
            Some((stream, entries(list)))
        })
        .collect()
}

/// An `XAUTOCLAIM` reply: the cursor to go on from (`0-0` at the end), and the entries
/// claimed.
pub fn autoclaim_reply(value: Value) -> (String, Vec<RawEntry>) {
    let mut parts = into_items(value).into_iter();
    let next = parts
        .next()
        .and_then(into_bytes)
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| "0-0".to_owned());
    (next, parts.next().map(entries).unwrap_or_default())
}

/// A flat `[name, value, name, value, ...]` reply (or a map) as pairs, names as text.
pub fn fields_of(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Map(map) => map
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        other => items(other)
            .chunks(2)
            .filter_map(|pair| Some((text(pair.first()?)?, pair.get(1)?)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudevents;

    #[test]
    fn ids_pack_in_order_and_back() {
        let ids = [
            "0-1",
            "1-0",
            "1-1",
            "1700000000000-0",
            "1700000000000-7",
            "1700000000001-0",
        ];
        let packed: Vec<u64> = ids.iter().map(|id| pack_id(id).unwrap()).collect();
        assert!(packed.windows(2).all(|w| w[0] < w[1]), "{packed:?}");
        for (id, offset) in ids.iter().zip(&packed) {
            assert_eq!(&unpack_id(*offset), id);
        }
        assert_eq!(pack_id("nonsense"), None);
    }

    #[test]
    fn an_event_survives_the_round_trip() {
        let mut event = cloudevents::decode(
            br#"{"specversion":"1.0","id":"o-1","source":"/shop","type":"shop.order.placed.v1","partitionkey":"c-7","correlationid":"flow-1","color":"red","datacontenttype":"application/json","data":{"total":1}}"#,
        )
        .unwrap();
        event.topic = "orders".into();
        let fields = encode(&event);
        let back = decode(fields, "orders", 0, pack_id("5-0").unwrap()).unwrap();
        assert_eq!(back.id, "o-1");
        assert_eq!(back.key.as_deref(), Some(&b"c-7"[..]));
        assert_eq!(back.correlation_id.as_deref(), Some("flow-1"));
        assert_eq!(back.payload, event.payload);
        assert_eq!(back.extensions, event.extensions);
    }

    #[test]
    fn a_structured_entry_decodes_and_a_plain_one_does_not() {
        let structured = vec![(
            b"data".to_vec(),
            br#"{"specversion":"1.0","id":"x","source":"/s","type":"t"}"#.to_vec(),
        )];
        assert_eq!(decode(structured, "in", 0, 1).unwrap().id, "x");
        let plain = vec![(b"name".to_vec(), b"ada".to_vec())];
        let (error, back) = decode(plain.clone(), "in", 0, 1).unwrap_err();
        assert!(error.contains("ce_specversion"), "{error}");
        assert_eq!(back, plain, "the fields come back as they were");
        assert_eq!(as_json(&back), br#"{"name":"ada"}"#);
    }

    #[test]
    fn replies_parse() {
        let entry = |id: &str, fields: &[&str]| {
            Value::Array(vec![
                Value::BulkString(id.into()),
                Value::Array(
                    fields
                        .iter()
                        .map(|f| Value::BulkString(f.as_bytes().to_vec()))
                        .collect(),
                ),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"orders".to_vec()),
            Value::Array(vec![
                entry("1-0", &["a", "b"]),
                Value::Array(vec![Value::BulkString(b"2-0".to_vec()), Value::Nil]),
            ]),
        ])]);
        let parsed = read_reply(reply);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, "orders");
        assert_eq!(
            parsed[0].1[0].fields,
            Some(vec![(b"a".to_vec(), b"b".to_vec())])
        );
        assert_eq!(parsed[0].1[1].fields, None);
        assert!(read_reply(Value::Nil).is_empty());
    }
}
