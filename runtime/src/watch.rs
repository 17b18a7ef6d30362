//! Hot reload triggers: the config file and every plugin file it names are watched (by
//! polling their size and modification time), and SIGHUP asks for a reload at once.
//!
//! A change is applied only once the files have stopped changing for `[runtime]
//! reload_settle` (50ms by default): a copy in progress is not read half-written. What is then read is validated as a whole (config
//! parse, plugin compile, world check, `init`); a truncated or broken file is refused, the
//! running version keeps serving, and the next change is tried afresh.

use crate::config::Config;
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_millis(10);

/// What is known of one file: size and modification time, or absent.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// The files a config depends on: itself and its plugins.
fn watched_files(config_path: &Path, config: &Config) -> Vec<PathBuf> {
    let mut files = vec![config_path.to_path_buf()];
    files.extend(
        config
            .spec
            .plugins
            .values()
            .map(|p| p.path.get_ref().clone()),
    );
    files
}

/// What triggers a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggers {
    /// File changes and SIGHUP.
    FilesAndHangup,
    /// SIGHUP only (`plexus run --no-watch`).
    HangupOnly,
}

/// Starts watching `config_path` and the plugins of the running config (unless `triggers`
/// says SIGHUP only), applying changes to `runtime` until `stop` is set.
pub fn spawn(
    runtime: Arc<Mutex<Runtime>>,
    config_path: PathBuf,
    stop: Shutdown,
    triggers: Triggers,
) -> JoinHandle<()> {
    let hangup = Arc::new(AtomicBool::new(false));
    if let Err(error) = signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone()) {
        tracing::warn!(%error, "SIGHUP will not trigger reloads");
    }
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || watch(&runtime, &config_path, &stop, &hangup, triggers))
        .expect("spawning the watcher")
}

fn watch(
    runtime: &Mutex<Runtime>,
    config_path: &Path,
    stop: &Shutdown,
    hangup: &AtomicBool,
    triggers: Triggers,
) {
    let files_and_settle = |runtime: &Mutex<Runtime>| {
        let runtime = runtime.lock().expect("runtime lock");
        let config = runtime.config();
        (
            watched_files(config_path, config),
            config.spec.runtime.reload_settle.0,
        )
    };
    let mut applied: Vec<Stamp> = files_and_settle(runtime)
        .0
        .iter()
        .map(|f| stamp(f))
        .collect();
    let mut pending: Option<(Vec<Stamp>, Instant)> = None;
    while !stop.wait_timeout(POLL) {
        let (files, settle) = files_and_settle(runtime);
        let now: Vec<Stamp> = files.iter().map(|f| stamp(f)).collect();
        if hangup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reloading");
            applied = reload(runtime, config_path);
            pending = None;
            continue;
        }
        if now == applied || triggers == Triggers::HangupOnly {
            pending = None;
            continue;
        }
        match &pending {
            Some((seen, since)) if *seen == now && since.elapsed() >= settle => {
                applied = reload(runtime, config_path);
                pending = None;
            }
            Some((seen, _)) if *seen == now => {}
            _ => pending = Some((now, Instant::now())),
        }
    }
}

/// Reads the config and applies it; returns the stamps of what was read, so the same
/// (possibly broken) files are not tried again until they change.
fn reload(runtime: &Mutex<Runtime>, config_path: &Path) -> Vec<Stamp> {
    let config = Config::load(config_path);
    let mut runtime = runtime.lock().expect("runtime lock");
    let result = match config {
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
    watched_files(config_path, runtime.config())
        .iter()
        .map(|f| stamp(f))
        .collect()
}
