//! The live topology page served at `/`: one self-contained HTML document (script and
//! style inline, nothing fetched from elsewhere) that reads `/api/catalog` for the graph
//! (topics → routes → topics, dead letters dashed) and `/api/status` every second for each
//! route's rate, lag, in-flight and dead-letter counts. The same figures are in a table
//! under the graph, for reading and for tests.

/// The page.
pub const HTML: &str = include_str!("page.html");
