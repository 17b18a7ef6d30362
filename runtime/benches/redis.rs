//! Redis Streams → plugin → Redis Streams throughput beside a plain pipe written with the same
//! client, on the same server, in the same run; then the end-to-end latency of Plexus at a
//! fixed moderate rate, on Redis and (when `PLEXUS_KAFKA_BOOTSTRAP` is set) on Kafka:
//!
//! 1. add `PLEXUS_BENCH_EVENTS` (default 200,000) 1 KB CloudEvents (binary mode fields) to
//!    an input stream;
//! 2. the pipe: one connection reading in a consumer group (`XREADGROUP COUNT 512`), each
//!    batch copied to an output stream with pipelined `XADD`s, then acknowledged (`XACK`);
//! 3. Plexus: one route running the `filter` plugin (every event forwarded), two workers;
//! 4. latency: once a warm-up event has come through (groups joined), `PLEXUS_BENCH_RATE`
//!    events per second (default 1,000) for 10 s, each carrying the time it was sent; a
//!    reader of the output notes when each arrives. p50, p99, max.
//!
//! Pipe and Plexus each run twice, in the order pipe, Plexus, Plexus, pipe, and each figure
//! is the mean of two, so the server warming up weighs on both alike. All of it runs on each
//! server `PLEXUS_REDIS_URLS` lists (comma-separated). Run with `scripts/bench-redis`, which
//! starts a Redis server fsyncing every write, one fsyncing every second, and Kafka.

use plexus::Runtime;
use plexus::Shutdown;
use plexus::config::Config;
use redis::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn payload(sent_us: u128) -> Vec<u8> {
    let mut order = serde_json::json!({"order_id": "o-1", "sent_us": sent_us, "note": ""});
    if sent_us == 0 {
        order["warmup"] = true.into();
    }
    let base = serde_json::to_vec(&order).unwrap().len();
    order["note"] = "x".repeat(1024usize.saturating_sub(base)).into();
    serde_json::to_vec(&order).unwrap()
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// `XADD stream * <the fields of event i>`.
fn add_event(pipe: &mut redis::Pipeline, stream: &str, i: usize, payload: &[u8]) {
    pipe.cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("ce_specversion")
        .arg("1.0")
        .arg("ce_id")
        .arg(format!("e-{i}"))
        .arg("ce_source")
        .arg("/bench")
        .arg("ce_type")
        .arg("bench.order.v1")
        .arg("content-type")
        .arg("application/json")
        .arg("key")
        .arg(format!("c-{}", i % 1000))
        .arg("data")
        .arg(payload)
        .ignore();
}

fn produce_input(client: &redis::Client, stream: &str, count: usize) -> f64 {
    let mut con = client.get_connection().unwrap();
    let payload = payload(0);
    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            add_event(&mut pipe, stream, i, &payload);
        }
        pipe.exec(&mut con).unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        _ => &[],
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        other => format!("{other:?}"),
    }
}

/// The plain pipe: read in a group, copy with pipelined XADDs, acknowledge; events/s.
fn pipe(client: &redis::Client, input: &str, output: &str, count: usize) -> f64 {
    let mut con = client.get_connection().unwrap();
    let group = format!("{output}.pipe");
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(input)
        .arg(&group)
        .arg("0")
        .exec(&mut con)
        .unwrap();
    let mut started = None;
    let mut copied = 0;
    while copied < count {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&group)
            .arg("pipe")
            .arg("COUNT")
            .arg(512)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(input)
            .arg(">")
            .query(&mut con)
            .unwrap();
        let Some(stream) = items(&reply).first() else {
            continue;
        };
        started.get_or_insert_with(Instant::now);
        let entries = items(&items(stream)[1]);
        let mut pipe = redis::pipe();
        let mut ids = Vec::with_capacity(entries.len());
        for entry in entries {
            let parts = items(entry);
            ids.push(text(&parts[0]));
            let add = pipe.cmd("XADD").arg(output).arg("*");
            for field in items(&parts[1]) {
                if let Value::BulkString(bytes) = field {
                    add.arg(bytes.as_slice());
                }
            }
            add.ignore();
        }
        pipe.cmd("XACK").arg(input).arg(&group).arg(&ids).ignore();
        pipe.exec(&mut con).unwrap();
        copied += entries.len();
    }
    count as f64 / started.expect("read").elapsed().as_secs_f64()
}

