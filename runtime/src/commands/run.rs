//! `plexus run`: run the config until its inputs are exhausted or a signal arrives, then
//! drain, commit, print a summary and exit 0. Changes to the config and plugin files (and
//! SIGHUP) are applied live unless `--no-watch` is given.

use super::{EXIT_INVALID, EXIT_UNREACHABLE, load_config, print_errors};
use crate::Shutdown;
use crate::broker::kafka::connect::ConnectError;
use crate::config::error::ConfigErrors;
use crate::runtime::{RunReport, run as run_config};
use std::path::Path;

/// Runs `config_path`, applying changes to it and its plugins live when `watch` is set;
/// returns the exit code.
pub fn run(config_path: &Path, watch: bool) -> i32 {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let shutdown = Shutdown::new();
    if let Err(error) = shutdown.on_signals() {
        eprintln!("error: cannot install signal handlers: {error}");
        return EXIT_INVALID;
    }
    match run_config(config, shutdown, watch) {
        Ok(report) => {
            print_summary(&report);
            0
        }
        Err(error) => {
            if let Some(error) = error.downcast_ref::<ConnectError>() {
                return match error {
                    // Asked to stop before anything started: nothing went wrong.
                    ConnectError::Stopped { .. } => {
                        eprintln!("{error}");
                        0
                    }
                    _ => {
                        eprintln!("error: {error}");
                        EXIT_UNREACHABLE
                    }
                };
            }
            match error.downcast_ref::<ConfigErrors>() {
                Some(errors) => print_errors(errors),
                None => eprintln!("error: {error:#}"),
            }
            EXIT_INVALID
        }
    }
}

/// One line per route and output on stderr, so stdout stays the outputs' own.
fn print_summary(report: &RunReport) {
    for (route, counts) in &report.routes {
        let dead: Vec<String> = counts
            .dead_lettered
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut notes = Vec::new();
        if counts.dead_letters_without_payload > 0 {
            notes.push(format!(
                "{} dead letters written without their payload",
                counts.dead_letters_without_payload
            ));
        }
        if counts.unfinished > 0 {
            notes.push(format!(
                "{} unfinished (uncommitted: delivered again on the next run)",
                counts.unfinished
            ));
        }
        eprintln!(
            "route {route}: received {}, succeeded {}, filtered {}, retried {}, emitted {}, dead-lettered {}{}{}",
            counts.received,
            counts.succeeded,
            counts.filtered,
            counts.retried,
            counts.emitted,
            counts.dead_lettered_total(),
            if dead.is_empty() {
                String::new()
            } else {
                format!(" ({})", dead.join(", "))
            },
            notes.iter().map(|n| format!("; {n}")).collect::<String>()
        );
    }
    if report.publish_retries > 0 {
        eprintln!(
            "publishing: {} events published again after the broker failed to take them",
            report.publish_retries
        );
    }
    for (topic, lines) in &report.outputs {
        eprintln!("output {topic}: {lines} events written");
    }
    if report.reloads_applied + report.reloads_refused > 0 {
        eprintln!(
            "reloads: {} applied, {} refused, {} plugin swaps",
            report.reloads_applied, report.reloads_refused, report.plugin_swaps
        );
    }
}
