//! Plexus on Redis Streams, against a real `redis-server`, read back with `redis-cli`: routes
//! fan out, the shop chain runs, poison goes to the dead-letter stream, and nothing is lost
//! when `plexus` is SIGKILLed (alone, or beside a second process that takes over what the
//! dead one held) or when the server itself is killed and started again. (A test binary of
//! its own, so no other test shares the server while it is down; its tests take turns.)

use plexus_tests::kafka::{kill_hard, spawn_plexus, unique, wait_exit};
use plexus_tests::redis::{
    self, Entry, add_events, pipe_commands, wait_for_entries, xrange, xrange_all,
};
use plexus_tests::{KillOnDrop, Scenario, plugins};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// One test at a time: one kills the shared server, others measure timing.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Redis config: `[broker]` with `broker` lines, `[broker.redis]` with `redis` lines,
/// then `tables`.
fn config(scenario: &Scenario, name: &str, broker: &str, redis: &str, tables: &str) -> PathBuf {
    scenario.file(
        name,
        &format!(
            "[runtime]\ncache_dir = \"{}\"\n[broker]\nkind = \"redis\"\n{broker}\n[broker.redis]\nurl = \"{}\"\ngroup = \"{}\"\n{redis}\n{tables}",
            scenario.dir.path().join("cache").display(),
            redis::url(),
            unique("g"),
        ),
    )
}

/// `count` events `PREFIX-N` of `event_type`, keyed over 7 keys.
fn events(prefix: &str, count: usize, event_type: &str) -> Vec<(String, String, Option<String>)> {
    (0..count)
        .map(|i| {
            (
                format!("{prefix}-{i}"),
                event_type.to_owned(),
                Some(format!("k{}", i % 7)),
            )
        })
        .collect()
}

fn ids(events: &[(String, String, Option<String>)]) -> BTreeSet<String> {
    events.iter().map(|(id, _, _)| id.clone()).collect()
}

/// The `ce_echoof` of every entry (the id of the event an echo answers).
fn echoed(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| e.get("ce_echoof").map(str::to_owned))
        .collect()
}

/// A route of the echoing test plugin from `topic` to `out`.
fn echo_route(route: &str, topic: &str, out: &str, spin: u64) -> String {
    format!(
        "[plugins.{route}]\npath = \"{}\"\nconfig = {{ out = \"{out}\", spin = {spin}, tag = \"{route}\" }}\n[routes.{route}]\ntopic = \"{topic}\"\nplugin = \"{route}\"\nconcurrency = 2\n",
        plugins::MISBEHAVE
    )
}

/// The `group = "..."` of a config written by [`config`].
fn group_of(config: &std::path::Path) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text.lines().find(|l| l.starts_with("group = ")).unwrap();
    line.trim_start_matches("group = ")
        .trim_matches('"')
        .to_owned()
}

/// Waits until `log` has a line containing `text`, up to `timeout`.
fn wait_for_log(log: &std::path::Path, text: &str, timeout: Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < timeout {
        if std::fs::read_to_string(log).is_ok_and(|l| l.contains(text)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A reply of `redis-cli --json` that lists maps: each as (name → value), whether it came as
/// an object (RESP3) or a flat list (RESP2).
fn maps(args: &[&str]) -> Vec<BTreeMap<String, serde_json::Value>> {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", redis::url(), "--json"])
        .args(args)
        .output()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    reply
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|item| match item {
            serde_json::Value::Object(object) => object.clone().into_iter().collect(),
            other => other
                .as_array()
                .unwrap()
                .chunks(2)
                .map(|pair| (pair[0].as_str().unwrap().to_owned(), pair[1].clone()))
                .collect(),
        })
        .collect()
}

/// `XINFO CONSUMERS stream group` as (name, pending).
fn consumers(stream: &str, group: &str) -> Vec<(String, i64)> {
    maps(&["XINFO", "CONSUMERS", stream, group])
        .into_iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["pending"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// `XINFO GROUPS stream` as name → (pending, lag).
fn groups(stream: &str) -> BTreeMap<String, (i64, i64)> {
    maps(&["XINFO", "GROUPS", stream])
        .into_iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_owned(),
                (
                    g["pending"].as_i64().unwrap_or(-1),
                    g["lag"].as_i64().unwrap_or(-1),
                ),
            )
        })
        .collect()
}

#[test]
fn three_routes_fan_out_each_reading_every_entry_in_its_own_group() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("fan-in");
    let sent = events("f", 300, "test.ok");
    add_events(&input, &sent);
    let outs: Vec<String> = (1..=3).map(|n| unique(&format!("fan-out{n}"))).collect();
    let tables: String = (1..=3)
        .map(|n| echo_route(&format!("r{n}"), &input, &outs[n - 1], 0))
        .collect();
    let config = config(&scenario, "plexus.toml", "idle_exit = \"3s\"", "", &tables);
    let mut plexus = KillOnDrop(spawn_plexus(&config));
    assert_eq!(wait_exit(&mut plexus.0, Duration::from_secs(120)), 0);
    for out in &outs {
        let entries = xrange(out);
        let seen: BTreeSet<String> = echoed(&entries).into_iter().collect();
        assert_eq!(seen, ids(&sent), "{out} echoes every entry");
        assert_eq!(entries.len(), 300, "{out}: once each in a clean run");
    }
    let groups = groups(&input);
    assert_eq!(groups.len(), 3, "one consumer group per route: {groups:?}");
    for (name, (pending, lag)) in &groups {
        assert_eq!(
            (*pending, *lag),
            (0, 0),
            "{name}: everything read and acknowledged"
        );
    }
}

