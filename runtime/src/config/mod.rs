//! `plexus.toml`: what an operator writes, parsed strictly and validated as a whole.
//!
//! Unknown keys are errors and every error names the file, line and column; see
//! [`Config::load`]. Paths in the file are relative to the file's directory.
//!
//! # Layout
//! - this module: the file as a whole, `[broker]`, `[runtime]`, `[[inputs]]`, `[[outputs]]`.
//! - `plugin` and `route`: `[plugins.NAME]` ([`PluginConfig`], [`Limits`]) and
//!   `[routes.NAME]` ([`RouteConfig`], [`RetryConfig`]).
//! - [`units`]: validated values (durations, sizes, topic names, digests).
//! - [`error`]: errors with file:line:col.
//! - `validate`: the checks that span several tables (route → plugin, dead-letter loops).
//! - `state`: `[state]` ([`StateConfig`]).
//! - `admin`: `[admin]` ([`AdminConfig`]).
//! - `emits`: what a plugin declares it emits ([`Emits`]).
//! - [`broker`]: `[broker]` and each broker's own table (`[broker.kafka]`, `[broker.redis]`).
//! - [`secret`]: secrets from the environment or files, never shown.

mod admin;
pub mod broker;
mod emits;
pub mod error;
mod plugin;
mod route;
pub mod secret;
mod state;
pub mod units;
mod validate;

pub use admin::{AdminConfig, DEFAULT_LISTEN, Listen};
pub use broker::{BrokerConfig, BrokerKind, KafkaConfig, RedisConfig, RedisTopic, kafka_security};
pub use emits::{Declared, Emits};
pub use plugin::{Limits, PluginConfig};
pub use route::{DedupeConfig, DeliveryGuarantee, RetryConfig, RouteConfig};
pub use state::{StateBackendKind, StateConfig};

use self::error::{ConfigError, ConfigErrors, Locator};
use self::units::{Duration, TopicName};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file as the user named it (used in messages).
    pub file: String,
    /// The directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// The parsed tables, paths already resolved.
    pub spec: ConfigFile,
    /// The file's text, to locate plugin errors found after parsing.
    pub text: String,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[broker]`: which broker the routes read from and write to.
    #[serde(default)]
    pub broker: BrokerConfig,
    /// `[runtime]`: process-wide settings.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// `[state]`: where plugin state lives.
    #[serde(default)]
    pub state: StateConfig,
    /// `[admin]`: the admin server and the status line.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[[inputs]]`: CloudEvents JSON-lines files fed into topics (embedded broker).
    #[serde(default)]
    pub inputs: Vec<Spanned<InputConfig>>,
    /// `[[outputs]]`: topics written out as CloudEvents JSON lines (embedded broker).
    #[serde(default)]
    pub outputs: Vec<Spanned<OutputConfig>>,
    /// `[plugins.NAME]`: the components routes can use.
    #[serde(default)]
    pub plugins: BTreeMap<Spanned<String>, PluginConfig>,
    /// `[routes.NAME]`: topic → plugin bindings.
    #[serde(default)]
    pub routes: BTreeMap<Spanned<String>, RouteConfig>,
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `cache_dir = "path"`: where compiled plugins are cached (default: the user's cache
    /// directory, `plexus/` inside it).
    pub cache_dir: Option<PathBuf>,
    /// `reload_settle = "50ms"`: how long changed files must stay unchanged before a
    /// reload reads them (longer for slow copies).
    #[serde(default = "default_reload_settle")]
    pub reload_settle: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            reload_settle: default_reload_settle(),
        }
    }
}

fn default_reload_settle() -> Duration {
    Duration(std::time::Duration::from_millis(50))
}

/// `[[inputs]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// `topic = "shop.orders"`: the topic the events are appended to.
    pub topic: TopicName,
    /// `file = "events/orders.jsonl"`: CloudEvents, one JSON object per line.
    pub file: PathBuf,
    /// `follow = true`: keep reading what is appended to the file, until the run is stopped
    /// (`plexus run --follow` sets it on every input).
    #[serde(default)]
    pub follow: bool,
}

/// `[[outputs]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// `topic = "shop.notifications"`: the topic to write out.
    pub topic: TopicName,
    /// `file = "out/notifications.jsonl"`, or `"-"` for standard output.
    pub file: PathBuf,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: 1,
                column: 1,
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&text, &file, &base_dir)
    }

    /// Parses and validates `text`, naming it `file` in errors and resolving relative paths
    /// against `base_dir`.
    pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        let locator = Locator::new(file, text);
        let mut spec: ConfigFile = toml::from_str(text).map_err(|e| {
            let message = explain_toml_message(e.message().trim_end(), e.span(), text);
            ConfigErrors(vec![locator.error(e.span(), message)])
        })?;
        let errors = validate::validate(&spec, &locator);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        spec.broker
            .resolve(base_dir, &locator)
            .map_err(ConfigErrors)?;
        resolve_paths(&mut spec, base_dir);
        spec.state.resolve(base_dir, file);
        Ok(Config {
            file: file.to_owned(),
            base_dir: base_dir.to_path_buf(),
            spec,
            text: text.to_owned(),
        })
    }

    /// An error located at `span` of this file.
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        Locator::new(&self.file, &self.text).error(Some(span), message)
    }

    /// Every topic the config names: route inputs and their dead-letter topics, inputs and
    /// outputs (sorted, once each).
    pub fn named_topics(&self) -> Vec<String> {
        let spec = &self.spec;
        let mut topics: Vec<String> = spec
            .routes
            .iter()
            .flat_map(|(name, r)| {
                [
                    r.topic.to_string(),
                    r.dead_letter_topic(name.get_ref()).to_string(),
                ]
            })
            .chain(spec.inputs.iter().map(|i| i.get_ref().topic.to_string()))
            .chain(spec.outputs.iter().map(|o| o.get_ref().topic.to_string()))
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The plugin called `name`.
    pub fn plugin(&self, name: &str) -> Option<&PluginConfig> {
        self.spec
            .plugins
            .iter()
            .find(|(key, _)| key.get_ref() == name)
            .map(|(_, plugin)| plugin)
    }
}

fn resolve_paths(spec: &mut ConfigFile, base: &Path) {
    let resolve = |path: &mut PathBuf| {
        if path.is_relative() && path.as_os_str() != "-" {
            *path = base.join(&*path);
        }
    };
    for input in &mut spec.inputs {
        resolve(&mut input.get_mut().file);
    }
    for output in &mut spec.outputs {
        resolve(&mut output.get_mut().file);
    }
    for plugin in spec.plugins.values_mut() {
        resolve(plugin.path.get_mut());
    }
    if let Some(dir) = &mut spec.runtime.cache_dir {
        resolve(dir);
    }
}

/// The TOML parser's message, said plainly where it is terse: a name (a broker kind, a
/// delivery guarantee) given as another type of value reads "wanted string or table".
fn explain_toml_message(message: &str, span: Option<std::ops::Range<usize>>, text: &str) -> String {
    if message != "wanted string or table" {
        return message.to_owned();
    }
    let found = span
        .and_then(|span| text.get(span))
        .map(str::trim)
        .unwrap_or_default();
    format!("invalid type: `{found}`, expected a string (one of the names this key takes)")
}
