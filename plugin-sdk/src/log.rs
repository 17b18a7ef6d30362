//! Logging into the host's log, tagged with the plugin's name. The macros format like
//! `format!`.

use crate::bindings::plexus::plugin::log as host;

pub use host::Level;

/// Writes `message` at `level`.
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

/// Logs at trace level.
#[macro_export]
macro_rules! trace { ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)*)) }; }
/// Logs at debug level.
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)*)) }; }
/// Logs at info level.
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)*)) }; }
/// Logs at warn level.
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)*)) }; }
/// Logs at error level.
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)*)) }; }
