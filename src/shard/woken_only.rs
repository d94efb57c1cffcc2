//! A future polled only once its waker fired: a loop that waits on many futures at once
//! polls each at every wake-up of its task, and glommio's file I/O keeps one more clone of
//! the waker at every poll while pending (`Source::collect_rw`). A sync of the WAL that hung
//! (a frozen file system) while the core woke for every client request and peer frame held
//! 32,767 clones of the core task's waker after 7.8 s, whose count is an `i16`: glommio's
//! assertion panicked the core (found by a tester, `fsfreeze` under load).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// `inner`, polled on the first poll and then only after it woke its waker; in between, a
/// poll only keeps the caller's waker (one, replaced) for when it does.
pub struct WokenOnly<F> {
    inner: F,
    gate: Arc<Gate>,
    /// The waker `inner` is polled with: it opens the gate and wakes the caller.
    waker: Waker,
}

struct Gate {
    woken: AtomicBool,
    caller: Mutex<Option<Waker>>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let caller = (self.caller.lock())
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(caller) = caller {
            caller.wake();
        }
    }
}

impl<F: Future + Unpin> WokenOnly<F> {
    pub fn new(inner: F) -> WokenOnly<F> {
        let gate = Arc::new(Gate {
            woken: AtomicBool::new(true),
            caller: Mutex::new(None),
        });
        WokenOnly {
            inner,
            waker: Waker::from(Arc::clone(&gate)),
            gate,
        }
    }
}

impl<F: Future + Unpin> Future for WokenOnly<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        {
            let mut caller = (this.gate.caller.lock()).unwrap_or_else(PoisonError::into_inner);
            if !caller.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *caller = Some(cx.waker().clone());
            }
        }
        if !this.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// Pending until told, keeping a clone of the waker at every poll, as glommio's file I/O
    /// does; ready once told, waking every waker it kept.
    struct Hoarder {
        wakers: Rc<RefCell<Vec<Waker>>>,
        done: Rc<RefCell<bool>>,
        polls: Rc<RefCell<u32>>,
    }

    impl Future for Hoarder {
        type Output = u32;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            *self.polls.borrow_mut() += 1;
            if *self.done.borrow() {
                return Poll::Ready(7);
            }
            self.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    }

    struct Count(std::sync::atomic::AtomicU32);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Goal: a pending future polled at every wake-up of a busy loop keeps one waker, not
    /// one a wake-up; it is polled again once it woke, and its caller is woken then.
    #[test]
    fn a_pending_future_is_polled_again_only_once_it_woke() {
        let (wakers, done, polls) = (Rc::default(), Rc::default(), Rc::default());
        let hoarder = Hoarder {
            wakers: Rc::clone(&wakers),
            done: Rc::clone(&done),
            polls: Rc::clone(&polls),
        };
        let mut gated = WokenOnly::new(hoarder);
        let count = Arc::new(Count(Default::default()));
        let caller = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&caller);
        for _ in 0..100_000 {
            assert!(Pin::new(&mut gated).poll(&mut cx).is_pending());
        }
        assert_eq!(*polls.borrow(), 1, "polled once, before it woke");
        assert_eq!(wakers.borrow().len(), 1, "one waker kept");
        *done.borrow_mut() = true;
        for waker in wakers.borrow_mut().drain(..) {
            waker.wake();
        }
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "the caller was woken");
        assert_eq!(Pin::new(&mut gated).poll(&mut cx), Poll::Ready(7));
        assert_eq!(*polls.borrow(), 2);
    }
}
