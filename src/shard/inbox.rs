//! The core loop's inbox: many producer tasks on the same thread, one consumer that takes
//! everything at once. Bounded: a full inbox makes producers wait, so a flood of client
//! frames pushes back on the sockets instead of growing memory.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct State<T> {
    items: VecDeque<T>,
    /// What the items weigh together: one each, unless pushed with a weight.
    weight: usize,
    capacity: usize,
    consumer: Option<Waker>,
    producers: Vec<Waker>,
    /// Tasks waiting for the inbox to close ([`Inbox::closed`]).
    close_watchers: Vec<Waker>,
    closed: bool,
}

/// A handle to the inbox; clone it for each producer.
pub struct Inbox<T> {
    state: Rc<RefCell<State<T>>>,
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Inbox {
            state: Rc::clone(&self.state),
        }
    }
}

impl<T> Inbox<T> {
    pub fn new(capacity: usize) -> Inbox<T> {
        Inbox {
            state: Rc::new(RefCell::new(State {
                items: VecDeque::new(),
                weight: 0,
                capacity: capacity.max(1),
                consumer: None,
                producers: Vec::new(),
                close_watchers: Vec::new(),
                closed: false,
            })),
        }
    }

    /// Add an item, waiting while the inbox is full. False once the inbox is closed.
    pub async fn push(&self, item: T) -> bool {
        self.push_weighing(item, 1).await
    }

    /// As [`Inbox::push`], for an item that counts as `weight` items (a frame of that many
    /// units of bytes, say): it waits while the items held weigh the capacity or more, so
    /// the inbox holds at most its capacity plus one item's weight.
    pub async fn push_weighing(&self, item: T, weight: usize) -> bool {
        self.push_within(item, weight, 0).await
    }

    /// As [`Inbox::push_weighing`], for a producer that must not wait behind the others (a
    /// node's peers behind its clients): it waits only while the items held weigh the
    /// capacity and `headroom` more. Woken producers push in the order they waited, so with
    /// no headroom such a producer, waiting since after the others, could find the inbox
    /// full again at every turn of the consumer.
    pub async fn push_with_headroom(&self, item: T, weight: usize, headroom: usize) -> bool {
        self.push_within(item, weight, headroom).await
    }

