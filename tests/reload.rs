//! Hot reload: plugins replaced and routes changed while events flow, with nothing lost,
//! nothing handled by two versions, per-key order kept, and broken versions never serving.

use plexus::Runtime;
use plexus::{RunOptions, Shutdown};
use plexus_tests::live::{
    ECHO_ROUTE, Live, assert_exactly_once_in_order, event, events_of, finish, handled_by, produce,
    start, version_of, wait_for_count, wait_for_version,
};
use plexus_tests::{attr, plugin_version_bytes, plugins, replace_file};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn twenty_replacements_under_load_lose_nothing_and_never_handle_twice() {
    let live = Live::new(ECHO_ROUTE);
    let (runtime, guard) = start(&live);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(&runtime, stop.clone());
    let mut versions = vec![runtime.lock().unwrap().plugin_version("misbehave").unwrap()];
    wait_for_version(&runtime, &versions[0]);
    for n in 1..=20 {
        replace_file(
            &live.plugin_file,
            &plugin_version_bytes(plugins::MISBEHAVE, n),
        );
        let changes = runtime
            .lock()
            .unwrap()
            .apply(live.config())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(changes.swapped.len(), 1, "{changes:?}");
        assert!(
            changes.restarted.is_empty(),
            "a plugin swap never restarts the route"
        );
        let version = changes.swapped[0].2.clone();
        wait_for_version(&runtime, &version);
        versions.push(version);
    }
    let (produced, echo, dlq, report) = finish(runtime, stop, producer, guard);
    assert_exactly_once_in_order(produced, &echo, &dlq);
    assert_eq!(report.plugin_swaps, 20);
    let mut share: BTreeMap<String, u64> = BTreeMap::new();
    for e in &echo {
        *share.entry(handled_by(e)).or_default() += 1;
    }
    assert_eq!(
        share.keys().cloned().collect::<BTreeSet<_>>(),
        versions.iter().cloned().collect(),
        "every version served"
    );
    println!(
        "{produced} events; share per version: {:?}",
        share.values().collect::<Vec<_>>()
    );
}

/// A way to break the deployed plugin.
type BreakIt = Box<dyn Fn(&Live)>;

