//! The read and write halves of one connection, for a reader task and a writer task on the
//! same executor: shared through `Rc<RefCell<_>>`, where `futures_lite::io::split` locks a
//! `Mutex` on every poll (3% of the load generator's CPU in `cohort demo`).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// The half that reads.
pub struct ReadHalf<S>(Rc<RefCell<S>>);

/// The half that writes.
pub struct WriteHalf<S>(Rc<RefCell<S>>);

/// Splits `stream` into halves that two tasks of one executor may use at once. The stream is
/// borrowed only inside a poll, which never polls the other half, so a borrow never meets
/// another. It closes when both halves are dropped.
pub fn split<S>(stream: S) -> (ReadHalf<S>, WriteHalf<S>) {
    let shared = Rc::new(RefCell::new(stream));
    (ReadHalf(Rc::clone(&shared)), WriteHalf(shared))
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadHalf<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteHalf<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt, Cursor};

    #[test]
    fn both_halves_reach_the_one_stream() {
        let (mut reader, mut writer) = split(Cursor::new(vec![0u8; 8]));
        futures_lite::future::block_on(async {
            writer.write_all(b"abcd").await.unwrap();
            writer.flush().await.unwrap();
            let mut rest = [0u8; 4];
            reader.read_exact(&mut rest).await.unwrap();
            assert_eq!(rest, [0; 4], "the read goes on where the write ended");
        });
        drop(reader);
        let stream = Rc::try_unwrap(writer.0).expect("the last half");
        assert_eq!(&stream.into_inner().into_inner()[..], b"abcd\0\0\0\0");
    }
}
