//! The real storage: one zero-filled file per segment in a directory, mapped shared for
//! reading, written once per sync, made durable through glommio's io_uring.
//!
//! Writes are staged: the WAL builds its records in a per-segment buffer (`slot`), and the
//! buffer goes to the file when a sync begins (`syncer`). Storing through the shared map
//! instead costs a write-protect fault per 4 KiB page (ext4's `page_mkwrite`) and a
//! write-protect pass over the mapping at every writeback, which measured 7–14× the raw
//! fdatasync latency for a small batch.
//!
//! In `SyncMode::Direct` (the node's mode with fsync on), the staging buffer is the
//! block-aligned buffer of the next O_DIRECT write (`staged_direct.rs`), and a sync is one
//! O_DIRECT | O_DSYNC write of it per segment through io_uring (glommio's `DmaFile`): whole
//! 4 KiB blocks, from the block the previous write ended in (its bytes copied from that
//! write's buffer, kept for the purpose) to the end of the staged bytes, zero-padded. The
//! kernel hands the buffer straight to the device and flushes the device's cache when the
//! write is done: no copy into the page cache, no writeback pass, and no hand-off to an io-wq
//! thread, which a buffered write + fdatasync through io_uring pays (measured with `cargo
//! bench --bench wal`). Where the file system refuses O_DIRECT, or a probe at open cannot
//! tell, the store falls back to `IoUring`.
//!
//! The other modes write the staged bytes into the page cache with one `pwrite` when the sync
//! begins (then the map shows them) and fdatasync through io_uring (`IoUring`), blocking
//! (`Blocking`), or not at all (`PageCache`).
//!
//! Reads (`view`) come from the map, except bytes the map may not show yet: those of the last
//! O_DIRECT write (held in its buffer until the next one) and staged bytes, which are copied.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::io::{DmaBuffer, DmaFile};

use super::format::BLOCK_BYTES;
use super::mmap::{Mapping, drop_cached, glommio_file};
use super::staged::{SHARE_BYTES_MIN, Staged};
use super::staged_direct::DirectStaged;
use super::storage::{Part, ReadCheckError, SegmentSyncer, Storage, copy_parts};

/// How `FileStore` writes a sync's bytes and makes them durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// One O_DIRECT | O_DSYNC write of the staged blocks per segment, through the io_uring of the
    /// current glommio executor (the production path; see the module doc). Where the file system
    /// refuses O_DIRECT (or the probe cannot tell), the store runs in `IoUring` mode instead
    /// ([`FileStore::direct_io_refused`] says why). Appending or syncing outside a glommio executor
    /// thread panics (the staging buffer is the executor's DMA memory).
    Direct,
    /// A `pwrite` of the staged bytes into the page cache, then an fdatasync through the
    /// io_uring of the current glommio executor. Syncing outside one panics.
    IoUring,
    /// A blocking `fdatasync(2)` on the calling thread: for tools and tests without glommio.
    Blocking,
    /// No fdatasync: a sync only hands the staged bytes to the page cache (`--sync never`).
    /// What the WAL then calls durable survives a crash of the process, not of the machine;
    /// after a machine crash, recovery may find records that claim an earlier one durable
    /// and refuse to open rather than guess.
    PageCache,
}

/// Segment files `<seq>.wal` (20 decimal digits) in one directory.
pub struct FileStore {
    dir: PathBuf,
    mode: SyncMode,
    segments: BTreeMap<u64, Segment>,
    /// A next segment built off the loop thread, waiting for `create` to adopt it.
    built: Option<BuiltSegment>,
    /// Why syncs do not use O_DIRECT where they were asked to (see [`takes_direct_io`]).
    direct_io_refused: Option<String>,
    /// Dead segment files kept for reuse under `<seq>.wal.spare` (a name recovery never
    /// reads): a new segment made from one only rewrites its header, as its blocks are
    /// written already, which is all the zero-fill of a fresh file is for.
    spares: Vec<PathBuf>,
}

/// Spare files kept at most: enough for the segment being built and the one after it.
const SPARES_MAX: usize = 2;

/// A segment file built (zero-filled or a spare reused, header written, synced, mapped, and
/// its pages in the page cache where writes go through it) under a temporary name
/// `<seq>.wal.building` that recovery never reads.
pub struct BuiltSegment {
    seq: u64,
    size_bytes: u64,
    path: PathBuf,
    file: File,
    map: Arc<Mapping>,
}

impl BuiltSegment {
    /// The sequence number the segment was built for.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

struct Segment {
    /// `None` for a file too short to map (a creation cut by a crash).
    map: Option<Arc<Mapping>>,
    size_bytes: u64,
    fd: Rc<SegmentFd>,
    /// Bytes written by the WAL and not yet handed to the file.
    staged: RefCell<Stage>,
    /// O_DIRECT writes, oldest first: those in flight (the map may not show them yet), and
    /// the last one (the next write starts with the bytes of the block it ended in). Each
    /// starts at or before the end of the one before, so together they cover one run, but
    /// for the first write after recovery's erase, which starts before the erase's last.
    writes: RefCell<Vec<DirectWrite>>,
}

/// The buffer of an O_DIRECT write and where it goes: the file's bytes from `start` on, as
/// many as the buffer holds, once the write is done.
struct DirectWrite {
    start: usize,
    buf: Rc<DmaBuffer>,
}

impl DirectWrite {
    fn end(&self) -> usize {
        self.start + self.buf.len()
    }