/// A Plexus config: the filter plugin from `input` to `output` on the broker `broker`.
fn plexus_config(dir: &std::path::Path, broker: &str, input: &str, output: &str) -> Config {
    let filter = plexus_guests::FILTER;
    let text = format!(
        "{broker}[admin]\nlisten = \"off\"\nstatus_interval = \"0s\"\n[plugins.filter]\npath = \"{filter}\"\nconfig = {{ out = \"{output}\", prefix = \"bench.\" }}\n\
         [routes.filter]\ntopic = \"{input}\"\nplugin = \"filter\"\nconcurrency = 2\ndead_letter = \"{input}.dlq\"\n"
    );
    let path = dir.join("plexus.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

fn redis_broker(url: &str, group: &str) -> String {
    format!("[broker]\nkind = \"redis\"\n[broker.redis]\nurl = \"{url}\"\ngroup = \"{group}\"\n")
}

/// Plexus with the filter plugin; events/s from its first read to its last emit acknowledged.
fn plexus(url: &str, input: &str, output: &str, count: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let config = plexus_config(dir.path(), &redis_broker(url, output), input, output);
    let runtime = Runtime::start(config, Shutdown::new()).unwrap();
    let mut started = None;
    loop {
        let metrics = runtime.route_metrics("filter").unwrap_or_default();
        if metrics.received > 0 {
            started.get_or_insert_with(Instant::now);
        }
        if metrics.emitted as usize >= count {
            break;
        }
        if started.is_some_and(|s: Instant| s.elapsed() > Duration::from_secs(600)) {
            panic!("plexus stalled at {} of {count} emitted", metrics.emitted);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.expect("read").elapsed();
    runtime.stop();
    count as f64 / elapsed.as_secs_f64()
}

/// p50, p99 and max of `samples` (µs), as text.
fn percentiles(mut samples: Vec<u128>) -> String {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} events)",
        at(0.50) as f64 / 1000.0,
        at(0.99) as f64 / 1000.0,
        samples.last().copied().unwrap_or(0) as f64 / 1000.0,
        samples.len()
    )
}

/// Sends warm-up events (not measured) until `seen` says one came out the other end (the
/// route has joined its group, the reader its own), then `rate` events per second for
/// `seconds` through `send(i, payload)`.
fn paced(rate: u64, seconds: u64, seen: &AtomicBool, mut send: impl FnMut(usize, &[u8])) {
    let warming = Instant::now();
    while !seen.load(Ordering::SeqCst) {
        assert!(
            warming.elapsed() < Duration::from_secs(60),
            "nothing came through"
        );
        send(usize::MAX, &payload(0));
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    for i in 0..(rate * seconds) as usize {
        let due = started + Duration::from_micros(i as u64 * 1_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        send(i, &payload(now_us()));
    }
}

/// The `sent_us` of a payload (0 for a warm-up event).
fn sent_us(data: &[u8]) -> Option<u128> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    value["sent_us"].as_u64().map(u128::from)
}

/// Notes a payload that came through: a warm-up one in `seen`, a measured one in `samples`.
fn arrived(data: &[u8], seen: &AtomicBool, samples: &mut Vec<u128>) {
    match sent_us(data) {
        Some(0) => seen.store(true, Ordering::SeqCst),
        Some(sent) => samples.push(now_us().saturating_sub(sent)),
        None => {}
    }
}

/// Produce-to-output-seen latency of Plexus on Redis at `rate` events/s.
fn redis_latency(url: &str, run: u64, rate: u64) -> String {
    let client = redis::Client::open(url).unwrap();
    let input = format!("bench-lat-in-{run}");
    let output = format!("bench-lat-out-{run}");
    let dir = tempfile::tempdir().unwrap();
    let config = plexus_config(dir.path(), &redis_broker(url, &input), &input, &output);
    let runtime = Runtime::start(config, Shutdown::new()).unwrap();
    let expected = (rate * 10) as usize;
    let seen = Arc::new(AtomicBool::new(false));
    let reader = {
        let client = client.clone();
        let output = output.clone();
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut con = client.get_connection().unwrap();
            let mut from = "0-0".to_owned();
            let mut samples = Vec::with_capacity(expected);
            let deadline = Instant::now() + Duration::from_secs(120);
            while samples.len() < expected && Instant::now() < deadline {
                let reply: Value = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1000)
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&output)
                    .arg(&from)
                    .query(&mut con)
                    .unwrap();
                let Some(stream) = items(&reply).first() else {
                    continue;
                };
                for entry in items(&items(stream)[1]) {
                    let parts = items(entry);
                    from = text(&parts[0]);
                    let fields = items(&parts[1]);
                    for pair in fields.chunks(2) {
                        if text(&pair[0]) == "data"
                            && let Value::BulkString(data) = &pair[1]
                        {
                            arrived(data, &seen, &mut samples);
                        }
                    }
                }
            }
            samples
        })
    };
    let mut con = client.get_connection().unwrap();
    paced(rate, 10, &seen, |i, payload| {
        let mut pipe = redis::pipe();
        add_event(&mut pipe, &input, i, payload);
        pipe.exec(&mut con).unwrap();
    });
    let samples = reader.join().unwrap();
    runtime.stop();
    percentiles(samples)
}

