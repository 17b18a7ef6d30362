//! `plexus catalog`: the event catalog of a config (see [`crate::catalog`]) as Markdown, a
//! Mermaid flowchart or JSON, on standard output.

use super::load_config;
use crate::catalog::{Catalog, render};
use std::io::Write;
use std::path::Path;

/// What `plexus catalog` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A page: the flowchart, then tables of topics, event types and routes.
    Markdown,
    /// The flowchart alone.
    Mermaid,
    /// The catalog as data.
    Json,
}

/// Writes the catalog of `config_path` to `out` in `format`; returns the exit code.
pub fn catalog(config_path: &Path, format: Format, out: &mut dyn Write) -> i32 {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let catalog = Catalog::of(&config);
    let text = match format {
        Format::Markdown => render::markdown(&catalog),
        Format::Mermaid => render::mermaid(&catalog),
        Format::Json => {
            let mut json = serde_json::to_string_pretty(&catalog).expect("a catalog serialises");
            json.push('\n');
            json
        }
    };
    match out.write_all(text.as_bytes()) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: writing the catalog: {error}");
            super::EXIT_INVALID
        }
    }
}
