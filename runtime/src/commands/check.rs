//! `plexus check`: validate the config and load every plugin against the world, without
//! running anything. Exit 0 with a summary, or 1 with `error:` lines naming file:line:col.
//! With `--connect`, also reach the broker; a cluster that cannot be used exits 2.

use super::{EXIT_INVALID, EXIT_UNREACHABLE, load_config, print_errors};
use crate::config::Config;
use crate::config::error::ConfigErrors;
use crate::handler::Plugin;
use crate::host::engine::PlexusEngine;
use crate::host::plugins::{cache_dir, load_plugins};
use crate::shutdown::Shutdown;
use crate::state::MemoryBackend;
use std::collections::BTreeSet;
use std::path::Path;

/// Checks `config_path` (and, with `connect`, the broker, until reached or `stop` is set);
/// returns the exit code.
pub fn check(config_path: &Path, connect: Option<&Shutdown>) -> i32 {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let engine = match PlexusEngine::new(cache_dir(Some(&config))) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("error: cannot start the wasm engine: {error:#}");
            return EXIT_INVALID;
        }
    };
    let mut errors = missing_inputs(&config);
    let plugins = match load_plugins(&config, &engine, &MemoryBackend::shared()) {
        Ok(plugins) => plugins,
        Err(ConfigErrors(mut more)) => {
            errors.append(&mut more);
            Default::default()
        }
    };
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        print_errors(&ConfigErrors(errors));
        return EXIT_INVALID;
    }
    println!("ok: {}", config.file);
    if let Some(line) = broker_summary(&config) {
        println!("{line}");
    }
    for (name, plugin) in &plugins {
        let world = plugin.loaded().pre.world();
        if world == crate::host::component::WORLD {
            println!("plugin {name}: {}", plugin.version());
        } else {
            println!(
                "plugin {name}: {} (built against {world}: extension attributes reach it as text headers)",
                plugin.version()
            );
        }
    }
    for (name, route) in &config.spec.routes {
        let name = name.get_ref();
        let types = route
            .types
            .as_ref()
            .map_or("every type".to_owned(), |t| t.join(", "));
        println!(
            "route {name}: {} ({types}) -> {} (concurrency {}, up to {} attempts), dead letters to {}",
            route.topic,
            route.plugin.get_ref(),
            route.concurrency.get_ref(),
            route.retry.max_attempts.get_ref(),
            route.dead_letter_topic(name),
        );
    }
    if let Some(nothing) = super::run::nothing_to_run(&config) {
        println!("warning: {nothing}; `plexus run` refuses it");
    }
    for warning in warnings(&config) {
        println!("warning: {warning}");
    }
    if let Some(stop) = connect {
        return check_connection(&config, stop);
    }
    0
}

/// How Plexus will reach its broker: address, protocol, identity (never a secret's value).
fn broker_summary(config: &Config) -> Option<String> {
    let broker = &config.spec.broker;
    if let Some(redis) = broker.redis() {
        let address = crate::broker::redis::connect::shown_address(redis.url());
        return Some(format!(
            "broker: Redis at {address}, groups `{}.ROUTE`, reclaim after {}, dead-letter after {} deliveries",
            redis.group(),
            redis.claim_idle.get_ref(),
            redis.max_deliveries.get_ref()
        ));
    }
    let kafka = broker.kafka()?;
    let security = &kafka.security.properties;
    let protocol = security
        .get("security.protocol")
        .map_or("plaintext", String::as_str);
    let mut line = format!(
        "broker: Kafka at {} over {protocol}",
        kafka.bootstrap_servers()
    );
    if let Some(mechanism) = security.get("sasl.mechanism") {
        line += &format!(", SASL {mechanism}");
        if let Some(user) = security.get("sasl.username") {
            line += &format!(" as `{user}`");
        }
    }
    if let Some(ca) = security.get("ssl.ca.location") {
        line += &format!(", CA {ca}");
    }
    if let Some(cert) = security.get("ssl.certificate.location") {
        line += &format!(", client certificate {cert}");
    }
    Some(line)
}

/// `--connect`: reaches the broker as `plexus run` would at start.
fn check_connection(config: &Config, stop: &Shutdown) -> i32 {
    match crate::broker::check_connection(config, stop) {
        Ok(None) => println!("connect: the embedded broker runs in process; nothing to reach"),
        Ok(Some(found)) => println!("connect: {found}"),
        Err(error) => {
            eprintln!("error: {error:#}");
            return EXIT_UNREACHABLE;
        }
    }
    0
}

fn missing_inputs(config: &Config) -> Vec<crate::config::error::ConfigError> {
    config
        .spec
        .inputs
        .iter()
        .filter(|input| !input.get_ref().file.is_file())
        .map(|input| {
            config.error_at(
                input.span(),
                format!(
                    "input file {} does not exist",
                    input.get_ref().file.display()
                ),
            )
        })
        .collect()
}

/// Things that are valid but probably not meant: dead letters nobody reads (the embedded
/// broker forgets them at exit) and plugins no route uses.
fn warnings(config: &Config) -> Vec<String> {
    let spec = &config.spec;
    let read: BTreeSet<&str> = spec
        .outputs
        .iter()
        .map(|o| o.get_ref().topic.as_str())
        .chain(spec.routes.values().map(|r| r.topic.as_str()))
        .collect();
    let mut warnings = Vec::new();
    for (name, route) in &spec.routes {
        let dead_letter = route.dead_letter_topic(name.get_ref());
        if !read.contains(dead_letter.as_str()) {
            warnings.push(format!(
                "route `{}`: dead-letter topic `{dead_letter}` has no output or route; with the embedded broker its events are lost at exit",
                name.get_ref()
            ));
        }
    }
    for name in spec.plugins.keys() {
        if !spec
            .routes
            .values()
            .any(|r| r.plugin.get_ref() == name.get_ref())
        {
            warnings.push(format!(
                "plugin `{}` is not used by any route",
                name.get_ref()
            ));
        }
    }
    warnings
}
