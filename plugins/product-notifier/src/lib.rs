//! Product notifier: every `catalog.product.created.v1` becomes an announcement,
//! `catalog.product.announced.v1`, on the `topic` config key (default `catalog.announcements`).

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Created {
    product_id: String,
    name: String,
}

#[derive(Serialize)]
struct Announcement<'a> {
    product_id: &'a str,
    message: String,
}

struct Announcer {
    topic: String,
}

impl Plugin for Announcer {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Announcer {
            topic: config
                .get("topic")
                .unwrap_or("catalog.announcements")
                .to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let product: Created = event.json()?;
        let announcement = Announcement {
            product_id: &product.product_id,
            message: format!("New in the catalog: {}", product.name),
        };
        emit(
            Outgoing::new(&self.topic, "catalog.product.announced.v1")
                .key(&product.product_id)
                .json(&announcement)?,
        )
    }
}

plexus_sdk::export_plugin!(Announcer);
