//! The `plexus` binary as users run it: `run` on the quick-start example, `run` stopped by
//! SIGTERM, and `test` on a plugin.

use plexus_tests::{Scenario, event_line, plexus_bin, plugin, repo};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn run_prints_the_shop_notifications_and_exits_zero() {
    let scenario = Scenario::new();
    let out = Command::new(plexus_bin())
        .args(["run", "--config"])
        .arg(repo("examples/shop/plexus.toml"))
        .env("PLEXUS_CACHE_DIR", scenario.dir.path())
        .output()
        .expect("run plexus");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let types: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("stdout holds only events")["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types, vec!["shop.notification.v1"; 5]);
    assert!(stderr.contains("route validate: received 8, succeeded 5, filtered 1, retried 0, emitted 5, dead-lettered 2 (rejected=1, undecodable=1)"), "{stderr}");
}

#[test]
fn sigterm_drains_commits_and_exits_zero() {
    let scenario = Scenario::new();
    // Enough slow events that the run is still busy when the signal arrives.
    let lines: Vec<String> = (0..200_000)
        .map(|i| {
            event_line(
                &format!("e{i}"),
                "test.ok",
                Some(&format!("k{}", i % 16)),
                json!({}),
            )
        })
        .collect();
    let input = scenario.events("in.jsonl", &lines);
    let config = scenario.file(
        "plexus.toml",
        &format!(
            "[[inputs]]\ntopic = \"in\"\nfile = \"{}\"\n[[outputs]]\ntopic = \"echo\"\nfile = \"echo.jsonl\"\n[plugins.m]\npath = \"{}\"\nconfig = {{ out = \"echo\", spin = 20000 }}\n[routes.slow]\ntopic = \"in\"\nplugin = \"m\"\nconcurrency = 2\n",
            input.display(),
            plugin("misbehave")
        ),
    );
    let child = Command::new(plexus_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("PLEXUS_CACHE_DIR", scenario.dir.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start plexus");
    // Signal once events are flowing (the echo output has lines), however slow the machine.
    let echo = scenario.dir.path().join("echo.jsonl");
    let waiting = Instant::now();
    while std::fs::metadata(&echo).map_or(0, |m| m.len()) == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "no event was handled within a minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "drain took {:?}",
        started.elapsed()
    );
    assert!(stderr.contains("draining in-flight events"), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("route slow:"))
        .expect("summary line");
    let succeeded: u64 = summary
        .split("succeeded ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        succeeded > 0 && succeeded < 200_000,
        "stopped mid-stream: {summary}"
    );
    let written = scenario.output("echo.jsonl").len() as u64;
    assert_eq!(
        written, succeeded,
        "every handled event's emit reached the output before exit"
    );
}

#[test]
fn test_command_prints_outcomes_and_emits() {
    let scenario = Scenario::new();
    let events = scenario.events(
        "events.jsonl",
        &[
            event_line("a", "test.ok", Some("k"), json!({"seq": 1})),
            event_line("b", "test.reject", None, json!({})),
            event_line("c", "test.trap", None, json!({})),
            "{not json".to_owned(),
        ],
    );
    let out = Command::new(plexus_bin())
        .args(["test", &plugin("misbehave"), "--events"])
        .arg(&events)
        .args(["--set", "out=tested"])
        .env("PLEXUS_CACHE_DIR", scenario.dir.path().join("cache"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4);
    assert_eq!(records[0]["outcome"], "ok");
    assert_eq!(records[0]["emitted"][0]["type"], "test.ok.echo");
    assert_eq!(records[0]["emitted"][0]["partitionkey"], "k");
    assert_eq!(records[0]["emitted"][0]["data"], json!({"seq": 1}));
    assert_eq!(records[1]["outcome"], "rejected");
    assert_eq!(records[1]["reason"], "rejected b");
    assert_eq!(records[2]["outcome"], "trap");
    assert!(
        records[2]["reason"].as_str().unwrap().contains("boom"),
        "{}",
        records[2]
    );
    assert_eq!(records[3]["outcome"], "undecodable");
    assert_eq!(records[3]["line"], 4);
}
