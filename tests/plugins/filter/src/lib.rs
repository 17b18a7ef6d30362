//! Forwards every event whose type starts with the `prefix` config value to the `out` topic,
//! with its key, headers, content type and payload unchanged; drops the rest. The Kafka
//! benchmark's "filter plugin", set beside a plain consume-and-produce pipe.

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit};

struct Filter {
    out: String,
    prefix: String,
}

impl Plugin for Filter {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Filter {
            out: config.require("out")?.to_owned(),
            prefix: config.get("prefix").unwrap_or("").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        if !event.type_.starts_with(&self.prefix) {
            return Ok(());
        }
        let content_type = event
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        let mut out =
            Outgoing::new(&self.out, &event.type_).bytes(content_type, event.payload.clone());
        if let Some(key) = &event.key {
            out = out.key(key);
        }
        for header in &event.headers {
            out = out.header(&header.name, &header.value);
        }
        emit(out)
    }
}

plexus_sdk::export_plugin!(Filter);
