//! The counting workload of the state tests: keyed events, how many each key has, and the
//! counts the `counter` plugin kept, read back from wherever its state lives.

use plexus::event::Event;
use std::collections::BTreeMap;

/// `count` events of type `test.count` over `keys` keys (`k0`...), ids `PREFIX-N`, and how
/// many each key has, with the sum under `total`.
pub fn keyed_events(
    prefix: &str,
    count: usize,
    keys: usize,
) -> (Vec<Event>, BTreeMap<String, i64>) {
    let mut expected = BTreeMap::new();
    let events = (0..count)
        .map(|i| {
            let key = format!("k{}", i % keys);
            *expected.entry(key.clone()).or_insert(0) += 1;
            crate::kafka::event(&format!("{prefix}-{i}"), "test.count", Some(&key))
        })
        .collect();
    expected.insert("total".into(), count as i64);
    (events, expected)
}

/// The counts of the keys of `expected` (and `total`) as `read` finds them: `read` gets a
/// key of the counter's namespace (`count/KEY`, `total`) and returns its value.
pub fn counts(
    expected: &BTreeMap<String, i64>,
    read: impl Fn(&str) -> Option<Vec<u8>>,
) -> BTreeMap<String, i64> {
    expected
        .keys()
        .map(|key| {
            let stored = if key == "total" {
                key.clone()
            } else {
                format!("count/{key}")
            };
            let count = read(&stored).map_or(0, |v| String::from_utf8(v).unwrap().parse().unwrap());
            (key.clone(), count)
        })
        .collect()
}

/// A reader for [`counts`] over a state backend (the local file opened after the run).
pub fn from_store(
    store: &dyn plexus::state::StateBackend,
) -> impl Fn(&str) -> Option<Vec<u8>> + '_ {
    move |key| {
        futures::executor::block_on(store.read("counter", key))
            .unwrap()
            .map(|s| s.value)
    }
}

/// A reader for [`counts`] over Redis, with `redis-cli`: keys under `prefix`.
pub fn from_redis(prefix: &str) -> impl Fn(&str) -> Option<Vec<u8>> + '_ {
    move |key| {
        crate::redis::cli(&["HGET", &format!("{prefix}:s:counter:{key}"), "v"])
            .filter(|v| !v.is_empty())
            .map(String::into_bytes)
    }
}
