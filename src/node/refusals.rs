//! Why a node stops for good: its peers refused it as a member that lost its data (kept in
//! its dir, so that a later start is refused at once), it was removed from the cluster, or
//! its groups know it at another address than it was told to listen on.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::raft::NodeId;
use crate::shard::core::Input;
use crate::shard::inbox::Inbox;
use crate::transport::{DataLost, Transport};

use super::config::NodeConfig;
use super::members_view::RemovedCores;
use super::runtime::say;

/// Refuses to start a node one of whose cores was refused for lost data at an earlier start
/// (the reason is kept in that core's `REFUSED_FILE`). Checked for every core before any
/// starts: a core that started meanwhile would count a start its peers never saw, and once
/// the file was removed an older copy could count its way past what they saw.
pub(super) fn refused_before(config: &NodeConfig) -> Result<(), String> {
    for core in 0..config.cores {
        let refused_file = config
            .data_dir
            .join(format!("core-{core}"))
            .join(REFUSED_FILE);
        match crate::durable::read_text(&refused_file) {
            Ok(None) => {}
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                return Err(format!(
                    "{} is damaged: {error}. It says a core of this node was refused for lost \
                     data at an earlier start, and why: removed, the node starts again (see \
                     `cohort serve`'s refusal at that start in its log)",
                    refused_file.display()
                ));
            }
            // Unreadable, it may say the node was refused: never start past it.
            Err(error) => {
                return Err(format!("cannot read {}: {error}", refused_file.display()));
            }
            Ok(Some(why)) => {
                return Err(format!(
                    "{} (said at an earlier start and kept in {}: removed, the node starts \
                     again; on another data dir it is refused again by every peer that knew its \
                     old one, but on an older copy of its own it is let in once its start count \
                     passes what its peers saw, without what it lost)",
                    why.trim_end(),
                    refused_file.display()
                ));
            }
        }
    }
    Ok(())
}

/// Why node `me` may not run, when the members its groups know place it elsewhere than
/// where it listens (`listens`, as `--peers` or `--listen` say): at another port, or another
/// IP. Its peers
/// would dial that address, and its clients be sent there (found in review: a node whose first
/// start failed, its port in use, started again with other addresses in `--peers`, told
/// clients its old address, where another cluster's node took their writes). Where the two
/// differ only in a host name (a name and its IP may be one place: nodes given other text for
/// one address, which a peer's snapshot then brings), it is said, once for each address.
pub(super) fn known_elsewhere(
    (me, core): (NodeId, u16),
    listens: &str,
    members: &BTreeMap<u64, String>,
    said: &mut Option<String>,
) -> Option<String> {
    let known = members.get(&me.0).filter(|known| *known != listens)?;
    let port = |address: &str| {
        address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
    };
    let ip = |address: &str| address.parse::<std::net::SocketAddr>().ok();
    let other_ip = matches!((ip(known), ip(listens)), (Some(a), Some(b)) if a != b);
    let elsewhere = port(known) != port(listens) || other_ip;
    if elsewhere {
        return Some(format!(
            "node {me}: its groups know it at {known}, not at {listens} where it was told to \
             listen (--peers or --listen): its peers would dial {known}, and its clients be \
             sent there. Start it at {known} as before; a node at a new address needs a new \
             id (`cohort members remove --id {me}` at another member, then --join with a new \
             id and an empty data dir). A data dir whose node never served may be deleted instead"
        ));
    }
    if said.as_ref() != Some(known) {
        *said = Some(known.clone());
        tracing::warn!(
            node = %me,
            core,
            known = known.as_str(),
            listens,
            "this node's groups know it by another name than --peers gives: its peers dial \
             that one, and clients are told it; both must reach this node"
        );
    }
    None
}

/// In a core's dir: why the node stopped because it lost its data, kept for later starts.
pub(super) const REFUSED_FILE: &str = "refused";

/// Whether a core of the node on `data_dir` was refused by its peers for lost data (see
/// `stop_if_refused_as_unknown`), at this start or an earlier one.
pub fn refused_for_lost_data(data_dir: &std::path::Path, cores: u16) -> bool {
    (0..cores).any(|core| {
        data_dir
            .join(format!("core-{core}"))
            .join(REFUSED_FILE)
            .exists()
    })
}

