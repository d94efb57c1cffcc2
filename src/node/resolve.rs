//! Member addresses to the socket addresses of one core's peers, off the core loop, and again
//! until they resolve.
//!
//! A member is `host:port`. A host name goes to the system resolver, which blocks, for its
//! whole timeout while DNS is down: on the loop, every group of the core would stall with
//! it, and on the core's blocking threads, so would the jobs queued behind it (the WAL's
//! next segment, snapshot files): it runs on a thread of its own. And a name that failed to
//! resolve once must not leave its node out for good (its messages refused, its handshakes
//! refused as unknown) until the next membership change: a failed name keeps the address it
//! had, if it had one, and the whole set is resolved again a second later, until every name
//! resolves or the members change.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;

use crate::proto::topology::peer_address;
use crate::raft::NodeId;
use crate::shard::inbox::Inbox;
use crate::transport::Transport;

/// After a name failed to resolve, the next try waits this long.
pub const RESOLVE_RETRY: Duration = Duration::from_secs(1);

/// Turns one `host:port` into a socket address (on a blocking thread).
pub type ResolveFn = fn(&str) -> Option<SocketAddr>;

/// The system resolver; an address that is an IP and port needs none.
pub fn system_resolve(address: &str) -> Option<SocketAddr> {
    address.to_socket_addrs().ok()?.next()
}

/// The socket addresses of core `core` of every member but `me`, from `resolved`'s last
/// answers where a name fails now; and the members whose names failed.
fn peer_addresses(
    members: &BTreeMap<u64, String>,
    me: NodeId,
    core: u16,
    resolve: ResolveFn,
    known: &BTreeMap<NodeId, SocketAddr>,
) -> (BTreeMap<NodeId, SocketAddr>, Vec<u64>) {
    let mut peers = BTreeMap::new();
    let mut failed = Vec::new();
    for (&id, base) in members.iter().filter(|(id, _)| **id != me.0) {
        let address = peer_address(base, core);
        let resolved = address
            .as_deref()
            .and_then(|a| a.parse::<SocketAddr>().ok().or_else(|| resolve(a)));
        if let Some(address) = resolved.or_else(|| known.get(&NodeId(id)).copied()) {
            peers.insert(NodeId(id), address);
        }
        if resolved.is_none() {
            failed.push(id);
        }
    }
    (peers, failed)
}

/// The members `core` starts with, resolved here and now (before the loop runs, where
/// blocking stalls nobody).
pub fn resolve_now(
    members: &BTreeMap<u64, String>,
    me: NodeId,
    core: u16,
) -> BTreeMap<NodeId, SocketAddr> {
    let (peers, failed) = peer_addresses(members, me, core, system_resolve, &BTreeMap::new());
    for id in failed {
        tracing::warn!(
            node = id,
            base = members[&id],
            "member address does not resolve yet"
        );
    }
    peers
}

