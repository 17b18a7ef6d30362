//! Inventory: every `catalog.product.created.v1` opens a stock record,
//! `inventory.stock.initialised.v1`, on the `topic` config key (default `inventory.stock`).

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Created {
    product_id: String,
    #[serde(default)]
    initial_stock: u32,
}

#[derive(Serialize)]
struct Stock<'a> {
    product_id: &'a str,
    quantity: u32,
}

struct Inventory {
    topic: String,
}

impl Plugin for Inventory {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Inventory {
            topic: config.get("topic").unwrap_or("inventory.stock").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let product: Created = event.json()?;
        let stock = Stock {
            product_id: &product.product_id,
            quantity: product.initial_stock,
        };
        emit(
            Outgoing::new(&self.topic, "inventory.stock.initialised.v1")
                .key(&product.product_id)
                .json(&stock)?,
        )
    }
}

plexus_sdk::export_plugin!(Inventory);
