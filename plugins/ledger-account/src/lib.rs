//! Ledger account: event sourcing. The `ledger.*` events of an account (keyed by the
//! account, so they arrive in order) are folded into its balance in the state store, and
//! every change is published as `ledger.balance.v1`.
//!
//! The balance is a projection: nothing but the events decides it. Moving the route back to
//! the beginning of the topic (`plexus positions --reset account --to beginning`) with a
//! fresh state rebuilds the same balances. A withdrawal larger than the balance is rejected
//! (dead-lettered, the balance unchanged), which depends only on the events before it.

use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit, state};
use serde::{Deserialize, Serialize};

/// What a `ledger.*` event carries.
#[derive(Deserialize)]
struct Movement {
    account: String,
    #[serde(default)]
    amount_cents: i64,
}

/// What `ledger.balance.v1` carries.
#[derive(Serialize)]
struct Balance<'a> {
    account: &'a str,
    balance_cents: i64,
    /// The id of the event that changed it last.
    after: &'a str,
}

struct Account {
    balances: String,
}

impl Plugin for Account {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Account {
            balances: config
                .get("balances")
                .unwrap_or("ledger.balances")
                .to_owned(),
        })
    }

    fn handle(&mut self, event: Event) -> Result<(), HandleError> {
        let movement: Movement = event.json()?;
        if movement.amount_cents < 0 {
            return Err(HandleError::reject("amount_cents must not be negative"));
        }
        let opened = format!("opened/{}", movement.account);
        let key = format!("balance/{}", movement.account);
        let is_open = state::get(&opened)?.is_some();
        let balance = match event.type_.as_str() {
            "ledger.account.opened.v1" if is_open => {
                return Err(HandleError::reject(format!(
                    "account {} is open already",
                    movement.account
                )));
            }
            "ledger.account.opened.v1" => {
                state::set(&opened, b"1", None)?;
                state::increment(&key, 0)?
            }
            _ if !is_open => {
                return Err(HandleError::reject(format!(
                    "account {} is not open",
                    movement.account
                )));
            }
            "ledger.deposited.v1" => state::increment(&key, movement.amount_cents)?,
            "ledger.withdrawn.v1" => {
                let balance = state::increment(&key, 0)?;
                if movement.amount_cents > balance {
                    return Err(HandleError::reject(format!(
                        "insufficient funds: {} cents wanted, {balance} held",
                        movement.amount_cents
                    )));
                }
                state::increment(&key, -movement.amount_cents)?
            }
            other => {
                return Err(HandleError::reject(format!(
                    "not a ledger event: `{other}`"
                )));
            }
        };
        emit(
            Outgoing::new(&self.balances, "ledger.balance.v1")
                .key(&movement.account)
                .json(&Balance {
                    account: &movement.account,
                    balance_cents: balance,
                    after: &event.id,
                })?,
        )
    }
}

plexus_sdk::export_plugin!(Account);
