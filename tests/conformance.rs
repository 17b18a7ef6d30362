//! CloudEvents conformance, with the official SDKs as oracles: the CNCF Python SDK (2.x and
//! 1.x APIs) and the Rust `cloudevents-sdk` each make a corpus (every attribute type,
//! extensions, every data form, times with nanoseconds and offsets, null extensions, Kafka
//! binary and structured mode), Plexus forwards every event through a plugin and
//! dead-letters it through another, and each SDK reads the outputs back: every output
//! parses, and every attribute and the data survive each hop, on the embedded broker (JSON
//! files) and on Kafka.

use cloudevents::binding::rdkafka::{BaseRecordExt, MessageExt, MessageRecord};
use cloudevents::message::StructuredDeserializer;
use cloudevents::{AttributesReader as _, AttributesWriter as _};
use plexus::event::Event;
use plexus::testing::kafka_binding::KafkaRecord;
use plexus_tests::kafka::{
    bootstrap, create_topic, read_records_raw, spawn_plexus, unique, wait_exit,
};
use plexus_tests::oracle::{
    Description, Hop, Strictness, check, python_describe_json, python_describe_kafka,
    python_oracle, records_json, rust_corpus, rust_describe,
};
use plexus_tests::{Scenario, attr, plugins};
use rdkafka::config::ClientConfig;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The plugins and routes of every conformance run: `forward` sends each event of `in` on
/// to `fwd` through the filter plugin; `dead` rejects each into `dlq`.
fn routes() -> String {
    format!(
        r#"
[plugins.forward]
path = "{filter}"
config = {{ out = "fwd" }}
[plugins.reject]
path = "{filter}"
config = {{ out = "unused", reject = "rejected by the conformance test" }}
[routes.forward]
topic = "in"
plugin = "forward"
dead_letter = "fwd-failed"
[routes.dead]
topic = "in"
plugin = "reject"
dead_letter = "dlq"
"#,
        filter = plugins::FILTER
    )
}

/// Indexes `outputs` by the input event each came from: a dead letter has its input's id, a
/// forwarded event names it in `causationid`.
fn by_cause(outputs: &[Event], hop: Hop) -> BTreeMap<String, usize> {
    outputs
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match hop {
            Hop::DeadLettered => Some((e.id.clone(), i)),
            Hop::Forwarded => attr(e, "causationid").map(|c| (c, i)),
        })
        .collect()
}

/// Compares, for one SDK, each input with what `hop` made of it; collects the differences.
fn compare(
    sdk: &str,
    inputs: &[(String, Description)],
    outputs: &[Description],
    index: &BTreeMap<String, usize>,
    hop: Hop,
    how: Strictness,
    problems: &mut Vec<String>,
) {
    for (id, input) in inputs {
        match index.get(id) {
            None => problems.push(format!("{sdk}: {id}: no {hop:?} output")),
            Some(&i) => {
                for problem in check(hop, input, &outputs[i], how) {
                    problems.push(format!("{sdk}: {id} {hop:?}: {problem}"));
                }
            }
        }
    }
}

fn decode_lines(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| plexus::testing::cloudevents::decode(l.as_bytes()).unwrap())
        .collect()
}

