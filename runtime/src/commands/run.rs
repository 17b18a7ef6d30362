//! `plexus run`: run the config until its inputs are exhausted or it is asked to stop, then
//! drain, commit, print a summary and exit 0. Reload requests (the binary sends one on
//! SIGHUP) and, with `watch`, changes to the config and plugin files are applied live.

use super::{EXIT_INVALID, EXIT_PRODUCER_FATAL, EXIT_UNREACHABLE, load_config, print_errors};
use crate::broker::connect::ConnectError;
use crate::config::{Config, InputConfig, Listen};
use crate::metrics::RunReport;
use crate::ops::{AdminServer, Board};
use crate::supervise::{RunError, RunOptions, run as run_config};
use std::path::Path;

/// Runs `config_path` under `options`, feeding `inputs` (`(topic, file)`, from `--input`)
/// instead of the config's own when there are any, and following every input file as it
/// grows with `follow`; returns the exit code.
pub fn run(
    config_path: &Path,
    inputs: &[(String, String)],
    follow: bool,
    options: RunOptions,
) -> i32 {
    let mut config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Err(error) = replace_inputs(&mut config, inputs) {
        eprintln!("error: --input {error}");
        return EXIT_INVALID;
    }
    if follow {
        for input in &mut config.spec.inputs {
            input.get_mut().follow = true;
        }
    }
    if let Some(nothing) = nothing_to_run(&config) {
        eprintln!("error: {}: {nothing}", config.file);
        return EXIT_INVALID;
    }
    // Started first, so probes are answered (not ready yet) while plugins load.
    let _admin = match start_admin(&config, &options.board) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_INVALID;
        }
    };
    match run_config(config, options) {
        Ok(report) => {
            print_summary(&report);
            0
        }
        // Asked to stop before anything started: nothing went wrong.
        Err(RunError::Connect(error @ ConnectError::Stopped { .. })) => {
            eprintln!("{error}");
            0
        }
        Err(RunError::Connect(error)) => {
            eprintln!("error: {error}");
            EXIT_UNREACHABLE
        }
        Err(RunError::Config(errors)) => {
            print_errors(&errors);
            EXIT_INVALID
        }
        Err(error @ RunError::ProducerFatal(_)) => {
            eprintln!("error: {error}; a restart resumes from the committed positions");
            EXIT_PRODUCER_FATAL
        }
        Err(RunError::Start(error)) => {
            eprintln!("error: {error:#}");
            EXIT_INVALID
        }
    }
}

/// Feeds `--input TOPIC=FILE` inputs (files relative to the working directory) instead of
/// the config's: a replay, or a one-off file, without the config's own inputs again.
fn replace_inputs(config: &mut Config, inputs: &[(String, String)]) -> Result<(), String> {
    if inputs.is_empty() {
        return Ok(());
    }
    config.spec.inputs.clear();
    for (topic, file) in inputs {
        let topic = topic.parse().map_err(|e| format!("{topic}={file}: {e}"))?;
        let file = std::path::PathBuf::from(file);
        if !file.exists() || file.is_dir() {
            return Err(format!("{}: no such file", file.display()));
        }
        config.spec.inputs.push(toml::Spanned::new(
            0..0,
            InputConfig {
                topic,
                file,
                follow: false,
            },
        ));
    }
    Ok(())
}

/// The environment variable that overrides `[admin] listen`.
pub const ADMIN_LISTEN_ENV: &str = "PLEXUS_ADMIN_LISTEN";

/// Starts the admin server where `[admin] listen` (or [`ADMIN_LISTEN_ENV`]) says, if
/// anywhere.
fn start_admin(config: &Config, board: &Board) -> Result<Option<AdminServer>, String> {
    let listen = match std::env::var(ADMIN_LISTEN_ENV) {
        Ok(text) if !text.is_empty() => text
            .parse::<Listen>()
            .map_err(|e| format!("{ADMIN_LISTEN_ENV}: {e}"))?,
        _ => config.spec.admin.listen.clone(),
    };
    let Listen::Address(address) = listen else {
        return Ok(None);
    };
    let server = AdminServer::start(&address, board.clone()).map_err(|e| e.to_string())?;
    tracing::info!(address = %server.address(), "admin server listening: / (topology), /metrics, /healthz, /readyz, /api/status, /api/catalog");
    Ok(Some(server))
}

/// Why `config` would run and do nothing, if it would: a run without routes reads no event.
/// (The library accepts such a config, since a reload may add routes; a command line run of
/// one is a mistake.)
pub(super) fn nothing_to_run(config: &Config) -> Option<&'static str> {
    config.spec.routes.is_empty().then_some(
        "no routes: nothing would read an event; add a [routes.NAME] table with a topic and a plugin",
    )
}

/// One line per route and output on stderr, so stdout stays the outputs' own; with
/// `PLEXUS_LOG_FORMAT=json`, one JSON log line with the whole report instead.
fn print_summary(report: &RunReport) {
    if std::env::var("PLEXUS_LOG_FORMAT").is_ok_and(|f| f == "json") {
        // Written directly, so the report is a JSON object and not a string inside one.
        let timestamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = serde_json::json!({
            "timestamp": timestamp,
            "level": "INFO",
            "message": "run summary",
            "target": module_path!(),
            "report": report,
        });
        eprintln!("{line}");
        return;
    }
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
        if counts.already_applied > 0 {
            notes.push(format!(
                "{} delivered again and not applied again (their state was committed; what they emitted was published again)",
                counts.already_applied
            ));
        }
        if counts.duplicates > 0 {
            notes.push(format!(
                "{} skipped as duplicates (finished within the dedupe window)",
                counts.duplicates
            ));
        }
        if counts.undeclared_emits > 0 {
            notes.push(format!(
                "{} emits its plugin's `emits` does not declare",
                counts.undeclared_emits
            ));
        }
        if counts.state_conflicts > 0 {
            notes.push(format!(
                "{} handled again after a state conflict",
                counts.state_conflicts
            ));
        }
        if counts.state_waits > 0 {
            notes.push(format!("{} waits for the state store", counts.state_waits));
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
