//! `plexus catalog` on the examples, compared with the snapshots kept in the repository
//! (the Markdown pages are `docs/catalog/*.md`). `PLEXUS_BLESS=1` rewrites the snapshots
//! from the current output.

use plexus_tests::{plexus_command, repo};

/// (example config, format, snapshot).
const CASES: &[(&str, &str, &str)] = &[
    (
        "examples/shop/plexus.toml",
        "markdown",
        "docs/catalog/shop.md",
    ),
    (
        "examples/catalog/plexus.toml",
        "markdown",
        "docs/catalog/catalog.md",
    ),
    (
        "examples/ledger/plexus.toml",
        "markdown",
        "docs/catalog/ledger.md",
    ),
    (
        "examples/checkout-saga/plexus.toml",
        "markdown",
        "docs/catalog/checkout-saga.md",
    ),
    (
        "examples/shop/kafka.toml",
        "mermaid",
        "tests/catalog/shop-kafka.mmd",
    ),
    (
        "examples/shop/plexus.toml",
        "json",
        "tests/catalog/shop.json",
    ),
];

#[test]
fn the_catalogs_of_the_examples_match_their_snapshots() {
    let bless = std::env::var_os("PLEXUS_BLESS").is_some();
    let mut differ = Vec::new();
    for (config, format, snapshot) in CASES {
        let out = plexus_command()
            .args(["catalog", "--format", format, "--config"])
            .arg(repo(config))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let path = repo(snapshot);
        if bless {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            differ.push(format!("{snapshot} (from {config} as {format}):\n{text}"));
        }
    }
    assert!(
        differ.is_empty(),
        "catalog output differs from its snapshot (PLEXUS_BLESS=1 to accept):\n{}",
        differ.join("\n")
    );
}

#[test]
fn a_route_without_declared_emits_and_a_bad_declaration_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plexus.toml");
    std::fs::write(
        &config,
        "[plugins.p]\npath = \"p.wasm\"\nemits = { \"bad topic\" = [\"x\"] }\n[routes.r]\ntopic = \"t\"\nplugin = \"p\"\n",
    )
    .unwrap();
    let out = plexus_command()
        .args(["catalog", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("plexus.toml:3:") && stderr.contains("invalid topic name `bad topic`"),
        "{stderr}"
    );
    std::fs::write(
        &config,
        "[plugins.p]\npath = \"p.wasm\"\n[routes.r]\ntopic = \"t\"\nplugin = \"p\"\n",
    )
    .unwrap();
    let out = plexus_command()
        .args(["catalog", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.contains("| `r` | `t` | every type | `p` | not declared | `r.dlq` |"),
        "{page}"
    );
}
