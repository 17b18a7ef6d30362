//! Which dead letters to replay, and the event each one becomes.
//!
//! A letter is the failed event plus `plexusdlq*` attributes saying why, where from and
//! when (see [`crate::dispatch::deadletter`]). Replaying it publishes the event as it was
//! (same id, same payload) without those attributes, with `plexusreplayed` counting how many
//! times it has been replayed, so a plugin, a log or a dashboard can tell.

use crate::attributes::HANDLED_BY;
use crate::dispatch::deadletter::{DLQ_PREFIX, PAYLOAD_DROPPED};
use crate::event::{AttributeValue, Event};

/// The attribute a replayed event carries: how many times it has been replayed.
pub const REPLAYED: &str = "plexusreplayed";

/// What to replay; every filter given must match (each list: any of its values).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `plexusdlqkind`: rejected, trap, timeout, retries-exhausted, ...
    pub kinds: Vec<String>,
    /// `plexusdlqroute`.
    pub routes: Vec<String>,
    /// The plugin's name (`plexusdlqplugin` is `NAME@sha256:...`), or a whole version.
    pub plugins: Vec<String>,
    /// Dead-lettered at or after (milliseconds since the Unix epoch).
    pub since: Option<i64>,
    /// Dead-lettered before.
    pub until: Option<i64>,
    /// Event ids.
    pub ids: Vec<String>,
}

/// A dead letter as read, with what replay needs of it.
#[derive(Debug, Clone)]
pub struct Letter {
    /// Where the letter is: `topic/partition/offset`, or `file:line`.
    pub position: String,
    /// The letter.
    pub event: Event,
}

/// Why a letter that matches cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreplayable {
    /// Written without its payload (too large for the dead-letter topic).
    PayloadDropped(String),
    /// A record that never decoded as an event: there is no event to publish again.
    Undecodable,
    /// Not a dead letter at all (no `plexusdlqtopic`) and no `--to`.
    NoTopic,
}

impl std::fmt::Display for Unreplayable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreplayable::PayloadDropped(why) => write!(
                f,
                "written without its payload ({why}): read the event at its source position"
            ),
            Unreplayable::Undecodable => {
                write!(
                    f,
                    "an undecodable record, not an event: fix it at its producer"
                )
            }
            Unreplayable::NoTopic => write!(f, "no plexusdlqtopic: name a topic with --to"),
        }
    }
}