#[test]
fn the_shop_chain_runs_through_redis_streams() {
    let _serial = serial();
    let scenario = Scenario::new();
    let prefix = unique("shop");
    let text = plexus_tests::private_shop_config("redis.toml", &prefix)
        .replace("redis://127.0.0.1:16379/0", redis::url());
    let config = scenario.file("plexus.toml", &text);
    let mut plexus = KillOnDrop(spawn_plexus(&config));
    assert_eq!(wait_exit(&mut plexus.0, Duration::from_secs(120)), 0);

    let orders: Vec<Entry> =
        xrange_all(&[format!("{prefix}.orders:0"), format!("{prefix}.orders:1")]);
    assert_eq!(
        orders.len(),
        8,
        "the orders file's 8 lines, over the two shards"
    );
    // Each customer's orders are in one shard.
    let mut shard_of: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for shard in 0..2 {
        for entry in xrange(&format!("{prefix}.orders:{shard}")) {
            if let Some(key) = entry.get("key") {
                shard_of.entry(key.to_owned()).or_default().insert(shard);
            }
        }
    }
    assert!(shard_of.values().all(|s| s.len() == 1), "{shard_of:?}");

    let notifications = xrange(&format!("{prefix}.notifications"));
    let mut messages: Vec<String> = notifications
        .iter()
        .map(|n| {
            let data: serde_json::Value = serde_json::from_str(n.get("data").unwrap()).unwrap();
            data["message"].as_str().unwrap().to_owned()
        })
        .collect();
    messages.sort();
    assert_eq!(messages, plexus_tests::SHOP_NOTIFICATIONS);
    let first = notifications
        .iter()
        .find(|n| n.get("ce_correlationid") == Some("checkout-1001"))
        .unwrap();
    assert_eq!(
        first.get("ce_traceparent"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(
        first.get("key"),
        Some("c-ada"),
        "the key travels in the `key` field"
    );
    let dead = xrange(&format!("{prefix}.dead-letters"));
    let kinds: BTreeSet<&str> = dead
        .iter()
        .filter_map(|d| d.get("ce_plexusdlqkind"))
        .collect();
    assert_eq!(kinds, BTreeSet::from(["rejected", "undecodable"]));
    let dead_file =
        std::fs::read_to_string(scenario.dir.path().join("redis-dead-letters.jsonl")).unwrap();
    assert_eq!(
        dead_file.lines().count(),
        2,
        "a file output reads its stream too"
    );
}

#[test]
fn poison_goes_to_the_dead_letter_stream_with_why_and_the_flow_goes_on() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("poison-in");
    let out = unique("poison-out");
    let dlq = unique("poison-dlq");
    let mut sent = events("ok", 50, "test.ok");
    sent.extend(events("bad", 5, "test.reject"));
    sent.extend(events("trap", 3, "test.trap"));
    add_events(&input, &sent);
    // Entries that are not CloudEvents: plain fields, and a structured entry that is not one.
    pipe_commands(&format!(
        "XADD {input} * name ada amount 12\nXADD {input} * data \"{{\\\"broken\\\": \"\nXADD {input} * ce_specversion 0.3 ce_id old ce_type t ce_source /s\n"
    ));
    let tables = echo_route("r", &input, &out, 0) + &format!("dead_letter = \"{dlq}\"\n");
    let config = config(&scenario, "plexus.toml", "idle_exit = \"3s\"", "", &tables);
    let mut plexus = KillOnDrop(spawn_plexus(&config));
    assert_eq!(wait_exit(&mut plexus.0, Duration::from_secs(120)), 0);
    assert_eq!(echoed(&xrange(&out)).len(), 50, "every good event handled");
    let dead = xrange(&dlq);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for letter in &dead {
        *kinds
            .entry(letter.get("ce_plexusdlqkind").unwrap().to_owned())
            .or_default() += 1;
        assert!(
            letter
                .get("ce_plexusdlqreason")
                .is_some_and(|r| !r.is_empty()),
            "{letter:?}"
        );
        assert_eq!(letter.get("ce_plexusdlqtopic"), Some(input.as_str()));
    }
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("rejected".to_owned(), 5),
            ("trap".to_owned(), 3),
            ("undecodable".to_owned(), 3),
        ])
    );
    let plain = dead
        .iter()
        .find(|d| d.get("data").is_some_and(|data| data.contains("ada")))
        .expect("the plain entry's fields are kept in its dead letter");
    assert_eq!(plain.get("data"), Some(r#"{"amount":"12","name":"ada"}"#));
    assert!(
        plain
            .get("ce_plexusdlqreason")
            .unwrap()
            .contains("ce_specversion")
    );
}

#[test]
fn entries_delivered_too_often_are_dead_lettered_instead_of_handled_again() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("redeliver-in");
    let out = unique("redeliver-out");
    let dlq = unique("redeliver-dlq");
    let group_prefix = unique("g");
    let group = format!("{group_prefix}.r");
    add_events(&input, &events("d", 3, "test.ok"));
    // A consumer that died on the first entry three times (read, then claimed twice).
    let first = xrange(&input)[0].id.clone();
    pipe_commands(&format!(
        "XGROUP CREATE {input} {group} 0\nXREADGROUP GROUP {group} ghost COUNT 1 STREAMS {input} >\nXCLAIM {input} {group} ghost 0 {first}\nXCLAIM {input} {group} ghost 0 {first}\n"
    ));
    let tables = echo_route("r", &input, &out, 0) + &format!("dead_letter = \"{dlq}\"\n");
    let config = scenario.file(
        "plexus.toml",
        &format!(
            "[runtime]\ncache_dir = \"{}\"\n[broker]\nkind = \"redis\"\nidle_exit = \"4s\"\n[broker.redis]\nurl = \"{}\"\ngroup = \"{group_prefix}\"\nclaim_idle = \"200ms\"\nmax_deliveries = 3\n{tables}",
            scenario.dir.path().join("cache").display(),
            redis::url(),
        ),
    );
    let mut plexus = KillOnDrop(spawn_plexus(&config));
    assert_eq!(wait_exit(&mut plexus.0, Duration::from_secs(120)), 0);
    let dead = xrange(&dlq);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].get("ce_id"), Some("d-0"));
    assert_eq!(
        dead[0].get("ce_plexusdlqkind"),
        Some("deliveries-exhausted")
    );
    assert_eq!(dead[0].get("ce_plexusdlqattempts"), Some("4"));
    let handled: BTreeSet<String> = echoed(&xrange(&out)).into_iter().collect();
    assert_eq!(
        handled,
        BTreeSet::from(["d-1".to_owned(), "d-2".to_owned()])
    );
    assert_eq!(groups(&input)[&group], (0, 0));
}

