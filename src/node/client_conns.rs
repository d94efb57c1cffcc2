//! The client connections of a core: how many are open, when each last received bytes, and
//! closing the one idle longest to make room for a new one when the core is at its cap.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};

use crate::shard::ConnId;
use crate::shard::inbox::Inbox;

/// What a connection closed to make room says in the log.
pub(super) const CLOSED_FOR_ROOM: &str = "idle, closed to make room for a new connection";

/// The open connections, each with when it last received bytes and its close signal.
#[derive(Clone, Default)]
pub(super) struct Conns(Rc<RefCell<BTreeMap<ConnId, Entry>>>);

struct Entry {
    last_read: Rc<Cell<Instant>>,
    close: Inbox<()>,
    stopping: Inbox<()>,
}

/// A connection's place among the open ones, given up when dropped.
pub(super) struct Registered {
    conns: Conns,
    conn: ConnId,
    /// When the connection last received bytes (see [`Noted`]).
    pub(super) last_read: Rc<Cell<Instant>>,
    /// Gets an item when the connection is to close (see [`closed`]).
    pub(super) close: Inbox<()>,
    /// Closed when the node stops ([`Conns::stop_all`]). One per connection, not the core's
    /// inbox watched by each: a watcher's waker is kept until the watched inbox closes, and
    /// each connection's would have kept its task's memory for the life of the core.
    pub(super) stopping: Inbox<()>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.conns.0.borrow_mut().remove(&self.conn);
    }
}

impl Conns {
    pub(super) fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Whether every connection ended within `patience`.
    pub(super) async fn all_closed_within(&self, patience: Duration) -> bool {
        let deadline = crate::clock::now() + patience;
        while self.len() > 0 {
            if crate::clock::now() >= deadline {
                return false;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Counts `conn` as open, received from now.
    pub(super) fn register(&self, conn: ConnId) -> Registered {
        let last_read = Rc::new(Cell::new(crate::clock::now()));
        let (close, stopping) = (Inbox::new(1), Inbox::new(1));
        let entry = Entry {
            last_read: Rc::clone(&last_read),
            close: close.clone(),
            stopping: stopping.clone(),
        };
        self.0.borrow_mut().insert(conn, entry);
        Registered {
            conns: self.clone(),
            conn,
            last_read,
            close,
            stopping,
        }
    }

    /// Tells every open connection that the node stops.
    pub(super) fn stop_all(&self) {
        for entry in self.0.borrow().values() {
            entry.stopping.close();
        }
    }

    /// Closes the connection that received nothing for longest, if for at least
    /// `idle_after`, and no longer counts it; returns it and how long it was idle.
    pub(super) fn close_idlest(&self, idle_after: Duration) -> Option<(ConnId, Duration)> {
        let now = crate::clock::now();
        let mut conns = self.0.borrow_mut();
        let (&conn, entry) = conns.iter().min_by_key(|(_, e)| e.last_read.get())?;
        let idle = now.saturating_duration_since(entry.last_read.get());
        if idle < idle_after {
            return None;
        }
        entry.close.push_now(());
        conns.remove(&conn);
        Some((conn, idle))
    }
}

/// Resolves once the connection is told to close (see [`Conns::close_idlest`]).
pub(super) async fn closed(close: &Inbox<()>) -> String {
    let mut taken = Vec::new();
    close.take_all_until_closed(&mut taken).await;
    CLOSED_FOR_ROOM.to_string()
}

/// A connection's stream that notes when it last received bytes.
pub(super) struct Noted<S> {
    pub(super) inner: S,
    pub(super) last_read: Rc<Cell<Instant>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Noted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = read
            && n > 0
        {
            self.last_read.set(crate::clock::now());
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Noted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
