//! The file of a core's peer records (see `incarnations.rs`), written and synced on a thread
//! of its own, in the order asked, while the handshakes that wait for a write wait without
//! holding up the core's loop.
//!
//! On the loop, a write that hung (a data device that stopped answering, the fault the core
//! hands its groups over for) stopped the whole core with it: no heartbeats, no handover, no
//! answers. Here only the handshakes wait, until their timeout.

use std::future::poll_fn;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

/// Writes the whole file (`path` and the bytes it holds) durably.
pub(super) type WriteFn = fn(&Path, &[u8]) -> io::Result<()>;

/// A write asked of the thread: its outcome once done, and the tasks waiting for it.
#[derive(Clone, Default)]
pub(super) struct Write(Arc<Mutex<WriteState>>);

#[derive(Default)]
struct WriteState {
    /// `Ok`, or the error's kind and text (the text names the file).
    done: Option<Result<(), (io::ErrorKind, String)>>,
    /// The tasks waiting, each under the number of its wait: a wait given up (its handshake
    /// timed out) takes its waker out, so a write that hangs for days does not keep every
    /// task that ever waited for it (found in review: each held its task's memory).
    waiters: Vec<(u64, Waker)>,
    /// The number of the next wait.
    waits: u64,
}

impl WriteState {
    fn outcome(&self) -> Option<io::Result<()>> {
        let done = self.done.clone()?;
        Some(done.map_err(|(kind, text)| io::Error::new(kind, text)))
    }
}

impl Write {
    /// Waits until the write is done; its outcome.
    pub async fn done(&self) -> io::Result<()> {
        let wait = {
            let mut state = self.0.lock().expect("not poisoned");
            state.waits += 1;
            state.waits
        };
        let _given_up = GivenUp { write: self, wait };
        poll_fn(|cx| {
            let mut state = self.0.lock().expect("not poisoned");
            if let Some(outcome) = state.outcome() {
                return Poll::Ready(outcome);
            }
            match state.waiters.iter_mut().find(|(w, _)| *w == wait) {
                Some((_, waker)) => waker.clone_from(cx.waker()),
                None => state.waiters.push((wait, cx.waker().clone())),
            }
            Poll::Pending
        })
        .await
    }

    /// Its outcome, once done.
    pub fn outcome(&self) -> Option<io::Result<()>> {
        self.0.lock().expect("not poisoned").outcome()
    }

    fn finish(&self, result: io::Result<()>) {
        let mut state = self.0.lock().expect("not poisoned");
        state.done = Some(result.map_err(|e| (e.kind(), e.to_string())));
        for (_, waiter) in state.waiters.drain(..) {
            waiter.wake();
        }
    }
}

/// Takes a wait's waker out when the wait ends, done or given up.
struct GivenUp<'a> {
    write: &'a Write,
    wait: u64,
}

impl Drop for GivenUp<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.write.0.lock() {
            state.waiters.retain(|(w, _)| *w != self.wait);
        }
    }
}

/// The writer's thread, ending when this is dropped.
pub(super) struct RecordWriter {
    jobs: Sender<(Vec<u8>, Write)>,
}

impl RecordWriter {
    /// Starts the thread that writes `path` through `write`.
    pub fn start(path: PathBuf, write: WriteFn) -> io::Result<RecordWriter> {
        let (jobs, taken) = channel::<(Vec<u8>, Write)>();
        std::thread::Builder::new()
            .name("cohort-records".to_string())
            .spawn(move || {
                for (bytes, asked) in taken {
                    // A write that panicked fails, rather than leave its waiters waiting
                    // for good, and the thread goes on.
                    let writing = std::panic::AssertUnwindSafe(|| write(&path, &bytes));
                    let written = std::panic::catch_unwind(writing)
                        .unwrap_or_else(|_| Err(io::Error::other("the write panicked")))
                        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())));
                    asked.finish(written);
                }
            })?;
        Ok(RecordWriter { jobs })
    }

    /// Asks for the file to hold `bytes`, after the writes asked before.
    pub fn write(&self, bytes: Vec<u8>) -> Write {
        let asked = Write::default();
        if self.jobs.send((bytes, asked.clone())).is_err() {
            asked.finish(Err(io::Error::other(
                "the thread writing peer records ended",
            )));
        }
        asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal (found in review): waits given up on a write that never ends leave nothing
    /// behind; a wait still on is woken when it ends.
    #[test]
    fn waits_given_up_leave_no_waker_behind() {
        let write = Write::default();
        for _ in 0..100 {
            let polled =
                futures_lite::future::block_on(futures_lite::future::poll_once(write.done()));
            assert!(polled.is_none());
        }
        assert!(write.0.lock().unwrap().waiters.is_empty());
        let finisher = write.clone();
        let waiting = std::thread::spawn(move || futures_lite::future::block_on(write.done()));
        while finisher.0.lock().unwrap().waiters.is_empty() {
            std::thread::yield_now();
        }
        finisher.finish(Ok(()));
        waiting.join().unwrap().unwrap();
        assert!(finisher.0.lock().unwrap().waiters.is_empty());
    }
}
