//! The file of a core's peer records (see `incarnations.rs`), written and synced on a thread
//! of its own, one write at a time, in the order asked, while the handshake that asked waits
//! without holding up the core's loop.
//!
//! On the loop, a write that hung (a data device that stopped answering, the fault the core
//! hands its groups over for) stopped the whole core with it: no heartbeats, no handover, no
//! answers. Here only the handshake waits, until its timeout.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::raft::NodeId;

use super::incarnations::Seen;

/// Writes the whole file (`path` and the bytes it holds) durably.
pub(super) type WriteFn = fn(&std::path::Path, &[u8]) -> io::Result<()>;

/// An answer from the writer's thread, and the task waiting for it.
#[derive(Default)]
struct Answer {
    result: Option<io::Result<()>>,
    waiter: Option<Waker>,
}

struct Job {
    peer: NodeId,
    seen: Seen,
    answer: Arc<Mutex<Answer>>,
}

/// The writer's thread, ending when this is dropped.
pub(super) struct RecordWriter {
    jobs: Sender<Job>,
}

impl RecordWriter {
    /// Starts the thread that keeps `path`, holding `known` now, through `write`.
    pub fn start(
        path: PathBuf,
        mut known: BTreeMap<NodeId, Seen>,
        write: WriteFn,
    ) -> io::Result<RecordWriter> {
        let (jobs, taken) = channel::<Job>();
        std::thread::Builder::new()
            .name("cohort-records".to_string())
            .spawn(move || {
                for Job { peer, seen, answer } in taken {
                    // A record whose write failed stays here, and goes with the next one: the
                    // peer did show that data.
                    if supersedes(seen, known.get(&peer).copied()) {
                        known.insert(peer, seen);
                    }
                    let result = write(&path, super::incarnations::render(&known).as_bytes())
                        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())));
                    let mut answer = answer.lock().expect("not poisoned");
                    answer.result = Some(result);
                    if let Some(waiter) = answer.waiter.take() {
                        waiter.wake();
                    }
                }
            })?;
        Ok(RecordWriter { jobs })
    }

    /// Records `seen` of `peer` in the file, with every record before it, and waits until
    /// that is durable. Dropped before, the write still happens.
    pub async fn record(&self, peer: NodeId, seen: Seen) -> io::Result<()> {
        let answer = Arc::new(Mutex::new(Answer::default()));
        let job = Job {
            peer,
            seen,
            answer: Arc::clone(&answer),
        };
        if self.jobs.send(job).is_err() {
            return Err(io::Error::other("the thread writing peer records ended"));
        }
        poll_fn(|cx| {
            let mut answer = answer.lock().expect("not poisoned");
            match answer.result.take() {
                Some(result) => Poll::Ready(result),
                None => {
                    answer.waiter = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// Whether `new` replaces `old` as the record of a peer: other data, or a later start of
/// the same data (a higher count of starts).
pub(super) fn supersedes(new: Seen, old: Option<Seen>) -> bool {
    new.incarnation != 0
        && old.is_none_or(|old| {
            old.incarnation != new.incarnation || (new.start >> 32) > (old.start >> 32)
        })
}
