//! `plexus new NAME --lang LANG`: writes a ready plugin project (a handler that emits and
//! rejects, a build script, a small events file, a `plexus.toml` on the embedded broker and
//! a README with the commands), and `plexus wit`: the WIT contract this binary serves.
//!
//! Everything is embedded in the binary, so a project can be started anywhere, offline. A
//! Rust project gets the SDK crate written out next to it (`plexus-sdk/`, its WIT inside),
//! so it builds without this repository; a Python or JavaScript project gets the WIT
//! (`wit/plexus.wit`) and a helper module with the Rust SDK's names (`plexus.py`,
//! `plexus.js`), and its `build.sh` installs the component toolchain (componentize-py,
//! componentize-js) into the project the first time.

use std::path::{Path, PathBuf};

/// The WIT world plugins implement (`plexus:plugin/consumer`), as this binary serves it.
pub const WIT: &str = include_str!("../../../wit/plexus.wit");

/// The languages `plexus new` writes projects in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// Rust, with the Plexus SDK.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    Js,
}

impl Language {
    fn title(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
        }
    }
}

/// Files every project has, whatever its language.
const COMMON: &[(&str, &str)] = &[
    (
        "plexus.toml",
        include_str!("../../../templates/common/plexus.toml"),
    ),
    (
        "events.jsonl",
        include_str!("../../../templates/common/events.jsonl"),
    ),
    (
        "README.md",
        include_str!("../../../templates/common/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../../templates/common/gitignore"),
    ),
];

const RUST: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../templates/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../templates/rust/src/lib.rs"),
    ),
    ("build.sh", include_str!("../../../templates/rust/build.sh")),
];

const PYTHON: &[(&str, &str)] = &[
    ("app.py", include_str!("../../../templates/python/app.py")),
    (
        "plexus.py",
        include_str!("../../../templates/python/plexus.py"),
    ),
    (
        "build.sh",
        include_str!("../../../templates/python/build.sh"),
    ),
    ("wit/plexus.wit", WIT),
];

const JS: &[(&str, &str)] = &[
    ("app.js", include_str!("../../../templates/js/app.js")),
    ("plexus.js", include_str!("../../../templates/js/plexus.js")),
    (
        "package.json",
        include_str!("../../../templates/js/package.json"),
    ),
    ("build.sh", include_str!("../../../templates/js/build.sh")),
    ("wit/plexus.wit", WIT),
];

/// The SDK crate, written out as `plexus-sdk/` in a Rust project.
const RUST_SDK: &[(&str, &str)] = &[
    (
        "plexus-sdk/Cargo.toml",
        include_str!("../../../plugin-sdk/Cargo.toml"),
    ),
    (
        "plexus-sdk/src/lib.rs",
        include_str!("../../../plugin-sdk/src/lib.rs"),
    ),
    (
        "plexus-sdk/src/config.rs",
        include_str!("../../../plugin-sdk/src/config.rs"),
    ),
    (
        "plexus-sdk/src/emit.rs",
        include_str!("../../../plugin-sdk/src/emit.rs"),
    ),
    (
        "plexus-sdk/src/event.rs",
        include_str!("../../../plugin-sdk/src/event.rs"),
    ),
    (
        "plexus-sdk/src/log.rs",
        include_str!("../../../plugin-sdk/src/log.rs"),
    ),
    (
        "plexus-sdk/src/state.rs",
        include_str!("../../../plugin-sdk/src/state.rs"),
    ),
    (
        "plexus-sdk/src/text.rs",
        include_str!("../../../plugin-sdk/src/text.rs"),
    ),
    (
        "plexus-sdk/wit/plexus.wit",
        include_str!("../../../plugin-sdk/wit/plexus.wit"),
    ),
];

/// Whether `name` can name a plugin, a crate, a file and a route: lower-case letters,
/// digits and `-`, starting with a letter, at most 64.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot name a plugin: use lower-case letters, digits and `-`, starting with a letter (at most 64)"
        ))
    }
}

