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
