//! The data dirs of this core's peers, as first seen: a peer back under its id on another data
//! dir is refused, and so is this node when a peer knew it on another one.
//!
//! Every data dir has an incarnation, a random number drawn when the dir is made (see
//! `node::identity`). A handshake carries the sender's and the one the sender recorded for the
//! receiver. A node on a new dir under an old id no longer holds the entries it acknowledged
//! nor the votes it gave; let in, its vote could elect a leader that lacks committed entries.
//! So the first incarnation seen of each peer is recorded, durably, before the connection
//! carries a message, and a connection that contradicts a record ends, on both sides:
//! - the side that knew the peer logs that the peer came back on another data dir;
//! - the side that finds itself unknown ([`HandshakeError::ThisDataDirUnknown`]) throws
//!   [`Incarnations::refused`], which the node takes as a reason to stop.
//!
//! The record is `peers.incarnations` in the core's dir: plain text, a format line and one
//! `node_id=incarnation` per line, rewritten atomically (temporary file, fsync, rename, fsync
//! of the dir) when a peer is seen for the first time. Without a file (tests) it is kept in
//! memory. Incarnation 0 means "none" (an older node): it is neither checked nor recorded.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::raft::NodeId;
use crate::wire::Handshake;
use crate::wire::handshake::HandshakeError;

use super::signal::Stop;

const FORMAT: &str = "cohort peer incarnations v1";

pub(super) struct Incarnations {
    own: u64,
    file: Option<PathBuf>,
    known: RefCell<BTreeMap<NodeId, u64>>,
    /// Why this node was refused as unknown, once it was.
    refusal: RefCell<Option<HandshakeError>>,
    refused: Stop,
}

impl Incarnations {
    /// The records in `file` (none if it does not exist yet), for a node of incarnation `own`.
    pub fn load(own: u64, file: Option<PathBuf>) -> io::Result<Incarnations> {
        let known = match &file {
            Some(path) => read(path)?,
            None => BTreeMap::new(),
        };
        Ok(Incarnations {
            own,
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

    /// Checks a peer's handshake against the records, and records its incarnation if it is the
    /// first seen. A contradiction is refused; one that says this node is unknown also throws
    /// [`Incarnations::refused`].
    pub fn check_and_record(&self, theirs: &Handshake) -> Result<(), IncarnationError> {
        let node_id = theirs.node_id;
        let mine_as_known = theirs.incarnation_of_receiver;
        if self.own != 0 && mine_as_known != 0 && mine_as_known != self.own {
            let error = HandshakeError::ThisDataDirUnknown {
                node_id,
                incarnation: self.own,
                incarnation_recorded: mine_as_known,
            };
            if self.refusal.borrow().is_none() {
                *self.refusal.borrow_mut() = Some(error.clone());
            }
            self.refused.stop();
            return Err(IncarnationError::Refused(error));
        }
        if theirs.incarnation == 0 {
            return Ok(());
        }
        match self.recorded(node_id) {
            0 => self
                .record(node_id, theirs.incarnation)
                .map_err(IncarnationError::Record),
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

    /// Waits until a peer refused this node as unknown, and says why.
    pub async fn refused(&self) -> HandshakeError {
        self.refused.stopped().await;
        self.refusal
            .borrow()
            .clone()
            .expect("the refusal is set before the switch is thrown")
    }

    fn record(&self, peer: NodeId, incarnation: u64) -> io::Result<()> {
        let mut known = self.known.borrow().clone();
        known.insert(peer, incarnation);
        if let Some(path) = &self.file {
            write(path, &known)?;
        }
        *self.known.borrow_mut() = known;
        Ok(())
    }
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
        Err(error) => return Err(error),
    };
    let damaged = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is damaged: {why}", path.display()),
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

fn write(path: &Path, known: &BTreeMap<NodeId, u64>) -> io::Result<()> {
    let mut text = format!("{FORMAT}\n");
    for (node, incarnation) in known {
        text.push_str(&format!("{}={incarnation}\n", node.0));
    }
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
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
        let seen = Incarnations::load(7, Some(file.clone())).unwrap();
        assert_eq!(seen.recorded(NodeId(2)), 0);
        seen.check_and_record(&from(2, 20, 0)).unwrap();
        seen.check_and_record(&from(3, 30, 7)).unwrap();
        // An older node: nothing to check or record.
        seen.check_and_record(&from(4, 0, 0)).unwrap();

        let again = Incarnations::load(7, Some(file.clone())).unwrap();
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
        assert!(!again.refused.is_stopped());
        assert_eq!(
            again.recorded(NodeId(2)),
            20,
            "a refused peer changes no record"
        );

        fs::write(&file, format!("{FORMAT}\n2=x\n")).unwrap();
        let error = Incarnations::load(7, Some(file)).err().unwrap();
        assert!(error.to_string().contains("damaged"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_peer_that_knew_this_node_on_another_data_dir_refuses_it() {
        let seen = Incarnations::load(7, None).unwrap();
        match seen.check_and_record(&from(2, 20, 6)) {
            Err(IncarnationError::Refused(HandshakeError::ThisDataDirUnknown {
                node_id, ..
            })) => assert_eq!(node_id, NodeId(2)),
            other => panic!("{other:?}"),
        }
        assert!(seen.refused.is_stopped());
        assert_eq!(seen.recorded(NodeId(2)), 0);
        let why = futures_lite::future::block_on(seen.refused());
        assert!(why.to_string().contains("incarnation 6"), "{why}");
    }
}
