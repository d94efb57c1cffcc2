//! The ports a node listens on: free at start, or waited for while a process that just
//! ended lets them go.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::config::NodeConfig;

/// How long a node waits for its ports to come free at start.
const PORT_WAIT: Duration = Duration::from_secs(10);

/// How often a waiting start looks again.
const PORT_POLL: Duration = Duration::from_millis(20);

/// The first of `addrs` that cannot be bound (as the node binds them: SO_REUSEADDR), with
/// the error that says why.
fn unbound(addrs: &[SocketAddr]) -> Option<(SocketAddr, io::Error)> {
    addrs
        .iter()
        .find_map(|addr| std::net::TcpListener::bind(addr).err().map(|e| (*addr, e)))
}

fn in_use(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::AddrInUse
}

fn waiting_line(who: &str, addr: SocketAddr, whose: &str) -> String {
    format!("{who}: {addr} is still in use ({whose}?): waiting up to {PORT_WAIT:?}")
}

/// Waits until every one of `addrs` can be bound, for up to [`PORT_WAIT`]. A process of this
/// node killed a moment ago can still hold its listening sockets: the kernel tears its
/// io_uring down in the background, and an accept in flight keeps the socket open until
/// then. A port still taken after that is an error (another error is the bind's to say).
/// False when the node was stopped while it waited (a Ctrl-C must not wait out the ports).
pub(super) async fn wait_for_ports(
    core: u16,
    addrs: &[SocketAddr],
    stop: &AtomicBool,
) -> Result<bool, String> {
    let started = crate::clock::now();
    let mut said = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let Some((addr, error)) = unbound(addrs).filter(|(_, e)| in_use(e)) else {
            return Ok(true);
        };
        if started.elapsed() >= PORT_WAIT {
            return Err(format!("core {core}: cannot listen on {addr}: {error}"));
        }
        if !said {
            let line = waiting_line(&format!("core {core}"), addr, "a process that just ended");
            super::say(&line);
            said = true;
        }
        glommio::timer::sleep(PORT_POLL).await;
    }
}

/// Every port of every core of a node's first start, free (or freed within [`PORT_WAIT`])
/// before its data dir is made, and the node not stopped meanwhile (false where it was): a
/// first start refused for a port another program holds, or an address that is not this
/// machine's, would otherwise leave a dir that records this address as the node's (and these
/// --peers as the cluster's founders), so that a start at another port is refused as a node
/// moved. A core that finds its port taken again later still fails its start.
pub(super) fn free_before_first_start(
    config: &NodeConfig,
    stop: &AtomicBool,
) -> Result<bool, String> {
    let mut addrs = Vec::new();
    for core in 0..config.cores {
        addrs.push(
            config
                .peer_addr(config.id, core)
                .map_err(|e| e.to_string())?,
        );
        addrs.push(
            config
                .client_addr(config.id, core)
                .map_err(|e| e.to_string())?,
        );
    }
    let started = crate::clock::now();
    let mut said = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let Some((addr, error)) = unbound(&addrs) else {
            return Ok(true);
        };
        if !in_use(&error) || started.elapsed() >= PORT_WAIT {
            let hint = match error.kind() {
                io::ErrorKind::AddrNotAvailable => " (is it an address of this machine?)",
                _ => "",
            };
            return Err(format!(
                "node {}: cannot listen on {addr}: {error}{hint}; nothing was written to {} (a \
                 first start writes nothing before it can listen)",
                config.id,
                config.data_dir.display()
            ));
        }
        if !said {
            let line = waiting_line(&format!("node {}", config.id), addr, "another program");
            super::say(&line);
            said = true;
        }
        #[allow(clippy::disallowed_methods)] // at start, before any executor runs
        std::thread::sleep(PORT_POLL);
    }
}
