//! Operating a run: the admin server scraped while `plexus run` works through a real Kafka
//! topic (health, readiness, lag rising and falling back to 0, dead letters counted by kind
//! and the dead-letter topic's depth, `/api/status`), JSON logs with the periodic status
//! line, and a taken admin port refused clearly.

use plexus_tests::admin::{address_from_log, get, sum};
use plexus_tests::kafka::{bootstrap, create_topic, event, produce_events, unique};
use plexus_tests::{KillOnDrop, Scenario, plexus_command, plugins};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Polls `what` every 200 ms until it returns `Some`, or fails after `timeout` with `describe`.
fn wait_for<T>(
    timeout: Duration,
    describe: impl Fn() -> String,
    mut what: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = what() {
            return found;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?}: {}",
            describe()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metrics_health_and_status_follow_a_kafka_run_live() {
    let scenario = Scenario::new();
    let (input, out, dlq) = (unique("ops-in"), unique("ops-out"), unique("ops-dlq"));
    create_topic(&input, 2);
    let config = scenario.file(
        "plexus.toml",
        &format!(
            r#"[runtime]
cache_dir = "{cache}"
[broker]
kind = "kafka"
kafka.bootstrap_servers = "{bootstrap}"
kafka.group = "{group}"
partitions = 2
[admin]
status_interval = "1s"
[plugins.m]
path = "{plugin}"
config = {{ out = "{out}" }}
limits = {{ timeout = "100ms" }}
[routes.slow]
topic = "{input}"
plugin = "m"
concurrency = 1
dead_letter = "{dlq}"
"#,
            cache = scenario.dir.path().join("cache").display(),
            bootstrap = bootstrap(),
            group = unique("ops"),
            plugin = plugins::MISBEHAVE,
        ),
    );
    let log = scenario.dir.path().join("plexus.log");
    let child = plexus_command()
        .args(["run", "--no-watch", "--config"])
        .arg(&config)
        .env("PLEXUS_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut plexus = KillOnDrop(child);
    let address = address_from_log(&log, Duration::from_secs(60));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(get(&address, "/healthz").0, 200);
    wait_for(Duration::from_secs(90), log_text, || {
        (get(&address, "/readyz").0 == 200).then_some(())
    });
    let metrics = || get(&address, "/metrics").1;
    let lag = |text: &str| sum(text, "plexus_consumer_lag", &[r#"route="slow""#]);
    // Both partitions measured, nothing to read yet.
    wait_for(Duration::from_secs(30), metrics, || {
        let text = metrics();
        let partitions = text.matches("plexus_consumer_lag{").count();
        (partitions == 2 && lag(&text) == Some(0.0)).then_some(())
    });

    // 80 events that run into the 100 ms time limit hold the only worker for 8 s or more,
    // while 100 good ones and 20 rejected ones wait behind them.
    let mut events = Vec::new();
    for i in 0..80 {
        events.push(event(&format!("loop-{i}"), "test.loop", None));
    }
    for i in 0..100 {
        events.push(event(&format!("good-{i}"), "test.echo", None));
    }
    for i in 0..20 {
        events.push(event(&format!("bad-{i}"), "test.reject", None));
    }
    produce_events(&input, &events);
    let peak = wait_for(Duration::from_secs(60), metrics, || {
        lag(&metrics()).filter(|lag| *lag > 0.0)
    });
    assert!(peak <= 200.0, "lag {peak} above what was sent");

    let route = r#"route="slow""#;
    wait_for(Duration::from_secs(120), metrics, || {
        let text = metrics();
        let dead = |kind: &str| {
            sum(
                &text,
                "plexus_events_dead_lettered_total",
                &[route, &format!("kind=\"{kind}\"")],
            )
        };
        let done = lag(&text) == Some(0.0)
            && sum(&text, "plexus_events_succeeded_total", &[route]) == Some(100.0)
            && dead("timeout") == Some(80.0)
            && dead("rejected") == Some(20.0)
            && sum(
                &text,
                "plexus_dead_letter_depth",
                &[&format!("topic=\"{dlq}\"")],
            ) == Some(100.0)
            && sum(&text, "plexus_events_in_flight", &[route]) == Some(0.0);
        done.then_some(())
    });
    let text = metrics();
    assert_eq!(
        sum(&text, "plexus_events_received_total", &[route]),
        Some(200.0)
    );
    assert_eq!(
        sum(&text, "plexus_events_emitted_total", &[route]),
        Some(100.0)
    );
    assert_eq!(
        sum(&text, "plexus_handle_duration_seconds_count", &[route]),
        Some(200.0)
    );
    assert!(text.contains("version=\"m@sha256:"), "{text}");

    let (code, status) = get(&address, "/api/status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let slow = &status["routes"]["slow"];
    assert_eq!(status["phase"], "running");
    assert_eq!(status["broker"], "kafka");
    assert_eq!(slow["topic"], input.as_str());
    assert_eq!(slow["lag"], 0);
    assert_eq!(slow["positions"].as_array().unwrap().len(), 2);
    assert_eq!(slow["counters"]["received"], 200);
    assert_eq!(slow["counters"]["dead_lettered"]["timeout"], 80);
    assert!(
        slow["plugin_version"]
            .as_str()
            .unwrap()
            .starts_with("m@sha256:"),
        "{slow}"
    );
    assert_eq!(status["dead_letter_depth"][&dlq], 100);
    assert_eq!(get(&address, "/nothing-here").0, 404);

    plexus_tests::kafka::terminate(&plexus.0);
    let code = plexus.0.wait().unwrap().code();
    assert_eq!(code, Some(0), "{}", log_text());

    // JSON logs: every line an object; status lines with their figures; the plugin's
    // timeouts logged with the route, plugin and event id.
    let text = log_text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let statuses: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["message"] == "status").collect();
    assert!(statuses.len() >= 3, "{text}");
    assert!(
        statuses
            .iter()
            .any(|s| s["lag"].as_u64().is_some_and(|lag| lag > 0)),
        "{text}"
    );
    assert!(
        statuses.iter().all(|s| s["received_per_s"].is_string()),
        "{text}"
    );
    let dead = lines
        .iter()
        .find(|l| l["message"] == "dead-lettering event")
        .expect("a dead-lettering line");
    assert_eq!(dead["route"], "slow");
    assert!(
        dead["event_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("loop-") || id.starts_with("bad-")),
        "{dead}"
    );
    let summary = lines.last().unwrap();
    assert_eq!(summary["message"], "run summary", "{text}");
    assert_eq!(summary["report"]["routes"]["slow"]["received"], 200);
    assert_eq!(
        plexus_tests::kafka::wait_for_records(&out, 100, Duration::from_secs(60)),
        100
    );
}

#[test]
fn a_taken_admin_port_is_refused_clearly_and_off_serves_nothing() {
    let scenario = Scenario::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    scenario.file(
        "in.jsonl",
        &plexus_tests::event_line("e1", "x", None, serde_json::json!({})),
    );
    let config = |listen: &str| {
        scenario.file(
            "plexus.toml",
            &format!(
                "[admin]\nlisten = \"{listen}\"\n[state]\nbackend = \"memory\"\n[[inputs]]\ntopic = \"t\"\nfile = \"in.jsonl\"\n[plugins.p]\npath = \"{}\"\n[routes.r]\ntopic = \"t\"\nplugin = \"p\"\n",
                plugins::NOOP
            ),
        )
    };
    let run = |config: &std::path::Path| {
        // Without PLEXUS_ADMIN_LISTEN: the config decides.
        std::process::Command::new(plexus_tests::plexus_bin())
            .args(["run", "--no-watch", "--config"])
            .arg(config)
            .env_remove("PLEXUS_ADMIN_LISTEN")
            .output()
            .unwrap()
    };
    let out = run(&config(&address));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("admin server: cannot listen on {address}"))
            && stderr.contains("another process has it"),
        "{stderr}"
    );
    assert!(!stderr.contains("route r:"), "nothing may run: {stderr}");

    let out = run(&config("off"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("admin server listening"), "{stderr}");
    assert!(
        stderr.contains("route r: received 1, succeeded 1"),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn undeclared_emits_are_published_counted_and_warned_about_once() {
    let scenario = Scenario::new();
    let lines: Vec<String> = (0..5)
        .map(|i| {
            let type_ = if i < 2 { "test.a" } else { "test.b" };
            plexus_tests::event_line(&format!("e{i}"), type_, None, serde_json::json!({}))
        })
        .collect();
    scenario.file("in.jsonl", &lines.join("\n"));
    let config = scenario.file(
        "plexus.toml",
        &format!(
            "[state]\nbackend = \"memory\"\n[[inputs]]\ntopic = \"in\"\nfile = \"in.jsonl\"\n[[outputs]]\ntopic = \"out\"\nfile = \"out.jsonl\"\n[plugins.m]\npath = \"{}\"\nconfig = {{ out = \"out\" }}\nemits = {{ \"out\" = [\"test.a.echo\"] }}\n[routes.r]\ntopic = \"in\"\nplugin = \"m\"\n",
            plugins::MISBEHAVE
        ),
    );
    let out = plexus_command()
        .args(["run", "--no-watch", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("does not declare") && l.contains("WARN"))
        .count();
    assert_eq!(warnings, 1, "{stderr}");
    assert!(stderr.contains("type=test.b.echo"), "{stderr}");
    assert!(
        stderr
            .contains("emitted 5, dead-lettered 0; 3 emits its plugin's `emits` does not declare"),
        "{stderr}"
    );
    let written = std::fs::read_to_string(scenario.dir.path().join("out.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 5, "published all the same");
}

#[test]
fn json_logs_give_a_plugins_own_lines_the_route_and_the_events_ids() {
    let scenario = Scenario::new();
    let config = scenario.file(
        "plexus.toml",
        &plexus_tests::example_config("shop", "plexus.toml", "notifications.jsonl"),
    );
    let out = plexus_command()
        .args(["run", "--no-watch", "--config"])
        .arg(&config)
        .env("PLEXUS_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // The order validator logs each order through the `log` import.
    let logged = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("order o-1004:"))
        })
        .unwrap_or_else(|| panic!("no plugin line for o-1004:\n{stderr}"));
    assert_eq!(logged["plugin"], "order-validator", "{logged}");
    assert_eq!(logged["route"], "validate", "{logged}");
    assert_eq!(logged["event_id"], "order-1004", "{logged}");
    assert_eq!(logged["correlation_id"], "checkout-1004", "{logged}");
    assert_eq!(logged["level"], "INFO");
    let summary = lines.last().unwrap();
    assert_eq!(summary["report"]["routes"]["validate"]["received"], 8);
}
