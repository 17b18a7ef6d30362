//! A shutdown flag a run shares: set by whoever owns the process (the binary on SIGINT or
//! SIGTERM, an embedder, a test), waited on by every loop that sleeps.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Cloneable handle to one shutdown flag.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<(Mutex<bool>, Condvar)>);

impl Shutdown {
    /// A flag that is not set.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Sets the flag and wakes every waiter.
    pub fn trigger(&self) {
        let (flag, wake) = &*self.0;
        *flag.lock().expect("shutdown lock") = true;
        wake.notify_all();
    }

    /// Whether the flag is set.
    pub fn is_triggered(&self) -> bool {
        *self.0.0.lock().expect("shutdown lock")
    }

    /// Sleeps for `timeout` or until the flag is set; returns whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let (flag, wake) = &*self.0;
        let guard = flag.lock().expect("shutdown lock");
        let (guard, _) = wake
            .wait_timeout_while(guard, timeout, |set| !*set)
            .expect("shutdown lock");
        *guard
    }
}
