//! Parses a JSON order payload (about 1 KB in the benchmark) and emits a small summary
//! event: the work of a typical filter-and-map plugin.

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Line {
    sku: String,
    qty: u32,
    price_cents: u64,
}

#[derive(Deserialize)]
struct Order {
    order_id: String,
    customer: String,
    lines: Vec<Line>,
    note: String,
}

#[derive(Serialize)]
struct Summary<'a> {
    order_id: &'a str,
    customer: &'a str,
    lines: usize,
    total_cents: u64,
    note_len: usize,
    first_sku: Option<&'a str>,
}

struct Transform {
    out: String,
}

impl Plugin for Transform {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Transform {
            out: config.get("out").unwrap_or("summaries").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let order: Order = event.json()?;
        let summary = Summary {
            order_id: &order.order_id,
            customer: &order.customer,
            lines: order.lines.len(),
            total_cents: order
                .lines
                .iter()
                .map(|l| u64::from(l.qty) * l.price_cents)
                .sum(),
            note_len: order.note.len(),
            first_sku: order.lines.first().map(|l| l.sku.as_str()),
        };
        emit(
            Outgoing::new(&self.out, "bench.order.summary.v1")
                .key(&order.customer)
                .json(&summary)?,
        )
    }
}

plexus_sdk::export_plugin!(Transform);
