//! Kafka → plugin → Kafka throughput beside a plain librdkafka consume-and-produce pipe,
//! measured in the same run on the same broker and the same input topic:
//!
//! 1. produce `PLEXUS_BENCH_EVENTS` (default one million) 1 KB CloudEvents (binary mode);
//! 2. the pipe: one consumer, one idempotent producer, each record copied to an output topic;
//! 3. Plexus: one route running the `filter` plugin (every event forwarded, payload, key
//!    and headers unchanged), two workers.
//!
//! Each side runs from its consumer group's first poll until its last output is
//! acknowledged. Each runs over plaintext and over the broker's SASL_SSL listener (TLS with
//! the test CA, SCRAM-SHA-512), twice, in the order plaintext, SASL_SSL, SASL_SSL, plaintext,
//! reading the same input, so the cost of a secured connection shows as a ratio measured in
//! the same run. Run with `scripts/bench-kafka`, which starts the broker
//! and says where its SASL_SSL listener and CA are (`PLEXUS_KAFKA_SASL_SSL`,
//! `PLEXUS_KAFKA_CA`).
//!
//! With `PLEXUS_BENCH_EXACTLY_ONCE` set (`scripts/bench-kafka --exactly-once`), it measures
//! instead Plexus at-least-once beside Plexus exactly-once (Kafka transactions), plaintext,
//! in the order A B B A, each timed until its last commit.

use plexus::Runtime;
use plexus::Shutdown;
use plexus::config::Config;
use plexus::testing::kafka_binding as binding;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How to reach the broker: plaintext, or SASL_SSL with the test CA and SCRAM user.
struct Cluster {
    bootstrap: String,
    /// `(ca_file, password)` for SASL_SSL.
    secured: Option<(String, String)>,
}

/// The SCRAM password scripts/kafka-up gives the test user `plexus`.
const TEST_SCRAM_PASSWORD: &str = "plexus-scram-secret";

impl Cluster {
    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        if let Some((ca, password)) = &self.secured {
            config
                .set("security.protocol", "sasl_ssl")
                .set("ssl.ca.location", ca)
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", "plexus")
                .set("sasl.password", password);
        }
        config
    }

    /// The `[broker]` tables of a Plexus config for this cluster, `keys` in `[broker]`; the
    /// password goes in a file in `dir`.
    fn plexus_broker(&self, keys: &str, dir: &std::path::Path) -> String {
        let mut text = format!(
            "[broker]\nkind = \"kafka\"\nkafka.bootstrap_servers = \"{}\"\n{keys}",
            self.bootstrap
        );
        if let Some((ca, password)) = &self.secured {
            let file = dir.join("password");
            std::fs::write(&file, password).unwrap();
            text += &format!(
                "[broker.kafka.tls]\nca_file = \"{ca}\"\n[broker.kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"plexus\"\npassword_file = \"{}\"\n",
                file.display()
            );
        }
        text
    }
}

fn client(bootstrap: &str) -> ClientConfig {
    Cluster {
        bootstrap: bootstrap.to_owned(),
        secured: None,
    }
    .client()
}