    /// As [`Inbox::push_weighing`], for an item `make` makes (with its weight) only once the
    /// inbox takes items, and that is pushed at once: what it holds is never held by a
    /// producer waiting for room, outside the inbox's bound (a client's requests, decoded
    /// from their frame). `make`'s error is returned, and nothing pushed.
    pub async fn push_made<E>(
        &self,
        make: impl FnOnce() -> Result<(T, usize), E>,
    ) -> Result<bool, E> {
        let mut make = Some(make);
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.closed {
                return Poll::Ready(Ok(false));
            }
            if state.weight >= state.capacity {
                state.producers.push(cx.waker().clone());
                return Poll::Pending;
            }
            let (item, weight) = match (make.take().expect("made once"))() {
                Ok(made) => made,
                Err(error) => return Poll::Ready(Err(error)),
            };
            state.items.push_back(item);
            state.weight = state.weight.saturating_add(weight);
            if let Some(waker) = state.consumer.take() {
                waker.wake();
            }
            Poll::Ready(Ok(true))
        })
        .await
    }

    async fn push_within(&self, item: T, weight: usize, headroom: usize) -> bool {
        let mut item = Some(item);
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.closed {
                return Poll::Ready(false);
            }
            if state.weight >= state.capacity.saturating_add(headroom) {
                state.producers.push(cx.waker().clone());
                return Poll::Pending;
            }
            state.items.push_back(item.take().expect("pushed once"));
            state.weight = state.weight.saturating_add(weight);
            if let Some(waker) = state.consumer.take() {
                waker.wake();
            }
            Poll::Ready(true)
        })
        .await
    }

    /// Add an item if there is room; give it back if the inbox is full or closed.
    pub fn try_push(&self, item: T) -> Result<(), T> {
        self.try_push_weighing(item, 1)
    }

    /// As [`Inbox::try_push`], for an item that counts as `weight` items (a batch of that
    /// many answers, say): it fits while the items held weigh at most the capacity with it,
    /// or if the inbox is empty.
    pub fn try_push_weighing(&self, item: T, weight: usize) -> Result<(), T> {
        let mut state = self.state.borrow_mut();
        let full = !state.items.is_empty() && state.weight.saturating_add(weight) > state.capacity;
        if state.closed || full {
            return Err(item);
        }
        state.items.push_back(item);
        state.weight = state.weight.saturating_add(weight);
        if let Some(waker) = state.consumer.take() {
            waker.wake();
        }
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }

    /// Whether no item waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.state.borrow().items.is_empty()
    }

    /// Resolves once the inbox is closed.
    pub async fn closed(&self) {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.closed {
                return Poll::Ready(());
            }
            // Polled again at every wake-up of its task: one waker kept per task.
            if !state.close_watchers.iter().any(|w| w.will_wake(cx.waker())) {
                state.close_watchers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Add an item even if the inbox is full (for the loop's own timers and control, which
    /// must never wait behind client traffic).
    pub fn push_now(&self, item: T) {
        let mut state = self.state.borrow_mut();
        state.items.push_back(item);
        state.weight += 1;
        if let Some(waker) = state.consumer.take() {
            waker.wake();
        }
    }

    /// Wait until there is at least one item, then take all of them.
    pub async fn take_all(&self, into: &mut Vec<T>) {
        poll_fn(|cx| self.poll_take_all(cx, into)).await
    }

    /// As [`Inbox::take_all`], but false at once, with nothing taken, once the inbox is
    /// closed and empty: for a consumer whose producer may close it for good.
    pub async fn take_all_until_closed(&self, into: &mut Vec<T>) -> bool {
        poll_fn(|cx| {
            let state = self.state.borrow();
            if state.closed && state.items.is_empty() {
                return Poll::Ready(false);
            }
            drop(state);
            self.poll_take_all(cx, into).map(|()| true)
        })
        .await
    }

    /// Take every item if there is one; otherwise have `cx` woken when one arrives or the
    /// inbox closes.
    pub fn poll_take_all(&self, cx: &mut Context<'_>, into: &mut Vec<T>) -> Poll<()> {
        let mut state = self.state.borrow_mut();
        if state.items.is_empty() {
            state.consumer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        into.extend(state.items.drain(..));
        state.weight = 0;
        for waker in state.producers.drain(..) {
            waker.wake();
        }
        Poll::Ready(())
    }

    /// Refuse further pushes; wake the waiting producers, and the consumer (a consumer
    /// that takes until closed learns it).
    pub fn close(&self) {
        let state = &mut *self.state.borrow_mut();
        state.closed = true;
        for waker in state
            .producers
            .drain(..)
            .chain(state.close_watchers.drain(..))
        {
            waker.wake();
        }
        if let Some(waker) = state.consumer.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use std::future::Future;
    use std::pin::pin;

    #[test]
    fn a_task_waiting_for_the_close_is_woken_once_however_often_it_polls() {
        let inbox: Inbox<u32> = Inbox::new(2);
        let woken = std::sync::Arc::new(Woken(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(std::sync::Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        let mut closed = pin!(inbox.closed());
        for _ in 0..1000 {
            assert!(closed.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(inbox.state.borrow().close_watchers.len(), 1);
        inbox.close();
        assert_eq!(woken.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(closed.as_mut().poll(&mut cx).is_ready());
    }

    struct Woken(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Woken {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_producer_with_headroom_does_not_wait_behind_a_full_inbox() {
        let inbox = Inbox::new(2);
        block_on(async {
            assert!(inbox.push(1).await);
            assert!(inbox.push(2).await);
        });
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut waiting = pin!(inbox.push(3));
        assert!(waiting.as_mut().poll(&mut cx).is_pending(), "full");
        assert!(block_on(inbox.push_with_headroom(10, 1, 2)));
        assert!(block_on(inbox.push_with_headroom(11, 1, 2)));
        let mut past = pin!(inbox.push_with_headroom(12, 1, 2));
        assert!(
            past.as_mut().poll(&mut cx).is_pending(),
            "full with its headroom"
        );
        let mut taken = Vec::new();
        block_on(inbox.take_all(&mut taken));
        assert_eq!(taken, [1, 2, 10, 11]);
    }

    /// Goal (found in review): an item made for the inbox (a client's requests, decoded) is
    /// made only once the inbox takes items, so no producer holds one while it waits; its
    /// maker's error is returned and nothing is pushed.
    #[test]
    fn an_item_is_made_only_once_the_inbox_has_room() {
        let inbox = Inbox::new(2);
        inbox.push_now(1);
        inbox.push_now(2);
        let made = std::cell::Cell::new(false);
        let make = || {
            made.set(true);
            Ok::<_, ()>((3, 5))
        };
        let mut cx = Context::from_waker(Waker::noop());
        let mut waiting = pin!(inbox.push_made(make));
        assert!(waiting.as_mut().poll(&mut cx).is_pending(), "full");
        assert!(!made.get(), "made while the inbox was full");
        let mut taken = Vec::new();
        block_on(inbox.take_all(&mut taken));
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(Ok(true)));
        assert!(made.get());
        assert_eq!(inbox.state.borrow().weight, 5, "weighed as made");
        taken.clear();
        block_on(inbox.take_all(&mut taken));
        assert_eq!(taken, [3]);
        let bad = block_on(inbox.push_made(|| Err::<(u32, usize), _>("bad")));
        assert_eq!(bad, Err("bad"));
        assert!(inbox.state.borrow().items.is_empty());
    }

    #[test]
    fn a_full_inbox_makes_producers_wait_until_the_consumer_takes() {
        let inbox = Inbox::new(2);
        block_on(async {
            assert!(inbox.push(1).await);
            assert!(inbox.push(2).await);
        });
        let mut third = pin!(inbox.push(3));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(third.as_mut().poll(&mut cx).is_pending());
        let mut taken = Vec::new();
        block_on(inbox.take_all(&mut taken));
        assert_eq!(taken, [1, 2]);
        assert_eq!(third.as_mut().poll(&mut cx), Poll::Ready(true));
        inbox.push_now(4);
        taken.clear();
        block_on(inbox.take_all(&mut taken));
        assert_eq!(taken, [3, 4]);
        assert_eq!(inbox.try_push(7), Ok(()));
        assert_eq!(inbox.try_push(8), Ok(()));
        assert_eq!(inbox.try_push(9), Err(9), "full at two");
        taken.clear();
        block_on(inbox.take_all(&mut taken));
        assert_eq!(taken, [7, 8]);
        inbox.close();
        assert!(inbox.is_closed());
        assert!(!block_on(inbox.push(5)));
        assert_eq!(inbox.try_push(6), Err(6));
    }

    #[test]
    fn a_heavy_item_fills_the_inbox_and_the_next_push_waits() {
        let inbox = Inbox::new(10);
        block_on(async {
            assert!(inbox.push(1).await);
            assert!(inbox.push_weighing(2, 12).await, "fits below the capacity");
        });
        let mut third = pin!(inbox.push(3));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(third.as_mut().poll(&mut cx).is_pending(), "weighs 13 of 10");
        let mut taken = Vec::new();
        block_on(inbox.take_all(&mut taken));
        assert_eq!(taken, [1, 2]);
        assert_eq!(third.as_mut().poll(&mut cx), Poll::Ready(true));
    }

    #[test]
    fn weighed_items_fill_it_by_their_weight_and_one_always_fits_an_empty_one() {
        let inbox = Inbox::new(10);
        assert_eq!(inbox.try_push_weighing('a', 6), Ok(()));
        assert_eq!(inbox.try_push_weighing('b', 4), Ok(()));
        assert_eq!(inbox.try_push_weighing('c', 1), Err('c'), "full at ten");
        assert_eq!(inbox.try_push('c'), Err('c'));
        let mut taken = Vec::new();
        block_on(inbox.take_all(&mut taken));
        assert_eq!(taken, ['a', 'b']);
        assert_eq!(
            inbox.try_push_weighing('d', 50),
            Ok(()),
            "alone, whatever it weighs"
        );
        assert_eq!(inbox.try_push('e'), Err('e'));
    }

    /// Wakes count how often it was woken.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn closing_wakes_the_consumer_which_takes_what_is_left_then_nothing() {
        // The writer of a connection the core cut off must learn it while it waits for
        // answers, or the connection stays open until its client sends again.
        let inbox: Inbox<u32> = Inbox::new(4);
        let counter = std::sync::Arc::new(Counter(0.into()));
        let waker = Waker::from(std::sync::Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let mut taking = pin!(async {
            let mut taken = Vec::new();
            while inbox.take_all_until_closed(&mut taken).await {}
            taken
        });
        assert!(taking.as_mut().poll(&mut cx).is_pending());
        assert_eq!(inbox.try_push(1), Ok(()));
        assert!(taking.as_mut().poll(&mut cx).is_pending());
        let woken = counter.0.load(std::sync::atomic::Ordering::SeqCst);
        inbox.close();
        assert_eq!(
            counter.0.load(std::sync::atomic::Ordering::SeqCst),
            woken + 1,
            "closing wakes the consumer"
        );
        assert_eq!(taking.as_mut().poll(&mut cx), Poll::Ready(vec![1]));
    }
}