/// The echoes of `sent` in `out`: every id there (nothing lost), and how many echoes in all.
fn check_all_echoed(out: &str, sent: &[(String, String, Option<String>)], log: &PathBuf) -> usize {
    let entries = xrange(out);
    let seen: BTreeSet<String> = echoed(&entries).into_iter().collect();
    let expected = ids(sent);
    let missing: Vec<&String> = expected.difference(&seen).take(10).collect();
    assert!(
        missing.is_empty(),
        "lost: {missing:?}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    // A duplicate is identifiable: the same emitted id, for the same source event.
    let mut by_id: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for entry in &entries {
        by_id
            .entry(entry.get("ce_id").unwrap())
            .or_default()
            .insert(entry.get("ce_echoof").unwrap());
    }
    assert!(by_id.values().all(|sources| sources.len() == 1));
    assert_eq!(by_id.len(), sent.len(), "one emitted id per source event");
    entries.len()
}

#[test]
fn plexus_sigkilled_mid_stream_and_restarted_loses_nothing() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("kill-in");
    let out = unique("kill-out");
    let sent = events("k", 2000, "test.ok");
    add_events(&input, &sent);
    let tables = echo_route("r", &input, &out, 4_000_000);
    let config = config(
        &scenario,
        "plexus.toml",
        "idle_exit = \"5s\"",
        "claim_idle = \"2s\"",
        &tables,
    );
    let mut first = KillOnDrop(spawn_plexus(&config));
    let before = wait_for_entries(&out, 300, Duration::from_secs(60));
    assert!(before >= 300, "progress before the kill");
    kill_hard(&mut first.0);
    let at_kill = redis::xlen(&out);
    assert!(at_kill < 2000, "killed mid-stream ({at_kill} of 2000 done)");
    let log = config.with_extension("log");
    let mut second = KillOnDrop(spawn_plexus(&config));
    assert_eq!(wait_exit(&mut second.0, Duration::from_secs(240)), 0);
    let echoes = check_all_echoed(&out, &sent, &log);
    let restarted = std::fs::read_to_string(&log).unwrap();
    assert!(
        restarted.contains("took over entries a stopped consumer held"),
        "the restarted process took over what the killed one held: {restarted}"
    );
    println!("{echoes} echoes for 2000 events, killed at {at_kill}");
}

