//! Where a plugin's WASI stdout and stderr go: into the host log, line by line, with the
//! last lines of stderr kept so a trap's dead-letter reason can say what the guest printed
//! (a Rust panic message, typically). What a plugin writes to the log in one call, through
//! these streams or the `log` import, is held to its [`LogBudget`].

use crate::log_context::plugin_event;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tracing::Level;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much of the most recent stderr output is kept.
const TAIL_BYTES: usize = 2048;

/// Which stream of the guest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout: logged at debug.
    Stdout,
    /// stderr: logged at warn and kept for failure reasons.
    Stderr,
}

/// The log bytes one call may write (`max_log_bytes`); what goes over is dropped and
/// counted, so a plugin cannot flood the host's log or its disk.
pub struct LogBudget {
    limit: u64,
    used: AtomicU64,
    dropped: AtomicU64,
}

impl LogBudget {
    /// A budget of `limit` bytes per call.
    pub fn new(limit: u64) -> Self {
        LogBudget {
            limit,
            used: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The budget per call.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether `bytes` more may be written; if not, they are counted as dropped.
    pub fn admit(&self, bytes: usize) -> bool {
        let bytes = bytes as u64;
        let admitted = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + bytes <= self.limit).then_some(used + bytes)
            })
            .is_ok();
        if !admitted {
            self.dropped.fetch_add(bytes, Ordering::Relaxed);
        }
        admitted
    }

    /// Bytes dropped since the last reset.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Starts a new call's budget.
    pub fn reset(&self) {
        self.used.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
    }
}

/// One guest stream; clones share the buffer.
#[derive(Clone)]
pub struct GuestOutput {
    plugin: Arc<str>,
    stream: Stream,
    inner: Arc<Mutex<Buffers>>,
    budget: Arc<LogBudget>,
}

#[derive(Default)]
struct Buffers {
    /// The unfinished last line.
    partial: Vec<u8>,
    /// Recent complete output, bounded by [`TAIL_BYTES`].
    tail: Vec<u8>,
}

impl GuestOutput {
    /// A stream of `plugin`, logging within `budget`.
    pub fn new(plugin: Arc<str>, stream: Stream, budget: Arc<LogBudget>) -> Self {
        GuestOutput {
            plugin,
            stream,
            inner: Arc::default(),
            budget,
        }
    }

    /// Forgets what was written so far (before a new call).
    pub fn clear_recent(&self) {
        let mut buffers = self.inner.lock().expect("guest output lock");
        buffers.partial.clear();
        buffers.tail.clear();
    }

    /// Takes what was written since the last call (complete and partial lines), trimmed.
    pub fn take_recent(&self) -> String {
        let mut buffers = self.inner.lock().expect("guest output lock");
        let partial = std::mem::take(&mut buffers.partial);
        let mut recent = std::mem::take(&mut buffers.tail);
        recent.extend_from_slice(&partial);
        String::from_utf8_lossy(&recent).trim().to_owned()
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffers = self.inner.lock().expect("guest output lock");
        buffers.partial.extend_from_slice(bytes);
        while let Some(end) = buffers.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffers.partial.drain(..=end).collect();
            if self.budget.admit(line.len()) {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end();
                match self.stream {
                    Stream::Stdout => plugin_event!(Level::DEBUG, self.plugin, "stdout: {text}"),
                    Stream::Stderr => plugin_event!(Level::WARN, self.plugin, "stderr: {text}"),
                }
            }
            if self.stream == Stream::Stderr {
                buffers.tail.extend_from_slice(&line);
                let excess = buffers.tail.len().saturating_sub(TAIL_BYTES);
                buffers.tail.drain(..excess);
            }
        }
        // A line that never ends must not grow without bound.
        let excess = buffers.partial.len().saturating_sub(TAIL_BYTES);
        buffers.partial.drain(..excess);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASIp3 guests use this path; Plexus links WASIp2.
        std::io::empty().async_stream()
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}