#[test]
fn a_broken_new_version_never_takes_over() {
    let live = Live::new(ECHO_ROUTE);
    let (runtime, guard) = start(&live);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(&runtime, stop.clone());
    let serving = runtime.lock().unwrap().plugin_version("misbehave").unwrap();
    let good = std::fs::read(&live.plugin_file).unwrap();
    let attempts: Vec<(&str, BreakIt)> = vec![
        (
            "garbage bytes",
            Box::new(|l: &Live| {
                replace_file(
                    &l.plugin_file,
                    b"\0asm\x0d\0\x01\0garbage that is no component",
                )
            }),
        ),
        (
            "the wrong world",
            Box::new(|l: &Live| {
                replace_file(
                    &l.plugin_file,
                    &std::fs::read(plugins::WRONG_WORLD).unwrap(),
                )
            }),
        ),
        (
            "a trap in init",
            Box::new(|l: &Live| {
                l.write_config_with(
                    r#"config = { out = "echo", trap_in_init = "yes" }"#,
                    ECHO_ROUTE,
                )
            }),
        ),
        (
            "a sha256 pin that does not match",
            Box::new(|l: &Live| {
                l.write_config_with(
                    &format!(
                        "config = {{ out = \"echo\" }}\nsha256 = \"{}\"",
                        "00".repeat(32)
                    ),
                    ECHO_ROUTE,
                )
            }),
        ),
    ];
    for (what, break_it) in attempts {
        break_it(&live);
        let refused = runtime.lock().unwrap().apply(live.config());
        let errors = refused.expect_err(what).to_string();
        println!("{what}: {errors}");
        assert!(errors.contains("plugin `misbehave`"), "{what}: {errors}");
        assert_eq!(
            runtime.lock().unwrap().plugin_version("misbehave").unwrap(),
            serving,
            "{what}"
        );
        // Restore, and check the old version still serves.
        replace_file(&live.plugin_file, &good);
        live.write_config(ECHO_ROUTE);
        let before = events_of(&runtime, "echo").len();
        let started = Instant::now();
        while events_of(&runtime, "echo").len() <= before + 50 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{what}: events stopped flowing"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let (produced, echo, dlq, report) = finish(runtime, stop, producer, guard);
    assert_exactly_once_in_order(produced, &echo, &dlq);
    assert!(
        echo.iter().all(|e| handled_by(e) == serving),
        "only the old version served"
    );
    assert_eq!((report.reloads_refused, report.plugin_swaps), (4, 0));
}

#[test]
fn the_watcher_applies_a_copy_only_when_complete_and_never_a_truncated_file() {
    let live = Live::new(ECHO_ROUTE);
    let (runtime, guard) = Runtime::start_held(live.config(), Shutdown::new()).unwrap();
    let broker = runtime.embedded_broker().expect("embedded broker").clone();
    let v0 = runtime.plugin_version("misbehave").unwrap();
    // The run loop owns the runtime, as in `plexus run`; the watcher only asks it to reload.
    let options = RunOptions {
        watch: true,
        ..RunOptions::default()
    };
    let run = std::thread::spawn(move || plexus::supervise(runtime, options));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(&broker, stop.clone());

    // A copy in progress: written in place, in chunks, well within the settle time (300ms).
    let v1 = plugin_version_bytes(plugins::MISBEHAVE, 1);
    let mut file = std::fs::File::create(&live.plugin_file).unwrap();
    for chunk in v1.chunks(v1.len() / 8 + 1) {
        std::io::Write::write_all(&mut file, chunk).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(file);
    let v1_version = version_of(&v1);
    wait_for_version(&broker, &v1_version);

    // A truncated file that stays truncated: refused, v1 keeps serving.
    let v2 = plugin_version_bytes(plugins::MISBEHAVE, 2);
    std::fs::write(&live.plugin_file, &v2[..v2.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let echoed = events_of(&broker, "echo").len();
    wait_for_count(&broker, echoed + 100);
    let latest = events_of(&broker, "echo");
    assert!(
        latest[echoed..].iter().all(|e| handled_by(e) == v1_version),
        "only v1 serves while the file is truncated"
    );
    // Completed: now it loads.
    std::fs::write(&live.plugin_file, &v2).unwrap();
    wait_for_version(&broker, &version_of(&v2));

    stop.store(true, Ordering::Relaxed);
    let produced = producer.join().unwrap();
    drop(guard);
    let report = run.join().unwrap().expect("the run ends once drained");
    let (echo, dlq) = (events_of(&broker, "echo"), events_of(&broker, "dlq"));
    assert_exactly_once_in_order(produced, &echo, &dlq);
    let served: BTreeSet<String> = echo.iter().map(handled_by).collect();
    assert_eq!(served.len(), 3, "v0, v1 and v2 only: {served:?}");
    assert!(served.contains(&v0));
    assert_eq!(
        report.plugin_swaps, 2,
        "the copy in progress was applied once, when complete"
    );
    assert_eq!(report.reloads_refused, 1, "the truncated file was refused");
}

#[test]
fn routes_are_added_changed_and_removed_live() {
    let live = Live::new(ECHO_ROUTE);
    let (runtime, guard) = start(&live);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(&runtime, stop.clone());
    let wait_for = |topic: &str, count: usize| {
        let started = Instant::now();
        while events_of(&runtime, topic).len() < count {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{topic} stalled"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for("echo", 200);

    // Change the route (concurrency): it drains, commits and resumes where it stopped.
    let echo_route = ECHO_ROUTE.replace("concurrency = 4", "concurrency = 2");
    live.write_config(&echo_route);
    let changes = runtime.lock().unwrap().apply(live.config()).unwrap();
    assert_eq!(changes.restarted, ["echo"]);
    let after_change = events_of(&runtime, "echo").len();
    wait_for("echo", after_change + 200);

    // Add a second route on the same topic, with its own output topic.
    let audit = r#"
[plugins.auditor]
path = "AUDITOR"
config = { out = "audit" }
[routes.audit]
topic = "in"
plugin = "auditor"
dead_letter = "audit-dlq"
"#
    .replace("AUDITOR", plugins::MISBEHAVE);
    live.write_config(&format!("{echo_route}{audit}"));
    let changes = runtime.lock().unwrap().apply(live.config()).unwrap();
    assert_eq!(changes.added, ["audit"]);
    wait_for("audit", 100);

    // Nothing was lost through the restart: once the producer stops, every event is echoed
    // (a restart may deliver again what was in flight: at-least-once).
    stop.store(true, Ordering::Relaxed);
    let produced = producer.join().unwrap();
    let echoed_ids = |runtime: &Arc<Mutex<Runtime>>| -> BTreeSet<String> {
        events_of(runtime, "echo")
            .iter()
            .map(|e| attr(e, "echoof").unwrap())
            .collect()
    };
    let started = Instant::now();
    while echoed_ids(&runtime).len() < produced as usize {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "events were lost through the restart"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Remove the first route; the second keeps going and the first handles nothing more.
    live.write_config(&audit);
    let changes = runtime.lock().unwrap().apply(live.config()).unwrap();
    assert_eq!(changes.removed, ["echo"]);
    let echoed_at_removal = events_of(&runtime, "echo").len();
    let broker = runtime
        .lock()
        .unwrap()
        .embedded_broker()
        .expect("embedded broker")
        .clone();
    for seq in produced..produced + 100 {
        broker.append(event(seq));
    }
    let stop = Arc::new(AtomicBool::new(true));
    let producer = std::thread::spawn(move || produced + 100);
    let (produced, echo, dlq, report) = finish(runtime, stop, producer, guard);
    assert_eq!(
        echo.len(),
        echoed_at_removal,
        "a removed route handles nothing more"
    );
    assert_eq!(
        report.routes["audit"].succeeded, produced,
        "the added route handled every event, from the topic's start"
    );
    // The restart may deliver again what was in flight. An event whose state was committed
    // is not handled again: what it echoed is published again, with the same id (counted as
    // already applied); one whose state was not committed is handled as if for the first
    // time, so the plugin's per-key order check never refuses a redelivery.
    let echo_counts = &report.routes["echo"];
    let mut ids_by_source: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &echo {
        ids_by_source
            .entry(attr(e, "echoof").unwrap())
            .or_default()
            .insert(e.id.clone());
    }
    assert!(
        ids_by_source.values().all(|ids| ids.len() == 1),
        "every echo of one event has the same id"
    );
    assert_eq!(
        echo.len() - ids_by_source.len(),
        echo_counts.already_applied as usize,
        "each duplicate is a redelivery of an event already applied"
    );
    assert_eq!(echo_counts.succeeded as usize, echo.len());
    assert!(dlq.is_empty(), "nothing dead-lettered: {dlq:?}");
    assert_eq!(echo_counts.dead_lettered_total(), 0);
}
