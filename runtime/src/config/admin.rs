//! `[admin]`: the admin HTTP server of `plexus run` (metrics, health, status) and the
//! periodic status line.

use super::units::Duration;
use serde::{Deserialize, Deserializer, de};
use std::fmt;
use std::str::FromStr;

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `listen = "127.0.0.1:9464"` (the default): where the admin server listens; port 0
    /// picks a free port (logged); `"off"`: no server. The environment variable
    /// `PLEXUS_ADMIN_LISTEN` overrides it for `plexus run`.
    #[serde(default)]
    pub listen: Listen,
    /// `status_interval = "30s"`: how often a one-line status (rates, lag, in flight) is
    /// logged at info level while the run goes on; `"0s"`: never.
    #[serde(default = "default_status_interval")]
    pub status_interval: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Listen::default(),
            status_interval: default_status_interval(),
        }
    }
}

fn default_status_interval() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

/// Where the admin server listens, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// No admin server.
    Off,
    /// `HOST:PORT` (`[V6ADDRESS]:PORT` for IPv6).
    Address(String),
}

/// The default address: loopback only, on the port commonly used by exporters of this kind.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

impl Default for Listen {
    fn default() -> Self {
        Listen::Address(DEFAULT_LISTEN.to_owned())
    }
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Listen::Off);
        }
        let invalid = || {
            format!(
                "invalid listen address `{text}`: expected HOST:PORT (e.g. \"127.0.0.1:9464\", \"0.0.0.0:9464\", port 0 for any free port) or \"off\""
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(invalid());
        }
        Ok(Listen::Address(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::Address(address) => f.write_str(address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_addresses_and_off_and_refuses_the_rest() {
        assert_eq!("off".parse::<Listen>(), Ok(Listen::Off));
        for good in ["127.0.0.1:9464", "0.0.0.0:0", "[::1]:9464", "localhost:80"] {
            assert_eq!(good.parse::<Listen>(), Ok(Listen::Address(good.into())));
        }
        for bad in ["", "9464", ":9464", "host:", "host:70000", "on"] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
    }
}
