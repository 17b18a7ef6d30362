//! Builds every plugin the tests use from source (scripts/build-plugins), so no `.wasm` is
//! ever committed, and tells the tests where the components are.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf();
    for watched in [
        "plugins",
        "plugin-sdk",
        "wit",
        "tests/plugins",
        "scripts/build-plugins",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // The nested cargo must not inherit this build's flags or target settings.
    let status = Command::new(root.join("scripts/build-plugins"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("running scripts/build-plugins");
    assert!(status.success(), "scripts/build-plugins failed");
    println!(
        "cargo:rustc-env=PLEXUS_TEST_PLUGINS={}",
        root.join("target/plugins").display()
    );
    println!("cargo:rustc-env=PLEXUS_REPO_ROOT={}", root.display());
}
