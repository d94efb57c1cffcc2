//! One client connection to one core of one node: write a frame, read a frame.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::transport::{FrameReader, ReadFrameError};
use crate::wire::limits::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES};
use crate::wire::{DecodeError, FrameEncoder};

/// A TCP connection to `address` (HOST:PORT) with Nagle off.
pub(crate) async fn dial(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(address)?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{address}: no address")))?;
    let stream = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream)
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
