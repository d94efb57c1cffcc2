//! An in-memory storage that keeps written and synced bytes apart and, at a simulated crash,
//! does to the unsynced bytes what a power loss may do: lose them, keep them, tear them sector
//! by sector, zero them, or flip a bit. For tests and the simulator.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::rc::Rc;

use bytes::Bytes;

use super::format::BLOCK_BYTES;
use super::storage::{ReadCheckError, SegmentSyncer, Storage};

/// The unit a disk writes atomically: a torn write keeps or loses whole sectors.
pub const SECTOR_BYTES: usize = 512;

/// What a crash does to bytes written since their segment's last completed sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashFault {
    /// Every unsynced byte is lost (the old content comes back).
    LoseUnsynced,
    /// Every unsynced byte happened to reach the disk.
    KeepUnsynced,
    /// Each unsynced sector independently keeps the new bytes, the old ones, or zeros where it
    /// changed.
    TornSectors,
    /// Every unsynced byte reads back as zero (a sector's synced bytes survive).
    ZeroUnsynced,
    /// The unsynced bytes reach the disk, but one bit of one of them is flipped.
    FlipUnsyncedBit,
}

impl CrashFault {
    pub const ALL: [CrashFault; 5] = [
        CrashFault::LoseUnsynced,
        CrashFault::KeepUnsynced,
        CrashFault::TornSectors,
        CrashFault::ZeroUnsynced,
        CrashFault::FlipUnsyncedBit,
    ];
}

/// An in-memory disk. The WAL owns it (a test takes it back with `Wal::into_storage` to
/// crash it and reopen); only the synced bytes are shared, with the syncers in flight.
///
/// A sync carries the units (sectors, or blocks with `with_whole_blocks`) that changed since
/// the last sync was issued, as they were when it was issued; syncs may be in flight together
/// and complete in any order.
#[derive(Default)]
pub struct MemStorage {
    /// What the WAL wrote, by segment: the "page cache".
    written: BTreeMap<u64, Vec<u8>>,
    /// What was handed to syncs so far, by segment.
    handed: RefCell<BTreeMap<u64, Vec<u8>>>,
    /// Syncs issued so far: each one's number orders its units against other syncs'.
    issued: Cell<u64>,
    whole_blocks: bool,
    /// Per segment, the first offset the "device" cannot read (a media error).
    unreadable: BTreeMap<u64, usize>,
    /// The longest window `slot` handed out: what one write asked to stage at once.
    largest_write_bytes: usize,
    shared: Rc<RefCell<Shared>>,
}

#[derive(Default)]
struct Shared {
    /// What reached the disk, by segment.
    synced: BTreeMap<u64, Vec<u8>>,
    /// Per segment and unit: the number of the sync whose bytes the disk holds there.
    synced_by: BTreeMap<u64, Vec<u64>>,
    fail_next_sync: bool,
    /// Creating a segment fails as on a full disk (StorageFull), until this is cleared.
    disk_full: bool,
    syncs_completed: u64,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// A storage whose syncs write whole `BLOCK_BYTES` blocks, as the file store's O_DIRECT
    /// writes do: a sync that completes after a later-issued one holding the same block
    /// would put old bytes back over new ones, so that panics (the WAL must never let two
    /// syncs in flight share a block).
    pub fn with_whole_blocks() -> MemStorage {
        MemStorage {
            whole_blocks: true,
            ..MemStorage::default()
        }
    }

    fn unit_bytes(&self) -> usize {
        if self.whole_blocks {
            BLOCK_BYTES
        } else {
            SECTOR_BYTES
        }
    }

    /// The next sync fails with an I/O error (and syncs nothing).
    pub fn fail_next_sync(&self) {
        self.shared.borrow_mut().fail_next_sync = true;
    }

    /// From now on (until called with false), creating a segment fails with StorageFull and
    /// creates nothing, as on a full disk.
    pub fn set_disk_full(&self, full: bool) {
        self.shared.borrow_mut().disk_full = full;
    }

    /// The most bytes one write (a `slot`) covered so far: the file store stages as much.
    pub fn largest_write_bytes(&self) -> usize {
        self.largest_write_bytes
    }

    /// Syncs completed so far.
    pub fn syncs_completed(&self) -> u64 {
        self.shared.borrow().syncs_completed
    }

    /// Simulates a power loss: applies `fault` to the unsynced bytes of every segment, after
    /// which what is left counts as synced. `seed` drives the random choices.
    pub fn crash(&mut self, fault: CrashFault, seed: u64) {
        let mut rng = SplitMix(seed);
        let mut shared = self.shared.borrow_mut();
        for (seq, written) in &mut self.written {
            let synced = shared
                .synced
                .get_mut(seq)
                .expect("every segment has synced bytes");
            crash_segment(written, synced, fault, &mut rng);
        }
        *self.handed.borrow_mut() = self.written.clone();
    }

