//! Counts events per key in the state store (`count/KEY`, decimal text, as the SDK's
//! `increment` keeps it) and, with `total = true`, the events of every key together
//! (`total`: a key every worker writes, so their commits conflict), and emits the new
//! count of the key to the `out` topic, if configured. The state tests and the state
//! benchmark count with it; the tests read the counts back from the store after the run.
//!
//! Config: `out` (optional), `spin` (a busy loop per event, to make a stream last) and
//! `ttl_ms` (counts that expire).

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit, state};
use std::time::Duration;

struct Counter {
    out: Option<String>,
    spin: u64,
    ttl: Option<Duration>,
    total: bool,
}

impl Plugin for Counter {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Counter {
            out: config.get("out").map(str::to_owned),
            spin: config.parse_or("spin", 0)?,
            ttl: config
                .get("ttl_ms")
                .map(|ms| ms.parse().map(Duration::from_millis))
                .transpose()
                .map_err(|e| format!("ttl_ms: {e}"))?,
            total: config.parse_or("total", false)?,
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let mut spun = 0u64;
        for i in 0..self.spin {
            spun = std::hint::black_box(spun.wrapping_add(i));
        }
        let key = event.key.as_deref().map_or_else(
            || "-".to_owned(),
            |k| String::from_utf8_lossy(k).into_owned(),
        );
        let count_key = format!("count/{key}");
        let count = match self.ttl {
            None => state::increment(&count_key, 1)?,
            Some(ttl) => {
                let now = state::get(&count_key)?
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or(0);
                state::set(&count_key, (now + 1).to_string().as_bytes(), Some(ttl))?;
                now + 1
            }
        };
        if self.total {
            state::increment("total", 1)?;
        }
        match &self.out {
            Some(out) => emit(
                Outgoing::new(out, "test.counted")
                    .key(&key)
                    .json(&serde_json::json!({ "key": key, "count": count, "of": event.id }))?,
            ),
            None => Ok(()),
        }
    }
}

plexus_sdk::export_plugin!(Counter);
