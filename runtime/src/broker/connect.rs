//! Reaching the broker before anything starts (and in `plexus check --connect`): either it
//! answers, or one error within its `connect_timeout` names the address and the cause.

/// Why the broker could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// Nothing usable answered in time, or something answered with a lasting refusal.
    #[error("cannot connect to {broker} at {address}: {cause}")]
    Unreachable {
        /// `Kafka` or `Redis`.
        broker: &'static str,
        /// Where it was looked for.
        address: String,
        /// What the client reported last, or that nothing answered in time.
        cause: String,
    },
    /// The cluster answered, but topics Plexus reads or writes do not exist (Kafka with
    /// `create_topics` off).
    #[error(
        "Kafka at {address} has no topic {} and create_topics is off: create {} or set create_topics = true",
        quoted(.missing), if .missing.len() == 1 { "it" } else { "them" }
    )]
    MissingTopics {
        /// `bootstrap_servers`.
        address: String,
        /// The topics not found.
        missing: Vec<String>,
    },
    /// The process was asked to stop while the check waited.
    #[error("stopped while connecting to {broker} at {address}")]
    Stopped {
        /// `Kafka` or `Redis`.
        broker: &'static str,
        /// Where it was looked for.
        address: String,
    },
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
