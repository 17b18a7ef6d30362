//! Forwards every event whose type starts with the `prefix` config value to the `out` topic,
//! with its type, key, attributes, headers, content type and data unchanged; drops the rest.
//! The Kafka benchmark's "filter plugin", set beside a plain consume-and-produce pipe, and
//! the forwarding hop of the CloudEvents conformance tests (whose dead-letter hop it is too,
//! with config `reject`).

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit};

struct Filter {
    out: String,
    prefix: String,
    /// With config `reject = "reason"`, every event is rejected instead (dead-lettered).
    reject: Option<String>,
}

impl Plugin for Filter {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Filter {
            out: config.require("out")?.to_owned(),
            prefix: config.get("prefix").unwrap_or("").to_owned(),
            reject: config.get("reject").map(str::to_owned),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        if let Some(reason) = &self.reject {
            return Err(HandleError::reject(reason.as_str()));
        }
        if !event.type_.starts_with(&self.prefix) {
            return Ok(());
        }
        let out = Outgoing::forward(&self.out, &event);
        emit(out)
    }
}

plexus_sdk::export_plugin!(Filter);
