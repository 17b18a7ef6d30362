//! The smallest plugin that shows which version handled an event: it emits one empty event
//! to the `out` topic (the host stamps `plexushandledby` on it). Used by the reload
//! benchmark as the "small plugin".

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit};

struct Stamp {
    out: String,
}

impl Plugin for Stamp {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Stamp {
            out: config.get("out").unwrap_or("stamped").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let mut out = Outgoing::new(&self.out, "test.stamped");
        if let Some(key) = &event.key {
            out = out.key(key);
        }
        emit(out)
    }
}

plexus_sdk::export_plugin!(Stamp);
