//! One client connection to one core of one node: write a frame, read a frame.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::wire::limits::FRAME_HEADER_BYTES;
use crate::wire::{FrameEncoder, FrameHeader};

pub struct Conn {
    stream: TcpStream,
    buffer: BytesMut,
}

/// Bytes read from the socket per read call when a frame needs more.
const READ_CHUNK_BYTES: usize = 64 << 10;

impl Conn {
    pub async fn connect(address: &str, timeout: Duration) -> io::Result<Conn> {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(address)?
            .next()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{address}: no address"))
            })?;
        let stream = TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(io::Error::from)?;
        stream.set_nodelay(true).map_err(io::Error::from)?;
        Ok(Conn {
            stream,
            buffer: BytesMut::with_capacity(READ_CHUNK_BYTES),
        })
    }

    /// Write the frame last encoded by `encoder`.
    pub async fn send(&mut self, encoder: &FrameEncoder) -> io::Result<()> {
        self.stream.write_all(encoder.header()).await?;
        self.stream.write_all(encoder.body()).await?;
        self.stream.flush().await
    }

    /// Read one whole frame (not yet verified: the decoders open it).
    pub async fn recv(&mut self) -> io::Result<Bytes> {
        loop {
            let header = FrameHeader::parse(&self.buffer)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if let Some(header) = header
                && self.buffer.len() >= header.frame_bytes()
            {
                return Ok(self.buffer.split_to(header.frame_bytes()).freeze());
            }
            let want = header.map_or(FRAME_HEADER_BYTES, |h| h.frame_bytes());
            let start = self.buffer.len();
            self.buffer
                .resize(start + (want - start).max(READ_CHUNK_BYTES), 0);
            let read = self.stream.read(&mut self.buffer[start..]).await;
            let read = match read {
                Ok(read) => read,
                Err(error) => {
                    self.buffer.truncate(start);
                    return Err(error);
                }
            };
            self.buffer.truncate(start + read);
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the node closed the connection",
                ));
            }
        }
    }
}
