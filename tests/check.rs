//! `plexus check` refuses what is not a plugin of our world, with a clear error that names
//! the config file, line and column; and accepts the examples.

use plexus_tests::{Scenario, plexus_command, plugins, repo};

struct Checked {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(config: &std::path::Path) -> Checked {
    // A cache of its own, never beside the config: the examples live in the repository.
    let cache = tempfile::tempdir().unwrap();
    let out = plexus_command()
        .args(["check", "--config"])
        .arg(config)
        .env("PLEXUS_CACHE_DIR", cache.path())
        .output()
        .expect("run plexus check");
    Checked {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A config whose only plugin is `path`, which a route uses.
fn config_with_plugin(scenario: &Scenario, path: &str, extra: &str) -> std::path::PathBuf {
    scenario.file(
        "plexus.toml",
        &format!("[plugins.candidate]\npath = \"{path}\"\n{extra}\n[routes.r]\ntopic = \"t\"\nplugin = \"candidate\"\n"),
    )
}

fn assert_refused(checked: &Checked, expected: &str) {
    assert_eq!(
        checked.code, 1,
        "stdout: {}\nstderr: {}",
        checked.stdout, checked.stderr
    );
    assert!(checked.stderr.starts_with("error: "), "{}", checked.stderr);
    assert!(
        checked
            .stderr
            .contains("plexus.toml:2:8: plugin `candidate`: "),
        "{}",
        checked.stderr
    );
    assert!(
        checked.stderr.contains(expected),
        "expected `{expected}` in:\n{}",
        checked.stderr
    );
}

#[test]
fn a_component_of_another_world_is_refused() {
    let scenario = Scenario::new();
    let checked = check(&config_with_plugin(&scenario, plugins::WRONG_WORLD, ""));
    assert_refused(
        &checked,
        "does not implement the plexus:plugin/consumer@0.2.0 world (nor plexus:plugin/consumer@0.1.0)",
    );
}

#[test]
fn a_core_module_is_refused() {
    let scenario = Scenario::new();
    // The smallest valid core module: magic and version 1, no sections.
    let module = scenario.dir.path().join("core.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let checked = check(&config_with_plugin(
        &scenario,
        &module.display().to_string(),
        "",
    ));
    assert_refused(&checked, "is a core WebAssembly module, not a component");
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let scenario = Scenario::new();
    let text = scenario.file("plugin.wasm", "#!/bin/sh\necho not wasm\n");
    let checked = check(&config_with_plugin(
        &scenario,
        &text.display().to_string(),
        "",
    ));
    assert_refused(&checked, "is not a WebAssembly file");
}

#[test]
fn a_missing_file_is_refused() {
    let scenario = Scenario::new();
    let checked = check(&config_with_plugin(
        &scenario,
        "/nonexistent/plugin.wasm",
        "",
    ));
    assert_refused(&checked, "cannot read /nonexistent/plugin.wasm");
}

#[test]
fn a_digest_that_does_not_match_is_refused() {
    let scenario = Scenario::new();
    let pin = format!("sha256 = \"{}\"", "ab".repeat(32));
    let checked = check(&config_with_plugin(&scenario, plugins::NOOP, &pin));
    assert_refused(&checked, "sha256 mismatch");
}

#[test]
fn the_examples_check_clean() {
    for example in ["shop", "catalog", "ledger", "checkout-saga"] {
        let checked = check(&repo(&format!("examples/{example}/plexus.toml")));
        assert_eq!(checked.code, 0, "{example}: {}", checked.stderr);
        assert!(checked.stdout.starts_with("ok: "), "{}", checked.stdout);
        assert!(!checked.stdout.contains("warning"), "{}", checked.stdout);
    }
    let checked = check(&repo("examples/shop/plexus.toml"));
    assert!(checked.stdout.contains("route validate: shop.orders (shop.order.placed.v1) -> order-validator (concurrency 2, up to 5 attempts), dead letters to shop.dead-letters"), "{}", checked.stdout);
}

#[test]
fn unread_dead_letters_are_warned_about() {
    let scenario = Scenario::new();
    let checked = check(&config_with_plugin(&scenario, plugins::NOOP, ""));
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    assert!(
        checked
            .stdout
            .contains("warning: route `r`: dead-letter topic `r.dlq` has no output or route"),
        "{}",
        checked.stdout
    );
}

#[test]
fn an_init_that_refuses_its_config_is_reported() {
    let scenario = Scenario::new();
    let checked = check(&config_with_plugin(
        &scenario,
        plugins::MISBEHAVE,
        "config = { spin = \"lots\" }",
    ));
    assert_refused(
        &checked,
        "init failed: config key `spin`: cannot parse `lots`",
    );
}

#[test]
fn a_plugin_built_against_the_0_1_0_contract_is_accepted_and_named_as_such() {
    let scenario = Scenario::new();
    let config = config_with_plugin(&scenario, plugins::LEGACY_V01, "");
    let checked = check(&config);
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    assert!(
        checked
            .stdout
            .contains("(built against plexus:plugin/consumer@0.1.0: extension attributes reach it as text headers)"),
        "{}",
        checked.stdout
    );
}
