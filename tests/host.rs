//! The wasm host on its own: the compile cache and instance recovery.

use plexus::FailureKind;
use plexus::config::Limits;
use plexus::config::units::ByteSize;
use plexus::event::Event;
use plexus::state::StateError;
use plexus::state::{MemoryBackend, Overlay, Transaction};
use plexus::testing::PlexusEngine;
use plexus::testing::PluginContext;
use plexus::testing::WasmPlugin;
use plexus::testing::component;
use plexus::{Handler, Outcome, Plugin};
use plexus_tests::{Scenario, event_line, plugins};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[test]
fn a_restart_loads_unchanged_plugins_from_the_compile_cache() {
    let scenario = Scenario::new();
    let cache = scenario.dir.path().join("cache");
    let path = plugins::MISBEHAVE;
    let first = component::load(
        &PlexusEngine::new(Some(cache.clone())).unwrap(),
        "m",
        Path::new(&path),
        None,
    )
    .unwrap();
    assert!(!first.from_cache, "nothing cached yet");
    // A new engine, as after a restart.
    let second = component::load(
        &PlexusEngine::new(Some(cache)).unwrap(),
        "m",
        Path::new(&path),
        None,
    )
    .unwrap();
    assert!(second.from_cache, "the compiled component is reused");
    assert_eq!(first.version, second.version);
}

fn event(event_type: &str) -> Event {
    let mut event = plexus::testing::cloudevents::decode(
        event_line("e", event_type, None, json!({})).as_bytes(),
    )
    .unwrap();
    event.topic = "t".into();
    event
}

