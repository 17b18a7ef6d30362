//! Talking to the real Redis server the tests run against: its URL, keys read back with
//! `redis-cli` (an independent client), and the server killed and started again.

use std::process::Command;
use std::sync::OnceLock;

/// The server's URL: `$PLEXUS_REDIS_URL` (set by scripts/test), else whatever
/// `scripts/redis-up` starts or finds.
pub fn url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| crate::test_server("PLEXUS_REDIS_URL", "redis-up"))
}

/// Starts the server again (after [`kill`]), with the port and directory the tests were
/// started with.
pub fn up() {
    crate::start_server("redis-up");
}

/// Kills the server with SIGKILL (a crash: only what its append-only file holds survives).
pub fn kill() {
    let dir = std::env::var("PLEXUS_REDIS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| crate::repo("target/redis"));
    let pid = std::fs::read_to_string(dir.join("redis.pid")).expect("the server's pid file");
    let killed = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Wait until the port is free.
    for _ in 0..100 {
        if cli(&["PING"]).is_none() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("redis-server still answers after SIGKILL");
}

/// `redis-cli --raw ARGS` against the server: its output, or `None` if it failed.
pub fn cli(args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-u", url(), "--raw"])
        .args(args)
        .output()
        .expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
}

/// One stream entry as `redis-cli` reads it: its id and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `MS-SEQ`.
    pub id: String,
    /// Field → value (the last one, if a field repeats).
    pub fields: std::collections::BTreeMap<String, String>,
}

impl Entry {
    /// The value of `field`.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

/// Every entry of `stream`, read with `redis-cli --json XRANGE` (an independent client).
pub fn xrange(stream: &str) -> Vec<Entry> {
    let out = Command::new("redis-cli")
        .args(["-u", url(), "--json", "XRANGE", stream, "-", "+"])
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "redis-cli XRANGE {stream} failed");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "XRANGE {stream}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    reply
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            let id = entry[0].as_str().unwrap().to_owned();
            let flat = entry[1].as_array().cloned().unwrap_or_default();
            let fields = flat
                .chunks(2)
                .map(|pair| {
                    (
                        pair[0].as_str().unwrap().to_owned(),
                        pair[1].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            Entry { id, fields }
        })
        .collect()
}

/// Every entry of the streams of `streams`, in stream order one after the other.
pub fn xrange_all(streams: &[String]) -> Vec<Entry> {
    streams.iter().flat_map(|s| xrange(s)).collect()
}

/// How many entries `stream` holds.
pub fn xlen(stream: &str) -> usize {
    cli(&["XLEN", stream])
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Adds one entry per event to `stream` with `redis-cli` (binary mode: `ce_` fields, the
/// key in `key`, a small text `data`), in one pipe.
pub fn add_events(stream: &str, events: &[(String, String, Option<String>)]) {
    let mut script = String::new();
    for (id, event_type, key) in events {
        script += &format!(
            "XADD {stream} * ce_specversion 1.0 ce_id {id} ce_type {event_type} ce_source /test content-type text/plain"
        );
        if let Some(key) = key {
            script += &format!(" key {key}");
        }
        script += " data payload\n";
    }
    pipe_commands(&script);
}

/// Runs one command per line of `script` through `redis-cli`.
pub fn pipe_commands(script: &str) {
    use std::io::Write as _;
    let mut child = Command::new("redis-cli")
        .args(["-u", url()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "redis-cli failed");
}

/// Waits until `stream` holds `count` entries, up to `timeout`; how many it holds then.
pub fn wait_for_entries(stream: &str, count: usize, timeout: std::time::Duration) -> usize {
    let started = std::time::Instant::now();
    loop {
        let now = xlen(stream);
        if now >= count || started.elapsed() > timeout {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
