//! A plugin written as an attacker would, to prove the host's limits hold. The attack is
//! chosen by the event type; numbers come from the JSON payload:
//! - `hostile.sleep`: blocks in a WASI sleep for `secs` (default 60) seconds;
//! - `hostile.host-loop`: calls the host (`state.get`) forever;
//! - `hostile.recurse`: recurses until its stack runs out;
//! - `hostile.flood-state`: writes `keys` (default 1,000,000) keys of `value_bytes` (default
//!   100) bytes, ignoring every error, then emits a report;
//! - `hostile.flood-outbox`: emits `count` (default 20) events of `bytes` (default 8 MiB),
//!   ignoring every error, then emits a report;
//! - `hostile.emit-big`: emits one event of `bytes` bytes and succeeds;
//! - `hostile.flood-log`: writes `bytes` (default 100 MiB) of log lines, and 1 MiB each to
//!   stdout and stderr, then emits a report;
//! - `hostile.reject`: rejects the event (whatever its size);
//! - anything else: echoes the event to the `out` config topic (attribute `echoof`).
//!
//! With config `sleep_in_init_secs = N`, `init` sleeps N seconds first. Reports and echoes
//! go to the `out` config topic (default `echo`).

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit, info, state};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

struct Hostile {
    out: String,
}

fn param(event: &Event, name: &str, default: u64) -> u64 {
    event
        .json::<Value>()
        .ok()
        .and_then(|v| v.get(name).and_then(Value::as_u64))
        .unwrap_or(default)
}

/// Recurses with a frame big enough to exhaust a 1 MiB stack in a few hundred calls.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[(depth % 4096) as usize] = depth as u8;
    std::hint::black_box(&mut frame);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(frame[0])
}

impl Hostile {
    fn report(&self, event: &Event, report: Value) -> Result<(), HandleError> {
        emit(
            Outgoing::new(&self.out, "hostile.report")
                .extension("echoof", event.id.as_str())
                .json(&report)?,
        )
    }
}

impl Plugin for Hostile {
    fn init(config: &Config) -> Result<Self, String> {
        let sleep: u64 = config.parse_or("sleep_in_init_secs", 0)?;
        if sleep > 0 {
            std::thread::sleep(Duration::from_secs(sleep));
        }
        Ok(Hostile {
            out: config.get("out").unwrap_or("echo").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        match event.type_.as_str() {
            "hostile.sleep" => {
                std::thread::sleep(Duration::from_secs(param(&event, "secs", 60)));
                self.report(&event, json!({"slept": true}))
            }
            "hostile.host-loop" => loop {
                let _ = std::hint::black_box(state::get("k"));
            },
            "hostile.recurse" => {
                let depth = recurse(0);
                self.report(&event, json!({ "depth": depth }))
            }
            "hostile.flood-state" => {
                let keys = param(&event, "keys", 1_000_000);
                let value = vec![7u8; param(&event, "value_bytes", 100) as usize];
                let (mut stored, mut refused, mut first_error) = (0u64, 0u64, None);
                for i in 0..keys {
                    match state::set(&format!("{}/{i}", event.id), &value, None) {
                        Ok(()) => stored += 1,
                        Err(error) => {
                            refused += 1;
                            first_error.get_or_insert(format!("{error:?}"));
                        }
                    }
                }
                self.report(
                    &event,
                    json!({"stored": stored, "refused": refused, "first_error": first_error}),
                )
            }
            "hostile.flood-outbox" => {
                let payload = vec![b'x'; param(&event, "bytes", 8 << 20) as usize];
                let (mut accepted, mut refused, mut first_error) = (0u64, 0u64, None);
                for _ in 0..param(&event, "count", 20) {
                    let big = Outgoing::new(&self.out, "hostile.big")
                        .bytes("application/octet-stream", payload.clone());
                    match emit(big) {
                        Ok(()) => accepted += 1,
                        Err(error) => {
                            refused += 1;
                            first_error.get_or_insert(format!("{error:?}"));
                        }
                    }
                }
                self.report(
                    &event,
                    json!({"accepted": accepted, "refused": refused, "first_error": first_error}),
                )
            }
            "hostile.emit-big" => emit(
                Outgoing::new(&self.out, "hostile.big")
                    .extension("echoof", event.id.as_str())
                    .bytes(
                        "application/octet-stream",
                        vec![b'x'; param(&event, "bytes", 2 << 20) as usize],
                    ),
            ),
            "hostile.flood-log" => {
                let line = "x".repeat(1023);
                for _ in 0..param(&event, "bytes", 100 << 20) / 1024 {
                    info!("{line}");
                }
                for _ in 0..1024 {
                    let _ = writeln!(std::io::stdout(), "{line}");
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
                self.report(&event, json!({"logged": true}))
            }
            "hostile.reject" => Err(HandleError::reject(format!(
                "rejected {} of {} bytes",
                event.id,
                event.data().len()
            ))),
            _ => emit(
                Outgoing::new(&self.out, &format!("{}.echo", event.type_))
                    .extension("echoof", event.id.as_str())
                    .bytes("application/json", event.data().to_vec()),
            ),
        }
    }
}

plexus_sdk::export_plugin!(Hostile);