/// The files of a `language` project called `name`, placeholders filled in.
pub fn project_files(name: &str, language: Language) -> Vec<(PathBuf, String)> {
    let (own, wit_path): (Vec<&(&str, &str)>, &str) = match language {
        Language::Rust => (
            RUST.iter().chain(RUST_SDK).collect(),
            "plexus-sdk/wit/plexus.wit",
        ),
        Language::Python => (PYTHON.iter().collect(), "wit/plexus.wit"),
        Language::Js => (JS.iter().collect(), "wit/plexus.wit"),
    };
    COMMON
        .iter()
        .chain(own)
        .map(|(path, text)| {
            let text = text
                .replace("{{name}}", name)
                .replace("{{crate}}", &name.replace('-', "_"))
                .replace("{{language}}", language.title())
                .replace("{{wit}}", wit_path);
            (PathBuf::from(path), text)
        })
        .collect()
}

/// Writes project `name` in `language` into `dir` (default `./NAME`), which must not exist
/// or be empty; returns the exit code.
pub fn new_project(name: &str, language: Language, dir: Option<&Path>) -> i32 {
    match write_project(name, language, dir) {
        Ok(dir) => {
            println!(
                "created {} ({} plugin `{name}`). Next:\n  cd {}\n  ./build.sh\n  plexus test {name}.wasm --events events.jsonl --types greeting.requested\n  plexus run --follow",
                dir.display(),
                language.title(),
                dir.display()
            );
            0
        }
        Err(error) => {
            eprintln!("error: {error}");
            super::EXIT_INVALID
        }
    }
}

fn write_project(name: &str, language: Language, dir: Option<&Path>) -> Result<PathBuf, String> {
    check_name(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(format!(
            "{} exists and is not empty: choose another name or --dir",
            dir.display()
        ));
    }
    for (path, text) in project_files(name, language) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        if path.extension().is_some_and(|e| e == "sh") {
            make_executable(&path)?;
        }
    }
    Ok(dir)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("making {} executable: {e}", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// `plexus wit`: prints the WIT, or writes it as `DIR/plexus.wit`; returns the exit code.
pub fn write_wit(out: Option<&Path>) -> i32 {
    let Some(dir) = out else {
        print!("{WIT}");
        return 0;
    };
    let path = dir.join("plexus.wit");
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, WIT));
    match written {
        Ok(()) => {
            println!("wrote {}", path.display());
            0
        }
        Err(error) => {
            eprintln!("error: writing {}: {error}", path.display());
            super::EXIT_INVALID
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_carries_the_same_contract_as_the_host() {
        assert_eq!(
            include_str!("../../../plugin-sdk/wit/plexus.wit"),
            WIT,
            "plugin-sdk/wit/plexus.wit must be a copy of wit/plexus.wit"
        );
    }

    #[test]
    fn every_sdk_source_file_is_written_out() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(sdk)
            .unwrap()
            .map(|e| {
                format!(
                    "plexus-sdk/src/{}",
                    e.unwrap().file_name().to_string_lossy()
                )
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = RUST_SDK
            .iter()
            .map(|(path, _)| path.to_string())
            .filter(|path| path.starts_with("plexus-sdk/src/"))
            .collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn names_that_cannot_name_a_plugin_are_refused() {
        for bad in ["", "Greeter", "9lives", "a_b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("order-audit2").unwrap();
    }

    #[test]
    fn placeholders_are_all_filled_in() {
        let every = [Language::Rust, Language::Python, Language::Js];
        for (path, text) in every.iter().flat_map(|l| project_files("order-audit", *l)) {
            for placeholder in ["{{name}}", "{{crate}}", "{{language}}", "{{wit}}"] {
                assert!(!text.contains(placeholder), "{}", path.display());
            }
        }
    }
}
