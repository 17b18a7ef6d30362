//! The connection check made before anything else starts (and by `plexus check --connect`):
//! reach the cluster, or fail within `connect_timeout` with one error that names the address
//! and the cause.
//!
//! librdkafka never gives up on a cluster by itself: it reconnects quietly and reports
//! causes through its error callback. The check listens to that callback while it asks for
//! metadata, and stops at once on a cause that waiting cannot cure (a failed TLS handshake,
//! a client certificate refused, rejected credentials, the wrong security protocol for the
//! listener); a refused or silent
//! address is given until the deadline, since a broker may be restarting.

use super::oauth::TokenSource;
use super::roles::Role;
use super::{KafkaSettings, client_config};
use crate::broker::connect::ConnectError;
use crate::config::Config;
use crate::shutdown::Shutdown;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one metadata request may take before the check looks at the reasons again.
const STEP: Duration = Duration::from_millis(250);

/// How many queued librdkafka events the check serves each time it looks at the reasons.
const EVENTS_PER_LOOK: usize = 64;

/// What a successful check saw.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    /// Brokers in the cluster's metadata.
    pub brokers: usize,
    /// Topics that exist.
    pub topics: BTreeSet<String>,
}

/// Records the causes librdkafka reports while the check runs.
struct Reasons {
    tokens: TokenSource,
    last: Mutex<Option<(Option<RDKafkaErrorCode>, String)>>,
}

impl Reasons {
    fn last(&self) -> Option<(Option<RDKafkaErrorCode>, String)> {
        self.last.lock().expect("reasons lock").clone()
    }
}

impl ClientContext for Reasons {
    super::bearer_tokens!();

    fn error(&self, error: KafkaError, reason: &str) {
        *self.last.lock().expect("reasons lock") =
            Some((error.rdkafka_error_code(), reason.to_owned()));
    }

    // librdkafka's own log lines would repeat the same causes on every reconnect.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _facility: &str, _message: &str) {}
}

impl ProducerContext for Reasons {
    type DeliveryOpaque = ();

    fn delivery(&self, _result: &DeliveryResult<'_>, _opaque: ()) {}
}

/// Whether a reported cause is a configuration mistake that retrying will not cure.
fn is_lasting(code: Option<RDKafkaErrorCode>, reason: &str) -> bool {
    matches!(
        code,
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
    ) || reason.contains("SSL handshake failed")
        // An OpenSSL error after the handshake: the broker refused our certificate.
        || reason.contains("SSL routines")
        || reason.contains("incorrect security.protocol")
        || reason.contains("SASL authentication error")
}

/// Reaches the cluster `[broker.kafka]` names (and, with `create_topics` off, finds every
/// topic the config names) within `connect_timeout`, and says what it found.
pub fn check(config: &Config, stop: &Shutdown) -> Result<String, ConnectError> {
    let Some(kafka) = config.spec.broker.kafka() else {
        return Ok("no [broker.kafka] table".into());
    };
    let named = config.named_topics();
    let needed = if kafka.create_topics {
        &[][..]
    } else {
        &named[..]
    };
    let settings = KafkaSettings::of(kafka);
    let timeout = kafka.connect_timeout.get_ref().0;
    let address = &settings.bootstrap_servers;
    tracing::info!(%address, timeout_ms = timeout.as_millis() as u64, "connecting to Kafka");
    let info = check_connection(&settings, needed, timeout, stop)?;
    tracing::info!(%address, brokers = info.brokers, "connected to Kafka");
    let missing: Vec<&str> = named
        .iter()
        .filter(|t| !info.topics.contains(*t))
        .map(String::as_str)
        .collect();
    let mut line = format!("Kafka at {address}: {} broker(s)", info.brokers);
    if missing.is_empty() {
        line += ", every topic exists";
    } else {
        line += &format!(
            ", {} created at start: {}",
            missing.len(),
            missing.join(", ")
        );
    }
    Ok(line)
}

/// Connects to the cluster `settings` name and checks that every topic of `needed` exists,
/// within `timeout`; gives up early when `stop` is set.
pub fn check_connection(
    settings: &KafkaSettings,
    needed: &[String],
    timeout: Duration,
    stop: &Shutdown,
) -> Result<ClusterInfo, ConnectError> {
    let address = settings.bootstrap_servers.clone();
    let unreachable = |cause: String| ConnectError::Unreachable {
        broker: "Kafka",
        address: address.clone(),
        cause,
    };
    // A producer handle: it joins no group and subscribes to nothing.
    let config = client_config(settings, Role::Producer);
    let client: BaseProducer<Reasons> = config
        .create_with_context(Reasons {
            tokens: settings.tokens.clone(),
            last: Mutex::default(),
        })
        .map_err(|error| unreachable(format!("invalid client settings: {error}")))?;
    let started = Instant::now();
    loop {
        if stop.is_triggered() {
            return Err(ConnectError::Stopped {
                broker: "Kafka",
                address,
            });
        }
        let left = timeout.saturating_sub(started.elapsed());
        match client.client().fetch_metadata(None, STEP.min(left)) {
            Ok(metadata) => {
                let topics: BTreeSet<String> = metadata
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| t.name().to_owned())
                    .collect();
                let missing: Vec<String> = needed
                    .iter()
                    .filter(|t| !topics.contains(*t))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    return Err(ConnectError::MissingTopics { address, missing });
                }
                return Ok(ClusterInfo {
                    brokers: metadata.brokers().len(),
                    topics,
                });
            }
            Err(error) => {
                // Serve the error callback, so the causes are current; a request that failed
                // at once (no broker up) should not make this loop spin.
                if stop.wait_timeout(Duration::from_millis(50)) {
                    return Err(ConnectError::Stopped {
                        broker: "Kafka",
                        address,
                    });
                }
                // One poll serves one event, and log events queue ahead of errors.
                for _ in 0..EVENTS_PER_LOOK {
                    client.poll(Duration::ZERO);
                }
                let reason = client.context().last();
                if let Some((code, cause)) = &reason
                    && is_lasting(*code, cause)
                {
                    return Err(unreachable(cause.clone()));
                }
                if started.elapsed() >= timeout {
                    // As written in the config: `10s`, not `10000ms`.
                    let waited = crate::config::units::Duration(timeout);
                    let cause = match reason {
                        Some((_, cause)) => cause,
                        None => format!("no answer within {waited} ({error})"),
                    };
                    return Err(unreachable(format!(
                        "{cause} (gave up after {waited}; see connect_timeout)"
                    )));
                }
            }
        }
    }
}
