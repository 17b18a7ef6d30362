//! The `plexus` binary as users run it: `run` on the quick-start example, `run` stopped by
//! SIGTERM and reloaded by SIGHUP (signals belong to the binary), a config with nothing to
//! run, and `test` on a plugin.

use plexus_tests::{Scenario, event_line, example_config, plexus_command, plugins};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn run_prints_the_shop_notifications_and_exits_zero() {
    let scenario = Scenario::new();
    // The example's own text, so that its state lives in the scenario, not in the checkout.
    let config = scenario.file("plexus.toml", &example_config("shop", "plexus.toml", "-"));
    let out = plexus_command()
        .args(["run", "--config"])
        .arg(&config)
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
    let config = slow_config(&scenario, 2);
    let child = plexus_command()
        .args(["run", "--config"])
        .arg(&config)
        .env("PLEXUS_CACHE_DIR", scenario.dir.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start plexus");
    // Signal once events are flowing, however slow the machine.
    wait_until_flowing(&scenario);
    signal(&child, "-TERM");
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

/// Waits until the slow route's output (`echo.jsonl`) has lines.
fn wait_until_flowing(scenario: &Scenario) {
    let echo = scenario.dir.path().join("echo.jsonl");
    let waiting = Instant::now();
    while std::fs::metadata(&echo).map_or(0, |m| m.len()) == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "no event was handled within a minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` (e.g. `-TERM`) to `child` with `kill`.
fn signal(child: &std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// A config whose route `slow` is busy for a long while on events of `in.jsonl`.
fn slow_config(scenario: &Scenario, concurrency: u32) -> std::path::PathBuf {
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
    scenario.file(
        "plexus.toml",
        &format!(
            "[[inputs]]\ntopic = \"in\"\nfile = \"{}\"\n[[outputs]]\ntopic = \"echo\"\nfile = \"echo.jsonl\"\n[plugins.m]\npath = \"{}\"\nconfig = {{ out = \"echo\", spin = 20000 }}\n[routes.slow]\ntopic = \"in\"\nplugin = \"m\"\nconcurrency = {concurrency}\n",
            input.display(),
            plugins::MISBEHAVE
        ),
    )
}

#[test]
fn sighup_reloads_the_config_and_only_sighup_with_no_watch() {
    let scenario = Scenario::new();
    let config = slow_config(&scenario, 2);
    let log = scenario.dir.path().join("plexus.log");
    let mut child = plexus_command()
        .args(["run", "--no-watch", "--config"])
        .arg(&config)
        .env("PLEXUS_CACHE_DIR", scenario.dir.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start plexus");
    wait_until_flowing(&scenario);
    let applied = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("configuration applied")
    };
    // A changed file alone is not applied with --no-watch...
    slow_config(&scenario, 1);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!applied(), "--no-watch applied a file change");
    // ...SIGHUP applies it.
    signal(&child, "-HUP");
    let waiting = Instant::now();
    while !applied() {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "SIGHUP was not applied: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("SIGHUP: reloading"), "{stderr}");
    assert!(
        stderr.contains("reloads: 1 applied, 0 refused, 0 plugin swaps"),
        "{stderr}"
    );
}

#[test]
fn a_config_without_routes_is_refused_by_run_and_warned_about_by_check() {
    let scenario = Scenario::new();
    for (name, text) in [
        ("empty.toml", ""),
        (
            "outputs-only.toml",
            "[[outputs]]\ntopic = \"t\"\nfile = \"-\"\n",
        ),
    ] {
        let config = scenario.file(name, text);
        let run = plexus_command()
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("error: {}: no routes", config.display())),
            "{name}: {stderr}"
        );
        let check = plexus_command()
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert_eq!(check.status.code(), Some(0), "{name}: {stdout}");
        assert!(
            stdout.contains("warning: no routes: nothing would read an event"),
            "{name}: {stdout}"
        );
    }
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
    let out = plexus_command()
        .args(["test", plugins::MISBEHAVE, "--events"])
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
