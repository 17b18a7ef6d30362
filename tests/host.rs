//! The wasm host on its own: the compile cache and instance recovery.

use plexus::event::Event;
use plexus::handler::{Outcome, Plugin};
use plexus::host::component;
use plexus::host::engine::PlexusEngine;
use plexus::host::instance::WasmPlugin;
use plexus::host::store::PluginContext;
use plexus::metrics::FailureKind;
use plexus::state::MemoryStateStore;
use plexus_tests::{Scenario, event_line, plugin};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

#[test]
fn a_restart_loads_unchanged_plugins_from_the_compile_cache() {
    let scenario = Scenario::new();
    let cache = scenario.dir.path().join("cache");
    let path = plugin("misbehave");
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
    let mut event =
        plexus::cloudevents::decode(event_line("e", event_type, None, json!({})).as_bytes())
            .unwrap();
    event.topic = "t".into();
    event
}

#[test]
fn a_handler_recovers_after_each_kind_of_trap() {
    let engine = PlexusEngine::new(None).unwrap();
    let loaded = component::load(&engine, "m", Path::new(&plugin("misbehave")), None).unwrap();
    let context = PluginContext {
        name: "m".into(),
        config: vec![("out".into(), "o".into())],
        state: MemoryStateStore::shared(),
        max_emits: 2,
        memory_limit: 8 << 20,
    };
    let wasm = WasmPlugin::new(loaded, context, Duration::from_millis(100));
    let mut handler = wasm.instantiate().unwrap();
    for (bad, kind) in [
        ("test.trap", FailureKind::Trap),
        ("test.loop", FailureKind::Timeout),
        ("test.hog", FailureKind::MemoryLimit),
    ] {
        match handler.handle(&event(bad)) {
            Outcome::Failed(k, _) => assert_eq!(k, kind, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
        match handler.handle(&event("test.ok")) {
            Outcome::Done(emits) => assert_eq!(emits.len(), 1, "after {bad}"),
            other => panic!("after {bad}: {other:?}"),
        }
    }
}
