//! The live topology page in a real headless Chromium (Debian's package) while the shop runs
//! on Kafka: the DOM after the page's script ran must show the graph (every topic and route,
//! the dead-letter edges) and each route's live figures, the same as `/api/status`. A
//! screenshot is kept as `target/test-artifacts/topology.png`.

use plexus_tests::admin::{address_from_log, get};
use plexus_tests::kafka::{bootstrap, shop_config, terminate, unique};
use plexus_tests::{KillOnDrop, Scenario, plexus_command, repo};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs headless Chromium on `url` with `args` (a fresh profile, nothing reached but the
/// page); its stdout.
fn chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // Lets the page's timers and fetches run for 5 s of page time before the dump.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("chromium (scripts/setup-host-deps --test installs it)");
    assert!(out.status.success(), "chromium failed on {url}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_topology_page_shows_the_shop_running_on_kafka() {
    let scenario = Scenario::new();
    let prefix = unique("page");
    let text = shop_config(&prefix, bootstrap()).replace("idle_exit = \"3s\"\n", "");
    let config = scenario.file("kafka.toml", &text);
    let log = scenario.dir.path().join("plexus.log");
    let mut plexus = KillOnDrop(
        plexus_command()
            .args(["run", "--no-watch", "--config"])
            .arg(&config)
            .env("PLEXUS_CACHE_DIR", scenario.dir.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let address = address_from_log(&log, Duration::from_secs(60));
    // Every order through both hops: 5 on the dashboard, 2 dead letters from validate.
    let started = Instant::now();
    let status = loop {
        let (_, body) = get(&address, "/api/status");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let routes = &status["routes"];
        if routes["dashboard"]["counters"]["succeeded"] == 5
            && routes["notify"]["counters"]["succeeded"] == 5
            && routes["validate"]["lag"] == 0
        {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the shop did not finish: {body}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let validate_dead: u64 = status["routes"]["validate"]["counters"]["dead_lettered"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(validate_dead, 2, "{status}");

    let url = format!("http://{address}/");
    let dom = chromium(&url, &["--dump-dom"]);
    for topic in [
        "orders",
        "order-outcomes",
        "notifications",
        "dashboard",
        "dead-letters",
    ] {
        assert!(
            dom.contains(&format!("id=\"topic-{prefix}.{topic}\"")),
            "topic {topic} not drawn:\n{dom}"
        );
    }
    for route in ["validate", "notify", "dashboard"] {
        assert!(dom.contains(&format!("id=\"route-{route}\"")), "{dom}");
        assert!(
            dom.contains(&format!("<tr data-route=\"{route}\">")),
            "{dom}"
        );
    }
    assert_eq!(
        dom.matches("class=\"dead\"").count(),
        3,
        "a dead-letter edge per route"
    );
    assert_eq!(
        dom.matches("class=\"emits\"").count(),
        3,
        "a declared emit edge per route"
    );
    // The live figures, as the page's script wrote them from /api/status.
    assert!(
        dom.contains("data-dead-lettered=\"2\"") && dom.contains("data-succeeded=\"5\""),
        "{dom}"
    );
    assert!(
        dom.contains("<td class=\"dead-lettered\">2</td>")
            && dom.contains("<td class=\"lag\">0</td>"),
        "{dom}"
    );
    assert!(dom.contains("running · kafka"), "{dom}");
    assert!(
        dom.contains(r#"<div id="problem" style="display: none;"></div>"#),
        "the page could not read the status:\n{dom}"
    );
    assert!(dom.contains("order-validator@sha256:"), "{dom}");

    let artifacts = repo("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("topology.png");
    let _ = std::fs::remove_file(&screenshot);
    chromium(
        &url,
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1400,800",
        ],
    );
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    terminate(&plexus.0);
    assert_eq!(plexus.0.wait().unwrap().code(), Some(0));
}
