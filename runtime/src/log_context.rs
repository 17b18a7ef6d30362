//! The event a thread is handling now, so that log lines written meanwhile (a plugin's
//! `log` calls, its stdout and stderr) carry the route, the event id and the correlation id
//! without a tracing span per event: a span would be formatted for every event, logged or
//! not, and that costs more than a whole no-op `handle` call.

use crate::event::Event;
use std::cell::RefCell;
use std::sync::Arc;

/// What a thread is handling.
pub struct Current {
    /// The route.
    pub route: Arc<str>,
    /// The event.
    pub event: Arc<Event>,
}

impl Current {
    /// The event's correlation id, or "" when it has none.
    pub fn correlation_id(&self) -> &str {
        self.event.correlation_id.as_deref().unwrap_or("")
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Records that this thread handles `event` for `route` until the guard is dropped.
pub fn enter(route: &Arc<str>, event: &Arc<Event>) -> Guard {
    CURRENT.with(|current| {
        *current.borrow_mut() = Some(Current {
            route: route.clone(),
            event: event.clone(),
        });
    });
    Guard(())
}

/// Calls `f` with what this thread is handling, if anything.
pub fn with<R>(f: impl FnOnce(Option<&Current>) -> R) -> R {
    CURRENT.with(|current| f(current.borrow().as_ref()))
}

/// Ends what [`enter`] recorded.
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        CURRENT.with(|current| current.borrow_mut().take());
    }
}

/// Logs at `$level` with `plugin = $plugin` and, while an event is handled on this thread,
/// its `route`, `event_id` and `correlation_id`.
macro_rules! plugin_event {
    ($level:expr, $plugin:expr, $($message:tt)+) => {
        $crate::log_context::with(|current| match current {
            Some(c) => tracing::event!(
                $level,
                plugin = %$plugin,
                route = %c.route,
                event_id = %c.event.id,
                correlation_id = %c.correlation_id(),
                $($message)+
            ),
            None => tracing::event!($level, plugin = %$plugin, $($message)+),
        })
    };
}
pub(crate) use plugin_event;
