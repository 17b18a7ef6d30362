//! A shutdown flag the whole process shares: set by SIGINT/SIGTERM or by a test, waited on
//! by every loop that sleeps.

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

    /// Sets the flag on the first SIGINT or SIGTERM; a second one exits at once.
    pub fn on_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let shutdown = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    if seen > 1 {
                        tracing::warn!(signal, "second signal: exiting without draining");
                        std::process::exit(130);
                    }
                    tracing::info!(signal, "signal received: draining in-flight events");
                    shutdown.trigger();
                }
            })?;
        Ok(())
    }
}
