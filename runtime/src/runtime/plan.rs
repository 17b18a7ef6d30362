//! Reconfiguration as data: [`diff`] compares what is in service with a new config and says
//! what must change, without touching anything. [`super::apply`](super::apply) carries the plan out.

use crate::config::error::ConfigError;
use crate::config::{Config, RouteConfig};
use std::collections::{BTreeMap, BTreeSet};

/// What is in service, as far as a reconfiguration needs to know.
pub struct InService<'a> {
    /// The config in service.
    pub config: &'a Config,
    /// The routes running, with the settings they started with (a route that could not be
    /// started is absent, so the next reload tries it again).
    pub routes: BTreeMap<&'a str, &'a RouteConfig>,
    /// Plugins whose file no longer holds the version in service.
    pub changed_files: BTreeSet<String>,
}

/// What moving to a new config takes, in the order it is done.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Plugins to load, check and initialise before anything changes: new ones, and those
    /// whose settings or file changed.
    pub load: Vec<String>,
    /// Plugins the new config no longer declares.
    pub unload: Vec<String>,
    /// Routes to stop for good.
    pub remove: Vec<String>,
    /// Routes to stop, drain and start again with new settings.
    pub restart: Vec<Restart>,
    /// Routes to start.
    pub add: Vec<String>,
    /// Inputs or outputs differ; a reload does not change them.
    pub edges_changed: bool,
}

/// A route restarted with new settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The route.
    pub route: String,
    /// Its topic (or its delivery guarantee) changed: subscribe afresh instead of resuming
    /// where it was.
    pub resubscribe: bool,
}

impl Plan {
    /// Whether the plan changes nothing.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.load.is_empty()
            && self.unload.is_empty()
            && self.remove.is_empty()
            && self.restart.is_empty()
            && self.add.is_empty()
    }
}

