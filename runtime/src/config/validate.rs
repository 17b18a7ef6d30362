//! Checks that span several tables, run after the file parsed: names, references between
//! tables, numeric ranges and dead-letter loops. All problems are collected, not just the
//! first.

use super::ConfigFile;
use super::error::{ConfigError, Locator};
use super::units::check_name;
use super::{BrokerKind, DeliveryGuarantee};

const MAX_CONCURRENCY: u32 = 1024;
const MIN_MEMORY: u64 = 1 << 20;
const MIN_IN_FLIGHT: u64 = 1 << 20;

pub(super) fn validate(spec: &ConfigFile, at: &Locator<'_>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    spec.broker.check(at, &mut errors);
    spec.state.check(at, &mut errors);
    for (name, plugin) in &spec.plugins {
        if let Err(message) = check_name("plugin", name.get_ref()) {
            errors.push(at.error(Some(name.span()), message));
        }
        let limits = &plugin.limits;
        if limits.memory.0 < MIN_MEMORY {
            errors.push(at.error(
                Some(name.span()),
                format!(
                    "plugin `{}`: limits.memory must be at least 1MiB, found {}",
                    name.get_ref(),
                    limits.memory
                ),
            ));
        }
        for (key, limit) in [
            ("timeout", limits.timeout),
            ("init_timeout", limits.init_timeout),
        ] {
            if limit.0.is_zero() {
                errors.push(at.error(
                    Some(name.span()),
                    format!(
                        "plugin `{}`: limits.{key} must be more than 0ms",
                        name.get_ref()
                    ),
                ));
            }
        }
    }
    let plugin_names: Vec<&str> = spec.plugins.keys().map(|k| k.get_ref().as_str()).collect();
    for (name, route) in &spec.routes {
        let route_name = name.get_ref();
        if let Err(message) = check_name("route", route_name) {
            errors.push(at.error(Some(name.span()), message));
        }
        if !plugin_names.contains(&route.plugin.get_ref().as_str()) {
            let expected = if plugin_names.is_empty() {
                "no plugins are declared under [plugins]".to_owned()
            } else {
                format!("expected one of {}", quoted_list(&plugin_names))
            };
            errors.push(at.error(
                Some(route.plugin.span()),
                format!(
                    "route `{route_name}`: unknown plugin `{}`, {expected}",
                    route.plugin.get_ref()
                ),
            ));
        }
        let concurrency = *route.concurrency.get_ref();
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            errors.push(at.error(
                Some(span_or(route.concurrency.span(), name.span())),
                format!("route `{route_name}`: concurrency must be between 1 and {MAX_CONCURRENCY}, found {concurrency}"),
            ));
        }
        if route.max_in_flight.0 < MIN_IN_FLIGHT {
            errors.push(at.error(
                Some(name.span()),
                format!(
                    "route `{route_name}`: max_in_flight must be at least 1MiB, found {}",
                    route.max_in_flight
                ),
            ));
        }
        if let Some(dedupe) = &route.dedupe
            && dedupe.window.get_ref().0 < std::time::Duration::from_secs(1)
        {
            errors.push(at.error(
                Some(dedupe.window.span()),
                format!(
                    "route `{route_name}`: dedupe.window must be at least 1s, found {}",
                    dedupe.window.get_ref()
                ),
            ));
        }
        if *route.delivery.get_ref() == DeliveryGuarantee::ExactlyOnce
            && *spec.broker.kind.get_ref() != BrokerKind::Kafka
        {
            errors.push(at.error(
                Some(span_or(route.delivery.span(), name.span())),
                format!(
                    "route `{route_name}`: delivery = \"exactly-once\" needs the kafka broker (Kafka transactions), found `{}`; use dedupe = {{ window = \"24h\" }} to skip redelivered events here",
                    spec.broker.kind.get_ref().as_str()
                ),
            ));
        }
        if *route.retry.max_attempts.get_ref() == 0 {
            errors.push(at.error(
                Some(route.retry.max_attempts.span()),
                format!(
                    "route `{route_name}`: retry.max_attempts must be at least 1 (1 means no retry)"
                ),
            ));
        }
        if route.retry.initial_backoff > route.retry.max_backoff {
            errors.push(at.error(
                Some(name.span()),
                format!(
                    "route `{route_name}`: retry.initial_backoff ({}) is longer than retry.max_backoff ({})",
                    route.retry.initial_backoff, route.retry.max_backoff
                ),
            ));
        }
        if let Some(types) = &route.types
            && (types.is_empty() || types.iter().any(String::is_empty))
        {
            errors.push(at.error(
                Some(name.span()),
                format!("route `{route_name}`: types must list at least one non-empty event type (leave it out to take every type)"),
            ));
        }
        let dead_letter = route.dead_letter_topic(route_name);
        if dead_letter == route.topic {
            let span = route.dead_letter.as_ref().map_or(name.span(), |d| d.span());
            errors.push(at.error(
                Some(span),
                format!("route `{route_name}`: the dead-letter topic must differ from the route's topic `{}` (failed events would loop)", route.topic),
            ));
        }
    }
    let mut output_files = Vec::new();
    for output in &spec.outputs {
        let file = &output.get_ref().file;
        if file.as_os_str() != "-" && output_files.contains(&file) {
            errors.push(at.error(
                Some(output.span()),
                format!(
                    "output file `{}` is already written by another output",
                    file.display()
                ),
            ));
        }
        output_files.push(file);
    }
    errors.sort_by_key(|e| (e.line, e.column));
    errors
}

fn span_or(
    span: std::ops::Range<usize>,
    fallback: std::ops::Range<usize>,
) -> std::ops::Range<usize> {
    if span.is_empty() { fallback } else { span }
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