/// Keeps `transport`'s peers those of the latest member set pushed into `wanted`: resolved
/// with `resolve` on a thread of its own ([`on_own_thread`]), again every [`RESOLVE_RETRY`]
/// while a name fails. Runs until `wanted` closes.
pub async fn keep_peers_resolved(
    wanted: Inbox<BTreeMap<u64, String>>,
    transport: Rc<Transport>,
    me: NodeId,
    core: u16,
    resolve: ResolveFn,
) {
    // The addresses resolved at start: a name that fails its first try here keeps its own.
    let mut known = transport.peer_addresses();
    let mut members: Option<BTreeMap<u64, String>> = None;
    let mut said_failed: Vec<u64> = Vec::new();
    // No thread could be started for the last try (said once, until one starts again).
    let mut no_thread = false;
    let mut taken = Vec::new();
    loop {
        // A new member set, or (while a name fails, or no thread started) the retry's time.
        let retrying = !said_failed.is_empty() || no_thread;
        let arrived = future::or(
            async {
                wanted
                    .take_all_until_closed(&mut taken)
                    .await
                    .then_some(true)
            },
            async {
                if retrying {
                    glommio::timer::sleep(RESOLVE_RETRY).await;
                    Some(false)
                } else {
                    future::pending().await
                }
            },
        )
        .await;
        match arrived {
            None => return,
            Some(true) => {
                members = taken.pop().or(members);
                taken.clear();
            }
            Some(false) => {}
        }
        let Some(current) = members.clone() else {
            continue;
        };
        let known_now = known.clone();
        let job = move || peer_addresses(&current, me, core, resolve, &known_now);
        let (peers, failed) = match on_own_thread(job).await {
            Ok(answer) => answer,
            // No thread to resolve on (the process at its limit of threads): the addresses
            // stay as they are, and the names are tried again in a while.
            Err(error) => {
                if !std::mem::replace(&mut no_thread, true) {
                    tracing::warn!(
                        node = %me,
                        core,
                        %error,
                        "cannot start a thread to resolve member names: trying again every \
                         {RESOLVE_RETRY:?}"
                    );
                }
                continue;
            }
        };
        no_thread = false;
        for &id in failed.iter().filter(|id| !said_failed.contains(id)) {
            tracing::warn!(
                node = id,
                "member address does not resolve; it keeps its last address, if it had one, \
                 and is tried again every {RESOLVE_RETRY:?}"
            );
        }
        transport.set_peers(&peers);
        known = peers;
        said_failed = failed;
    }
}

/// How often [`on_own_thread`] looks for its thread's answer.
const ANSWER_POLL: Duration = Duration::from_millis(10);