    /// Whether the write is still in flight: its syncer holds the buffer too.
    fn in_flight(&self) -> bool {
        Rc::strong_count(&self.buf) > 1
    }
}

/// A segment's staged bytes: a run for the page cache, or the buffer of the next O_DIRECT
/// write (`SyncMode::Direct`).
enum Stage {
    Cache(Staged),
    Direct(DirectStaged),
}

impl Stage {
    fn new(direct: bool) -> Stage {
        if direct {
            Stage::Direct(DirectStaged::default())
        } else {
            Stage::Cache(Staged::default())
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Stage::Cache(staged) => staged.is_empty(),
            Stage::Direct(staged) => staged.is_empty(),
        }
    }

    fn start(&self) -> usize {
        match self {
            Stage::Cache(staged) => staged.start,
            Stage::Direct(staged) => staged.start,
        }
    }

    fn end(&self) -> usize {
        match self {
            Stage::Cache(staged) => staged.end(),
            Stage::Direct(staged) => staged.end(),
        }
    }

    fn copy_out(&self, start: usize, end: usize, out: &mut [u8]) {
        match self {
            Stage::Cache(staged) => staged.copy_out(start, end, out),
            Stage::Direct(staged) => staged.copy_out(start, end, out),
        }
    }
}

struct SegmentFd {
    file: File,
    glommio: OnceCell<Rc<glommio::io::BufferedFile>>,
    direct: OnceCell<Rc<DmaFile>>,
    /// Closed when the fdatasync of the last syncer made finished (or that syncer was
    /// dropped); see [`FileSyncer::after`].
    last_fdatasync: RefCell<Option<LocalReceiver<()>>>,
}

impl SegmentFd {
    fn new(file: File) -> Rc<SegmentFd> {
        Rc::new(SegmentFd {
            file,
            glommio: OnceCell::new(),
            direct: OnceCell::new(),
            last_fdatasync: RefCell::new(None),
        })
    }
}

impl Segment {
    fn new(map: Option<Arc<Mapping>>, size_bytes: u64, file: File, direct: bool) -> Segment {
        Segment {
            map,
            size_bytes,
            fd: SegmentFd::new(file),
            staged: RefCell::new(Stage::new(direct)),
            writes: RefCell::default(),
        }
    }

    /// Forgets the writes that are done, oldest first, except the last one while `keep_last`
    /// (the segment takes more writes): the map shows them now.
    fn forget_done_writes(&self, keep_last: bool) {
        let mut writes = self.writes.borrow_mut();
        let keep = usize::from(keep_last);
        let done = writes
            .iter()
            .take(writes.len().saturating_sub(keep))
            .take_while(|w| !w.in_flight())
            .count();
        writes.drain(..done);
    }

    /// The lowest offset whose bytes the map may not show yet: the start of the oldest
    /// O_DIRECT write kept or of the staged bytes, if any.
    fn memory_from(&self) -> Option<usize> {
        let staged = self.staged.borrow();
        let staged_from = (!staged.is_empty()).then_some(staged.start());
        // The lowest of all: recovery's erase leaves a write near the end kept, and the next
        // write starts before it (found in review).
        let written_from = self.writes.borrow().iter().map(|w| w.start).min();
        staged_from.into_iter().chain(written_from).min()
    }

    /// Whether reads of `range` must come from memory (see `read_into`).
    fn in_memory(&self, range: &Range<usize>) -> bool {
        !range.is_empty() && self.memory_from().is_some_and(|from| range.end > from)
    }

    /// Fills `out` with the segment's bytes of `range`, newest first: staged bytes, then the
    /// buffers of the O_DIRECT writes kept (newer over older), then the map below them all;
    /// zeros past the staged bytes (what the file holds there is never read as a record).
    fn read_into(&self, range: Range<usize>, out: &mut [u8]) {
        let memory_from = self.memory_from().map_or(range.end, |f| f.min(range.end));
        out.fill(0);
        if range.start < memory_from {
            let map = self.map.as_ref().expect("a written segment is mapped");
            let below = range.start..memory_from;
            out[..below.len()].copy_from_slice(&map.view(below));
        }
        for write in self.writes.borrow().iter() {
            let (from, to) = (range.start.max(write.start), range.end.min(write.end()));
            if from < to {
                out[from - range.start..to - range.start]
                    .copy_from_slice(&write.buf.as_bytes()[from - write.start..to - write.start]);
            }
        }
        let staged = self.staged.borrow();
        if !staged.is_empty() {
            let (from, to) = (range.start.max(staged.start()), range.end.min(staged.end()));
            if from < to {
                staged.copy_out(from, to, &mut out[from - range.start..to - range.start]);
            }
        }
    }