/// Stops the node (this core at once, the others as a signal does) once a peer proves this
/// core lost its data (see `transport::incarnations`): the node then no longer holds what it
/// acknowledged nor the votes it gave, and must not take part under its id. The reason is
/// kept in `refused_file` first, so that a restart (a supervisor's) says the same at once
/// instead of waiting to be refused by its peers again.
pub(super) async fn stop_if_refused_as_unknown(
    transport: Rc<Transport>,
    refused: Rc<RefCell<Option<String>>>,
    (stop, inbox): (Arc<AtomicBool>, Inbox<Input>),
    refused_file: std::path::PathBuf,
    (node, core): (NodeId, u16),
) {
    let lost = match transport.refused_as_unknown().await {
        DataLost::OtherData {
            peer,
            incarnation_recorded,
        } => format!(
            "node {peer} knew this node with other data (incarnation {incarnation_recorded}), \
             and this core's data is new (its dir had no log at this start): this node lost \
             what it acknowledged and the votes it gave, or it is another machine given the \
             id of a node that still runs (then that node must not be removed)"
        ),
        DataLost::OlderCopy {
            peer,
            start,
            start_recorded,
        } => format!(
            "node {peer} saw a later start of this core's data ({}): this node runs on an older \
             copy of its data dir (a restored backup or VM snapshot?), which may lack what it \
             acknowledged and the votes it gave",
            crate::wire::handshake::starts_text(start, start_recorded)
        ),
    };
    let why = format!(
        "node {node} core {core}: {lost}, and must not take part under its id. Replace it as a \
         dead node: `cohort members remove --id {node}` at another member, then start a node \
         with a new id on an empty data dir with --join (where node {node} runs on elsewhere, \
         only the latter)"
    );
    if let Err(error) = crate::durable::replace_file(&refused_file, why.as_bytes()) {
        tracing::warn!(core, %error, "cannot keep the reason this node stops");
    }
    *refused.borrow_mut() = Some(why);
    // At once, not after its work as on a signal: it must not vote or lead meanwhile. The
    // node's other cores stop after theirs (their peers refuse them too, if they lost theirs).
    inbox.push_now(Input::Stop);
    stop.store(true, Ordering::SeqCst);
}

/// Why the node stops, once every core's groups removed it: as their log or a snapshot says,
/// or as a peer said (`by`) to a core whose log never had the change (the node was down).
pub(super) fn removed_why(node: NodeId, by: Option<NodeId>) -> String {
    let how = match by {
        None => "no group of this node holds it".to_string(),
        Some(by) => format!(
            "node {by} says so: this node was down, cut off or behind when the change \
             committed, and no group holds it"
        ),
    };
    format!(
        "node {node} was removed from the cluster ({how}): it stops; an id is never used again: \
         to add this machine again, start it with a new --id, an empty --data-dir and --join"
    )
}

/// Marks this core removed once a peer says this node was removed from the cluster (the
/// answer to a dial or a probe, see `transport::dial`): a node removed while it was down
/// never applies the change, and would otherwise run on, its groups campaigning in vain.
/// Once every core is marked (by this or by its groups' own log), the node stops, as a node
/// whose log removed it does.
pub(super) async fn stop_if_told_removed(
    transport: Rc<Transport>,
    refused: Rc<RefCell<Option<String>>>,
    (stop, inbox): (Arc<AtomicBool>, Inbox<Input>),
    removed_cores: Arc<RemovedCores>,
    (node, core): (NodeId, u16),
) {
    let by = transport.told_removed().await;
    if !removed_cores.mark(core) {
        say(&format!(
            "node {node} core {core}: node {by} says this node was removed from the groups of \
             this core; the node stops once every core's groups removed it"
        ));
        return;
    }
    if refused.borrow().is_none() {
        *refused.borrow_mut() = Some(removed_why(node, Some(by)));
    }
    inbox.push_now(Input::Stop);
    stop.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node known at another port or another IP than where it listens may not run; known
    /// by another name (a name and its IP may be one place) it is said once, and runs.
    #[test]
    fn a_node_known_elsewhere_may_not_run_and_one_known_by_another_name_is_told() {
        let me = (NodeId(1), 0);
        let known = |address: &str| BTreeMap::from([(1, address.to_string())]);
        let mut said = None;
        let at = "10.0.0.1:7000";
        assert!(known_elsewhere(me, at, &known(at), &mut said).is_none());
        assert!(known_elsewhere(me, at, &known("10.0.0.1:7100"), &mut said).is_some());
        assert!(known_elsewhere(me, at, &known("10.0.0.2:7000"), &mut said).is_some());
        assert!(known_elsewhere(me, at, &known("db1:7100"), &mut said).is_some());
        assert!(known_elsewhere(me, at, &known("db1:7000"), &mut said).is_none());
        assert_eq!(said.as_deref(), Some("db1:7000"), "said");
        assert!(known_elsewhere(me, "[::1]:7000", &known("[0::1]:7000"), &mut said).is_none());
        assert!(known_elsewhere(me, at, &BTreeMap::new(), &mut said).is_none());
    }
}
