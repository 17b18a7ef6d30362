//! Hot-reload triggers. [`Reloads`] carries requests to read the config again to the run
//! loop (see [`crate::supervise`]), which owns the runtime and applies them; anything may ask:
//! the binary on SIGHUP, an embedder, or the file watcher here.
//!
//! The watcher polls the config file and every plugin file it names (size and modification
//! time). A change is asked for only once the files have stopped changing for `[runtime]
//! reload_settle` (50ms by default), so a copy in progress is not read half-written. The run
//! loop answers every request with the files it read and their stamps ([`Watcher::watch`]):
//! files that were refused (truncated, broken) are not asked for again until they change.

use crate::config::Config;
use crate::shutdown::Shutdown;
use crossbeam_channel::{Receiver, Sender};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How often the files are looked at.
const POLL: Duration = Duration::from_millis(10);

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadReason {
    /// Someone asked (SIGHUP, an embedder).
    Requested,
    /// The config file or a plugin file changed and has settled.
    FilesChanged,
}

/// A queue of reload requests: any clone may ask, the run loop takes them.
#[derive(Clone)]
pub struct Reloads {
    sender: Sender<ReloadReason>,
    receiver: Receiver<ReloadReason>,
}

impl Default for Reloads {
    fn default() -> Self {
        let (sender, receiver) = crossbeam_channel::unbounded();
        Reloads { sender, receiver }
    }
}

impl Reloads {
    /// An empty queue.
    pub fn new() -> Self {
        Reloads::default()
    }

    /// Asks the run loop to read the config file again and apply it.
    pub fn request(&self) {
        // The queue lives as long as this handle, so sending cannot fail.
        let _ = self.sender.send(ReloadReason::Requested);
    }

    /// Waits up to `timeout` for a request; several waiting ones count as one.
    pub(crate) fn next(&self, timeout: Duration) -> Option<ReloadReason> {
        let first = self.receiver.recv_timeout(timeout).ok()?;
        let mut reason = first;
        while let Ok(more) = self.receiver.try_recv() {
            if more == ReloadReason::Requested {
                reason = more;
            }
        }
        Some(reason)
    }
}

/// What is known of one file: size and modification time, or absent.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// The files a config depends on (itself and its plugins) as they are now, and how long
/// they must stay unchanged before a change is asked for.
#[derive(Debug, Clone)]
pub(crate) struct WatchSet {
    files: Vec<(PathBuf, Stamp)>,
    settle: Duration,
}

impl WatchSet {
    /// The files of `config` (read from `config.file`), stamped now.
    pub(crate) fn of(config: &Config) -> WatchSet {
        let plugins = config.spec.plugins.values().map(|p| p.path.get_ref());
        let files = std::iter::once(&PathBuf::from(&config.file))
            .chain(plugins)
            .map(|path| (path.clone(), stamp(path)))
            .collect();
        WatchSet {
            files,
            settle: config.spec.runtime.reload_settle.0,
        }
    }

    fn stamps_now(&self) -> Vec<Stamp> {
        self.files.iter().map(|(path, _)| stamp(path)).collect()
    }

    fn stamps_seen(&self) -> Vec<Stamp> {
        self.files.iter().map(|(_, seen)| *seen).collect()
    }
}

/// The file watcher's thread, and the way to tell it what the run loop read.
pub(crate) struct Watcher {
    read: Sender<WatchSet>,
    stop: Shutdown,
    thread: JoinHandle<()>,
}

impl Watcher {
    /// Starts watching `files`, asking `reloads` for a reload when they change.
    pub(crate) fn spawn(files: WatchSet, reloads: Reloads) -> Watcher {
        let (read, updates) = crossbeam_channel::unbounded();
        let stop = Shutdown::new();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || watch(files, &updates, &reloads.sender, &thread_stop))
            .expect("spawning the watcher");
        Watcher { read, stop, thread }
    }

    /// Tells the watcher what a reload read (applied or refused): these files as they were
    /// then are the ones it compares with from now on.
    pub(crate) fn watch(&self, files: WatchSet) {
        let _ = self.read.send(files);
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(self) {
        self.stop.trigger();
        let _ = self.thread.join();
    }
}

fn watch(
    mut files: WatchSet,
    updates: &Receiver<WatchSet>,
    reloads: &Sender<ReloadReason>,
    stop: &Shutdown,
) {
    let mut pending: Option<(Vec<Stamp>, Instant)> = None;
    // Asked and not yet answered: do not ask again for the same change.
    let mut asked = false;
    while !stop.wait_timeout(POLL) {
        if let Some(latest) = updates.try_iter().last() {
            files = latest;
            pending = None;
            asked = false;
        }
        let now = files.stamps_now();
        if asked || now == files.stamps_seen() {
            pending = None;
            continue;
        }
        match &pending {
            Some((seen, since)) if *seen == now && since.elapsed() >= files.settle => {
                if reloads.send(ReloadReason::FilesChanged).is_err() {
                    return;
                }
                asked = true;
                pending = None;
            }
            Some((seen, _)) if *seen == now => {}
            _ => pending = Some((now, Instant::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_requests_count_as_one_and_a_request_outranks_a_file_change() {
        let reloads = Reloads::new();
        assert_eq!(reloads.next(Duration::from_millis(1)), None);
        reloads.sender.send(ReloadReason::FilesChanged).unwrap();
        reloads.request();
        reloads.sender.send(ReloadReason::FilesChanged).unwrap();
        assert_eq!(
            reloads.next(Duration::from_millis(1)),
            Some(ReloadReason::Requested)
        );
        assert_eq!(reloads.next(Duration::from_millis(1)), None);
    }

    #[test]
    fn a_change_is_asked_for_once_settled_and_not_again_until_answered() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plugin.wasm");
        std::fs::write(&file, b"v0").unwrap();
        let set = WatchSet {
            files: vec![(file.clone(), stamp(&file))],
            settle: Duration::from_millis(100),
        };
        let reloads = Reloads::new();
        let watcher = Watcher::spawn(set, reloads.clone());
        std::fs::write(&file, b"v1 longer").unwrap();
        let asked = reloads.next(Duration::from_secs(10));
        assert_eq!(asked, Some(ReloadReason::FilesChanged));
        // Not answered yet: the same change is not asked for again.
        assert_eq!(reloads.next(Duration::from_millis(400)), None);
        // Answered with the file as read: nothing more to ask until it changes again.
        watcher.watch(WatchSet {
            files: vec![(file.clone(), stamp(&file))],
            settle: Duration::from_millis(100),
        });
        assert_eq!(reloads.next(Duration::from_millis(400)), None);
        std::fs::write(&file, b"v2 longer still").unwrap();
        assert_eq!(
            reloads.next(Duration::from_secs(10)),
            Some(ReloadReason::FilesChanged)
        );
        watcher.stop();
    }
}