    /// Hands the staged buffer over as an O_DIRECT write of whole blocks, and keeps it in
    /// `writes`. Returns the write's file offset and buffer; `None` when nothing is staged.
    /// The WAL never stages bytes in a block that a write in flight covers
    /// (`Wal::block_skip_target`): two writes of one block could land in either order.
    fn stage_direct_write(&self) -> Option<(u64, Rc<DmaBuffer>)> {
        let (from, buf) = match &mut *self.staged.borrow_mut() {
            Stage::Direct(staged) => staged.take()?,
            Stage::Cache(_) => panic!("an O_DIRECT write of a segment staged for the page cache"),
        };
        let to = from + buf.len();
        assert!(
            to as u64 <= self.size_bytes,
            "O_DIRECT write to {to} past the segment ({} bytes)",
            self.size_bytes
        );
        self.forget_done_writes(true);
        if let Some(busy) = self
            .writes
            .borrow()
            .iter()
            .find(|w| w.in_flight() && w.end() > from)
        {
            panic!(
                "O_DIRECT write of {from}..{to} overlaps the write of {}..{} in flight",
                busy.start,
                busy.end()
            );
        }
        let buf = Rc::new(buf);
        self.writes.borrow_mut().push(DirectWrite {
            start: from,
            buf: Rc::clone(&buf),
        });
        Some((from as u64, buf))
    }
}

/// Bytes written per `pwrite` while pre-zeroing a new segment.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

impl FileStore {
    /// A store over `dir`, created if missing. Segments a crash left half-built (see
    /// [`FileStore::build_job`]) were never part of the log and are deleted; spare files
    /// (see [`FileStore::remove`]) are kept for reuse.
    pub fn open(dir: impl AsRef<Path>, mode: SyncMode) -> io::Result<FileStore> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut spares = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".wal.building") {
                fs::remove_file(entry.path())?;
            } else if name.ends_with(".wal.spare") {
                spares.push(entry.path());
            }
        }
        let direct_io_refused = match mode {
            SyncMode::Direct => takes_direct_io(&dir).err(),
            _ => None,
        };
        let mode = match direct_io_refused {
            Some(_) => SyncMode::IoUring,
            None => mode,
        };
        Ok(FileStore {
            dir,
            mode,
            segments: BTreeMap::new(),
            built: None,
            direct_io_refused,
            spares,
        })
    }

    /// The mode syncs run in: the one asked for, except `Direct` where O_DIRECT could not be
    /// used (then `IoUring`; [`FileStore::direct_io_refused`] says why).
    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    /// Why syncs do not use O_DIRECT though asked to: the file system refuses it, or the
    /// probe could not tell.
    pub fn direct_io_refused(&self) -> Option<&str> {
        self.direct_io_refused.as_deref()
    }

    /// Whether syncs are O_DIRECT | O_DSYNC writes (see the module doc).
    fn direct(&self) -> bool {
        self.mode == SyncMode::Direct
    }

    /// The path of segment `seq`: what open errors name.
    pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
        dir.join(format!("{seq:020}.wal"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, seq: u64) -> PathBuf {
        Self::segment_path(&self.dir, seq)
    }

    fn segment(&self, seq: u64) -> &Segment {
        self.segments
            .get(&seq)
            .unwrap_or_else(|| panic!("segment {seq} is not open in {}", self.dir.display()))
    }

    /// Makes the directory's entries (created, renamed, removed files) durable.
    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// Deletes the spare segment files (a disk too full for a snapshot's file: the room they
    /// hold is what a snapshot needs, and what frees the segments; found by a tester, two
    /// spares held 16 MiB while every snapshot write failed); returns how many there were.
    pub fn drop_spares(&mut self) -> usize {
        let spares = std::mem::take(&mut self.spares);
        for spare in &spares {
            let _ = fs::remove_file(spare);
        }
        if !spares.is_empty() {
            let _ = self.sync_dir();
        }
        spares.len()
    }

    /// The bytes the spare segment files hold.
    pub fn spare_bytes(&self) -> u64 {
        (self.spares.iter())
            .filter_map(|spare| fs::metadata(spare).ok())
            .map(|meta| meta.len())
            .sum()
    }

    /// Work that builds segment `seq` off the loop thread (see [`BuiltSegment`]): run the
    /// returned closure on a blocking thread, hand its result to [`FileStore::offer_built`],
    /// and the next `create(seq)` adopts it instead of writing 64 MiB on the loop.
    pub fn build_job(
        &mut self,
        seq: u64,
        size_bytes: u64,
        header: Vec<u8>,
    ) -> impl FnOnce() -> io::Result<BuiltSegment> + Send + 'static {
        let dir = self.dir.clone();
        let spare = self.take_spare(seq);
        let mode = self.mode;
        move || {
            let path = Self::segment_path(&dir, seq).with_extension("wal.building");
            // A leftover of a crash mid-build is garbage: start over.
            let _ = fs::remove_file(&path);
            let built = make_segment_file(spare, &path, size_bytes, &header, mode).and_then(
                |(file, reused)| {
                    let len = usize::try_from(size_bytes).map_err(io::Error::other)?;
                    let map = Mapping::map(&file, len, populates(mode) && !reused)?;
                    Ok((file, map))
                },
            );
            let (file, map) = built.map_err(|error| {
                // A half-built file (the disk filled during its zero-fill) would keep the
                // space it took: give it back.
                let _ = fs::remove_file(&path);
                io::Error::new(
                    error.kind(),
                    format!(
                        "cannot make the next WAL segment {} ({size_bytes} bytes): {error}",
                        path.display()
                    ),
                )
            })?;
            Ok(BuiltSegment {
                seq,
                size_bytes,
                path,
                file,
                map,
            })
        }
    }

    /// Removes the file of a segment built by a [`FileStore::build_job`] that is no longer
    /// wanted (its place was filled another way).
    pub fn discard_built(&mut self, built: BuiltSegment) {
        let _ = fs::remove_file(&built.path);
    }

    /// A segment built by a [`FileStore::build_job`]; `create` adopts it if it is still wanted.
    pub fn offer_built(&mut self, built: BuiltSegment) {
        if let Some(stale) = self.built.replace(built) {
            let _ = fs::remove_file(&stale.path);
        }
    }

    /// The built segment for `seq`, renamed into place and durable, if one was offered.
    fn adopt_built(&mut self, seq: u64, size_bytes: u64) -> io::Result<Option<Segment>> {
        let Some(built) = self.built.take() else {
            return Ok(None);
        };
        if built.seq != seq || built.size_bytes != size_bytes {
            let _ = fs::remove_file(&built.path);
            return Ok(None);
        }
        // The file is complete and synced under its temporary name; the rename makes it the
        // segment, and the directory sync makes the name durable.
        fs::rename(&built.path, self.path(seq))?;
        self.sync_dir()?;
        Ok(Some(Segment::new(
            Some(built.map),
            size_bytes,
            built.file,
            self.direct(),
        )))
    }

    /// A spare file to build segment `seq` from: only one that held a lower segment. Its
    /// records, salted with that lower number, never verify in `seq`; those of a spare of
    /// `seq` itself would (recovery discards the segments after the end of the log through
    /// `remove`, and the next segment takes the first discarded number), so such a spare,
    /// or one above, is deleted instead.
    /// Every such spare is deleted now, not only those looked at before a reusable one: one
    /// left listed could be listed twice once its segment died again (renamed over it), and
    /// the second take found no file (found in review).
    fn take_spare(&mut self, seq: u64) -> Option<PathBuf> {
        self.spares.retain(|spare| {
            let held = spare.file_name().and_then(|name| {
                name.to_str()?
                    .strip_suffix(".wal.spare")?
                    .parse::<u64>()
                    .ok()
            });
            let reusable = held.is_some_and(|held| held < seq);
            if !reusable {
                // If it cannot go now, the next open lists it and tries again.
                let _ = fs::remove_file(spare);
            }
            reusable
        });
        self.spares.pop()
    }

    /// Opens and maps segment `seq`, pre-faulted when `populate` (see [`populates`]).
    fn open_segment(&self, seq: u64, populate: bool) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(seq))?;
        let size_bytes = file.metadata()?.len();
        let map = if size_bytes == 0 {
            None
        } else {
            Some(Mapping::map(
                &file,
                usize::try_from(size_bytes).map_err(io::Error::other)?,
                populate,
            )?)
        };
        Ok(Segment::new(map, size_bytes, file, self.direct()))
    }
}

