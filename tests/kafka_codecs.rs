//! Every compression codec, both ways, against an independent client: for gzip, snappy,
//! lz4 and zstd, kcat writes a topic in that codec, Plexus consumes it and publishes its own
//! output with `compression.codec` set to the same codec, and kcat reads the output back.
//! Kafka's own log dump confirms what each side really stored.

use plexus_tests::kafka::{create_topic, kcat, record_codecs, spawn_plexus, unique, wait_exit};
use plexus_tests::{Scenario, plugins};
use std::collections::BTreeSet;
use std::time::Duration;

const EVENTS: usize = 200;

/// Structured-mode CloudEvents, one JSON object per line, compressible (so librdkafka keeps
/// the compressed batch rather than falling back to none).
fn structured_events(prefix: &str) -> Vec<u8> {
    let mut lines = String::new();
    for i in 0..EVENTS {
        let note = "all work and no play ".repeat(8);
        lines += &serde_json::json!({
            "specversion": "1.0", "id": format!("{prefix}-{i}"), "source": "/codecs",
            "type": "test.ok", "datacontenttype": "application/json",
            "data": {"n": i, "note": note},
        })
        .to_string();
        lines.push('\n');
    }
    lines.into_bytes()
}

#[test]
fn every_codec_is_consumed_and_produced() {
    let scenario = Scenario::new();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let (input, out) = (
            unique(&format!("{codec}-in")),
            unique(&format!("{codec}-out")),
        );
        create_topic(&input, 2);
        create_topic(&out, 2);
        kcat(
            &[
                "-P",
                "-t",
                &input,
                "-z",
                codec,
                "-K",
                "\t",
                "-H",
                "content-type=application/cloudevents+json",
            ],
            &structured_events(codec)
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .enumerate()
                .flat_map(|(i, line)| {
                    let mut record = format!("k{}\t", i % 7).into_bytes();
                    record.extend_from_slice(line);
                    record.push(b'\n');
                    record
                })
                .collect::<Vec<u8>>(),
        );
        assert_eq!(record_codecs(&input), [codec], "kcat wrote {codec}");

        let config = scenario.file(
            &format!("{codec}.toml"),
            &format!(
                "[runtime]\ncache_dir = \"{cache}\"\n[broker]\nkind = \"kafka\"\nkafka.bootstrap_servers = \"{bootstrap}\"\nkafka.group = \"{group}\"\nidle_exit = \"3s\"\n\
                 [broker.kafka.properties]\n\"compression.codec\" = \"{codec}\"\n\"linger.ms\" = \"50\"\n\
                 [plugins.m]\npath = \"{plugin}\"\nconfig = {{ out = \"{out}\" }}\n[routes.m]\ntopic = \"{input}\"\nplugin = \"m\"\n",
                cache = scenario.dir.path().join("cache").display(),
                bootstrap = plexus_tests::kafka::bootstrap(),
                group = unique("codecs"),
                plugin = plugins::MISBEHAVE,
            ),
        );
        let mut plexus = spawn_plexus(&config);
        assert_eq!(
            wait_exit(&mut plexus, Duration::from_secs(120)),
            0,
            "{codec}"
        );
        let log = std::fs::read_to_string(config.with_extension("log")).unwrap();
        assert!(
            !log.contains("is a producer property"),
            "producer settings reach only the producer: {log}"
        );
        assert!(
            log.contains(&format!("route m: received {EVENTS}, succeeded {EVENTS}")),
            "{codec}: {log}"
        );

        // kcat reads Plexus's output: every event echoed, each a binary-mode CloudEvent.
        let read = kcat(&["-C", "-t", &out, "-e", "-q", "-f", "%h\\n"], b"");
        let echoed: BTreeSet<String> = String::from_utf8(read)
            .unwrap()
            .lines()
            .filter_map(|headers| {
                headers
                    .split(',')
                    .find_map(|h| h.strip_prefix("ce_echoof=").map(str::to_owned))
            })
            .collect();
        assert_eq!(
            echoed.len(),
            EVENTS,
            "{codec}: kcat read {} distinct echoes",
            echoed.len()
        );
        assert!(echoed.contains(&format!("{codec}-0")), "{echoed:?}");
        assert_eq!(record_codecs(&out), [codec], "Plexus wrote {codec}");
    }
}
