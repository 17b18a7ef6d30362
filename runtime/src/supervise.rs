//! The run loop: [`run`] starts a [`Runtime`] for a config and [`supervise`] drives it until
//! its work is done or it is asked to stop, applying reloads on the way.
//!
//! The loop owns the runtime; nothing else touches it while it runs. Reload requests reach it
//! over a channel ([`Reloads`]) from whoever asks: the binary on SIGHUP, an embedder, or the
//! file watcher ([`crate::watch`]), which only detects changes. Process matters (signals,
//! exit codes) belong to the caller: a fatal error comes back as a [`RunError`].

use crate::broker::connect::ConnectError;
use crate::config::Config;
use crate::config::error::ConfigErrors;
use crate::metrics::RunReport;
use crate::ops::Board;
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;
use crate::watch::{ReloadReason, Reloads, WatchSet, Watcher};
use std::path::PathBuf;
use std::time::Duration;

/// How often the loop looks whether the run is over.
const TICK: Duration = Duration::from_millis(50);

/// How a run is controlled from outside.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Set to stop: routes drain and commit, then the run returns its report.
    pub shutdown: Shutdown,
    /// Reload requests (the binary sends one on SIGHUP).
    pub reloads: Reloads,
    /// Also reload when the config file or a plugin file it names changes.
    pub watch: bool,
    /// Kept current with what runs (routes, plugins, counters), for an admin server or an
    /// embedder to read.
    pub board: Board,
}

/// Why a run ended without a report.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config is invalid, or one of its plugins cannot be loaded.
    #[error("{0}")]
    Config(ConfigErrors),
    /// The broker cannot be used (or the run was stopped while connecting).
    #[error(transparent)]
    Connect(ConnectError),
    /// The producer failed for good: nothing more can be published. Nothing unpublished was
    /// committed, so a restart resumes from the committed positions. The runtime is
    /// abandoned as it is; the caller is expected to end the process.
    #[error("the producer failed fatally: {0}")]
    ProducerFatal(String),
    /// Anything else that kept the run from starting.
    #[error("{0:#}")]
    Start(anyhow::Error),
}

impl From<anyhow::Error> for RunError {
    fn from(error: anyhow::Error) -> Self {
        let error = match error.downcast::<ConnectError>() {
            Ok(connect) => return RunError::Connect(connect),
            Err(error) => error,
        };
        match error.downcast::<ConfigErrors>() {
            Ok(errors) => RunError::Config(errors),
            Err(error) => RunError::Start(error),
        }
    }
}

/// `plexus run`: starts `config` and supervises it (see [`supervise`]).
pub fn run(config: Config, options: RunOptions) -> Result<RunReport, RunError> {
    let runtime = Runtime::start_on(config, options.shutdown.clone(), options.board.clone())?;
    supervise(runtime, options)
}

/// Drives `runtime` until it is done by itself ([`Runtime::is_done`]) or `options.shutdown`
/// is set, then stops it and returns what it did. Each reload request reads the runtime's
/// config file again and applies it; a config that does not load or apply is refused and the
/// running one stays.
pub fn supervise(mut runtime: Runtime, options: RunOptions) -> Result<RunReport, RunError> {
    let config_path = PathBuf::from(&runtime.config().file);
    let watcher = options
        .watch
        .then(|| Watcher::spawn(WatchSet::of(runtime.config()), options.reloads.clone()));
    let fatal = loop {
        if options.shutdown.is_triggered() || runtime.is_done() {
            break None;
        }
        if let Some(reason) = runtime.fatal_error() {
            break Some(reason);
        }
        if let Some(reason) = options.reloads.next(TICK) {
            reload(&mut runtime, &config_path, reason);
            if let Some(watcher) = &watcher {
                watcher.watch(WatchSet::of(runtime.config()));
            }
        }
    };
    if let Some(watcher) = watcher {
        watcher.stop();
    }
    match fatal {
        Some(reason) => {
            tracing::error!(%reason, "fatal producer error; a restart resumes from the committed positions");
            // Stopping would wait for publishes that can never be acknowledged; the caller
            // ends the process, and what is unfinished is delivered again after a restart.
            std::mem::forget(runtime);
            Err(RunError::ProducerFatal(reason))
        }
        None => Ok(runtime.stop()),
    }
}

/// Reads the config at `path` and applies it to `runtime`, logging the outcome.
fn reload(runtime: &mut Runtime, path: &std::path::Path, reason: ReloadReason) {
    tracing::info!(?reason, "reloading {}", path.display());
    let result = match Config::load(path) {
        Ok(config) => runtime.apply(config),
        Err(errors) => {
            runtime.refuse();
            Err(errors)
        }
    };
    match result {
        Ok(changes) if changes.is_empty() => tracing::info!("reload: nothing changed"),
        Ok(_) => {}
        Err(errors) => {
            for error in &errors.0 {
                tracing::error!("reload refused, the running configuration stays: {error}");
            }
        }
    }
}
