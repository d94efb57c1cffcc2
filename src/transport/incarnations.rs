//! The data of this core's peers, as first seen: a peer back under its id with other data is
//! refused, and so is this core when a peer knew it with other data.
//!
//! Every core's data has an incarnation, a random number drawn when its dir is first used
//! (see `node::incarnation`). A handshake carries the sender's and the one the sender
//! recorded for the receiver. A core back on a new log under an old node id no longer holds
//! the entries it acknowledged nor the votes it gave; let in, its vote could elect a leader
//! that lacks committed entries, or a second leader in a term. So the first incarnation seen
//! of each peer is recorded, durably, before the connection carries a message, and a
//! connection that contradicts a record ends, on both sides:
//! - the side that recorded the peer logs that the peer came back with other data
//!   ([`HandshakeError::PeerDataDirChanged`]);
//! - the side that finds itself recorded otherwise ([`HandshakeError::ThisDataDirUnknown`])
//!   refuses the connection too; if its own data is new (drawn at this start, with no log),
//!   that proves it lost what it had, and [`Incarnations::refused`] fires, on which the
//!   transport shuts down and the node stops. Otherwise one side's record or incarnation file
//!   was lost or is wrong: both keep refusing, with the reason logged, until an operator
//!   decides (the error texts say how). Stopping is a courtesy, not the protection: a wiped
//!   core whose first start ended before it met a peer that knew it is no longer new at its
//!   next start, and only the peers' refusals keep it out.
//!
//! The record is `peers.incarnations` in the core's dir: plain text, a format line and one
//! `node_id=incarnation` per line, replaced whole and durably ([`crate::durable`]) when a
//! peer is seen for the first time. Without a file (tests) it is kept in memory.
//! Incarnation 0 means "none" (an older node): it is neither checked nor recorded, so an
//! older binary is let in whatever its data.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::raft::NodeId;
use crate::wire::Handshake;
use crate::wire::handshake::HandshakeError;

use super::signal::Stop;

const FORMAT: &str = "cohort peer incarnations v1";

pub(super) struct Incarnations {
    own: u64,
    /// This core's data is new: a peer that recorded it otherwise proves it lost its data.
    own_is_new: bool,
    file: Option<PathBuf>,
    known: RefCell<BTreeMap<NodeId, u64>>,
    /// The peer that proved this core lost its data, once one did.
    refusal: RefCell<Option<RecordedOtherwise>>,
    refused: Stop,
}

impl Incarnations {
    /// The records in `file` (none if it does not exist yet), for a core of incarnation `own`.
    pub fn load(own: u64, own_is_new: bool, file: Option<PathBuf>) -> io::Result<Incarnations> {
        let known = match &file {
            Some(path) => read(path)?,
            None => BTreeMap::new(),
        };
        Ok(Incarnations {
            own,
            own_is_new,
            file,
            known: RefCell::new(known),
            refusal: RefCell::new(None),
            refused: Stop::default(),
        })
    }

    pub fn own(&self) -> u64 {
        self.own
    }

    /// The incarnation recorded for `peer`, 0 if none.
    pub fn recorded(&self, peer: NodeId) -> u64 {
        self.known.borrow().get(&peer).copied().unwrap_or(0)
    }

    /// Whether [`Incarnations::refused`] has fired.
    pub fn is_refused(&self) -> bool {
        self.refused.is_stopped()
    }

    /// Checks a peer's handshake against the records, and records its incarnation if it is the
    /// first seen (durably, before returning). A contradiction is refused.
    ///
    /// The record is written on the event loop's thread: a file of a few lines, synced once
    /// per peer in the life of a core's dir (its first connection), so a stall of about one
    /// fdatasync at cluster start or when a node joins. Not on glommio's blocking pool: its
    /// one thread per executor also resolves member names and writes snapshots, and a
    /// handshake waiting behind a slow name server would time out, again and again.
    pub fn check_and_record(&self, theirs: &Handshake) -> Result<(), IncarnationError> {
        self.check(theirs)?;
        if theirs.incarnation == 0 || self.recorded(theirs.node_id) != 0 {
            return Ok(());
        }
        let mut known = self.known.borrow().clone();
        known.insert(theirs.node_id, theirs.incarnation);
        if let Some(path) = &self.file {
            crate::durable::replace_file(path, render(&known).as_bytes())
                .map_err(IncarnationError::Record)?;
        }
        *self.known.borrow_mut() = known;
        Ok(())
    }

    fn check(&self, theirs: &Handshake) -> Result<(), IncarnationError> {
        let node_id = theirs.node_id;
        let mine_as_known = theirs.incarnation_of_receiver;
        if self.own != 0 && mine_as_known != 0 && mine_as_known != self.own {
            let error = HandshakeError::ThisDataDirUnknown {
                node_id,
                incarnation: self.own,
                incarnation_recorded: mine_as_known,
            };
            if self.own_is_new && !self.refused.is_stopped() {
                *self.refusal.borrow_mut() = Some(RecordedOtherwise {
                    peer: node_id,
                    incarnation_recorded: mine_as_known,
                });
                self.refused.stop();
            }
            return Err(IncarnationError::Refused(error));
        }
        match self.recorded(node_id) {
            recorded if recorded == 0 || theirs.incarnation == 0 => Ok(()),
            recorded if recorded == theirs.incarnation => Ok(()),
            recorded => Err(IncarnationError::Refused(
                HandshakeError::PeerDataDirChanged {
                    node_id,
                    incarnation: theirs.incarnation,
                    incarnation_recorded: recorded,
                },
            )),
        }
    }

