//! The data of this core's peers, as first seen: a peer back under its id with other data,
//! or with an older copy of its data, is refused, and so is this core when a peer knew it so.
//!
//! Every core's data has an incarnation, a random number drawn when its dir is first used (see
//! `node::incarnation`). A handshake carries the sender's and the one the sender recorded for the
//! receiver. A core back on a new log under an old node id no longer holds the entries it
//! acknowledged nor the votes it gave; let in, its vote could elect a leader that lacks committed
//! entries, or a second leader in a term. So the first incarnation seen of each peer is recorded,
//! durably, before the connection carries a message, and a connection that contradicts a record
//! ends, on both sides. The same goes for a core whose start is older than the latest a peer saw of
//! it (a lower count of starts, or the same count from another start; see `node::incarnation`): it
//! runs on an older copy of its data (a restored backup or VM snapshot), which may lack entries it
//! acknowledged and votes it gave; that always proves a loss. So:
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
//! `node_id=incarnation/start` per line, replaced whole and durably ([`crate::durable`]) when a
//! peer is seen for the first time. Without a file (tests) it is kept in memory.
//! Incarnation 0 means "none" (an older node): it is neither checked nor recorded, so an
//! older binary is let in whatever its data.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::raft::NodeId;
use crate::wire::Handshake;
use crate::wire::handshake::HandshakeError;

use super::record_writer::{RecordWriter, Write, WriteFn};
use super::signal::Stop;

const FORMAT: &str = "cohort peer incarnations v1";

pub(super) struct Incarnations {
    own: Seen,
    /// This core's data is new: a peer that recorded it otherwise proves it lost its data.
    own_is_new: bool,
    /// Writes the records' file, where there is one.
    writer: Option<RecordWriter>,
    /// The records, with those whose write is in flight (see `writing`).
    known: RefCell<BTreeMap<NodeId, Seen>>,
    /// Per peer, the write of its record in flight, if any: until it is done, a handshake
    /// of that peer waits for it, then is checked against it.
    writing: RefCell<BTreeMap<NodeId, Recording>>,
    /// What proved this core lost data, once something did.
    lost: RefCell<Option<DataLost>>,
    refused: Stop,
}

/// A core's data as a handshake names it: its incarnation, and its start (the count of starts
/// on that data in the high 32 bits, a random number in the low 32; see `node::incarnation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Seen {
    pub incarnation: u64,
    pub start: u64,
}

/// The count of starts in a start.
fn count(start: u64) -> u64 {
    start >> 32
}

/// Whether `start` belongs to an older copy of the data than `recorded` does: a lower count,
/// or the same count from another start (an older copy started again). A start of 0 is none
/// (an older node, or a core that could not count its start on a full disk): never older.
fn is_older(start: u64, recorded: u64) -> bool {
    if start == 0 || recorded == 0 {
        return false;
    }
    count(start) < count(recorded) || (count(start) == count(recorded) && start != recorded)
}

impl Incarnations {
    /// The records in `file` (none if it does not exist yet), for a core whose data is `own`.
    pub fn load(own: Seen, own_is_new: bool, file: Option<PathBuf>) -> io::Result<Incarnations> {
        Self::load_writing(own, own_is_new, file, crate::durable::replace_file)
    }

    /// As [`Incarnations::load`], the file written by `write`.
    fn load_writing(
        own: Seen,
        own_is_new: bool,
        file: Option<PathBuf>,
        write: WriteFn,
    ) -> io::Result<Incarnations> {
        let (known, writer) = match file {
            Some(path) => (read(&path)?, Some(RecordWriter::start(path, write)?)),
            None => (BTreeMap::new(), None),
        };
        Ok(Incarnations {
            own,
            own_is_new,
            writer,
            known: RefCell::new(known),
            writing: RefCell::new(BTreeMap::new()),
            lost: RefCell::new(None),
            refused: Stop::default(),
        })
    }

    pub fn own(&self) -> Seen {
        self.own
    }

    /// What is recorded of `peer` (zeros if nothing).
    pub fn recorded(&self, peer: NodeId) -> Seen {
        self.known.borrow().get(&peer).copied().unwrap_or_default()
    }

