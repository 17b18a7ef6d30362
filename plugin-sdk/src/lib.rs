//! Write [Plexus](https://example.invalid/plexus) consumer plugins in Rust.
//!
//! A plugin is a type implementing [`Plugin`] and one line exporting it. The SDK carries the
//! bindings to the `plexus:plugin/consumer@0.2.0` world, so plugins never run `generate!`
//! themselves. Build with `cargo build --release --target wasm32-wasip2`; the output is a
//! component ready for `plexus test` and `plexus.toml`.
//!
//! ```no_run
//! use plexus_sdk::{Config, Event, HandleError, Outgoing, Plugin, emit, info};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Placed { order_id: String, total: f64 }
//!
//! #[derive(Serialize)]
//! struct Validated<'a> { order_id: &'a str }
//!
//! struct Validator { max_total: f64 }
//!
//! impl Plugin for Validator {
//!     fn init(config: &Config) -> Result<Self, String> {
//!         Ok(Validator { max_total: config.parse_or("max_total", 10_000.0)? })
//!     }
//!
//!     fn handle(&mut self, event: Event) -> Result<(), HandleError> {
//!         let order: Placed = event.json()?; // malformed JSON: rejected
//!         if order.total > self.max_total {
//!             return Err(HandleError::reject("total over the limit"));
//!         }
//!         info!("order {} is valid", order.order_id);
//!         emit(
//!             Outgoing::new("shop.orders.validated", "shop.order.validated.v1")
//!                 .key(order.order_id.as_str())
//!                 .json(&Validated { order_id: &order.order_id })?,
//!         )?;
//!         Ok(())
//!     }
//! }
//!
//! plexus_sdk::export_plugin!(Validator);
//! ```
//!
//! # Layout
//! - [`Plugin`] and [`export_plugin!`]: what a plugin implements and how it is exported.
//! - [`Event`] helpers: [`Event::json`], [`Event::text`], [`Event::extension`],
//!   [`Event::extension_str`], [`Event::header`], [`Event::key_str`], [`Event::time_millis`].
//! - [`Outgoing`] and [`emit`]: staging events (published only if `handle` succeeds), with
//!   their CloudEvents extension attributes ([`Outgoing::extension`]).
//! - [`Config`]: the plugin's table from `plexus.toml`.
//! - [`state`]: the per-plugin key-value store.
//! - [`log`] and the [`trace!`], [`debug!`], [`info!`], [`warn!`], [`error!`] macros.
//! - [`now_millis`]: the host's clock.
#![deny(missing_docs)]

// The generated bindings name this crate by its public path, also from inside it.
extern crate self as plexus_sdk;

mod config;
mod emit;
mod event;
pub mod log;
pub mod state;
mod text;

#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        // The contract travels with the crate (a copy of the repository's `wit/plexus.wit`,
        // kept identical by a test), so the SDK builds wherever it is: by path, by git, or
        // written out by `plexus new`.
        path: "wit",
        world: "plexus:plugin/consumer",
        pub_export_macro: true,
        export_macro_name: "__export_consumer",
        default_bindings_module: "plexus_sdk::bindings",
        runtime_path: "plexus_sdk::__private::wit_bindgen::rt",
    });
}

pub use bindings::plexus::plugin::types::{Attribute, AttributeValue, Event, HandleError, Header};
pub use config::Config;
pub use emit::{Outgoing, emit};

/// A consumer plugin: built once per instance by [`Plugin::init`], then called for each
/// event. Instances are single-threaded; the host runs as many as the route's concurrency.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from its configuration. An error stops the plugin from loading,
    /// and `plexus check` shows it; so does taking longer than `init_timeout`.
    fn init(config: &Config) -> Result<Self, String>;

    /// Handles one event. `Ok` publishes what was [`emit`]ted; [`HandleError::retry`] asks
    /// for another delivery after a backoff; [`HandleError::reject`] dead-letters the event.
    ///
    /// Each call is held to the plugin's `[plugins.NAME.limits]`: it is stopped past
    /// `timeout` wherever it is (a sleep or a state call included) and past `memory`, and
    /// the event is dead-lettered; [`emit`], [`state`] and the log are held to their budgets
    /// and say so in their errors.
    fn handle(&mut self, event: Event) -> Result<(), HandleError>;
}

impl HandleError {
    /// A transient failure: deliver the event again later.
    pub fn retry(reason: impl Into<String>) -> Self {
        HandleError::Retry(reason.into())
    }

    /// A permanent failure: dead-letter the event with this reason.
    pub fn reject(reason: impl Into<String>) -> Self {
        HandleError::Reject(reason.into())
    }
}

/// A payload that does not parse will not parse next time either: reject it.
impl From<serde_json::Error> for HandleError {
    fn from(error: serde_json::Error) -> Self {
        HandleError::Reject(format!("invalid JSON payload: {error}"))
    }
}

/// The host's wall-clock time, in milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    bindings::plexus::plugin::clock::now_millis()
}

/// Exports a [`Plugin`] type as the component's `init` and `handle`.
///
/// ```ignore
/// plexus_sdk::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: ::std::cell::RefCell<::std::option::Option<$plugin>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct Export;

            impl $crate::bindings::Guest for Export {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    let config = $crate::Config::from_entries(config);
                    let plugin = <$plugin as $crate::Plugin>::init(&config)?;
                    INSTANCE.with(|slot| *slot.borrow_mut() = ::std::option::Option::Some(plugin));
                    ::std::result::Result::Ok(())
                }

                fn handle(event: $crate::Event) -> ::std::result::Result<(), $crate::HandleError> {
                    INSTANCE.with(|slot| match slot.borrow_mut().as_mut() {
                        ::std::option::Option::Some(plugin) => {
                            $crate::Plugin::handle(plugin, event)
                        }
                        ::std::option::Option::None => ::std::result::Result::Err(
                            $crate::HandleError::retry("plugin called before init"),
                        ),
                    })
                }
            }

            $crate::bindings::__export_consumer!(Export);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}
