//! Support for the end-to-end tests: where the built plugins and the binary are, writing a
//! config into a temporary directory, running it in-process, and reading topics back.
//!
//! # Layout
//! - [`plugins`], [`repo`], [`plexus_bin`]: paths.
//! - [`Scenario`]: a config plus input files in a temporary directory, run in-process.
//! - [`Topic`]: the events an output file received, with lookup helpers.
//! - [`PeakRss`]: the peak resident memory of a child process, read from `/proc`.
//! - [`admin`]: a running `plexus`'s admin server (metrics, health, status).
//! - [`live`]: a runtime under live reload on the embedded broker (the hot-reload tests).
//! - [`kafka`]: the real Kafka broker: topics, producing, reading back, running `plexus`.
//! - [`oracle`]: the official CloudEvents SDKs (Python and Rust) as test oracles.

pub mod admin;
pub mod counting;
pub mod kafka;
pub mod live;
pub mod oracle;
pub mod redis;

use plexus::RunReport;
use plexus::config::Config;
use plexus::event::Event;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The built plugins, one constant per component (`plugins::MISBEHAVE`), as path strings.
pub use plexus_guests as plugins;

/// A path inside the repository.
pub fn repo(relative: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(relative)
}

/// The `plexus` binary built alongside these tests (`cargo test --workspace` builds it).
pub fn plexus_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("plexus");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// A `plexus` command whose admin server listens on a free port (`PLEXUS_ADMIN_LISTEN`), so
/// runs side by side never fight over the default one.
pub fn plexus_command() -> std::process::Command {
    let mut command = std::process::Command::new(plexus_bin());
    command.env("PLEXUS_ADMIN_LISTEN", "127.0.0.1:0");
    command
}

/// A child process (a `plexus`, a collector) killed and reaped when dropped, so a test that
/// fails half-way leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The component at `path` with a custom section appended: the same behaviour, another
/// digest, so each `n` is a new version of the plugin.
pub fn plugin_version_bytes(path: &str, n: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("read component");
    let name = b"plexus-test-version";
    let payload = n.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    bytes.push(0); // custom section id
    bytes.push(section.len() as u8); // its size (LEB128, < 128)
    bytes.extend_from_slice(&section);
    bytes
}

/// Writes `bytes` to `path` the way a deploy should: to a temporary file, then renamed.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The address of a test server: `$VAR` when set (scripts/test starts the servers and sets
/// it), else what [`start_server`] finds.
pub fn test_server(var: &str, script: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| start_server(script))
}