    /// Flips bits of a segment's bytes, synced or not (media corruption, not a crash).
    pub fn corrupt(&mut self, seq: u64, offset: usize, xor: u8) {
        self.written
            .get_mut(&seq)
            .expect("corrupt: no such segment")[offset] ^= xor;
        self.handed.get_mut().get_mut(&seq).expect("handed")[offset] ^= xor;
        self.shared
            .borrow_mut()
            .synced
            .get_mut(&seq)
            .expect("synced")[offset] ^= xor;
    }

    /// From now on the "device" cannot read segment `seq` from `offset` (a media error):
    /// `check_readable` fails there. Views still show the bytes: the WAL must check first.
    pub fn make_unreadable(&mut self, seq: u64, offset: usize) {
        assert!(self.written.contains_key(&seq), "no segment {seq}");
        self.unreadable.insert(seq, offset);
    }

    /// Deletes a segment behind the WAL's back (an operator's mistake, a lost file).
    pub fn lose_segment(&mut self, seq: u64) {
        self.written.remove(&seq);
        self.unreadable.remove(&seq);
        self.handed.get_mut().remove(&seq);
        let mut shared = self.shared.borrow_mut();
        shared.synced.remove(&seq);
        shared.synced_by.remove(&seq);
    }

    /// The segment sequence numbers present.
    pub fn segment_seqs(&self) -> Vec<u64> {
        self.written.keys().copied().collect()
    }

    /// A segment's current (written) bytes.
    pub fn segment_bytes(&self, seq: u64) -> &[u8] {
        &self.written[&seq]
    }

    fn segment_mut(&mut self, seq: u64) -> &mut Vec<u8> {
        self.written
            .get_mut(&seq)
            .unwrap_or_else(|| panic!("segment {seq} does not exist"))
    }
}

fn crash_segment(written: &mut [u8], synced: &mut Vec<u8>, fault: CrashFault, rng: &mut SplitMix) {
    let sectors = written.len().div_ceil(SECTOR_BYTES);
    let dirty: Vec<usize> = (0..sectors)
        .filter(|&s| {
            written[sector_range(written.len(), s)] != synced[sector_range(synced.len(), s)]
        })
        .collect();
    let flip = match fault {
        CrashFault::FlipUnsyncedBit if !dirty.is_empty() => {
            let range = sector_range(written.len(), dirty[rng.below(dirty.len())]);
            let changed: Vec<usize> = range.filter(|&i| written[i] != synced[i]).collect();
            Some((changed[rng.below(changed.len())], 1u8 << rng.below(8)))
        }
        _ => None,
    };
    for &s in &dirty {
        let range = sector_range(written.len(), s);
        let choice = match fault {
            CrashFault::LoseUnsynced => 1,
            CrashFault::KeepUnsynced | CrashFault::FlipUnsyncedBit => 0,
            CrashFault::ZeroUnsynced => 2,
            CrashFault::TornSectors => rng.next() % 3,
        };
        match choice {
            0 => {}
            1 => written[range.clone()].copy_from_slice(&synced[range]),
            // Zeros where the sector changed: the synced bytes that share the sector survive,
            // as they do on a disk that writes sectors atomically.
            _ => {
                for i in range {
                    if written[i] != synced[i] {
                        written[i] = 0;
                    }
                }
            }
        }
    }
    if let Some((byte, bit)) = flip {
        written[byte] ^= bit;
    }
    synced.clear();
    synced.extend_from_slice(written);
}

fn sector_range(len: usize, s: usize) -> Range<usize> {
    s * SECTOR_BYTES..((s + 1) * SECTOR_BYTES).min(len)
}

impl Storage for MemStorage {
    /// A fixed key: the same operations write the same bytes, so a seed replays exactly
    /// (crash faults pick the bytes that differ from the synced ones). Nothing here guards
    /// against a client's bytes.
    fn draw_key(&self) -> u64 {
        0x00C0_4047_5A17
    }

    type Syncer = MemSyncer;

    fn list(&mut self) -> io::Result<Vec<u64>> {
        Ok(self.segment_seqs())
    }

