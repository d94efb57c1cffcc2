//! One client connection to one core of one node: write a frame, read a frame.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::transport::{FrameReader, ReadFrameError};
use crate::wire::limits::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES};
use crate::wire::{DecodeError, FrameEncoder};

/// Turns `host:port` into a socket address, blocking while it asks.
type Lookup = fn(&str) -> io::Result<SocketAddr>;

/// The system resolver's first address for `address`.
fn system_lookup(address: &str) -> io::Result<SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{address}: no address")))
}

/// A TCP connection to `address` (HOST:PORT) with Nagle off, within `timeout` (the name
/// lookup and the connect together).
pub(crate) async fn dial(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    dial_with(address, timeout, system_lookup).await
}

async fn dial_with(address: &str, timeout: Duration, lookup: Lookup) -> io::Result<TcpStream> {
    let deadline = crate::clock::now() + timeout;
    let addr = resolve(address, timeout, lookup).await?;
    let left = deadline.saturating_duration_since(crate::clock::now());
    let stream = TcpStream::connect_timeout(addr, left)
        .await
        .map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream)
}

/// `address` as a socket address: an IP address at once; a host name through `lookup` on
/// the executor's blocking thread, given up after `timeout`. The system resolver blocks for
/// its whole timeout (seconds, several tries) while DNS is down: on the loop, that stalled
/// every request of the client's executor, far past their own timeouts.
async fn resolve(address: &str, timeout: Duration, lookup: Lookup) -> io::Result<SocketAddr> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let name = address.to_string();
    let caught = move || {
        std::panic::catch_unwind(|| lookup(&name))
            .unwrap_or_else(|_| Err(io::Error::other("the name lookup panicked")))
    };
    // Not through `node::off_loop`, the node's door to that thread: the client does not
    // depend on the node. A panic cannot end the thread here: it is caught above.
    #[allow(clippy::disallowed_methods)]
    let looked_up = glommio::executor().spawn_blocking(caught);
    super::session::with_timeout(timeout, looked_up)
        .await
        .map_err(|error| match error.kind() {
            io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{address}: the name did not resolve within {timeout:?}"),
            ),
            _ => error,
        })
}

/// One question on a fresh connection: send the frame `encoder` holds to `address`, read one
/// frame back and `decode` it, all within `timeout` (the connect alone within
/// `connect_timeout`).
pub(crate) async fn exchange<T>(
    address: &str,
    encoder: &FrameEncoder,
    connect_timeout: Duration,
    timeout: Duration,
    decode: impl FnOnce(&Bytes) -> Result<T, DecodeError>,
) -> io::Result<T> {
    let asked = async {
        let mut conn = Conn::connect(address, connect_timeout).await?;
        conn.send(encoder).await?;
        let frame = conn.recv().await?;
        decode(&frame).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    };
    super::session::with_timeout(timeout, asked).await
}

pub struct Conn {
    stream: TcpStream,
    reader: FrameReader,
}

impl Conn {
    pub async fn connect(address: &str, timeout: Duration) -> io::Result<Conn> {
        let stream = dial(address, timeout).await?;
        Ok(Conn {
            stream,
            reader: FrameReader::new(FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX),
        })
    }

    /// Write the frame last encoded by `encoder`.
    pub async fn send(&mut self, encoder: &FrameEncoder) -> io::Result<()> {
        // One write (a copy: this is the control path): header and body in two writes would
        // reach the node as two segments.
        self.stream.write_all(&encoder.to_frame_vec()).await?;
        self.stream.flush().await
    }

    /// Read one whole frame (not yet verified: the decoders open it).
    pub async fn recv(&mut self) -> io::Result<Bytes> {
        match self.reader.read_frame(&mut self.stream).await {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the node closed the connection",
            )),
            Err(ReadFrameError::Io(error)) => Err(error),
            Err(ReadFrameError::Frame(error)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                error.to_string(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host name resolves through the system resolver, off the loop, and is dialed.
    #[test]
    fn a_host_name_is_looked_up_and_dialed() {
        // Where the resolver sends "localhost" first (127.0.0.1, or ::1 on some systems).
        let first = system_lookup("localhost:0").expect("localhost resolves");
        let listener = std::net::TcpListener::bind(first).expect("bind");
        let address = format!(
            "localhost:{}",
            listener.local_addr().expect("address").port()
        );
        let dialed = crate::node::on_one_executor("dial-test", move || async move {
            dial(&address, Duration::from_secs(5)).await.map(drop)
        })
        .expect("executor");
        assert!(dialed.is_ok(), "{dialed:?}");
    }

    /// Goal: a name lookup that hangs (DNS down) neither stalls the client's executor nor
    /// outlasts the dial's timeout (it ran on the loop: every request of the executor
    /// waited for the resolver, past its own timeout). Method: a lookup that blocks 3 s; a
    /// dial with a 100 ms timeout fails as timed out, saying the name did not resolve, well
    /// before the lookup ends, while a task of the same executor kept ticking.
    #[test]
    fn a_hanging_name_lookup_neither_stalls_the_executor_nor_outlasts_the_dial() {
        #[allow(clippy::disallowed_methods)] // blocks its thread, as a resolver does
        fn hanging(_: &str) -> io::Result<SocketAddr> {
            std::thread::sleep(Duration::from_secs(3));
            Err(io::Error::other("no DNS"))
        }
        let (error, ticks, took) = crate::node::on_one_executor("dial-test", || async {
            let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
            let counter = std::rc::Rc::clone(&ticks);
            let ticker = glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    counter.set(counter.get() + 1);
                }
            });
            let start = crate::clock::now();
            let dialed = dial_with("db.example:7000", Duration::from_millis(100), hanging).await;
            let took = start.elapsed();
            drop(ticker);
            (dialed.expect_err("nothing to dial"), ticks.get(), took)
        })
        .expect("executor");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(error.to_string().contains("did not resolve"), "{error}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(ticks >= 3, "the executor ticked {ticks} times");
    }
}
