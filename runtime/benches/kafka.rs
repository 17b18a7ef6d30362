//! Kafka → plugin → Kafka throughput beside a plain librdkafka consume-and-produce pipe,
//! measured in the same run on the same broker and the same input topic:
//!
//! 1. produce `PLEXUS_BENCH_EVENTS` (default one million) 1 KB CloudEvents (binary mode);
//! 2. the pipe: one consumer, one idempotent producer, each record copied to an output topic;
//! 3. Plexus: one route running the `filter` plugin (every event forwarded, payload, key
//!    and headers unchanged), two workers.
//!
//! Each side runs from its consumer group's first poll until its last output is
//! acknowledged. Run with `scripts/bench-kafka`, which starts the broker.

use plexus::Shutdown;
use plexus::broker::kafka::binding;
use plexus::config::Config;
use plexus::runtime::Runtime;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn client(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    client(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: Option<&[u8]>,
    headers: OwnedHeaders,
    value: &[u8],
) {
    let mut record = BaseRecord::to(topic).payload(value).headers(headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

fn payload() -> Vec<u8> {
    let mut order = serde_json::json!({"order_id": "o-1", "customer": "c-1", "note": ""});
    let base = serde_json::to_vec(&order).unwrap().len();
    order["note"] = "x".repeat(1024 - base).into();
    serde_json::to_vec(&order).unwrap()
}

fn produce_input(bootstrap: &str, topic: &str, count: usize) -> f64 {
    let producer = producer(bootstrap);
    let template = plexus::cloudevents::decode(br#"{"specversion":"1.0","id":"x","source":"/bench","type":"bench.order.v1","datacontenttype":"application/json"}"#).unwrap();
    let payload = payload();
    let started = Instant::now();
    for i in 0..count {
        let mut event = template.clone();
        event.id = format!("e-{i}");
        event.key = Some(format!("c-{}", i % 1000).into_bytes());
        event.payload = Some(payload.clone());
        let record = binding::encode(&event);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        send(
            &producer,
            topic,
            record.key.as_deref(),
            headers,
            record.value.as_deref().unwrap_or_default(),
        );
    }
    producer.flush(Duration::from_secs(300)).unwrap();
    count as f64 / started.elapsed().as_secs_f64()
}

/// The plain pipe: consume, copy, produce; events per second.
fn pipe(bootstrap: &str, input: &str, output: &str, count: usize) -> f64 {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", format!("{input}.pipe"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[input]).unwrap();
    let producer = producer(bootstrap);
    let mut started = None;
    let mut copied = 0;
    while copied < count {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        started.get_or_insert_with(Instant::now);
        let mut headers = OwnedHeaders::new_with_capacity(8);
        if let Some(h) = message.headers() {
            for header in h.iter() {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        send(
            &producer,
            output,
            message.key(),
            headers,
            message.payload().unwrap_or_default(),
        );
        copied += 1;
        if copied % 10_000 == 0 {
            let _ = consumer.commit_message(&message, CommitMode::Async);
        }
    }
    producer.flush(Duration::from_secs(300)).unwrap();
    count as f64 / started.expect("consumed").elapsed().as_secs_f64()
}

/// Plexus with the filter plugin and `workers` workers; events per second.
fn plexus(bootstrap: &str, input: &str, output: &str, count: usize, workers: u32) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let plugins = std::env::var("PLEXUS_TEST_PLUGINS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/plugins").into());
    let text = format!(
        "[broker]\nkind = \"kafka\"\nbootstrap_servers = \"{bootstrap}\"\ngroup = \"{input}.plexus\"\ncreate_topics = false\n\
         [plugins.filter]\npath = \"{plugins}/filter.wasm\"\nconfig = {{ out = \"{output}\", prefix = \"bench.\" }}\n\
         [routes.filter]\ntopic = \"{input}\"\nplugin = \"filter\"\nconcurrency = {workers}\ndead_letter = \"{input}.dlq\"\n"
    );
    let path = dir.path().join("plexus.toml");
    std::fs::write(&path, text).unwrap();
    let runtime = Runtime::start(Config::load(&path).unwrap(), Shutdown::new()).unwrap();
    let mut started = None;
    loop {
        let report_emitted = runtime.route_metrics("filter").map_or(0, |m| m.emitted);
        let received = runtime.route_metrics("filter").map_or(0, |m| m.received);
        if received > 0 {
            started.get_or_insert_with(Instant::now);
        }
        if report_emitted as usize >= count {
            break;
        }
        if started.is_some_and(|s: Instant| s.elapsed() > Duration::from_secs(600)) {
            panic!("plexus stalled at {report_emitted} of {count} emitted");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.expect("consumed").elapsed();
    runtime.stop();
    count as f64 / elapsed.as_secs_f64()
}

fn main() {
    if let Ok(filter) = std::env::var("PLEXUS_LOG") {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    }
    let bootstrap =
        std::env::var("PLEXUS_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let count: usize = std::env::var("PLEXUS_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (input, pipe_out, plexus_out) = (
        format!("bench-in-{run}"),
        format!("bench-pipe-out-{run}"),
        format!("bench-plexus-out-{run}"),
    );
    let admin: AdminClient<DefaultClientContext> = client(&bootstrap).create().unwrap();
    let topics: Vec<NewTopic<'_>> = [&input, &pipe_out, &plexus_out]
        .iter()
        .map(|t| NewTopic::new(t, 4, TopicReplication::Fixed(1)))
        .collect();
    futures::executor::block_on(admin.create_topics(&topics, &AdminOptions::new())).unwrap();

    println!("{count} events of 1 KB, 4 partitions, broker at {bootstrap}");
    println!(
        "producing the input: {:.0} events/s",
        produce_input(&bootstrap, &input, count)
    );
    let pipe_rate = pipe(&bootstrap, &input, &pipe_out, count);
    println!("plain rdkafka pipe (consume, copy, produce): {pipe_rate:.0} events/s");
    let workers: u32 = std::env::var("PLEXUS_BENCH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let plexus_rate = plexus(&bootstrap, &input, &plexus_out, count, workers);
    println!("plexus (filter plugin, {workers} workers):          {plexus_rate:.0} events/s");
    println!("plexus / pipe: {:.2}", plexus_rate / pipe_rate);
}
