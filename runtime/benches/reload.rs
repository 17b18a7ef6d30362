//! Hot-reload latency under load: from a new plugin file being renamed into place to the
//! new version serving (through the file watcher), the time `apply` spends preparing the
//! new version (compile, link, instantiate, `init`), and the longest gap between two
//! handled events while swaps happen, beside the longest gap in a stretch of the same
//! length without swaps. The plugin is `stamp` (47 KB), the smallest one that emits.
//!
//! Run with `scripts/bench` (which builds the plugins first).

use plexus::Runtime;
use plexus::broker::{Body, Poll, Source};
use plexus::config::Config;
use plexus::event::Event;
use plexus::{RunOptions, Shutdown};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SWAPS: u32 = 10;

fn plugin_bytes(n: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(plexus_guests::STAMP).expect("built by plexus-guests");
    // A custom section makes each version a new digest with the same behaviour.
    let section = [&[4u8][..], b"vers", &n.to_le_bytes()].concat();
    bytes.push(0);
    bytes.push(section.len() as u8);
    bytes.extend_from_slice(&section);
    bytes
}

fn place(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn event(seq: u64) -> Event {
    let line = format!(
        r#"{{"specversion":"1.0","id":"e-{seq}","source":"/bench","type":"bench","partitionkey":"k{}"}}"#,
        seq % 16
    );
    let mut event = plexus::testing::cloudevents::decode(line.as_bytes()).unwrap();
    event.topic = "in".into();
    event
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("plugin.wasm");
    place(&plugin, &plugin_bytes(0));
    let config_path = dir.path().join("plexus.toml");
    std::fs::write(
        &config_path,
        format!(
            "[runtime]\ncache_dir = \"{}\"\n[plugins.echo]\npath = \"{}\"\nconfig = {{ out = \"echo\" }}\n[routes.echo]\ntopic = \"in\"\nplugin = \"echo\"\nconcurrency = 2\n",
            dir.path().join("cache").display(),
            plugin.display()
        ),
    )
    .unwrap();
    let config = Config::load(&config_path).unwrap();
    let runtime = Runtime::start(config, Shutdown::new()).unwrap();
    let broker = runtime.embedded_broker().expect("embedded broker").clone();
    let open = broker.open_input();
    let mut runtime = runtime;

    // Steady load: 10 events every millisecond.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (broker, stop) = (broker.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..10 {
                    broker.append(event(seq));
                    seq += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    // The observer notes when each echo arrives and which version handled it.
    let arrivals: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let observer = {
        let (mut source, arrivals, stop) =
            (broker.subscribe("echo"), arrivals.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Poll::Records(records)) = source.poll(4096, Duration::from_millis(5)) {
                    let now = Instant::now();
                    let mut seen = arrivals.lock().unwrap();
                    for record in &records {
                        if let Body::Event(e) = &record.body {
                            seen.push((now, e.extension_text("plexushandledby").unwrap()));
                        }
                    }
                    let last = records.last().unwrap();
                    let _ = source.commit(&[(last.partition, last.offset + 1)]);
                }
            }
        })
    };
    // Swaps through `apply` directly, before the run loop takes the runtime: what preparing a
    // version costs.
    let mut prepare = Vec::new();
    for n in 1..=SWAPS {
        place(&plugin, &plugin_bytes(n));
        let config = Config::load(&dir.path().join("plexus.toml")).unwrap();
        let started = Instant::now();
        runtime.apply(config).unwrap();
        prepare.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    // Then the run loop with its file watcher, as `plexus run` has it.
    let options = RunOptions {
        watch: true,
        ..RunOptions::default()
    };
    let stop_run = options.shutdown.clone();
    let run = std::thread::spawn(move || plexus::supervise(runtime, options));
    std::thread::sleep(Duration::from_millis(500));
    let baseline_from = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let baseline_to = Instant::now();

    let mut to_serving = Vec::new();
    let swaps_from = Instant::now();
    for n in 1..=SWAPS {
        let bytes = plugin_bytes(SWAPS + n);
        let version = format!(
            "echo@sha256:{}",
            hex::encode(plexus::testing::sha256(&bytes))
        );
        let placed = Instant::now();
        place(&plugin, &bytes);
        loop {
            let served = arrivals
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(_, v)| *v == version)
                .map(|(t, _)| *t);
            if let Some(at) = served {
                to_serving.push(at.duration_since(placed).as_secs_f64() * 1000.0);
                break;
            }
            assert!(
                placed.elapsed() < Duration::from_secs(10),
                "version {n} never served"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let swaps_to = Instant::now();

    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    observer.join().unwrap();
    drop(open);
    let max_gap = |from: Instant, to: Instant| {
        let seen = arrivals.lock().unwrap();
        let times: Vec<Instant> = seen
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t >= from && *t <= to)
            .collect();
        times
            .windows(2)
            .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1000.0)
            .fold(0.0, f64::max)
    };
    let swap_window_gap = max_gap(swaps_from, swaps_to);
    let baseline_gap = max_gap(baseline_from, baseline_to);
    let handled = arrivals.lock().unwrap().len();
    stop_run.trigger();
    let report = run.join().unwrap().unwrap();
    println!(
        "{SWAPS} swaps through the watcher under a load of 10 events/ms ({handled} events handled, {} swaps in all)",
        report.plugin_swaps
    );
    println!(
        "file in place -> new version serving: median {:.1} ms, max {:.1} ms",
        percentile(&mut to_serving.clone(), 0.5),
        percentile(&mut to_serving, 1.0)
    );
    println!(
        "apply (compile + link + init, off the dispatch path): median {:.1} ms, max {:.1} ms",
        percentile(&mut prepare.clone(), 0.5),
        percentile(&mut prepare, 1.0)
    );
    println!(
        "longest gap between handled events: {swap_window_gap:.1} ms during swaps, {baseline_gap:.1} ms in a stretch without swaps"
    );
}