impl Storage for FileStore {
    type Syncer = FileSyncer;

    fn list(&mut self) -> io::Result<Vec<u64>> {
        let mut seqs = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
                continue;
            };
            if let (20, Ok(seq)) = (stem.len(), stem.parse::<u64>()) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        for &seq in &seqs {
            if !self.segments.contains_key(&seq) {
                // Not pre-faulted: recovery reads it all anyway, after a check that a read
                // error cannot hang (see `check_readable`).
                let segment = self.open_segment(seq, false).map_err(|err| {
                    let path = self.path(seq);
                    io::Error::new(err.kind(), format!("opening {}: {err}", path.display()))
                })?;
                self.segments.insert(seq, segment);
            }
        }
        Ok(seqs)
    }

    fn create(&mut self, seq: u64, size_bytes: u64, header: &[u8]) -> io::Result<()> {
        if let Some(segment) = self.adopt_built(seq, size_bytes)? {
            self.segments.insert(seq, segment);
            return Ok(());
        }
        let path = self.path(seq);
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists already", path.display()),
            ));
        }
        // Made under a name recovery never reads, then renamed into place, as a segment built
        // off the loop is: made under its own name, a crash could leave its header and name
        // durable and its length not, which the next open takes for a damaged log. (Not the
        // name a build off the loop uses: one for this number may still be running.)
        let making = path.with_extension("inline.wal.building");
        let _ = fs::remove_file(&making);
        let spare = self.take_spare(seq);
        let (file, reused) = make_segment_file(spare, &making, size_bytes, header, self.mode)
            .and_then(|made| fs::rename(&making, &path).map(|()| made))
            .inspect_err(|_| {
                // A half-made file (the disk filled during its zero-fill) would keep the space
                // it took.
                let _ = fs::remove_file(&making);
            })?;
        self.sync_dir()?;
        drop(file);
        let segment = self.open_segment(seq, populates(self.mode) && !reused)?;
        self.segments.insert(seq, segment);
        Ok(())
    }

    fn recycle(&mut self, old_seq: u64, new_seq: u64, header: &[u8]) -> io::Result<bool> {
        let in_use = self
            .segment(old_seq)
            .map
            .as_ref()
            .is_some_and(|map| Arc::strong_count(map) > 1);
        if in_use || self.segments.contains_key(&new_seq) {
            return Ok(false);
        }
        // Rename first: a crash after it leaves a last file whose header names the old
        // sequence number, which recovery reads as an unused, half-recycled segment.
        fs::rename(self.path(old_seq), self.path(new_seq))?;
        self.sync_dir()?;
        let segment = self.segments.remove(&old_seq).expect("checked above");
        *segment.staged.borrow_mut() = Stage::new(self.direct());
        segment.writes.borrow_mut().clear();
        segment.fd.file.write_all_at(header, 0)?;
        segment.fd.file.sync_data()?;
        self.segments.insert(new_seq, segment);
        Ok(true)
    }

    /// Keeps the file as a spare when there is room and no reader maps it (a spare is
    /// rewritten later, which a view must never see), else deletes it.
    fn remove(&mut self, seq: u64) -> io::Result<()> {
        let segment = self.segments.remove(&seq);
        let unread = segment
            .and_then(|segment| segment.map)
            .is_some_and(|map| Arc::strong_count(&map) == 1);
        let path = self.path(seq);
        if unread && self.spares.len() < SPARES_MAX {
            let spare = path.with_extension("wal.spare");
            fs::rename(&path, &spare)?;
            if !self.spares.contains(&spare) {
                self.spares.push(spare);
            }
        } else {
            fs::remove_file(path)?;
        }
        self.sync_dir()
    }

    fn size_bytes(&self, seq: u64) -> u64 {
        self.segment(seq).size_bytes
    }

    fn view(&self, seq: u64, range: Range<usize>) -> Bytes {
        let segment = self.segment(seq);
        if segment.in_memory(&range) {
            // Not in the file yet, or perhaps not visible in the map yet: copied.
            let mut out = vec![0; range.len()];
            segment.read_into(range, &mut out);
            return Bytes::from(out);
        }
        match &segment.map {
            Some(map) => map.view(range),
            None => {
                assert!(range.is_empty(), "view {range:?} of an empty segment {seq}");
                Bytes::new()
            }
        }
    }

    fn slot(&mut self, seq: u64, range: Range<usize>) -> &mut [u8] {
        let segment = self
            .segments
            .get_mut(&seq)
            .unwrap_or_else(|| panic!("segment {seq} is not open"));
        assert!(
            range.end as u64 <= segment.size_bytes,
            "slot {range:?} past segment {seq} ({} bytes)",
            segment.size_bytes
        );
        let starts_direct_run =
            matches!(&*segment.staged.borrow(), Stage::Direct(staged) if staged.is_empty());
        if starts_direct_run {
            // A new O_DIRECT run rewrites the block it starts in from the block's start.
            let head_from = DirectStaged::block_start(range.start);
            let mut head = [0; BLOCK_BYTES];
            let head = &mut head[..range.start - head_from];
            segment.read_into(head_from..range.start, head);
            if let Stage::Direct(staged) = segment.staged.get_mut() {
                staged.begin(range.start, head, segment.size_bytes as usize);
            }
        }
        match segment.staged.get_mut() {
            // A gap before the range is zero, as the pre-zeroed file is there.
            Stage::Cache(staged) => staged.slot(range.start, range.end),
            Stage::Direct(staged) => staged.slot(range.start, range.end),
        }
    }

    fn shares_part(&self, len_bytes: usize) -> bool {
        !self.direct() && len_bytes >= SHARE_BYTES_MIN
    }

    /// Big shared bodies stay references until the sync's vectored write (see `staged`).
    fn write_parts(&mut self, seq: u64, offset: usize, parts: &[Part<'_>]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let segment = self.segment(seq);
        assert!(
            (offset + len) as u64 <= segment.size_bytes,
            "record at {offset} of {len} bytes past segment {seq} ({} bytes)",
            segment.size_bytes
        );
        if let Stage::Cache(staged) = &mut *segment.staged.borrow_mut()
            && staged.append(offset, parts)
        {
            return;
        }
        copy_parts(self.slot(seq, offset..offset + len), parts);
    }

    fn writes_whole_blocks(&self) -> bool {
        self.direct()
    }

    fn locate(&self, seq: u64) -> String {
        self.path(seq).display().to_string()
    }

    /// Reads the file with `pread` (through the page cache the map shows, with the kernel's
    /// read-ahead), a chunk at a time into one buffer; a chunk that fails is read again a
    /// block at a time to find where. Not through the map: a fault there is a SIGBUS, and
    /// `MADV_POPULATE_READ` loops forever on a read error in some kernels (5.14 to 6.8
    /// without the fix for VM_FAULT_RETRY).
    fn check_readable(&self, seq: u64) -> Result<(), ReadCheckError> {
        let segment = self.segment(seq);
        from_the_device(&segment.fd.file).map_err(ReadCheckError::Other)?;
        read_whole(&segment.fd.file, segment.size_bytes)
    }

    /// In direct mode, moves the staged bytes into an O_DIRECT write that the returned syncer
    /// issues; otherwise hands them to the page cache now (one `pwrite`), so the map shows
    /// them, and the syncer makes them durable.
    fn syncer(&self, seq: u64) -> FileSyncer {
        let segment = self.segment(seq);
        // Older segments take no more writes: once their writes are done (their buffers
        // are ours alone again), the map shows them and the buffers can go, and so does the
        // room their staging grew (found in review: in the page cache modes each kept its
        // largest run's allocation for as long as it lived).
        for (_, older) in self.segments.range(..seq) {
            older.forget_done_writes(false);
            let mut staged = older.staged.borrow_mut();
            if staged.is_empty() {
                *staged = Stage::new(self.direct());
            }
        }
        let work = if self.direct() {
            SyncWork::Direct {
                // Needed to open the O_DIRECT handle on the segment's first sync only.
                path: segment.fd.direct.get().is_none().then(|| self.path(seq)),
                write: segment.stage_direct_write(),
            }
        } else {
            SyncWork::Flushed(match &mut *segment.staged.borrow_mut() {
                Stage::Cache(staged) => staged.flush(&segment.fd.file),
                Stage::Direct(_) => unreachable!("a direct store stages O_DIRECT writes"),
            })
        };
        // Queue behind the segment's last fdatasync (see `FileSyncer::after`).
        let (done, done_seen) = local_channel::new_bounded(1);
        let after = segment.fd.last_fdatasync.replace(Some(done_seen));
        FileSyncer {
            fd: Rc::clone(&segment.fd),
            mode: self.mode,
            work,
            after,
            done,
        }
    }
}

