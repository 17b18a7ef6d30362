//! Notifier: order outcomes in, one `shop.notification.v1` per outcome out, addressed to the
//! customer, on the topic in the `notifications` config key.

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Outcome {
    order_id: String,
    customer_id: String,
    email: String,
    total_cents: u64,
    reason: Option<String>,
}

#[derive(Serialize)]
struct Notification {
    to: String,
    channel: String,
    order_id: String,
    message: String,
}

struct Notifier {
    notifications: String,
    channel: String,
    currency: String,
}

impl Plugin for Notifier {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Notifier {
            notifications: config
                .get("notifications")
                .unwrap_or("shop.notifications")
                .to_owned(),
            channel: config.get("channel").unwrap_or("email").to_owned(),
            currency: config.get("currency").unwrap_or("EUR").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let outcome: Outcome = event.json()?;
        let amount = format!(
            "{}.{:02} {}",
            outcome.total_cents / 100,
            outcome.total_cents % 100,
            self.currency
        );
        let message = match (event.type_.as_str(), &outcome.reason) {
            ("shop.order.validated.v1", _) => {
                format!(
                    "Your order {} over {amount} is confirmed.",
                    outcome.order_id
                )
            }
            ("shop.order.rejected.v1", Some(reason)) => {
                format!(
                    "Your order {} could not be accepted: {reason}.",
                    outcome.order_id
                )
            }
            (other, _) => {
                return Err(HandleError::reject(format!(
                    "cannot notify about `{other}`"
                )));
            }
        };
        let notification = Notification {
            to: outcome.email,
            channel: self.channel.clone(),
            order_id: outcome.order_id,
            message,
        };
        emit(
            Outgoing::new(&self.notifications, "shop.notification.v1")
                .key(&outcome.customer_id)
                .json(&notification)?,
        )
    }
}

plexus_sdk::export_plugin!(Notifier);
