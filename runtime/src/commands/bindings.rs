//! Guest bindings for languages whose toolchains cannot read WIT themselves (Go and C), and
//! `plexus bindings`, which writes them out.
//!
//! The bindings are generated from the WIT this binary serves, by the generators of the
//! `wit-bindgen` project linked into it, so a plugin author needs no generator of their own
//! and a project's bindings always match the host that wrote them. `plexus new` writes them
//! into a new Go or C project; `plexus bindings` writes them again after a Plexus upgrade.

use super::new::WIT;
use std::path::{Path, PathBuf};
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::Resolve;

/// The languages bindings are generated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BindingLanguage {
    /// Go (1.24 or later, `GOOS=wasip1`, `-buildmode=c-shared`).
    Go,
    /// C (clang for `wasm32-wasi`).
    C,
}

impl BindingLanguage {
    /// Where the bindings go in a project `plexus new` writes: the module's root for Go
    /// (the generator lays the module out), `bindings/` for C.
    pub fn project_dir(self) -> &'static Path {
        match self {
            BindingLanguage::Go => Path::new(""),
            BindingLanguage::C => Path::new("bindings"),
        }
    }
}

/// The world plugins implement, parsed: the resolve and the id of `consumer`.
pub fn consumer_world() -> (Resolve, wit_bindgen_core::wit_parser::WorldId) {
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str("plexus.wit", WIT)
        .expect("the embedded WIT parses (a unit test checks it)");
    let world = resolve
        .select_world(&[package], Some("consumer"))
        .expect("the embedded WIT has the consumer world");
    (resolve, world)
}

/// The generated files for `language`, as paths relative to where they belong. For Go
/// that is the module's root (the generator lays the module out: `wit_exports.go` and a
/// package per interface); for C a directory of its own (`consumer.h`, `consumer.c` and
/// `consumer_component_type.o`, the world's type to link in).
pub fn generate(language: BindingLanguage) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    let (mut resolve, world) = consumer_world();
    let mut generator = match language {
        BindingLanguage::Go => wit_bindgen_go::Opts {
            quiet: true,
            ..Default::default()
        }
        .build(),
        BindingLanguage::C => wit_bindgen_c::Opts::default().build(),
    };
    let mut files = Files::default();
    generator
        .generate(&mut resolve, world, &mut files)
        .map_err(|e| format!("generating the {language:?} bindings: {e:#}"))?;
    Ok(files
        .iter()
        // The Go generator writes a go.mod of its own; the project's go.mod says more
        // (where the support package comes from), so it is the template's.
        .filter(|(name, _)| *name != "go.mod")
        .map(|(name, bytes)| (PathBuf::from(name), bytes.to_vec()))
        .collect())
}

/// `plexus bindings --lang LANG [--out DIR]`: writes the bindings into DIR (default: where
/// a project `plexus new` wrote, run from its root, has them); returns the exit code.
pub fn write_bindings(language: BindingLanguage, out: Option<&Path>) -> i32 {
    let dir = match out {
        Some(dir) => dir,
        None if language.project_dir() == Path::new("") => Path::new("."),
        None => language.project_dir(),
    };
    let written = generate(language).and_then(|files| {
        for (path, bytes) in &files {
            write_file(&dir.join(path), bytes)?;
        }
        Ok(files.len())
    });
    match written {
        Ok(count) => {
            println!(
                "wrote {count} files of {language:?} bindings into {}",
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

/// Writes `bytes` to `path`, making its directory first.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(language: BindingLanguage) -> Vec<String> {
        let mut names: Vec<String> = generate(language)
            .unwrap()
            .into_iter()
            .map(|(path, _)| path.display().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn go_bindings_export_the_world_and_import_every_interface() {
        let names = names(BindingLanguage::Go);
        assert!(names.contains(&"wit_exports.go".to_owned()), "{names:?}");
        for interface in ["types", "log", "emitter", "config", "clock", "state"] {
            let file = format!("plexus_plugin_{interface}/wit_bindings.go");
            assert!(names.contains(&file), "{file} in {names:?}");
        }
        assert!(!names.contains(&"go.mod".to_owned()));
        let exports = generate(BindingLanguage::Go).unwrap();
        let exports = exports
            .iter()
            .find(|(p, _)| p == Path::new("wit_exports.go"))
            .unwrap();
        let text = String::from_utf8_lossy(&exports.1);
        for export in ["//go:wasmexport init", "//go:wasmexport handle"] {
            assert!(text.contains(export), "{export}");
        }
    }

    #[test]
    fn c_bindings_are_a_header_a_source_and_the_world_type() {
        assert_eq!(
            names(BindingLanguage::C),
            ["consumer.c", "consumer.h", "consumer_component_type.o"]
        );
    }
}