    fn create(&mut self, seq: u64, size_bytes: u64, header: &[u8]) -> io::Result<()> {
        if self.shared.borrow().disk_full {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected full disk: no room for a segment",
            ));
        }
        let mut bytes = vec![0u8; usize::try_from(size_bytes).map_err(io::Error::other)?];
        bytes[..header.len()].copy_from_slice(header);
        let units = bytes.len().div_ceil(self.unit_bytes());
        let mut shared = self.shared.borrow_mut();
        shared.synced.insert(seq, bytes.clone());
        shared.synced_by.insert(seq, vec![0; units]);
        self.handed.get_mut().insert(seq, bytes.clone());
        let previous = self.written.insert(seq, bytes);
        assert!(previous.is_none(), "create: segment {seq} exists");
        Ok(())
    }

    fn recycle(&mut self, old_seq: u64, new_seq: u64, header: &[u8]) -> io::Result<bool> {
        if self.written.contains_key(&new_seq) {
            return Ok(false);
        }
        let mut written = self
            .written
            .remove(&old_seq)
            .expect("recycle: no such segment");
        let mut shared = self.shared.borrow_mut();
        let mut synced = shared.synced.remove(&old_seq).expect("synced");
        let synced_by = shared.synced_by.remove(&old_seq).expect("synced_by");
        written[..header.len()].copy_from_slice(header);
        synced[..header.len()].copy_from_slice(header);
        let handed = self.handed.get_mut();
        let mut handed_bytes = handed.remove(&old_seq).expect("handed");
        handed_bytes[..header.len()].copy_from_slice(header);
        handed.insert(new_seq, handed_bytes);
        self.written.insert(new_seq, written);
        shared.synced.insert(new_seq, synced);
        shared.synced_by.insert(new_seq, synced_by);
        // A bad sector goes with its file.
        if let Some(offset) = self.unreadable.remove(&old_seq) {
            self.unreadable.insert(new_seq, offset);
        }
        Ok(true)
    }

    fn remove(&mut self, seq: u64) -> io::Result<()> {
        self.lose_segment(seq);
        Ok(())
    }

    fn size_bytes(&self, seq: u64) -> u64 {
        self.written[&seq].len() as u64
    }

    fn check_readable(&self, seq: u64) -> Result<(), ReadCheckError> {
        match self.unreadable.get(&seq) {
            Some(&offset) => Err(ReadCheckError::Unreadable {
                offset: offset as u64,
                source: io::Error::from_raw_os_error(libc::EIO),
            }),
            None => Ok(()),
        }
    }

    fn view(&self, seq: u64, range: Range<usize>) -> Bytes {
        Bytes::copy_from_slice(&self.written[&seq][range])
    }

    /// With whole blocks, the rest of the block a write ends in reads as zero from then on,
    /// as the file store's O_DIRECT writes zero-pad their last block.
    fn slot(&mut self, seq: u64, range: Range<usize>) -> &mut [u8] {
        let whole_blocks = self.whole_blocks;
        self.largest_write_bytes = self.largest_write_bytes.max(range.len());
        let segment = self.segment_mut(seq);
        if whole_blocks {
            let block_end = range.end.next_multiple_of(BLOCK_BYTES).min(segment.len());
            segment[range.end..block_end].fill(0);
        }
        &mut segment[range]
    }

    fn writes_whole_blocks(&self) -> bool {
        self.whole_blocks
    }

    fn locate(&self, seq: u64) -> String {
        format!("mem:{seq:020}.wal")
    }

    fn syncer(&self, seq: u64) -> MemSyncer {
        let number = self.issued.get() + 1;
        self.issued.set(number);
        let unit = self.unit_bytes();
        let written = &self.written[&seq];
        let mut handed = self.handed.borrow_mut();
        let handed = handed.get_mut(&seq).expect("handed");
        let mut units = Vec::new();
        for start in (0..written.len()).step_by(unit) {
            let range = start..(start + unit).min(written.len());
            if written[range.clone()] != handed[range.clone()] {
                handed[range.clone()].copy_from_slice(&written[range.clone()]);
                units.push((start, written[range].to_vec()));
            }
        }
        MemSyncer {
            shared: Rc::clone(&self.shared),
            seq,
            number,
            unit,
            whole_blocks: self.whole_blocks,
            units,
        }
    }
}

/// Puts the units a segment held when the sync was issued on the disk, unless a failure was
/// injected. A unit a later-issued sync already put there is left alone (that sync carried
/// newer bytes), except with whole blocks, where that is the WAL's bug and panics.
pub struct MemSyncer {
    shared: Rc<RefCell<Shared>>,
    seq: u64,
    number: u64,
    unit: usize,
    whole_blocks: bool,
    units: Vec<(usize, Vec<u8>)>,
}

impl SegmentSyncer for MemSyncer {
    async fn sync(self) -> io::Result<()> {
        let mut shared = self.shared.borrow_mut();
        if std::mem::take(&mut shared.fail_next_sync) {
            return Err(io::Error::other("injected fdatasync failure"));
        }
        shared.syncs_completed += 1;
        let Shared {
            synced, synced_by, ..
        } = &mut *shared;
        let (Some(synced), Some(synced_by)) =
            (synced.get_mut(&self.seq), synced_by.get_mut(&self.seq))
        else {
            return Ok(());
        };
        for (start, bytes) in self.units {
            let by = &mut synced_by[start / self.unit];
            if *by > self.number {
                assert!(
                    !self.whole_blocks,
                    "segment {}: the write of block {start} from sync {} landed after the one \
                     from sync {by}, which was issued later: two syncs in flight shared a block",
                    self.seq, self.number
                );
                continue;
            }
            *by = self.number;
            synced[start..start + bytes.len()].copy_from_slice(&bytes);
        }
        Ok(())
    }
}

/// A small deterministic generator for the crash choices (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}