/// Makes the file of a new segment at `path` from `spare` if there is one of the right size
/// (renamed, `header` written over its start, durable: its old records are garbage to the new
/// sequence number, as in a recycled segment), else as [`write_new_segment`] does. True with
/// the file where it is a spare.
fn make_segment_file(
    spare: Option<PathBuf>,
    path: &Path,
    size_bytes: u64,
    header: &[u8],
    mode: SyncMode,
) -> io::Result<(File, bool)> {
    let (file, reused) = reuse_or_write_segment(spare, path, size_bytes, header, mode)?;
    if mode == SyncMode::Direct {
        // Its O_DIRECT writes then find no cached page to invalidate; the header's block
        // stays, as the first write starts with it.
        super::mmap::drop_cached(&file, BLOCK_BYTES as u64)?;
    }
    Ok((file, reused))
}

fn reuse_or_write_segment(
    spare: Option<PathBuf>,
    path: &Path,
    size_bytes: u64,
    header: &[u8],
    mode: SyncMode,
) -> io::Result<(File, bool)> {
    if let Some(spare) = spare {
        fs::rename(&spare, path)?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        // Where writes go through the page cache, its pages are read in now (off the loop,
        // where a segment is built), or each write into a block not cached would wait for
        // the device to read it first. With `pread`, not by populating its map: that can
        // retry a failed read in the kernel for ever. A spare that cannot be read is not
        // used.
        if file.metadata()?.len() == size_bytes
            && (!populates(mode) || read_whole(&file, size_bytes).is_ok())
        {
            file.write_all_at(header, 0)?;
            file.sync_data()?;
            return Ok((file, true));
        }
        // A spare from a run with another segment size, or unreadable.
        drop(file);
        fs::remove_file(path)?;
    }
    Ok((write_new_segment(path, size_bytes, header, mode)?, false))
}