    /// Whether [`Incarnations::refused`] has fired.
    pub fn is_refused(&self) -> bool {
        self.refused.is_stopped()
    }

    /// Checks a peer's handshake against the records, and records its incarnation if it is the
    /// first seen, or its start if it is later than recorded (durably, before returning). A
    /// contradiction is refused.
    ///
    /// The record is written on a thread of its own (see `record_writer.rs`), once per peer
    /// and start of it (its first connection after it started). Not on the loop, which a
    /// hung disk would stop with it; not on glommio's blocking pool either: its one thread
    /// per executor also writes snapshots, and a handshake waiting behind one would time out.
    ///
    /// A record is taken in before its write ends: a handshake of the same peer meanwhile
    /// (another copy of it under its id, say) waits for that write, then is checked against
    /// it, as it would have been had the write been done on the loop. The record is taken
    /// back if the write fails (but for a full disk, see below), by whichever handshake
    /// sees it fail first: the one that asked for it may have given up.
    pub async fn check_and_record(&self, theirs: &Handshake) -> Result<(), HandshakeError> {
        let peer = theirs.node_id;
        loop {
            let in_flight = self.writing.borrow().get(&peer).map(|r| r.write.clone());
            let Some(write) = in_flight else { break };
            let _ = write.done().await;
            self.settle(peer);
        }
        self.check(theirs)?;
        let seen = Seen {
            incarnation: theirs.incarnation,
            start: theirs.start,
        };
        let recorded = self.known.borrow().get(&peer).copied();
        if !supersedes(seen, recorded) {
            return Ok(());
        }
        self.known.borrow_mut().insert(peer, seen);
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        let write = writer.write(render(&self.known.borrow()).into_bytes());
        let recording = Recording {
            write: write.clone(),
            seen,
            recorded,
        };
        self.writing.borrow_mut().insert(peer, recording);
        let written = write.done().await;
        self.settle(peer);
        if let Err(error) = written {
            // Refusing the peer for a full disk would cut a node off its peers when it can
            // least afford it; kept in memory, the record still guards this process, and the
            // next record that can be written saves it with the rest. Any other failure (an
            // I/O error) refuses the connection until the record can be made durable.
            if !is_full(&error) {
                return Err(HandshakeError::RecordFailed {
                    node_id: peer,
                    error: error.to_string(),
                });
            }
            tracing::warn!(
                %peer,
                %error,
                "cannot record the peer's data incarnation on a full disk: kept in memory only"
            );
        }
        Ok(())
    }

    /// Once the write of `peer`'s record in flight is done: its record is kept if the write
    /// made it durable, or failed for a full disk (see above); otherwise the record it
    /// replaced is put back. Nothing while the write is in flight.
    fn settle(&self, peer: NodeId) {
        let failed = match self.writing.borrow().get(&peer).map(|r| r.write.outcome()) {
            Some(Some(outcome)) => outcome.is_err_and(|error| !is_full(&error)),
            _ => return,
        };
        let recording = self.writing.borrow_mut().remove(&peer).expect("seen above");
        let mut known = self.known.borrow_mut();
        if failed && known.get(&peer) == Some(&recording.seen) {
            match recording.recorded {
                Some(recorded) => known.insert(peer, recorded),
                None => known.remove(&peer),
            };
        }
    }