/// Runs `job` on a thread of its own and waits for its answer, looking every `ANSWER_POLL`
/// (a resolution is rare: at a membership change, or a second after a name failed). Found
/// in review: on the core's blocking thread (then one), a resolver waiting out its timeout (about
/// 10 s a name with DNS down) held up the WAL's next segment and the snapshot files behind
/// it. A panic in `job` is one of the caller's, as with `off_loop`. An error if no thread
/// could be started (found in review: a panic, which stopped the node).
async fn on_own_thread<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("cohort-resolve".to_string())
        .spawn(move || {
            let _ = sender.send(job());
        });
    spawned?;
    loop {
        match receiver.try_recv() {
            Ok(answer) => return Ok(answer),
            Err(std::sync::mpsc::TryRecvError::Empty) => glommio::timer::sleep(ANSWER_POLL).await,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                panic!("the thread resolving names panicked")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node 1's task keeping core 0's peers resolved, started on a transport that knows
    /// `known` and members 1 (an address) and 2 (`name_2`), resolved by `resolve`; stopped by
    /// closing the inbox and awaiting the task.
    fn resolving(
        known: BTreeMap<NodeId, SocketAddr>,
        name_2: &str,
        resolve: ResolveFn,
    ) -> (
        Rc<Transport>,
        Inbox<BTreeMap<u64, String>>,
        glommio::Task<()>,
    ) {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let config = crate::transport::TransportConfig::new(
            NodeId(1),
            0,
            crate::wire::ClusterId(7),
            listen,
            known,
        );
        let transport = Rc::new(Transport::start(config).expect("starts"));
        let wanted = Inbox::new(4);
        wanted.push_now(BTreeMap::from([
            (1, "127.0.0.1:7000".to_string()),
            (2, name_2.to_string()),
        ]));
        let keeping = glommio::spawn_local(keep_peers_resolved(
            wanted.clone(),
            Rc::clone(&transport),
            NodeId(1),
            0,
            resolve,
        ));
        (transport, wanted, keeping)
    }

    /// Goal (found in review): a resolver that blocks does not hold up the core's jobs off
    /// the loop. Method: names that take 5 s each to fail, and a job off the loop issued
    /// meanwhile: it ends at once.
    #[test]
    fn a_slow_resolver_holds_up_no_job_off_the_loop() {
        fn slow_to_fail(_: &str) -> Option<SocketAddr> {
            #[allow(clippy::disallowed_methods)] // a resolver that blocks, on its own thread
            std::thread::sleep(Duration::from_secs(5));
            None
        }
        crate::node::on_one_executor("resolve-slow", || async {
            let (_, wanted, keeping) = resolving(BTreeMap::new(), "slow-name:7000", slow_to_fail);
            glommio::timer::sleep(Duration::from_millis(100)).await;
            let start = crate::clock::now();
            crate::node::off_loop(|| ()).await;
            let waited = start.elapsed();
            wanted.close();
            keeping.await;
            waited
        })
        // Held up, the job would wait about 4.9 s; free, a loaded machine's few ms.
        .map(|waited| assert!(waited < Duration::from_secs(1), "{waited:?}"))
        .expect("executor");
    }

    /// Resolves `name-<n>:<port>` to 127.0.0.<n>, other names to nothing.
    fn fake_resolve(address: &str) -> Option<SocketAddr> {
        let (host, port) = address.rsplit_once(':')?;
        let n: u8 = host.strip_prefix("name-")?.parse().ok()?;
        format!("127.0.0.{n}:{port}").parse().ok()
    }

    /// Fails its first call, then resolves every name to 127.0.0.2.
    fn resolves_the_second_time(address: &str) -> Option<SocketAddr> {
        use std::sync::atomic::{AtomicBool, Ordering};
        static CALLED: AtomicBool = AtomicBool::new(false);
        if !CALLED.swap(true, Ordering::SeqCst) {
            return None;
        }
        let (_, port) = address.rsplit_once(':')?;
        format!("127.0.0.2:{port}").parse().ok()
    }

    /// A member whose name did not resolve at first becomes a peer once it does, without a
    /// membership change.
    #[test]
    fn a_name_that_did_not_resolve_is_tried_again_until_it_does() {
        crate::node::on_one_executor("resolve-test", || async {
            let (transport, wanted, keeping) =
                resolving(BTreeMap::new(), "late-name:7000", resolves_the_second_time);
            for _ in 0..100 {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                if transport.peers() == [NodeId(2)] {
                    break;
                }
            }
            assert_eq!(transport.peers(), [NodeId(2)], "resolved on a later try");
            wanted.close();
            keeping.await;
        })
        .expect("executor");
    }

    /// A peer resolved at start keeps its address when its name then fails to resolve (a
    /// name server down for a moment); it was dropped, its connection with it, until the next
    /// try a second later.
    #[test]
    fn a_peer_resolved_at_start_keeps_its_address_when_its_name_then_fails() {
        crate::node::on_one_executor("resolve-keeps", || async {
            let two: SocketAddr = "127.0.0.2:7002".parse().unwrap();
            let (transport, wanted, keeping) = resolving(
                BTreeMap::from([(NodeId(2), two)]),
                "name-that-fails:7000",
                |_| None,
            );
            // The first try runs at once.
            glommio::timer::sleep(Duration::from_millis(200)).await;
            assert_eq!(
                transport.peer_addresses(),
                BTreeMap::from([(NodeId(2), two)])
            );
            wanted.close();
            keeping.await;
        })
        .expect("executor");
    }

    #[test]
    fn a_name_that_fails_keeps_its_last_address_and_is_listed_as_failed() {
        let members = BTreeMap::from([
            (1, "127.0.0.1:7000".to_string()),
            (2, "name-2:7000".to_string()),
            (3, "gone:7000".to_string()),
        ]);
        let (peers, failed) =
            peer_addresses(&members, NodeId(1), 1, fake_resolve, &BTreeMap::new());
        let two: SocketAddr = "127.0.0.2:7002".parse().unwrap();
        assert_eq!(peers, BTreeMap::from([(NodeId(2), two)]));
        assert_eq!(failed, [3]);
        let three: SocketAddr = "127.0.0.3:7002".parse().unwrap();
        let known = BTreeMap::from([(NodeId(3), three)]);
        let (peers, failed) = peer_addresses(&members, NodeId(1), 1, fake_resolve, &known);
        assert_eq!(peers[&NodeId(3)], three, "its last address");
        assert_eq!(failed, [3], "and tried again");
    }
}