#[test]
fn a_handler_recovers_after_each_kind_of_trap() {
    let engine = PlexusEngine::new(None).unwrap();
    let loaded = component::load(&engine, "m", Path::new(plugins::MISBEHAVE), None).unwrap();
    let context = PluginContext {
        name: "m".into(),
        config: vec![("out".into(), "o".into())],
        state: MemoryBackend::shared(),
        limits: Limits {
            memory: ByteSize(8 << 20),
            timeout: plexus::config::units::Duration(Duration::from_millis(100)),
            max_emits: 2,
            ..Limits::default()
        },
        emits: None,
    };
    let wasm = WasmPlugin::new(loaded, context);
    let mut handler = wasm.instantiate().unwrap();
    for (bad, kind) in [
        ("test.trap", FailureKind::Trap),
        ("test.loop", FailureKind::Timeout),
        ("test.hog", FailureKind::MemoryLimit),
    ] {
        match handle(&mut handler, &event(bad)) {
            Outcome::Failed(k, _) => assert_eq!(k, kind, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
        match handle(&mut handler, &event("test.ok")) {
            Outcome::Done(emits) => assert_eq!(emits.len(), 1, "after {bad}"),
            other => panic!("after {bad}: {other:?}"),
        }
    }
}

/// Handles `event` in a transaction of its own.
fn handle(handler: &mut Box<dyn Handler>, event: &Event) -> Outcome {
    handler.handle(event, &mut Transaction::begin(Overlay::default()))
}

/// A state backend that never answers a read (as a store behind a dead network link would,
/// with no timeout of its own).
struct Unanswering;

#[plexus::async_trait]
impl plexus::state::StateBackend for Unanswering {
    fn describe(&self) -> String {
        "nowhere".into()
    }
    fn durable(&self) -> bool {
        false
    }
    async fn read(&self, _: &str, _: &str) -> Result<Option<plexus::state::Stored>, StateError> {
        std::future::pending().await
    }
    async fn usage(&self, _: &str) -> Result<plexus::state::Usage, StateError> {
        std::future::pending().await
    }
    fn commit(
        &self,
        _: &str,
        _: plexus::state::Quota,
        _: &[plexus::state::EventCommit],
    ) -> Result<plexus::state::Committed, StateError> {
        unreachable!("nothing is committed in this test")
    }
    fn applied(&self, _: &str, _: u32) -> Result<BTreeMap<u64, Vec<u8>>, StateError> {
        Ok(BTreeMap::new())
    }
    fn prune(&self, _: &str, _: u32, _: u64) -> Result<(), StateError> {
        Ok(())
    }
    fn finished(&self, _: &str, keys: &[String]) -> Result<Vec<bool>, StateError> {
        Ok(vec![false; keys.len()])
    }
    fn forget_route(&self, _: &str) -> Result<(), StateError> {
        Ok(())
    }
    fn meta(&self, _: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(None)
    }
    fn set_meta(&self, _: &str, _: &[u8]) -> Result<(), StateError> {
        Ok(())
    }
}

#[test]
fn a_state_backend_that_never_answers_cannot_hold_a_call_past_its_time_limit() {
    let engine = PlexusEngine::new(None).unwrap();
    let loaded = component::load(&engine, "h", Path::new(plugins::HOSTILE), None).unwrap();
    let context = PluginContext {
        name: "h".into(),
        config: vec![("out".into(), "o".into())],
        state: std::sync::Arc::new(Unanswering),
        limits: Limits {
            timeout: plexus::config::units::Duration(Duration::from_millis(300)),
            ..Limits::default()
        },
        emits: None,
    };
    let wasm = WasmPlugin::new(loaded, context);
    let mut handler = wasm.instantiate().unwrap();
    let started = std::time::Instant::now();
    match handle(&mut handler, &event("hostile.host-loop")) {
        Outcome::Failed(FailureKind::Timeout, reason) => assert_eq!(
            reason,
            "handle exceeded the time limit of 300ms while waiting in a host call"
        ),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // The abandoned instance is replaced; calls that do not touch state go on.
    match handle(&mut handler, &event("x")) {
        Outcome::Done(emits) => assert_eq!(emits.len(), 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_plugin_built_against_the_0_1_0_contract_still_loads_and_works() {
    let scenario = Scenario::new();
    let input = scenario.events(
        "in.jsonl",
        &[r#"{"specversion":"1.0","id":"e-1","source":"/t","type":"t","time":"2026-01-02T03:04:05.678901Z","dataschema":"https://example.com/s.json","count":5,"urgent":true,"color":"red","data":{"a":1}}"#.to_owned()],
    );
    let toml = format!(
        "[[inputs]]\ntopic = \"in\"\nfile = \"{}\"\n[[outputs]]\ntopic = \"echo\"\nfile = \"echo.jsonl\"\n[plugins.old]\npath = \"{}\"\nconfig = {{ out = \"echo\" }}\n[routes.r]\ntopic = \"in\"\nplugin = \"old\"\n",
        input.display(),
        plugins::LEGACY_V01
    );
    let report = scenario.run(&toml);
    assert_eq!(report.routes["r"].succeeded, 1);
    let echoed = scenario.output("echo.jsonl");
    assert_eq!(echoed.len(), 1);
    let echo = &echoed.0[0];
    let seen: serde_json::Value = serde_json::from_slice(echo.data()).unwrap();
    assert_eq!(
        seen["headers"],
        json!({"count": "5", "urgent": "true", "color": "red", "dataschema": "https://example.com/s.json"}),
        "extension attributes and dataschema reach a 0.1.0 plugin as text headers"
    );
    assert_eq!(
        seen["timestamp"], 1_767_323_045_678_i64,
        "time in milliseconds"
    );
    // What it emits comes back as attributes: headers with valid names as string extensions.
    assert_eq!(plexus_tests::attr(echo, "color").as_deref(), Some("red"));
    assert_eq!(plexus_tests::attr(echo, "count").as_deref(), Some("5"));
    assert_eq!(
        echo.dataschema.as_deref(),
        Some("https://example.com/s.json")
    );
    assert_eq!(
        echo.extension("causationid"),
        Some(&plexus::event::AttributeValue::String("e-1".into())),
        "the host's lineage is added as for any plugin"
    );
}