impl Letter {
    /// A `plexusdlq*` attribute of the letter.
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.event.extension_text(&format!("{DLQ_PREFIX}{name}"))
    }

    /// When it was dead-lettered, in milliseconds since the Unix epoch.
    pub fn dead_lettered_at(&self) -> Option<i64> {
        let time = self.attribute("time")?;
        crate::cloudevents::parse_rfc3339_millis(&time).ok()
    }

    /// Whether `filter` chooses this letter.
    pub fn matches(&self, filter: &Filter) -> bool {
        let any = |wanted: &[String], found: Option<String>| {
            wanted.is_empty() || found.is_some_and(|f| wanted.contains(&f))
        };
        let plugin = self.attribute("plugin");
        let plugin_matches = filter.plugins.is_empty()
            || plugin.as_deref().is_some_and(|version| {
                let name = version.split('@').next().unwrap_or(version);
                filter.plugins.iter().any(|p| p == name || p == version)
            });
        let at = self.dead_lettered_at();
        any(&filter.kinds, self.attribute("kind"))
            && any(&filter.routes, self.attribute("route"))
            && plugin_matches
            && any(&filter.ids, Some(self.event.id.clone()))
            && filter
                .since
                .is_none_or(|since| at.is_some_and(|at| at >= since))
            && filter
                .until
                .is_none_or(|until| at.is_some_and(|at| at < until))
    }

    /// The event to publish again, to `to` or to the topic it failed on.
    pub fn replayed(&self, to: Option<&str>) -> Result<Event, Unreplayable> {
        if let Some(why) = self.event.extension_text(PAYLOAD_DROPPED) {
            return Err(Unreplayable::PayloadDropped(why));
        }
        if self.event.type_ == "plexus.undecodable" {
            return Err(Unreplayable::Undecodable);
        }
        let topic = match to {
            Some(to) => to.to_owned(),
            None => self.attribute("topic").ok_or(Unreplayable::NoTopic)?,
        };
        let mut event = self.event.clone();
        let times: u64 = event
            .extension_text(REPLAYED)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // The failing plugin's stamp goes with the other dead-letter attributes: the event
        // replayed was not handled by it.
        event
            .extensions
            .retain(|a| !a.name.starts_with(DLQ_PREFIX) && a.name != HANDLED_BY);
        event.set_extension(REPLAYED, AttributeValue::String((times + 1).to_string()));
        event.topic = topic;
        event.partition = 0;
        event.offset = 0;
        event.attempt = 1;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(extra: &str) -> Letter {
        let text = format!(
            r#"{{"specversion":"1.0","id":"o-1","source":"/shop","type":"shop.order.placed.v1","data":{{"n":1}},"plexusdlqkind":"rejected","plexusdlqreason":"no","plexusdlqroute":"validate","plexusdlqplugin":"order-validator@sha256:abc","plexusdlqattempts":"1","plexusdlqtopic":"shop.orders","plexusdlqpartition":"2","plexusdlqoffset":"7","plexusdlqtime":"2026-12-01T10:00:00Z","plexushandledby":"order-validator@sha256:abc","correlationid":"c-1"{extra}}}"#
        );
        Letter {
            position: "dlq/0/0".into(),
            event: crate::cloudevents::decode(text.as_bytes()).unwrap(),
        }
    }

    #[test]
    fn filters_choose_by_kind_route_plugin_time_and_id() {
        let l = letter("");
        let at = |t: &str| crate::cloudevents::parse_rfc3339_millis(t).unwrap();
        assert!(l.matches(&Filter::default()));
        let kinds = |k: &[&str]| Filter {
            kinds: k.iter().map(|s| s.to_string()).collect(),
            ..Filter::default()
        };
        assert!(l.matches(&kinds(&["trap", "rejected"])));
        assert!(!l.matches(&kinds(&["trap"])));
        let plugin = |p: &str| Filter {
            plugins: vec![p.into()],
            ..Filter::default()
        };
        assert!(l.matches(&plugin("order-validator")));
        assert!(l.matches(&plugin("order-validator@sha256:abc")));
        assert!(!l.matches(&plugin("order")));
        let window = |since: &str, until: &str| Filter {
            since: Some(at(since)),
            until: Some(at(until)),
            ..Filter::default()
        };
        assert!(l.matches(&window("2026-12-01T10:00:00Z", "2026-12-01T10:00:01Z")));
        assert!(!l.matches(&window("2026-12-01T10:00:01Z", "2026-12-02T00:00:00Z")));
        assert!(!l.matches(&window("2026-11-01T00:00:00Z", "2026-12-01T10:00:00Z")));
        let ids = Filter {
            ids: vec!["o-2".into()],
            routes: vec!["validate".into()],
            ..Filter::default()
        };
        assert!(!l.matches(&ids));
    }

    #[test]
    fn a_replayed_event_is_the_event_again_counted() {
        let once = letter("").replayed(None).unwrap();
        assert_eq!(once.topic, "shop.orders");
        assert_eq!(once.id, "o-1");
        assert_eq!(once.data(), br#"{"n":1}"#);
        assert_eq!(once.extension_text(REPLAYED).as_deref(), Some("1"));
        assert_eq!(once.correlation_id.as_deref(), Some("c-1"));
        assert!(
            once.extensions
                .iter()
                .all(|a| !a.name.starts_with("plexusdlq"))
        );
        assert!(once.extension(HANDLED_BY).is_none());
        let again = letter(r#","plexusreplayed":"1""#)
            .replayed(Some("elsewhere"))
            .unwrap();
        assert_eq!(again.extension_text(REPLAYED).as_deref(), Some("2"));
        assert_eq!(again.topic, "elsewhere");
    }

    #[test]
    fn letters_without_their_event_are_not_replayed() {
        let dropped = letter(r#","plexusdlqdropped":"too large""#);
        assert!(matches!(
            dropped.replayed(None),
            Err(Unreplayable::PayloadDropped(_))
        ));
        let mut undecodable = letter("");
        undecodable.event.type_ = "plexus.undecodable".into();
        assert!(matches!(
            undecodable.replayed(None),
            Err(Unreplayable::Undecodable)
        ));
    }
}
