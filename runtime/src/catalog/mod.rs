//! The event catalog of a config: every topic, who feeds, reads and writes it, the event
//! types each route takes and emits, and where dead letters go. Drawn from `plexus.toml`
//! alone (plus the types found in its input files), so it is true of what the config wires,
//! and it stays true as the config changes: `plexus catalog` prints it, the admin server
//! serves it at `/api/catalog` for the topology page.
//!
//! # Layout
//! - this module: the catalog as data ([`Catalog::of`]).
//! - [`render`]: Markdown and Mermaid text.

pub mod render;

use crate::config::{Config, Declared};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// How many lines of an input file are read for the event types it holds.
const INPUT_LINES_READ: usize = 100_000;

/// The catalog of one config.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Catalog {
    /// The config file's name.
    pub config: String,
    /// `embedded` or `kafka`.
    pub broker: String,
    /// Every topic the config names, or a plugin declares it emits to.
    pub topics: BTreeMap<String, TopicEntry>,
    /// Every route.
    pub routes: BTreeMap<String, RouteEntry>,
    /// Every event type fed, taken or declared emitted.
    pub event_types: BTreeMap<String, TypeEntry>,
}

/// One topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TopicEntry {
    /// Input files fed into it.
    pub fed_from: Vec<String>,
    /// Routes whose plugins declare they emit to it.
    pub written_by: Vec<String>,
    /// Routes reading it.
    pub read_by: Vec<String>,
    /// Routes whose dead letters go to it.
    pub dead_letters_of: Vec<String>,
    /// Output files it is written to.
    pub written_to: Vec<String>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteEntry {
    /// The topic it reads.
    pub topic: String,
    /// The event types it takes (`None`: every type).
    pub types: Option<Vec<String>>,
    /// Its plugin.
    pub plugin: String,
    /// What the plugin declares it emits (`None`: nothing declared).
    pub emits: Option<Vec<Declared>>,
    /// Where its dead letters go.
    pub dead_letter: String,
}

/// One event type.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TypeEntry {
    /// Input files holding events of this type.
    pub fed_from: Vec<String>,
    /// Routes whose plugins declare they emit it.
    pub emitted_by: Vec<String>,
    /// Routes that take it: by name, or taking every type of a topic it is known to
    /// arrive on (fed from a file, or declared emitted there).
    pub taken_by: Vec<String>,
}

impl Catalog {
    /// The catalog of `config`.
    pub fn of(config: &Config) -> Catalog {
        let spec = &config.spec;
        let shown = |path: &Path| display_path(path, &config.base_dir);
        let mut catalog = Catalog {
            config: Path::new(&config.file)
                .file_name()
                .map_or_else(|| config.file.clone(), |n| n.to_string_lossy().into_owned()),
            broker: format!("{:?}", spec.broker.kind.get_ref()).to_lowercase(),
            ..Catalog::default()
        };
        // The types known to arrive on each topic: fed from files, or declared emitted.
        let mut on_topic: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for input in &spec.inputs {
            let input = input.get_ref();
            let file = shown(&input.file);
            catalog
                .topic(input.topic.as_str())
                .fed_from
                .push(file.clone());
            for type_ in types_in(&input.file) {
                catalog.type_(&type_).fed_from.push(file.clone());
                on_topic
                    .entry(input.topic.to_string())
                    .or_default()
                    .insert(type_);
            }
        }
        for output in &spec.outputs {
            let output = output.get_ref();
            let file = if output.file.as_os_str() == "-" {
                "standard output".to_owned()
            } else {
                shown(&output.file)
            };
            catalog.topic(output.topic.as_str()).written_to.push(file);
        }
        for (name, route) in &spec.routes {
            let name = name.get_ref();
            let plugin = route.plugin.get_ref();
            let emits = config
                .plugin(plugin)
                .and_then(|p| p.emits.as_ref())
                .map(|e| {
                    let mut declared = e.0.clone();
                    declared.sort();
                    declared.dedup();
                    declared
                });
            let dead_letter = route.dead_letter_topic(name).to_string();
            catalog
                .topic(route.topic.as_str())
                .read_by
                .push(name.clone());
            catalog
                .topic(&dead_letter)
                .dead_letters_of
                .push(name.clone());
            let types: Option<Vec<String>> = route.types.as_ref().map(|t| t.to_vec());
            for type_ in types.iter().flatten() {
                catalog.type_(type_).taken_by.push(name.clone());
            }
            for declared in emits.iter().flatten() {
                if let Some(topic) = &declared.topic {
                    on_topic
                        .entry(topic.clone())
                        .or_default()
                        .insert(declared.type_.clone());
                    let written_by = &mut catalog.topic(topic).written_by;
                    if !written_by.contains(name) {
                        written_by.push(name.clone());
                    }
                }
                catalog.type_(&declared.type_).emitted_by.push(name.clone());
            }
            catalog.routes.insert(
                name.clone(),
                RouteEntry {
                    topic: route.topic.to_string(),
                    types,
                    plugin: plugin.clone(),
                    emits,
                    dead_letter,
                },
            );
        }
        // A route taking every type of its topic takes each type known to arrive there.
        let all_takers: Vec<(String, String)> = catalog
            .routes
            .iter()
            .filter(|(_, r)| r.types.is_none())
            .map(|(name, r)| (name.clone(), r.topic.clone()))
            .collect();
        for (route, topic) in all_takers {
            for type_ in on_topic.get(&topic).into_iter().flatten() {
                catalog.type_(type_).taken_by.push(route.clone());
            }
        }
        for entry in catalog.event_types.values_mut() {
            for list in [
                &mut entry.fed_from,
                &mut entry.emitted_by,
                &mut entry.taken_by,
            ] {
                list.sort();
                list.dedup();
            }
        }
        catalog
    }

    fn topic(&mut self, name: &str) -> &mut TopicEntry {
        self.topics.entry(name.to_owned()).or_default()
    }

    fn type_(&mut self, name: &str) -> &mut TypeEntry {
        self.event_types.entry(name.to_owned()).or_default()
    }
}

/// `path` relative to the config's directory when it is inside it, as written otherwise.
fn display_path(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The distinct `type`s of the CloudEvents JSON lines in `path` (its first lines; an
/// unreadable file or line adds nothing: `plexus check` and the run report those).
fn types_in(path: &Path) -> BTreeSet<String> {
    use std::io::BufRead as _;
    let Ok(file) = std::fs::File::open(path) else {
        return BTreeSet::new();
    };
    std::io::BufReader::new(file)
        .lines()
        .take(INPUT_LINES_READ)
        .map_while(Result::ok)
        .filter_map(|line| {
            let value: serde_json::Value = serde_json::from_str(&line).ok()?;
            value.get("type")?.as_str().map(str::to_owned)
        })
        .collect()
}
