//! A plugin that misbehaves on request, chosen by the event type:
//! - `test.trap`: panics;
//! - `test.loop`: never returns;
//! - `test.hog`: allocates memory until the host refuses more;
//! - `test.reject`: rejects;
//! - `test.emit-then-reject`: stages an event, then rejects (the event must not appear);
//! - `test.retry`: asks for a retry until attempt number `n` (from the JSON payload), then
//!   echoes;
//! - `test.bad-json`: emits a payload declared `application/json` that is not JSON;
//! - `test.sandbox`: tries to read a file and an environment variable, to connect over
//!   TCP, and reads WASI's wall and monotonic clocks; emits what it saw;
//! - with config `trap_in_init = "yes"`, `init` panics;
//! - anything else: echoes the event to the `out` config topic (extension attributes
//!   `echoof`, `echoattempt` and `echotag`, the `tag` config value) after checking, in the state
//!   store, that per-key sequence numbers (`seq` in the payload) never go backwards.

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit, state};
use serde_json::{Value, json};

struct Misbehave {
    out: String,
    spin: u64,
    tag: String,
}

impl Misbehave {
    fn echo(&self, event: &Event) -> Result<(), HandleError> {
        let payload: Value = event.json().unwrap_or(Value::Null);
        if let (Some(key), Some(seq)) =
            (event.key_str(), payload.get("seq").and_then(Value::as_i64))
        {
            let last = state::get(&format!("seq/{key}"))?
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<i64>().ok());
            if last.is_some_and(|last| last >= seq) {
                return Err(HandleError::reject(format!(
                    "key {key}: seq {seq} after {last:?}"
                )));
            }
            state::set(&format!("seq/{key}"), seq.to_string().as_bytes(), None)?;
        }
        // Vary the time per event so keys on different workers interleave.
        let mut x = event.offset;
        for i in 0..(self.spin * (event.offset % 7)) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let mut out = Outgoing::new(&self.out, &format!("{}.echo", event.type_))
            .bytes("application/json", event.data().to_vec())
            .extension("echoof", event.id.as_str())
            .extension("echoattempt", event.attempt.to_string())
            .extension("echotag", self.tag.as_str());
        if let Some(key) = &event.key {
            out = out.key(key);
        }
        emit(out)
    }
}

impl Plugin for Misbehave {
    fn init(config: &Config) -> Result<Self, String> {
        if config.get("trap_in_init") == Some("yes") {
            panic!("asked to trap in init");
        }
        Ok(Misbehave {
            out: config.get("out").unwrap_or("echo").to_owned(),
            spin: config.parse_or("spin", 0)?,
            tag: config.get("tag").unwrap_or("").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        match event.type_.as_str() {
            "test.trap" => panic!("boom: asked to trap on {}", event.id),
            "test.loop" => loop {
                std::hint::black_box(&event);
            },
            "test.hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "test.reject" => Err(HandleError::reject(format!("rejected {}", event.id))),
            "test.emit-then-reject" => {
                emit(Outgoing::new(&self.out, "test.must-not-appear"))?;
                Err(HandleError::reject("staged an event, then failed"))
            }
            "test.bad-json" => emit(
                Outgoing::new(&self.out, "test.must-not-appear")
                    .bytes("application/json", "{not json"),
            ),
            "test.retry" => {
                let until = event
                    .json::<Value>()?
                    .get("n")
                    .and_then(Value::as_u64)
                    .unwrap_or(3);
                if u64::from(event.attempt) < until {
                    return Err(HandleError::retry(format!(
                        "attempt {} of {until}",
                        event.attempt
                    )));
                }
                self.echo(&event)
            }
            "test.sandbox" => {
                let file = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string());
                let dir = std::fs::read_dir("/")
                    .map(|d| d.count())
                    .map_err(|e| e.to_string());
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let home = std::env::var("HOME").ok();
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(u64::MAX);
                // The monotonic clock must move across a few milliseconds of work.
                let started = std::time::Instant::now();
                let mut spun = 0u64;
                while started.elapsed() < std::time::Duration::from_millis(5) && spun < 1 << 32 {
                    spun = std::hint::black_box(spun + 1);
                }
                let monotonic = started.elapsed().as_nanos() as u64;
                let tcp = std::net::TcpStream::connect("127.0.0.1:9").map_err(|e| e.to_string());
                let saw = json!({
                    "file": file.is_ok(), "file_error": file.err(),
                    "dir": dir.is_ok(),
                    "env": env, "home": home,
                    "tcp": tcp.is_ok(), "tcp_error": tcp.err(),
                    "wasi_clock_millis": clock,
                    "monotonic_nanos": monotonic,
                    "host_clock_millis": plexus_sdk::now_millis(),
                });
                emit(Outgoing::new(&self.out, "test.sandbox.report").json(&saw)?)
            }
            _ => self.echo(&event),
        }
    }
}

plexus_sdk::export_plugin!(Misbehave);