#[test]
fn the_survivor_of_two_processes_takes_over_what_the_killed_one_held() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("pair-in");
    let out = unique("pair-out");
    let sent = events("p", 2000, "test.ok");
    let tables = echo_route("r", &input, &out, 4_000_000);
    let config = config(
        &scenario,
        "a.toml",
        "idle_exit = \"10s\"",
        "claim_idle = \"2s\"",
        &tables,
    );
    // The same config, so both read in the same groups.
    let twin = scenario.file("b.toml", &std::fs::read_to_string(&config).unwrap());
    let mut survivor = KillOnDrop(spawn_plexus(&config));
    let mut victim = KillOnDrop(spawn_plexus(&twin));
    // Entries arrive while both read, so Redis hands them to both.
    for (log, name) in [(&config, "first"), (&twin, "second")] {
        assert!(
            wait_for_log(
                &log.with_extension("log"),
                "reading",
                Duration::from_secs(60)
            ),
            "the {name} process reads"
        );
    }
    for batch in sent.chunks(100) {
        add_events(&input, batch);
        std::thread::sleep(Duration::from_millis(100));
    }
    let group = format!("{}.r", group_of(&config));
    let victim_pid = format!("-{}-", victim.0.id());
    let holds = || {
        consumers(&input, &group)
            .iter()
            .any(|(name, pending)| name.contains(&victim_pid) && *pending > 0)
    };
    let started = std::time::Instant::now();
    while !holds() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second process holds entries: {:?}",
            consumers(&input, &group)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_hard(&mut victim.0);
    assert_eq!(wait_exit(&mut survivor.0, Duration::from_secs(240)), 0);
    let log = config.with_extension("log");
    let echoes = check_all_echoed(&out, &sent, &log);
    let survivor_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        survivor_log.contains("took over entries a stopped consumer held"),
        "the survivor reclaimed the dead one's entries: {survivor_log}"
    );
    println!("{echoes} echoes for 2000 events across two processes, one killed");
}

#[test]
fn a_redis_server_down_longer_than_every_timeout_mid_stream_loses_nothing() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("server-in");
    let out = unique("server-out");
    let sent = events("s", 2000, "test.ok");
    add_events(&input, &sent);
    let tables = echo_route("r", &input, &out, 4_000_000);
    let config = config(
        &scenario,
        "plexus.toml",
        "idle_exit = \"8s\"",
        "claim_idle = \"2s\"",
        &tables,
    );
    let mut plexus = KillOnDrop(spawn_plexus(&config));
    assert!(wait_for_entries(&out, 300, Duration::from_secs(60)) >= 300);
    redis::kill();
    // Longer than every timeout: a command's (5 s), claim_idle (2 s) and the idle exit (8 s).
    std::thread::sleep(Duration::from_secs(12));
    assert!(
        plexus.0.try_wait().unwrap().is_none(),
        "plexus rides the outage out"
    );
    redis::up();
    assert_eq!(wait_exit(&mut plexus.0, Duration::from_secs(240)), 0);
    let log = config.with_extension("log");
    let echoes = check_all_echoed(&out, &sent, &log);
    println!("{echoes} echoes for 2000 events across a server restart");
}