    /// Waits until a peer proved this core lost its data, and says which and what it recorded.
    pub async fn refused(&self) -> RecordedOtherwise {
        self.refused.stopped().await;
        self.refusal
            .borrow()
            .expect("the refusal is set before the switch is thrown")
    }
}

/// A peer recorded another incarnation for this core than its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedOtherwise {
    pub peer: NodeId,
    pub incarnation_recorded: u64,
}

/// Why [`Incarnations::check_and_record`] ended a connection.
#[derive(Debug)]
pub(super) enum IncarnationError {
    Refused(HandshakeError),
    /// The first incarnation seen of a peer could not be recorded: the connection ends rather
    /// than let in a peer that a later contradiction could not be checked against.
    Record(io::Error),
}

fn read(path: &Path) -> io::Result<BTreeMap<NodeId, u64>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => {
            return Err(io::Error::new(
                error.kind(),
                format!("cannot read {}: {error}", path.display()),
            ));
        }
    };
    let damaged = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is damaged: {why}. It records the data dir incarnation of each peer this \
                 core has met; moved away, each peer is recorded again as it next connects \
                 (one back on a wiped data dir meanwhile would be let in)",
                path.display()
            ),
        )
    };
    let mut lines = text.lines();
    if lines.next() != Some(FORMAT) {
        return Err(damaged(format!("it does not start with `{FORMAT}`")));
    }
    let mut known = BTreeMap::new();
    for line in lines {
        let parsed = line
            .split_once('=')
            .and_then(|(node, incarnation)| Some((node.parse().ok()?, incarnation.parse().ok()?)));
        match parsed {
            Some((node, incarnation)) if node != 0 && incarnation != 0 => {
                known.insert(NodeId(node), incarnation);
            }
            _ => return Err(damaged(format!("`{line}` is not NODE=INCARNATION"))),
        }
    }
    Ok(known)
}

fn render(known: &BTreeMap<NodeId, u64>) -> String {
    let mut text = format!("{FORMAT}\n");
    for (node, incarnation) in known {
        text.push_str(&format!("{}={incarnation}\n", node.0));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ClusterId;

    fn from(node: u64, incarnation: u64, incarnation_of_receiver: u64) -> Handshake {
        Handshake {
            incarnation,
            incarnation_of_receiver,
            ..Handshake::current(ClusterId(1), NodeId(node), 0)
        }
    }

    #[test]
    fn the_first_incarnation_seen_is_kept_across_restarts_and_another_is_refused() {
        let dir = std::env::temp_dir().join(format!("cohort-incarnations-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("peers.incarnations");
        let seen = Incarnations::load(7, false, Some(file.clone())).unwrap();
        assert_eq!(seen.recorded(NodeId(2)), 0);
        seen.check_and_record(&from(2, 20, 0)).unwrap();
        seen.check_and_record(&from(3, 30, 7)).unwrap();
        // An older node: nothing to check or record.
        seen.check_and_record(&from(4, 0, 0)).unwrap();

        let again = Incarnations::load(7, false, Some(file.clone())).unwrap();
        assert_eq!(again.recorded(NodeId(2)), 20);
        assert_eq!(again.recorded(NodeId(3)), 30);
        assert_eq!(again.recorded(NodeId(4)), 0);
        again.check_and_record(&from(2, 20, 7)).unwrap();
        match again.check_and_record(&from(2, 21, 0)) {
            Err(IncarnationError::Refused(HandshakeError::PeerDataDirChanged {
                node_id,
                incarnation,
                incarnation_recorded,
            })) => assert_eq!(
                (node_id, incarnation, incarnation_recorded),
                (NodeId(2), 21, 20)
            ),
            other => panic!("{other:?}"),
        }
        assert!(!again.is_refused());
        assert_eq!(
            again.recorded(NodeId(2)),
            20,
            "a refused peer changes no record"
        );
        assert!(!crate::durable::temporary_twin(&file).exists());

        fs::write(&file, format!("{FORMAT}\n2=x\n")).unwrap();
        let error = Incarnations::load(7, false, Some(file)).err().unwrap();
        assert!(error.to_string().contains("damaged"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A record that cannot be written refuses the peer and records nothing.
    #[test]
    fn a_record_that_cannot_be_written_refuses_the_peer() {
        let file = std::env::temp_dir()
            .join(format!("cohort-incarnations-gone-{}", std::process::id()))
            .join("peers.incarnations");
        let seen = Incarnations::load(7, false, Some(file)).unwrap();
        let refused = seen.check_and_record(&from(2, 20, 0));
        assert!(
            matches!(refused, Err(IncarnationError::Record(_))),
            "{refused:?}"
        );
        assert_eq!(seen.recorded(NodeId(2)), 0);
    }

    /// A peer that recorded this core otherwise is refused either way; only a core whose data
    /// is new takes that as proof it lost its data.
    #[test]
    fn a_peer_that_knew_this_core_otherwise_is_refused_and_proves_a_loss_only_if_new() {
        for own_is_new in [false, true] {
            let seen = Incarnations::load(7, own_is_new, None).unwrap();
            match seen.check_and_record(&from(2, 20, 6)) {
                Err(IncarnationError::Refused(HandshakeError::ThisDataDirUnknown {
                    node_id,
                    ..
                })) => assert_eq!(node_id, NodeId(2)),
                other => panic!("{other:?}"),
            }
            assert_eq!(seen.is_refused(), own_is_new);
            assert_eq!(seen.recorded(NodeId(2)), 0);
            if own_is_new {
                let why = futures_lite::future::block_on(seen.refused());
                assert_eq!((why.peer, why.incarnation_recorded), (NodeId(2), 6));
            }
        }
    }
}