/// Runs `scripts/SCRIPT`, which starts a test server (or finds it running) and prints its
/// address; the address.
pub fn start_server(script: &str) -> String {
    let out = std::process::Command::new(repo(&format!("scripts/{script}")))
        .output()
        .unwrap_or_else(|e| panic!("scripts/{script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The text of `examples/EXAMPLE/FILE`, rewired for a test: plugin paths to the built
/// components, event files to the repository's, output files into the scenario directory,
/// and the stdout output to `stdout_file`.
pub fn example_config(example: &str, file: &str, stdout_file: &str) -> String {
    let dir = repo(&format!("examples/{example}"));
    std::fs::read_to_string(dir.join(file))
        .expect("example config")
        .replace("../../target/plugins/", &format!("{}/", plugins::DIR))
        .replace(
            "file = \"events/",
            &format!("file = \"{}/events/", dir.display()),
        )
        .replace("file = \"out/", "file = \"")
        .replace("file = \"-\"", &format!("file = \"{stdout_file}\""))
}

/// `examples/shop/FILE` ([`example_config`]) made private to one test: its topics prefixed
/// with `prefix` (`PREFIX.orders`, ...), its group `prefix`, a 3 s idle exit. The broker's
/// address is the caller's to set.
pub fn private_shop_config(file: &str, prefix: &str) -> String {
    let mut text = example_config("shop", file, "notifications.jsonl");
    for topic in [
        "orders",
        "order-outcomes",
        "notifications",
        "dashboard",
        "dead-letters",
    ] {
        text = text.replace(
            &format!("\"shop.{topic}\""),
            &format!("\"{prefix}.{topic}\""),
        );
    }
    text.replace("group = \"plexus-shop\"", &format!("group = \"{prefix}\""))
        .replace("idle_exit = \"5s\"", "idle_exit = \"3s\"")
}

/// The messages the shop's notifier sends for `examples/shop/events/orders.jsonl`, sorted.
pub const SHOP_NOTIFICATIONS: [&str; 5] = [
    "Your order o-1001 over 49.50 EUR is confirmed.",
    "Your order o-1002 over 89.00 EUR is confirmed.",
    "Your order o-1003 could not be accepted: total 20000 does not match the items (24000).",
    "Your order o-1004 could not be accepted: total 65000 is over the limit of 50000.",
    "Your order o-1008 over 71.00 EUR is confirmed.",
];

/// A CloudEvents JSON line.
pub fn event_line(
    id: &str,
    event_type: &str,
    key: Option<&str>,
    data: serde_json::Value,
) -> String {
    let mut event = serde_json::json!({
        "specversion": "1.0", "id": id, "source": "/tests", "type": event_type, "data": data,
    });
    if let Some(key) = key {
        event["partitionkey"] = key.into();
    }
    event.to_string()
}

/// A config and its files in a temporary directory.
pub struct Scenario {
    /// The directory; removed on drop.
    pub dir: tempfile::TempDir,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario::new()
    }
}

impl Scenario {
    /// An empty scenario.
    pub fn new() -> Self {
        Scenario {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Writes `contents` to `name` in the scenario directory.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write scenario file");
        path
    }

    /// Writes event lines to `name`.
    pub fn events(&self, name: &str, lines: &[String]) -> PathBuf {
        self.file(name, &(lines.join("\n") + "\n"))
    }

    /// Parses `toml` as `plexus.toml` of this scenario, with a cache directory of its own.
    pub fn config(&self, toml: &str) -> Config {
        let toml = format!(
            "[runtime]\ncache_dir = \"{}\"\n\n{toml}",
            self.dir.path().join("cache").display()
        );
        let path = self.file("plexus.toml", &toml);
        Config::load(&path).unwrap_or_else(|e| panic!("invalid test config:\n{e}\n{toml}"))
    }

    /// Runs `toml` in-process until its inputs are exhausted.
    pub fn run(&self, toml: &str) -> RunReport {
        plexus::run(self.config(toml), plexus::RunOptions::default()).expect("run")
    }

    /// The events written to output file `name`.
    pub fn output(&self, name: &str) -> Topic {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        Topic(
            text.lines()
                .map(|line| {
                    plexus::testing::cloudevents::decode(line.as_bytes())
                        .unwrap_or_else(|e| panic!("{e}: {line}"))
                })
                .collect(),
        )
    }
}

/// Watches a process's peak resident memory (`VmHWM` in `/proc/PID/status`) from another
/// thread until it exits, so the peak is known after the process is gone.
pub struct PeakRss {
    peak_kib: std::sync::Arc<std::sync::atomic::AtomicU64>,
    watcher: std::thread::JoinHandle<()>,
}

impl PeakRss {
    /// Starts watching process `pid`.
    pub fn watch(pid: u32) -> PeakRss {
        use std::sync::atomic::Ordering;
        let peak_kib = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = peak_kib.clone();
        let watcher = std::thread::spawn(move || {
            let status = format!("/proc/{pid}/status");
            while let Ok(text) = std::fs::read_to_string(&status) {
                // A zombie has no memory lines: the process is gone.
                let Some(kib) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                else {
                    break;
                };
                seen.fetch_max(kib, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        PeakRss { peak_kib, watcher }
    }

    /// The peak seen, in MiB, once the process has exited (call after waiting for it).
    pub fn peak_mib(self) -> u64 {
        let _ = self.watcher.join();
        self.peak_kib.load(std::sync::atomic::Ordering::Relaxed) / 1024
    }
}

/// Attribute `name` of `event` as text: an extension attribute in its canonical string
/// encoding, else a transport header of that name.
pub fn attr(event: &Event, name: &str) -> Option<String> {
    event.extension_text(name).or_else(|| {
        event
            .header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// The events of one output, in file order.
#[derive(Debug, Clone)]
pub struct Topic(pub Vec<Event>);

impl Topic {
    /// How many events.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The payloads parsed as JSON.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.0
            .iter()
            .map(|e| serde_json::from_slice(e.data()).expect("JSON payload"))
            .collect()
    }

    /// Attribute `name` of every event, as text (empty where an event has none).
    pub fn attrs(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .map(|e| attr(e, name).unwrap_or_default())
            .collect()
    }

    /// Events by `plexusdlqkind`.
    pub fn by_dlq_kind(&self) -> BTreeMap<String, Vec<Event>> {
        let mut kinds: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for (event, kind) in self.0.iter().zip(self.attrs("plexusdlqkind")) {
            kinds.entry(kind).or_default().push(event.clone());
        }
        kinds
    }
}
