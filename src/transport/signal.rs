//! Two wake-up primitives for the tasks of one executor: [`Notify`] (a writer waits for work)
//! and [`Stop`] (any number of tasks wait for the end of a connection or of the transport).

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

use glommio::sync::Semaphore;

/// Wakes the one task that waits on it. A notification sent while nobody waits is kept (as a
/// flag, not a count), so the waiter never misses work queued before it started waiting.
#[derive(Default)]
pub struct Notify {
    pending: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Resolves once [`Notify::notify`] was called since the last time it resolved.
    pub async fn notified(&self) {
        poll_fn(|cx| {
            if self.pending.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
    }
}

/// A one-way switch many tasks can wait on. Built on a semaphore with no permits: waiting is
/// acquiring a permit that never comes, and stopping closes the semaphore, which fails (and
/// so wakes) every waiter.
pub struct Stop {
    stopped: Cell<bool>,
    semaphore: Semaphore,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            stopped: Cell::new(false),
            semaphore: Semaphore::new(0),
        }
    }
}

impl Stop {
    pub fn stop(&self) {
        self.stopped.set(true);
        self.semaphore.close();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Resolves once [`Stop::stop`] has been called.
    pub async fn stopped(&self) {
        if self.is_stopped() {
            return;
        }
        // No permit is ever signalled, so this only returns, with an error, once closed.
        let closed = self.semaphore.acquire(1).await;
        debug_assert!(closed.is_err(), "a Stop semaphore never has permits");
    }
}
