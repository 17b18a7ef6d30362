//! The plugin's configuration: the `[plugins.NAME.config]` table of `plexus.toml`.
//! String values arrive as they are; numbers, booleans, arrays and tables as JSON text.

use serde::de::DeserializeOwned;
use std::str::FromStr;

/// The configuration entries handed to [`crate::Plugin::init`].
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Wraps the entries `init` received.
    pub fn from_entries(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming it.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing config key `{key}`"))
    }

    /// The value of `key` parsed as `T`, or `default` when absent.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            Some(text) => text
                .parse()
                .map_err(|e| format!("config key `{key}`: cannot parse `{text}`: {e}")),
            None => Ok(default),
        }
    }

    /// The value of `key` (an array or table in TOML) deserialised from its JSON form.
    pub fn json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        self.get(key)
            .map(|text| serde_json::from_str(text).map_err(|e| format!("config key `{key}`: {e}")))
            .transpose()
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}