    fn check(&self, theirs: &Handshake) -> Result<(), HandshakeError> {
        let node_id = theirs.node_id;
        let mine = Seen {
            incarnation: theirs.incarnation_of_receiver,
            start: theirs.start_of_receiver,
        };
        if self.own.incarnation != 0 && mine.incarnation != 0 {
            if mine.incarnation != self.own.incarnation {
                if self.own_is_new {
                    self.prove_lost(DataLost::OtherData {
                        peer: node_id,
                        incarnation_recorded: mine.incarnation,
                    });
                }
                return Err(HandshakeError::ThisDataDirUnknown {
                    node_id,
                    incarnation: self.own.incarnation,
                    incarnation_recorded: mine.incarnation,
                    starts_recorded: count(mine.start),
                });
            }
            if is_older(self.own.start, mine.start) {
                // Starts are counted durably before a peer sees one: fewer than a peer saw, or
                // as many from another start, can only be an older copy of this core's data.
                self.prove_lost(DataLost::OlderCopy {
                    peer: node_id,
                    start: count(self.own.start),
                    start_recorded: count(mine.start),
                });
                return Err(HandshakeError::ThisDataOld {
                    node_id,
                    start: count(self.own.start),
                    start_recorded: count(mine.start),
                });
            }
        }
        let recorded = self.recorded(node_id);
        if recorded.incarnation == 0 || theirs.incarnation == 0 {
            return Ok(());
        }
        if recorded.incarnation != theirs.incarnation {
            return Err(HandshakeError::PeerDataDirChanged {
                node_id,
                incarnation: theirs.incarnation,
                incarnation_recorded: recorded.incarnation,
                starts_recorded: count(recorded.start),
            });
        }
        if is_older(theirs.start, recorded.start) {
            return Err(HandshakeError::PeerDataOld {
                node_id,
                start: count(theirs.start),
                start_recorded: count(recorded.start),
            });
        }
        Ok(())
    }

    fn prove_lost(&self, lost: DataLost) {
        if !self.refused.is_stopped() {
            *self.lost.borrow_mut() = Some(lost);
            self.refused.stop();
        }
    }

    /// Waits until a peer proved this core lost data, and says how.
    pub async fn refused(&self) -> DataLost {
        self.refused.stopped().await;
        self.lost
            .borrow()
            .expect("the proof is set before the switch is thrown")
    }
}

/// A write of a peer's record in flight, with the record it replaces (see
/// [`Incarnations::check_and_record`]).
struct Recording {
    write: Write,
    seen: Seen,
    recorded: Option<Seen>,
}

/// Whether `error` is a full disk (or quota).
fn is_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Whether `new` replaces `old` as the record of a peer: a first record, or a later start
/// of the same data (a higher count of starts). Other data than recorded is refused before.
fn supersedes(new: Seen, old: Option<Seen>) -> bool {
    new.incarnation != 0 && old.is_none_or(|old| count(new.start) > count(old.start))
}

/// What proved this core lost data: a peer's record of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataLost {
    /// The peer recorded another incarnation, and this core's data is new.
    OtherData {
        peer: NodeId,
        incarnation_recorded: u64,
    },
    /// The peer saw a later start of this core's data than this one (a higher count, or the
    /// same count from another start): it runs on an older copy. Counts of starts.
    OlderCopy {
        peer: NodeId,
        start: u64,
        start_recorded: u64,
    },
}

fn read(path: &Path) -> io::Result<BTreeMap<NodeId, Seen>> {
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
    let text = match crate::durable::read_text(path) {
        Ok(Some(text)) => text,
        Ok(None) => return Ok(BTreeMap::new()),
        Err(error) if error.kind() == io::ErrorKind::InvalidData => {
            return Err(damaged(error.to_string()));
        }
        Err(error) => {
            return Err(io::Error::new(
                error.kind(),
                format!("cannot read {}: {error}", path.display()),
            ));
        }
    };
    let mut lines = text.lines();
    if lines.next() != Some(FORMAT) {
        return Err(damaged(format!("it does not start with `{FORMAT}`")));
    }
    let mut known = BTreeMap::new();
    for line in lines {
        let parsed = line.split_once('=').and_then(|(node, seen)| {
            // Records written before starts were counted have none.
            let (incarnation, start) = seen.split_once('/').unwrap_or((seen, "0"));
            let seen = Seen {
                incarnation: incarnation.parse().ok()?,
                start: start.parse().ok()?,
            };
            Some((node.parse().ok()?, seen))
        });
        match parsed {
            Some((node, seen)) if node != 0 && seen.incarnation != 0 => {
                known.insert(NodeId(node), seen);
            }
            _ => return Err(damaged(format!("`{line}` is not NODE=INCARNATION/START"))),
        }
    }
    Ok(known)
}

