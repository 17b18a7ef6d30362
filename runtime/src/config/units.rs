//! Validated value types for `plexus.toml`: durations, byte sizes, names and topics.
//!
//! Each parses from its TOML text through `FromStr`, so a bad value is reported by the TOML
//! deserializer at the value's own line and column.

use serde::{Deserialize, Deserializer, de};
use std::fmt;
use std::str::FromStr;

macro_rules! deserialize_from_str {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(de::Error::custom)
            }
        }
    };
}

/// A duration written with a unit: `"250ms"`, `"2s"`, `"1m"`, `"1h"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "invalid duration `{text}`: expected a whole number and a unit (ms, s, m, h), e.g. \"500ms\""
            )
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(expected)?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| expected())?;
        let millis = match unit {
            "ms" => number,
            "s" => number.saturating_mul(1_000),
            "m" => number.saturating_mul(60_000),
            "h" => number.saturating_mul(3_600_000),
            _ => return Err(expected()),
        };
        Ok(Duration(std::time::Duration::from_millis(millis)))
    }
}
deserialize_from_str!(Duration);

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duration({self})")
    }
}

/// Shown in the largest unit that holds it exactly, so a value reads as it was written:
/// `10s`, `1m`, `250ms` (a sub-millisecond rest is not in the grammar, and not shown).
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        let (number, unit) = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
            .into_iter()
            .find(|(scale, _)| millis > 0 && millis.is_multiple_of(*scale))
            .map_or((millis, "ms"), |(scale, unit)| (millis / scale, unit));
        write!(f, "{number}{unit}")
    }
}

/// A size in bytes, with an optional binary unit: `"64MiB"`, `"512KiB"`, `"1GiB"`, `"4096"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "invalid size `{text}`: expected a whole number and a unit (B, KiB, MiB, GiB), e.g. \"64MiB\""
            )
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| expected())?;
        let scale: u64 = match unit {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(expected()),
        };
        number.checked_mul(scale).map(ByteSize).ok_or_else(expected)
    }
}
deserialize_from_str!(ByteSize);

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByteSize({self})")
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n >= 1 << 30 && n % (1 << 30) == 0 => write!(f, "{}GiB", n >> 30),
            n if n >= 1 << 20 && n % (1 << 20) == 0 => write!(f, "{}MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => write!(f, "{}KiB", n >> 10),
            n => write!(f, "{n}B"),
        }
    }
}

/// A topic name, as Kafka allows it: 1 to 249 of `A-Z a-z 0-9 . _ -`, and not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(String);

impl TopicName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TopicName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let valid_chars = text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if text.is_empty() || text.len() > 249 || !valid_chars || text == "." || text == ".." {
            return Err(format!(
                "invalid topic name `{text}`: expected 1 to 249 of A-Z, a-z, 0-9, `.`, `_`, `-`"
            ));
        }
        Ok(TopicName(text.to_owned()))
    }
}
deserialize_from_str!(TopicName);

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` is a valid plugin or route name: 1 to 64 of `a-z 0-9 - _`, starting with a
/// letter. Names appear in consumer-group ids, headers and metrics, so they stay plain.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name `{name}`: expected 1 to 64 of a-z, 0-9, `-`, `_`, starting with a letter"
        ))
    }
}

/// A SHA-256 digest written as 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Hex(pub [u8; 32]);

impl FromStr for Sha256Hex {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(text, &mut digest)
            .map_err(|_| format!("invalid sha256 `{text}`: expected 64 hexadecimal digits"))?;
        Ok(Sha256Hex(digest))
    }
}
deserialize_from_str!(Sha256Hex);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("250ms".parse::<Duration>().unwrap().0.as_millis(), 250);
        assert_eq!("2s".parse::<Duration>().unwrap().0.as_millis(), 2000);
        assert_eq!("1m".parse::<Duration>().unwrap().0.as_secs(), 60);
        assert!("5".parse::<Duration>().is_err());
        assert!("ms".parse::<Duration>().is_err());
        assert!("1.5s".parse::<Duration>().is_err());
    }

    #[test]
    fn values_are_shown_as_written() {
        for written in ["10s", "250ms", "1500ms", "90s", "5m", "2h", "0ms"] {
            let duration: Duration = written.parse().unwrap();
            assert_eq!(duration.to_string(), written);
        }
        for written in ["64MiB", "512KiB", "2GiB", "1000B"] {
            let size: ByteSize = written.parse().unwrap();
            assert_eq!(size.to_string(), written);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().0, 64 << 20);
        assert_eq!("4096".parse::<ByteSize>().unwrap().0, 4096);
        assert!("64MB".parse::<ByteSize>().is_err());
        assert!("99999999999GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
    }

    #[test]
    fn topics_and_names() {
        assert!("shop.orders-v1_x".parse::<TopicName>().is_ok());
        assert!("".parse::<TopicName>().is_err());
        assert!("a/b".parse::<TopicName>().is_err());
        assert!("..".parse::<TopicName>().is_err());
        assert!(check_name("route", "validate-orders").is_ok());
        assert!(check_name("route", "Validate").is_err());
        assert!(check_name("route", "1x").is_err());
    }
}