/// Creates the file of a new segment at `path`: `size_bytes` of zeros, `header` at its start,
/// contents durable (the caller makes the name durable).
///
/// Where syncs wait for the device, the zeros are written: a sync over written blocks
/// flushes data only, while an unwritten (fallocated) extent needs a journal commit on its
/// first write (DESIGN.md: ≈ 130 µs vs ≈ 200 µs per 4 KiB append + fdatasync). In
/// `PageCache` mode nothing waits for the device, so the blocks are only allocated: the
/// zeros cost a node 64 MiB of copying into the page cache and of writeback per segment,
/// about 6% of the CPU of a `cohort bench --sync never` run on two cores.
fn write_new_segment(
    path: &Path,
    size_bytes: u64,
    header: &[u8],
    mode: SyncMode,
) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    if mode == SyncMode::PageCache {
        super::mmap::allocate(&file, size_bytes)?;
        return finish_segment_file(file, header);
    }
    // A chunk at a time to the device, so the WAL's syncs are never queued behind the whole
    // segment's zeros (three nodes on one disk build theirs at once). With O_DIRECT writes,
    // by O_DIRECT from one page-aligned buffer: no copy into the page cache and no writeback
    // of it, which cost the nodes about 6% of their CPU under `cohort demo`, where segments
    // fill in seconds.
    let direct = match mode {
        SyncMode::Direct => Some(
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)?,
        ),
        _ => None,
    };
    let zeros = memmap2::MmapMut::map_anon(ZERO_CHUNK_BYTES)?;
    let mut at = 0u64;
    while at < size_bytes {
        let chunk = (size_bytes - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        match &direct {
            Some(direct) => direct.write_all_at(&zeros[..chunk], at)?,
            None => {
                file.write_all_at(&zeros[..chunk], at)?;
                super::mmap::write_back(&file, at, chunk as u64)?;
            }
        }
        at += chunk as u64;
    }
    finish_segment_file(file, header)
}

/// Writes a new segment's `header` and makes the file's contents durable.
fn finish_segment_file(file: File, header: &[u8]) -> io::Result<File> {
    file.write_all_at(header, 0)?;
    file.sync_data()?;
    Ok(file)
}

/// Whether a segment's map is pre-faulted (`MAP_POPULATE`) in `mode`: only where its pages
/// are in the page cache already (zero-filled through it), so populating maps them and
/// allocates nothing. Not with O_DIRECT writes (see [`Mapping::map`]), and not with fsync off,
/// where the blocks are fallocated: populating 64 MiB of them allocated and zeroed every
/// page while holding the process's mmap lock, and the loop's own page faults and mmap calls
/// waited behind it: a 100-160 ms stall of every request at each node's first rotation under
/// `cohort bench --sync never`.
///
/// Callers pre-fault only a file just zero-filled through the page cache, never one whose
/// pages may have to come from the device (a file listed at open, a spare): on a page the
/// device cannot read, a fault taken while populating may be retried in the kernel instead
/// of failing (as `MADV_POPULATE_READ` did before Linux 6.9), where `pread` returns an
/// error.
fn populates(mode: SyncMode) -> bool {
    matches!(mode, SyncMode::IoUring | SyncMode::Blocking)
}

