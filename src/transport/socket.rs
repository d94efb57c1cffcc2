//! Sockets tuned with socket2 before glommio gets them: the listener (whose options the
//! accepted connections inherit) and the dialer's non-blocking connect.
//!
//! No SO_REUSEPORT: each core listens on its own port, because a port shared by the cores of
//! a node would let the kernel hand a connection to a core other than the one the peer's
//! handshake names. SO_REUSEADDR lets a restarted node bind while its old connections sit
//! in TIME_WAIT.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

/// Pending connections the kernel holds for `accept`: a node has a handful of peers per core;
/// the rest of the backlog absorbs a burst of reconnects after a partition heals.
const LISTEN_BACKLOG: i32 = 128;

/// Keepalive: a peer silent this long is probed, every interval, this many times, then the
/// connection fails and the dialer reconnects. Raft's own heartbeats usually notice first;
/// keepalive catches a half-open connection on a core whose groups are all idle.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_PROBES: u32 = 4;

/// What every connection is tuned with.
#[derive(Clone, Copy, Debug)]
pub struct SocketOptions {
    /// SO_SNDBUF and SO_RCVBUF.
    pub buffer_bytes: usize,
    /// TCP_USER_TIMEOUT: sent bytes unacknowledged this long close the connection, where the
    /// kernel would otherwise retransmit with a backoff that reaches minutes before it gives
    /// up (about 15 minutes). Also bounds keepalive probing of an idle connection.
    pub unacked_timeout: Duration,
}

fn tune(socket: &Socket, options: SocketOptions) -> io::Result<()> {
    // Latency over packet count: the sender already coalesces a whole loop turn per write.
    socket.set_nodelay(true)?;
    let buffer_bytes = options.buffer_bytes;
    socket.set_send_buffer_size(buffer_bytes)?;
    socket.set_recv_buffer_size(buffer_bytes)?;
    keep_alive(socket)?;
    socket.set_tcp_user_timeout(Some(options.unacked_timeout))?;
    Ok(())
}

/// Probes `socket` once idle for [`KEEPALIVE_IDLE`], and fails it when the probes go
/// unanswered: a client's connection too, where a NAT or firewall that forgot it drops its
/// packets silently (found in review: the next request then waited a whole attempt, and
/// counted as maybe taken in).
pub fn keep_alive(socket: &Socket) -> io::Result<()> {
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    socket.set_tcp_keepalive(&keepalive)
}

fn new_socket(addr: SocketAddr, options: SocketOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Set before connect/listen: the window scale is chosen in the SYN.
    tune(&socket, options)?;
    Ok(socket)
}

/// Binds and listens on `addr`. Must run on a glommio executor thread.
pub fn listen(addr: SocketAddr, options: SocketOptions) -> io::Result<TcpListener> {
    Ok(crate::sys::glommio_listener(listening_socket(
        addr, options,
    )?))
}

/// Binds and listens on `addr`, on any thread: hand the socket to glommio
/// ([`crate::sys::glommio_listener`]) on the executor thread that accepts from it.
pub fn listening_socket(addr: SocketAddr, options: SocketOptions) -> io::Result<Socket> {
    let socket = new_socket(addr, options)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}

/// Starts connecting to `addr` and returns at once. The connection completes (or fails) in
/// the background; the first write waits for it, because the kernel holds writes on a
/// connecting socket until it is established and reports its error otherwise. Must run on
/// a glommio executor thread.
pub fn dial(addr: SocketAddr, options: SocketOptions) -> io::Result<TcpStream> {
    let socket = new_socket(addr, options)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    Ok(crate::sys::glommio_stream(socket))
}

/// TCP_NODELAY and TCP_USER_TIMEOUT on an accepted connection (Linux inherits the
/// listener's buffer sizes and keepalive; setting these again costs a few system calls per
/// connection and does not rely on inheritance).
pub fn tune_accepted(stream: &TcpStream, options: SocketOptions) -> io::Result<()> {
    stream.set_nodelay(true).map_err(io::Error::from)?;
    // Through a second descriptor of the same socket: glommio's stream has no such setter.
    crate::sys::socket_handle(stream)?.set_tcp_user_timeout(Some(options.unacked_timeout))
}
