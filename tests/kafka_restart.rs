//! The broker stopped mid-stream, briefly and for longer than every timeout: Plexus rides
//! it out and finishes without loss. (A test binary of its own, so no other test shares the
//! broker while it is down; its tests take turns.)

use plexus_tests::kafka::{
    bootstrap, create_topic, event, produce_events, read, spawn_plexus, unique, wait_exit,
    wait_for_records,
};
use plexus_tests::{Scenario, attr, plugins, repo};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One test at a time: each stops the shared broker.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn broker_down() {
    let down = Command::new(repo("scripts/kafka-down")).status().unwrap();
    assert!(down.success());
}

fn broker_up() {
    let up = Command::new(repo("scripts/kafka-up")).output().unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("restart-in");
    let out = unique("restart-out");
    create_topic(&input, 2);
    let sent: Vec<_> = (0..2000)
        .map(|i| event(&format!("r-{i}"), "test.ok", Some(&format!("k{}", i % 7))))
        .collect();
    produce_events(&input, &sent);
    let config = scenario.file(
        "plexus.toml",
        &format!(
            "[runtime]\ncache_dir = \"{cache}\"\n[broker]\nkind = \"kafka\"\nkafka.bootstrap_servers = \"{bootstrap}\"\nkafka.group = \"{group}\"\nidle_exit = \"30s\"\n[plugins.m]\npath = \"{plugin}\"\nconfig = {{ out = \"{out}\", spin = 4000000 }}\n[routes.r]\ntopic = \"{input}\"\nplugin = \"m\"\nconcurrency = 2\n",
            cache = scenario.dir.path().join("cache").display(),
            bootstrap = bootstrap(),
            group = unique("restart"),
            plugin = plugins::MISBEHAVE,
        ),
    );
    let mut plexus = spawn_plexus(&config);
    assert!(
        wait_for_records(&out, 200, Duration::from_secs(60)) >= 200,
        "progress before the restart"
    );
    let before = wait_for_records(&out, 2000, Duration::from_secs(2));
    assert!(
        before < 2000,
        "restarted mid-stream ({before} of 2000 done)"
    );
    broker_down();
    std::thread::sleep(Duration::from_secs(2));
    broker_up();
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(240)), 0);
    let echoed = read(&out, 2000, Duration::from_secs(60));
    let ids: BTreeSet<String> = echoed.iter().map(|e| attr(e, "echoof").unwrap()).collect();
    assert_eq!(
        ids,
        sent.iter().map(|e| e.id.clone()).collect(),
        "every event processed despite the restart"
    );
}

#[test]
fn an_outage_longer_than_every_timeout_is_ridden_out_and_nothing_is_lost() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("outage-in");
    let out = unique("outage-out");
    create_topic(&input, 2);
    let sent: Vec<_> = (0..2000)
        .map(|i| event(&format!("o-{i}"), "test.ok", Some(&format!("k{}", i % 7))))
        .collect();
    produce_events(&input, &sent);
    // Publishing gives up after 3 s, the consumer's session after 10 s: the outage below is
    // longer than both, and longer than the idle exit.
    let config = scenario.file(
        "plexus.toml",
        &format!(
            "[runtime]\ncache_dir = \"{cache}\"\n[broker]\nkind = \"kafka\"\nkafka.bootstrap_servers = \"{bootstrap}\"\nkafka.group = \"{group}\"\nidle_exit = \"8s\"\n[broker.kafka.properties]\n\"message.timeout.ms\" = \"3000\"\n[plugins.m]\npath = \"{plugin}\"\nconfig = {{ out = \"{out}\", spin = 4000000 }}\n[routes.r]\ntopic = \"{input}\"\nplugin = \"m\"\nconcurrency = 2\n",
            cache = scenario.dir.path().join("cache").display(),
            bootstrap = bootstrap(),
            group = unique("outage"),
            plugin = plugins::MISBEHAVE,
        ),
    );
    let mut plexus = spawn_plexus(&config);
    assert!(
        wait_for_records(&out, 200, Duration::from_secs(60)) >= 200,
        "progress before the outage"
    );
    broker_down();
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(25) {
        assert!(
            plexus.try_wait().unwrap().is_none(),
            "plexus exited during the outage, {:?} in",
            outage.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    broker_up();
    assert!(
        plexus.try_wait().unwrap().is_none(),
        "still running when the broker is back"
    );
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(300)), 0);
    let log = std::fs::read_to_string(config.with_extension("log")).unwrap();
    let echoed = read(&out, 2000, Duration::from_secs(60));
    let ids: BTreeSet<String> = echoed.iter().map(|e| attr(e, "echoof").unwrap()).collect();
    let expected: BTreeSet<String> = sent.iter().map(|e| e.id.clone()).collect();
    let missing: Vec<&String> = expected.difference(&ids).take(10).collect();
    assert!(
        missing.is_empty(),
        "lost across the outage: {missing:?}\n{log}"
    );
    assert!(
        log.contains("publishing failed; trying again")
            || log.contains("the broker does not answer"),
        "the outage was noticed and waited out: {log}"
    );
    println!(
        "{} echoes for {} events across a 25 s outage",
        echoed.len(),
        sent.len()
    );
}
