//! `emits` of `[plugins.NAME]`: the event types a plugin says it emits, and to which topics.
//! The catalog (`plexus catalog`, the topology page) is drawn from it, and a run counts and
//! warns about emits it does not declare (they are published all the same: the declaration
//! documents, it does not filter).
//!
//! Two spellings:
//! - `emits = ["shop.order.validated.v1", ...]`: types, to whichever topic;
//! - `emits = { "shop.order-outcomes" = ["shop.order.validated.v1", ...] }`: types by topic.

use super::units::TopicName;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// What a plugin declares it emits.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Emits(pub Vec<Declared>);

/// One declared emit: an event type, and the topic it goes to when that is declared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Declared {
    /// The topic, when declared.
    pub topic: Option<String>,
    /// The CloudEvents `type`.
    #[serde(rename = "type")]
    pub type_: String,
}

impl Emits {
    /// Whether an emit of `type_` to `topic` is declared.
    pub fn declares(&self, topic: &str, type_: &str) -> bool {
        self.0
            .iter()
            .any(|d| d.type_ == type_ && d.topic.as_deref().is_none_or(|t| t == topic))
    }
}

fn checked_type<E: de::Error>(type_: String) -> Result<String, E> {
    if type_.trim().is_empty() {
        return Err(E::custom("an emitted event type must not be empty"));
    }
    Ok(type_)
}

impl<'de> Deserialize<'de> for Emits {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EmitsVisitor;

        impl<'de> Visitor<'de> for EmitsVisitor {
            type Value = Emits;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of event types, or a table of topic = [event types] (e.g. emits = { \"shop.order-outcomes\" = [\"shop.order.validated.v1\"] })",
                )
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Emits, A::Error> {
                let mut declared = Vec::new();
                while let Some(type_) = seq.next_element::<String>()? {
                    declared.push(Declared {
                        topic: None,
                        type_: checked_type(type_)?,
                    });
                }
                Ok(Emits(declared))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Emits, A::Error> {
                let mut declared = Vec::new();
                while let Some(topic) = map.next_key::<String>()? {
                    let topic: TopicName = topic.parse().map_err(de::Error::custom)?;
                    for type_ in map.next_value::<Vec<String>>()? {
                        declared.push(Declared {
                            topic: Some(topic.to_string()),
                            type_: checked_type(type_)?,
                        });
                    }
                }
                Ok(Emits(declared))
            }
        }

        deserializer.deserialize_any(EmitsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        emits: Emits,
    }

    fn parse(text: &str) -> Result<Emits, String> {
        toml::from_str::<Holder>(text)
            .map(|h| h.emits)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn both_spellings_declare_and_a_topic_narrows() {
        let any = parse(r#"emits = ["a.v1", "b.v1"]"#).unwrap();
        assert!(any.declares("whatever", "a.v1"));
        assert!(!any.declares("whatever", "c.v1"));
        let by_topic = parse(r#"emits = { "out" = ["a.v1"], "other" = ["b.v1"] }"#).unwrap();
        assert!(by_topic.declares("out", "a.v1"));
        assert!(!by_topic.declares("other", "a.v1"));
        assert!(by_topic.declares("other", "b.v1"));
    }

    #[test]
    fn bad_declarations_say_what_is_expected() {
        assert!(
            parse("emits = 3")
                .unwrap_err()
                .contains("a list of event types")
        );
        assert!(
            parse(r#"emits = { "bad topic" = ["a"] }"#)
                .unwrap_err()
                .contains("invalid topic name")
        );
        assert!(
            parse(r#"emits = [""]"#)
                .unwrap_err()
                .contains("must not be empty")
        );
    }
}