/// The plan that moves `running` to `new`, or why `new` cannot be applied live (broker
/// settings changed).
pub fn diff(running: &InService<'_>, new: &Config) -> Result<Plan, ConfigError> {
    let old = &running.config.spec;
    if new.spec.broker != old.broker {
        return Err(new.error_at(
            new.spec.broker.kind.span(),
            "broker settings cannot change while running; restart to apply them",
        ));
    }
    let mut plan = Plan::default();
    for (name, settings) in &new.spec.plugins {
        let name = name.get_ref();
        let unchanged =
            running.config.plugin(name) == Some(settings) && !running.changed_files.contains(name);
        if !unchanged {
            plan.load.push(name.clone());
        }
    }
    plan.unload = old
        .plugins
        .keys()
        .map(|name| name.get_ref())
        .filter(|name| new.plugin(name).is_none())
        .cloned()
        .collect();
    let wanted: BTreeMap<&str, &RouteConfig> = new
        .spec
        .routes
        .iter()
        .map(|(name, route)| (name.get_ref().as_str(), route))
        .collect();
    for (&name, &current) in &running.routes {
        match wanted.get(name) {
            None => plan.remove.push(name.to_owned()),
            Some(&settings) if settings != current => plan.restart.push(Restart {
                route: name.to_owned(),
                resubscribe: settings.topic != current.topic
                    || settings.delivery != current.delivery,
            }),
            Some(_) => {}
        }
    }
    plan.add = wanted
        .keys()
        .filter(|name| !running.routes.contains_key(*name))
        .map(|name| (*name).to_owned())
        .collect();
    // Whether an input is followed comes from the command line too (`run --follow`).
    let files = |inputs: &[toml::Spanned<crate::config::InputConfig>]| -> Vec<_> {
        inputs
            .iter()
            .map(|i| (i.get_ref().topic.clone(), i.get_ref().file.clone()))
            .collect()
    };
    plan.edges_changed =
        files(&new.spec.inputs) != files(&old.inputs) || new.spec.outputs != old.outputs;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[[outputs]]
topic = "out"
file = "-"

[plugins.a]
path = "a.wasm"
[plugins.b]
path = "b.wasm"

[routes.one]
topic = "in"
plugin = "a"
[routes.two]
topic = "in"
plugin = "b"
"#;

    fn config(text: &str) -> Config {
        Config::parse(text, "plexus.toml", Path::new("/")).expect("valid config")
    }

    fn plan(old: &Config, new: &str, changed_files: &[&str]) -> Result<Plan, ConfigError> {
        let running = InService {
            config: old,
            routes: old
                .spec
                .routes
                .iter()
                .map(|(name, route)| (name.get_ref().as_str(), route))
                .collect(),
            changed_files: changed_files.iter().map(|s| (*s).to_owned()).collect(),
        };
        diff(&running, &config(new))
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let old = config(BASE);
        let plan = plan(&old, BASE, &[]).unwrap();
        assert!(plan.is_empty(), "{plan:?}");
        assert!(!plan.edges_changed);
    }

    #[test]
    fn a_changed_plugin_file_reloads_that_plugin_and_restarts_no_route() {
        let old = config(BASE);
        let plan = plan(&old, BASE, &["b"]).unwrap();
        assert_eq!(
            plan,
            Plan {
                load: vec!["b".into()],
                ..Plan::default()
            }
        );
    }

    #[test]
    fn changed_plugin_settings_reload_it() {
        let old = config(BASE);
        let new = BASE.replace("path = \"a.wasm\"", "path = \"a.wasm\"\nconfig = { k = 1 }");
        assert_eq!(plan(&old, &new, &[]).unwrap().load, vec!["a".to_owned()]);
    }

    #[test]
    fn routes_are_added_removed_and_restarted_and_a_new_topic_resubscribes() {
        let old = config(BASE);
        let new = r#"
[[outputs]]
topic = "out"
file = "-"

[plugins.a]
path = "a.wasm"
[plugins.c]
path = "c.wasm"

[routes.one]
topic = "elsewhere"
plugin = "a"
[routes.three]
topic = "in"
plugin = "c"
concurrency = 2
"#;
        let plan = plan(&old, new, &[]).unwrap();
        assert_eq!(plan.load, vec!["c".to_owned()]);
        assert_eq!(plan.unload, vec!["b".to_owned()]);
        assert_eq!(plan.remove, vec!["two".to_owned()]);
        assert_eq!(
            plan.restart,
            vec![Restart {
                route: "one".into(),
                resubscribe: true
            }]
        );
        assert_eq!(plan.add, vec!["three".to_owned()]);
    }

    #[test]
    fn new_route_settings_on_the_same_topic_resume_where_the_route_was() {
        let old = config(BASE);
        let new = BASE.replace("plugin = \"a\"", "plugin = \"a\"\nconcurrency = 8");
        let plan = plan(&old, &new, &[]).unwrap();
        assert_eq!(
            plan.restart,
            vec![Restart {
                route: "one".into(),
                resubscribe: false
            }]
        );
    }

    #[test]
    fn a_route_that_is_not_running_is_started_again() {
        let old = config(BASE);
        let mut running = InService {
            config: &old,
            routes: BTreeMap::new(),
            changed_files: BTreeSet::new(),
        };
        let two = &old.spec.routes.iter().nth(1).unwrap().1;
        running.routes.insert("two", two);
        let plan = diff(&running, &config(BASE)).unwrap();
        assert_eq!(plan.add, vec!["one".to_owned()]);
    }

    #[test]
    fn changed_broker_settings_are_refused_and_changed_edges_are_noted() {
        let old = config(BASE);
        let refused = plan(&old, &format!("[broker]\npartitions = 8\n{BASE}"), &[]);
        let error = refused.unwrap_err();
        assert!(
            error.message.contains("broker settings cannot change"),
            "{error}"
        );
        let new = BASE.replace("file = \"-\"", "file = \"out.jsonl\"");
        assert!(plan(&old, &new, &[]).unwrap().edges_changed);
    }
}