#[test]
fn every_attribute_and_data_form_survives_the_json_format_through_both_sdks() {
    let scenario = Scenario::new();
    let dir = scenario.dir.path();
    python_oracle(&["corpus", dir.to_str().unwrap()]);
    let rust_lines: Vec<String> = rust_corpus()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let rust_file = scenario.events("rust.jsonl", &rust_lines);
    let invalid = scenario.events(
        "invalid.jsonl",
        &[
            r#"{"specversion":"1.0","id":"bad-name","source":"/t","type":"t","Color":"x"}"#
                .to_owned(),
        ],
    );
    let report = scenario.run(&format!(
        "[broker]\npartitions = 1\n[[inputs]]\ntopic = \"in\"\nfile = \"{}\"\n[[inputs]]\ntopic = \"in\"\nfile = \"{}\"\n[[inputs]]\ntopic = \"in\"\nfile = \"{}\"\n[[outputs]]\ntopic = \"fwd\"\nfile = \"fwd.jsonl\"\n[[outputs]]\ntopic = \"dlq\"\nfile = \"dlq.jsonl\"\n{}",
        dir.join("python.jsonl").display(),
        rust_file.display(),
        invalid.display(),
        routes()
    ));
    let (fwd, dlq) = (dir.join("fwd.jsonl"), dir.join("dlq.jsonl"));
    let inputs = [dir.join("python.jsonl"), rust_file.clone()];
    let input_events: Vec<Event> = inputs.iter().flat_map(|p| decode_lines(p)).collect();
    let total = input_events.len() as u64;
    assert_eq!(report.routes["forward"].emitted, total, "{report:?}");
    assert_eq!(report.routes["dead"].dead_lettered_total(), total + 1);

    // Every output parses with both SDKs (the Python oracle fails on any it cannot parse).
    let rust_parse = |path: &Path| -> Vec<Description> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let event: cloudevents::Event = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("the Rust SDK cannot parse {l}: {e}"));
                rust_describe(&event)
            })
            .collect()
    };
    let python_in: Vec<_> = inputs
        .iter()
        .flat_map(|p| python_describe_json(p))
        .collect();
    let rust_in: Vec<_> = inputs.iter().flat_map(|p| rust_parse(p)).collect();
    let ids: Vec<String> = input_events.iter().map(|e| e.id.clone()).collect();
    let fwd_events = decode_lines(&fwd);
    let dlq_events = decode_lines(&dlq);
    let typed = Strictness {
        types: true,
        empty_is_none: false,
        key_is_partitionkey: false,
    };
    let mut problems = Vec::new();
    for (hop, events, path) in [
        (Hop::Forwarded, &fwd_events, &fwd),
        (Hop::DeadLettered, &dlq_events, &dlq),
    ] {
        let index = by_cause(events, hop);
        let python_out = python_describe_json(path);
        let with_ids = |ds: Vec<Description>| -> Vec<(String, Description)> {
            ids.iter().cloned().zip(ds).collect()
        };
        compare(
            "python 2.x",
            &with_ids(python_in.iter().map(|d| d.v2.clone()).collect()),
            &python_out.iter().map(|d| d.v2.clone()).collect::<Vec<_>>(),
            &index,
            hop,
            typed,
            &mut problems,
        );
        compare(
            "python 1.x",
            &with_ids(python_in.iter().map(|d| d.v1.clone()).collect()),
            &python_out.iter().map(|d| d.v1.clone()).collect::<Vec<_>>(),
            &index,
            hop,
            typed,
            &mut problems,
        );
        compare(
            "rust",
            &with_ids(rust_in.clone()),
            &rust_parse(path),
            &index,
            hop,
            typed,
            &mut problems,
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Plexus's own promise, beyond what the SDKs can see: a dead letter's time and data are
    // the input's, to the character (nanoseconds, offset, large numbers).
    for input in &input_events {
        let letter = dlq_events.iter().find(|e| e.id == input.id).unwrap();
        assert_eq!(letter.time, input.time, "{}", input.id);
        assert_eq!(letter.payload, input.payload, "{}", input.id);
    }
    let undecodable = dlq_events
        .iter()
        .find(|e| e.type_ == "plexus.undecodable")
        .unwrap();
    assert!(
        attr(undecodable, "plexusdlqreason")
            .unwrap()
            .contains("`Color` is not a CloudEvents attribute name"),
        "{undecodable:?}"
    );
}

/// The records of topic `topic` as the Rust SDK reads them.
fn rust_describe_records(records: &[KafkaRecord], topic: &str) -> Vec<Description> {
    records
        .iter()
        .map(|r| {
            let mut headers = rdkafka::message::OwnedHeaders::new();
            for (name, value) in &r.headers {
                headers = headers.insert(rdkafka::message::Header {
                    key: name,
                    value: Some(value),
                });
            }
            let message = OwnedMessage::new(
                r.value.clone(),
                r.key.clone(),
                topic.to_owned(),
                rdkafka::Timestamp::NotAvailable,
                0,
                0,
                Some(headers),
            );
            let event = message
                .to_event()
                .unwrap_or_else(|e| panic!("the Rust SDK cannot read {r:?}: {e}"));
            rust_describe(&event)
        })
        .collect()
}

#[test]
fn every_attribute_and_data_form_survives_the_kafka_binding_through_both_sdks() {
    let scenario = Scenario::new();
    let dir = scenario.dir.path();
    let input = unique("conf-in");
    create_topic(&input, 1);
    python_oracle(&["corpus", dir.to_str().unwrap()]);
    let python_records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("python-kafka.json")).unwrap())
            .unwrap();
    let python_records: Vec<KafkaRecord> = python_records
        .iter()
        .map(|r| {
            use base64::Engine as _;
            let b = |v: &serde_json::Value| {
                v.as_str()
                    .map(|s| base64::engine::general_purpose::STANDARD.decode(s).unwrap())
            };
            KafkaRecord {
                key: b(&r["key"]),
                headers: r["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| (h[0].as_str().unwrap().to_owned(), b(&h[1]).unwrap()))
                    .collect(),
                value: b(&r["value"]),
                timestamp: None,
            }
        })
        .collect();
    plexus_tests::kafka::produce(&input, &python_records);
    // The Rust corpus, in binary and in structured mode, keyed by its partition key.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let rust_events = rust_corpus();
    for event in &rust_events {
        let key = event.extension("partitionkey").map(|k| k.to_string());
        let binary = MessageRecord::from_event(event.clone()).unwrap();
        let mut structured_event = event.clone();
        structured_event.set_id(format!("{}-structured", event.id()));
        let structured =
            StructuredDeserializer::deserialize_structured(structured_event, MessageRecord::new())
                .unwrap();
        for record in [&binary, &structured] {
            let mut message = BaseRecord::to(&input).message_record(record).unwrap();
            if let Some(key) = &key {
                message = message.key(key);
            }
            producer.send(message).map_err(|(e, _)| e).unwrap();
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let total = python_records.len() + 2 * rust_events.len();
    let records = read_records_raw(&input, total, Duration::from_secs(60));
    assert_eq!(records.len(), total, "the corpus is in the input topic");

    let (fwd, dlq) = (unique("conf-fwd"), unique("conf-dlq"));
    let text = routes()
        .replace("topic = \"in\"", &format!("topic = \"{input}\""))
        .replace("out = \"fwd\"", &format!("out = \"{fwd}\""))
        .replace("dead_letter = \"dlq\"", &format!("dead_letter = \"{dlq}\""));
    let config = scenario.file(
        "plexus.toml",
        &format!(
            "[runtime]\ncache_dir = \"{}\"\n[broker]\nkind = \"kafka\"\nkafka.bootstrap_servers = \"{}\"\nkafka.group = \"{}\"\npartitions = 1\nidle_exit = \"3s\"\n{text}",
            dir.join("cache").display(),
            bootstrap(),
            unique("conf")
        ),
    );
    let mut plexus = spawn_plexus(&config);
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(180)), 0);
    let read = |topic: &str| read_records_raw(topic, total, Duration::from_secs(60));
    let (fwd_records, dlq_records) = (read(&fwd), read(&dlq));
    assert_eq!(fwd_records.len(), total, "forwarded");
    assert_eq!(dlq_records.len(), total, "dead-lettered");

    let as_events = |records: &[KafkaRecord], topic: &str| -> Vec<Event> {
        records
            .iter()
            .map(|r| plexus::testing::kafka_binding::decode(r, topic, 0, 0).unwrap())
            .collect()
    };
    let (fwd_events, dlq_events) = (as_events(&fwd_records, &fwd), as_events(&dlq_records, &dlq));
    let input_events = as_events(&records, &input);
    // Every record written parses with both SDKs; each SDK compares inputs and outputs.
    let write = |name: &str, records: &[KafkaRecord]| {
        let path = dir.join(name);
        std::fs::write(&path, records_json(records)).unwrap();
        path
    };
    let python_in = python_describe_kafka(&write("in.json", &records));
    let python_fwd = python_describe_kafka(&write("fwd.json", &fwd_records));
    let python_dlq = python_describe_kafka(&write("dlq.json", &dlq_records));
    let (rust_fwd, rust_dlq) = (
        rust_describe_records(&fwd_records, &fwd),
        rust_describe_records(&dlq_records, &dlq),
    );
    // The binding carries attributes as text, and the Python SDK reads an empty value as no
    // data: compare values, and empty as none, for Python; the Rust SDK tells them apart.
    let python_way = Strictness {
        types: false,
        empty_is_none: true,
        key_is_partitionkey: true,
    };
    let rust_way = Strictness {
        types: false,
        empty_is_none: false,
        key_is_partitionkey: true,
    };
    // The 1.x API reads a structured record differently from a binary one (it takes the
    // envelope's content type for `datacontenttype`, base64s the key, parses the data), and
    // Plexus writes binary mode: only its binary inputs can be compared with its outputs.
    let structured: Vec<bool> = records
        .iter()
        .map(|r| {
            r.header("content-type")
                .is_some_and(|ct| ct.starts_with(b"application/cloudevents"))
        })
        .collect();
    let mut problems = Vec::new();
    let ids: Vec<String> = input_events.iter().map(|e| e.id.clone()).collect();
    for (hop, events, py, rs) in [
        (Hop::Forwarded, &fwd_events, &python_fwd, &rust_fwd),
        (Hop::DeadLettered, &dlq_events, &python_dlq, &rust_dlq),
    ] {
        let index = by_cause(events, hop);
        let v2: Vec<_> = ids
            .iter()
            .cloned()
            .zip(python_in.iter().map(|d| d.v2.clone()))
            .collect();
        let v1: Vec<_> = ids
            .iter()
            .cloned()
            .zip(python_in.iter().map(|d| d.v1.clone()))
            .zip(&structured)
            .filter(|(_, structured)| !**structured)
            .map(|(pair, _)| pair)
            .collect();
        let py2: Vec<_> = py.iter().map(|d| d.v2.clone()).collect();
        let py1: Vec<_> = py.iter().map(|d| d.v1.clone()).collect();
        compare(
            "python 2.x",
            &v2,
            &py2,
            &index,
            hop,
            python_way,
            &mut problems,
        );
        compare(
            "python 1.x",
            &v1,
            &py1,
            &index,
            hop,
            python_way,
            &mut problems,
        );
        let rust_in: Vec<_> = ids
            .iter()
            .cloned()
            .zip(rust_describe_records(&records, &input))
            .collect();
        compare("rust", &rust_in, rs, &index, hop, rust_way, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // No header twice, and Plexus reads back everything it wrote.
    for record in fwd_records.iter().chain(&dlq_records) {
        let mut names: Vec<&String> = record.headers.iter().map(|(n, _)| n).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "a header twice: {record:?}");
    }
    for input in &input_events {
        let letter = dlq_events.iter().find(|e| e.id == input.id).unwrap();
        assert_eq!(letter.time, input.time, "{}", input.id);
        assert_eq!(letter.payload, input.payload, "{}", input.id);
    }
}
