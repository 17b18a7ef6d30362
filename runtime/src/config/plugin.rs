//! `[plugins.NAME]`: where a plugin's component is, its pinned digest, the configuration its
//! `init` receives, and the limits it runs under.

use super::emits::Emits;
use super::units::{ByteSize, Duration, Sha256Hex};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

/// `[plugins.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// `path = "plugins/validator.wasm"`: the component file.
    pub path: Spanned<PathBuf>,
    /// `sha256 = "<64 hex digits>"`: refuse the file unless its digest matches.
    pub sha256: Option<Spanned<Sha256Hex>>,
    /// `[plugins.NAME.config]`: handed to the plugin's `init` and its `config` import.
    #[serde(default)]
    pub config: toml::Table,
    /// `[plugins.NAME.limits]`: what one instance may use.
    #[serde(default)]
    pub limits: Limits,
    /// `emits = ["TYPE", ...]` or `emits = { "TOPIC" = ["TYPE", ...] }`: what the plugin
    /// emits, for the catalog; undeclared emits are counted and warned about (once each).
    pub emits: Option<Emits>,
}

/// `[plugins.NAME.limits]`: what one instance may use, and what one event may cost the host.
///
/// Every limit holds wherever the plugin is, in Wasm or waiting in a host call; exceeding one
/// ends the call (time, memory) or gives the plugin an error (outbox, state), never host
/// memory growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// `memory = "64MiB"`: the most linear memory one instance may grow to.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// `timeout = "1s"`: the longest one `handle` call may take, blocked host calls included.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// `init_timeout = "10s"`: the longest instantiation and `init` may take together (at
    /// load, on `plexus check`, on a hot reload, and whenever an instance is replaced).
    #[serde(default = "default_init_timeout")]
    pub init_timeout: Duration,
    /// `max_emits = 1000`: the most events one `handle` call may stage.
    #[serde(default = "default_max_emits")]
    pub max_emits: u32,
    /// `max_outbox_bytes = "16MiB"`: the most bytes (payloads, keys, headers and attributes)
    /// one `handle` call may stage.
    #[serde(default = "default_max_outbox_bytes")]
    pub max_outbox_bytes: ByteSize,
    /// `max_state_keys = 100000`: the most live keys the plugin's state namespace may hold.
    #[serde(default = "default_max_state_keys")]
    pub max_state_keys: u64,
    /// `max_state_bytes = "64MiB"`: the most bytes of keys and values the namespace may hold.
    #[serde(default = "default_max_state_bytes")]
    pub max_state_bytes: ByteSize,
    /// `max_log_bytes = "64KiB"`: the most log text (the `log` import, stdout and stderr)
    /// one call may write; the rest is dropped and counted in one warning.
    #[serde(default = "default_max_log_bytes")]
    pub max_log_bytes: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: default_memory(),
            timeout: default_timeout(),
            init_timeout: default_init_timeout(),
            max_emits: default_max_emits(),
            max_outbox_bytes: default_max_outbox_bytes(),
            max_state_keys: default_max_state_keys(),
            max_state_bytes: default_max_state_bytes(),
            max_log_bytes: default_max_log_bytes(),
        }
    }
}

fn default_memory() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(1))
}
fn default_init_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}
fn default_max_emits() -> u32 {
    1000
}
fn default_max_outbox_bytes() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_max_state_keys() -> u64 {
    100_000
}
fn default_max_state_bytes() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_log_bytes() -> ByteSize {
    ByteSize(64 << 10)
}
