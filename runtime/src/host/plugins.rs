//! Plugins as a config declares them: each loaded, checked against the world and initialised
//! once, with errors located at its `path` in `plexus.toml`. Used by `plexus run` (and every
//! reload), `plexus check` and `plexus test`, none of which needs the other's machinery.

use super::component;
use super::engine::PlexusEngine;
use super::instance::WasmPlugin;
use super::store::PluginContext;
use crate::config::error::{ConfigError, ConfigErrors};
use crate::config::{Config, PluginConfig};
use crate::handler::Plugin as _;
use crate::state::StateBackend;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The compile cache directory: `[runtime] cache_dir`, else `$PLEXUS_CACHE_DIR`, else
/// `plexus` in the user's cache directory (`$XDG_CACHE_HOME`, or `~/.cache` on Linux).
pub fn cache_dir(config: Option<&Config>) -> Option<PathBuf> {
    if let Some(dir) = config.and_then(|c| c.spec.runtime.cache_dir.clone()) {
        return Some(dir);
    }
    if let Some(dir) = std::env::var_os("PLEXUS_CACHE_DIR") {
        return Some(dir.into());
    }
    dirs::cache_dir().map(|base| base.join("plexus"))
}

/// The configuration table of a plugin as `init` receives it: strings as they are, other
/// values as JSON.
pub fn config_entries(table: &toml::Table) -> Vec<(String, String)> {
    table
        .iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                other => serde_json::to_string(other).unwrap_or_else(|_| other.to_string()),
            };
            (key.clone(), text)
        })
        .collect()
}

/// Loads, verifies and initialises plugin `name` of `config`. Errors point at its `path`.
pub fn load_plugin(
    config: &Config,
    name: &str,
    plugin: &PluginConfig,
    engine: &PlexusEngine,
    state: &Arc<dyn StateBackend>,
) -> Result<Arc<WasmPlugin>, ConfigError> {
    let at = |message: String| {
        config.error_at(plugin.path.span(), format!("plugin `{name}`: {message}"))
    };
    let pinned = plugin.sha256.as_ref().map(|s| &s.get_ref().0);
    let loaded = component::load(engine, name, plugin.path.get_ref(), pinned)
        .map_err(|e| at(e.to_string()))?;
    tracing::debug!(plugin = %loaded.version, from_cache = loaded.from_cache, load_ms = loaded.load_time.as_millis() as u64, "plugin loaded");
    let context = PluginContext {
        name: name.into(),
        config: config_entries(&plugin.config),
        state: state.clone(),
        limits: plugin.limits,
        emits: plugin.emits.clone(),
    };
    let wasm = WasmPlugin::new(loaded, context);
    // Instantiating once proves the exports fit and `init` accepts the config.
    wasm.instantiate().map_err(|e| at(format!("{e:#}")))?;
    Ok(Arc::new(wasm))
}

/// Loads every plugin the config declares; all errors, located.
pub fn load_plugins(
    config: &Config,
    engine: &PlexusEngine,
    state: &Arc<dyn StateBackend>,
) -> Result<BTreeMap<String, Arc<WasmPlugin>>, ConfigErrors> {
    let mut plugins = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, plugin) in &config.spec.plugins {
        match load_plugin(config, name.get_ref(), plugin, engine, state) {
            Ok(wasm) => {
                plugins.insert(name.get_ref().clone(), wasm);
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(plugins)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The SHA-256 of the file at `path`, if it can be read.
pub fn file_digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path)
        .ok()
        .map(|bytes| super::engine::sha256(&bytes))
}
