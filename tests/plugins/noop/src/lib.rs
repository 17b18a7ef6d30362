//! Accepts every event and does nothing: measures the cost of the call itself.

use plexus_sdk::{Config, Event, HandleError, Plugin};

struct Noop;

impl Plugin for Noop {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Noop)
    }

    fn handle(&mut self, _event: Event) -> Result<(), HandleError> {
        Ok(())
    }
}

plexus_sdk::export_plugin!(Noop);
