//! Order validator: `shop.order.placed.v1` in, `shop.order.validated.v1` or
//! `shop.order.rejected.v1` (with the reason) out, on the topic in the `outcomes` config key.
//! A payload that is not an order at all is rejected to the dead-letter topic.

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit, info};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Customer {
    id: String,
    email: String,
}

#[derive(Deserialize)]
struct Item {
    sku: String,
    qty: u32,
    price_cents: u64,
}

#[derive(Deserialize)]
struct Placed {
    order_id: String,
    customer: Customer,
    items: Vec<Item>,
    total_cents: u64,
}

#[derive(Serialize)]
struct Outcome<'a> {
    order_id: &'a str,
    customer_id: &'a str,
    email: &'a str,
    total_cents: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

struct Validator {
    outcomes: String,
    max_total_cents: u64,
}

impl Validator {
    fn problem(&self, order: &Placed) -> Option<String> {
        if order.items.is_empty() {
            return Some("the order has no items".into());
        }
        if let Some(item) = order.items.iter().find(|i| i.qty == 0) {
            return Some(format!("item {} has quantity 0", item.sku));
        }
        let sum: u64 = order
            .items
            .iter()
            .map(|i| u64::from(i.qty) * i.price_cents)
            .sum();
        if sum != order.total_cents {
            return Some(format!(
                "total {} does not match the items ({sum})",
                order.total_cents
            ));
        }
        if order.total_cents > self.max_total_cents {
            return Some(format!(
                "total {} is over the limit of {}",
                order.total_cents, self.max_total_cents
            ));
        }
        if !order.customer.email.contains('@') {
            return Some(format!(
                "customer email `{}` is not an address",
                order.customer.email
            ));
        }
        None
    }
}

impl Plugin for Validator {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Validator {
            outcomes: config
                .get("outcomes")
                .unwrap_or("shop.order-outcomes")
                .to_owned(),
            max_total_cents: config.parse_or("max_total_cents", 100_000)?,
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let order: Placed = event.json()?;
        let reason = self.problem(&order);
        let event_type = match reason {
            None => "shop.order.validated.v1",
            Some(_) => "shop.order.rejected.v1",
        };
        info!(
            "order {}: {}",
            order.order_id,
            reason.as_deref().unwrap_or("valid")
        );
        let outcome = Outcome {
            order_id: &order.order_id,
            customer_id: &order.customer.id,
            email: &order.customer.email,
            total_cents: order.total_cents,
            reason,
        };
        emit(
            Outgoing::new(&self.outcomes, event_type)
                .key(&order.customer.id)
                .subject(&order.order_id)
                .json(&outcome)?,
        )
    }
}

plexus_sdk::export_plugin!(Validator);
