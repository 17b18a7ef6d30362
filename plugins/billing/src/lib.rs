//! Billing: every `catalog.product.created.v1` registers its price,
//! `billing.price.registered.v1`, on the `topic` config key (default `billing.prices`).
//! A product without a price cannot be billed: rejected to the dead-letter topic.

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Created {
    product_id: String,
    price_cents: Option<u64>,
}

#[derive(Serialize)]
struct Price<'a> {
    product_id: &'a str,
    price_cents: u64,
    currency: &'a str,
}

struct Billing {
    topic: String,
    currency: String,
}

impl Plugin for Billing {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Billing {
            topic: config.get("topic").unwrap_or("billing.prices").to_owned(),
            currency: config.get("currency").unwrap_or("EUR").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let product: Created = event.json()?;
        let price_cents = product.price_cents.ok_or_else(|| {
            HandleError::reject(format!("product {} has no price", product.product_id))
        })?;
        let price = Price {
            product_id: &product.product_id,
            price_cents,
            currency: &self.currency,
        };
        emit(
            Outgoing::new(&self.topic, "billing.price.registered.v1")
                .key(&product.product_id)
                .json(&price)?,
        )
    }
}

plexus_sdk::export_plugin!(Billing);
