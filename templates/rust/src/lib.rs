//! `{{name}}`: a Plexus consumer plugin.
//!
//! Takes `greeting.requested` events (`{"name": "Ada"}`) and emits a `greeting.sent` event
//! to the topic named by its `out` config entry (default `greetings`). A request without a
//! name is rejected: the event goes to the route's dead-letter topic with the reason.

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit, info};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    name: String,
}

struct Greeter {
    out: String,
}

impl Plugin for Greeter {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Greeter {
            out: config.get("out").unwrap_or("greetings").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let request: Request = event.json()?;
        if request.name.trim().is_empty() {
            return Err(HandleError::reject("a greeting needs a name"));
        }
        info!("greeting {}", request.name);
        emit(
            Outgoing::new(&self.out, "greeting.sent")
                .key(request.name.as_str())
                .json(&json!({ "greeting": format!("Hello, {}!", request.name) }))?,
        )
    }
}

plexus_sdk::export_plugin!(Greeter);
