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
    /// The lines of the call in progress, to be logged when it ends (bounded by the log
    /// budget).
    lines: Vec<String>,
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
        buffers.lines.clear();
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
            self.take_line(&mut buffers, line);
        }
        // A line that never ends must not grow without bound.
        let excess = buffers.partial.len().saturating_sub(TAIL_BYTES);
        buffers.partial.drain(..excess);
    }

    /// Keeps a complete line for the call's record (if not blank and within the budget)
    /// and, of stderr, in the tail.
    fn take_line(&self, buffers: &mut Buffers, line: Vec<u8>) {
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if !text.trim().is_empty() && self.budget.admit(line.len()) {
            buffers.lines.push(text.to_owned());
        }
        if self.stream == Stream::Stderr {
            buffers.tail.extend_from_slice(&line);
            let excess = buffers.tail.len().saturating_sub(TAIL_BYTES);
            buffers.tail.drain(..excess);
        }
    }

    /// Logs what the call printed, as one record (an unfinished last line included), in
    /// the log context of the call (its event).
    pub fn end_call(&self) {
        let Some(text) = self.take_call_record() else {
            return;
        };
        match self.stream {
            Stream::Stdout => plugin_event!(Level::DEBUG, self.plugin, "stdout: {text}"),
            Stream::Stderr => plugin_event!(Level::WARN, self.plugin, "stderr: {text}"),
        }
    }

    /// The text of the call's record (`None` if it printed nothing but blank lines).
    fn take_call_record(&self) -> Option<String> {
        let lines = {
            let mut buffers = self.inner.lock().expect("guest output lock");
            if !buffers.partial.is_empty() {
                let mut partial = std::mem::take(&mut buffers.partial);
                partial.push(b'\n');
                self.take_line(&mut buffers, partial);
            }
            std::mem::take(&mut buffers.lines)
        };
        match lines.len() {
            0 => None,
            1 => lines.into_iter().next(),
            // Continuation lines indented, so the record reads as one in a text log.
            _ => Some(format!("\n  {}", lines.join("\n  "))),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stderr(limit: u64) -> GuestOutput {
        GuestOutput::new("p".into(), Stream::Stderr, Arc::new(LogBudget::new(limit)))
    }

    #[test]
    fn a_call_prints_one_record_without_its_blank_lines() {
        let out = stderr(1024);
        out.append(b"Traceback (most recent call last):\n\n   \n  File \"app.py\"");
        out.append(b", line 3\nValueError: bad\n\n");
        assert_eq!(
            out.take_call_record().as_deref(),
            Some(
                "\n  Traceback (most recent call last):\n    File \"app.py\", line 3\n  ValueError: bad"
            )
        );
        assert_eq!(out.take_call_record(), None, "taken once");
        out.append(b"no newline at the end");
        assert_eq!(
            out.take_call_record().as_deref(),
            Some("no newline at the end"),
            "an unfinished last line is part of the call's record"
        );
        out.append(b"\n\n");
        assert_eq!(
            out.take_call_record(),
            None,
            "blank lines alone log nothing"
        );
    }

    #[test]
    fn a_call_record_holds_no_more_than_the_log_budget() {
        let out = stderr(10);
        out.append(b"12345\n67890\nover the budget\n");
        assert_eq!(out.take_call_record().as_deref(), Some("12345"));
        assert!(out.budget.dropped() > 0);
        assert!(
            out.take_recent().contains("over the budget"),
            "the tail for trap reasons keeps what was printed"
        );
    }
}
