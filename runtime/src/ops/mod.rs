//! Operating a run: what it shows while it runs.
//!
//! # Layout
//! - [`board`]: the live view of a run (routes, plugins, counters, positions), kept current
//!   by the runtime.
//! - [`sampler`]: the thread measuring dead-letter depths and logging the status line.
//! - [`server`]: the admin HTTP server (`[admin] listen`).
//! - [`prometheus`]: `/metrics`; [`status`]: `/api/status`; [`page`]: the topology page
//!   (`/`), drawn from `/api/catalog` and `/api/status`.

pub mod board;
pub mod page;
pub mod prometheus;
pub(crate) mod sampler;
pub mod server;
pub mod status;

pub use board::{Board, Phase};
pub use server::{AdminError, AdminServer};
