//! The check made before anything else starts (and by `plexus check --connect`): reach the
//! server and see that it has streams with consumer-group reclaiming (`XAUTOCLAIM`, Redis
//! 6.2; the group lag Plexus reports needs 7.0), or fail within `connect_timeout` with one
//! error that names the address (never a password) and the cause.

use crate::broker::connect::ConnectError;
use crate::config::Config;
use crate::shutdown::Shutdown;
use std::time::{Duration, Instant};

/// How long one attempt may take before the check looks at the deadline again.
const STEP: Duration = Duration::from_millis(500);

/// Reaches the server `[broker.redis]` names within its `connect_timeout`, and says what it
/// found.
pub fn check(config: &Config, stop: &Shutdown) -> Result<String, ConnectError> {
    let Some(redis) = config.spec.broker.redis() else {
        return Ok("no [broker.redis] table".into());
    };
    let address = shown_address(redis.url());
    let timeout = redis.connect_timeout.get_ref().0;
    let unreachable = |cause: String| ConnectError::Unreachable {
        broker: "Redis",
        address: address.clone(),
        cause,
    };
    let client = redis::Client::open(redis.url()).map_err(|e| unreachable(e.to_string()))?;
    tracing::info!(%address, timeout_ms = timeout.as_millis() as u64, "connecting to Redis");
    let started = Instant::now();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        let attempt = super::connection(&client, STEP.min(left).max(Duration::from_millis(50)))
            .map_err(|e| e.to_string())
            .and_then(|mut con| {
                redis::cmd("INFO")
                    .arg("server")
                    .query::<String>(&mut con)
                    .map_err(|e| e.to_string())
            });
        match attempt {
            Ok(info) => {
                let version = info
                    .lines()
                    .find_map(|l| l.strip_prefix("redis_version:"))
                    .unwrap_or("unknown")
                    .trim()
                    .to_owned();
                if !supports_streams(&version) {
                    return Err(unreachable(format!(
                        "Redis {version} is too old: Plexus needs 6.2 or later (XAUTOCLAIM)"
                    )));
                }
                tracing::info!(%address, %version, "connected to Redis");
                return Ok(format!("Redis {version} at {address}"));
            }
            Err(cause) => {
                // A wrong password or database will not get better by waiting.
                if cause.contains("WRONGPASS")
                    || cause.contains("NOAUTH")
                    || cause.contains("DB index")
                {
                    return Err(unreachable(cause));
                }
                if started.elapsed() >= timeout {
                    let waited = crate::config::units::Duration(timeout);
                    return Err(unreachable(format!(
                        "{cause} (gave up after {waited}; see connect_timeout)"
                    )));
                }
                if stop.wait_timeout(Duration::from_millis(100)) {
                    return Err(ConnectError::Stopped {
                        broker: "Redis",
                        address,
                    });
                }
            }
        }
    }
}

/// The URL without its password, for messages.
pub fn shown_address(url: &str) -> String {
    match redis::parse_redis_url(url) {
        Some(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Whether `version` (`MAJOR.MINOR.PATCH`) is 6.2 or later.
fn supports_streams(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown_and_old_servers_are_refused() {
        assert_eq!(
            shown_address("redis://:secret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            shown_address("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert!(supports_streams("7.0.15"));
        assert!(supports_streams("6.2.0"));
        assert!(!supports_streams("6.0.9"));
        assert!(!supports_streams("5.0.7"));
    }
}
