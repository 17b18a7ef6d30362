//! The broker restarted mid-stream: Plexus reconnects and finishes without loss. (A test
//! binary of its own, so no other test shares the broker while it is down.)

use plexus_tests::kafka::{
    bootstrap, create_topic, event, produce_events, read, spawn_plexus, unique, wait_exit,
    wait_for_records,
};
use plexus_tests::{Scenario, plugin, repo};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
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
            "[runtime]\ncache_dir = \"{cache}\"\n[broker]\nkind = \"kafka\"\nbootstrap_servers = \"{bootstrap}\"\ngroup = \"{group}\"\nidle_exit = \"30s\"\n[plugins.m]\npath = \"{plugin}\"\nconfig = {{ out = \"{out}\", spin = 4000000 }}\n[routes.r]\ntopic = \"{input}\"\nplugin = \"m\"\nconcurrency = 2\n",
            cache = scenario.dir.path().join("cache").display(),
            bootstrap = bootstrap(),
            group = unique("restart"),
            plugin = plugin("misbehave"),
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
    let down = Command::new(repo("scripts/kafka-down")).status().unwrap();
    assert!(down.success());
    std::thread::sleep(Duration::from_secs(2));
    let up = Command::new(repo("scripts/kafka-up")).output().unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(240)), 0);
    let echoed = read(&out, 2000, Duration::from_secs(60));
    let ids: BTreeSet<String> = echoed
        .iter()
        .map(|e| String::from_utf8_lossy(e.header("echo-of").unwrap()).into_owned())
        .collect();
    assert_eq!(
        ids,
        sent.iter().map(|e| e.id.clone()).collect(),
        "every event processed despite the restart"
    );
}
