//! Misbehaving events and plugins are contained: each ends in the dead-letter topic with the
//! right reason and the events after it still flow.

use plexus_tests::{Scenario, attr, event_line, plugins};
use serde_json::json;

fn misbehave_config(input: &std::path::Path, limits: &str) -> String {
    format!(
        r#"
        [broker]
        partitions = 1
        [[inputs]]
        topic = "in"
        file = "{}"
        [[outputs]]
        topic = "echo"
        file = "echo.jsonl"
        [[outputs]]
        topic = "dlq"
        file = "dlq.jsonl"
        [plugins.misbehave]
        path = "{}"
        config = {{ out = "echo" }}
        limits = {{ {limits} }}
        [routes.chaos]
        topic = "in"
        plugin = "misbehave"
        dead_letter = "dlq"
        retry = {{ max_attempts = 4, initial_backoff = "5ms", max_backoff = "20ms" }}
        "#,
        input.display(),
        plugins::MISBEHAVE
    )
}

#[test]
fn each_failure_is_dead_lettered_with_its_reason_and_later_events_flow() {
    let scenario = Scenario::new();
    let kinds = [
        ("ok-1", "test.ok", json!({})),
        ("trap", "test.trap", json!({})),
        ("ok-2", "test.ok", json!({})),
        ("loop", "test.loop", json!({})),
        ("ok-3", "test.ok", json!({})),
        ("hog", "test.hog", json!({})),
        ("ok-4", "test.ok", json!({})),
        ("reject", "test.reject", json!({})),
        ("emit-then-reject", "test.emit-then-reject", json!({})),
        ("bad-json", "test.bad-json", json!({})),
        ("retry-3", "test.retry", json!({"n": 3})),
        ("retry-forever", "test.retry", json!({"n": 100})),
        ("ok-5", "test.ok", json!({})),
    ];
    let lines: Vec<String> = kinds
        .iter()
        .map(|(id, t, data)| event_line(id, t, None, data.clone()))
        .collect();
    let input = scenario.events("in.jsonl", &lines);
    let report = scenario.run(&misbehave_config(
        &input,
        r#"memory = "16MiB", timeout = "300ms""#,
    ));

    let echoed = scenario.output("echo.jsonl");
    assert_eq!(
        echoed.attrs("echoof"),
        ["ok-1", "ok-2", "ok-3", "ok-4", "retry-3", "ok-5"]
    );
    let retried = echoed
        .0
        .iter()
        .find(|e| attr(e, "echoof").as_deref() == Some("retry-3"))
        .unwrap();
    assert_eq!(
        attr(retried, "echoattempt").as_deref(),
        Some("3"),
        "succeeded on the third attempt"
    );
    assert!(
        echoed.0.iter().all(|e| e.type_ != "test.must-not-appear"),
        "a failed handler's emits are discarded"
    );

    let dead = scenario.output("dlq.jsonl");
    let reason_of = |id: &str| {
        let event = dead
            .0
            .iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("{id} not dead-lettered"));
        let header = |name: &str| attr(event, name).unwrap();
        (
            header("plexusdlqkind"),
            header("plexusdlqreason"),
            header("plexusdlqattempts"),
        )
    };
    let (kind, reason, _) = reason_of("trap");
    assert_eq!(kind, "trap");
    assert!(
        reason.contains("boom: asked to trap on trap"),
        "the panic message is kept: {reason}"
    );
    let (kind, reason, _) = reason_of("loop");
    assert_eq!(
        (kind.as_str(), reason.as_str()),
        ("timeout", "handle exceeded the time limit of 300ms")
    );
    let (kind, reason, _) = reason_of("hog");
    assert_eq!(
        (kind.as_str(), reason.as_str()),
        (
            "memory-limit",
            "handle tried to grow memory past the limit of 16MiB"
        )
    );
    assert_eq!(reason_of("reject").0, "rejected");
    assert_eq!(reason_of("emit-then-reject").0, "rejected");
    let (kind, reason, _) = reason_of("bad-json");
    assert_eq!(kind, "rejected");
    assert!(
        reason.contains("emit refused: the payload is declared `application/json` but is not JSON"),
        "{reason}"
    );
    let (kind, reason, attempts) = reason_of("retry-forever");
    assert_eq!(
        (kind.as_str(), attempts.as_str()),
        ("retries-exhausted", "4")
    );
    assert!(
        reason.starts_with("gave up after 4 attempts: attempt 4 of 100"),
        "{reason}"
    );
    assert_eq!(dead.len(), 7);
    let letter = dead.0.iter().find(|e| e.id == "trap").unwrap();
    for (header, value) in [
        ("plexusdlqroute", "chaos"),
        ("plexusdlqtopic", "in"),
        ("plexusdlqpartition", "0"),
        ("plexusdlqoffset", "1"),
    ] {
        assert_eq!(attr(letter, header).as_deref(), Some(value), "{header}");
    }
    assert_eq!(
        letter.type_, "test.trap",
        "the dead letter is the original event"
    );

    let counts = &report.routes["chaos"];
    assert_eq!(counts.succeeded, 6);
    assert_eq!(counts.retried, 2 + 3);
    assert_eq!(counts.dead_lettered_total(), 7);
}

#[test]
fn a_plugin_reaches_no_file_no_environment_and_no_network_but_reads_working_clocks() {
    let scenario = Scenario::new();
    let input = scenario.events(
        "in.jsonl",
        &[event_line("probe", "test.sandbox", None, json!({}))],
    );
    scenario.run(&misbehave_config(&input, r#"timeout = "2s""#));
    let report = scenario.output("echo.jsonl").json();
    assert_eq!(report.len(), 1);
    let saw = &report[0];
    assert_eq!(saw["file"], false, "{saw}");
    assert_eq!(saw["dir"], false, "{saw}");
    assert_eq!(saw["env"], json!([]), "{saw}");
    assert_eq!(saw["home"], json!(null), "{saw}");
    assert_eq!(saw["tcp"], false, "{saw}");
    let host = saw["host_clock_millis"].as_i64().unwrap();
    assert!(host > 1_700_000_000_000, "the clock import works: {saw}");
    let wasi = saw["wasi_clock_millis"].as_i64().unwrap();
    assert!(
        (wasi - host).abs() < 60_000,
        "WASI's wall clock tells the time (as runtimes such as Go's need): {saw}"
    );
    let monotonic = saw["monotonic_nanos"].as_u64().unwrap();
    assert!(
        (5_000_000..10_000_000_000).contains(&monotonic),
        "WASI's monotonic clock moves with the work done: {saw}"
    );
}
