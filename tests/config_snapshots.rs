//! Configs and what they parse to. Each `config/invalid/NAME.toml` has its expected
//! `plexus check` errors beside it in `NAME.err`; each `config/valid/NAME.toml` sets every key
//! and has the validated config it gives (values, units as written, resolved paths, secrets
//! redacted) beside it in `NAME.snap`. After a deliberate change,
//! `PLEXUS_BLESS=1 cargo test --test config_snapshots` rewrites the `.err` and `.snap` files;
//! review the diff before committing it.

use plexus::config::Config;
use std::path::{Path, PathBuf};

/// The `.toml` files of `tests/config/KIND`, sorted.
fn cases(kind: &str) -> Vec<PathBuf> {
    let dir = plexus_tests::repo(&format!("tests/config/{kind}"));
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    cases
}

/// Compares `actual` with the file `expected_file` (or writes it, when blessing); a
/// difference is added to `failures`.
fn compare(name: &str, actual: &str, expected_file: &Path, failures: &mut Vec<String>) {
    if std::env::var_os("PLEXUS_BLESS").is_some() {
        std::fs::write(expected_file, format!("{actual}\n")).unwrap();
    }
    let expected = std::fs::read_to_string(expected_file)
        .unwrap_or_else(|_| panic!("{name} has no {}", expected_file.display()));
    if actual.trim_end() != expected.trim_end() {
        failures.push(format!(
            "{name}:\n  expected: {}\n  actual:   {}",
            expected.trim_end(),
            actual.trim_end()
        ));
    }
}

#[test]
fn invalid_configs_give_the_expected_errors() {
    let cases = cases("invalid");
    assert!(
        cases.len() >= 10,
        "expected at least ten cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(case).unwrap();
        let actual = match Config::parse(&text, &name, Path::new(".")) {
            Ok(_) => "(no error)".to_owned(),
            Err(errors) => errors.to_string(),
        };
        compare(&name, &actual, &case.with_extension("err"), &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn configs_with_every_key_set_give_the_values_written() {
    let cases = cases("valid");
    assert!(cases.len() >= 2, "an embedded and a Kafka case");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let dir = case.parent().unwrap();
        let config = Config::load(case).unwrap_or_else(|e| panic!("{name}: {e}"));
        let actual = render(&config.spec, dir);
        for secret in ["key-secret", "sasl-secret", "keystore-secret"] {
            assert!(!actual.contains(secret), "{name}: a secret is shown");
        }
        compare(&name, &actual, &case.with_extension("snap"), &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The validated config as text without what only locates it: spans, and the directory the
/// paths were resolved against (shown as `<dir>`).
fn render(spec: &impl std::fmt::Debug, dir: &Path) -> String {
    format!("{spec:#?}")
        .lines()
        .filter(|line| !line.trim_start().starts_with("span: "))
        .map(|line| line.replace(&dir.display().to_string(), "<dir>"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_configs_parse() {
    for example in [
        "shop/plexus",
        "shop/kafka",
        "shop/redis",
        "catalog/plexus",
        "ledger/plexus",
        "ledger/kafka",
        "checkout-saga/plexus",
    ] {
        let path = plexus_tests::repo(&format!("examples/{example}.toml"));
        Config::load(&path).unwrap_or_else(|e| panic!("{example}: {e}"));
    }
}
