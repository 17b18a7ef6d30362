//! Running a guest call to its end, or to its deadline, on the calling thread.
//!
//! Guest calls are futures (wasmtime runs them on a fiber of their own). Epoch interruption
//! stops a guest that computes past its deadline, but not one parked in a host call: a
//! WASI sleep, a poll, a slow state backend. So every call that parks is also raced against
//! a timer here; when the timer wins, the call's future is dropped, which unwinds the
//! guest's fiber, and the caller discards the instance.
//!
//! Most calls never park: they run to their end inside the first poll. That poll is made
//! directly (inside the thread's runtime context, so host calls can create timers), and the
//! timer is only set up for a call that comes back pending: the common path pays for no
//! timer and no executor.
//!
//! Each thread that calls guests (route workers, the reload path, `check`, `test`) has a
//! small single-threaded tokio runtime of its own, made on first use.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How a call raced against its deadline ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Raced<T> {
    /// The call returned (a trap, including epoch interruption, is a return too).
    Finished(T),
    /// The deadline passed while the guest waited in a host call.
    Abandoned,
}

thread_local! {
    static EXECUTOR: OnceCell<tokio::runtime::Runtime> = const { OnceCell::new() };
}

/// Runs `call` on this thread until it finishes or `limit` passes.
///
/// # Panics
/// If called from inside an async context (the runtime calls guests from plain threads).
pub fn run<F: Future>(limit: Duration, call: F) -> Raced<F::Output> {
    let started = Instant::now();
    EXECUTOR.with(|cell| {
        let executor = cell.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a single-threaded tokio runtime with a timer")
        });
        let mut call = pin!(call);
        let first = {
            let _context = executor.enter();
            call.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        if let Poll::Ready(output) = first {
            return Raced::Finished(output);
        }
        // Parked in a host call: wait for it, up to what is left of the limit.
        let left = limit.saturating_sub(started.elapsed());
        executor.block_on(async {
            match tokio::time::timeout(left, call).await {
                Ok(output) => Raced::Finished(output),
                Err(_) => Raced::Abandoned,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_parked_past_its_deadline_is_abandoned_at_the_deadline() {
        let started = Instant::now();
        let raced = run(Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            7
        });
        assert_eq!(raced, Raced::Abandoned);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_call_that_parks_and_finishes_in_time_returns_its_output() {
        let raced = run(Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            7
        });
        assert_eq!(raced, Raced::Finished(7));
    }

    #[test]
    fn a_call_that_never_parks_returns_its_output() {
        assert_eq!(run(Duration::from_secs(5), async { 7 }), Raced::Finished(7));
    }
}
