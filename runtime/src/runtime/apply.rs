//! Carrying out a reconfiguration [`Plan`]: [`Runtime::apply`].
//!
//! Every plugin to load is loaded, checked and initialised *before* anything changes; if any
//! fails, the whole new config is refused and nothing changes. Then plugins are swapped in
//! their slots (workers follow between events), and routes that were removed or changed are
//! stopped, drained and committed, and restarted where they left off.

use super::plan::{InService, Plan, diff};
use super::{LivePlugin, Runtime};
use crate::config::Config;
use crate::config::error::ConfigErrors;
use crate::handler::{Plugin as _, PluginSlot};
use crate::host::plugins::{file_digest, load_plugin};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// What one [`Runtime::apply`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Plugins whose new version took over: (name, old version, new version).
    pub swapped: Vec<(String, String, String)>,
    /// Routes started that did not exist.
    pub added: Vec<String>,
    /// Routes stopped for good.
    pub removed: Vec<String>,
    /// Routes restarted with new settings.
    pub restarted: Vec<String>,
}

/// `name@sha256:` and the first 12 hex digits of a version (enough to tell two apart).
fn short_version(version: &str) -> &str {
    match version.find("@sha256:") {
        Some(at) => &version[..(at + "@sha256:".len() + 12).min(version.len())],
        None => version,
    }
}

/// In words, for the log: `plugin `p` swapped (p@sha256:… → p@sha256:…); route `r`
/// added`, or `nothing changed`.
impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        for (name, old, new) in &self.swapped {
            parts.push(format!(
                "plugin `{name}` swapped ({} -> {})",
                short_version(old),
                short_version(new)
            ));
        }
        let routes = [
            (&self.added, "added"),
            (&self.restarted, "restarted with new settings"),
            (&self.removed, "removed"),
        ];
        for (names, what) in routes {
            parts.extend(names.iter().map(|name| format!("route `{name}` {what}")));
        }
        if parts.is_empty() {
            return f.write_str("nothing changed");
        }
        f.write_str(&parts.join("; "))
    }
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.swapped.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.restarted.is_empty()
    }
}

impl Runtime {
    /// Moves the running process to `new`. Every new or changed plugin is loaded,
    /// checked and initialised first; if any fails, nothing changes and the errors are
    /// returned. Broker settings, inputs and outputs are not changed by a reload.
    pub fn apply(&mut self, new: Config) -> Result<Changes, ConfigErrors> {
        let result = self.apply_config(new);
        self.post_board();
        result
    }

    fn apply_config(&mut self, new: Config) -> Result<Changes, ConfigErrors> {
        let started = Instant::now();
        let plan = match diff(&self.in_service(), &new) {
            Ok(plan) => plan,
            Err(error) => {
                self.report.reloads_refused += 1;
                return Err(ConfigErrors(vec![error]));
            }
        };
        // Fallible, and off the dispatch path: nothing has changed yet.
        let mut prepared = BTreeMap::new();
        let mut errors = Vec::new();
        for name in &plan.load {
            let settings = new.plugin(name).expect("planned from this config");
            match load_plugin(&new, name, settings, &self.engine, &self.state) {
                Ok(wasm) => {
                    prepared.insert(name.clone(), wasm);
                }
                Err(error) => errors.push(error),
            }
        }
        if !errors.is_empty() {
            self.report.reloads_refused += 1;
            return Err(ConfigErrors(errors));
        }
        let mut changes = Changes::default();
        for (name, wasm) in prepared {
            let settings = new.plugin(&name).expect("planned from this config").clone();
            let digest = wasm.loaded().digest;
            match self.plugins.get_mut(&name) {
                Some(live) => {
                    let old = live.slot.replace(wasm.clone());
                    live.settings = settings;
                    live.digest = digest;
                    tracing::info!(plugin = %name, took_ms = started.elapsed().as_millis() as u64, "plugin `{name}` swapped: {} -> {}", short_version(old.version()), short_version(wasm.version()));
                    changes.swapped.push((
                        name,
                        old.version().to_owned(),
                        wasm.version().to_owned(),
                    ));
                    self.report.plugin_swaps += 1;
                }
                None => {
                    let live = LivePlugin {
                        slot: PluginSlot::new(wasm),
                        settings,
                        digest,
                    };
                    self.plugins.insert(name, live);
                }
            }
        }
        self.apply_routes(&plan, &new, &mut changes);
        for name in &plan.unload {
            self.plugins.remove(name);
        }
        if plan.edges_changed {
            tracing::warn!("inputs and outputs are not changed by a reload; restart to apply them");
        }
        self.config = new;
        self.report.reloads_applied += 1;
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "configuration applied: {changes}"
        );
        Ok(changes)
    }

    /// Counts a reload refused before [`Runtime::apply`] (the config did not parse).
    pub fn refuse(&mut self) {
        self.report.reloads_refused += 1;
        self.post_board();
    }

    /// What [`diff`] compares a new config with.
    fn in_service(&self) -> InService<'_> {
        InService {
            config: &self.config,
            routes: self
                .routes
                .iter()
                .map(|(name, live)| (name.as_str(), &live.settings))
                .collect(),
            changed_files: self
                .plugins
                .iter()
                .filter(|(_, live)| {
                    file_digest(live.settings.path.get_ref()).is_none_or(|d| d != live.digest)
                })
                .map(|(name, _)| name.clone())
                .collect(),
        }
    }

    /// Routes: removed and changed ones drain and commit first, then new ones start. A route
    /// that cannot be (re)started is logged and left out; the next reload tries it again.
    fn apply_routes(&mut self, plan: &Plan, new: &Config, changes: &mut Changes) {
        let settings_of = |name: &str| {
            new.spec
                .routes
                .iter()
                .find(|(key, _)| key.get_ref() == name)
                .map(|(_, route)| route.clone())
                .expect("planned from this config")
        };
        for name in &plan.remove {
            if let Some((_, metrics)) = self.stop_route(name) {
                self.report.routes.insert(name.clone(), metrics.snapshot());
            }
            tracing::info!(route = %name, "route removed");
            changes.removed.push(name.clone());
        }
        for restart in &plan.restart {
            let name = &restart.route;
            let settings = settings_of(name);
            let Some((source, metrics)) = self.stop_route(name) else {
                continue;
            };
            // Same topic: resume at the committed positions; else start afresh.
            let source = if restart.resubscribe {
                drop(source);
                match self.subscribe(new, name, &settings) {
                    Ok(source) => source,
                    Err(error) => {
                        tracing::error!(route = %name, "cannot subscribe: {error:#}");
                        continue;
                    }
                }
            } else {
                source
            };
            if let Err(error) = self.start_route(name, settings, source, metrics) {
                tracing::error!(route = %name, "cannot restart the route: {error:#}");
                continue;
            }
            tracing::info!(route = %name, "route restarted with new settings");
            changes.restarted.push(name.clone());
        }
        for name in &plan.add {
            let settings = settings_of(name);
            let topic = settings.topic.to_string();
            let started = self
                .subscribe(new, name, &settings)
                .and_then(|source| self.start_route(name, settings, source, Arc::default()));
            match started {
                Ok(()) => {
                    tracing::info!(route = %name, %topic, "route added");
                    changes.added.push(name.clone());
                }
                Err(error) => tracing::error!(route = %name, "cannot start the route: {error:#}"),
            }
        }
    }
}
