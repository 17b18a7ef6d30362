//! The plugin's key-value store: shared by all its instances, separate from every other
//! plugin's, entries optionally expiring. Writes take effect at once; use
//! [`compare_and_swap`] (or [`update`]) to stay correct when instances race or an event is
//! delivered twice.
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

/// An unreachable store is worth another try later; a write over a limit is not (the event
/// is rejected, so it reaches the dead-letter topic with the reason).
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

/// The value of `key` as JSON.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, StateError> {
    Ok(get(key)?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// Sets `key` to `value` as JSON.
pub fn set_json<T: Serialize>(
    key: &str,
    value: &T,
    ttl: Option<Duration>,
) -> Result<(), StateError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StateError::TooLarge(e.to_string()))?;
    set(key, &bytes, ttl)
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
