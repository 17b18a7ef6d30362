//! Dashboard: counts validated and rejected orders and the validated revenue in the state
//! store, and publishes the running totals as `shop.dashboard.v1` after every outcome.
//!
//! The host applies each delivery's state writes once (a redelivery after a crash is not
//! handled again), and each outcome's id is remembered (for a day) with compare-and-swap, so
//! an outcome published twice (the same event at two offsets) is counted once too.

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, debug, emit, state};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const SEEN_FOR: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
struct Outcome {
    total_cents: u64,
}

#[derive(Serialize)]
struct Totals {
    validated: i64,
    rejected: i64,
    revenue_cents: i64,
}

struct Dashboard {
    topic: String,
}

impl Plugin for Dashboard {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Dashboard {
            topic: config.get("topic").unwrap_or("shop.dashboard").to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let outcome: Outcome = event.json()?;
        let first_time = state::compare_and_swap(
            &format!("seen/{}", event.id),
            None,
            Some(b"1"),
            Some(SEEN_FOR),
        )?;
        if first_time {
            match event.type_.as_str() {
                "shop.order.validated.v1" => {
                    state::increment("validated", 1)?;
                    state::increment("revenue_cents", outcome.total_cents as i64)?;
                }
                "shop.order.rejected.v1" => {
                    state::increment("rejected", 1)?;
                }
                other => {
                    return Err(HandleError::reject(format!(
                        "not an order outcome: `{other}`"
                    )));
                }
            }
        } else {
            debug!("outcome {} already counted", event.id);
        }
        let totals = Totals {
            validated: state::increment("validated", 0)?,
            rejected: state::increment("rejected", 0)?,
            revenue_cents: state::increment("revenue_cents", 0)?,
        };
        emit(
            Outgoing::new(&self.topic, "shop.dashboard.v1")
                .key("totals")
                .json(&totals)?,
        )
    }
}

plexus_sdk::export_plugin!(Dashboard);
