//! The `plexus` subcommands. Each returns the process exit code; the binary parses the
//! arguments, sets up logging and signals, and exits with it.
//!
//! # Layout
//! - [`run`]: `plexus run`.
//! - [`check`]: `plexus check`.
//! - [`test`]: `plexus test`.
//! - [`catalog`]: `plexus catalog`.
//! - [`new`]: `plexus new` and `plexus wit`.
//! - [`bindings`]: Go and C bindings of the WIT world, and `plexus bindings`.
//! - [`componentize`]: `plexus componentize`, a core module made a plugin component.
//! - [`positions`]: `plexus positions`.
//! - [`replay`]: `plexus replay`.
//! - [`table`]: aligned plain-text tables.

pub mod bindings;
pub mod catalog;
pub mod check;
pub mod componentize;
pub mod new;
pub mod positions;
pub mod replay;
pub mod run;
mod table;
pub mod test;

use crate::config::Config;
use crate::config::error::ConfigErrors;
use std::path::Path;

/// Exit code for a run or check that found problems in its input.
pub const EXIT_INVALID: i32 = 1;

/// Exit code when the producer failed for good mid-run (`EX_SOFTWARE`): nothing more can be
/// published; a restart resumes from the committed positions.
pub const EXIT_PRODUCER_FATAL: i32 = 70;

/// Exit code when the broker cannot be used: unreachable, refusing the TLS handshake or the
/// credentials, or missing topics.
pub const EXIT_UNREACHABLE: i32 = 2;

/// Loads a config, printing its errors (one `error:` line each) on failure.
fn load_config(path: &Path) -> Result<Config, i32> {
    Config::load(path).map_err(|errors| {
        print_errors(&errors);
        EXIT_INVALID
    })
}

fn print_errors(errors: &ConfigErrors) {
    eprintln!("{errors}");
}
