//! Builds every plugin workspace of the repository for `wasm32-wasip2` with `cargo`, copies
//! the components to `target/plugins/`, and writes `guests.rs` with a constant per component.
//! Detects the toolchain `scripts/setup-wasm-toolchain` prepared; never installs one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The plugin workspaces, relative to the repository.
const WORKSPACES: [&str; 2] = ["plugins", "tests/plugins"];

/// How components are built here.
enum Toolchain {
    /// rustup's toolchain with the `wasm32-wasip2` target.
    Rustup,
    /// Debian's `rustc-web`, building the standard library itself.
    Debian,
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("guests/ sits in the repository");
    let toolchain = detect_toolchain();
    let out = root.join("target/plugins");
    std::fs::create_dir_all(&out).expect("creating target/plugins");
    for shared in [
        "plugin-sdk/src",
        "plugin-sdk/wit",
        "plugin-sdk/Cargo.toml",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(shared).display());
    }
    let mut constants = String::new();
    for workspace in WORKSPACES {
        let dir = root.join(workspace);
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.toml").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.lock").display()
        );
        let target_dir = build(root, &dir, &toolchain);
        for member in members(&dir) {
            let member_dir = dir.join(&member);
            println!(
                "cargo:rerun-if-changed={}",
                member_dir.join("src").display()
            );
            println!(
                "cargo:rerun-if-changed={}",
                member_dir.join("Cargo.toml").display()
            );
            let package = package_name(&member_dir);
            let file = format!("{}.wasm", package.replace('-', "_"));
            let built = target_dir.join("wasm32-wasip2/release").join(&file);
            let component = out.join(&file);
            std::fs::copy(&built, &component)
                .unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
            writeln!(
                constants,
                "/// `{workspace}/{member}`, built.\npub const {}: &str = {:?};",
                package.replace('-', "_").to_uppercase(),
                component.display().to_string()
            )
            .expect("writing to a string");
        }
    }
    writeln!(
        constants,
        "/// Where every component is: the example configs name this directory.\npub const DIR: &str = {:?};",
        out.display().to_string()
    )
    .expect("writing to a string");
    let generated =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("guests.rs");
    std::fs::write(&generated, constants).expect("writing guests.rs");
}

fn detect_toolchain() -> Toolchain {
    let rustup_has_target = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "wasm32-wasip2")
        });
    if rustup_has_target {
        return Toolchain::Rustup;
    }
    if Path::new("/usr/bin/rustc").is_file() && Path::new("/usr/lib/wasm32-wasi").is_dir() {
        return Toolchain::Debian;
    }
    panic!(
        "no toolchain builds wasm32-wasip2 components here: run scripts/setup-wasm-toolchain \
         (it adds the rustup target, or installs Debian's rustc-web)"
    );
}

/// Builds workspace `dir` in release mode; returns its target directory.
fn build(root: &Path, dir: &Path, toolchain: &Toolchain) -> PathBuf {
    // Source paths inside the components (panic locations) are made relative to the
    // repository, so a plugin's digest does not depend on where the checkout lives.
    let remap = format!("--remap-path-prefix={}=.", root.display());
    let mut cargo;
    let target_dir;
    match toolchain {
        Toolchain::Rustup => {
            target_dir = root.join("target/wasm");
            cargo = Command::new("cargo");
            cargo
                .args(["build", "--release", "--target", "wasm32-wasip2", "-q"])
                .env("RUSTFLAGS", remap);
        }
        Toolchain::Debian => {
            // Debian's toolchain, pinned so rustup's tools on PATH are never mixed in, in a
            // target directory of its own.
            target_dir = root.join("target/wasm-debian");
            cargo = Command::new("/usr/bin/cargo");
            cargo
                .args([
                    "build",
                    "-Zbuild-std=std,panic_abort",
                    "--target",
                    "wasm32-wasip2",
                ])
                .args(["--release", "-q"])
                .env("PATH", "/usr/bin:/bin")
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTDOC", "/usr/bin/rustdoc")
                .env("RUSTC_BOOTSTRAP", "1")
                .env(
                    "RUSTFLAGS",
                    format!(
                        "{remap} -C link-arg=--wasm-ld-path=/usr/lib/llvm-22/bin/wasm-ld \
                         -C link-self-contained=no -L native=/usr/lib/wasm32-wasi"
                    ),
                );
        }
    }
    // The nested cargo must not inherit this build's flags, target or profile settings.
    for inherited in [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cargo.env_remove(inherited);
    }
    let status = cargo
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("running cargo for {}: {e}", dir.display()));
    assert!(
        status.success(),
        "building the plugins of {} failed",
        dir.display()
    );
    target_dir
}

/// The member directories of the workspace in `dir`.
fn members(dir: &Path) -> Vec<String> {
    let manifest = read_toml(&dir.join("Cargo.toml"));
    manifest["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .map(|m| m.as_str().expect("a member path").to_owned())
        .collect()
}

/// The package name of the crate in `dir`.
fn package_name(dir: &Path) -> String {
    read_toml(&dir.join("Cargo.toml"))["package"]["name"]
        .as_str()
        .expect("package.name")
        .to_owned()
}

fn read_toml(path: &Path) -> toml::Table {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}
