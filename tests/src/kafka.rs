//! Talking to the real Kafka broker the tests run against: its address, topics with unique
//! names, producing CloudEvents (or raw bytes), reading a topic back, and running `plexus`.

use plexus::event::Event;
use plexus::testing::kafka_binding::{self as binding, KafkaRecord};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The bootstrap address: `$PLEXUS_KAFKA_BOOTSTRAP` (set by scripts/test), else whatever
/// `scripts/kafka-up` starts or finds.
pub fn bootstrap() -> &'static str {
    static ADDRESS: OnceLock<String> = OnceLock::new();
    ADDRESS.get_or_init(|| crate::test_server("PLEXUS_KAFKA_BOOTSTRAP", "kafka-up"))
}

/// A name no other test run uses.
pub fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

fn config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    config
}

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(topic: &str, partitions: i32) {
    create_topic_with(topic, partitions, &[]);
}

/// Creates `topic` with `partitions` partitions and topic-level `settings`.
pub fn create_topic_with(topic: &str, partitions: i32, settings: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in settings {
        new = new.set(key, value);
    }
    let results = futures::executor::block_on(admin.create_topics(&[new], &options)).unwrap();
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

/// Produces `records` to `topic` and waits until all are acknowledged.
pub fn produce(topic: &str, records: &[KafkaRecord]) {
    produce_with(topic, records, &[]);
}

/// Produces `records` with extra producer `settings` (e.g. a larger `message.max.bytes`).
pub fn produce_with(topic: &str, records: &[KafkaRecord], settings: &[(&str, &str)]) {
    let mut config = config();
    config.set("linger.ms", "5");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().unwrap();
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut message = BaseRecord::to(topic).headers(headers);
        if let Some(value) = &record.value {
            message = message.payload(value);
        }
        if let Some(key) = &record.key {
            message = message.key(key);
        }
        loop {
            match producer.send(message) {
                Ok(()) => break,
                Err((_, back)) => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Produces `events` in binary mode.
pub fn produce_events(topic: &str, events: &[Event]) {
    produce(
        topic,
        &events.iter().map(binding::encode).collect::<Vec<_>>(),
    );
}

/// An event with `id`, `type` and `key`, as a test producer would send it.
pub fn event(id: &str, event_type: &str, key: Option<&str>) -> Event {
    let line = crate::event_line(id, event_type, key, serde_json::json!({"id": id}));
    plexus::testing::cloudevents::decode(line.as_bytes()).unwrap()
}

/// The offsets consumer group `group` has committed on `topic`, per partition (absent when
/// nothing was committed).
pub fn committed(group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = config().set("group.id", group).create().unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(30))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect()
}

/// The end offset (one past the last record) of every partition of `topic`.
pub fn end_offsets(topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = config().create().unwrap();
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

/// Records in `topic` now (its partitions' ends summed), 0 while it does not exist.
pub fn records_in(topic: &str, partitions: i32) -> u64 {
    let consumer: BaseConsumer = config().create().unwrap();
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map_or(0, |(_, high)| high.max(0) as u64)
        })
        .sum()
}

/// `examples/shop/kafka.toml` made private to one test ([`crate::private_shop_config`]), the
/// broker at `address`.
pub fn shop_config(prefix: &str, address: &str) -> String {
    crate::private_shop_config("kafka.toml", prefix).replace("127.0.0.1:19092", address)
}

/// Sends SIGTERM to `child`.
pub fn terminate(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Reads `topic` from the beginning, as a fresh consumer group would, until at least
/// `expected` records arrived and a second passed without more (duplicates may make the
/// topic longer than `expected`), or until `timeout`; decodes them as CloudEvents.
pub fn read(topic: &str, expected: usize, timeout: Duration) -> Vec<Event> {
    read_records(topic, expected, timeout, true)
}

/// The raw records of `topic`, from the beginning, until `expected` arrived and a second
/// passed without more, or until `timeout`.
pub fn read_records_raw(topic: &str, expected: usize, timeout: Duration) -> Vec<KafkaRecord> {
    let consumer: BaseConsumer = config()
        .set("group.id", unique("raw-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let started = Instant::now();
    assign_from_beginning(&consumer, topic, timeout);
    let mut last_arrival = Instant::now();
    let mut records = Vec::new();
    while started.elapsed() < timeout
        && (records.len() < expected || last_arrival.elapsed() < Duration::from_secs(1))
    {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            last_arrival = Instant::now();
            records.push(KafkaRecord::from_message(&message));
        }
    }
    records
}

/// Points `consumer` at every partition of `topic` from its beginning, once the topic
/// shows in the metadata (waiting up to `timeout` for a topic not created yet). Readers
/// assign rather than join a consumer group: a group's join and rebalances are not what
/// these reads test, and a partition a group hands out late would look like a lost record.
fn assign_from_beginning(consumer: &BaseConsumer, topic: &str, timeout: Duration) {
    let started = Instant::now();
    loop {
        let partitions = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(1))
            .ok()
            .and_then(|m| {
                let found = m.topics().iter().find(|t| t.name() == topic)?;
                (found.error().is_none() && !found.partitions().is_empty()).then(|| {
                    found
                        .partitions()
                        .iter()
                        .map(|p| p.id())
                        .collect::<Vec<_>>()
                })
            });
        if let Some(partitions) = partitions {
            let mut list = TopicPartitionList::new();
            for partition in partitions {
                list.add_partition_offset(topic, partition, Offset::Beginning)
                    .unwrap();
            }
            consumer.assign(&list).unwrap();
            return;
        }
        if started.elapsed() >= timeout {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Everything `topic` holds that can be read within `timeout`.
pub fn read_for(topic: &str, timeout: Duration) -> Vec<Event> {
    read_records(topic, usize::MAX, timeout, false)
}

/// Waits until `topic` holds at least `count` records (or `timeout`); how many it saw.
pub fn wait_for_records(topic: &str, count: usize, timeout: Duration) -> usize {
    read_records(topic, count, timeout, false).len()
}

/// Every record `topic` holds, aborted transactions' included (`read_uncommitted`), that
/// can be read within `timeout`, decoded.
pub fn read_uncommitted_for(topic: &str, timeout: Duration) -> Vec<Event> {
    read_isolated(topic, usize::MAX, timeout, false, "read_uncommitted")
}

fn read_records(topic: &str, expected: usize, timeout: Duration, until_quiet: bool) -> Vec<Event> {
    // librdkafka's default, named here because exactly-once tests depend on it.
    read_isolated(topic, expected, timeout, until_quiet, "read_committed")
}

fn read_isolated(
    topic: &str,
    expected: usize,
    timeout: Duration,
    until_quiet: bool,
    isolation: &str,
) -> Vec<Event> {
    let consumer: BaseConsumer = config()
        .set("isolation.level", isolation)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let started = Instant::now();
    assign_from_beginning(&consumer, topic, timeout);
    let mut last_arrival = Instant::now();
    let mut events = Vec::new();
    let quiet = |last: Instant| !until_quiet || last.elapsed() >= Duration::from_secs(1);
    while started.elapsed() < timeout && (events.len() < expected || !quiet(last_arrival)) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            last_arrival = Instant::now();
            let record = KafkaRecord::from_message(&message);
            let event = binding::decode(
                &record,
                topic,
                message.partition() as u32,
                message.offset() as u64,
            )
            .unwrap_or_else(|e| panic!("{topic} holds a record that is not a CloudEvent: {e}"));
            events.push(event);
        }
    }
    events
}

/// Starts `plexus run --config <config>`, logging to `<config>.log`.
pub fn spawn_plexus(config: &Path) -> Child {
    spawn_plexus_with(config, &[])
}

/// What the `plexus` [`spawn_plexus`] started with `config` has logged so far.
pub fn log_of(config: &Path) -> String {
    std::fs::read_to_string(config.with_extension("log")).unwrap_or_default()
}

/// [`spawn_plexus`] with more environment variables.
pub fn spawn_plexus_with(config: &Path, env: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(config.with_extension("log")).unwrap();
    crate::plexus_command()
        .args(["run", "--no-watch", "--config"])
        .arg(config)
        .env("PLEXUS_CACHE_DIR", config.parent().unwrap().join("cache"))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start plexus")
}

/// Waits for `child` to exit by itself (idle exit), up to `timeout`; its exit code.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            panic!("plexus did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills `child` with SIGKILL: no drain, no commit.
pub fn kill_hard(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The broker's secured listeners and test PKI, as scripts/kafka-up sets them up: mutual
/// TLS on the plaintext port + 2, SASL_SSL on + 3, certificates in `$PLEXUS_KAFKA_DIR/tls`.
pub struct Secured {
    /// `127.0.0.1:port` of the TLS listener that requires a client certificate.
    pub mtls: String,
    /// `127.0.0.1:port` of the SASL_SSL listener.
    pub sasl_ssl: String,
    /// `ca.pem`, `client.pem`, `client.key`, `other-ca.pem` (a CA the broker does not use).
    pub tls_dir: std::path::PathBuf,
}

/// The SCRAM password of the test user `plexus` (scripts/kafka-up).
pub const SCRAM_PASSWORD: &str = "plexus-scram-secret";
/// The PLAIN password of the test user `plexus` (scripts/kafka-up).
pub const PLAIN_PASSWORD: &str = "plexus-plain-secret";

/// Where the broker's secured listeners are.
pub fn secured() -> Secured {
    let (host, port) = bootstrap().rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("port");
    let state = std::env::var("PLEXUS_KAFKA_DIR")
        .map_or_else(|_| crate::repo("target/kafka"), std::path::PathBuf::from);
    Secured {
        mtls: format!("{host}:{}", port + 2),
        sasl_ssl: format!("{host}:{}", port + 3),
        tls_dir: state.join("tls"),
    }
}

/// Runs kcat (an independent Kafka client) against the plaintext listener with `args`,
/// feeding it `input`; its stdout. Fails the test if kcat fails.
pub fn kcat(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("kcat")
        .args(["-b", bootstrap()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat (installed by scripts/setup-host-deps --test)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The compression codecs of the record batches stored for `topic`, read from the broker's
/// log segments by Kafka's own tool (scripts/kafka/record-codecs).
pub fn record_codecs(topic: &str) -> Vec<String> {
    let out = Command::new(crate::repo("scripts/kafka/record-codecs"))
        .arg(topic)
        .output()
        .expect("record-codecs");
    assert!(
        out.status.success(),
        "record-codecs {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