fn producer(cluster: &Cluster) -> ThreadedProducer<DefaultProducerContext> {
    cluster
        .client()
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

fn produce_input(cluster: &Cluster, topic: &str, count: usize) -> f64 {
    let producer = producer(cluster);
    let template = plexus::testing::cloudevents::decode(br#"{"specversion":"1.0","id":"x","source":"/bench","type":"bench.order.v1","datacontenttype":"application/json"}"#).unwrap();
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
fn pipe(cluster: &Cluster, input: &str, output: &str, count: usize) -> f64 {
    let consumer: BaseConsumer = cluster
        .client()
        .set("group.id", format!("{output}.pipe"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[input]).unwrap();
    let producer = producer(cluster);
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
fn plexus(cluster: &Cluster, input: &str, output: &str, count: usize, workers: u32) -> f64 {
    plexus_with(
        cluster,
        input,
        output,
        count,
        workers,
        Delivery::AtLeastOnce,
    )
}

/// The route's `delivery`, and when a run counts as done.
#[derive(Clone, Copy)]
enum Delivery {
    /// At-least-once, done when the last output is acknowledged.
    AtLeastOnce,
    /// At-least-once, done when the runtime has stopped (its last positions committed), to
    /// compare with exactly-once on equal terms.
    AtLeastOnceCommitted,
    /// Exactly-once, done when the runtime has stopped (its last transaction committed).
    ExactlyOnce,
}

/// [`plexus`] with the route's delivery guarantee chosen.
fn plexus_with(
    cluster: &Cluster,
    input: &str,
    output: &str,
    count: usize,
    workers: u32,
    delivery: Delivery,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let broker = cluster.plexus_broker(
        &format!("kafka.group = \"{output}.plexus\"\nkafka.create_topics = false\n"),
        dir.path(),
    );
    let filter = plexus_guests::FILTER;
    let text = format!(
        "{broker}[plugins.filter]\npath = \"{filter}\"\nconfig = {{ out = \"{output}\", prefix = \"bench.\" }}\n\
         [routes.filter]\ntopic = \"{input}\"\nplugin = \"filter\"\nconcurrency = {workers}\ndead_letter = \"{input}.dlq\"\n{}",
        match delivery {
            Delivery::ExactlyOnce => "delivery = \"exactly-once\"\n",
            _ => "",
        }
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
    let elapsed = match delivery {
        Delivery::AtLeastOnce => {
            let elapsed = started.expect("consumed").elapsed();
            runtime.stop();
            elapsed
        }
        Delivery::AtLeastOnceCommitted | Delivery::ExactlyOnce => {
            runtime.stop();
            started.expect("consumed").elapsed()
        }
    };
    count as f64 / elapsed.as_secs_f64()
}

/// Plexus at-least-once beside Plexus exactly-once on the same input, in the order A B B A;
/// each side is timed until its last commit (the runtime stopped).
fn compare_delivery(
    cluster: &Cluster,
    input: &str,
    output: &mut dyn FnMut(&str) -> String,
    count: usize,
    workers: u32,
) {
    let mut run =
        |delivery| plexus_with(cluster, input, &output("plexus"), count, workers, delivery);
    let a1 = run(Delivery::AtLeastOnceCommitted);
    let b1 = run(Delivery::ExactlyOnce);
    let b2 = run(Delivery::ExactlyOnce);
    let a2 = run(Delivery::AtLeastOnceCommitted);
    println!(
        "in order: at-least-once {a1:.0}, exactly-once {b1:.0}, exactly-once {b2:.0}, at-least-once {a2:.0} ev/s"
    );
    let (at_least, exactly) = ((a1 + a2) / 2.0, (b1 + b2) / 2.0);
    println!("plexus at-least-once ({workers} workers): {at_least:.0} events/s");
    println!("plexus exactly-once ({workers} workers):  {exactly:.0} events/s");
    println!("exactly-once / at-least-once: {:.2}", exactly / at_least);
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
    measure(&bootstrap, count, run);
    delete_topics_of_run(&bootstrap, run);
}

/// Deletes every topic run `run` created (gigabytes each time), so runs do not fill the disk.
fn delete_topics_of_run(bootstrap: &str, run: u64) {
    let metadata = client(bootstrap)
        .create::<BaseConsumer>()
        .unwrap()
        .fetch_metadata(None, Duration::from_secs(30))
        .unwrap();
    let ours: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| name.starts_with("bench-") && name.contains(&format!("-{run}")))
        .collect();
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().unwrap();
    if let Err(error) =
        futures::executor::block_on(admin.delete_topics(&ours, &AdminOptions::new()))
    {
        eprintln!("could not delete the bench topics: {error}");
    }
}

/// Produces the input, then measures the pipe and Plexus (plaintext, and SASL_SSL when the
/// environment says where it is), printing the figures.
fn measure(bootstrap: &str, count: usize, run: u64) {
    let bootstrap = bootstrap.to_owned();
    let input = format!("bench-in-{run}");
    let admin: AdminClient<DefaultClientContext> = client(&bootstrap).create().unwrap();
    let create = |topic: &str| {
        let new = [NewTopic::new(topic, 4, TopicReplication::Fixed(1))];
        futures::executor::block_on(admin.create_topics(&new, &AdminOptions::new())).unwrap();
    };
    create(&input);
    create(&format!("{input}.dlq"));
    // Each measurement writes a topic of its own.
    let mut outputs = 0;
    let mut output = |side: &str| {
        outputs += 1;
        let topic = format!("bench-{side}-out-{run}-{outputs}");
        create(&topic);
        topic
    };
    let plaintext = Cluster {
        bootstrap: bootstrap.clone(),
        secured: None,
    };
    let workers: u32 = std::env::var("PLEXUS_BENCH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);

    println!("{count} events of 1 KB, 4 partitions, broker at {bootstrap}");
    println!(
        "producing the input: {:.0} events/s",
        produce_input(&plaintext, &input, count)
    );
    if std::env::var_os("PLEXUS_BENCH_EXACTLY_ONCE").is_some() {
        compare_delivery(&plaintext, &input, &mut output, count, workers);
        return;
    }
    let secured = match (
        std::env::var("PLEXUS_KAFKA_SASL_SSL"),
        std::env::var("PLEXUS_KAFKA_CA"),
    ) {
        (Ok(address), Ok(ca)) => Cluster {
            bootstrap: address,
            secured: Some((ca, TEST_SCRAM_PASSWORD.to_owned())),
        },
        _ => {
            let pipe_rate = pipe(&plaintext, &input, &output("pipe"), count);
            println!("plain rdkafka pipe (consume, copy, produce): {pipe_rate:.0} events/s");
            let plexus_rate = plexus(&plaintext, &input, &output("plexus"), count, workers);
            println!("plexus (filter plugin, {workers} workers): {plexus_rate:.0} events/s");
            println!("plexus / pipe: {:.2}", plexus_rate / pipe_rate);
            println!("SASL_SSL: skipped (PLEXUS_KAFKA_SASL_SSL and PLEXUS_KAFKA_CA not set)");
            return;
        }
    };

    // Plaintext and SASL_SSL in the order A B B A, so the broker warming up (the first read
    // of the input is the slowest) weighs on both alike; each figure is the mean of two.
    println!(
        "over SASL_SSL: TLS with the test CA, SCRAM-SHA-512, at {}",
        secured.bootstrap
    );
    let mut rates = |side: &str, run: &mut dyn FnMut(&Cluster, &str) -> f64| {
        let a1 = run(&plaintext, &output(side));
        let b1 = run(&secured, &output(side));
        let b2 = run(&secured, &output(side));
        let a2 = run(&plaintext, &output(side));
        println!(
            "{side}, in order: plaintext {a1:.0}, SASL_SSL {b1:.0}, SASL_SSL {b2:.0}, plaintext {a2:.0} ev/s"
        );
        ((a1 + a2) / 2.0, (b1 + b2) / 2.0)
    };
    let (pipe_plain, pipe_tls) = rates("pipe", &mut |c, out| pipe(c, &input, out, count));
    let (plexus_plain, plexus_tls) = rates("plexus", &mut |c, out| {
        plexus(c, &input, out, count, workers)
    });
    println!("                         plaintext     SASL_SSL   SASL_SSL/plaintext");
    println!(
        "plain rdkafka pipe  {pipe_plain:>10.0} ev/s {pipe_tls:>9.0} ev/s   {:.2}",
        pipe_tls / pipe_plain
    );
    println!(
        "plexus ({workers} workers)  {plexus_plain:>10.0} ev/s {plexus_tls:>9.0} ev/s   {:.2}",
        plexus_tls / plexus_plain
    );
    println!(
        "plexus / pipe       {:>10.2}      {:>9.2}",
        plexus_plain / pipe_plain,
        plexus_tls / pipe_tls
    );
}