/// Makes the next reads of `file` (recovery's check and scan) come from the device, not the
/// page cache: an fdatasync, then its clean pages dropped. After a failed sync, the kernel
/// may keep the pages it could not write as clean and up to date; a restarted node reading
/// them would take records the device does not hold for durable, and they would vanish once
/// the pages are evicted. The sync writes back what a `--sync never` node left dirty. It
/// fails, refusing the open, where the device cannot take the pages, and also, once, where
/// an earlier write failed that no sync saw (Linux tells the next sync of the file): then
/// the device may be healthy, and a start after that reads what it holds, which may lack
/// writes this node acknowledged. Call it before the file's map is read: a page mapped in
/// is not dropped.
fn from_the_device(file: &File) -> io::Result<()> {
    file.sync_data().map_err(|error| {
        io::Error::new(
            error.kind(),
            format!(
                "its sync before recovery reads it failed ({error}): the kernel could not \
                 write some of it, now or at an earlier write no sync saw, so the device \
                 lacks bytes this node may have acknowledged; a start after this one reads \
                 what the device holds"
            ),
        )
    })?;
    drop_cached(file, 0)
}

/// Reads the first `size_bytes` of `file` with `pread`, a chunk at a time into one buffer; a
/// chunk that fails is read again a block at a time to find where.
fn read_whole(file: &File, size_bytes: u64) -> Result<(), ReadCheckError> {
    const CHUNK_BYTES: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK_BYTES.min(usize::try_from(size_bytes).unwrap_or(0))];
    let mut at = 0;
    while at < size_bytes {
        let len = (size_bytes - at).min(CHUNK_BYTES as u64) as usize;
        if read_fully(file, &mut buf[..len], at).is_err() {
            // Find the first block that fails; one that reads now is read.
            for block in (at..at + len as u64).step_by(BLOCK_BYTES) {
                let end = (block + BLOCK_BYTES as u64).min(at + len as u64);
                read_fully(file, &mut buf[..(end - block) as usize], block)?;
            }
        }
        at += len as u64;
    }
    Ok(())
}

/// Reads `buf.len()` bytes of `file` from `offset`. A read error (EIO, a poisoned page) or
/// a file that ends first is `Unreadable` at the offset reached; anything else is `Other`.
fn read_fully(file: &File, buf: &mut [u8], offset: u64) -> Result<(), ReadCheckError> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        match file.read_at(&mut buf[done..], at) {
            Ok(0) => {
                return Err(ReadCheckError::Unreadable {
                    offset: at,
                    source: io::Error::other("the file ends here, shorter than when listed"),
                });
            }
            Ok(n) => done += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EIO | libc::EHWPOISON | libc::EBADMSG | libc::EUCLEAN)
                ) =>
            {
                return Err(ReadCheckError::Unreadable {
                    offset: at,
                    source: error,
                });
            }
            Err(error) => return Err(ReadCheckError::Other(error)),
        }
    }
    Ok(())
}

/// Whether files in `dir` can be opened with O_DIRECT, tried with a scratch file; if not,
/// why: the file system refuses it (EINVAL), or the try failed otherwise (a full disk, no
/// file descriptor left) and cannot tell. Either way syncs go without it, the safe way (a
/// segment opened with O_DIRECT on a file system that refuses it would fail its syncs); the
/// reason is said (found in review: a full disk at start was logged as the file system
/// refusing O_DIRECT).
pub(crate) fn takes_direct_io(dir: &Path) -> Result<(), String> {
    let probe = dir.join(".direct-io-probe");
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    let _ = fs::remove_file(&probe);
    match opened {
        Ok(_) => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
            Err("the file system refuses O_DIRECT".to_string())
        }
        Err(error) => Err(format!(
            "whether the file system takes O_DIRECT is unknown: its probe failed ({error}); \
             the next start tries again"
        )),
    }
}

/// Syncs one segment file; see [`SyncMode`].
pub struct FileSyncer {
    fd: Rc<SegmentFd>,
    mode: SyncMode,
    work: SyncWork,
    /// Closed once the fdatasync of the segment's syncer made before this one is done: an
    /// io_uring fdatasync waits for it. Linux reports a write-back error of a file to one
    /// fdatasync only, whichever checks first; two of them in flight at once could hand the
    /// error of the earlier sync's pages to the later one, and the earlier would report
    /// success for bytes the disk lost. One at a time, in the order the syncs began, each
    /// sees the errors of its own pages.
    after: Option<LocalReceiver<()>>,
    /// Dropped when this syncer's fdatasync is done (or it never runs): lets the next go.
    done: LocalSender<()>,
}

enum SyncWork {
    /// The staged bytes went to the page cache with `pwrite` when the syncer was made: the
    /// outcome, which fails the sync if it failed.
    Flushed(io::Result<()>),
    /// An O_DIRECT | O_DSYNC write of the segment, at a file offset, if anything was staged;
    /// `path` to open the segment's handle with, if it is not open yet.
    Direct {
        path: Option<PathBuf>,
        write: Option<(u64, Rc<DmaBuffer>)>,
    },
}