/// The shard of `key` among `shards`: FNV-1a, as Plexus places events (written out here, so
/// the test does not take Plexus's word for it).
fn shard_of(key: &str, shards: u64) -> u64 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % shards
}

#[test]
fn a_sharded_topic_keeps_each_keys_order_across_two_processes_and_a_kill() {
    let _serial = serial();
    let scenario = Scenario::new();
    let input = unique("sharded-in");
    let out = unique("sharded-out");
    let dlq = unique("sharded-dlq");
    // 2000 events over 20 keys, each key's `seq` rising; every event in its key's shard.
    let sent: Vec<(String, String)> = (0..2000)
        .map(|i| (format!("s-{i}"), format!("k{}", i % 20)))
        .collect();
    let mut script = String::new();
    for (i, (id, key)) in sent.iter().enumerate() {
        script += &format!(
            "XADD {input}:{} * ce_specversion 1.0 ce_id {id} ce_type test.ok ce_source /test content-type application/json key {key} data \"{{\\\"seq\\\":{i}}}\"\n",
            shard_of(key, 4)
        );
    }
    pipe_commands(&script);
    // The plugin rejects an event whose seq is not above the last one its key saw (kept in
    // the shared state store): one key's events out of order would be dead-lettered.
    let tables = format!(
        "[broker.redis.topics.\"{input}\"]\nshards = 4\n[state]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{}\"\n{}dead_letter = \"{dlq}\"\n",
        redis::url(),
        unique("state"),
        echo_route("r", &input, &out, 4_000_000)
    );
    let config = config(
        &scenario,
        "a.toml",
        "idle_exit = \"10s\"",
        // Leases last claim_idle: 4 s leaves a busy machine room to renew them in time.
        "claim_idle = \"4s\"",
        &tables,
    );
    let twin = scenario.file("b.toml", &std::fs::read_to_string(&config).unwrap());
    // Started together, the two share the shards from the start.
    let mut survivor = KillOnDrop(spawn_plexus(&config));
    let mut victim = KillOnDrop(spawn_plexus(&twin));
    assert!(wait_for_entries(&out, 600, Duration::from_secs(90)) >= 600);
    let victim_log = std::fs::read_to_string(twin.with_extension("log")).unwrap();
    assert!(
        victim_log.contains("shards changed hands"),
        "the second process was given shards: {victim_log}"
    );
    kill_hard(&mut victim.0);
    assert_eq!(wait_exit(&mut survivor.0, Duration::from_secs(240)), 0);
    let log = config.with_extension("log");
    let entries = xrange(&out);
    let seen: BTreeSet<String> = echoed(&entries).into_iter().collect();
    let expected: BTreeSet<String> = sent.iter().map(|(id, _)| id.clone()).collect();
    let missing: Vec<&String> = expected.difference(&seen).take(10).collect();
    assert!(
        missing.is_empty(),
        "lost: {missing:?}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let dead = xrange(&dlq);
    assert!(
        dead.is_empty(),
        "no key went backwards: {:?}",
        dead.iter()
            .map(|d| d.get("ce_plexusdlqreason"))
            .collect::<Vec<_>>()
    );
    let survivor_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        survivor_log.matches("shards changed hands").count() >= 2,
        "the survivor took shards at the start, and the dead one's later: {survivor_log}"
    );
    println!(
        "{} echoes for 2000 events on 4 shards, two processes, one killed",
        entries.len()
    );
}

#[test]
fn check_connect_reaches_the_server_or_names_the_address_and_the_cause() {
    let scenario = Scenario::new();
    let tables = echo_route("r", "in", "out", 0);
    let reachable = config(&scenario, "up.toml", "", "", &tables);
    let out = plexus_tests::plexus_command()
        .args(["check", "--connect", "--config"])
        .arg(&reachable)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("broker: Redis at redis://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("connect: Redis 7."), "{stdout}");

    let nothing = scenario.file(
        "down.toml",
        &format!(
            "[broker]\nkind = \"redis\"\n[broker.redis]\nurl = \"redis://:hunter2@127.0.0.1:9/0\"\nconnect_timeout = \"1s\"\n{tables}"
        ),
    );
    let started = std::time::Instant::now();
    let out = plexus_tests::plexus_command()
        .args(["run", "--config"])
        .arg(&nothing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: cannot connect to Redis at redis://:***@127.0.0.1:9/0"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password is never shown: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up within connect_timeout"
    );
}
