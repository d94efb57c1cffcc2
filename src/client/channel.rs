//! One multiplexed connection to one core of one node: any number of requests in flight from
//! any number of tasks. Frames queued while the writer was busy go out in one write; answers
//! are matched to their waiters by (client id, sequence), in whatever order they come.

use foldhash::{HashMap, HashMapExt};
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::{AsyncWriteExt, future};
use glommio::net::TcpStream;

use crate::proto::client::{Outcome, decode_responses};
use crate::transport::{FrameReader, ReadFrameError, ReadHalf, WriteHalf};
use crate::wire::FrameEncoder;
use crate::wire::limits::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES};

/// A request's identity on the wire: (client id, sequence).
pub(crate) type Key = (u64, u64);

pub(crate) struct Channel {
    shared: Rc<RefCell<Shared>>,
    /// The same socket, to shut it down from `drop` and so wake the reader.
    socket: socket2::Socket,
}

struct Shared {
    /// Frames waiting for the writer.
    outgoing: Vec<u8>,
    writer: Option<Waker>,
    waiters: HashMap<Key, Waiter>,
    /// Why the connection is unusable, once it is.
    broken: Option<String>,
    /// When the last frame arrived (or the connection opened).
    last_heard: Instant,
}

#[derive(Default)]
struct Waiter {
    outcome: Option<Outcome>,
    waker: Option<Waker>,
}

impl Shared {
    fn break_with(&mut self, reason: String) {
        self.broken.get_or_insert(reason);
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
        for waiter in self.waiters.values_mut() {
            if let Some(waker) = waiter.waker.take() {
                waker.wake();
            }
        }
    }
}

impl Channel {
    pub(crate) async fn connect(address: &str, timeout: Duration) -> io::Result<Channel> {
        let stream = super::conn::dial(address, timeout).await?;
        let socket = crate::sys::socket_handle(&stream)?;
        let shared = Rc::new(RefCell::new(Shared {
            outgoing: Vec::new(),
            writer: None,
            waiters: HashMap::new(),
            broken: None,
            last_heard: crate::clock::now(),
        }));
        let (reader, writer) = crate::transport::split(stream);
        glommio::spawn_local(read_loop(reader, Rc::clone(&shared))).detach();
        glommio::spawn_local(write_loop(writer, Rc::clone(&shared))).detach();
        Ok(Channel { shared, socket })
    }

    /// Queue the frame last encoded by `encoder`, carrying the requests `keys`.
    pub(crate) fn send(
        &self,
        encoder: &FrameEncoder,
        keys: impl Iterator<Item = Key>,
    ) -> Result<(), String> {
        let mut shared = self.shared.borrow_mut();
        if let Some(reason) = &shared.broken {
            return Err(reason.clone());
        }
        for key in keys {
            shared.waiters.insert(key, Waiter::default());
        }
        shared.outgoing.extend_from_slice(encoder.header());
        shared.outgoing.extend_from_slice(encoder.body());
        if let Some(writer) = shared.writer.take() {
            writer.wake();
        }
        Ok(())
    }

    /// The answer to `key`, or why it will not come.
    pub(crate) async fn answer(&self, key: Key) -> Result<Outcome, String> {
        future::poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            let broken = shared.broken.clone();
            let Some(waiter) = shared.waiters.get_mut(&key) else {
                return Poll::Ready(Err("the request was not sent here".to_string()));
            };
            if let Some(outcome) = waiter.outcome.take() {
                shared.waiters.remove(&key);
                return Poll::Ready(Ok(outcome));
            }
            if let Some(reason) = broken {
                shared.waiters.remove(&key);
                return Poll::Ready(Err(reason));
            }
            waiter.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Stop waiting for `key` (it timed out); a late answer is dropped.
    pub(crate) fn forget(&self, key: Key) {
        self.shared.borrow_mut().waiters.remove(&key);
    }

    /// Unusable, or silent for longer than `patience` while requests waited.
    pub(crate) fn is_dead(&self, patience: Duration) -> bool {
        let shared = self.shared.borrow();
        shared.broken.is_some() || shared.last_heard.elapsed() >= patience
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let mut shared = self.shared.borrow_mut();
        shared.break_with("closed by the client".to_string());
        // Wake the reader out of its read (an error means it is closed already).
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

async fn read_loop(mut reader: ReadHalf<TcpStream>, shared: Rc<RefCell<Shared>>) {
    let mut frames = FrameReader::new(FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX);
    let reason = loop {
        let frame = match frames.read_frame(&mut reader).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break "the node closed the connection".to_string(),
            Err(ReadFrameError::Io(error)) => break error.to_string(),
            Err(ReadFrameError::Frame(error)) => break format!("bad frame from the node: {error}"),
        };
        let responses = match decode_responses(&frame) {
            Ok(responses) => responses,
            Err(error) => break format!("bad answer from the node: {error}"),
        };
        let mut shared = shared.borrow_mut();
        shared.last_heard = crate::clock::now();
        for response in responses {
            let key = (response.client_id, response.sequence);
            if let Some(waiter) = shared.waiters.get_mut(&key)
                && waiter.outcome.is_none()
            {
                waiter.outcome = Some(response.outcome);
                if let Some(waker) = waiter.waker.take() {
                    waker.wake();
                }
            }
        }
        if shared.broken.is_some() {
            break String::new();
        }
    };
    shared.borrow_mut().break_with(reason);
}

async fn write_loop(mut writer: WriteHalf<TcpStream>, shared: Rc<RefCell<Shared>>) {
    let mut batch = Vec::new();
    loop {
        let more = future::poll_fn(|cx| {
            let mut shared = shared.borrow_mut();
            if shared.broken.is_some() {
                return Poll::Ready(false);
            }
            if shared.outgoing.is_empty() {
                shared.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            std::mem::swap(&mut shared.outgoing, &mut batch);
            Poll::Ready(true)
        })
        .await;
        if !more {
            break;
        }
        let written = async {
            writer.write_all(&batch).await?;
            writer.flush().await
        };
        if let Err(error) = written.await {
            shared.borrow_mut().break_with(error.to_string());
            break;
        }
        batch.clear();
    }
}
