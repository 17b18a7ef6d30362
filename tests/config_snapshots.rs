//! Invalid configs and the exact errors they produce: each `config/invalid/NAME.toml` has
//! its expected `plexus check` output beside it in `NAME.err`. After a deliberate change of
//! wording, `PLEXUS_BLESS=1 cargo test --test config_snapshots` rewrites the `.err` files;
//! review the diff before committing it.

use plexus::config::Config;
use std::path::Path;

#[test]
fn invalid_configs_give_the_expected_errors() {
    let dir = plexus_tests::repo("tests/config/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
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
        if std::env::var_os("PLEXUS_BLESS").is_some() {
            std::fs::write(case.with_extension("err"), format!("{actual}\n")).unwrap();
        }
        let expected = std::fs::read_to_string(case.with_extension("err"))
            .unwrap_or_else(|_| panic!("{name} has no .err file"));
        if actual.trim_end() != expected.trim_end() {
            failures.push(format!(
                "{name}:\n  expected: {}\n  actual:   {}",
                expected.trim_end(),
                actual.trim_end()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_example_configs_parse() {
    for example in ["shop", "catalog"] {
        let path = plexus_tests::repo(&format!("examples/{example}/plexus.toml"));
        Config::load(&path).unwrap_or_else(|e| panic!("{example}: {e}"));
    }
}
