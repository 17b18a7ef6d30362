//! The plugin's key-value store: shared by all its instances (and, on the host's `redis`
//! backend, by every process of the consumer group), separate from every other plugin's,
//! entries optionally expiring.
//!
//! Transactional per event. What [`handle`](crate::Plugin::handle) writes is visible to the
//! handler at once and to other events only after the event was handled successfully, when
//! the host commits it with a record that the route applied the event; a failed handler's
//! writes are dropped, so a retry starts from the committed state. An event delivered again
//! after a crash whose writes were committed is not handled again (what it emitted is
//! published again), so a counter counts each event once without remembering ids. What a
//! handler read is checked at the commit: if a concurrent event changed it, this event is
//! handled again on the new value, so [`update`] and [`increment`] never lose an update.
//! `init` may read but not write.
//!
//! The store holds a plugin to its limits: a key of at most 1 KiB, a value of at most
//! 1 MiB, and a namespace of at most `max_state_keys` keys and `max_state_bytes` of keys and
//! values (`[plugins.NAME.limits]`). A write past them fails with
//! [`StateError::TooLarge`], whose message names the limit.

use crate::bindings::plexus::plugin::state as host;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

pub use host::StateError;

/// An unreachable store is worth another try later (the host waits for the store and handles
/// the event again, never dead-lettering it for that); a write over a limit is not (the
/// event is rejected, so it reaches the dead-letter topic with the reason).
impl From<StateError> for crate::HandleError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::Unavailable(reason) => {
                crate::HandleError::Retry(format!("state unavailable: {reason}"))
            }
            StateError::TooLarge(reason) => crate::HandleError::Reject(format!("state: {reason}")),
        }
    }
}

fn millis(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| t.as_millis() as u64)
}

/// The value of `key`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
    host::get(key)
}

/// Sets `key` to `value`, expiring after `ttl` if given.
pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StateError> {
    host::set(key, value, millis(ttl))
}

/// Removes `key`; whether it was there.
pub fn delete(key: &str) -> Result<bool, StateError> {
    host::delete(key)
}

/// Replaces the value of `key` with `new` (`None` deletes) only if it is `expected`
/// (`None`: absent). Whether it did.
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
    ttl: Option<Duration>,
) -> Result<bool, StateError> {
    host::compare_and_swap(key, expected, new, millis(ttl))
}

/// Why [`get_json`] or [`set_json`] failed.
#[derive(Debug)]
pub enum JsonStateError {
    /// The store refused (see [`StateError`]).
    State(StateError),
    /// The value stored under `key` is not JSON of the type asked for, or the value given
    /// cannot be written as JSON (a map with non-string keys, a failing `Serialize`).
    Json {
        /// The key read or written.
        key: String,
        /// What serde_json said.
        error: serde_json::Error,
    },
}

impl std::fmt::Display for JsonStateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonStateError::State(error) => write!(f, "{error:?}"),
            JsonStateError::Json { key, error } => write!(f, "state key `{key}`: JSON: {error}"),
        }
    }
}

impl std::error::Error for JsonStateError {}

impl From<StateError> for JsonStateError {
    fn from(error: StateError) -> Self {
        JsonStateError::State(error)
    }
}

/// A store error as [`StateError`] converts; a JSON error is a bug or a schema change that
/// another try will not cure, so the event is rejected with the key and the reason.
impl From<JsonStateError> for crate::HandleError {
    fn from(error: JsonStateError) -> Self {
        match error {
            JsonStateError::State(error) => error.into(),
            json @ JsonStateError::Json { .. } => crate::HandleError::Reject(json.to_string()),
        }
    }
}

/// The value of `key` decoded from JSON: `None` if absent, an error if it is not JSON of
/// type `T` (never silently `None`).
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, JsonStateError> {
    get(key)?.map(|bytes| decode_json(key, &bytes)).transpose()
}

/// Sets `key` to `value` as JSON, expiring after `ttl` if given.
pub fn set_json<T: Serialize>(
    key: &str,
    value: &T,
    ttl: Option<Duration>,
) -> Result<(), JsonStateError> {
    let bytes = encode_json(key, value)?;
    Ok(set(key, &bytes, ttl)?)
}

fn decode_json<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, JsonStateError> {
    serde_json::from_slice(bytes).map_err(|error| JsonStateError::Json {
        key: key.to_owned(),
        error,
    })
}

fn encode_json<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, JsonStateError> {
    serde_json::to_vec(value).map_err(|error| JsonStateError::Json {
        key: key.to_owned(),
        error,
    })
}

/// Applies `change` to the value of `key` atomically (compare-and-swap, retried on
/// conflict) and returns the new value.
pub fn update(
    key: &str,
    mut change: impl FnMut(Option<&[u8]>) -> Vec<u8>,
) -> Result<Vec<u8>, StateError> {
    loop {
        let current = get(key)?;
        let new = change(current.as_deref());
        if compare_and_swap(key, current.as_deref(), Some(&new), None)? {
            return Ok(new);
        }
    }
}

/// Adds `by` to the integer stored (as decimal text) under `key` and returns the sum.
pub fn increment(key: &str, by: i64) -> Result<i64, StateError> {
    let new = update(key, |current| {
        let now = current
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0);
        (now + by).to_string().into_bytes()
    })?;
    Ok(String::from_utf8_lossy(&new).parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_value_of_another_shape_is_an_error_that_rejects_the_event() {
        let error = decode_json::<u64>("total", b"{\"cents\": 5}").unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("state key `total`: JSON: "),
            "{message}"
        );
        match crate::HandleError::from(error) {
            crate::HandleError::Reject(reason) => assert_eq!(reason, message),
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(decode_json::<u64>("total", b"42").unwrap(), 42);
    }

    #[test]
    fn a_value_that_cannot_be_json_is_a_json_error_not_too_large() {
        let map: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let error = encode_json("pairs", &map).unwrap_err();
        assert!(matches!(&error, JsonStateError::Json { key, .. } if key == "pairs"));
    }

    #[test]
    fn store_errors_keep_their_meaning() {
        let unavailable = JsonStateError::from(StateError::Unavailable("down".into()));
        assert!(matches!(
            crate::HandleError::from(unavailable),
            crate::HandleError::Retry(_)
        ));
    }
}
