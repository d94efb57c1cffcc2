//! The ports a node listens on: free at start, or waited for while a process that just
//! ended lets them go.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::config::NodeConfig;

/// How long a node waits for its ports to come free at start.
const PORT_WAIT: Duration = Duration::from_secs(10);

/// How often a waiting start looks again.
const PORT_POLL: Duration = Duration::from_millis(20);

/// The first of `addrs` that cannot be bound (as the node binds them: SO_REUSEADDR) because
/// something listens there, with the error that says so.
fn taken(addrs: &[SocketAddr]) -> Option<(SocketAddr, std::io::Error)> {
    addrs
        .iter()
        .find_map(|addr| match std::net::TcpListener::bind(addr) {
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => Some((*addr, error)),
            _ => None,
        })
}

fn waiting_line(who: &str, addr: SocketAddr) -> String {
    format!(
        "{who}: {addr} is still in use (a process that just ended?): waiting up to {PORT_WAIT:?}"
    )
}

/// Waits until every one of `addrs` can be bound, for up to [`PORT_WAIT`]. A process of this
/// node killed a moment ago can still hold its listening sockets: the kernel tears its
/// io_uring down in the background, and an accept in flight keeps the socket open until
/// then. A port still taken after that is an error. False when the node was stopped while it
/// waited (a Ctrl-C must not wait out the ports).
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
        let Some((addr, error)) = taken(addrs) else {
            return Ok(true);
        };
        if started.elapsed() >= PORT_WAIT {
            return Err(format!("core {core}: cannot listen on {addr}: {error}"));
        }
        if !said {
            super::say(&waiting_line(&format!("core {core}"), addr));
            said = true;
        }
        glommio::timer::sleep(PORT_POLL).await;
    }
}

/// Every port of every core of a node's first start, free (or freed within [`PORT_WAIT`])
/// before its data dir is made: a first start refused for a port taken by another program
/// would otherwise leave a dir that records these --peers as the cluster's founders and this
/// address as the node's, so that a start at another port is refused as a node moved (found
/// by an operator). A core that finds its port taken again later still fails its start.
/// False when the node was stopped while it waited.
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
    while let Some((addr, error)) = taken(&addrs) {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        if started.elapsed() >= PORT_WAIT {
            return Err(format!(
                "node {}: cannot listen on {addr}: {error}; {} was left as it was (a first \
                 start writes nothing before its ports are free)",
                config.id,
                config.data_dir.display()
            ));
        }
        if !said {
            super::say(&waiting_line(&format!("node {}", config.id), addr));
            said = true;
        }
        #[allow(clippy::disallowed_methods)] // at start, before any executor runs
        std::thread::sleep(PORT_POLL);
    }
    Ok(true)
}