impl SegmentFd {
    /// The segment's O_DIRECT | O_DSYNC handle, opened at `path` on first use.
    async fn direct_file(&self, path: Option<&Path>) -> io::Result<Rc<DmaFile>> {
        if let Some(file) = self.direct.get() {
            return Ok(Rc::clone(file));
        }
        // A syncer made before the handle was open carries the path. Two of them in flight
        // at once each open one; the first kept serves the later syncs.
        let path =
            path.ok_or_else(|| io::Error::other("the segment's O_DIRECT handle is missing"))?;
        let file = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .dma_open(path)
            .await
            .map_err(|error| {
                let source = match error {
                    glommio::GlommioError::EnhancedIoError { source, .. } => source,
                    other => io::Error::from(other),
                };
                let hint = match source.raw_os_error() {
                    Some(libc::EMFILE) => {
                        ": this process may open no more files (raise its limit, `ulimit -n` \
                         or LimitNOFILE=, or use larger segments, --segment-mib)"
                    }
                    Some(libc::ENFILE) => ": the system may open no more files (fs.file-max)",
                    _ => "",
                };
                io::Error::new(
                    source.kind(),
                    format!(
                        "cannot open {} for its O_DIRECT writes, so nothing was written to it: \
                         {source}{hint}",
                        path.display()
                    ),
                )
            })?;
        if file.alignment() > BLOCK_BYTES as u64 {
            return Err(io::Error::other(format!(
                "{} wants O_DIRECT writes aligned to {} bytes; the WAL writes {BLOCK_BYTES}-byte blocks",
                path.display(),
                file.alignment()
            )));
        }
        let file = Rc::new(file);
        let _ = self.direct.set(Rc::clone(&file));
        Ok(file)
    }

    /// The descriptor as a glommio file, for io_uring fdatasync.
    fn uring_file(&self) -> io::Result<Rc<glommio::io::BufferedFile>> {
        if let Some(file) = self.glommio.get() {
            return Ok(Rc::clone(file));
        }
        let file = Rc::new(glommio_file(&self.file)?);
        let _ = self.glommio.set(Rc::clone(&file));
        Ok(file)
    }
}

impl SegmentSyncer for FileSyncer {
    async fn sync(self) -> io::Result<()> {
        match self.work {
            SyncWork::Flushed(written) => {
                written?;
                match self.mode {
                    SyncMode::PageCache => Ok(()),
                    SyncMode::Blocking => self.fd.file.sync_data(),
                    // fdatasync on the descriptor writes back what the pwrite left in the
                    // page cache. (`Direct` stages no pwrite; it is here for completeness.)
                    SyncMode::IoUring | SyncMode::Direct => {
                        if let Some(earlier) = self.after {
                            // Ends (None) when the earlier syncer's sender is dropped.
                            earlier.recv().await;
                        }
                        let synced = self.fd.uring_file()?.fdatasync().await;
                        drop(self.done);
                        synced.map_err(io::Error::from)
                    }
                }
            }
            // Nothing staged; the fdatasync still covers what an earlier process may have
            // left in the page cache (recovery syncs the segments it keeps).
            SyncWork::Direct { path, write: None } => {
                let file = self.fd.direct_file(path.as_deref()).await?;
                file.fdatasync().await.map_err(io::Error::from)
            }
            SyncWork::Direct {
                path,
                write: Some((offset, buf)),
            } => {
                let file = self.fd.direct_file(path.as_deref()).await?;
                let len = buf.len();
                let written = file
                    .write_rc_at(buf, offset)
                    .await
                    .map_err(io::Error::from)?;
                if written != len {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!(
                            "short O_DIRECT write: {written} of {len} bytes at offset {offset}"
                        ),
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal (found in review): a probe that fails for another reason than the file system
    /// refusing O_DIRECT (here: its folder does not exist; a full disk, no file descriptor
    /// left) says so, not that the file system refuses it.
    #[test]
    fn a_probe_that_cannot_tell_says_so() {
        let why = takes_direct_io(Path::new("/nonexistent-cohort-dir")).unwrap_err();
        assert!(
            why.contains("unknown") && why.contains("No such file"),
            "{why}"
        );
    }

    /// Goal: recovery reads a segment from the device, not from pages the kernel kept after
    /// a failed writeback (clean, up to date, and not on the device). Method: a file written
    /// and read (its pages cached) has none cached once `from_the_device` ran, on a file
    /// system with a page cache of its own and O_DIRECT: the temp dir must be on a disk's
    /// file system (not tmpfs, whose pages are the file itself), or the test fails.
    #[test]
    fn a_segment_is_read_from_the_device_not_from_cached_pages() {
        let dir = std::env::temp_dir().join(format!("cohort-wal-cached-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("segment");
        fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let file = File::open(&path).unwrap();
        read_whole(&file, 1 << 20).unwrap();
        let cached_before = super::super::mmap::resident_pages(&file, 1 << 20).unwrap();
        from_the_device(&file).unwrap();
        let cached_after = super::super::mmap::resident_pages(&file, 1 << 20).unwrap();
        let direct = takes_direct_io(&dir);
        fs::remove_dir_all(&dir).unwrap();
        // As `tests/wal_files.rs` does: a temp dir without O_DIRECT fails, not passes unseen.
        assert_eq!(direct, Ok(()), "in {}", dir.display());
        assert!(cached_before > 0, "the read cached the file");
        assert_eq!(cached_after, 0, "{cached_before} pages before");
    }
}