fn render(known: &BTreeMap<NodeId, Seen>) -> String {
    let mut text = format!("{FORMAT}\n");
    for (node, seen) in known {
        text.push_str(&format!("{}={}/{}\n", node.0, seen.incarnation, seen.start));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ClusterId;
    use futures_lite::future::block_on;
    use std::fs;

    /// A handshake from `node` on data `(incarnation, count of starts)` that recorded this core
    /// as `(incarnation, count of starts)`.
    fn from(node: u64, theirs: (u64, u64), mine: (u64, u64)) -> Handshake {
        Handshake {
            incarnation: theirs.0,
            start: run(theirs.1),
            incarnation_of_receiver: mine.0,
            start_of_receiver: if mine.0 == 0 { 0 } else { run(mine.1) },
            ..Handshake::current(ClusterId(1), NodeId(node), 0)
        }
    }

    /// Data `incarnation` at its `count`th start (with a fixed random part).
    fn seen(incarnation: u64, count: u64) -> Seen {
        Seen {
            incarnation,
            start: run(count),
        }
    }

    fn run(count: u64) -> u64 {
        count << 32 | 0xABCD
    }

    fn refusal(result: Result<(), HandshakeError>) -> HandshakeError {
        match result {
            Err(error) => error,
            other => panic!("not refused: {other:?}"),
        }
    }

    /// Goal: a peer whose data incarnation cannot be recorded durably (an I/O error, not a
    /// full disk) is refused until it can be: its record is what later refuses it back on
    /// other data. Method: the record's temporary file is a directory; the handshake is
    /// refused, naming the file; once the way is clear, it is accepted and recorded.
    #[test]
    fn a_peer_whose_record_cannot_be_written_is_refused_until_it_can() {
        let name = format!("cohort-incarnations-unwritable-{}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peers.incarnations");
        let blocker = crate::durable::temporary_twin(&path);
        std::fs::create_dir(&blocker).unwrap();
        let ours = Incarnations::load(seen(7, 1), false, Some(path.clone())).unwrap();
        let error = refusal(block_on(ours.check_and_record(&from(2, (9, 1), (7, 1)))));
        assert!(
            matches!(&error, HandshakeError::RecordFailed { node_id, .. } if *node_id == NodeId(2)),
            "{error:?}"
        );
        assert!(error.to_string().contains("peers.incarnations"), "{error}");
        std::fs::remove_dir(&blocker).unwrap();
        block_on(ours.check_and_record(&from(2, (9, 1), (7, 1)))).unwrap();
        let again = Incarnations::load(seen(7, 2), false, Some(path)).unwrap();
        assert_eq!(again.recorded(NodeId(2)), seen(9, 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Records of a core on data (7, 1) in a fresh folder named after `name`, whose every
    /// write takes 300 ms: the folder, the file and the records.
    fn writing_slowly(name: &str) -> (PathBuf, PathBuf, Incarnations) {
        fn slow_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
            #[allow(clippy::disallowed_methods)] // a disk that takes its time, on its thread
            std::thread::sleep(std::time::Duration::from_millis(300));
            crate::durable::replace_file(path, bytes)
        }
        let name = format!("cohort-incarnations-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("peers.incarnations");
        let ours =
            Incarnations::load_writing(seen(7, 1), false, Some(path.clone()), slow_write).unwrap();
        (dir, path, ours)
    }

    /// Goal (found in review): the record's write does not stop the core's loop while it
    /// waits for the disk (a hung device stopped every group of the core with it). Method: a
    /// write that takes 300 ms; the handshake's check, polled once, is pending rather than
    /// done, and once the write is, the peer is recorded, in memory and in the file.
    #[test]
    fn a_slow_record_write_leaves_the_loop_free() {
        let (dir, path, ours) = writing_slowly("slow");
        let handshake = from(2, (9, 1), (7, 1));
        let mut checking = std::pin::pin!(ours.check_and_record(&handshake));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            checking.as_mut().poll(&mut cx).is_pending(),
            "done on the loop"
        );
        block_on(checking).unwrap();
        assert_eq!(ours.recorded(NodeId(2)), seen(9, 1));
        let again = Incarnations::load(seen(7, 2), false, Some(path)).unwrap();
        assert_eq!(again.recorded(NodeId(2)), seen(9, 1));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Goal (found in review): two handshakes of one peer on other data each (two copies of
    /// it under one id), checked while the first one's record is being written, end as they
    /// would one after the other: the first recorded, the second refused, and the file says
    /// what memory says. Before, both passed the check, the file took the second's record
    /// and memory the first's: after a restart, the node refused the copy it had replicated
    /// with and let in the other. Method: a write that takes 300 ms; both checks polled
    /// once, then run to their end.
    #[test]
    fn a_handshake_checked_while_a_record_is_written_is_checked_against_it() {
        let (dir, path, ours) = writing_slowly("race");
        let (first, second) = (from(2, (9, 1), (7, 1)), from(2, (10, 1), (7, 1)));
        let mut first = std::pin::pin!(ours.check_and_record(&first));
        let mut second = std::pin::pin!(ours.check_and_record(&second));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        block_on(first).unwrap();
        let refused = refusal(block_on(second));
        assert!(
            matches!(refused, HandshakeError::PeerDataDirChanged { .. }),
            "{refused:?}"
        );
        assert_eq!(ours.recorded(NodeId(2)), seen(9, 1));
        let again = Incarnations::load(seen(7, 2), false, Some(path)).unwrap();
        assert_eq!(again.recorded(NodeId(2)), seen(9, 1));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Goal (found in review): a write that panics fails its handshake, and the next one's
    /// too, rather than leave them waiting for good. Method: a write that panics, twice.
    #[test]
    fn a_record_write_that_panics_refuses_the_peer_and_the_writer_goes_on() {
        fn panicking_write(_: &Path, _: &[u8]) -> io::Result<()> {
            panic!("a bug in a write");
        }
        let path = std::env::temp_dir().join("cohort-incarnations-never-written");
        let ours =
            Incarnations::load_writing(seen(7, 1), false, Some(path), panicking_write).unwrap();
        for _ in 0..2 {
            let refused = refusal(block_on(ours.check_and_record(&from(2, (9, 1), (7, 1)))));
            assert!(refused.to_string().contains("panicked"), "{refused}");
        }
        assert_eq!(ours.recorded(NodeId(2)), Seen::default());
    }

    #[test]
    fn records_are_kept_across_restarts_and_contradictions_refused() {
        let dir = std::env::temp_dir().join(format!("cohort-incarnations-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("peers.incarnations");
        let me = seen(7, 3);
        let records = Incarnations::load(me, false, Some(file.clone())).unwrap();
        assert_eq!(records.recorded(NodeId(2)), Seen::default());
        block_on(records.check_and_record(&from(2, (20, 1), (0, 0)))).unwrap();
        block_on(records.check_and_record(&from(3, (30, 5), (7, 3)))).unwrap();
        // A later start of a peer is recorded, an earlier one refused.
        block_on(records.check_and_record(&from(2, (20, 2), (7, 3)))).unwrap();
        // An older node: nothing to check or record.
        block_on(records.check_and_record(&from(4, (0, 0), (0, 0)))).unwrap();
        // Another start with the same count: an older copy started again.
        let forked = Handshake {
            start: 5 << 32 | 0x1234,
            ..from(3, (30, 5), (7, 3))
        };
        assert_eq!(
            refusal(block_on(records.check_and_record(&forked))),
            HandshakeError::PeerDataOld {
                node_id: NodeId(3),
                start: 5,
                start_recorded: 5
            }
        );

        let again = Incarnations::load(me, false, Some(file.clone())).unwrap();
        assert_eq!(again.recorded(NodeId(2)), seen(20, 2));
        assert_eq!(again.recorded(NodeId(3)), seen(30, 5));
        assert_eq!(again.recorded(NodeId(4)), Seen::default());
        block_on(again.check_and_record(&from(2, (20, 2), (7, 3)))).unwrap();
        assert_eq!(
            refusal(block_on(again.check_and_record(&from(2, (21, 1), (0, 0))))),
            HandshakeError::PeerDataDirChanged {
                node_id: NodeId(2),
                incarnation: 21,
                incarnation_recorded: 20,
                starts_recorded: 2,
            }
        );
        assert_eq!(
            refusal(block_on(again.check_and_record(&from(3, (30, 4), (7, 3))))),
            HandshakeError::PeerDataOld {
                node_id: NodeId(3),
                start: 4,
                start_recorded: 5
            }
        );
        assert!(!again.is_refused());
        assert_eq!(
            again.recorded(NodeId(2)),
            seen(20, 2),
            "refusals change no record"
        );
        assert!(!crate::durable::temporary_twin(&file).exists());

        // A record from before starts were counted reads as start 0 (none); a bad one fails.
        fs::write(&file, format!("{FORMAT}\n2=20\n")).unwrap();
        let older = Incarnations::load(me, false, Some(file.clone())).unwrap();
        let none = Seen {
            incarnation: 20,
            start: 0,
        };
        assert_eq!(older.recorded(NodeId(2)), none);
        fs::write(&file, format!("{FORMAT}\n2=20/x\n")).unwrap();
        let error = Incarnations::load(me, false, Some(file.clone()))
            .err()
            .unwrap();
        assert!(error.to_string().contains("damaged"), "{error}");
        fs::write(&file, b"\xff").unwrap();
        let error = Incarnations::load(me, false, Some(file)).err().unwrap();
        assert!(error.to_string().contains("is damaged"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Goal: the repair both sides' messages give for a lost incarnation file (a log that is
    /// intact) lets the core in. Method: peer 2 recorded this core at incarnation 6, start 4;
    /// this core came back with incarnation 7: the refusal names both lines to put back; a
    /// core that put them back counts one more start, which peer 2 takes.
    #[test]
    fn the_repair_a_refusal_names_lets_the_core_in() {
        let records = Incarnations::load(seen(7, 1), false, None).unwrap();
        let said = refusal(block_on(records.check_and_record(&from(
            2,
            (20, 1),
            (6, 4),
        ))))
        .to_string();
        assert!(said.contains("`incarnation=6` and `starts=4`"), "{said}");
        let repaired = Incarnations::load(seen(6, 5), false, None).unwrap();
        block_on(repaired.check_and_record(&from(2, (20, 1), (6, 4)))).expect("let in");
        assert!(!repaired.is_refused());
    }

    /// A peer that recorded this core otherwise is refused either way; only a core whose data
    /// is new takes that as proof it lost its data.
    #[test]
    fn a_peer_that_knew_this_core_otherwise_is_refused_and_proves_a_loss_only_if_new() {
        for own_is_new in [false, true] {
            let records = Incarnations::load(seen(7, 1), own_is_new, None).unwrap();
            assert_eq!(
                refusal(block_on(records.check_and_record(&from(
                    2,
                    (20, 1),
                    (6, 4)
                )))),
                HandshakeError::ThisDataDirUnknown {
                    node_id: NodeId(2),
                    incarnation: 7,
                    incarnation_recorded: 6,
                    starts_recorded: 4,
                }
            );
            assert_eq!(records.is_refused(), own_is_new);
            assert_eq!(records.recorded(NodeId(2)), Seen::default());
            if own_is_new {
                assert_eq!(
                    futures_lite::future::block_on(records.refused()),
                    DataLost::OtherData {
                        peer: NodeId(2),
                        incarnation_recorded: 6
                    }
                );
            }
        }
    }

    /// A peer that saw a later start of this core's data proves it runs on an older copy; so
    /// does one that saw another start of the same count.
    #[test]
    fn a_peer_that_saw_a_later_start_proves_an_older_copy() {
        let records = Incarnations::load(seen(7, 3), false, None).unwrap();
        block_on(records.check_and_record(&from(2, (20, 1), (7, 3)))).unwrap();
        assert!(!records.is_refused());
        let same_count = Handshake {
            start_of_receiver: 3 << 32 | 0x1234,
            ..from(2, (20, 1), (7, 3))
        };
        assert!(matches!(
            refusal(block_on(records.check_and_record(&same_count))),
            HandshakeError::ThisDataOld {
                start: 3,
                start_recorded: 3,
                ..
            }
        ));
        let records = Incarnations::load(seen(7, 3), false, None).unwrap();
        assert_eq!(
            refusal(block_on(records.check_and_record(&from(
                2,
                (20, 1),
                (7, 5)
            )))),
            HandshakeError::ThisDataOld {
                node_id: NodeId(2),
                start: 3,
                start_recorded: 5
            }
        );
        assert_eq!(
            futures_lite::future::block_on(records.refused()),
            DataLost::OlderCopy {
                peer: NodeId(2),
                start: 3,
                start_recorded: 5
            }
        );
    }
}
