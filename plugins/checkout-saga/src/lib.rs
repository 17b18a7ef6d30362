//! A checkout saga by choreography, with compensation. One component, three roles (its
//! `role` config), each a route of its own, each keeping its own state:
//!
//! - `orders`: `checkout.order.placed.v1` → the order is *pending* and payment is
//!   requested; `payment.declined` → *cancelled*; `stock.reserved` → *confirmed*;
//!   `payment.refunded` → *cancelled* (the compensation has run).
//! - `payments`: `payment.requested` → the customer's wallet (starting at `credit_cents`)
//!   is debited and `payment.captured`, or `payment.declined` when it cannot pay;
//!   `stock.failed` → the compensation: the wallet is credited back, `payment.refunded`.
//! - `stock`: `payment.captured` → the item's stock (starting at `stock`) is reserved,
//!   `stock.reserved`, or `stock.failed` when there is not enough. With `flaky = N`, one
//!   first attempt in N fails with a *retry* error (an injected failure; the retry succeeds).
//!
//! Every event is keyed by the order id, so one order's steps stay in order on each route,
//! and carries the order whole, so no role needs another's state.

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit, state};
use serde::{Deserialize, Serialize};

/// The order every saga event carries.
#[derive(Clone, Serialize, Deserialize)]
struct Order {
    order: String,
    customer: String,
    sku: String,
    quantity: i64,
    amount_cents: i64,
}

enum Role {
    Orders,
    Payments { credit_cents: i64 },
    Stock { initial: i64, flaky: u64 },
}

struct Saga {
    role: Role,
    topic: String,
}

impl Saga {
    /// Emits the next step of the saga for `order`.
    fn next(&self, event_type: &str, order: &Order) -> Result<(), HandleError> {
        emit(
            Outgoing::new(&self.topic, event_type)
                .key(&order.order)
                .json(order)?,
        )
    }

    fn orders(&self, event: &Event, order: &Order) -> Result<(), HandleError> {
        let key = format!("order/{}", order.order);
        let status = match event.type_.as_str() {
            "checkout.order.placed.v1" => {
                self.next("checkout.payment.requested.v1", order)?;
                "pending"
            }
            "checkout.payment.declined.v1" | "checkout.payment.refunded.v1" => "cancelled",
            "checkout.stock.reserved.v1" => "confirmed",
            _ => return Ok(()), // a step of another role
        };
        state::set(&key, status.as_bytes(), None)?;
        if status != "pending" {
            self.next(&format!("checkout.order.{status}.v1"), order)?;
        }
        Ok(())
    }

    fn payments(&self, event: &Event, order: &Order, credit_cents: i64) -> Result<(), HandleError> {
        let wallet = format!("wallet/{}", order.customer);
        let spent = state::increment(&wallet, 0)?;
        match event.type_.as_str() {
            "checkout.payment.requested.v1" if credit_cents - spent >= order.amount_cents => {
                state::increment(&wallet, order.amount_cents)?;
                self.next("checkout.payment.captured.v1", order)
            }
            "checkout.payment.requested.v1" => self.next("checkout.payment.declined.v1", order),
            "checkout.stock.failed.v1" => {
                // The compensation: the payment captured for this order is given back.
                state::increment(&wallet, -order.amount_cents)?;
                self.next("checkout.payment.refunded.v1", order)
            }
            _ => Ok(()),
        }
    }

    fn stock(
        &self,
        event: &Event,
        order: &Order,
        initial: i64,
        flaky: u64,
    ) -> Result<(), HandleError> {
        if event.type_ != "checkout.payment.captured.v1" {
            return Ok(());
        }
        if flaky > 0 && event.attempt == 1 && fnv(&event.id).is_multiple_of(flaky) {
            return Err(HandleError::retry(
                "the stock service did not answer (injected)",
            ));
        }
        let reserved = format!("reserved/{}", order.sku);
        let taken = state::increment(&reserved, 0)?;
        if initial - taken >= order.quantity {
            state::increment(&reserved, order.quantity)?;
            self.next("checkout.stock.reserved.v1", order)
        } else {
            self.next("checkout.stock.failed.v1", order)
        }
    }
}

/// FNV-1a: a stable hash, to pick which events the injected failures hit.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Plugin for Saga {
    fn init(config: &Config) -> Result<Self, String> {
        let role = match config.require("role")? {
            "orders" => Role::Orders,
            "payments" => Role::Payments {
                credit_cents: config.parse_or("credit_cents", 10_000)?,
            },
            "stock" => Role::Stock {
                initial: config.parse_or("stock", 10)?,
                flaky: config.parse_or("flaky", 0)?,
            },
            other => {
                return Err(format!(
                    "role `{other}`: expected orders, payments or stock"
                ));
            }
        };
        Ok(Saga {
            role,
            topic: config.get("topic").unwrap_or("checkout.events").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let order: Order = event.json()?;
        if order.quantity <= 0 || order.amount_cents <= 0 {
            return Err(HandleError::reject(
                "quantity and amount_cents must be positive",
            ));
        }
        match self.role {
            Role::Orders => self.orders(&event, &order),
            Role::Payments { credit_cents } => self.payments(&event, &order, credit_cents),
            Role::Stock { initial, flaky } => self.stock(&event, &order, initial, flaky),
        }
    }
}

plexus_sdk::export_plugin!(Saga);