/// Produce-to-output-seen latency of Plexus on Kafka at `rate` events/s.
fn kafka_latency(bootstrap: &str, run: u64, rate: u64) -> String {
    use rdkafka::Message;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let input = format!("bench-lat-in-{run}");
    let output = format!("bench-lat-out-{run}");
    let dir = tempfile::tempdir().unwrap();
    let broker = format!(
        "[broker]\nkind = \"kafka\"\npartitions = 4\n[broker.kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup = \"{input}\"\n"
    );
    let config = plexus_config(dir.path(), &broker, &input, &output);
    let runtime = Runtime::start(config, Shutdown::new()).unwrap();
    let client = |extra: &[(&str, &str)]| {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config
    };
    let consumer: BaseConsumer = client(&[
        ("group.id", &format!("{output}.reader")),
        ("auto.offset.reset", "earliest"),
        ("fetch.wait.max.ms", "5"),
    ])
    .create()
    .unwrap();
    consumer.subscribe(&[&output]).unwrap();
    let expected = (rate * 10) as usize;
    let seen = Arc::new(AtomicBool::new(false));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::with_capacity(expected);
            let deadline = Instant::now() + Duration::from_secs(120);
            while samples.len() < expected && Instant::now() < deadline {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100))
                    && let Some(data) = message.payload()
                {
                    arrived(data, &seen, &mut samples);
                }
            }
            samples
        })
    };
    let producer: ThreadedProducer<DefaultProducerContext> =
        client(&[("linger.ms", "0"), ("acks", "all")])
            .create()
            .unwrap();
    paced(rate, 10, &seen, |i, payload| {
        let id = format!("e-{i}");
        let key = format!("c-{}", i % 1000);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_specversion",
                value: Some("1.0"),
            })
            .insert(Header {
                key: "ce_id",
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: "ce_source",
                value: Some("/bench"),
            })
            .insert(Header {
                key: "ce_type",
                value: Some("bench.order.v1"),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
        let record = BaseRecord::to(&input)
            .key(&key)
            .payload(payload)
            .headers(headers);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    });
    producer.flush(Duration::from_secs(30)).unwrap();
    let samples = reader.join().unwrap();
    runtime.stop();
    percentiles(samples)
}

fn main() {
    if let Ok(filter) = std::env::var("PLEXUS_LOG") {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    }
    let urls = std::env::var("PLEXUS_REDIS_URLS")
        .or_else(|_| std::env::var("PLEXUS_REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:16379/0".into());
    let count: usize = std::env::var("PLEXUS_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let rate: u64 = std::env::var("PLEXUS_BENCH_RATE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for url in urls.split(',') {
        measure(url, count, rate, run);
    }
    println!("latency on Kafka, produce to output seen, {rate} events/s for 10 s:");
    match std::env::var("PLEXUS_KAFKA_BOOTSTRAP") {
        Ok(bootstrap) => println!("  {}", kafka_latency(&bootstrap, run, rate)),
        Err(_) => println!("  skipped (PLEXUS_KAFKA_BOOTSTRAP not set)"),
    }
}

/// Throughput beside the pipe, then latency, on the server at `url`.
fn measure(url: &str, count: usize, rate: u64, run: u64) {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().unwrap();
    let fsync: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query(&mut con)
        .unwrap_or_default();
    let input = format!("bench-in-{run}");
    println!(
        "{count} events of 1 KB, Redis at {url} (appendfsync {})",
        fsync.get(1).map_or("?", String::as_str)
    );
    println!(
        "adding the input: {:.0} events/s",
        produce_input(&client, &input, count)
    );
    let mut outputs = 0;
    let mut output = |side: &str| {
        outputs += 1;
        format!("bench-{side}-out-{run}-{outputs}")
    };
    let pipe_a = pipe(&client, &input, &output("pipe"), count);
    let plexus_a = plexus(url, &input, &output("plexus"), count);
    let plexus_b = plexus(url, &input, &output("plexus"), count);
    let pipe_b = pipe(&client, &input, &output("pipe"), count);
    let (pipe_rate, plexus_rate) = ((pipe_a + pipe_b) / 2.0, (plexus_a + plexus_b) / 2.0);
    println!(
        "plain pipe (XREADGROUP, pipelined XADD, XACK): {pipe_rate:.0} events/s ({pipe_a:.0}, {pipe_b:.0})"
    );
    println!(
        "plexus (filter plugin, 2 workers): {plexus_rate:.0} events/s ({plexus_a:.0}, {plexus_b:.0})"
    );
    println!("plexus / pipe: {:.2}", plexus_rate / pipe_rate);
    println!(
        "latency, produce to output seen, {rate} events/s for 10 s: {}",
        redis_latency(url, run, rate)
    );
    // The streams of this run (gigabytes): deleted so runs do not fill the server's memory.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("bench-*{run}*"))
        .query(&mut con)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query(&mut con);
    }
}
