//! The event a thread is handling now, so that log lines written meanwhile (a plugin's
//! `log` calls, its stdout and stderr) carry the route, the event id and the correlation id
//! without a tracing span per event: a span would be formatted for every event, logged or
//! not, and that costs more than a whole no-op `handle` call.

use crate::event::Event;
use std::cell::RefCell;
use std::sync::Arc;

/// What a thread is handling.
pub struct Current<'a> {
    /// The route.
    pub route: &'a str,
    /// The event.
    pub event: &'a Event,
}

impl Current<'_> {
    /// The event's correlation id, or "" when it has none.
    pub fn correlation_id(&self) -> &str {
        self.event.correlation_id.as_deref().unwrap_or("")
    }
}

thread_local! {
    /// The route this thread works for (a worker works for one route all its life).
    static ROUTE: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
    /// The event it handles now.
    static EVENT: RefCell<Option<Arc<Event>>> = const { RefCell::new(None) };
}

/// Records that this thread works for `route` (once, when a worker starts).
pub fn work_for(route: &Arc<str>) {
    ROUTE.with(|current| *current.borrow_mut() = Some(route.clone()));
}

/// Records that this thread handles `event` until the guard is dropped.
pub fn enter(event: &Arc<Event>) -> Guard {
    EVENT.with(|current| *current.borrow_mut() = Some(event.clone()));
    Guard(())
}

/// Calls `f` with what this thread is handling, if it handles an event for a route.
pub fn with<R>(f: impl FnOnce(Option<&Current<'_>>) -> R) -> R {
    ROUTE.with(|route| {
        EVENT.with(|event| {
            let (route, event) = (route.borrow(), event.borrow());
            match (route.as_deref(), event.as_deref()) {
                (Some(route), Some(event)) => f(Some(&Current { route, event })),
                _ => f(None),
            }
        })
    })
}

/// Ends what [`enter`] recorded.
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        EVENT.with(|current| current.borrow_mut().take());
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
